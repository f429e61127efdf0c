//! A raw Socket.IO v5 client over WebSocket, speaking the protocol by hand.

use super::LIMIT;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::Role;
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::VecDeque;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

/// A client connected to the namespace `/` of a server on 127.0.0.1.
pub struct Client {
    ws: WebSocketStream<Compat<TcpStream>>,
    /// The socket id the server gave.
    pub sid: String,
    /// The private session id, when the server keeps sessions.
    pub pid: Option<String>,
    /// Events that came before they were asked for (a recovering server may replay them
    /// before its CONNECT reply; others may come while an acknowledgement is awaited);
    /// [`Client::event`] returns them first.
    pub events: VecDeque<Value>,
    next_ack: u64,
}

impl Client {
    /// Connects to `/` of the server on `port`.
    pub async fn connect(port: u16) -> Client {
        Client::connect_with(port, None).await
    }

    /// Connects to `/` with `auth` (`{pid, offset}` to recover).
    pub async fn connect_with(port: u16, auth: Option<Value>) -> Client {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let req = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            tcp.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let ws = WebSocketStream::from_raw_socket(tcp.compat(), Role::Client, None).await;
        let mut c = Client {
            ws,
            sid: String::new(),
            pid: None,
            events: VecDeque::new(),
            next_ack: 1,
        };
        let open = timeout(LIMIT, c.text()).await.expect("an open packet");
        assert!(open.starts_with('0'), "{open}");
        match auth {
            Some(a) => c.send(&format!("40{a}")).await,
            None => c.send("40").await,
        }
        let connected: Value = timeout(LIMIT, async {
            loop {
                let t = c.text().await;
                if let Some(body) = t.strip_prefix("40") {
                    return serde_json::from_str(body).unwrap();
                }
                if let Some(body) = t.strip_prefix("42") {
                    c.events.push_back(serde_json::from_str(body).unwrap());
                }
            }
        })
        .await
        .expect("a CONNECT reply in time");
        c.sid = connected["sid"].as_str().unwrap().to_owned();
        c.pid = connected["pid"].as_str().map(str::to_owned);
        c
    }

    /// Sends one text frame.
    pub async fn send(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// The next text frame, answering pings.
    pub async fn text(&mut self) -> String {
        loop {
            match self.ws.next().await.expect("open").expect("frame") {
                Message::Text(t) if t.as_str() == "2" => self.send("3").await,
                Message::Text(t) => return t.to_string(),
                _ => {}
            }
        }
    }

    /// The next event as `[name, ...args]`.
    pub async fn event(&mut self) -> Value {
        if let Some(ev) = self.events.pop_front() {
            return ev;
        }
        timeout(LIMIT, async {
            loop {
                let t = self.text().await;
                if let Some(body) = t.strip_prefix("42") {
                    return serde_json::from_str(body).unwrap();
                }
            }
        })
        .await
        .expect("an event in time")
    }

    /// Calls `event` with `args` and returns the acknowledgement's arguments; events that
    /// arrive meanwhile are kept.
    pub async fn call(&mut self, event: &str, args: &[Value]) -> Value {
        let id = self.next_ack;
        self.next_ack += 1;
        let mut packet = vec![json!(event)];
        packet.extend(args.iter().cloned());
        self.send(&format!("42{id}{}", Value::Array(packet))).await;
        let prefix = format!("43{id}");
        timeout(LIMIT, async {
            loop {
                let t = self.text().await;
                if let Some(body) = t.strip_prefix(&prefix) {
                    return serde_json::from_str(body).unwrap();
                }
                if let Some(body) = t.strip_prefix("42") {
                    self.events.push_back(serde_json::from_str(body).unwrap());
                }
            }
        })
        .await
        .expect("an ack in time")
    }

    /// Answers the next event that asks for an acknowledgement with `reply`; returns the
    /// event as `[name, ...args]`.
    pub async fn answer(&mut self, reply: &Value) -> Value {
        timeout(LIMIT, async {
            loop {
                let t = self.text().await;
                let Some(body) = t.strip_prefix("42") else {
                    continue;
                };
                let (id, args) = body.split_at(body.find('[').expect("an argument array"));
                assert!(!id.is_empty(), "the event asks for an acknowledgement: {t}");
                self.send(&format!("43{id}[{reply}]")).await;
                return serde_json::from_str(args).unwrap();
            }
        })
        .await
        .expect("an event with an acknowledgement id in time")
    }

    /// The `auth` that recovers this client's session from `offset`.
    pub fn recovery(&self, offset: &str) -> Value {
        json!({ "pid": self.pid.as_deref().expect("a pid"), "offset": offset })
    }

    /// Closes the TCP connection without a goodbye (a recoverable "transport close").
    pub async fn drop_connection(self) {
        let mut tcp = self.ws.into_inner().into_inner();
        let _ = tcp.shutdown().await;
    }
}
