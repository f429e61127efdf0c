//! The reference server: the physical limit the load benchmarks compare Volley with.
//!
//! Plain WebSocket (async-tungstenite on tokio, the same library and buffer sizes as Volley's
//! driver) plus the least HTTP/1.1 that long-polling needs, with the benchmark contract
//! answered by string manipulation (`volley_bench::reference`): the Engine.IO and Socket.IO
//! handshakes are fixed strings, echoes are the received frame sent back, acks swap a prefix,
//! broadcasts hand the same bytes to every connection. No packet decoding, no JSON, no
//! session machine, no buffering bounds; a ping every 25 s on WebSocket, as Volley sends.
//!
//! Port from `PORT` (default 3002), address 127.0.0.1.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tokio::TokioAdapter;
use async_tungstenite::tungstenite::handshake::derive_accept_key;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use volley_bench::reference::{Reply, open_packet, react, session_id};
use volley_bench::wire::split_payload;

/// Volley's driver settings (`server/src/driver/websocket.rs`), so that both servers pay the
/// same per-connection buffers.
const READ_BUFFER: usize = 4 * 1024;
const WRITE_BUFFER: usize = 16 * 1024;
/// The benchmark contract's ping interval.
const PING_INTERVAL: Duration = Duration::from_secs(25);
/// Messages handled before one flush, when they arrive faster than they are answered.
const READ_BATCH: usize = 64;
/// Largest request head and polling body read.
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1_000_000;

type Ws = WebSocketStream<TokioAdapter<TcpStream>>;

/// Where a connection's outgoing messages go.
#[derive(Clone)]
enum Outbox {
    /// A WebSocket's own task, through its channel.
    Ws(mpsc::UnboundedSender<Utf8Bytes>),
    /// A polling session's queue, taken by its next GET.
    Poll(Arc<PollSession>),
}

impl Outbox {
    fn push(&self, text: Utf8Bytes) {
        match self {
            Outbox::Ws(tx) => {
                let _ = tx.send(text);
            }
            Outbox::Poll(session) => session.push(text),
        }
    }
}

struct PollSession {
    id: u64,
    sid: String,
    queue: Mutex<Vec<Utf8Bytes>>,
    ready: Notify,
}

impl PollSession {
    fn push(&self, text: Utf8Bytes) {
        self.queue.lock().expect("queue lock").push(text);
        self.ready.notify_one();
    }

    /// Waits for at least one packet and takes them all.
    async fn take(&self) -> Vec<Utf8Bytes> {
        loop {
            let ready = self.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            {
                let mut queue = self.queue.lock().expect("queue lock");
                if !queue.is_empty() {
                    return std::mem::take(&mut *queue);
                }
            }
            ready.await;
        }
    }
}

#[derive(Default)]
struct State {
    next: AtomicU64,
    /// Every connection, for broadcasts.
    conns: RwLock<HashMap<u64, Outbox>>,
    /// Polling sessions by session id.
    polling: Mutex<HashMap<String, Arc<PollSession>>>,
}

impl State {
    fn broadcast(&self, text: Utf8Bytes) {
        for outbox in self.conns.read().expect("conns lock").values() {
            outbox.push(text.clone());
        }
    }

    fn remove(&self, id: u64) {
        self.conns.write().expect("conns lock").remove(&id);
    }
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3002);
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!("reference on 127.0.0.1:{port}");
    let state = Arc::new(State::default());
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, state.clone()));
            }
            Err(e) => {
                // Out of descriptors, say: wait for some to close.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// A parsed request head: what the contract needs of it.
struct Head {
    post: bool,
    sid: Option<String>,
    websocket_key: Option<String>,
    content_length: usize,
}

/// Serves one TCP connection: HTTP requests in turn, until one becomes a WebSocket.
async fn serve(mut stream: TcpStream, state: Arc<State>) {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let Some(head) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        if let Some(key) = &head.websocket_key {
            let response = format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
                derive_accept_key(key.as_bytes())
            );
            if stream.write_all(response.as_bytes()).await.is_err() {
                return;
            }
            websocket(stream, std::mem::take(&mut buf), &state).await;
            return;
        }
        let answered = match (&head.sid, head.post) {
            (None, false) => handshake(&mut stream, &state).await,
            (Some(sid), false) => poll(&mut stream, &state, sid).await,
            (Some(sid), true) => post(&mut stream, &mut buf, &state, sid, &head).await,
            (None, true) => respond(&mut stream, 400, "").await,
        };
        if !answered {
            return;
        }
    }
}

/// Reads one request head from `stream` (leaving what follows it in `buf`).
async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Head> {
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buf.len() > MAX_HEAD || stream.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    };
    let text = std::str::from_utf8(&buf[..end]).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let post = first.next()? == "POST";
    let target = first.next()?;
    let sid = target
        .split_once('?')
        .and_then(|(_, query)| query.split('&').find_map(|kv| kv.strip_prefix("sid=")))
        .map(str::to_owned);
    let mut head = Head {
        post,
        sid,
        websocket_key: None,
        content_length: 0,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            head.websocket_key = Some(value.to_owned());
        }
    }
    buf.drain(..end + 4);
    Some(head)
}

async fn respond(stream: &mut TcpStream, status: u16, body: &str) -> bool {
    let reason = if status == 200 { "OK" } else { "Bad Request" };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    stream.write_all(&out).await.is_ok()
}

/// A polling handshake: a new session, answered with the open packet.
async fn handshake(stream: &mut TcpStream, state: &State) -> bool {
    let id = state.next.fetch_add(1, Ordering::Relaxed);
    let session = Arc::new(PollSession {
        id,
        sid: session_id(id),
        queue: Mutex::new(Vec::new()),
        ready: Notify::new(),
    });
    state
        .polling
        .lock()
        .expect("polling lock")
        .insert(session.sid.clone(), session.clone());
    state
        .conns
        .write()
        .expect("conns lock")
        .insert(id, Outbox::Poll(session.clone()));
    respond(stream, 200, &open_packet(&session.sid, true)).await
}

fn session(state: &State, sid: &str) -> Option<Arc<PollSession>> {
    state
        .polling
        .lock()
        .expect("polling lock")
        .get(sid)
        .cloned()
}

/// A GET: waits for packets, answers them joined by `\x1e`.
async fn poll(stream: &mut TcpStream, state: &State, sid: &str) -> bool {
    let Some(session) = session(state, sid) else {
        return respond(stream, 400, "").await;
    };
    let packets = session.take().await;
    let mut body = String::with_capacity(packets.iter().map(|p| p.len() + 1).sum());
    for (i, packet) in packets.iter().enumerate() {
        if i > 0 {
            body.push('\x1e');
        }
        body.push_str(packet.as_str());
    }
    respond(stream, 200, &body).await
}

/// A POST: reads the body and reacts to each packet, answers `ok`.
async fn post(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    state: &State,
    sid: &str,
    head: &Head,
) -> bool {
    if head.content_length > MAX_BODY {
        return false;
    }
    while buf.len() < head.content_length {
        match stream.read_buf(buf).await {
            Ok(0) | Err(_) => return false,
            Ok(_) => {}
        }
    }
    let body: Vec<u8> = buf.drain(..head.content_length).collect();
    let Some(session) = session(state, sid) else {
        return respond(stream, 400, "").await;
    };
    let Ok(body) = std::str::from_utf8(&body) else {
        return respond(stream, 400, "").await;
    };
    for packet in split_payload(body) {
        match react(packet, &session.sid) {
            Reply::None => {}
            Reply::Back(text) => session.push(Utf8Bytes::from(text.into_owned())),
            Reply::All(text) => state.broadcast(Utf8Bytes::from(text.into_owned())),
            Reply::Close => {
                state.polling.lock().expect("polling lock").remove(sid);
                state.remove(session.id);
            }
        }
    }
    respond(stream, 200, "ok").await
}

/// A WebSocket session, from the open packet to the end of the connection.
async fn websocket(stream: TcpStream, leftover: Vec<u8>, state: &State) {
    let id = state.next.fetch_add(1, Ordering::Relaxed);
    let sid = session_id(id);
    let (tx, rx) = mpsc::unbounded_channel();
    state
        .conns
        .write()
        .expect("conns lock")
        .insert(id, Outbox::Ws(tx));
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER);
    let stream = TokioAdapter::new(stream);
    let mut ws = if leftover.is_empty() {
        // Freed now rather than held for the connection's life.
        drop(leftover);
        WebSocketStream::from_raw_socket(stream, Role::Server, Some(config)).await
    } else {
        WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(config)).await
    };
    let _ = run_websocket(&mut ws, rx, state, &sid).await;
    state.remove(id);
}

async fn run_websocket(
    ws: &mut Ws,
    mut rx: mpsc::UnboundedReceiver<Utf8Bytes>,
    state: &State,
    sid: &str,
) -> Result<(), WsError> {
    ws.send(Message::text(open_packet(sid, false))).await?;
    let start = tokio::time::Instant::now() + PING_INTERVAL;
    let mut ping = tokio::time::interval_at(start, PING_INTERVAL);
    loop {
        tokio::select! {
            message = ws.next() => {
                let mut message = message;
                let mut handled = 0;
                loop {
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            if !on_text(ws, text, state, sid).await? {
                                return Ok(());
                            }
                        }
                        Some(Ok(Message::Close(_))) | None => return Ok(()),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => return Err(e),
                    }
                    handled += 1;
                    if handled == READ_BATCH {
                        break;
                    }
                    // Whatever else is already read joins this flush.
                    match ws.next().now_or_never() {
                        Some(next) => message = next,
                        None => break,
                    }
                }
                ws.flush().await?;
            }
            Some(text) = rx.recv() => {
                ws.feed(Message::Text(text)).await?;
                while let Ok(text) = rx.try_recv() {
                    ws.feed(Message::Text(text)).await?;
                }
                ws.flush().await?;
            }
            _ = ping.tick() => ws.send(Message::text("2")).await?,
        }
    }
}

/// Reacts to one text frame; false when the session ends.
async fn on_text(ws: &mut Ws, text: Utf8Bytes, state: &State, sid: &str) -> Result<bool, WsError> {
    match react(text.as_str(), sid) {
        Reply::None => {}
        Reply::Close => return Ok(false),
        Reply::Back(reply) => ws.feed(Message::Text(shared(&text, reply))).await?,
        Reply::All(reply) => state.broadcast(shared(&text, reply)),
    }
    Ok(true)
}

/// The reply as bytes to send: a borrowed reply is the received frame itself (`react` only
/// borrows the whole text), sent again without a copy.
fn shared(text: &Utf8Bytes, reply: Cow<'_, str>) -> Utf8Bytes {
    match reply {
        Cow::Borrowed(_) => text.clone(),
        Cow::Owned(s) => Utf8Bytes::from(s),
    }
}
