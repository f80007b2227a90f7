//! A small HTTP/1.1 client for the tests: keep-alive connections for load,
//! one-shot requests for checks.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// A keep-alive connection to the control API.
pub struct Http {
    addr: String,
    token: String,
    sender: SendRequest<Full<Bytes>>,
}

impl Http {
    pub async fn connect(addr: &str, token: &str) -> Http {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        stream.set_nodelay(true).unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Http {
            addr: addr.to_string(),
            token: token.to_string(),
            sender,
        }
    }

    pub async fn request(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        body: &[u8],
        auth: bool,
    ) -> (u16, String) {
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        if auth {
            builder = builder.header("authorization", format!("Bearer {}", self.token));
        }
        let request = builder
            .body(Full::new(Bytes::copy_from_slice(body)))
            .unwrap();
        self.sender.ready().await.expect("connection ready");
        let response = self.sender.send_request(request).await.expect("response");
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    pub async fn post(&mut self, path: &str, body: &[u8]) -> (u16, String) {
        let host = self.addr.clone();
        self.request("POST", &host, path, body, true).await
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// One request on a fresh connection, outside any runtime.
    pub fn blocking_raw(
        addr: &str,
        token: Option<&str>,
        method: &str,
        path: &str,
    ) -> (u16, String) {
        Self::runtime().block_on(async {
            let mut http = Http::connect(addr, token.unwrap_or("")).await;
            http.request(method, addr, path, b"", token.is_some()).await
        })
    }

    pub fn blocking_get_json(addr: &str, token: &str, path: &str) -> Value {
        let (status, body) = Self::blocking_raw(addr, Some(token), "GET", path);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    pub fn blocking_post_json(addr: &str, token: &str, path: &str) -> Value {
        let (status, body) = Self::blocking_raw(addr, Some(token), "POST", path);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }
}

/// A GET with a given Host header (for routing by deployment name).
pub fn get(addr: &str, host: &str, path: &str) -> (u16, String) {
    Http::runtime().block_on(async {
        let mut http = Http::connect(addr, "").await;
        http.request("GET", host, path, b"", false).await
    })
}
