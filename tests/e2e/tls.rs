//! The CLI against a server behind a TLS-terminating proxy
//! (`--server https://...`): a real proxy with a certificate authority made
//! at test time, trusted with `--ca-cert` / `MODAL_CA_CERT`, and the one
//! clear line a user gets when it is not trusted.

use crate::server::Server;
use modal_test_support::HELLO;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A certificate authority made for one test, and a certificate for
/// `localhost` it signed.
struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "modal test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    Pki {
        ca_pem: ca_cert.pem(),
        cert: cert.der().clone(),
        key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    }
}

/// A TLS-terminating proxy on 127.0.0.1: the decrypted bytes of each
/// connection go to `backend` and back. It runs on a runtime of its own,
/// dropped with it.
struct TlsProxy {
    port: u16,
    _runtime: tokio::runtime::Runtime,
}

impl TlsProxy {
    fn start(backend: &str, pki: &Pki) -> TlsProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let backend = backend.to_string();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, backend) = (acceptor.clone(), backend.clone());
                tokio::spawn(async move {
                    // A client that refuses the certificate ends here.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(&backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                });
            }
        });
        TlsProxy {
            port,
            _runtime: runtime,
        }
    }
}

/// `modal ARGS` with the token of `state` and the environment `env`
/// (no `MODAL_SERVER` nor `MODAL_CA_CERT` unless given).
fn modal(state: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_modal"));
    command
        .args(args)
        .env("MODAL_STATE", state)
        .env_remove("MODAL_SERVER")
        .env_remove("MODAL_CA_CERT")
        .env_remove("MODAL_TOKEN")
        .env_remove("RUST_LOG");
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().expect("modal runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that `out` failed with exactly one stderr line, and returns it.
fn one_error_line(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(1),
        "{:?} {}",
        out.status,
        text(&out.stderr)
    );
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    err.trim_end().to_string()
}

#[test]
fn the_cli_speaks_https_to_a_server_behind_a_tls_proxy() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    let pki = pki();
    let proxy = TlsProxy::start(&server.addr, &pki);
    let ca = state.path().join("test-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let ca = ca.to_str().unwrap();
    let url = format!("https://localhost:{}", proxy.port);

    // Trusted with the flag: a deploy (an upload) and a call go through.
    let deployed = modal(
        state.path(),
        &[],
        &["deploy", HELLO, "--server", &url, "--ca-cert", ca],
    );
    assert!(deployed.status.success(), "{}", text(&deployed.stderr));
    assert!(
        text(&deployed.stdout).contains("✓ App deployed as hello v1"),
        "{}",
        text(&deployed.stdout)
    );
    // Trusted through the environment, the server named by it too.
    let env = [("MODAL_SERVER", url.as_str()), ("MODAL_CA_CERT", ca)];
    let call = modal(state.path(), &env, &["call", "hello", "square", "7"]);
    assert_eq!(text(&call.stdout), "49\n", "{}", text(&call.stderr));
    let list = modal(
        state.path(),
        &[],
        &["app", "list", "--server", &url, "--ca-cert", ca],
    );
    assert!(list.status.success(), "{}", text(&list.stderr));
    let listed = text(&list.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("hello ") && l.contains("deployed")),
        "{listed}"
    );

    // Not trusted: one line that says what to do.
    let untrusted = modal(state.path(), &[], &["app", "list", "--server", &url]);
    assert_eq!(
        one_error_line(&untrusted),
        format!(
            "error: the certificate of {url} is signed by an unknown certificate authority: \
             trust it with --ca-cert FILE (or MODAL_CA_CERT)"
        )
    );
    // A stream that cannot be trusted is not retried as a broken connection.
    let started = Instant::now();
    let follow = modal(
        state.path(),
        &[],
        &["app", "logs", "hello", "--follow", "--server", &url],
    );
    assert!(one_error_line(&follow).contains("unknown certificate authority"));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );

    // https:// to the plain HTTP port, and CA files that hold no authority.
    let plain = format!("https://{}", server.addr);
    let not_tls = modal(state.path(), &[], &["app", "list", "--server", &plain]);
    let line = one_error_line(&not_tls);
    assert!(
        line.starts_with(&format!("error: TLS with {plain} failed: "))
            && line.ends_with("(is it an https:// server?)"),
        "{line}"
    );
    let empty = state.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let bad_ca = modal(
        state.path(),
        &[("MODAL_CA_CERT", empty.to_str().unwrap())],
        &["app", "list", "--server", &url],
    );
    assert_eq!(
        one_error_line(&bad_ca),
        format!(
            "error: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            empty.display()
        )
    );
    let missing = modal(
        state.path(),
        &[],
        &[
            "app",
            "list",
            "--server",
            &url,
            "--ca-cert",
            "/nonexistent/ca.pem",
        ],
    );
    assert!(
        one_error_line(&missing)
            .starts_with("error: cannot read the CA certificates in /nonexistent/ca.pem"),
        "{}",
        text(&missing.stderr)
    );
    // Other schemes are refused before anything is sent.
    let ftp = modal(
        state.path(),
        &[],
        &["app", "list", "--server", "ftp://localhost"],
    );
    assert_eq!(
        one_error_line(&ftp),
        "error: `ftp://localhost` is not an http:// or https:// server URL"
    );
}
