//! The Socket.IO machine of one session driven on its own, as a runtime that gives each
//! session a task of its own drives it: an Engine.IO `Session`, its `Client`, a `Peer` built
//! over them for each input or command, and the `Shared` state behind a lock. The first test
//! checks that the parts and the single-threaded `Server` say the same things for the same
//! script; the others check what the split promises: events and acknowledgements take no
//! lock, and sessions on several threads share one index correctly.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use volley_core::engine::{
    self, Endpoint, Engine, Event as EioEvent, Output, Route, Session, WsMessage,
};
use volley_core::http::{Limits, RequestHead, parse_head};
use volley_core::ids::SocketId;
use volley_core::socketio::{
    AckToken, Client, Config, ConnectId, Delivery, Detached, Event, Link, Peer, Server, Shared,
    SharedAccess,
};
use volley_core::{ConnId, Utf8Bytes};

const ENGINE_SEED: [u8; 32] = [7; 32];
const SOCKET_SEED: [u8; 32] = [9; 32];

fn config() -> Config {
    Config {
        engine: engine::Config {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            allow_eio3: true,
            path: "/socket.io/".to_owned(),
            ..engine::Config::default()
        },
        connect_timeout: Duration::from_secs(1),
        ..Config::default()
    }
}

fn ws_head(eio: u8) -> RequestHead {
    let text = format!(
        "GET /socket.io/?EIO={eio}&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    parse_head(text.as_bytes(), &Limits::default())
        .expect("a valid head")
        .expect("a complete head")
        .0
}

/// What a driver said, in order: events as the application sees them, outputs as the wire.
fn show_output(output: &Output) -> String {
    match output {
        Output::Response { response, .. } => format!("response {}", response.status),
        Output::Send { message, .. } => match message {
            WsMessage::Text(t) => format!("send {t}"),
            WsMessage::Binary(b) => format!("send binary {:?}", &b[..]),
        },
        Output::ReadBody { .. } => "read body".to_owned(),
        Output::Close { .. } => "close".to_owned(),
    }
}

/// One WebSocket client's session, driven through one of the two compositions.
trait Drive {
    /// The client's handshake on connection `conn`.
    fn open(&mut self, conn: ConnId, eio: u8, now: Instant);
    /// A text message from the client on `conn` (an Engine.IO packet: `4…` for a
    /// Socket.IO packet).
    fn message(&mut self, conn: ConnId, text: &str, now: Instant);
    fn accept(&mut self, conn: ConnId, id: ConnectId, now: Instant) -> SocketId;
    fn ack(&mut self, conn: ConnId, token: AckToken, args: &str, now: Instant);
    fn emit(&mut self, conn: ConnId, socket: SocketId, name: &str, args: &str, now: Instant);
    fn emit_with_ack(&mut self, conn: ConnId, socket: SocketId, timeout: Duration, now: Instant);
    fn disconnect(&mut self, conn: ConnId, socket: SocketId, now: Instant);
    fn timeout(&mut self, now: Instant);
    /// Events then outputs since the last call, each as a line; every batch written is
    /// drained at once, as a writer that keeps up.
    fn drain(&mut self, log: &mut Vec<String>, now: Instant) -> Vec<Event>;
}

struct Composed<S: SharedAccess = Shared> {
    server: Server<S>,
}

impl<S: SharedAccess> Drive for Composed<S> {
    fn open(&mut self, conn: ConnId, _eio: u8, now: Instant) {
        let head = ws_head(_eio);
        self.server.handle_request(conn, head, now).unwrap();
    }
    fn message(&mut self, conn: ConnId, text: &str, now: Instant) {
        let m = WsMessage::Text(Utf8Bytes::from(text));
        self.server.handle_ws_message(conn, m, now).unwrap();
    }
    fn accept(&mut self, _conn: ConnId, id: ConnectId, now: Instant) -> SocketId {
        self.server.accept(id, now).unwrap()
    }
    fn ack(&mut self, _conn: ConnId, token: AckToken, args: &str, now: Instant) {
        self.server.ack(token, args, Vec::new(), now).unwrap();
    }
    fn emit(&mut self, _conn: ConnId, socket: SocketId, name: &str, args: &str, now: Instant) {
        self.server
            .emit(socket, name, args, Vec::new(), false, now)
            .unwrap();
    }
    fn emit_with_ack(&mut self, _conn: ConnId, socket: SocketId, timeout: Duration, now: Instant) {
        self.server
            .emit_with_ack(socket, "q", "[2]", Vec::new(), Some(timeout), now)
            .unwrap();
    }
    fn disconnect(&mut self, _conn: ConnId, socket: SocketId, now: Instant) {
        self.server.disconnect(socket, false, now).unwrap();
    }
    fn timeout(&mut self, now: Instant) {
        self.server.handle_timeout(now);
    }
    fn drain(&mut self, log: &mut Vec<String>, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            let mut any = false;
            while let Some(e) = self.server.poll_event() {
                log.push(format!("event {e:?}"));
                events.push(e);
                any = true;
            }
            while let Some(o) = self.server.poll_output() {
                log.push(show_output(&o));
                if let Output::Send { conn, .. } = o {
                    self.server.handle_ws_drained(conn, now);
                }
                any = true;
            }
            if !any {
                return events;
            }
        }
    }
}

/// The shared state behind a lock, counting the steps that took it. Whether packets are
/// kept is read once, when the session's step starts, as a runtime reads it once at start.
struct Locked<'a> {
    shared: &'a Mutex<Shared>,
    taken: &'a AtomicUsize,
    keeps: bool,
}

impl SharedAccess for Locked<'_> {
    fn with<R>(&mut self, f: impl FnOnce(&mut Shared) -> R) -> R {
        self.taken.fetch_add(1, Ordering::Relaxed);
        f(&mut self.shared.lock().unwrap())
    }

    fn read<R>(&self, f: impl FnOnce(&Shared) -> R) -> R {
        self.taken.fetch_add(1, Ordering::Relaxed);
        f(&self.shared.lock().unwrap())
    }

    fn keeps_packets(&mut self) -> bool {
        self.keeps
    }
}

/// One session on its own: its Engine.IO session, its client, its events.
struct Owned {
    conn: ConnId,
    session: Session,
    client: Option<Client>,
    events: VecDeque<Event>,
}

/// The parts composed by hand: an endpoint, each session owned on its own, the shared state
/// behind a lock.
struct Parts<'a> {
    config: Config,
    endpoint: Endpoint,
    shared: &'a Mutex<Shared>,
    taken: &'a AtomicUsize,
    /// Read from the shared state once, when the parts are made.
    keeps: bool,
    sessions: Vec<Owned>,
}

impl<'a> Parts<'a> {
    fn owned(&mut self, conn: ConnId) -> usize {
        self.sessions
            .iter()
            .position(|o| o.conn == conn)
            .expect("a session on this connection")
    }

    /// Runs `f` on the peer of the session on `conn`, then hands the session's Engine.IO
    /// events to the peer, as the composition does after each input.
    fn step<R>(
        &mut self,
        conn: ConnId,
        now: Instant,
        f: impl FnOnce(&mut Peer<'_, Locked<'a>, &mut Session>) -> R,
    ) -> Option<R> {
        let i = self.owned(conn);
        let r = self.with_peer(i, f);
        self.pump(i, now);
        r
    }

    fn with_peer<R>(
        &mut self,
        i: usize,
        f: impl FnOnce(&mut Peer<'_, Locked<'a>, &mut Session>) -> R,
    ) -> Option<R> {
        let o = &mut self.sessions[i];
        let client = o.client.as_mut()?;
        let mut peer = Peer {
            config: &self.config,
            shared: Locked {
                shared: self.shared,
                taken: self.taken,
                keeps: self.keeps,
            },
            client,
            link: &mut o.session,
            events: &mut o.events,
        };
        Some(f(&mut peer))
    }

    fn pump(&mut self, i: usize, now: Instant) {
        while let Some(ev) = self.sessions[i].session.poll_event() {
            match ev {
                EioEvent::Open {
                    sid,
                    protocol,
                    request,
                    ..
                } => {
                    let client = Client::for_session(&self.config, sid, protocol, *request, now);
                    self.sessions[i].client = Some(client);
                    self.with_peer(i, |peer| peer.opened(now));
                }
                EioEvent::Message { message, .. } => {
                    self.with_peer(i, |peer| peer.receive(message, now));
                }
                EioEvent::Upgrade { .. } => {}
                EioEvent::Close { reason, .. } => {
                    self.with_peer(i, |peer| peer.closed(reason, now));
                    self.sessions[i].client = None;
                }
            }
        }
    }
}

impl Drive for Parts<'_> {
    fn open(&mut self, conn: ConnId, eio: u8, now: Instant) {
        let head = ws_head(eio);
        let Route::Handshake(h) = self.endpoint.route(&head) else {
            panic!("not a handshake");
        };
        let session = self
            .endpoint
            .handshake(conn, head, h, now, |_| false)
            .expect("a session");
        self.sessions.push(Owned {
            conn,
            session,
            client: None,
            events: VecDeque::new(),
        });
        let i = self.sessions.len() - 1;
        self.pump(i, now);
    }
    fn message(&mut self, conn: ConnId, text: &str, now: Instant) {
        let i = self.owned(conn);
        let m = WsMessage::Text(Utf8Bytes::from(text));
        self.sessions[i]
            .session
            .handle_ws_message(conn, m, now)
            .unwrap();
        self.pump(i, now);
    }
    fn accept(&mut self, conn: ConnId, id: ConnectId, now: Instant) -> SocketId {
        self.step(conn, now, |peer| peer.accept(id, now))
            .unwrap()
            .unwrap()
    }
    fn ack(&mut self, conn: ConnId, token: AckToken, args: &str, now: Instant) {
        self.step(conn, now, |peer| peer.ack(token, args, Vec::new(), now))
            .unwrap()
            .unwrap();
    }
    fn emit(&mut self, conn: ConnId, socket: SocketId, name: &str, args: &str, now: Instant) {
        self.step(conn, now, |peer| {
            peer.emit(socket, name, args, Vec::new(), false, now)
        })
        .unwrap()
        .unwrap();
    }
    fn emit_with_ack(&mut self, conn: ConnId, socket: SocketId, timeout: Duration, now: Instant) {
        self.step(conn, now, |peer| {
            peer.emit_with_ack(socket, "q", "[2]", Vec::new(), Some(timeout), now)
        })
        .unwrap()
        .unwrap();
    }
    fn disconnect(&mut self, conn: ConnId, socket: SocketId, now: Instant) {
        self.step(conn, now, |peer| peer.disconnect(socket, false, now))
            .unwrap()
            .unwrap();
    }
    fn timeout(&mut self, now: Instant) {
        for i in 0..self.sessions.len() {
            self.sessions[i].session.handle_timeout(now);
            self.with_peer(i, |peer| peer.handle_timeout(now));
            self.pump(i, now);
        }
    }
    fn drain(&mut self, log: &mut Vec<String>, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            let mut any = false;
            for o in &mut self.sessions {
                while let Some(e) = o.events.pop_front() {
                    log.push(format!("event {e:?}"));
                    events.push(e);
                    any = true;
                }
                while let Some(out) = o.session.poll_output() {
                    log.push(show_output(&out));
                    if let Output::Send { conn, .. } = out {
                        o.session.handle_ws_drained(conn, now);
                    }
                    any = true;
                }
            }
            if !any {
                return events;
            }
        }
    }
}

/// A v5 client on each of `conns`, each connected to `/` through `composed`; their sockets.
fn connect_all<S: SharedAccess>(
    composed: &mut Composed<S>,
    conns: &[ConnId],
    log: &mut Vec<String>,
    now: Instant,
) -> Vec<SocketId> {
    let mut sockets = Vec::new();
    for &conn in conns {
        composed.open(conn, 4, now);
        composed.drain(log, now);
        composed.message(conn, "40", now);
        let id = connect_id(&composed.drain(log, now));
        sockets.push(composed.accept(conn, id, now));
        composed.drain(log, now);
    }
    sockets
}

fn connect_id(events: &[Event]) -> ConnectId {
    events
        .iter()
        .find_map(|e| match e {
            Event::Connect(r) => Some(r.id),
            _ => None,
        })
        .expect("a connect request")
}

/// Two clients (v5 and v4) through a whole life; the log of everything said.
fn script(d: &mut impl Drive, t0: Instant) -> Vec<String> {
    let mut log = Vec::new();
    let (a, b) = (ConnId(1), ConnId(2));
    d.open(a, 4, t0);
    d.drain(&mut log, t0);
    d.message(a, "40", t0);
    let id = connect_id(&d.drain(&mut log, t0));
    let sa = d.accept(a, id, t0);
    d.drain(&mut log, t0);
    // A protocol 4 client is connected to `/` without asking.
    d.open(b, 3, t0);
    let id = connect_id(&d.drain(&mut log, t0));
    let sb = d.accept(b, id, t0);
    d.drain(&mut log, t0);
    // An event, then one asking for an acknowledgement.
    d.message(a, r#"42["hello",1]"#, t0);
    d.message(a, r#"427["ask"]"#, t0);
    let events = d.drain(&mut log, t0);
    let token = events
        .into_iter()
        .find_map(|e| match e {
            Event::Event { ack: Some(t), .. } => Some(t),
            _ => None,
        })
        .expect("an event with an ack");
    d.ack(a, token, r#"["ok"]"#, t0);
    d.emit(b, sb, "news", r#"[{"n":1}]"#, t0);
    d.drain(&mut log, t0);
    // One acknowledgement answered, one that times out.
    d.emit_with_ack(a, sa, Duration::from_millis(500), t0);
    d.drain(&mut log, t0);
    d.message(a, r#"430[3]"#, t0);
    d.emit_with_ack(a, sa, Duration::from_millis(500), t0);
    d.drain(&mut log, t0);
    let t1 = t0 + Duration::from_millis(600);
    d.timeout(t1);
    d.drain(&mut log, t1);
    // A namespace that does not exist: the connection goes on.
    d.message(a, "40/nope,", t1);
    d.drain(&mut log, t1);
    // The client leaves `/`; the v4 client's socket is disconnected by the server.
    d.message(a, "41", t1);
    d.disconnect(b, sb, t1);
    d.drain(&mut log, t1);
    // Back in `/`; then a message that does not decode closes the connection, and the
    // socket leaves with a parse error.
    d.message(a, "40", t1);
    let id = connect_id(&d.drain(&mut log, t1));
    d.accept(a, id, t1);
    d.drain(&mut log, t1);
    d.message(a, "42[", t1);
    d.drain(&mut log, t1);
    log
}

#[test]
fn the_parts_and_the_composition_say_the_same_things() {
    let t0 = Instant::now();
    let config = config();
    let engine = Engine::from_endpoint(Endpoint::new(config.engine.clone(), ENGINE_SEED));
    let mut composed = Composed {
        server: Server::with_engine(config.clone(), engine, SOCKET_SEED),
    };
    let shared = Mutex::new(Shared::new(SOCKET_SEED));
    let taken = AtomicUsize::new(0);
    let mut parts = Parts {
        endpoint: Endpoint::new(config.engine.clone(), ENGINE_SEED),
        config,
        keeps: shared.lock().unwrap().keeps_packets(),
        shared: &shared,
        taken: &taken,
        sessions: Vec::new(),
    };
    let said = script(&mut composed, t0);
    let same = script(&mut parts, t0);
    assert_eq!(said, same);
    // The script covers what it claims to.
    for needle in [
        r#"send 40{"sid":"#,
        "send 42[\"news\",{\"n\":1}]",
        r#"send 437["ok"]"#,
        "reason: Timeout",
        "Invalid namespace",
        "reason: ClientNamespaceDisconnect",
        "reason: ServerNamespaceDisconnect",
        "reason: ParseError",
        "close",
    ] {
        assert!(
            said.iter().any(|l| l.contains(needle)),
            "{needle} never said: {said:#?}"
        );
    }
    let shared = shared.lock().unwrap();
    assert_eq!(shared.namespaces().socket_count(), 0);
    assert_eq!(shared.pending_connect_count(), 0);
    assert_eq!(composed.server.socket_count(), 0);
}

/// The parts over `shared`, with an endpoint of their own.
fn parts<'a>(shared: &'a Mutex<Shared>, taken: &'a AtomicUsize, seed: u8) -> Parts<'a> {
    let config = config();
    Parts {
        endpoint: Endpoint::new(config.engine.clone(), [seed; 32]),
        config,
        keeps: shared.lock().unwrap().keeps_packets(),
        shared,
        taken,
        sessions: Vec::new(),
    }
}

/// Opens a v5 session on `conn` and accepts its connect to `nsp`; the socket.
fn join(p: &mut Parts<'_>, conn: ConnId, nsp: &str, now: Instant) -> SocketId {
    let mut log = Vec::new();
    if !p.sessions.iter().any(|o| o.conn == conn) {
        p.open(conn, 4, now);
        p.drain(&mut log, now);
    }
    let connect = if nsp == "/" {
        "40".to_owned()
    } else {
        format!("40{nsp},")
    };
    p.message(conn, &connect, now);
    let id = connect_id(&p.drain(&mut log, now));
    let socket = p.accept(conn, id, now);
    p.drain(&mut log, now);
    socket
}

#[test]
fn events_acknowledgements_and_emits_take_no_lock() {
    let now = Instant::now();
    let shared = Mutex::new(Shared::new(SOCKET_SEED));
    let taken = AtomicUsize::new(0);
    let mut p = parts(&shared, &taken, 1);
    let conn = ConnId(1);
    let socket = join(&mut p, conn, "/", now);
    let mut log = Vec::new();
    for _ in 0..20 {
        p.emit_with_ack(conn, socket, Duration::from_secs(5), now);
    }
    p.drain(&mut log, now);
    let before = taken.load(Ordering::Relaxed);
    assert!(before > 0, "a connect takes the lock");
    let mut answered = 0;
    for n in 0..20 {
        p.message(conn, &format!(r#"42["e",{n}]"#), now);
        p.message(conn, &format!(r#"42{n}["ask",{n}]"#), now);
        p.message(conn, &format!("43{n}[{n}]"), now);
        for event in p.drain(&mut log, now) {
            match event {
                Event::Event {
                    ack: Some(token), ..
                } => {
                    p.ack(conn, token, "[true]", now);
                    answered += 1;
                }
                Event::Event { ack: None, .. } | Event::Ack { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        p.emit(conn, socket, "out", &format!("[{n}]"), now);
    }
    p.drain(&mut log, now);
    assert_eq!(answered, 20);
    assert_eq!(
        log.iter().filter(|l| l.starts_with("event Ack ")).count(),
        20,
        "every acknowledgement reached the application"
    );
    assert_eq!(
        taken.load(Ordering::Relaxed),
        before,
        "events, acknowledgements and emits took the shared lock"
    );
}

#[test]
fn sessions_on_several_threads_share_one_index() {
    let now = Instant::now();
    let mut first = Shared::new(SOCKET_SEED);
    first.namespaces_mut().add("/chat");
    let shared = Mutex::new(first);
    let taken = AtomicUsize::new(0);
    let room = volley_core::socketio::Room::new("r");
    let selecting = std::sync::atomic::AtomicBool::new(true);
    let opts = volley_core::socketio::BroadcastOptions {
        rooms: vec![room.clone()],
        ..Default::default()
    };
    let ids: Vec<SocketId> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..4u8)
            .map(|k| {
                let (shared, taken, room) = (&shared, &taken, room.clone());
                scope.spawn(move || {
                    let mut p = parts(shared, taken, 10 + k);
                    let mut ids = Vec::new();
                    let mut log = Vec::new();
                    for i in 0..25u64 {
                        let conn = ConnId(u64::from(k) * 100 + i);
                        let main = join(&mut p, conn, "/", now);
                        let chat = join(&mut p, conn, "/chat", now);
                        p.shared
                            .lock()
                            .unwrap()
                            .namespaces_mut()
                            .join(main, room.clone());
                        if i % 2 == 0 {
                            p.message(conn, "41/chat,", now);
                            p.drain(&mut log, now);
                        }
                        ids.extend([main, chat]);
                    }
                    ids
                })
            })
            .collect();
        let selector = scope.spawn(|| {
            let mut rounds = 0;
            while selecting.load(Ordering::Relaxed) || rounds == 0 {
                let picked = shared.lock().unwrap().namespaces().select("/", &opts);
                let mut unique = picked.clone();
                unique.sort();
                unique.dedup();
                assert_eq!(unique.len(), picked.len(), "a socket selected twice");
                rounds += 1;
            }
            rounds
        });
        let ids = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        selecting.store(false, Ordering::Relaxed);
        assert!(selector.join().unwrap() > 0);
        ids
    });
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 200, "every socket got an id of its own");
    let shared = shared.lock().unwrap();
    let index = shared.namespaces();
    assert_eq!(index.namespace_socket_count("/"), 100);
    // Each thread's sockets 0, 2, …, 24 left `/chat`: 12 of 25 stay.
    assert_eq!(index.namespace_socket_count("/chat"), 4 * 12);
    assert_eq!(index.select("/", &opts).len(), 100);
    assert_eq!(shared.pending_connect_count(), 0);
}

#[test]
fn a_session_detached_from_the_composition_goes_on_with_its_own_peer() {
    let now = Instant::now();
    let config = config();
    let shared = Mutex::new(Shared::new(SOCKET_SEED));
    let taken = AtomicUsize::new(0);
    let lent = Locked {
        shared: &shared,
        taken: &taken,
        keeps: false,
    };
    let engine = Engine::from_endpoint(Endpoint::new(config.engine.clone(), ENGINE_SEED));
    let mut composed = Composed {
        server: Server::with_shared(config.clone(), engine, lent),
    };
    let mut log = Vec::new();
    let (a, b) = (ConnId(1), ConnId(2));
    let sockets = connect_all(&mut composed, &[a, b], &mut log, now);
    let sid_a = composed.server.session_of(sockets[0]).unwrap();
    let Detached { session, client } = composed.server.detach(sid_a).expect("an open session");
    assert!(composed.server.detach(sid_a).is_none(), "detached once");
    assert_eq!(composed.server.client_count(), 1);
    assert_eq!(composed.server.engine().session_count(), 1);
    // The session goes on with a peer of its own over the same shared state.
    let mut parts = Parts {
        endpoint: Endpoint::new(config.engine.clone(), [3; 32]),
        keeps: false,
        config,
        shared: &shared,
        taken: &taken,
        sessions: vec![Owned {
            conn: a,
            session: *session,
            client: Some(*client),
            events: VecDeque::new(),
        }],
    };
    let mut own = Vec::new();
    parts.message(a, r#"42["mine",1]"#, now);
    let events = parts.drain(&mut own, now);
    assert!(
        matches!(&events[..], [Event::Event { name, socket, .. }] if name == "mine" && *socket == sockets[0]),
        "{events:?}"
    );
    assert!(
        composed.drain(&mut log, now).is_empty(),
        "the composition saw it"
    );
    // A broadcast of the composition selects both sockets from the shared index and
    // delivers to the one it still runs.
    let sent = composed
        .server
        .broadcast("/", &Default::default(), "all", "[]", Vec::new(), now)
        .unwrap();
    assert_eq!(sent, 1);
    let mut wire = Vec::new();
    composed.drain(&mut wire, now);
    assert_eq!(wire, vec![r#"send 42["all"]"#.to_owned()]);
    // The detached session's sockets leave through its peer; the shared index follows.
    parts.message(a, "41", now);
    let left = parts.drain(&mut own, now);
    assert!(
        matches!(left.last(), Some(Event::Disconnect { .. })),
        "{left:?}"
    );
    assert!(!composed.server.contains(sockets[0]));
    assert!(composed.server.contains(sockets[1]));
    assert_eq!(composed.server.socket_count(), 1);
}

#[test]
fn a_session_moves_between_compositions_over_one_shared_state() {
    let now = Instant::now();
    let config = config();
    let shared = Mutex::new(Shared::new(SOCKET_SEED));
    let taken = AtomicUsize::new(0);
    let lend = || Locked {
        shared: &shared,
        taken: &taken,
        keeps: false,
    };
    let engine = |seed| Engine::from_endpoint(Endpoint::new(config.engine.clone(), seed));
    let mut first = Composed {
        server: Server::with_shared(config.clone(), engine([1; 32]), lend()),
    };
    let mut second = Composed {
        server: Server::with_shared(config.clone(), engine([2; 32]), lend()),
    };
    let mut log = Vec::new();
    let (a, b) = (ConnId(1), ConnId(2));
    let mut sockets = Vec::new();
    for conn in [a, b] {
        first.open(conn, 4, now);
        first.drain(&mut log, now);
        first.message(conn, "40", now);
        let id = connect_id(&first.drain(&mut log, now));
        sockets.push(first.accept(conn, id, now));
        first.drain(&mut log, now);
    }
    let sid = first.server.session_of(sockets[0]).unwrap();
    let Detached { session, client } = first.server.detach(sid).unwrap();
    // A client of another session is refused, and both are handed back.
    let other = first
        .server
        .detach(first.server.session_of(sockets[1]).unwrap())
        .unwrap();
    let mixed = Detached {
        session,
        client: other.client,
    };
    let Detached {
        session,
        client: other_client,
    } = second
        .server
        .adopt(mixed, now)
        .expect_err("a client of another session");
    first
        .server
        .adopt(
            Detached {
                session: other.session,
                client: other_client,
            },
            now,
        )
        .expect("taken back where it was");
    second
        .server
        .adopt(Detached { session, client }, now)
        .expect("adopted");
    assert_eq!(
        (first.server.client_count(), second.server.client_count()),
        (1, 1)
    );
    // The session's messages now go through the second composition.
    second.message(a, r#"42["moved"]"#, now);
    let events = second.drain(&mut log, now);
    assert!(
        matches!(&events[..], [Event::Event { name, socket, .. }] if name == "moved" && *socket == sockets[0]),
        "{events:?}"
    );
    // Each composition's broadcast reaches the sessions it runs; the selection is shared.
    let all = volley_core::socketio::BroadcastOptions::default();
    for (server, conn) in [(&mut first, b), (&mut second, a)] {
        let sent = server
            .server
            .broadcast("/", &all, "all", "[]", Vec::new(), now)
            .unwrap();
        assert_eq!(sent, 1);
        let mut wire = Vec::new();
        server.drain(&mut wire, now);
        assert_eq!(wire, vec![r#"send 42["all"]"#.to_owned()], "to {conn}");
    }
    // Its heartbeat moved with it: at the ping interval only the second one pings.
    let later = now + Duration::from_secs(25);
    let (mut pinged_first, mut pinged_second) = (Vec::new(), Vec::new());
    first.timeout(later);
    first.drain(&mut pinged_first, later);
    second.timeout(later);
    second.drain(&mut pinged_second, later);
    assert_eq!(pinged_first, vec!["send 2".to_owned()], "b's own ping");
    assert_eq!(pinged_second, vec!["send 2".to_owned()], "a's ping");
    // Its socket leaves through the second composition; the shared index follows.
    second.message(a, "41", later);
    second.drain(&mut log, later);
    assert!(!first.server.contains(sockets[0]));
    assert_eq!(first.server.socket_count(), 1);
}

fn head(target: &str) -> RequestHead {
    let text = format!(
        "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    parse_head(text.as_bytes(), &Limits::default())
        .expect("a valid head")
        .expect("a complete head")
        .0
}

#[test]
fn broadcasts_hand_their_copies_for_a_detached_session_to_the_caller() {
    let now = Instant::now();
    let config = config();
    let shared = Mutex::new(Shared::new(SOCKET_SEED));
    let taken = AtomicUsize::new(0);
    let lent = Locked {
        shared: &shared,
        taken: &taken,
        keeps: false,
    };
    let engine = Engine::from_endpoint(Endpoint::new(config.engine.clone(), ENGINE_SEED));
    let mut composed = Composed {
        server: Server::with_shared(config.clone(), engine, lent),
    };
    let mut log = Vec::new();
    let (a, b) = (ConnId(1), ConnId(2));
    let sockets = connect_all(&mut composed, &[a, b], &mut log, now);
    let sid_a = composed.server.session_of(sockets[0]).unwrap();
    let Detached { session, client } = composed.server.detach(sid_a).expect("an open session");
    assert!(composed.server.take_handoffs().is_empty());
    let (mut session, mut client) = (*session, *client);

    // A broadcast queues its copy for the session it runs and hands the other on.
    let sent = composed
        .server
        .broadcast("/", &Default::default(), "all", "[1]", Vec::new(), now)
        .unwrap();
    assert_eq!(sent, 1);
    let handoffs = composed.server.take_handoffs();
    assert_eq!(handoffs.len(), 1, "{handoffs:?}");
    assert_eq!(handoffs[0].targets, vec![(sockets[0], sid_a)]);
    assert_eq!(handoffs[0].ack, None);
    assert!(composed.server.take_handoffs().is_empty(), "taken once");
    // The detached session's own peer queues it.
    let first = &handoffs[0].first;
    let delivered = Link::deliver(&mut session, first, &handoffs[0].attachments, false, now);
    assert_eq!(delivered, Delivery::Queued);
    let mut wire = Vec::new();
    while let Some(o) = session.poll_output() {
        wire.push(show_output(&o));
    }
    assert_eq!(wire, vec![r#"send 42["all",1]"#.to_owned()]);

    // With acknowledgements, the id and deadline travel with the copy.
    let (id, asked) = composed
        .server
        .broadcast_with_ack(
            "/",
            &Default::default(),
            "q",
            "[]",
            Vec::new(),
            Some(Duration::from_secs(2)),
            now,
        )
        .unwrap();
    assert_eq!(asked, vec![sockets[1]], "the socket it runs");
    let handoffs = composed.server.take_handoffs();
    assert_eq!(handoffs.len(), 1);
    assert_eq!(
        handoffs[0].ack,
        Some((id, Some(now + Duration::from_secs(2))))
    );
    client.expect_ack(sockets[0], id.0, handoffs[0].ack.unwrap().1);
    assert_eq!(client.ack_count(), 1);

    let mut b_wire = Vec::new();
    composed.drain(&mut b_wire, now);
    assert_eq!(
        b_wire,
        vec![
            r#"send 42["all",1]"#.to_owned(),
            r#"send 420["q"]"#.to_owned()
        ]
    );
    // Requests naming the detached session are answered as it would answer them: a second
    // WebSocket completes its handshake and is closed, a poll is refused.
    let c = ConnId(3);
    let target = format!("/socket.io/?EIO=4&transport=websocket&sid={sid_a}");
    composed
        .server
        .handle_request(c, head(&target), now)
        .unwrap();
    let mut answers = Vec::new();
    composed.drain(&mut answers, now);
    assert_eq!(answers, vec!["response 101".to_owned(), "close".to_owned()]);
    let d = ConnId(4);
    let target = format!("/socket.io/?EIO=4&transport=polling&sid={sid_a}");
    composed
        .server
        .handle_request(d, head(&target), now)
        .unwrap();
    let refused = composed.server.poll_output();
    assert!(
        matches!(&refused, Some(Output::Response { response, .. }) if response.status == 400),
        "{refused:?}"
    );
    // Once it ended elsewhere, its id is unknown.
    composed.server.forget_detached(sid_a);
    let e = ConnId(5);
    let target = format!("/socket.io/?EIO=4&transport=websocket&sid={sid_a}");
    composed
        .server
        .handle_request(e, head(&target), now)
        .unwrap();
    let unknown = composed.server.poll_output();
    assert!(
        matches!(&unknown, Some(Output::Response { response, .. }) if response.status == 400 && String::from_utf8_lossy(&response.body).contains("Session ID unknown")),
        "{unknown:?}"
    );
}
