//! A Socket.IO server for real clients, driven by a single-threaded event loop written by
//! hand: [`mio`] says which sockets are ready, [`tungstenite`] frames WebSocket messages, and
//! [`volley_core::socketio::Server`] makes every protocol decision. No async runtime, no
//! thread on the message path.
//!
//! ```text
//! cargo run -p volley-core --example event_loop [-- <port>]     (or PORT=<port>; 0: any)
//! ```
//!
//! It prints `LISTENING <port>`, then serves Socket.IO clients (v5 over Engine.IO v4, and v4
//! over Engine.IO v3) on `/socket.io/`: long-polling, WebSocket, and the upgrade from one to
//! the other. The application in `app.rs` answers the events of the conformance suite's
//! scenario server (`echo`, acks, rooms and broadcasts, ...); the suite runs against this
//! very program as its third target, next to tokio and smol. `FAST_PING=1` sets a 300 ms
//! ping interval and a 200 ms ping timeout; `--app msgpack` speaks the MessagePack parser;
//! `--exit-with-stdin` exits when standard input closes (a safety net for test drivers; its
//! watcher is the one thread besides the loop).
//!
//! # The loop
//!
//! The machine never performs IO and never reads the clock. One turn of the loop:
//!
//! 1. **Wait** in [`mio::Poll::poll`] until a socket is ready or the machine's next deadline
//!    ([`Server::poll_timeout`]) comes (or the loop's own: a closed WebSocket's linger).
//!    Sockets are registered edge-triggered: a connection remembers that it is readable
//!    until a read returns `WouldBlock`.
//! 2. **Read the clock** once (`now`), accept new connections, and call
//!    [`Server::handle_timeout`] if the deadline passed: pings, ping timeouts, upgrade and
//!    ack timeouts all come out of that one call.
//! 3. **Drive** every connection that was woken or that the machine gave something to do.
//!    Driving a connection writes what it has to write, then reads and parses what it can,
//!    and hands each complete piece to the machine: a request head
//!    ([`Server::handle_request`]), a body ([`Server::handle_body`]), a WebSocket message
//!    ([`Server::handle_ws_message`]), "everything sent is written"
//!    ([`Server::handle_ws_drained`]), or "this connection is gone"
//!    ([`Server::handle_conn_closed`]).
//! 4. After each input, **settle**: first the application sees every
//!    [`Event`](volley_core::socketio::Event) and reacts with commands (accept a connect,
//!    emit, ack, join, broadcast, disconnect), then every
//!    [`Output`] is performed on its connection's buffers: a response to write (a `101`
//!    turns the connection into a WebSocket), a body to read, a WebSocket message to send,
//!    a WebSocket to close. The connections touched are driven in step 3 of the same turn.
//!
//! Flow control is the machine's: after a batch of `Send`s for a WebSocket it sends nothing
//! more to that connection until the loop reports the batch written (`handle_ws_drained`),
//! so a slow reader only ever holds one batch here and the rest waits, bounded, in the
//! machine.
//!
//! # HTTP, as much as Socket.IO needs
//!
//! Requests are parsed with [`parse_head`] and bodies decoded with [`BodyDecoder`]
//! (`Content-Length` or chunked) only when the machine asks ([`Output::ReadBody`]), after a
//! `100 Continue` if the client waits for one. Connections are kept alive unless the client
//! or the response says otherwise; a parked long-poll keeps reading so that a client hanging
//! up is noticed. Requests outside `/socket.io/` get a `404`. Not covered here: TLS, CORS, a
//! connection cap, and time limits on slow request heads and bodies, which a production
//! server adds (the `volley` crate's driver has them all).

mod app;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};
use volley_core::engine::{Body, Output, WsMessage};
use volley_core::http::{
    BodyDecoder, BodyKind, BodyProgress, HttpError, Limits, RequestHead, Response, parse_head,
};
use volley_core::socketio::{Config, Parser, Server};
use volley_core::{Bytes, ConnId, Utf8Bytes};

/// The listener's token; connection `n` has token `n` and [`ConnId`] `n`.
const LISTENER: Token = Token(0);

/// Bytes asked of a socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// The largest polling body and WebSocket message: a 1 MiB binary event travels as about
/// 1.4 MB of base64 over polling.
const MAX_PAYLOAD: usize = 2_000_000;

/// How long a WebSocket the machine closed waits for the client's close frame before the
/// connection is dropped anyway.
const CLOSE_LINGER: Duration = Duration::from_secs(2);

/// One client connection: HTTP until a `101`, then a WebSocket.
struct Conn {
    /// The machine has seen a request on it, so it must hear when it closes.
    known: bool,
    /// A readable event came and the socket has not been read to `WouldBlock` since.
    readable: bool,
    transport: Transport,
}

enum Transport {
    Http(Http),
    Ws(Ws),
}

/// The HTTP side of a connection.
struct Http {
    stream: TcpStream,
    /// Read and not consumed yet: the rest of a head, a body, pipelined requests.
    buf: BytesMut,
    /// To write.
    out: BytesMut,
    phase: Phase,
    /// Close once `out` is written (a final response).
    close_after_write: bool,
    /// The final response is out and the write side shut: what the client still sends (the
    /// rest of a body the answer refused) is read and dropped until it closes, so that the
    /// close does not reset the connection before the client has read the answer.
    draining: bool,
}

/// Where an HTTP connection is in its current request.
enum Phase {
    /// Waiting for the next request head.
    Head,
    /// The machine holds the request and will answer it (or ask for its body).
    Machine {
        keep_alive: bool,
        kind: BodyKind,
        expects_continue: bool,
        /// The request's body is still on the wire: the connection cannot carry another.
        body_unread: bool,
    },
    /// Reading the body the machine asked for.
    Body {
        decoder: BodyDecoder,
        keep_alive: bool,
    },
}

/// The WebSocket side of a connection.
struct Ws {
    socket: WebSocket<TcpStream>,
    /// The part of the `101` response not written yet; frames wait behind it.
    preface: BytesMut,
    /// Messages the machine sent while the preface was still being written.
    queued: VecDeque<Message>,
    /// Messages were handed to tungstenite since the last `handle_ws_drained`.
    owes_drained: bool,
    /// The machine closed it: a close frame is on its way, then the connection ends.
    closing: bool,
}

/// What driving a connection produced for the machine.
enum Step {
    /// Nothing more to do until the socket is ready again.
    Idle,
    /// Go round again (something was written or buffered).
    Again,
    Head(RequestHead),
    Body(Body),
    Message(WsMessage),
    Drained,
    /// A message over the limit: the WebSocket is closed with 1009 (message too big), after
    /// what was already handed to it.
    TooBig,
    /// The final answer is out; the client's remaining bytes are being dropped until it
    /// closes (or the linger ends).
    Draining,
    /// The connection ended; `error`: it failed rather than closed.
    Closed {
        error: bool,
    },
}

struct EventLoop {
    poll: Poll,
    listener: TcpListener,
    server: Server,
    app: app::App,
    conns: HashMap<usize, Conn>,
    next_token: usize,
    /// Connections to drive before the next wait.
    dirty: BTreeSet<usize>,
    /// The loop's own deadlines: WebSockets closed by the machine, dropped at that moment
    /// if the client has not answered the close frame by then.
    lingering: BTreeSet<(Instant, usize)>,
    limits: Limits,
    ws_config: WebSocketConfig,
}

fn main() -> io::Result<()> {
    let mut port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let mut config = Config::default();
    config.engine.max_payload = MAX_PAYLOAD;
    config.engine.allow_eio3 = true;
    if std::env::var("FAST_PING").is_ok_and(|v| v == "1") {
        config.engine.ping_interval = Duration::from_millis(300);
        config.engine.ping_timeout = Duration::from_millis(200);
    }
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--app" => match args.next().as_deref() {
                Some("scenarios") => {}
                Some("msgpack") => config.parser = Parser::MsgPack,
                _ => usage(),
            },
            "--exit-with-stdin" => {
                std::thread::spawn(|| {
                    let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
                    std::process::exit(0);
                });
            }
            p => port = p.parse().unwrap_or_else(|_| usage()),
        }
    }
    let mut server = Server::new(config, seed()?);
    for nsp in app::NAMESPACES {
        server.add_namespace(nsp);
    }

    let poll = Poll::new()?;
    let mut listener = TcpListener::bind(([127, 0, 0, 1], port).into())?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let port = listener.local_addr()?.port();
    println!("LISTENING {port}");
    println!("event loop server on http://127.0.0.1:{port}/ (mio, tungstenite, volley-core)");
    io::stdout().flush()?;

    let mut event_loop = EventLoop {
        poll,
        listener,
        server,
        app: app::App::default(),
        conns: HashMap::new(),
        next_token: 1,
        dirty: BTreeSet::new(),
        lingering: BTreeSet::new(),
        limits: Limits::default(),
        ws_config: WebSocketConfig::default()
            .max_message_size(Some(MAX_PAYLOAD))
            .max_frame_size(Some(MAX_PAYLOAD)),
    };
    event_loop.run()
}

fn usage() -> ! {
    eprintln!(
        "usage: event_loop [--app scenarios|msgpack] [--exit-with-stdin] [port]   \
         (env: PORT, FAST_PING=1)"
    );
    std::process::exit(2)
}

/// 32 bytes from the operating system, for session and socket ids.
fn seed() -> io::Result<[u8; 32]> {
    let mut seed = [0; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut seed)?;
    Ok(seed)
}

impl EventLoop {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            // 1. Wait for readiness or the machine's next deadline.
            let deadline = self.server.poll_timeout();
            let linger = self.lingering.first().map(|(t, _)| *t);
            let wake = deadline.into_iter().chain(linger).min();
            let wait = wake.map(|t| t.saturating_duration_since(Instant::now()));
            match self.poll.poll(&mut events, wait) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            // 2. The clock, read once per turn; new connections; due timers.
            let now = Instant::now();
            for event in events.iter() {
                if event.token() == LISTENER {
                    self.accept_all()?;
                } else if let Some(conn) = self.conns.get_mut(&event.token().0) {
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        conn.readable = true;
                    }
                    self.dirty.insert(event.token().0);
                }
            }
            if deadline.is_some_and(|t| t <= now) {
                self.server.handle_timeout(now);
                self.settle(now);
            }
            while let Some(&(t, token)) = self.lingering.first() {
                if t > now {
                    break;
                }
                self.lingering.pop_first();
                self.close(token, false, now);
            }
            // 3. Drive the connections that have something to do.
            while let Some(token) = self.dirty.pop_first() {
                self.drive(token, now);
            }
        }
    }

    fn accept_all(&mut self) -> io::Result<()> {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let token = self.next_token;
                    self.next_token += 1;
                    let _ = stream.set_nodelay(true);
                    self.poll.registry().register(
                        &mut stream,
                        Token(token),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    let http = Http {
                        stream,
                        buf: BytesMut::new(),
                        out: BytesMut::new(),
                        phase: Phase::Head,
                        close_after_write: false,
                        draining: false,
                    };
                    let conn = Conn {
                        known: false,
                        readable: true,
                        transport: Transport::Http(http),
                    };
                    self.conns.insert(token, conn);
                    self.dirty.insert(token);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                // A connection that failed before we took it (reset, out of descriptors for
                // a moment): the listener goes on.
                Err(e) => {
                    eprintln!("accept failed: {e}");
                    return Ok(());
                }
            }
        }
    }

    /// Step 4: the application reacts to every event, then every output is performed
    /// (buffered on its connection, which is marked for driving).
    fn settle(&mut self, now: Instant) {
        loop {
            while let Some(event) = self.server.poll_event() {
                self.app.on_event(&mut self.server, event, now);
            }
            let Some(output) = self.server.poll_output() else {
                return;
            };
            self.perform(output, now);
        }
    }

    fn perform(&mut self, output: Output, now: Instant) {
        let token = match &output {
            Output::Response { conn, .. }
            | Output::ReadBody { conn, .. }
            | Output::Send { conn, .. }
            | Output::Close { conn } => conn.0 as usize,
        };
        let Some(conn) = self.conns.get_mut(&token) else {
            return; // gone already; the machine has been told or is about to be
        };
        self.dirty.insert(token);
        if matches!(&output, Output::Response { response, .. } if response.status == 101) {
            // From here on the bytes are WebSocket frames, behind the rest of the 101.
            let (Some(mut conn), Output::Response { response, .. }) =
                (self.conns.remove(&token), output)
            else {
                return;
            };
            conn.transport = match conn.transport {
                Transport::Http(mut http) => {
                    response.write_to(&mut http.out);
                    Transport::Ws(Ws::upgrade(http, self.ws_config))
                }
                ws => ws,
            };
            self.conns.insert(token, conn);
            return;
        }
        match (&mut conn.transport, output) {
            (Transport::Http(http), Output::Response { response, .. }) => {
                let keep_alive = match http.phase {
                    Phase::Machine {
                        keep_alive,
                        body_unread,
                        ..
                    } => keep_alive && !body_unread,
                    _ => false,
                };
                http.phase = Phase::Head;
                response.write_to(&mut http.out);
                http.close_after_write |= response.close || !keep_alive;
            }
            (Transport::Http(http), Output::ReadBody { limit, .. }) => {
                let (kind, keep_alive, expects_continue) = match http.phase {
                    Phase::Machine {
                        kind,
                        keep_alive,
                        expects_continue,
                        ..
                    } => (kind, keep_alive, expects_continue),
                    _ => (BodyKind::None, false, false),
                };
                if expects_continue && http.buf.is_empty() {
                    http.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
                let decoder = BodyDecoder::new(kind, limit);
                http.phase = Phase::Body {
                    decoder,
                    keep_alive,
                };
            }
            (Transport::Http(http), Output::Close { .. }) => http.close_after_write = true,
            (Transport::Ws(ws), Output::Send { message, .. }) => {
                let message = match message {
                    WsMessage::Text(text) => {
                        match tungstenite::Utf8Bytes::try_from(text.into_bytes()) {
                            Ok(text) => Message::Text(text),
                            Err(_) => return, // valid UTF-8 by construction
                        }
                    }
                    WsMessage::Binary(bytes) => Message::Binary(bytes),
                };
                ws.owes_drained = true;
                if ws.preface.is_empty() {
                    ws.write(message);
                } else {
                    ws.queued.push_back(message);
                }
            }
            (Transport::Ws(ws), Output::Close { .. }) => {
                ws.closing = true;
                if ws.preface.is_empty() {
                    let _ = ws.socket.close(None);
                } else {
                    // Right behind the 101 (a second WebSocket for a session, closed at
                    // once): the close frame waits for the end of the 101.
                    ws.queued.push_back(Message::Close(None));
                }
                self.lingering.insert((now + CLOSE_LINGER, token));
            }
            // A message for an HTTP connection, or HTTP for a WebSocket: nothing to do.
            (_, output) => eprintln!("output for the wrong kind of connection: {output:?}"),
        }
    }

    /// Writes, reads and parses on one connection, handing what it gets to the machine,
    /// until the connection has nothing more to do or is gone.
    fn drive(&mut self, token: usize, now: Instant) {
        let id = ConnId(token as u64);
        loop {
            let Some(conn) = self.conns.get_mut(&token) else {
                return;
            };
            let step = match &mut conn.transport {
                Transport::Http(http) => http.step(&mut conn.readable, &self.limits),
                Transport::Ws(ws) => ws.step(&mut conn.readable),
            };
            match step {
                Step::Idle => return,
                Step::Draining => {
                    self.lingering.insert((now + CLOSE_LINGER, token));
                    return;
                }
                Step::Again => {}
                Step::Head(head) => {
                    let Transport::Http(http) = &mut conn.transport else {
                        return;
                    };
                    if !self.server.owns(&head) {
                        http.close_after_write = has_body(&head) || !head.keep_alive();
                        not_found().write_to(&mut http.out);
                        continue;
                    }
                    http.phase = Phase::Machine {
                        keep_alive: head.keep_alive(),
                        kind: head.body_kind(),
                        expects_continue: head.expects_continue(),
                        body_unread: has_body(&head),
                    };
                    conn.known = true;
                    let head = match http.stream.peer_addr() {
                        Ok(peer) => head.with_peer_addr(peer),
                        Err(_) => head,
                    };
                    if let Err(e) = self.server.handle_request(id, head, now) {
                        eprintln!("{id}: {e:?}");
                    }
                    self.settle(now);
                }
                Step::Body(body) => {
                    if let Err(e) = self.server.handle_body(id, body, now) {
                        eprintln!("{id}: {e:?}");
                    }
                    self.settle(now);
                }
                Step::Message(message) => {
                    if let Err(e) = self.server.handle_ws_message(id, message, now) {
                        eprintln!("{id}: {e:?}");
                    }
                    self.settle(now);
                }
                Step::Drained => {
                    self.server.handle_ws_drained(id, now);
                    self.settle(now);
                }
                Step::TooBig => {
                    if let Some(Conn {
                        transport: Transport::Ws(ws),
                        ..
                    }) = self.conns.get_mut(&token)
                    {
                        ws.closing = true;
                        let _ = ws.socket.close(Some(CloseFrame {
                            code: CloseCode::Size,
                            reason: "".into(),
                        }));
                    }
                    self.lingering.insert((now + CLOSE_LINGER, token));
                    // The session ends with its transport, as the reference's does.
                    self.server.handle_conn_closed(id, true, now);
                    self.settle(now);
                }
                Step::Closed { error } => {
                    self.close(token, error, now);
                    return;
                }
            }
        }
    }

    /// Drops a connection and tells the machine (a parked poll, a body it waited for, or a
    /// WebSocket ends with it).
    fn close(&mut self, token: usize, error: bool, now: Instant) {
        let Some(mut conn) = self.conns.remove(&token) else {
            return;
        };
        let stream = match &mut conn.transport {
            Transport::Http(http) => &mut http.stream,
            Transport::Ws(ws) => ws.socket.get_mut(),
        };
        let _ = self.poll.registry().deregister(stream);
        let _ = stream.shutdown(Shutdown::Both);
        if conn.known {
            self.server
                .handle_conn_closed(ConnId(token as u64), error, now);
            self.settle(now);
        }
    }
}

/// Whether a body follows `head` on the wire.
fn has_body(head: &RequestHead) -> bool {
    !matches!(head.body_kind(), BodyKind::None | BodyKind::Length(0))
}

fn not_found() -> Response {
    Response::new(404)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body("Not Found")
}

/// Writes as much of `out` as the socket takes. `Ok(true)`: all of it.
fn write_some(stream: &mut TcpStream, out: &mut BytesMut) -> io::Result<bool> {
    while !out.is_empty() {
        match stream.write(out) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => out.advance(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// What one read gave.
enum ReadOutcome {
    /// Bytes were added to the buffer.
    Data,
    /// The peer closed its side.
    Eof,
    /// Nothing to read now: wait for the next readable event.
    Blocked,
}

/// One read of at most [`READ_CHUNK`] bytes into `buf`.
fn read_some(stream: &mut TcpStream, buf: &mut BytesMut) -> io::Result<ReadOutcome> {
    let start = buf.len();
    buf.resize(start + READ_CHUNK, 0);
    let r = stream.read(&mut buf[start..]);
    buf.truncate(start + r.as_ref().map_or(0, |n| *n));
    match r {
        Ok(0) => Ok(ReadOutcome::Eof),
        Ok(_) => Ok(ReadOutcome::Data),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::Blocked),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(ReadOutcome::Data),
        Err(e) => Err(e),
    }
}

impl Http {
    /// One step: flush, then parse what is buffered, then read more.
    fn step(&mut self, readable: &mut bool, limits: &Limits) -> Step {
        match write_some(&mut self.stream, &mut self.out) {
            Ok(true) if self.draining => return self.drain(),
            Ok(true) if self.close_after_write => {
                // A final answer is out: half-close so the client reads it to the end, and
                // drop what it still sends until it closes.
                let _ = self.stream.shutdown(Shutdown::Write);
                self.draining = true;
                self.buf.clear();
                return match self.drain() {
                    Step::Idle => Step::Draining,
                    step => step,
                };
            }
            Ok(true) => {}
            Ok(false) => {
                if self.close_after_write {
                    return Step::Idle;
                }
            }
            Err(_) => return Step::Closed { error: true },
        }
        // Parse what is buffered, as far as the phase allows.
        let buffered_enough = match &mut self.phase {
            Phase::Head => match parse_head(&self.buf, limits) {
                Ok(Some((head, used))) => {
                    self.buf.advance(used);
                    return Step::Head(head);
                }
                Ok(None) => false,
                Err(e) => return self.answer_error(&e),
            },
            Phase::Body {
                decoder,
                keep_alive,
            } => match decoder.feed(&mut self.buf) {
                Ok(BodyProgress::Done(bytes)) => {
                    self.phase = machine_phase(*keep_alive, false);
                    return Step::Body(Body::Complete(bytes));
                }
                Ok(BodyProgress::NeedMore) => false,
                Err(HttpError::BodyTooLarge) => {
                    self.phase = machine_phase(*keep_alive, true);
                    return Step::Body(Body::TooLarge);
                }
                Err(e) => return self.answer_error(&e),
            },
            // A parked request: keep reading only to notice the client hanging up, with a
            // head's worth of pipelined bytes at most.
            Phase::Machine { .. } => self.buf.len() >= limits.max_head_bytes,
        };
        if !*readable || buffered_enough {
            return Step::Idle;
        }
        match read_some(&mut self.stream, &mut self.buf) {
            Ok(ReadOutcome::Eof) => Step::Closed { error: false },
            Ok(ReadOutcome::Data) => Step::Again,
            Ok(ReadOutcome::Blocked) => {
                *readable = false;
                Step::Idle
            }
            Err(_) => Step::Closed { error: true },
        }
    }

    /// Answers a malformed head or body; the connection closes after it.
    /// Reads and drops what the client sends after the final answer: `Idle` until it closes.
    fn drain(&mut self) -> Step {
        let mut scratch = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut scratch) {
                Ok(0) => return Step::Closed { error: false },
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Step::Idle,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Step::Closed { error: true },
            }
        }
    }

    fn answer_error(&mut self, e: &HttpError) -> Step {
        self.phase = Phase::Head;
        self.buf.clear();
        self.close_after_write = true;
        e.response().write_to(&mut self.out);
        Step::Again
    }
}

/// Back to the machine after a body: its answer comes next.
fn machine_phase(keep_alive: bool, body_unread: bool) -> Phase {
    Phase::Machine {
        keep_alive,
        kind: BodyKind::None,
        expects_continue: false,
        body_unread,
    }
}

impl Ws {
    /// A WebSocket over `http`'s stream; bytes the client sent behind its upgrade request
    /// are its first frames.
    fn upgrade(http: Http, config: WebSocketConfig) -> Ws {
        let Http {
            stream, buf, out, ..
        } = http;
        let socket = if buf.is_empty() {
            WebSocket::from_raw_socket(stream, Role::Server, Some(config))
        } else {
            WebSocket::from_partially_read(stream, buf.to_vec(), Role::Server, Some(config))
        };
        Ws {
            socket,
            preface: out,
            queued: VecDeque::new(),
            owes_drained: false,
            closing: false,
        }
    }

    /// Hands `message` to tungstenite, which buffers it (`WouldBlock` means "buffered, the
    /// socket is full"; `flush` writes the rest).
    fn write(&mut self, message: Message) {
        if let Err(e) = self.socket.write(message) {
            if !is_would_block(&e) {
                self.closing = true;
            }
        }
    }

    fn step(&mut self, readable: &mut bool) -> Step {
        // The end of the 101 first, then what waited behind it.
        if !self.preface.is_empty() {
            match write_some(self.socket.get_mut(), &mut self.preface) {
                Ok(true) => {
                    while let Some(message) = self.queued.pop_front() {
                        self.write(message);
                    }
                }
                Ok(false) => return Step::Idle,
                Err(_) => return Step::Closed { error: true },
            }
        }
        match self.socket.flush() {
            Ok(()) if self.owes_drained => {
                self.owes_drained = false;
                return Step::Drained;
            }
            Ok(()) => {}
            Err(e) if is_would_block(&e) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Step::Closed { error: false };
            }
            Err(_) => return Step::Closed { error: true },
        }
        if !*readable {
            return Step::Idle;
        }
        match self.socket.read() {
            Ok(Message::Text(text)) => match Utf8Bytes::try_from_bytes(Bytes::from(text)) {
                Ok(text) => Step::Message(WsMessage::Text(text)),
                Err(_) => Step::Again, // tungstenite validated it already
            },
            Ok(Message::Binary(bytes)) => Step::Message(WsMessage::Binary(bytes)),
            // Pings are answered by tungstenite (on the next flush); a close frame is
            // answered too, and the next read reports the end.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_) | Message::Close(_)) => {
                Step::Again
            }
            Err(e) if is_would_block(&e) => {
                *readable = false;
                Step::Idle
            }
            Err(tungstenite::Error::Capacity(_)) if !self.closing => Step::TooBig,
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Step::Closed { error: false }
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Step::Closed {
                    error: !self.closing,
                }
            }
            Err(_) => Step::Closed { error: true },
        }
    }
}

fn is_would_block(e: &tungstenite::Error) -> bool {
    matches!(e, tungstenite::Error::Io(e) if e.kind() == io::ErrorKind::WouldBlock)
}
