//! Mounts (examples/site): a local directory packed at deploy, stored with
//! the version, seen read-only by the guest and served by its web function.

use crate::http::get;
use crate::server::Server;
use modal_test_support::{SITE, SITE_ASSETS};

fn read_css(server: &Server) -> String {
    server.ok(&["call", "site", "read", "\"/assets/css/site.css\""])
}

fn artifacts(server: &Server) -> usize {
    std::fs::read_dir(server.state.join("artifacts"))
        .unwrap()
        .count()
}

#[test]
fn a_mounted_directory_is_read_only_served_and_kept_with_its_version() {
    let state = tempfile::tempdir().unwrap();
    let server = Server::start(state.path());
    let assets = tempfile::tempdir().unwrap();
    let copy = |from: &str, to: &str| {
        let to = assets.path().join(to);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(std::path::Path::new(SITE_ASSETS).join(from), to).unwrap();
    };
    copy("index.html", "index.html");
    copy("css/site.css", "css/site.css");
    let mount = format!("{}:/assets", assets.path().display());

    let out = server.ok(&["deploy", SITE, "--mount", &mount]);
    let line = format!(
        "└── 🔨 Mounted {} at /assets (2 files, 213 B)",
        assets.path().display()
    );
    assert!(out.contains(&line), "{out}");
    assert_eq!(artifacts(&server), 2);

    // Reads work; writes fail with the standard read-only error; nothing
    // outside the mount is visible.
    assert_eq!(
        server.ok(&["call", "site", "read", "\"/assets/css/site.css\""]),
        "\"h1 { font-family: sans-serif; }\\n\"\n"
    );
    let write = server.ok(&["call", "site", "write", "\"/assets/new.txt\""]);
    assert!(
        write.starts_with("\"error: Operation not permitted"),
        "{write}"
    );
    assert_eq!(
        server.ok(&["call", "site", "peek", "\"/etc/passwd\""]),
        "false\n"
    );
    assert_eq!(
        server.ok(&["call", "site", "peek", "\"/assets/index.html\""]),
        "true\n"
    );

    // The web function serves it, with content types and ETags.
    let (status, body) = get(
        &server.addr,
        &server.addr,
        "/web/site/web/assets/index.html",
    );
    assert_eq!(status, 200);
    assert!(body.contains("<h1>Served from a mount</h1>"), "{body}");
    let page = |path: &str, etag: Option<&str>| {
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            server.addr
        );
        if let Some(tag) = etag {
            request.push_str(&format!("If-None-Match: {tag}\r\n"));
        }
        request.push_str("\r\n");
        crate::hardening::raw(&server.addr, &request, std::time::Duration::from_secs(5))
    };
    let css = page("/web/site/web/assets/css/site.css", None);
    assert!(
        css.starts_with("HTTP/1.1 200") && css.contains("content-type: text/css"),
        "{css}"
    );
    let etag = css
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .unwrap_or_else(|| panic!("no etag in {css}"))
        .trim()
        .to_string();
    let again = page("/web/site/web/assets/css/site.css", Some(&etag));
    assert!(again.starts_with("HTTP/1.1 304"), "{again}");
    for escape in [
        "/web/site/web/assets/../../etc/passwd",
        "/web/site/web/assets/missing.js",
    ] {
        assert_eq!(get(&server.addr, &server.addr, escape).0, 404, "{escape}");
    }

    // An unchanged directory is not stored twice; a changed one is, and a
    // rollback brings the older files back.
    server.ok(&["deploy", SITE, "--mount", &mount]);
    assert_eq!(artifacts(&server), 2);
    std::fs::write(assets.path().join("css/site.css"), "h1 { color: red; }\n").unwrap();
    server.ok(&["deploy", SITE, "--mount", &mount]);
    assert_eq!(artifacts(&server), 3);
    assert_eq!(read_css(&server), "\"h1 { color: red; }\\n\"\n");
    server.ok(&["app", "rollback", "site"]);
    assert_eq!(
        read_css(&server),
        "\"h1 { font-family: sans-serif; }\\n\"\n"
    );

    // A host that lost its unpacked copies unpacks them again.
    let server = {
        let state = server.state.clone();
        server.kill();
        std::fs::remove_dir_all(state.join("mounts")).unwrap();
        Server::start(&state)
    };
    assert_eq!(
        read_css(&server),
        "\"h1 { font-family: sans-serif; }\\n\"\n"
    );

    // What cannot be mounted is refused with one line naming it.
    std::os::unix::fs::symlink("/etc/passwd", assets.path().join("passwd")).unwrap();
    let refused = server.err(&["deploy", SITE, "--mount", &mount]);
    assert_eq!(
        refused,
        format!(
            "error: bad input: {}/passwd is a symlink that leaves the directory",
            assets.path().display()
        )
    );
    let missing = server.modal(&["deploy", SITE, "--mount", "/nonexistent-dir:/assets"]);
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(
        stderr.starts_with(
            "error: invalid value '/nonexistent-dir:/assets' for '--mount <DIR:PATH>': \
             /nonexistent-dir is not a directory"
        ),
        "{stderr}"
    );
}

/// `modal run --mount` mounts the directory directly.
#[test]
fn run_mounts_a_directory_too() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modal"))
        .args([
            "run",
            &format!("{SITE}::read"),
            "\"/assets/css/site.css\"",
            "--mount",
        ])
        .arg(format!("{SITE_ASSETS}:/assets"))
        .arg("--no-cache")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "\"h1 { font-family: sans-serif; }\\n\"\n"
    );
}

/// `modal serve --mount` serves the directory as it is at each redeploy.
#[test]
fn serve_mounts_a_directory_and_packs_it_again_at_each_redeploy() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("site.wasm");
    std::fs::copy(SITE, &file).unwrap();
    let assets = dir.path().join("assets");
    std::fs::create_dir(&assets).unwrap();
    std::fs::write(assets.join("index.html"), "first").unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_modal"))
        .args([
            "serve",
            file.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--mount",
        ])
        .arg(format!("{}:/assets", assets.display()))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rx = crate::stdout_lines(&mut child);
    let first = rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap();
    let addr = crate::served_address(&first);
    assert_eq!(get(&addr, &addr, "/assets/"), (200, "first".to_string()));
    std::fs::write(assets.join("index.html"), "second").unwrap();
    // A change of the component redeploys, and packs the directory again.
    std::fs::copy(SITE, &file).unwrap();
    crate::eventually(std::time::Duration::from_secs(20), || {
        match get(&addr, &addr, "/assets/") {
            (_, body) if body == "second" => Ok(()),
            answer => Err(format!("no redeploy: {answer:?}")),
        }
    });
    let _ = child.kill();
    let _ = child.wait();
}
