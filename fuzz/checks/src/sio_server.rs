//! The Socket.IO machine, driven by a runtime stand-in and an application stand-in.
//!
//! # `sio_server`
//! The input (read with `arbitrary`) is a configuration and a seed, then a sequence of
//! operations: everything the `engine` target does (requests, bodies, WebSocket messages,
//! closed connections, clock jumps), where client messages are Socket.IO packets built from
//! parts (CONNECT with or without auth, DISCONNECT, EVENT and ACK with ack ids, binary
//! packets whose attachment count, placeholders and attachments may or may not agree,
//! CONNECT_ERROR, garbage) for declared, dynamic and unknown namespaces; and the application's
//! commands: accept or reject a connect request, emit (volatile or not, with or without an
//! ack and its timeout), answer an ack, join and leave rooms, broadcast (with rooms, except,
//! volatile, with an ack), join or leave rooms or disconnect by selection, disconnect one
//! socket (with or without closing the connection), close everything.
//!
//! Invariants, beyond the runtime model's (see `driver`):
//! - no panic, no livelock;
//! - the sockets are exactly those accepted and not yet reported gone: `socket_count` equals
//!   their number, each is `contains`ed and in its namespace, and starts in the room of its
//!   own id;
//!   every `Disconnect` follows a `Disconnecting` for a connected socket; events and acks only
//!   name connected sockets;
//! - pending acks are exactly those asked for (`emit_with_ack`, `broadcast_with_ack`) and not
//!   yet answered, failed or timed out: `pending_ack_count` equals their number, and every
//!   `Ack` / `AckFailed` settles one of them once;
//! - a command fails exactly when it names something gone (`UnknownSocket`,
//!   `UnknownConnect`, `UnknownNamespace`); accepting or rejecting a request the application
//!   was never given never succeeds;
//! - `client_count` equals the engine's `session_count`; `timer_count` is at most one connect
//!   timer per client plus one per pending ack;
//! - `poll_timeout` is never before `now` (never at it once `handle_timeout(now)` ran);
//! - once every connection is closed and the clock has run out, everything is back to zero:
//!   clients, sockets, acks, connect requests, timers, the engine's sessions, connections and
//!   timers; dynamic namespaces made to be cleaned up are gone, and no room has a member.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use volley_core::engine::Message;
use volley_core::socketio::{
    AckToken, BroadcastOptions, Config, ConnectId, Event, Room, Server, SioError,
};
use volley_core::{SocketId, Utf8Bytes};

use crate::driver::{self, CommonOp, ConfigSpec, Harness, Messages, Millis};

#[derive(Arbitrary, Debug)]
struct Setup {
    config: ConfigSpec,
    seed: [u8; 32],
    connect_timeout: Millis,
    max_attachments: u8,
    /// Accept every connect request as it comes, as an application without middleware.
    auto_accept: bool,
}

/// A namespace as a packet or a command names it.
#[derive(Debug, Clone)]
enum NspSel {
    Root,
    Admin,
    /// Created on first connect, removed when empty.
    Dynamic(u8),
    /// Created on first connect, kept.
    Kept(u8),
    Unknown,
    Raw(String),
}

impl<'a> Arbitrary<'a> for NspSel {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        // Mostly `/`, which every client joins first.
        Ok(match u.int_in_range(0..=11u8)? {
            0 => NspSel::Admin,
            1 => NspSel::Dynamic(u.arbitrary()?),
            2 => NspSel::Kept(u.arbitrary()?),
            3 => NspSel::Unknown,
            4 => NspSel::Raw(u.arbitrary()?),
            _ => NspSel::Root,
        })
    }
}

impl NspSel {
    fn name(&self) -> String {
        match self {
            NspSel::Root => "/".to_owned(),
            NspSel::Admin => "/admin".to_owned(),
            NspSel::Dynamic(n) => format!("/dyn-{}", n % 3),
            NspSel::Kept(n) => format!("/keep-{}", n % 2),
            NspSel::Unknown => "/nope".to_owned(),
            NspSel::Raw(s) => format!("/{s}"),
        }
    }

    /// The namespace part of a packet: nothing for `/`.
    fn prefix(&self) -> String {
        match self {
            NspSel::Root => String::new(),
            other => format!("{},", other.name()),
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum NameSel {
    Message,
    Chat,
    Reserved,
    Raw(String),
}

impl NameSel {
    fn name(&self) -> &str {
        match self {
            NameSel::Message => "message",
            NameSel::Chat => "chat",
            NameSel::Reserved => "disconnect",
            NameSel::Raw(s) => s,
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum ArgsSel {
    Empty,
    Sample,
    Placeholder,
    Raw(String),
}

impl ArgsSel {
    fn json(&self) -> &str {
        match self {
            ArgsSel::Empty => "[]",
            ArgsSel::Sample => r#"[1,"2",{"3":[true]}]"#,
            ArgsSel::Placeholder => r#"[{"_placeholder":true,"num":0}]"#,
            ArgsSel::Raw(s) => s,
        }
    }
}

/// `[name, ...args]` as a client writes an event's payload.
fn event_json(name: &str, args: &str) -> String {
    let name = serde_json::to_string(name).unwrap_or_default();
    let inner = args
        .trim()
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(args);
    if inner.trim().is_empty() {
        format!("[{name}]")
    } else {
        format!("[{name},{inner}]")
    }
}

/// A Socket.IO packet a client sends (one text message, and attachments for binary ones).
#[derive(Debug)]
enum SioMessage {
    Connect(NspSel, Option<ArgsSel>),
    Disconnect(NspSel),
    Event(NspSel, NameSel, ArgsSel, Option<u16>),
    Binary {
        ack: bool,
        nsp: NspSel,
        count: u8,
        id: Option<u16>,
        attachments: Vec<Vec<u8>>,
    },
    Ack(NspSel, u16, ArgsSel),
    ConnectError(NspSel),
    Raw(String),
    RawBinary(Vec<u8>),
}

impl<'a> Arbitrary<'a> for SioMessage {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        // Mostly what a well-behaved client sends: connects and events.
        Ok(match u.int_in_range(0..=15u8)? {
            0..=3 => SioMessage::Connect(u.arbitrary()?, u.arbitrary()?),
            4..=7 => SioMessage::Event(
                u.arbitrary()?,
                u.arbitrary()?,
                u.arbitrary()?,
                u.arbitrary()?,
            ),
            8 => SioMessage::Disconnect(u.arbitrary()?),
            9 | 10 => SioMessage::Binary {
                ack: u.arbitrary()?,
                nsp: u.arbitrary()?,
                count: u.arbitrary()?,
                id: u.arbitrary()?,
                attachments: u.arbitrary()?,
            },
            11 | 12 => SioMessage::Ack(u.arbitrary()?, u.arbitrary()?, u.arbitrary()?),
            13 => SioMessage::ConnectError(u.arbitrary()?),
            14 => SioMessage::Raw(u.arbitrary()?),
            _ => SioMessage::RawBinary(u.arbitrary()?),
        })
    }
}

impl Messages for SioMessage {
    fn messages(&self) -> Vec<Message> {
        let text = |s: String| vec![Message::Text(Utf8Bytes::from(s))];
        let id = |id: &Option<u16>| id.map(|i| i.to_string()).unwrap_or_default();
        match self {
            SioMessage::Connect(nsp, auth) => {
                let auth = match auth {
                    None => "",
                    Some(ArgsSel::Empty) => "{}",
                    Some(ArgsSel::Sample) => r#"{"token":"abc"}"#,
                    Some(other) => other.json(),
                };
                text(format!("0{}{auth}", nsp.prefix()))
            }
            SioMessage::Disconnect(nsp) => text(format!("1{}", nsp.prefix())),
            SioMessage::Event(nsp, name, args, ack) => text(format!(
                "2{}{}{}",
                nsp.prefix(),
                id(ack),
                event_json(name.name(), args.json())
            )),
            SioMessage::Binary {
                ack,
                nsp,
                count,
                id: ack_id,
                attachments,
            } => {
                let count = count % 4;
                let placeholders: Vec<String> = (0..count)
                    .map(|i| format!(r#"{{"_placeholder":true,"num":{i}}}"#))
                    .collect();
                let payload = if *ack {
                    format!("[{}]", placeholders.join(","))
                } else {
                    event_json("message", &format!("[{}]", placeholders.join(",")))
                };
                let kind = if *ack { '6' } else { '5' };
                let mut out = text(format!(
                    "{kind}{count}-{}{}{payload}",
                    nsp.prefix(),
                    id(ack_id)
                ));
                out.extend(
                    attachments
                        .iter()
                        .take(5)
                        .map(|a| Message::Binary(Bytes::copy_from_slice(a))),
                );
                out
            }
            // Server ack ids count from 0 per namespace: small ones hit pending acks.
            SioMessage::Ack(nsp, ack, args) => {
                text(format!("3{}{}{}", nsp.prefix(), ack % 16, args.json()))
            }
            SioMessage::ConnectError(nsp) => {
                text(format!("4{}{{\"message\":\"no\"}}", nsp.prefix()))
            }
            SioMessage::Raw(s) => text(s.clone()),
            SioMessage::RawBinary(b) => vec![Message::Binary(Bytes::copy_from_slice(b))],
        }
    }
}

/// A socket as a command names it.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum SockSel {
    /// A connected one (cycling by index).
    Live(u8),
    /// Any socket ever accepted, connected or gone.
    Any(u8),
}

#[derive(Arbitrary, Debug, Clone)]
enum RoomSel {
    A,
    B,
    C,
    /// The room of a socket's own id.
    Socket(SockSel),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct OptsSpec {
    rooms: Vec<RoomSel>,
    except: Vec<RoomSel>,
    volatile: bool,
    local: bool,
    compress: bool,
}

#[derive(Arbitrary, Debug)]
struct EmitSpec {
    name: NameSel,
    args: ArgsSel,
    attachments: Vec<Vec<u8>>,
}

impl EmitSpec {
    fn attachments(&self) -> Vec<Bytes> {
        self.attachments
            .iter()
            .take(4)
            .map(|a| Bytes::copy_from_slice(a))
            .collect()
    }
}

#[derive(Debug)]
enum Op {
    Common(CommonOp<SioMessage>),
    App(AppOp),
}

impl<'a> Arbitrary<'a> for Op {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        // A quarter are Socket.IO packets from a client, the heart of this target; closing
        // everything is rare, or little would stay open long enough to matter.
        Ok(match u.int_in_range(0..=63u8)? {
            0..=15 => Op::Common(CommonOp::Client(
                u.arbitrary()?,
                u.arbitrary()?,
                u.arbitrary()?,
            )),
            16..=39 => Op::Common(u.arbitrary()?),
            40 => Op::App(AppOp::CloseAll),
            _ => Op::App(u.arbitrary()?),
        })
    }
}

/// The application's commands.
#[derive(Arbitrary, Debug)]
enum AppOp {
    Accept(u8),
    Reject(u8, String, Option<ArgsSel>),
    Emit(SockSel, EmitSpec, bool),
    EmitWithAck(SockSel, EmitSpec, Option<Millis>),
    Ack(u8, ArgsSel, Vec<Vec<u8>>),
    Join(SockSel, RoomSel),
    Leave(SockSel, RoomSel),
    Broadcast(NspSel, OptsSpec, EmitSpec),
    BroadcastWithAck(NspSel, OptsSpec, EmitSpec, Option<Millis>),
    SocketsJoin(NspSel, OptsSpec, Vec<RoomSel>),
    SocketsLeave(NspSel, OptsSpec, Vec<RoomSel>),
    DisconnectSockets(NspSel, OptsSpec, bool),
    Disconnect(SockSel, bool),
    /// Not drawn with the others (see `Op`'s `arbitrary`).
    #[arbitrary(skip)]
    CloseAll,
}

/// What the application knows.
#[derive(Default)]
struct Model {
    /// Connect requests handed out and not settled (some may have been dropped since, with
    /// their client).
    pending: Vec<(ConnectId, Arc<str>)>,
    /// Connected sockets and their namespaces.
    sockets: HashMap<SocketId, Arc<str>>,
    /// Every socket ever accepted, in order.
    ever: Vec<SocketId>,
    disconnecting: HashSet<SocketId>,
    /// Acks asked for and not settled.
    acks: HashSet<(SocketId, u64)>,
    /// Acks clients asked for, not answered yet.
    tokens: Vec<AckToken>,
    auto_accept: bool,
}

impl Model {
    fn socket(&self, sel: SockSel) -> SocketId {
        let fallback = || SocketId::new("never-accepted").expect("a valid id");
        match sel {
            SockSel::Live(i) => {
                let mut live: Vec<SocketId> = self.sockets.keys().copied().collect();
                live.sort_unstable();
                live.get(usize::from(i) % live.len().max(1))
                    .copied()
                    .unwrap_or_else(fallback)
            }
            SockSel::Any(i) => self
                .ever
                .get(usize::from(i) % self.ever.len().max(1))
                .copied()
                .unwrap_or_else(fallback),
        }
    }

    fn room(&self, sel: &RoomSel) -> Room {
        match sel {
            RoomSel::A => Room::new("a"),
            RoomSel::B => Room::new("b"),
            RoomSel::C => Room::new("c"),
            RoomSel::Socket(s) => Room::from(self.socket(*s)),
            RoomSel::Raw(s) => Room::new(s),
        }
    }

    fn opts(&self, spec: &OptsSpec) -> BroadcastOptions {
        BroadcastOptions {
            rooms: spec.rooms.iter().take(4).map(|r| self.room(r)).collect(),
            except: spec.except.iter().take(4).map(|r| self.room(r)).collect(),
            volatile: spec.volatile,
            local: spec.local,
            compress: spec.compress,
        }
    }

    /// A request to settle (taken out of the list), or one never made.
    fn take_pending(&mut self, i: u8) -> (ConnectId, Arc<str>) {
        if self.pending.is_empty() {
            return (ConnectId(u64::MAX), Arc::from("/"));
        }
        let at = usize::from(i) % self.pending.len();
        self.pending.remove(at)
    }
}

/// Drives one Socket.IO server through the operations the input describes (see the module
/// documentation for the invariants).
pub fn sio_server(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else {
        return;
    };
    let ops: Vec<Op> = driver::ops(&mut u);
    if std::env::var_os("VOLLEY_FUZZ_DEBUG").is_some() {
        eprintln!("{setup:#?}\n{ops:#?}");
    }
    let config = Config {
        engine: setup.config.build("/socket.io/"),
        connect_timeout: setup.connect_timeout.or(Config::default().connect_timeout),
        max_attachments: usize::from(setup.max_attachments % 12),
        ..Config::default()
    };
    let mut server = Server::new(config, setup.seed);
    server.add_namespace("/admin");
    server.add_dynamic_namespace(|n| n.starts_with("/dyn-"), true);
    server.add_dynamic_namespace(|n| n.starts_with("/keep-"), false);
    let mut h = Harness::new(server, "/socket.io/", Instant::now(), false);
    let mut model = Model {
        auto_accept: setup.auto_accept,
        ..Model::default()
    };
    for op in &ops {
        apply(&mut h, &mut model, op);
        settle(&mut h, &mut model);
        while h.next_deferred() {
            settle(&mut h, &mut model);
        }
    }
    let mut finish = |h: &mut Harness<Server>| settle(h, &mut model);
    h.close_all(&mut finish);
    h.run_out_the_clock(&mut finish);
    let s = &h.m;
    assert_eq!(s.client_count(), 0, "clients left");
    assert_eq!(s.socket_count(), 0, "sockets left");
    assert_eq!(s.pending_ack_count(), 0, "acks left");
    assert_eq!(s.pending_connect_count(), 0, "connect requests left");
    assert_eq!(s.timer_count(), 0, "timers left");
    for nsp in s.namespaces() {
        assert!(
            !nsp.starts_with("/dyn-"),
            "dynamic namespace {nsp} was not cleaned up"
        );
        assert_eq!(s.room_count(nsp), 0, "rooms left in {nsp}");
        assert_eq!(s.namespace_socket_count(nsp), 0);
    }
    assert!(model.sockets.is_empty() && model.acks.is_empty() && model.disconnecting.is_empty());
}

fn apply(h: &mut Harness<Server>, model: &mut Model, op: &Op) {
    let now = h.now;
    let op = match op {
        Op::Common(op) => return h.run(op),
        Op::App(op) => op,
    };
    match op {
        AppOp::Accept(i) => {
            let (id, nsp) = model.take_pending(*i);
            match h.m.accept(id, now) {
                Ok(socket) => {
                    assert_ne!(id, ConnectId(u64::MAX), "accepted a request never made");
                    // A full queue may already have closed the session: then the socket is
                    // gone again, and its departure is among the events.
                    if let Some(actual) = h.m.namespace_of(socket) {
                        assert_eq!(*actual, nsp);
                        assert!(h.m.rooms_of(socket).contains(&Room::from(socket)));
                    }
                    assert!(
                        !model.sockets.contains_key(&socket),
                        "{socket} accepted twice"
                    );
                    model.sockets.insert(socket, nsp);
                    model.ever.push(socket);
                }
                Err(e) => assert_eq!(e, SioError::UnknownConnect(id)),
            }
        }
        AppOp::Reject(i, message, data) => {
            let (id, _) = model.take_pending(*i);
            let data = data.as_ref().map(ArgsSel::json);
            match h.m.reject(id, message, data, now) {
                Ok(()) => assert_ne!(id, ConnectId(u64::MAX), "rejected a request never made"),
                Err(e) => assert_eq!(e, SioError::UnknownConnect(id)),
            }
        }
        AppOp::Emit(sel, spec, volatile) => {
            let socket = model.socket(*sel);
            let live = model.sockets.contains_key(&socket);
            let r = h.m.emit(
                socket,
                spec.name.name(),
                spec.args.json(),
                spec.attachments(),
                *volatile,
                now,
            );
            check_socket_result(live, socket, r.map(|_| ()));
        }
        AppOp::EmitWithAck(sel, spec, timeout) => {
            let socket = model.socket(*sel);
            let live = model.sockets.contains_key(&socket);
            let timeout = timeout.map(|t| t.or(std::time::Duration::from_secs(5)));
            let r = h.m.emit_with_ack(
                socket,
                spec.name.name(),
                spec.args.json(),
                spec.attachments(),
                timeout,
                now,
            );
            if let Ok(id) = &r {
                assert!(model.acks.insert((socket, id.0)), "ack id {id:?} reused");
            }
            check_socket_result(live, socket, r.map(|_| ()));
        }
        AppOp::Ack(i, args, attachments) => {
            if model.tokens.is_empty() {
                return;
            }
            let token = model
                .tokens
                .swap_remove(usize::from(*i) % model.tokens.len());
            let socket = token.socket();
            let live = model.sockets.contains_key(&socket);
            let attachments = attachments
                .iter()
                .take(4)
                .map(|a| Bytes::copy_from_slice(a))
                .collect();
            let r = h.m.ack(token, args.json(), attachments, now);
            check_socket_result(live, socket, r);
        }
        AppOp::Join(sel, room) => {
            let socket = model.socket(*sel);
            let room = model.room(room);
            let r = h.m.join(socket, room.clone());
            check_socket_result(model.sockets.contains_key(&socket), socket, r);
            if model.sockets.contains_key(&socket) {
                assert!(h.m.rooms_of(socket).contains(&room));
            }
        }
        AppOp::Leave(sel, room) => {
            let socket = model.socket(*sel);
            let r = h.m.leave(socket, &model.room(room));
            check_socket_result(model.sockets.contains_key(&socket), socket, r);
        }
        AppOp::Broadcast(nsp, opts, spec) => {
            let (nsp, exists) = (nsp.name(), h.m.namespaces().any(|n| n == nsp.name()));
            let opts = model.opts(opts);
            let selected = check_select(h, model, &nsp, &opts);
            let r = h.m.broadcast(
                &nsp,
                &opts,
                spec.name.name(),
                spec.args.json(),
                spec.attachments(),
                now,
            );
            match r {
                Ok(n) => assert!(exists && n <= selected.len()),
                Err(e) => assert!(!exists && e == SioError::UnknownNamespace(nsp)),
            }
        }
        AppOp::BroadcastWithAck(nsp, opts, spec, timeout) => {
            let (nsp, exists) = (nsp.name(), h.m.namespaces().any(|n| n == nsp.name()));
            let opts = model.opts(opts);
            let selected = check_select(h, model, &nsp, &opts);
            let timeout = timeout.map(|t| t.or(std::time::Duration::from_secs(5)));
            let r = h.m.broadcast_with_ack(
                &nsp,
                &opts,
                spec.name.name(),
                spec.args.json(),
                spec.attachments(),
                timeout,
                now,
            );
            match r {
                Ok((id, sent)) => {
                    assert!(exists);
                    for s in sent {
                        assert!(selected.contains(&s), "{s} was not selected");
                        assert!(model.acks.insert((s, id.0)), "ack id {id:?} reused");
                    }
                }
                Err(e) => assert!(!exists && e == SioError::UnknownNamespace(nsp)),
            }
        }
        AppOp::SocketsJoin(nsp, opts, rooms) => {
            let opts = model.opts(opts);
            let rooms: Vec<Room> = rooms.iter().take(4).map(|r| model.room(r)).collect();
            let selected = check_select(h, model, &nsp.name(), &opts);
            h.m.sockets_join(&nsp.name(), &opts, &rooms);
            for s in selected {
                let joined = h.m.rooms_of(s);
                assert!(rooms.iter().all(|r| joined.contains(r)));
            }
        }
        AppOp::SocketsLeave(nsp, opts, rooms) => {
            let opts = model.opts(opts);
            let rooms: Vec<Room> = rooms.iter().take(4).map(|r| model.room(r)).collect();
            check_select(h, model, &nsp.name(), &opts);
            h.m.sockets_leave(&nsp.name(), &opts, &rooms);
        }
        AppOp::DisconnectSockets(nsp, opts, close) => {
            let opts = model.opts(opts);
            check_select(h, model, &nsp.name(), &opts);
            h.m.disconnect_sockets(&nsp.name(), &opts, *close, now);
        }
        AppOp::Disconnect(sel, close) => {
            let socket = model.socket(*sel);
            let r = h.m.disconnect(socket, *close, now);
            check_socket_result(model.sockets.contains_key(&socket), socket, r);
        }
        AppOp::CloseAll => h.m.close_all(now),
    }
}

/// A command on a socket fails with `UnknownSocket` exactly when the socket is gone; on a
/// connected one only a full queue may make it fail.
fn check_socket_result(live: bool, socket: SocketId, r: Result<(), SioError>) {
    match r {
        Ok(()) => assert!(live, "a command on gone {socket} succeeded"),
        Err(SioError::UnknownSocket(s)) => assert!(!live && s == socket, "{socket} unknown"),
        Err(SioError::BufferFull(s)) => assert!(live && s == socket),
        Err(e) => panic!("unexpected {e:?}"),
    }
}

/// `select` names connected sockets of the namespace, each once.
fn check_select(
    h: &Harness<Server>,
    model: &Model,
    nsp: &str,
    opts: &BroadcastOptions,
) -> Vec<SocketId> {
    let selected = h.m.select(nsp, opts);
    let unique: HashSet<&SocketId> = selected.iter().collect();
    assert_eq!(unique.len(), selected.len(), "select named a socket twice");
    for s in &selected {
        assert_eq!(
            model.sockets.get(s).map(|n| &**n),
            Some(nsp),
            "select named {s}"
        );
    }
    selected
}

/// Drains events then outputs until both are empty, checking the invariants.
fn settle(h: &mut Harness<Server>, model: &mut Model) {
    let mut budget = driver::DRAIN_BUDGET;
    loop {
        let mut n = 0;
        while let Some(event) = h.m.poll_event() {
            n += 1;
            on_event(h, model, event);
        }
        n += h.drain_outputs();
        if n == 0 && model.auto_accept && !model.pending.is_empty() {
            apply(h, model, &Op::App(AppOp::Accept(0)));
            n = 1;
        }
        if n == 0 {
            break;
        }
        budget = budget.checked_sub(n).expect("the server never goes idle");
    }
    let s = &h.m;
    assert_eq!(
        s.socket_count(),
        model.sockets.len(),
        "sockets differ from the events"
    );
    assert_eq!(
        s.pending_ack_count(),
        model.acks.len(),
        "acks differ from the events"
    );
    assert!(s.pending_connect_count() <= model.pending.len());
    assert_eq!(s.client_count(), s.engine().session_count());
    assert!(s.timer_count() <= s.client_count() + s.pending_ack_count());
    for (socket, nsp) in &model.sockets {
        assert!(s.contains(*socket));
        assert_eq!(s.namespace_of(*socket), Some(nsp));
        assert!(s.session_of(*socket).is_some() && s.handshake(*socket).is_some());
    }
    h.check();
}

fn on_event(h: &mut Harness<Server>, model: &mut Model, event: Event) {
    match event {
        Event::Connect(req) => {
            assert!(req.nsp.starts_with('/'), "connect to {:?}", req.nsp);
            assert!(
                model.pending.iter().all(|(id, _)| *id != req.id),
                "connect request {:?} twice",
                req.id
            );
            model.pending.push((req.id, req.nsp.clone()));
            h.saw_sid(req.handshake.sid);
        }
        Event::Event {
            socket, nsp, ack, ..
        } => {
            assert_eq!(
                model.sockets.get(&socket),
                Some(&nsp),
                "an event from {socket}"
            );
            if let Some(token) = ack {
                assert_eq!(token.socket(), socket);
                model.tokens.push(token);
            }
        }
        Event::Ack { socket, id, .. } => {
            assert!(
                model.acks.remove(&(socket, id.0)),
                "an ack nobody waits for"
            );
        }
        Event::AckFailed { socket, id, .. } => {
            assert!(
                model.acks.remove(&(socket, id.0)),
                "a failed ack nobody waits for"
            );
        }
        Event::Disconnecting { socket, nsp, .. } => {
            assert_eq!(
                model.sockets.get(&socket),
                Some(&nsp),
                "{socket} is not connected"
            );
            assert!(model.disconnecting.insert(socket));
        }
        Event::Disconnect { socket, nsp, .. } => {
            assert!(
                model.disconnecting.remove(&socket),
                "no disconnecting for {socket}"
            );
            assert_eq!(model.sockets.remove(&socket), Some(nsp));
        }
    }
}
