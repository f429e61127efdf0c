//! A Socket.IO client that talks to a server in memory: for handler tests that need no
//! sockets and no waiting.

use super::pipe::{PipeEnd, pipe};
use super::transport::{self, Connector, TransportKind, Wire};
use crate::ack::AckError;
use crate::handler::BoxFuture;
use crate::io::Io;
use crate::middleware::ConnectError;
use crate::payload::Payload;
use crate::runtime::Runtime;
use async_tungstenite::tungstenite::Message as Ws;
use futures::StreamExt;
use futures::channel::{mpsc, oneshot};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use volley_core::socketio::decoder::Decoder;
use volley_core::socketio::{Packet, PacketType, Parser, SioProtocol, msgpack};
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

/// What a client needs to recover its session (connection state recovery): the private id
/// the server gave and the offset of the last event received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryState {
    /// The private id from the CONNECT reply.
    pub pid: String,
    /// The offset of the last event received, if one came.
    pub offset: Option<String>,
}

/// How a [`TestClient`] connects: the auth object, extra query parameters and headers for the
/// handshake request, another request path, and whether it answers pings.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    auth: Option<serde_json::Value>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    path: Option<String>,
    auto_pong: bool,
    transport: TransportKind,
    parser: Option<Parser>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            auth: None,
            query: Vec::new(),
            headers: Vec::new(),
            path: None,
            auto_pong: true,
            transport: TransportKind::WebSocket,
            parser: None,
        }
    }
}

impl ConnectOptions {
    /// No auth, no extra query or headers, the server's path, pings answered.
    pub fn new() -> Self {
        Self::default()
    }

    /// The auth object sent with the namespace CONNECT (the JS client's `auth` option).
    pub fn auth(mut self, auth: serde_json::Value) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Adds a query parameter to the handshake request (after `EIO=4&transport=websocket`).
    pub fn query(mut self, name: &str, value: &str) -> Self {
        self.query.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Adds a header to the handshake request.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Requests `path` instead of the server's own (to test a server's `path` option).
    pub fn path(mut self, path: &str) -> Self {
        self.path = Some(path.to_owned());
        self
    }

    /// Whether the client answers the server's pings (default: yes). A client that does not
    /// is closed by the server with "ping timeout".
    pub fn auto_pong(mut self, answer: bool) -> Self {
        self.auto_pong = answer;
        self
    }

    /// The transport: a WebSocket (the default) or HTTP long-polling only.
    pub fn transport(mut self, transport: TransportKind) -> Self {
        self.transport = transport;
        self
    }

    /// The parser to speak. In memory the client asks the server; over a [`Connector`] it
    /// speaks text unless told.
    pub fn parser(mut self, parser: Parser) -> Self {
        self.parser = Some(parser);
        self
    }
}

/// Connects through in-memory pipes, each served by the driver of an [`Io`].
struct PipeConnector<R: Runtime> {
    driver: crate::driver::Driver<crate::node::Node, R>,
}

impl<R: Runtime> Connector for PipeConnector<R> {
    type Stream = PipeEnd;
    fn connect(&self) -> BoxFuture<std::io::Result<PipeEnd>> {
        let (client_end, server_end) = pipe();
        let driver = self.driver.clone();
        self.driver
            .runtime()
            .spawn(async move { driver.serve_connection(server_end, None).await });
        Box::pin(async move { Ok(client_end) })
    }
}

/// What one namespace of the connection waits for and records.
struct Route {
    acks: HashMap<u64, oneshot::Sender<Payload>>,
    connect: Option<oneshot::Sender<ConnectResult>>,
    events: mpsc::UnboundedSender<Received>,
    disconnected: Arc<Mutex<Option<String>>>,
    recovery: Arc<NsRecovery>,
}

/// Connection state recovery of one namespace: the pid asked for, the pid given, the last
/// offset seen.
struct NsRecovery {
    asked_pid: Option<String>,
    pid: Mutex<Option<String>>,
    last_offset: Mutex<Option<String>>,
}

/// The connection several [`TestClient`]s (one per namespace) share: the way out, the
/// namespaces the reader routes to, and what it records. The transport closes when the last
/// client of the connection is dropped.
struct Conn {
    out: mpsc::UnboundedSender<Ws>,
    routes: Mutex<HashMap<String, Route>>,
    parser: Parser,
    auto_pong: AtomicBool,
    pings: AtomicUsize,
    open: Mutex<Option<serde_json::Value>>,
}

impl Conn {
    fn send(&self, packet: &Packet) {
        for m in encode(packet, self.parser) {
            let _ = self.out.unbounded_send(m);
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = self.out.unbounded_send(Ws::Close(None));
    }
}

/// A client connected over an in-memory WebSocket to one namespace of an [`Io`] server.
/// Pings are answered for it. Drive it from [`TestRuntime::block_on`](super::TestRuntime).
///
/// [`TestClient::join`] opens another namespace on the same connection (the JS client's
/// multiplexing: `io("/a")` and `io("/b")` from one `Manager`); it speaks the server's parser
/// (text or MessagePack).
pub struct TestClient {
    nsp: String,
    id: SocketId,
    conn: Arc<Conn>,
    events: mpsc::UnboundedReceiver<Received>,
    disconnected: Arc<Mutex<Option<String>>>,
    recovery: Arc<NsRecovery>,
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

fn encode(packet: &Packet, parser: Parser) -> Vec<Ws> {
    if parser == Parser::MsgPack {
        return vec![Ws::Binary(msgpack::encode(packet))];
    }
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
        let mut options = ConnectOptions::new();
        options.auth = auth;
        Self::connect_with(io, nsp, options).await
    }

    /// Connects to namespace `nsp` of `io` with `options` (extra query parameters and
    /// headers, another path, no automatic pongs).
    pub async fn connect_with<R: Runtime>(
        io: &Io<R>,
        nsp: &str,
        options: ConnectOptions,
    ) -> Result<TestClient, ConnectError> {
        let driver = io.driver().clone();
        let parser = match options.parser {
            Some(parser) => parser,
            None => driver
                .handle()
                .call(|node, _| node.sio.config().parser)
                .await
                .unwrap_or_default(),
        };
        let runtime = driver.runtime().clone();
        let path = options.path.clone().unwrap_or_else(|| io.path().to_owned());
        let options = options.parser(parser).path(&path);
        Self::connect_over(PipeConnector { driver }, &runtime, nsp, options).await
    }

    /// Connects to namespace `nsp` of a server reached through `connector` (real TCP
    /// connections from a runtime crate, say, to test a started server as Midway's
    /// `createSocketIOClient` does), with `options` (path `/socket.io/` unless set, text
    /// parser unless set, the transport chosen there).
    pub async fn connect_over<C: Connector, R: Runtime>(
        connector: C,
        runtime: &R,
        nsp: &str,
        options: ConnectOptions,
    ) -> Result<TestClient, ConnectError> {
        let parser = options.parser.unwrap_or_default();
        let path = options.path.as_deref().unwrap_or("/socket.io/");
        let request = transport::Request {
            path,
            query: &options.query,
            headers: &options.headers,
        };
        let Wire {
            incoming: mut stream,
            outgoing: out,
        } = transport::open(connector, runtime, options.transport, request)
            .await
            .map_err(|e| ConnectError::new(format!("handshake failed: {e}")))?;
        let conn = Arc::new(Conn {
            out,
            routes: Mutex::new(HashMap::new()),
            parser,
            auto_pong: AtomicBool::new(options.auto_pong),
            pings: AtomicUsize::new(0),
            open: Mutex::new(None),
        });
        let reader = {
            // The reader holds the connection weakly, so dropping every client closes it.
            let conn = Arc::downgrade(&conn);
            async move {
                let mut decoder = Decoder::new(SioProtocol::V5, 64);
                while let Some(msg) = stream.next().await {
                    let Some(conn) = conn.upgrade() else {
                        return;
                    };
                    let decoded = match (msg, conn.parser) {
                        (Ws::Text(t), parser) => {
                            let t = t.as_str();
                            match t.as_bytes().first() {
                                Some(b'0') => {
                                    *lock(&conn.open) = serde_json::from_str(&t[1..]).ok();
                                    continue;
                                }
                                Some(b'2') => {
                                    conn.pings.fetch_add(1, Ordering::SeqCst);
                                    if conn.auto_pong.load(Ordering::SeqCst) {
                                        let _ = conn.out.unbounded_send(Ws::text("3"));
                                    }
                                    continue;
                                }
                                Some(b'4') if parser == Parser::Default => {
                                    decoder.decode_text(Utf8Bytes::from(&t[1..]))
                                }
                                Some(b'1') => break,
                                _ => continue,
                            }
                        }
                        (Ws::Binary(b), Parser::Default) => decoder.decode_binary(b),
                        (Ws::Binary(b), Parser::MsgPack) => msgpack::decode(&b, 64).map(Some),
                        (Ws::Close(_), _) => break,
                        _ => continue,
                    };
                    let Ok(Some(packet)) = decoded else {
                        continue;
                    };
                    let mut routes = lock(&conn.routes);
                    if let Some(route) = routes.get_mut(packet.nsp.as_str()) {
                        handle(&packet, route);
                    }
                }
                let Some(conn) = conn.upgrade() else {
                    return;
                };
                for route in lock(&conn.routes).values_mut() {
                    lock(&route.disconnected).get_or_insert_with(|| "transport close".to_owned());
                    route.acks.clear();
                    route.events.close_channel();
                    if let Some(tx) = route.connect.take() {
                        let _ = tx.send(Err(ConnectError::new("transport close")));
                    }
                }
            }
        };
        runtime.spawn(reader);
        Self::open_namespace(conn, nsp, options.auth).await
    }

    /// Joins namespace `nsp` on this client's connection with `auth`: another client, for
    /// that namespace, sharing the transport (the JS client's multiplexing). Fails with the
    /// server's CONNECT_ERROR when it refuses; this client goes on either way.
    pub async fn join(
        &self,
        nsp: &str,
        auth: Option<serde_json::Value>,
    ) -> Result<TestClient, ConnectError> {
        if lock(&self.conn.routes).contains_key(nsp) {
            return Err(ConnectError::new(format!("{nsp} is joined already")));
        }
        Self::open_namespace(self.conn.clone(), nsp, auth).await
    }

    /// Sends the CONNECT for `nsp` on `conn` and waits for the answer.
    async fn open_namespace(
        conn: Arc<Conn>,
        nsp: &str,
        auth: Option<serde_json::Value>,
    ) -> Result<TestClient, ConnectError> {
        let (connect_tx, connect_rx) = oneshot::channel();
        let (events_tx, events) = mpsc::unbounded();
        let disconnected = Arc::new(Mutex::new(None));
        let recovery = Arc::new(NsRecovery {
            asked_pid: auth
                .as_ref()
                .and_then(|a| a.get("pid"))
                .and_then(|p| p.as_str())
                .map(str::to_owned),
            pid: Mutex::new(None),
            last_offset: Mutex::new(None),
        });
        lock(&conn.routes).insert(
            nsp.to_owned(),
            Route {
                acks: HashMap::new(),
                connect: Some(connect_tx),
                events: events_tx,
                disconnected: disconnected.clone(),
                recovery: recovery.clone(),
            },
        );
        let auth_json = auth.map(|a| a.to_string());
        conn.send(&Packet::connect(nsp, auth_json.map(Utf8Bytes::from)));
        let answer = connect_rx
            .await
            .unwrap_or_else(|_| Err(ConnectError::new("transport close")));
        let sid = match answer {
            Ok(sid) => sid,
            Err(e) => {
                lock(&conn.routes).remove(nsp);
                return Err(e);
            }
        };
        Ok(TestClient {
            nsp: nsp.to_owned(),
            id: SocketId::new(&sid).map_err(|_| ConnectError::new("invalid socket id"))?,
            conn,
            events,
            disconnected,
            recovery,
            next_ack: 0,
        })
    }

    /// Connects to namespace `nsp` of `io` asking to recover the session `state` describes
    /// (the JS client's reconnection with connection state recovery): the auth object of
    /// `options` (or `{}`) plus `pid` and `offset`.
    pub async fn reconnect_with_recovery<R: Runtime>(
        io: &Io<R>,
        nsp: &str,
        state: &RecoveryState,
        mut options: ConnectOptions,
    ) -> Result<TestClient, ConnectError> {
        let mut auth = match options.auth.take() {
            Some(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        auth.insert("pid".to_owned(), serde_json::Value::from(state.pid.clone()));
        if let Some(offset) = &state.offset {
            auth.insert("offset".to_owned(), serde_json::Value::from(offset.clone()));
        }
        options.auth = Some(serde_json::Value::Object(auth));
        Self::connect_with(io, nsp, options).await
    }

    /// The private id and last offset to recover this session with, when the server has
    /// connection state recovery on. Take it before [`TestClient::close`].
    pub fn recovery_state(&self) -> Option<RecoveryState> {
        let pid = lock(&self.recovery.pid).clone()?;
        Some(RecoveryState {
            pid,
            offset: lock(&self.recovery.last_offset).clone(),
        })
    }

    /// Whether the server restored the session this client asked for (the CONNECT reply
    /// carried the pid it sent), as the JS client's `socket.recovered`.
    pub fn recovered(&self) -> bool {
        let pid = lock(&self.recovery.pid);
        self.recovery.asked_pid.is_some() && *pid == self.recovery.asked_pid
    }

    /// The socket id the server gave.
    pub fn id(&self) -> SocketId {
        self.id
    }

    /// The namespace the client joined.
    pub fn nsp(&self) -> &str {
        &self.nsp
    }

    /// The Engine.IO handshake the server sent (`sid`, `upgrades`, `pingInterval`,
    /// `pingTimeout`, `maxPayload`).
    pub fn open_packet(&self) -> Option<serde_json::Value> {
        lock(&self.conn.open).clone()
    }

    /// The Engine.IO session id (not the socket id).
    pub fn sid(&self) -> Option<String> {
        self.open_packet()?.get("sid")?.as_str().map(str::to_owned)
    }

    /// How many pings the server sent so far.
    pub fn pings_received(&self) -> usize {
        self.conn.pings.load(Ordering::SeqCst)
    }

    /// Starts or stops answering the server's pings.
    pub fn set_auto_pong(&self, answer: bool) {
        self.conn.auto_pong.store(answer, Ordering::SeqCst);
    }

    fn send(&self, packet: &Packet) {
        self.conn.send(packet);
    }

    /// Sends a raw Engine.IO text message (`4` + a Socket.IO packet, say) as it is.
    pub fn send_raw(&self, text: &str) {
        let _ = self.conn.out.unbounded_send(Ws::text(text.to_owned()));
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

    /// Emits `payload` as `event` and waits for the acknowledgement's arguments. Fails with
    /// [`AckError::Disconnected`] when the client leaves first.
    pub async fn ack_payload(
        &mut self,
        event: &str,
        payload: Payload,
    ) -> Result<Payload, AckError> {
        self.ack_future(event, payload).await
    }

    /// Emits `payload` as `event` and returns the future of its acknowledgement, which does
    /// not borrow the client (to emit more, or to check it is still unresolved).
    pub fn ack_future(
        &mut self,
        event: &str,
        payload: Payload,
    ) -> impl std::future::Future<Output = Result<Payload, AckError>> + Send + use<> {
        let id = self.next_ack;
        self.next_ack += 1;
        let (tx, rx) = oneshot::channel();
        if let Some(route) = lock(&self.conn.routes).get_mut(&self.nsp) {
            route.acks.insert(id, tx);
        }
        let json = payload.json();
        let (_, attachments) = payload.into_parts();
        self.send(&Packet::event(
            &self.nsp,
            event,
            &json,
            Some(id),
            attachments,
        ));
        async move { rx.await.map_err(|_| AckError::Disconnected) }
    }

    /// Answers the server's acknowledgement request `id` with one argument.
    pub fn ack<T: Serialize + ?Sized>(&self, id: u64, data: &T) {
        self.ack_with(id, Payload::of(data).unwrap_or_default());
    }

    /// Answers the server's acknowledgement request `id` with a whole argument list.
    pub fn ack_with(&self, id: u64, payload: Payload) {
        let json = payload.json();
        let (_, attachments) = payload.into_parts();
        self.send(&Packet::ack(
            &self.nsp,
            id,
            Utf8Bytes::from(json),
            attachments,
        ));
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

    /// Leaves the namespace (`41`), as `socket.disconnect()` does in the JS client: pending
    /// acknowledgements fail with [`AckError::Disconnected`].
    pub fn disconnect(&self) {
        self.send(&Packet::disconnect(&self.nsp));
        lock(&self.disconnected).get_or_insert_with(|| "io client disconnect".to_owned());
        if let Some(route) = lock(&self.conn.routes).get_mut(&self.nsp) {
            route.acks.clear();
        }
    }

    /// Drops the transport without a word (a network failure, as the server sees it), for
    /// every namespace of the connection. Dropping the last client of a connection does the
    /// same.
    pub fn close(self) {
        let _ = self.conn.out.unbounded_send(Ws::Close(None));
    }

    /// Why the client was disconnected, once it was: `io server disconnect` for a server's
    /// namespace disconnect, `io client disconnect` after [`TestClient::disconnect`],
    /// `transport close` when the connection ended.
    pub fn disconnect_reason(&self) -> Option<String> {
        lock(&self.disconnected).clone()
    }
}

fn handle(packet: &Packet, route: &mut Route) {
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
            let reply = packet
                .data
                .as_ref()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d.as_str()).ok());
            let field = |name: &str| {
                reply
                    .as_ref()
                    .and_then(|v| v.get(name).and_then(|s| s.as_str()).map(str::to_owned))
            };
            let sid = field("sid").unwrap_or_default();
            *lock(&route.recovery.pid) = field("pid");
            if let Some(tx) = route.connect.take() {
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
            if let Some(tx) = route.connect.take() {
                let _ = tx.send(Err(err));
            }
        }
        PacketType::Event | PacketType::BinaryEvent => {
            let event = packet
                .event_name()
                .map(|n| n.into_owned())
                .unwrap_or_default();
            let mut payload = payload();
            // With recovery on, an event without ack id ends with its offset: remembered for
            // the next reconnection and taken off the arguments.
            if packet.id.is_none() && lock(&route.recovery.pid).is_some() {
                if let Some((offset, rest)) = split_offset(&payload) {
                    *lock(&route.recovery.last_offset) = Some(offset);
                    payload = rest;
                }
            }
            let _ = route.events.unbounded_send(Received {
                event,
                payload,
                ack: packet.id,
            });
        }
        PacketType::Ack | PacketType::BinaryAck => {
            let Some(id) = packet.id else {
                return;
            };
            if let Some(tx) = route.acks.remove(&id) {
                let _ = tx.send(payload());
            }
        }
        PacketType::Disconnect => {
            *lock(&route.disconnected) = Some("io server disconnect".to_owned());
            // As the JS client does, acknowledgements still awaited fail.
            route.acks.clear();
            route.events.close_channel();
        }
    }
}

/// The trailing offset of an event and the arguments without it. (The JS client leaves the
/// offset in the arguments its listeners see; this client takes it off.)
fn split_offset(payload: &Payload) -> Option<(String, Payload)> {
    let offset = payload.args().last()?.as_str()?.to_owned();
    // Volley's offsets are `<8 id characters>.<at least 8 hex digits>`; a trailing string
    // of another shape (a volatile event's own argument) stays.
    let (prefix, counter) = offset.split_once('.')?;
    if prefix.len() != 8 || counter.len() < 8 || !counter.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let (mut args, attachments) = payload.clone().into_parts();
    args.pop();
    let rest = serde_json::Value::Array(args).to_string();
    Some((offset, Payload::from_wire(&rest, attachments)))
}
