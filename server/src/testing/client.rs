//! A Socket.IO client that talks to a server in memory: for handler tests that need no
//! sockets and no waiting.

use super::pipe::{PipeEnd, pipe};
use crate::ack::AckError;
use crate::io::Io;
use crate::middleware::ConnectError;
use crate::payload::Payload;
use crate::runtime::Runtime;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message as Ws;
use async_tungstenite::tungstenite::protocol::Role;
use futures::channel::{mpsc, oneshot};
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use volley_core::socketio::decoder::Decoder;
use volley_core::socketio::{Packet, PacketType, SioProtocol};
use volley_core::{SocketId, Utf8Bytes};

/// An event the server sent to the client.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The event name.
    pub event: String,
    /// Its arguments.
    pub payload: Payload,
    /// Set when the server asked for an acknowledgement (answer with [`TestClient::ack`]).
    pub ack: Option<u64>,
}

impl Received {
    /// The arguments deserialized (see [`Payload::deserialize`]).
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        self.payload.deserialize()
    }
}

type ConnectResult = Result<String, ConnectError>;

#[derive(Default)]
struct Pending {
    acks: HashMap<u64, oneshot::Sender<Payload>>,
    connect: Option<oneshot::Sender<ConnectResult>>,
}

/// A client connected over an in-memory WebSocket to one namespace of an [`Io`] server.
/// Pings are answered for it. Drive it from [`TestRuntime::block_on`](super::TestRuntime).
pub struct TestClient {
    nsp: String,
    id: SocketId,
    out: mpsc::UnboundedSender<Ws>,
    pending: Arc<Mutex<Pending>>,
    events: mpsc::UnboundedReceiver<Received>,
    disconnected: Arc<Mutex<Option<String>>>,
    next_ack: u64,
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClient")
            .field("nsp", &self.nsp)
            .field("id", &self.id)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn upgrade(mut stream: PipeEnd, path: &str) -> std::io::Result<WebSocketStream<PipeEnd>> {
    let request = format!(
        "GET {path}?EIO=4&transport=websocket HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    if !buf.starts_with(b"HTTP/1.1 101") {
        return Err(std::io::Error::other(String::from_utf8_lossy(&buf).into_owned()));
    }
    let leftover = buf.split_off(end);
    Ok(WebSocketStream::from_partially_read(stream, leftover, Role::Client, None).await)
}

fn encode(packet: &Packet) -> Vec<Ws> {
    let (text, attachments) = packet.encode(SioProtocol::V5);
    let mut out = vec![Ws::text(format!("4{text}"))];
    out.extend(attachments.into_iter().map(Ws::Binary));
    out
}

impl TestClient {
    /// Connects to namespace `nsp` of `io` with `auth` (as the JS client's `auth` option).
    /// Fails with the server's CONNECT_ERROR when middleware refuses.
    pub async fn connect<R: Runtime>(
        io: &Io<R>,
        nsp: &str,
        auth: Option<serde_json::Value>,
    ) -> Result<TestClient, ConnectError> {
        let (client_end, server_end) = pipe();
        let driver = io.driver().clone();
        let runtime = driver.runtime().clone();
        runtime.spawn(async move { driver.serve_connection(server_end, None).await });
        let path = io.path().to_owned();
        let ws = upgrade(client_end, &path)
            .await
            .map_err(|e| ConnectError::new(format!("handshake failed: {e}")))?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded::<Ws>();
        runtime.spawn(async move {
            while let Some(m) = out_rx.next().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            let _ = sink.close(None).await;
        });
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (connect_tx, connect_rx) = oneshot::channel();
        lock(&pending).connect = Some(connect_tx);
        let (events_tx, events) = mpsc::unbounded();
        let disconnected = Arc::new(Mutex::new(None));
        let reader = {
            let pending = pending.clone();
            let out = out.clone();
            let disconnected = disconnected.clone();
            let nsp = nsp.to_owned();
            async move {
                let mut decoder = Decoder::new(SioProtocol::V5, 64);
                while let Some(Ok(msg)) = stream.next().await {
                    let decoded = match msg {
                        Ws::Text(t) => {
                            let t = t.as_str();
                            match t.as_bytes().first() {
                                Some(b'2') => {
                                    let _ = out.unbounded_send(Ws::text("3"));
                                    continue;
                                }
                                Some(b'4') => decoder.decode_text(Utf8Bytes::from(&t[1..])),
                                Some(b'1') => break,
                                _ => continue,
                            }
                        }
                        Ws::Binary(b) => decoder.decode_binary(b),
                        Ws::Close(_) => break,
                        _ => continue,
                    };
                    let Ok(Some(packet)) = decoded else {
                        continue;
                    };
                    if packet.nsp.as_str() != nsp {
                        continue;
                    }
                    handle(&packet, &pending, &events_tx, &disconnected);
                }
                lock(&disconnected).get_or_insert_with(|| "transport close".to_owned());
                let mut p = lock(&pending);
                p.acks.clear();
                if let Some(tx) = p.connect.take() {
                    let _ = tx.send(Err(ConnectError::new("transport close")));
                }
            }
        };
        runtime.spawn(reader);
        let auth_json = auth.map(|a| a.to_string());
        let connect = Packet::connect(nsp, auth_json.map(Utf8Bytes::from));
        for m in encode(&connect) {
            let _ = out.unbounded_send(m);
        }
        let sid = connect_rx
            .await
            .unwrap_or_else(|_| Err(ConnectError::new("transport close")))?;
        let id = SocketId::new(&sid).map_err(|_| ConnectError::new("invalid socket id"))?;
        Ok(TestClient {
            nsp: nsp.to_owned(),
            id,
            out,
            pending,
            events,
            disconnected,
            next_ack: 0,
        })
    }

    /// The socket id the server gave.
    pub fn id(&self) -> SocketId {
        self.id
    }

    fn send(&self, packet: &Packet) {
        for m in encode(packet) {
            let _ = self.out.unbounded_send(m);
        }
    }

    /// Emits `event` with one argument.
    pub fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) {
        let payload = Payload::of(data).unwrap_or_default();
        self.emit_payload(event, payload);
    }

    /// Emits `event` with a whole argument list.
    pub fn emit_payload(&self, event: &str, payload: Payload) {
        let json = payload.json();
        let (_, attachments) = payload.into_parts();
        self.send(&Packet::event(&self.nsp, event, &json, None, attachments));
    }

    /// Emits `event` and waits for the server's acknowledgement (Midway's `sendWithAck`).
    pub async fn emit_with_ack<T: Serialize + ?Sized, R: DeserializeOwned>(
        &mut self,
        event: &str,
        data: &T,
    ) -> Result<R, AckError> {
        let payload = Payload::of(data).map_err(|e| AckError::Encode(e.to_string()))?;
        let answer = self.ack_payload(event, payload).await?;
        answer
            .deserialize()
            .map_err(|e| AckError::Decode(e.to_string()))
    }

    /// Same as [`TestClient::emit_with_ack`].
    pub async fn send_with_ack<T: Serialize + ?Sized, R: DeserializeOwned>(
        &mut self,
        event: &str,
        data: &T,
    ) -> Result<R, AckError> {
        self.emit_with_ack(event, data).await
    }

    /// Emits `payload` as `event` and waits for the acknowledgement's arguments.
    pub async fn ack_payload(&mut self, event: &str, payload: Payload) -> Result<Payload, AckError> {
        let id = self.next_ack;
        self.next_ack += 1;
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).acks.insert(id, tx);
        let json = payload.json();
        let (_, attachments) = payload.into_parts();
        self.send(&Packet::event(&self.nsp, event, &json, Some(id), attachments));
        rx.await.map_err(|_| AckError::Disconnected)
    }

    /// Answers the server's acknowledgement request `id`.
    pub fn ack<T: Serialize + ?Sized>(&self, id: u64, data: &T) {
        let payload = Payload::of(data).unwrap_or_default();
        let json = payload.json();
        let (_, attachments) = payload.into_parts();
        self.send(&Packet::ack(&self.nsp, id, Utf8Bytes::from(json), attachments));
    }

    /// The next event from the server; `None` once the client is disconnected and every
    /// event was read.
    pub async fn recv(&mut self) -> Option<Received> {
        self.events.next().await
    }

    /// An event already received, if any.
    pub fn try_recv(&mut self) -> Option<Received> {
        self.events.try_recv().ok()
    }

    /// Leaves the namespace (`41`), as `socket.disconnect()` does in the JS client.
    pub fn disconnect(&self) {
        self.send(&Packet::disconnect(&self.nsp));
    }

    /// Drops the transport without a word (a network failure, as the server sees it).
    pub fn close(self) {
        let _ = self.out.unbounded_send(Ws::Close(None));
    }

    /// Why the server disconnected the client, once it did: `io server disconnect` for a
    /// namespace disconnect, `transport close` when the connection ended.
    pub fn disconnect_reason(&self) -> Option<String> {
        lock(&self.disconnected).clone()
    }
}

fn handle(
    packet: &Packet,
    pending: &Mutex<Pending>,
    events: &mpsc::UnboundedSender<Received>,
    disconnected: &Mutex<Option<String>>,
) {
    let payload = || {
        let args = match packet.kind {
            PacketType::Event | PacketType::BinaryEvent => packet.args(),
            _ => packet.data.clone(),
        };
        Payload::from_wire(
            args.as_ref().map_or("[]", |a| a.as_str()),
            packet.attachments.clone(),
        )
    };
    match packet.kind {
        PacketType::Connect => {
            let sid = packet
                .data
                .as_ref()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d.as_str()).ok())
                .and_then(|v| v.get("sid").and_then(|s| s.as_str()).map(str::to_owned))
                .unwrap_or_default();
            if let Some(tx) = lock(pending).connect.take() {
                let _ = tx.send(Ok(sid));
            }
        }
        PacketType::ConnectError => {
            let v: serde_json::Value = packet
                .data
                .as_ref()
                .and_then(|d| serde_json::from_str(d.as_str()).ok())
                .unwrap_or_default();
            let mut err = ConnectError::new(v["message"].as_str().unwrap_or_default());
            if let Some(d) = v.get("data") {
                err = err.with_data(d.clone());
            }
            if let Some(tx) = lock(pending).connect.take() {
                let _ = tx.send(Err(err));
            }
        }
        PacketType::Event | PacketType::BinaryEvent => {
            let event = packet.event_name().map(|n| n.into_owned()).unwrap_or_default();
            let _ = events.unbounded_send(Received {
                event,
                payload: payload(),
                ack: packet.id,
            });
        }
        PacketType::Ack | PacketType::BinaryAck => {
            let Some(id) = packet.id else {
                return;
            };
            if let Some(tx) = lock(pending).acks.remove(&id) {
                let _ = tx.send(payload());
            }
        }
        PacketType::Disconnect => {
            *lock(disconnected) = Some("io server disconnect".to_owned());
            events.close_channel();
        }
    }
}
