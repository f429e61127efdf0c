//! A raw HTTP/1.1 client over the in-memory pipe: Engine.IO long-polling by hand, and a
//! WebSocket upgrade, to test what the Socket.IO test client does not do (polling,
//! upgrades, response headers).

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::Role;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use std::net::SocketAddr;
use volley::Io;
use volley::runtime::Runtime;
use volley::testing::{PipeEnd, pipe};

/// One response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("text body")
    }
}

/// One connection to the server.
pub struct Raw {
    stream: PipeEnd,
    buf: Vec<u8>,
}

/// A new connection to `io`, from `peer`.
pub fn connect<R: Runtime>(io: &Io<R>, peer: Option<SocketAddr>) -> Raw {
    let (client, server) = pipe();
    let driver = io.driver().clone();
    let runtime = driver.runtime().clone();
    runtime.spawn(async move { driver.serve_connection(server, peer).await });
    Raw {
        stream: client,
        buf: Vec::new(),
    }
}

/// The `sid` of an open packet `0{"sid":"…",…}`.
pub fn open_sid(packet: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&packet[1..]).expect("open packet");
    v["sid"].as_str().expect("sid").to_owned()
}

impl Raw {
    /// Sends a request with `headers` (`name: value` pairs) and reads its response.
    pub async fn request(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n");
        for (n, v) in headers {
            raw.push_str(&format!("{n}: {v}\r\n"));
        }
        if method == "POST" {
            raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        raw.push_str("\r\n");
        let mut bytes = raw.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes).await.expect("write");
        self.stream.flush().await.expect("flush");
        self.response().await
    }

    /// Sends a request without a body and does not wait for its answer.
    pub async fn send_only(&mut self, method: &str, target: &str) {
        let raw = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.stream.write_all(raw.as_bytes()).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    /// Reads one response (`Content-Length` framed).
    pub async fn response(&mut self) -> Response {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            self.fill().await;
        };
        let head = String::from_utf8(self.buf[..end].to_vec()).expect("head");
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .expect("status");
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().expect("length"));
        while self.buf.len() < length {
            self.fill().await;
        }
        let body = self.buf.drain(..length).collect();
        Response {
            status,
            headers,
            body,
        }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        let n = self.stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Upgrades this connection to a WebSocket at `target` (a 101 expected).
    pub async fn websocket(mut self, target: &str) -> WebSocketStream<PipeEnd> {
        let response = self
            .request(
                "GET",
                target,
                &[
                    ("Upgrade", "websocket"),
                    ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                    ("Sec-WebSocket-Version", "13"),
                ],
                b"",
            )
            .await;
        assert_eq!(response.status, 101, "{response:?}");
        let leftover = std::mem::take(&mut self.buf);
        WebSocketStream::from_partially_read(self.stream, leftover, Role::Client, None).await
    }
}
