//! Loopback scenarios shared by the runtime crates' tests (feature `test-support`).
//!
//! Each scenario drives a real server over real sockets with a tiny raw HTTP client and an
//! async-tungstenite WebSocket client; a runtime crate's test only binds a listener, starts
//! [`echo`] and supplies a [`Connector`]. Nothing here waits on time to synchronise: clients
//! wait for bytes, and server-side effects are observed through the event log.

use std::future::Future;
use std::io;
use std::pin::pin;
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::Role;
use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use futures::channel::mpsc;
use futures::future::{BoxFuture, Either, select};
use futures::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use volley_core::Sid;
use volley_core::engine::{CloseReason, Config, Engine, Event, OverflowPolicy};

use super::io::read_buf;
use super::{Driver, ServerConfig};
use crate::runtime::Runtime;

/// Opens client connections to the server under test.
pub trait Connector: Send + Sync + 'static {
    /// A client stream.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Connects once.
    fn connect(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// The engine configuration of every scenario: a fast heartbeat, a small payload limit.
pub fn engine_config() -> Config {
    Config {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 10_000,
        ..Config::default()
    }
}

/// The events the echo application saw, in order.
pub struct Events(mpsc::UnboundedReceiver<Event>);

impl Events {
    /// The next event.
    pub async fn next(&mut self) -> Event {
        self.0.next().await.expect("the driver stopped")
    }

    /// The close reason of `sid`, skipping other events.
    pub async fn closed(&mut self, sid: Sid) -> CloseReason {
        loop {
            if let Event::Close { sid: s, reason } = self.next().await {
                if s == sid {
                    return reason;
                }
            }
        }
    }

    /// Waits for the upgrade of `sid`, skipping other events.
    pub async fn upgraded(&mut self, sid: Sid) {
        loop {
            if let Event::Upgrade { sid: s } = self.next().await {
                if s == sid {
                    return;
                }
            }
        }
    }
}

/// The engine configuration of the byte-budget scenarios: 512 KiB messages fit, the budget
/// is the default (1 MiB), and the heartbeat is the default, so that a client that does not
/// read is not ended by a ping timeout first.
pub fn budget_engine_config(overflow: OverflowPolicy) -> Config {
    Config {
        max_payload: 600_000,
        overflow,
        ..Config::default()
    }
}

/// Starts an [`Engine`] with [`engine_config`] whose application echoes every message, and
/// logs every event.
pub fn echo<R: Runtime>(runtime: R, config: ServerConfig) -> (Driver<Engine, R>, Events) {
    echo_with(runtime, config, engine_config())
}

/// [`echo`] with another engine configuration.
pub fn echo_with<R: Runtime>(
    runtime: R,
    config: ServerConfig,
    engine: Config,
) -> (Driver<Engine, R>, Events) {
    let (tx, rx) = mpsc::unbounded();
    let engine = Engine::new(engine, [7; 32]);
    let driver = Driver::start(engine, runtime, config, move |engine, event, now| {
        if let Event::Message { sid, message } = &event {
            let _ = engine.send(*sid, message.clone(), now);
        }
        let _ = tx.unbounded_send(event);
    });
    (driver, Events(rx))
}

/// A running server and the means to talk to it.
pub struct Harness<R: Runtime, C> {
    /// The server's runtime (for client-side pacing only).
    pub runtime: R,
    /// Opens client connections.
    pub connector: C,
    /// The server's driver.
    pub driver: Driver<Engine, R>,
    /// The echo application's event log.
    pub events: Events,
    /// Completes when the accept loop returns.
    pub accepting: BoxFuture<'static, io::Result<()>>,
}

/// A response as the raw client read it.
#[derive(Debug)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Header fields, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` framed).
    pub body: Bytes,
}

impl HttpResponse {
    /// The first field named `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("text body")
    }
}

/// A minimal HTTP/1.1 client over one connection.
pub struct Client<S> {
    stream: S,
    buf: BytesMut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Wraps a connected stream.
    pub fn new(stream: S) -> Self {
        Client {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Writes raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Sends a request (`Content-Length` framed when `body` is non-empty or the method is
    /// POST) and reads its response.
    pub async fn request(
        &mut self,
        method: &str,
        target: &str,
        extra_headers: &str,
        body: &[u8],
    ) -> io::Result<HttpResponse> {
        let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\n{extra_headers}");
        if method == "POST" || !body.is_empty() {
            raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        raw.push_str("\r\n");
        let mut bytes = raw.into_bytes();
        bytes.extend_from_slice(body);
        self.send_raw(&bytes).await?;
        self.read_response().await
    }

    /// `GET target`.
    pub async fn get(&mut self, target: &str) -> io::Result<HttpResponse> {
        self.request("GET", target, "", b"").await
    }

    /// `POST target` with `body`.
    pub async fn post(&mut self, target: &str, body: &[u8]) -> io::Result<HttpResponse> {
        self.request("POST", target, "", body).await
    }

    /// Reads one response.
    pub async fn read_response(&mut self) -> io::Result<HttpResponse> {
        self.read_response_with(true).await
    }

    /// `HEAD target`: the response's `Content-Length` describes a body that is not sent.
    pub async fn head(&mut self, target: &str) -> io::Result<HttpResponse> {
        let raw = format!("HEAD {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        self.send_raw(raw.as_bytes()).await?;
        self.read_response_with(false).await
    }

    async fn read_response_with(&mut self, with_body: bool) -> io::Result<HttpResponse> {
        let end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..end])
            .map_err(|_| io::Error::other("response head is not UTF-8"))?
            .to_owned();
        self.buf.advance(end + 4);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| io::Error::other("bad status line"))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(Ok(0), |(_, v)| v.parse())
            .map_err(|_| io::Error::other("bad Content-Length"))?;
        let length = if with_body { length } else { 0 };
        while self.buf.len() < length {
            self.fill().await?;
        }
        let body = self.buf.split_to(length).freeze();
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    /// Whether the server closed the connection (reads until EOF, discarding; an error such
    /// as a reset counts as closed too).
    pub async fn closed(&mut self) -> bool {
        loop {
            match read_buf(&mut self.stream, &mut self.buf, 4096).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => self.buf.clear(),
            }
        }
    }

    /// Bytes received and not consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    /// Turns the connection into a WebSocket client after a 101 (keeping frames that came
    /// right behind it).
    pub async fn into_websocket(self) -> WebSocketStream<S> {
        let leftover = self.buf.to_vec();
        WebSocketStream::from_partially_read(self.stream, leftover, Role::Client, None).await
    }

    async fn fill(&mut self) -> io::Result<()> {
        match read_buf(&mut self.stream, &mut self.buf, 4096).await? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            _ => Ok(()),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

const POLLING: &str = "/engine.io/?EIO=4&transport=polling";

fn polling_sid(sid: Sid) -> String {
    format!("{POLLING}&sid={sid}")
}

/// The sid inside an open packet `0{"sid":"…",…}`.
fn open_sid(packet: &str) -> Sid {
    assert!(packet.starts_with("0{"), "not an open packet: {packet:?}");
    let rest = &packet[packet.find("\"sid\":\"").expect("sid field") + 7..];
    Sid::new(&rest[..rest.find('"').expect("sid end")]).expect("valid sid")
}

impl<R: Runtime, C: Connector> Harness<R, C> {
    /// A connected raw client.
    pub async fn client(&self) -> Client<C::Stream> {
        Client::new(self.connector.connect().await.expect("connect"))
    }

    /// A WebSocket client for `target` (the upgrade done by hand, so no handshake code of
    /// the client library is needed).
    pub async fn websocket(&self, target: &str) -> WebSocketStream<C::Stream> {
        match self.try_websocket(target, "").await {
            Ok(ws) => ws,
            Err(response) => panic!("upgrade refused: {response:?}"),
        }
    }

    /// A WebSocket upgrade for `target` with `extra_headers` (each ending in CRLF): the
    /// stream, or the response that refused it.
    pub async fn try_websocket(
        &self,
        target: &str,
        extra_headers: &str,
    ) -> Result<WebSocketStream<C::Stream>, HttpResponse> {
        let mut client = self.client().await;
        let headers = format!(
            "Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             {extra_headers}"
        );
        let response = client
            .request("GET", target, &headers, b"")
            .await
            .expect("upgrade response");
        if response.status != 101 {
            return Err(response);
        }
        assert_eq!(
            response.header("sec-websocket-accept"),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        Ok(client.into_websocket().await)
    }

    /// A polling handshake on `client`; returns the session id.
    pub async fn handshake(&self, client: &mut Client<C::Stream>) -> Sid {
        let response = client.get(POLLING).await.expect("handshake");
        assert_eq!(response.status, 200, "{response:?}");
        open_sid(response.text())
    }
}

/// Polls `sid` until a packet other than a ping arrives (pings are answered), and returns the
/// packets of that poll.
async fn poll_packets<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut Client<S>,
    sid: Sid,
) -> Vec<String> {
    loop {
        let response = client.get(&polling_sid(sid)).await.expect("poll");
        assert_eq!(response.status, 200, "{response:?}");
        let packets: Vec<String> = response
            .text()
            .split('\x1e')
            .filter(|p| *p != "2")
            .map(str::to_owned)
            .collect();
        if response.text().split('\x1e').any(|p| p == "2") {
            let pong = client.post(&polling_sid(sid), b"3").await.expect("pong");
            assert_eq!(pong.text(), "ok");
        }
        if !packets.is_empty() {
            return packets;
        }
    }
}

/// The next WebSocket message that is not an Engine.IO ping (pings are answered).
async fn ws_next<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Message {
    loop {
        let message = ws.next().await.expect("message").expect("frame");
        if message == Message::text("2") {
            ws.send(Message::text("3")).await.expect("pong");
            continue;
        }
        return message;
    }
}

/// Handshake, `POST 4hello` → `ok`, `GET` → `4hello`, each on a connection of its own.
pub async fn polling_echo<R: Runtime, C: Connector>(mut h: Harness<R, C>) {
    let mut first = h.client().await;
    let sid = h.handshake(&mut first).await;
    assert!(matches!(h.events.next().await, Event::Open { sid: s, .. } if s == sid));
    let mut second = h.client().await;
    let posted = second.post(&polling_sid(sid), b"4hello").await.unwrap();
    assert_eq!((posted.status, posted.text()), (200, "ok"));
    let mut third = h.client().await;
    assert_eq!(poll_packets(&mut third, sid).await, ["4hello"]);
}

/// One TCP connection carries a handshake, a POST, a poll, a 404 and a last request with
/// `Connection: close`, after which the server closes.
pub async fn keep_alive<R: Runtime, C: Connector>(h: Harness<R, C>) {
    let mut client = h.client().await;
    let sid = h.handshake(&mut client).await;
    let posted = client.post(&polling_sid(sid), b"4one").await.unwrap();
    assert_eq!(posted.text(), "ok");
    assert_eq!(poll_packets(&mut client, sid).await, ["4one"]);
    let missing = client.get("/elsewhere").await.unwrap();
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("connection"), None);
    let posted = client.post(&polling_sid(sid), b"4two").await.unwrap();
    assert_eq!(posted.text(), "ok");
    let last = client
        .request("GET", &polling_sid(sid), "Connection: close\r\n", b"")
        .await
        .unwrap();
    assert_eq!(last.text(), "4two");
    assert_eq!(last.header("connection"), Some("close"));
    assert!(client.closed().await);
}

/// Paths outside the engine get the fallback (404 by default), and the connection stays.
pub async fn not_found<R: Runtime, C: Connector>(h: Harness<R, C>) {
    let mut client = h.client().await;
    for target in ["/", "/engine.io.js", "/socket.io/?EIO=4&transport=polling"] {
        let response = client.get(target).await.unwrap();
        assert_eq!(response.status, 404, "{target}");
    }
    let head = client.head("/").await.unwrap();
    assert_eq!(head.status, 404);
    assert_eq!(head.header("content-length"), Some("9"));
    assert!(head.body.is_empty());
    let sid = h.handshake(&mut client).await;
    assert!(!sid.as_str().is_empty());
}

/// A custom fallback answers what the engine does not own.
pub async fn custom_fallback<R: Runtime, C: Connector>(h: Harness<R, C>) {
    let mut client = h.client().await;
    let response = client.get("/health").await.unwrap();
    assert_eq!((response.status, response.text()), (200, "healthy"));
}

/// The fallback of [`custom_fallback`].
pub fn health_config() -> ServerConfig {
    ServerConfig::new().fallback(|head| {
        if head.path() == "/health" {
            volley_core::http::Response::new(200).body("healthy")
        } else {
            volley_core::http::Response::new(404)
        }
    })
}

/// A POST over `max_payload` gets 413 and a close, whether its size is announced
/// (`Content-Length`) or discovered (chunked), and its session is closed (engine.io 6.6).
pub async fn payload_too_large<R: Runtime, C: Connector>(mut h: Harness<R, C>) {
    let mut client = h.client().await;
    let sid = h.handshake(&mut client).await;
    let big = vec![b'4'; 20_000];
    let mut announced = h.client().await;
    let response = announced.post(&polling_sid(sid), &big).await.unwrap();
    assert_eq!(response.status, 413);
    assert!(announced.closed().await);
    assert_eq!(h.events.closed(sid).await, CloseReason::TransportError);
    let gone = client.get(&polling_sid(sid)).await.unwrap();
    assert_eq!(gone.status, 400);

    let sid = h.handshake(&mut client).await;
    let mut chunked = h.client().await;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
        polling_sid(sid)
    );
    chunked.send_raw(head.as_bytes()).await.unwrap();
    let mut chunk = format!("{:x}\r\n", big.len()).into_bytes();
    chunk.extend_from_slice(&big);
    chunk.extend_from_slice(b"\r\n0\r\n\r\n");
    // The server may answer and close before it has read all of this.
    let _ = chunked.send_raw(&chunk).await;
    let response = chunked.read_response().await.unwrap();
    assert_eq!(response.status, 413);
    assert!(chunked.closed().await);
    assert_eq!(h.events.closed(sid).await, CloseReason::TransportError);
}

/// A second WebSocket for a session that already has one (or a probe) completes its
/// handshake and is then closed with a close frame; the session goes on.
pub async fn second_websocket<R: Runtime, C: Connector>(h: Harness<R, C>) {
    let mut ws = h.websocket("/engine.io/?EIO=4&transport=websocket").await;
    let open = ws.next().await.unwrap().unwrap();
    let sid = open_sid(open.to_text().unwrap());
    let mut second = h
        .websocket(&format!("/engine.io/?EIO=4&transport=websocket&sid={sid}"))
        .await;
    match second.next().await {
        Some(Ok(Message::Close(_))) => {}
        other => panic!("expected a close frame, got {other:?}"),
    }
    ws.send(Message::text("4still")).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text("4still"));

    let mut client = h.client().await;
    let sid = h.handshake(&mut client).await;
    let target = format!("/engine.io/?EIO=4&transport=websocket&sid={sid}");
    let _probe = h.websocket(&target).await;
    let mut beside = h.websocket(&target).await;
    match beside.next().await {
        Some(Ok(Message::Close(_))) => {}
        other => panic!("expected a close frame, got {other:?}"),
    }
    let posted = client.post(&polling_sid(sid), b"4polling").await.unwrap();
    assert_eq!(posted.text(), "ok");
}

/// A malformed head gets 400 and a close.
pub async fn malformed_head<R: Runtime, C: Connector>(h: Harness<R, C>) {
    let mut client = h.client().await;
    client
        .send_raw(b"GET /engine.io/ HTTP/1.1\r\nHost: a\r\nNo colon here\r\n\r\n")
        .await
        .unwrap();
    let response = client.read_response().await.unwrap();
    assert_eq!(response.status, 400);
    assert_eq!(response.header("connection"), Some("close"));
    assert!(client.closed().await);
}

/// WebSocket only: open packet, text and binary echo, a server ping answered twice (the
/// session outlives two heartbeat periods), then a client close reported as such.
pub async fn websocket_only<R: Runtime, C: Connector>(mut h: Harness<R, C>) {
    let mut ws = h.websocket("/engine.io/?EIO=4&transport=websocket").await;
    let open = ws.next().await.unwrap().unwrap();
    let sid = open_sid(open.to_text().unwrap());
    assert!(open.to_text().unwrap().contains("\"upgrades\":[]"));
    ws.send(Message::text("4hello")).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text("4hello"));
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::binary(vec![1u8, 2, 3]));
    for _ in 0..2 {
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("2"));
        ws.send(Message::text("3")).await.unwrap();
    }
    ws.close(None).await.unwrap();
    assert_eq!(h.events.closed(sid).await, CloseReason::TransportClose);
    let (sessions, conns) = h
        .driver
        .handle()
        .call(|engine, _| (engine.session_count(), engine.connection_count()))
        .await
        .unwrap();
    assert_eq!((sessions, conns), (0, 0));
}

/// Polling, then `2probe` → `3probe`, `5`, then the echo over the WebSocket.
pub async fn upgrade<R: Runtime, C: Connector>(mut h: Harness<R, C>) {
    let mut client = h.client().await;
    let sid = h.handshake(&mut client).await;
    let mut ws = h
        .websocket(&format!("/engine.io/?EIO=4&transport=websocket&sid={sid}"))
        .await;
    ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text("3probe"));
    ws.send(Message::text("5")).await.unwrap();
    h.events.upgraded(sid).await;
    ws.send(Message::text("4over ws")).await.unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text("4over ws"));
    // Polling is over for this session.
    let refused = client.get(&polling_sid(sid)).await.unwrap();
    assert_eq!(refused.status, 400);
}

/// A client that disconnects while its poll is parked closes the session (transport error),
/// and the engine forgets the connection.
pub async fn disconnect_mid_poll<R: Runtime, C: Connector>(mut h: Harness<R, C>) {
    let mut client = h.client().await;
    let sid = h.handshake(&mut client).await;
    let mut poller = h.client().await;
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        polling_sid(sid)
    );
    poller.send_raw(head.as_bytes()).await.unwrap();
    drop(poller);
    assert_eq!(h.events.closed(sid).await, CloseReason::TransportError);
    let (sessions, conns) = h
        .driver
        .handle()
        .call(|engine, _| (engine.session_count(), engine.connection_count()))
        .await
        .unwrap();
    assert_eq!((sessions, conns), (0, 0));
}

/// A head trickled one byte at a time, each well within the head timeout, is cut off when
/// the whole head's deadline passes: 408, then a close.
pub async fn slow_loris<R: Runtime, C: Connector>(h: Harness<R, C>) {
    let mut client = h.client().await;
    let started = Instant::now();
    let trickle = b"GET /engine.io/?EIO=4&transport=polling HTTP/1.1\r\nX-Slow: ";
    let mut sent = 0;
    loop {
        // Pacing the attack, not synchronising: the server's answer ends the loop.
        let byte = [trickle.get(sent).copied().unwrap_or(b'a')];
        sent += 1;
        if client.send_raw(&byte).await.is_err() {
            break;
        }
        let pause = pin!(h.runtime.sleep(Duration::from_millis(20)));
        let read = read_buf(&mut client.stream, &mut client.buf, 4096);
        if let Either::Left(_) = select(pin!(read), pause).await {
            break; // an answer, a close or a reset
        }
    }
    let elapsed = started.elapsed();
    assert!(elapsed >= slow_loris_timeout(), "closed after {elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "closed after {elapsed:?}");
    let response = client.read_response().await.unwrap();
    assert_eq!(response.status, 408);
    assert!(client.closed().await);
}

/// The head timeout [`slow_loris`] runs with.
pub fn slow_loris_timeout() -> Duration {
    Duration::from_millis(300)
}

/// A kept-alive connection that stays quiet past the idle timeout is closed.
pub async fn idle_timeout<R: Runtime, C: Connector>(h: Harness<R, C>) {
    let mut client = h.client().await;
    assert_eq!(client.get("/").await.unwrap().status, 404);
    assert!(client.closed().await);
}

/// Beyond the connection cap a connection gets 503 and a close.
pub async fn connection_cap<R: Runtime, C: Connector>(h: Harness<R, C>) {
    let mut first = h.client().await;
    // Answered, so surely admitted.
    assert_eq!(first.get("/").await.unwrap().status, 404);
    let mut second = h.client().await;
    let response = second.read_response().await.unwrap();
    assert_eq!(response.status, 503);
    assert!(second.closed().await);
    drop(first);
}

/// The configuration of [`cap_makes_room`]: room for three connections.
pub fn cap_config() -> ServerConfig {
    ServerConfig::new().max_connections(3)
}

/// At the cap, a new connection makes room by closing the oldest connection that has not
/// completed a request head (silent ones here), so a real client gets in at once; once every
/// connection has sent a request, a new one gets 503.
pub async fn cap_makes_room<R: Runtime, C: Connector>(h: Harness<R, C>) {
    let mut silent_a = h.client().await;
    let mut silent_b = h.client().await;
    // Answered, so admitted, and the silent ones before it (admission follows accept order).
    let mut busy = h.client().await;
    assert_eq!(busy.get("/").await.unwrap().status, 404);
    let mut first = h.client().await;
    h.handshake(&mut first).await;
    assert!(
        silent_a.closed().await,
        "the oldest silent connection is closed first"
    );
    let mut second = h.client().await;
    h.handshake(&mut second).await;
    assert!(silent_b.closed().await);
    // No connection left without a request: the cap holds.
    let mut late = h.client().await;
    let refused = late.read_response().await.unwrap();
    assert_eq!(refused.status, 503);
    assert!(late.closed().await);
    // Those that made it are still served.
    assert_eq!(busy.get("/").await.unwrap().status, 404);
    assert_eq!(first.get("/").await.unwrap().status, 404);
}

/// The configuration of [`per_address_limit`]: two connections per address.
pub fn per_address_config() -> ServerConfig {
    ServerConfig::new().max_connections_per_address(2)
}

/// A third connection from one address gets 503 at once, even though the server has room.
pub async fn per_address_limit<R: Runtime, C: Connector>(h: Harness<R, C>) {
    let mut first = h.client().await;
    assert_eq!(first.get("/").await.unwrap().status, 404);
    let _silent = h.client().await;
    let mut third = h.client().await;
    let refused = third.read_response().await.unwrap();
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(third.closed().await);
    assert_eq!(first.get("/").await.unwrap().status, 404);
}

/// The configuration of [`forwarded_address_limit`]: one connection per client address,
/// the loopback peer being a trusted proxy.
pub fn forwarded_config() -> ServerConfig {
    ServerConfig::new()
        .max_connections_per_address(1)
        .trusted_proxies([std::net::IpAddr::from([127, 0, 0, 1])])
}

/// Behind a trusted proxy, connections count against the last `X-Forwarded-For` entry of
/// their requests (what the client put before it does not matter), and not before their
/// first request.
pub async fn forwarded_address_limit<R: Runtime, C: Connector>(h: Harness<R, C>) {
    let forwarded = |ip: &str| format!("X-Forwarded-For: {ip}\r\n");
    // Connections the proxy opened and has not used yet count against no one.
    let _idle_a = h.client().await;
    let _idle_b = h.client().await;
    let mut alice = h.client().await;
    let served = alice
        .request("GET", POLLING, &forwarded("10.0.0.1"), b"")
        .await
        .unwrap();
    assert_eq!(served.status, 200);
    let mut again = h.client().await;
    let refused = again
        .request("GET", POLLING, &forwarded("10.0.0.9, 10.0.0.1"), b"")
        .await
        .unwrap();
    assert_eq!(refused.status, 503);
    assert!(again.closed().await);
    let mut bob = h.client().await;
    let served = bob
        .request("GET", POLLING, &forwarded("10.0.0.1, 10.0.0.2"), b"")
        .await
        .unwrap();
    assert_eq!(served.status, 200);
    // Alice's connection is still hers.
    let served = alice
        .request("GET", "/", &forwarded("10.0.0.1"), b"")
        .await
        .unwrap();
    assert_eq!(served.status, 404);
}

/// The server closes a WebSocket session through the handle: the client gets the close
/// packet, then a close frame.
pub async fn server_close<R: Runtime, C: Connector>(mut h: Harness<R, C>) {
    let mut ws = h.websocket("/engine.io/?EIO=4&transport=websocket").await;
    let open = ws.next().await.unwrap().unwrap();
    let sid = open_sid(open.to_text().unwrap());
    h.driver
        .handle()
        .call(move |engine, now| engine.close(sid, now))
        .await
        .unwrap();
    assert_eq!(ws_next(&mut ws).await, Message::text("1"));
    assert!(matches!(ws_next(&mut ws).await, Message::Close(_)));
    assert_eq!(h.events.closed(sid).await, CloseReason::ForcedClose);
}

/// Shutdown closes idle connections, stops the accept loop, and completes once the
/// connections are gone.
pub async fn graceful_shutdown<R: Runtime, C: Connector>(h: Harness<R, C>) {
    let mut idle = h.client().await;
    assert_eq!(idle.get("/").await.unwrap().status, 404);
    h.driver.shutdown().await;
    assert!(idle.closed().await);
    h.accepting.await.expect("accept loop");
    assert_eq!(h.driver.connection_count(), 0);
    assert!(h.driver.is_stopping());
}

/// The CORS options of [`cors_preflight`]: one allowed origin, with credentials.
pub fn cors_config() -> ServerConfig {
    ServerConfig::new().cors(super::Cors::origins(["https://app.example"]).credentials(true))
}

/// A preflight is answered by the driver (204 with the allow headers); actual answers carry
/// the allow-origin headers for an allowed origin and none for another.
pub async fn cors_preflight<R: Runtime, C: Connector>(h: Harness<R, C>) {
    let mut client = h.client().await;
    let preflight = client
        .request(
            "OPTIONS",
            POLLING,
            "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n\
             Access-Control-Request-Headers: content-type\r\n",
            b"",
        )
        .await
        .unwrap();
    assert_eq!(preflight.status, 204, "{preflight:?}");
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(
        preflight.header("access-control-allow-credentials"),
        Some("true")
    );
    assert!(
        preflight
            .header("access-control-allow-methods")
            .is_some_and(|m| m.contains("POST"))
    );
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("content-type")
    );
    let allowed = client
        .request("GET", POLLING, "Origin: https://app.example\r\n", b"")
        .await
        .unwrap();
    assert_eq!(allowed.status, 200);
    assert!(allowed.text().starts_with("0{"));
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(allowed.header("vary"), Some("Origin"));
    let other = client
        .request("GET", POLLING, "Origin: https://evil.example\r\n", b"")
        .await
        .unwrap();
    assert_eq!(other.status, 200);
    assert_eq!(other.header("access-control-allow-origin"), None);
}

/// With CORS listing origins, a WebSocket upgrade whose `Origin` is not listed is refused
/// with 403 (a fresh WebSocket session and a polling session's upgrade alike); a listed
/// origin, and a handshake without `Origin` (a native client), are served. Polling from
/// another origin is answered without the allow-origin headers, so the browser keeps the
/// page from reading it.
pub async fn cors_websocket_origin<R: Runtime, C: Connector>(h: Harness<R, C>) {
    const WS: &str = "/engine.io/?EIO=4&transport=websocket";
    let evil = "Origin: https://evil.example\r\n";
    let refused = h.try_websocket(WS, evil).await.err().expect("refused");
    assert_eq!(refused.status, 403, "{refused:?}");
    assert_eq!(refused.text(), "Forbidden");
    let mut allowed = h
        .try_websocket(WS, "Origin: https://app.example\r\n")
        .await
        .expect("a listed origin is served");
    let open = allowed.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with("0{"));
    let mut native = h.websocket(WS).await;
    assert!(
        native
            .next()
            .await
            .unwrap()
            .unwrap()
            .to_text()
            .unwrap()
            .starts_with("0{")
    );
    // A polling session from the listed origin may not be upgraded from another one.
    let mut client = h.client().await;
    let open = client
        .request("GET", POLLING, "Origin: https://app.example\r\n", b"")
        .await
        .unwrap();
    let sid = open_sid(open.text());
    let target = format!("{WS}&sid={sid}");
    let refused = h.try_websocket(&target, evil).await.err().expect("refused");
    assert_eq!(refused.status, 403, "{refused:?}");
    let foreign_poll = client.request("GET", POLLING, evil, b"").await.unwrap();
    assert_eq!(foreign_poll.header("access-control-allow-origin"), None);
}

/// Without CORS the driver checks no origin: a WebSocket upgrade from any page is served
/// (what [`same_origin_config`] shows how to close).
pub async fn websocket_origin_unchecked<R: Runtime, C: Connector>(h: Harness<R, C>) {
    let mut ws = h
        .try_websocket(
            "/engine.io/?EIO=4&transport=websocket",
            "Origin: https://evil.example\r\n",
        )
        .await
        .expect("no origin check without CORS");
    assert!(
        ws.next()
            .await
            .unwrap()
            .unwrap()
            .to_text()
            .unwrap()
            .starts_with("0{")
    );
}

/// Same-origin only, with `allow_request`: a request naming an `Origin` must name the
/// server's own host (`Host`); one without `Origin` (not from a browser page) passes. The
/// example of docs/deployment.md.
pub fn same_origin_config() -> ServerConfig {
    ServerConfig::new().allow_request(|head| match head.header("origin") {
        None => true,
        Some(origin) => {
            let host = origin.split_once("://").map_or("", |(_, host)| host);
            head.header("host") == Some(host)
        }
    })
}

/// [`same_origin_config`] refuses both transports from another origin with 403, and serves
/// the server's own origin and native clients.
pub async fn same_origin_only<R: Runtime, C: Connector>(h: Harness<R, C>) {
    const WS: &str = "/engine.io/?EIO=4&transport=websocket";
    let evil = "Origin: https://evil.example\r\n";
    let own = "Origin: http://localhost\r\n";
    let refused = h.try_websocket(WS, evil).await.err().expect("refused");
    assert_eq!(refused.status, 403, "{refused:?}");
    let mut client = h.client().await;
    let refused = client.request("GET", POLLING, evil, b"").await.unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(refused.text(), r#"{"code":4,"message":"Forbidden"}"#);
    let mut ws = h.try_websocket(WS, own).await.expect("own origin");
    assert!(
        ws.next()
            .await
            .unwrap()
            .unwrap()
            .to_text()
            .unwrap()
            .starts_with("0{")
    );
    let mut client = h.client().await;
    let served = client.request("GET", POLLING, own, b"").await.unwrap();
    assert_eq!(served.status, 200);
    assert!(served.text().starts_with("0{"));
    let served = client.get(POLLING).await.unwrap();
    assert_eq!(served.status, 200);
}

/// The `allow_request` of [`forbidden`]: only requests with `X-Token: ok`.
pub fn forbidden_config() -> ServerConfig {
    ServerConfig::new().allow_request(|head| head.header("x-token") == Some("ok"))
}

/// A request the application refuses gets 403 with Engine.IO's code 4, before reaching the
/// machine; an allowed one goes through.
pub async fn forbidden<R: Runtime, C: Connector>(h: Harness<R, C>) {
    let mut client = h.client().await;
    let refused = client.get(POLLING).await.unwrap();
    assert_eq!(refused.status, 403);
    assert_eq!(refused.text(), r#"{"code":4,"message":"Forbidden"}"#);
    let allowed = client
        .request("GET", POLLING, "X-Token: ok\r\n", b"")
        .await
        .unwrap();
    assert_eq!(allowed.status, 200);
    assert!(allowed.text().starts_with("0{"));
}

/// A WebSocket client that never reads while the server sends it megabytes: its session is
/// closed (by the engine's queue bound or the driver's per-connection queue) after a bounded
/// number of messages, and another client is served all along.
pub async fn slow_reader<R: Runtime, C: Connector>(mut h: Harness<R, C>) {
    let mut stalled = h.websocket("/engine.io/?EIO=4&transport=websocket").await;
    let open = stalled.next().await.unwrap().unwrap();
    let sid = open_sid(open.to_text().unwrap());
    let mut healthy = h.websocket("/engine.io/?EIO=4&transport=websocket").await;
    let _ = healthy.next().await.unwrap().unwrap();
    let chunk = volley_core::Utf8Bytes::from("x".repeat(8 * 1024));
    let mut sent = 0usize;
    let mut refused = false;
    // 200k messages of 8 KiB would be 1.6 GB: the bound must stop this long before.
    while sent < 200_000 {
        let text = chunk.clone();
        let accepted = h
            .driver
            .handle()
            .call(move |engine, now| {
                engine
                    .send(sid, volley_core::engine::Message::Text(text), now)
                    .is_ok()
            })
            .await
            .unwrap();
        if !accepted {
            refused = true;
            break;
        }
        sent += 1;
        if sent % 8 == 0 {
            // The other client is served meanwhile (and answers its pings in time).
            healthy.send(Message::text("4ping")).await.unwrap();
            assert_eq!(ws_next(&mut healthy).await, Message::text("4ping"));
        }
    }
    assert!(refused, "the stalled session was never cut off");
    let reason = h.events.closed(sid).await;
    // Whichever bound trips first: the engine's queue, the driver's per-connection queue, or
    // (on a slow machine) the heartbeat the stalled client never answers.
    assert!(
        matches!(
            reason,
            CloseReason::SlowClient | CloseReason::TransportError | CloseReason::PingTimeout
        ),
        "{reason:?}"
    );
    healthy.send(Message::text("4still")).await.unwrap();
    assert_eq!(ws_next(&mut healthy).await, Message::text("4still"));
    drop(stalled);
}

/// The size of the messages the byte-budget scenarios flood with.
const BIG: usize = 512 * 1024;

/// Sends 512 KiB messages on `ws` without ever reading, until one makes no progress for two
/// seconds (the server stopped reading and TCP pushed back), a send fails (the server dropped
/// the connection), or 400 (200 MB) went out. Returns how many were sent and whether the
/// writes stalled. `check` runs every fourth message.
async fn flood<R: Runtime, S: AsyncRead + AsyncWrite + Unpin>(
    runtime: &R,
    ws: &mut WebSocketStream<S>,
    mut check: impl AsyncFnMut(),
) -> (usize, bool) {
    let text = format!("4{}", "x".repeat(BIG));
    let mut sent = 0;
    while sent < 400 {
        let send = pin!(ws.send(Message::text(text.clone())));
        let limit = pin!(runtime.sleep(Duration::from_secs(2)));
        match select(send, limit).await {
            Either::Left((Ok(()), _)) => sent += 1,
            Either::Left((Err(_), _)) => return (sent, false),
            Either::Right(_) => return (sent, true),
        }
        if sent % 4 == 0 {
            check().await;
        }
    }
    (sent, false)
}

/// The largest number of bytes the engine held queued for `sid` so far, and whether it is open.
async fn queue_state<R: Runtime>(h: &Harness<R, impl Connector>, sid: Sid) -> (usize, bool) {
    h.driver
        .handle()
        .call(move |engine, _| (engine.queued_bytes(sid), engine.contains(sid)))
        .await
        .unwrap()
}

/// One 512 KiB message from the server to `sid`: whether the engine took it.
async fn server_send<R: Runtime>(
    h: &Harness<R, impl Connector>,
    sid: Sid,
) -> Result<(), volley_core::engine::SendError> {
    let text = volley_core::Utf8Bytes::from("y".repeat(BIG));
    h.driver
        .handle()
        .call(move |engine, now| engine.send(sid, volley_core::engine::Message::Text(text), now))
        .await
        .unwrap()
}

/// Echo over a second WebSocket still answers.
async fn still_echoes<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) {
    ws.send(Message::text("4still")).await.unwrap();
    assert_eq!(ws_next(ws).await, Message::text("4still"));
}

/// (With [`budget_engine_config`]`(Close)`.) A client floods 512 KiB events at the echo and
/// never reads: its queued bytes never exceed the 1 MiB budget, and it is closed as a slow
/// client, while another client's echo keeps working.
pub async fn byte_budget_close<R: Runtime, C: Connector>(mut h: Harness<R, C>) {
    let mut stalled = h.websocket("/engine.io/?EIO=4&transport=websocket").await;
    let open = stalled.next().await.unwrap().unwrap();
    let sid = open_sid(open.to_text().unwrap());
    let mut healthy = h.websocket("/engine.io/?EIO=4&transport=websocket").await;
    let _ = healthy.next().await.unwrap().unwrap();
    let mut most = 0;
    let (sent, _) = flood(&h.runtime, &mut stalled, async || {
        most = most.max(queue_state(&h, sid).await.0);
    })
    .await;
    assert!(sent < 400, "the server read 200 MB without pushing back");
    let (bytes, open) = queue_state(&h, sid).await;
    assert!(
        most.max(bytes) <= 1024 * 1024,
        "{} bytes queued",
        most.max(bytes)
    );
    if open {
        // The echo has not overflowed the queue yet (the reader stopped first): two more
        // messages fill the budget, the third closes the session.
        let refused = [
            server_send(&h, sid).await,
            server_send(&h, sid).await,
            server_send(&h, sid).await,
        ];
        assert!(refused.iter().any(Result::is_err), "{refused:?}");
    }
    assert_eq!(h.events.closed(sid).await, CloseReason::SlowClient);
    assert_eq!(queue_state(&h, sid).await, (0, false));
    still_echoes(&mut healthy).await;
    drop(stalled);
}

/// (With [`budget_engine_config`]`(Reject)`.) The same flood: the session stays, sends to it
/// fail with `BufferFull`, the server stops reading it (the client's writes stall), and
/// another client's echo keeps working.
pub async fn byte_budget_reject<R: Runtime, C: Connector>(h: Harness<R, C>) {
    let mut stalled = h.websocket("/engine.io/?EIO=4&transport=websocket").await;
    let open = stalled.next().await.unwrap().unwrap();
    let sid = open_sid(open.to_text().unwrap());
    let mut healthy = h.websocket("/engine.io/?EIO=4&transport=websocket").await;
    let _ = healthy.next().await.unwrap().unwrap();
    let mut most = 0;
    let (sent, stalled_writes) = flood(&h.runtime, &mut stalled, async || {
        most = most.max(queue_state(&h, sid).await.0);
    })
    .await;
    assert!(
        stalled_writes,
        "the client's writes never stalled ({sent} sent)"
    );
    assert!(sent < 400);
    let (bytes, open) = queue_state(&h, sid).await;
    assert!(open, "the session was closed");
    assert!(
        most.max(bytes) <= 1024 * 1024,
        "{} bytes queued",
        most.max(bytes)
    );
    // The budget holds two of these: the third send at the latest is refused.
    let sends = [
        server_send(&h, sid).await,
        server_send(&h, sid).await,
        server_send(&h, sid).await,
    ];
    assert!(
        sends.contains(&Err(volley_core::engine::SendError::BufferFull(sid))),
        "{sends:?}"
    );
    still_echoes(&mut healthy).await;
    assert!(queue_state(&h, sid).await.1, "the session was closed");
    drop(stalled);
}

/// A WebSocket message over `max_payload` is answered with close code 1009, after the open
/// packet, even when it follows the upgrade request at once.
pub async fn websocket_message_too_big<R: Runtime, C: Connector>(mut h: Harness<R, C>) {
    let mut ws = h.websocket("/engine.io/?EIO=4&transport=websocket").await;
    // Sent before the open packet is read.
    let big = format!("4{}", "x".repeat(20_000));
    ws.send(Message::text(big)).await.unwrap();
    let open = ws.next().await.unwrap().unwrap();
    let sid = open_sid(open.to_text().unwrap());
    let close = loop {
        match ws.next().await.expect("a close frame").expect("a frame") {
            Message::Close(frame) => break frame,
            Message::Text(t) if t.as_str() == "2" => continue,
            other => panic!("unexpected {other:?}"),
        }
    };
    let frame = close.expect("a close code");
    assert_eq!(u16::from(frame.code), 1009);
    assert_eq!(h.events.closed(sid).await, CloseReason::TransportError);
}

/// CORS origins given by a predicate: `https://app.example` and its subdomains.
pub fn cors_origin_fn_config() -> ServerConfig {
    ServerConfig::new().cors(super::Cors::origin_fn(|origin| {
        origin == "https://app.example" || origin.ends_with(".app.example")
    }))
}

/// (With [`cors_origin_fn_config`].) Polling answers name an origin the predicate accepts and
/// no other; a WebSocket upgrade from a refused origin gets `403`, from an accepted one `101`.
pub async fn cors_origin_fn<R: Runtime, C: Connector>(h: Harness<R, C>) {
    let mut client = h.client().await;
    let sub = "Origin: https://eu.app.example\r\n";
    let evil = "Origin: https://app.example.evil\r\n";
    let allowed = client.request("GET", POLLING, sub, b"").await.unwrap();
    assert_eq!(allowed.status, 200);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://eu.app.example")
    );
    assert_eq!(allowed.header("vary"), Some("Origin"));
    let foreign = client.request("GET", POLLING, evil, b"").await.unwrap();
    assert_eq!(foreign.status, 200);
    assert_eq!(foreign.header("access-control-allow-origin"), None);
    const WS: &str = "/engine.io/?EIO=4&transport=websocket";
    let refused = h.try_websocket(WS, evil).await.err().expect("refused");
    assert_eq!(refused.status, 403, "{refused:?}");
    let mut ws = h.try_websocket(WS, sub).await.expect("an accepted origin");
    let open = ws.next().await.unwrap().unwrap();
    assert!(open.to_text().unwrap().starts_with("0{"));
}

/// What the hooks of [`hooks_config`] saw: one line per refusal.
static REFUSALS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// `on_connection_error` logging each refusal (code, message, method, path, `X-Client`),
/// `headers` adding `X-Every`, `initial_headers` adding `X-Initial`, and `allow_request`
/// refusing requests with `X-Block`.
pub fn hooks_config() -> ServerConfig {
    ServerConfig::new()
        .on_connection_error(|e| {
            let line = format!(
                "{} {} {} {} {}",
                e.code as u8,
                e.message,
                e.request.method_str(),
                e.request.path(),
                e.request.header("x-client").unwrap_or("-"),
            );
            REFUSALS.lock().unwrap().push(line);
        })
        .headers(|_, headers| headers.push(("X-Every", "1".to_owned())))
        .initial_headers(|head, headers| {
            let client = head.header("x-client").unwrap_or("-").to_owned();
            headers.push(("X-Initial", client));
        })
        .allow_request(|head| head.header("x-block").is_none())
}

/// (With [`hooks_config`].) The handshake (polling `200` and WebSocket `101`) carries the
/// headers of both hooks, later responses only those of `headers`; refusals by the engine and
/// by `allow_request` reach `on_connection_error` with their code and request.
pub async fn engine_hooks<R: Runtime, C: Connector>(h: Harness<R, C>) {
    let mut client = h.client().await;
    let open = client
        .request("GET", POLLING, "X-Client: a\r\n", b"")
        .await
        .unwrap();
    assert_eq!(open.status, 200);
    assert_eq!(open.header("x-initial"), Some("a"));
    assert_eq!(open.header("x-every"), Some("1"));
    let sid = open_sid(open.text());
    let posted = client.post(&polling_sid(sid), b"4hi").await.unwrap();
    assert_eq!(posted.text(), "ok");
    assert_eq!(posted.header("x-every"), Some("1"));
    assert_eq!(posted.header("x-initial"), None);

    let mut upgrade = h.client().await;
    let response = upgrade
        .request(
            "GET",
            "/engine.io/?EIO=4&transport=websocket",
            "Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             X-Client: ws\r\n",
            b"",
        )
        .await
        .unwrap();
    assert_eq!(response.status, 101);
    assert_eq!(response.header("x-initial"), Some("ws"));
    assert_eq!(response.header("x-every"), Some("1"));

    let mut refused = h.client().await;
    let version = refused
        .request(
            "GET",
            "/engine.io/?EIO=9&transport=polling",
            "X-Client: b\r\n",
            b"",
        )
        .await
        .unwrap();
    assert_eq!(version.status, 400);
    assert_eq!(version.header("x-initial"), None);
    let transport = refused
        .request(
            "POST",
            "/engine.io/?EIO=4&transport=carrier-pigeon",
            "X-Client: c\r\n",
            b"",
        )
        .await
        .unwrap();
    assert_eq!(transport.status, 400);
    let mut blocked = h.client().await;
    let forbidden = blocked
        .request("GET", POLLING, "X-Block: 1\r\nX-Client: d\r\n", b"")
        .await
        .unwrap();
    assert_eq!(forbidden.status, 403);
    let log = REFUSALS.lock().unwrap().clone();
    assert_eq!(
        log,
        [
            "5 Unsupported protocol version GET /engine.io/ b",
            "0 Transport unknown POST /engine.io/ c",
            "4 Forbidden GET /engine.io/ d",
        ]
    );
}
