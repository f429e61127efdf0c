//! What the two machine targets share: a runtime stand-in that feeds a machine HTTP requests,
//! bodies and WebSocket messages built from structured parts, performs its outputs, keeps a
//! model of every connection, and checks the machine against that model.
//!
//! The model of a connection is what a runtime knows: a request was handed in and not
//! answered yet, a body was asked for, a WebSocket was accepted, or the connection is gone.
//! From it follow the checks on the machine's contract:
//! - every output concerns a connection in the right state: a response only for a request
//!   awaiting one, a body read only for a POST, WebSocket sends and closes only on WebSockets;
//! - `ApiMisuse` errors come exactly when the runtime misused the machine (a request on a busy
//!   connection, a body nobody asked for, a message on something not a WebSocket);
//! - the machine holds exactly the connections that are busy in the model (no request is
//!   dropped without an answer, none is held after its answer);
//! - what the server writes decodes: a polling response in the framing of its protocol, a
//!   WebSocket message as a packet of its protocol.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use volley_core::engine::payload::{Framing, decode_payload, encode_payload};
use volley_core::engine::{
    self, ApiMisuse, Body, Engine, Message, Output, OverflowPolicy, Packet, Protocol, Transports,
    WsMessage,
};
use volley_core::http::{Limits, Method, RequestHead, Response, parse_head};
use volley_core::socketio::Server;
use volley_core::{ConnId, Sid, Utf8Bytes};

/// The inputs and outputs [`Engine`] and [`Server`] share.
pub(crate) trait Machine {
    fn handle_request(
        &mut self,
        conn: ConnId,
        head: RequestHead,
        now: Instant,
    ) -> Result<(), ApiMisuse>;
    fn handle_body(&mut self, conn: ConnId, body: Body, now: Instant) -> Result<(), ApiMisuse>;
    fn handle_ws_message(
        &mut self,
        conn: ConnId,
        message: WsMessage,
        now: Instant,
    ) -> Result<(), ApiMisuse>;
    fn handle_ws_drained(&mut self, conn: ConnId, now: Instant);
    fn handle_conn_closed(&mut self, conn: ConnId, error: bool, now: Instant);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_output(&mut self) -> Option<Output>;
    fn poll_timeout(&self) -> Option<Instant>;
    fn engine(&self) -> &Engine;
}

macro_rules! forward_machine {
    ($t:ty, $engine:expr) => {
        impl Machine for $t {
            fn handle_request(
                &mut self,
                conn: ConnId,
                head: RequestHead,
                now: Instant,
            ) -> Result<(), ApiMisuse> {
                <$t>::handle_request(self, conn, head, now)
            }
            fn handle_body(
                &mut self,
                conn: ConnId,
                body: Body,
                now: Instant,
            ) -> Result<(), ApiMisuse> {
                <$t>::handle_body(self, conn, body, now)
            }
            fn handle_ws_message(
                &mut self,
                conn: ConnId,
                message: WsMessage,
                now: Instant,
            ) -> Result<(), ApiMisuse> {
                <$t>::handle_ws_message(self, conn, message, now)
            }
            fn handle_ws_drained(&mut self, conn: ConnId, now: Instant) {
                <$t>::handle_ws_drained(self, conn, now)
            }
            fn handle_conn_closed(&mut self, conn: ConnId, error: bool, now: Instant) {
                <$t>::handle_conn_closed(self, conn, error, now)
            }
            fn handle_timeout(&mut self, now: Instant) {
                <$t>::handle_timeout(self, now)
            }
            fn poll_output(&mut self) -> Option<Output> {
                <$t>::poll_output(self)
            }
            fn poll_timeout(&self) -> Option<Instant> {
                <$t>::poll_timeout(self)
            }
            fn engine(&self) -> &Engine {
                let f: fn(&$t) -> &Engine = $engine;
                f(self)
            }
        }
    };
}

forward_machine!(Engine, |e| e);
forward_machine!(Server, Server::engine);

/// Most operations one input runs; the rest of a long input is ignored.
pub(crate) const MAX_OPS: usize = 256;

/// Most outputs and events one operation may cause before the drain counts as a livelock.
pub(crate) const DRAIN_BUDGET: usize = 200_000;

// ---- structured inputs ----

/// Engine.IO options, kept small so that timers and limits are reached.
#[derive(Arbitrary, Debug)]
pub(crate) struct ConfigSpec {
    ping_interval: Millis,
    ping_timeout: Millis,
    upgrade_timeout: Millis,
    close_timeout: Millis,
    max_payload: SizeSel,
    polling: bool,
    websocket: bool,
    allow_upgrades: bool,
    allow_eio3: bool,
    max_buffered: SizeSel,
    reject_overflow: bool,
    max_packets_per_poll: u8,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub(crate) enum Millis {
    Zero,
    One,
    Ten,
    Second,
    Default,
    Raw(u16),
}

impl Millis {
    pub(crate) fn or(self, default: Duration) -> Duration {
        match self {
            Millis::Zero => Duration::ZERO,
            Millis::One => Duration::from_millis(1),
            Millis::Ten => Duration::from_millis(10),
            Millis::Second => Duration::from_secs(1),
            Millis::Default => default,
            Millis::Raw(n) => Duration::from_millis(u64::from(n)),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum SizeSel {
    Zero,
    One,
    Small,
    Default,
    Raw(u16),
}

impl SizeSel {
    fn or(self, default: usize) -> usize {
        match self {
            SizeSel::Zero => 0,
            SizeSel::One => 1,
            SizeSel::Small => 16,
            SizeSel::Default => default,
            SizeSel::Raw(n) => usize::from(n),
        }
    }
}

impl ConfigSpec {
    pub(crate) fn build(&self, path: &str) -> engine::Config {
        let d = engine::Config::default();
        engine::Config {
            ping_interval: self.ping_interval.or(d.ping_interval),
            ping_timeout: self.ping_timeout.or(d.ping_timeout),
            upgrade_timeout: self.upgrade_timeout.or(d.upgrade_timeout),
            close_timeout: self.close_timeout.or(d.close_timeout),
            max_payload: self.max_payload.or(d.max_payload),
            // At least one transport, or nothing is reachable.
            transports: Transports {
                polling: self.polling || !self.websocket,
                websocket: self.websocket,
            },
            allow_upgrades: self.allow_upgrades,
            allow_eio3: self.allow_eio3,
            path: path.to_owned(),
            max_buffered_packets: self.max_buffered.or(d.max_buffered_packets),
            // The same selector, so that small byte budgets are exercised too.
            max_buffered_bytes: self.max_buffered.or(d.max_buffered_bytes),
            overflow: if self.reject_overflow {
                OverflowPolicy::Reject
            } else {
                OverflowPolicy::Close
            },
            max_packets_per_poll: usize::from(self.max_packets_per_poll % 20),
            cookie: None,
        }
    }
}

/// A connection as an operation names it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ConnSel {
    /// A connection the runtime has not used yet.
    New,
    /// One of the connections in the state the operation is about (cycling by index).
    Fitting(u8),
    /// Any connection ever used, whatever its state.
    Any(u8),
    /// A number the runtime never handed out.
    Unknown(u8),
}

impl<'a> Arbitrary<'a> for ConnSel {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        // Mostly the fitting connection: the protocol is deeper there than in misuse.
        Ok(match u.int_in_range(0..=15u8)? {
            0 => ConnSel::New,
            1 => ConnSel::Any(u.arbitrary()?),
            2 => ConnSel::Unknown(u.arbitrary()?),
            _ => ConnSel::Fitting(u.arbitrary()?),
        })
    }
}

/// A session id as a query or a command names it.
#[derive(Debug, Clone)]
pub(crate) enum SidSel {
    /// One of the ids the machine handed out (cycling by index, latest first), open or not.
    Known(u8),
    /// An id nobody handed out.
    Garbage(String),
    Empty,
}

impl<'a> Arbitrary<'a> for SidSel {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(match u.int_in_range(0..=15u8)? {
            0 => SidSel::Garbage(u.arbitrary()?),
            1 => SidSel::Empty,
            _ => SidSel::Known(u.arbitrary()?),
        })
    }
}

/// A well-formed handshake, polling or WebSocket.
#[derive(Debug)]
pub(crate) struct HandshakeSpec {
    websocket: bool,
    v3: bool,
    jsonp: bool,
    b64: bool,
}

impl<'a> Arbitrary<'a> for HandshakeSpec {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        // Mostly plain v4 polling, the common case and the start of an upgrade.
        Ok(HandshakeSpec {
            websocket: u.ratio(1, 3)?,
            v3: u.ratio(1, 4)?,
            jsonp: u.ratio(1, 8)?,
            b64: u.ratio(1, 2)?,
        })
    }
}

/// A POST body for a session: framed as the session expects, or anything.
#[derive(Arbitrary, Debug)]
pub(crate) enum PostBody<X> {
    Fitting(Vec<PacketSpec<X>>),
    Explicit(BodyContent<X>),
}

/// An HTTP request assembled from the parts the engine looks at, in any combination.
#[derive(Arbitrary, Debug)]
pub(crate) struct RequestSpec {
    conn: ConnSel,
    method: MethodSel,
    path: PathSel,
    eio: Option<EioSel>,
    transport: Option<TransportSel>,
    sid: Option<SidSel>,
    b64: Option<bool>,
    j: Option<JSel>,
    /// More parameters after these (repeats, garbage).
    more: Vec<QueryPart>,
    upgrade: UpgradeSel,
    content_type: Option<ContentTypeSel>,
    framing: FramingSel,
    close: bool,
    http10: bool,
    extra: Option<(String, String)>,
}

#[derive(Arbitrary, Debug)]
enum MethodSel {
    Get,
    Post,
    Put,
    Options,
    Head,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum PathSel {
    Base,
    NoSlash,
    Below,
    Absolute,
    Elsewhere,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum QueryPart {
    Eio(EioSel),
    Transport(TransportSel),
    Sid(SidSel),
    B64(bool),
    J(JSel),
    T,
    Raw(String, String),
}

#[derive(Arbitrary, Debug)]
enum EioSel {
    Four,
    Three,
    Five,
    Empty,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum TransportSel {
    Polling,
    Websocket,
    Flashsocket,
    Empty,
}

#[derive(Arbitrary, Debug)]
enum JSel {
    Zero,
    Twelve,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum UpgradeSel {
    None,
    Valid,
    WrongVersion,
    BadKey,
    NoConnectionHeader,
    TwoKeys,
}

#[derive(Arbitrary, Debug)]
enum ContentTypeSel {
    Text,
    OctetStream,
    Form,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum FramingSel {
    None,
    Length(u16),
    Chunked,
    Both,
}

/// What a runtime hands to `handle_body`.
#[derive(Arbitrary, Debug)]
pub(crate) struct BodySpec<X> {
    pub(crate) conn: ConnSel,
    pub(crate) content: BodyContent<X>,
}

#[derive(Arbitrary, Debug)]
pub(crate) enum BodyContent<X> {
    TooLarge,
    Raw(Vec<u8>),
    Payload(PayloadFraming, Vec<PacketSpec<X>>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub(crate) enum PayloadFraming {
    V4,
    V3String,
    V3Xhr2,
    JsonpV4,
    JsonpV3,
}

/// A WebSocket message as a runtime receives it.
#[derive(Arbitrary, Debug)]
pub(crate) struct WsSpec<X> {
    pub(crate) conn: ConnSel,
    pub(crate) content: WsContent<X>,
}

#[derive(Arbitrary, Debug)]
pub(crate) enum WsContent<X> {
    /// Packets in the connection's protocol.
    Packets(Vec<PacketSpec<X>>),
    Text(String),
    Binary(Vec<u8>),
}

/// An Engine.IO packet a client sends; `X` makes the application messages.
#[derive(Arbitrary, Debug)]
pub(crate) enum PacketSpec<X> {
    Open(String),
    Close,
    Ping(bool),
    Pong(bool),
    Message(X),
    Upgrade,
    Noop,
    /// Text that need not be a packet at all.
    Garbage(String),
}

/// Application messages a client sends inside Engine.IO `message` packets.
pub(crate) trait Messages {
    fn messages(&self) -> Vec<Message>;
}

/// For the engine target: one text or binary message.
#[derive(Arbitrary, Debug)]
pub(crate) enum AppMessage {
    Text(String),
    Binary(Vec<u8>),
}

impl Messages for AppMessage {
    fn messages(&self) -> Vec<Message> {
        vec![app_message(self)]
    }
}

/// An application message the server may send: text without U+001E, which the v4 polling
/// framing cannot carry (the engine documents it; Socket.IO never produces it).
pub(crate) fn app_message(m: &AppMessage) -> Message {
    match m {
        AppMessage::Text(t) => Message::Text(Utf8Bytes::from(t.replace('\u{1e}', " "))),
        AppMessage::Binary(b) => Message::Binary(Bytes::copy_from_slice(b)),
    }
}

impl<X: Messages> PacketSpec<X> {
    /// The packets; garbage becomes a text message, which the framings then cut wherever it
    /// holds their separators.
    fn packets(&self) -> Vec<Packet> {
        let text = |s: &str| Utf8Bytes::from(s);
        let probe = |p: bool| if p { text("probe") } else { Utf8Bytes::new() };
        match self {
            PacketSpec::Open(s) => vec![Packet::Open(text(s))],
            PacketSpec::Close => vec![Packet::Close],
            PacketSpec::Ping(p) => vec![Packet::Ping(probe(*p))],
            PacketSpec::Pong(p) => vec![Packet::Pong(probe(*p))],
            PacketSpec::Message(x) => x.messages().into_iter().map(Packet::Message).collect(),
            PacketSpec::Upgrade => vec![Packet::Upgrade],
            PacketSpec::Noop => vec![Packet::Noop],
            PacketSpec::Garbage(s) => vec![Packet::Message(Message::Text(text(s)))],
        }
    }

    /// The WebSocket frames; garbage goes as a raw text frame.
    fn frames(&self, protocol: Protocol) -> Vec<WsMessage> {
        match self {
            PacketSpec::Garbage(s) => vec![WsMessage::Text(Utf8Bytes::from(s.as_str()))],
            other => other.packets().iter().map(|p| p.to_ws(protocol)).collect(),
        }
    }
}

/// A polling body carrying `packets`, framed as asked.
fn payload_body<X: Messages>(framing: PayloadFraming, packets: &[PacketSpec<X>]) -> Bytes {
    let packets: Vec<Packet> = packets.iter().flat_map(PacketSpec::packets).collect();
    encode_body(framing, &packets)
}

fn encode_body(framing: PayloadFraming, packets: &[Packet]) -> Bytes {
    let (protocol, xhr2, jsonp) = match framing {
        PayloadFraming::V4 => (Protocol::V4, false, false),
        PayloadFraming::V3String => (Protocol::V3, false, false),
        PayloadFraming::V3Xhr2 => (Protocol::V3, true, false),
        PayloadFraming::JsonpV4 => (Protocol::V4, false, true),
        PayloadFraming::JsonpV3 => (Protocol::V3, false, true),
    };
    let encoded = encode_payload(packets, protocol, xhr2);
    if !jsonp {
        return encoded.body;
    }
    // As the JSONP client escapes it: `\n` (two characters) first, then newlines.
    let text = String::from_utf8_lossy(&encoded.body);
    let escaped = text.replace("\\n", "\\\\n").replace('\n', "\\n");
    Bytes::from(format!("d={}", escape(&escaped)))
}

/// Time moves on.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub(crate) enum Clock {
    /// The clock jumps; with `fire`, `handle_timeout` runs at the new time, without it the
    /// runtime is late and the next input comes first.
    Advance(Millis, bool),
    /// The clock jumps to the next deadline and `handle_timeout` runs there.
    ToDeadline,
}

/// Operations every machine target runs: well-formed client steps (a handshake, a poll, a
/// POST of packets, an upgrade, WebSocket packets), free-form requests and bodies, and what
/// the runtime reports (drained or closed connections, time).
#[derive(Arbitrary, Debug)]
pub(crate) enum CommonOp<X> {
    Handshake(HandshakeSpec),
    Poll(SidSel),
    Post(SidSel, PostBody<X>),
    /// A WebSocket upgrade request; with `true`, the probe (`2probe`) and `5` follow on it.
    Upgrade(SidSel, bool),
    /// The client sends application messages on a session: on its WebSocket when it has
    /// one and `true` asks for it, else in a POST.
    Client(SidSel, bool, Vec<X>),
    Ws(WsSpec<X>),
    Request(RequestSpec),
    Body(BodySpec<X>),
    Drained(ConnSel),
    Closed(ConnSel, bool),
    Clock(Clock),
}

// ---- the runtime stand-in ----

/// What the runtime remembers of a request until it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Req {
    method: Method,
    /// What its `EIO` parameter says, which is the protocol of any session that answers it.
    protocol: Option<Protocol>,
    /// Its query asked for JSONP (`j`) or base64 binary (`b64`): a handshake's flavour.
    jsonp: bool,
    b64: bool,
    keep_alive: bool,
    /// Its `sid` parameter, when that is an id.
    sid: Option<Sid>,
}

/// What the runtime knows about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    /// Free for the next request.
    Idle,
    /// A request was handed in and not answered yet.
    Awaiting(Req),
    /// The machine asked for the body of this POST.
    Body(Req),
    /// A WebSocket (a handshake or an upgrade probe), in the protocol its request named.
    Ws(Option<Protocol>),
    /// Gone; its number is never used again.
    Closed,
}

impl Conn {
    fn busy(&self) -> bool {
        matches!(self, Conn::Awaiting(_) | Conn::Body(_) | Conn::Ws(_))
    }
}

/// Which connections an operation may pick.
#[derive(Clone, Copy)]
enum Fit {
    Request,
    Body,
    Ws,
    Open,
}

/// What a client learnt from its handshake: how to talk to the session.
#[derive(Debug, Clone, Copy)]
struct Flavour {
    protocol: Protocol,
    jsonp: bool,
    xhr2: bool,
}

/// An input of the current operation still to be delivered, one per step so that the model
/// sees the outputs of each before the next.
enum Deferred {
    Frame(ConnId, WsMessage),
    /// The body of a POST, delivered if the machine asks for it.
    Body(ConnId, Bytes),
}

/// The runtime stand-in around a machine `M`.
pub(crate) struct Harness<M> {
    pub(crate) m: M,
    pub(crate) now: Instant,
    /// Whether `handle_timeout` ran since the clock last moved.
    fired: bool,
    /// Whether every deadline lies strictly after `now` once fired (the engine's do: each is
    /// at least a millisecond ahead); otherwise a deadline may be `now` itself (an ack
    /// timeout of zero), but never before.
    strict: bool,
    path: String,
    conns: HashMap<ConnId, Conn>,
    order: Vec<ConnId>,
    next_conn: u64,
    deferred: VecDeque<Deferred>,
    /// The session of each WebSocket, where the runtime can tell (a handshake's open packet,
    /// a probe's `sid`).
    ws_sids: HashMap<ConnId, Sid>,
    /// Every session id the machine handed out, in order, and what its handshake asked for.
    sids: Vec<Sid>,
    flavours: HashMap<Sid, Flavour>,
    /// Application messages the server delivered (in a poll response or a WebSocket frame),
    /// with the session the runtime knows the connection for; the target checks them.
    pub(crate) delivered: Vec<(Option<Sid>, Message)>,
}

impl<M: Machine> Harness<M> {
    pub(crate) fn new(m: M, path: &str, now: Instant, strict: bool) -> Self {
        Harness {
            m,
            now,
            fired: true,
            strict,
            path: path.to_owned(),
            conns: HashMap::new(),
            order: Vec::new(),
            next_conn: 1,
            deferred: VecDeque::new(),
            ws_sids: HashMap::new(),
            sids: Vec::new(),
            flavours: HashMap::new(),
            delivered: Vec::new(),
        }
    }

    fn fresh_conn(&mut self) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(id, Conn::Idle);
        self.order.push(id);
        id
    }

    fn state(&self, conn: ConnId) -> Conn {
        self.conns.get(&conn).copied().unwrap_or(Conn::Idle)
    }

    fn pick(&mut self, sel: ConnSel, fit: Fit) -> ConnId {
        let fits = |c: &Conn| match fit {
            Fit::Request => *c == Conn::Idle,
            Fit::Body => matches!(c, Conn::Body(_)),
            Fit::Ws => matches!(c, Conn::Ws(_)),
            Fit::Open => *c != Conn::Closed,
        };
        match sel {
            ConnSel::New => self.fresh_conn(),
            ConnSel::Fitting(i) => {
                let fitting: Vec<ConnId> = self
                    .order
                    .iter()
                    .rev()
                    .copied()
                    .filter(|c| self.conns.get(c).is_some_and(fits))
                    .collect();
                match fitting.get(usize::from(i) % fitting.len().max(1)) {
                    Some(&c) => c,
                    None => self.fresh_conn(),
                }
            }
            ConnSel::Any(i) => match self.order.get(usize::from(i) % self.order.len().max(1)) {
                Some(&c) => c,
                None => self.fresh_conn(),
            },
            ConnSel::Unknown(i) => ConnId(u64::MAX - u64::from(i)),
        }
    }

    /// The id text a selector names.
    fn sid_text(&self, sel: &SidSel) -> String {
        match sel {
            SidSel::Known(i) => self
                .sids
                .iter()
                .rev()
                .nth(usize::from(*i) % self.sids.len().max(1))
                .map_or_else(
                    || "AAAAAAAAAAAAAAAAAAAAAA".to_owned(),
                    |s| s.as_str().to_owned(),
                ),
            SidSel::Garbage(s) => s.clone(),
            SidSel::Empty => String::new(),
        }
    }

    /// The session a command names: one handed out (open or not), or one that never existed.
    pub(crate) fn sid(&self, sel: &SidSel) -> Sid {
        Sid::new(&self.sid_text(sel))
            .unwrap_or_else(|_| Sid::new("never-handed-out").expect("a valid id"))
    }

    /// How to talk to the session a selector names (v4 polling for one never handed out).
    fn flavour(&self, sel: &SidSel) -> Flavour {
        Sid::new(&self.sid_text(sel))
            .ok()
            .and_then(|sid| self.flavours.get(&sid).copied())
            .unwrap_or(Flavour {
                protocol: Protocol::V4,
                jsonp: false,
                xhr2: false,
            })
    }

    // ---- operations ----

    pub(crate) fn run<X: Messages>(&mut self, op: &CommonOp<X>) {
        match op {
            CommonOp::Handshake(spec) => {
                let mut query = vec![
                    format!("EIO={}", if spec.v3 { 3 } else { 4 }),
                    format!(
                        "transport={}",
                        if spec.websocket {
                            "websocket"
                        } else {
                            "polling"
                        }
                    ),
                ];
                if spec.jsonp {
                    query.push("j=0".to_owned());
                }
                if spec.b64 {
                    query.push("b64=1".to_owned());
                }
                let upgrade = if spec.websocket { WS_HEADERS } else { "" };
                self.send_request("GET", &query, upgrade);
            }
            CommonOp::Poll(sel) => {
                let query = self.session_query(sel, "polling");
                self.send_request("GET", &query, "");
            }
            CommonOp::Post(sel, body) => match body {
                PostBody::Fitting(packets) => {
                    let packets: Vec<Packet> =
                        packets.iter().flat_map(PacketSpec::packets).collect();
                    self.post_packets(sel, &packets);
                }
                PostBody::Explicit(content) => {
                    let (bytes, content_type) = match content {
                        BodyContent::TooLarge => (Bytes::new(), "text/plain;charset=UTF-8"),
                        BodyContent::Raw(b) => {
                            (Bytes::copy_from_slice(b), "text/plain;charset=UTF-8")
                        }
                        BodyContent::Payload(framing, packets) => {
                            (payload_body(*framing, packets), content_type_of(*framing))
                        }
                    };
                    self.post(sel, bytes, content_type);
                }
            },
            CommonOp::Upgrade(sel, complete) => {
                let query = self.session_query(sel, "websocket");
                let conn = self.send_request("GET", &query, WS_HEADERS);
                if let (Some(conn), true) = (conn, complete) {
                    let protocol = self.flavour(sel).protocol;
                    for packet in [Packet::Ping(Utf8Bytes::from("probe")), Packet::Upgrade] {
                        self.deferred
                            .push_back(Deferred::Frame(conn, packet.to_ws(protocol)));
                    }
                }
            }
            CommonOp::Client(sel, via_ws, messages) => {
                let messages: Vec<Message> =
                    messages.iter().take(4).flat_map(X::messages).collect();
                let sid = Sid::new(&self.sid_text(sel)).ok();
                let ws = self
                    .order
                    .iter()
                    .rev()
                    .copied()
                    .find(|c| sid.is_some() && self.ws_sids.get(c).copied() == sid);
                match ws.filter(|_| *via_ws) {
                    Some(conn) => {
                        let protocol = match self.state(conn) {
                            Conn::Ws(Some(p)) => p,
                            _ => Protocol::V4,
                        };
                        for m in messages {
                            let frame = Packet::Message(m).to_ws(protocol);
                            self.deferred.push_back(Deferred::Frame(conn, frame));
                        }
                    }
                    None => {
                        let packets: Vec<Packet> =
                            messages.into_iter().map(Packet::Message).collect();
                        self.post_packets(sel, &packets);
                    }
                }
            }
            CommonOp::Ws(spec) => {
                let conn = self.pick(spec.conn, Fit::Ws);
                let protocol = match self.state(conn) {
                    Conn::Ws(Some(p)) => p,
                    _ => Protocol::V4,
                };
                let frames: Vec<WsMessage> = match &spec.content {
                    WsContent::Packets(packets) => packets
                        .iter()
                        .take(8)
                        .flat_map(|p| p.frames(protocol))
                        .collect(),
                    WsContent::Text(s) => vec![WsMessage::Text(Utf8Bytes::from(s.as_str()))],
                    WsContent::Binary(b) => vec![WsMessage::Binary(Bytes::copy_from_slice(b))],
                };
                self.deferred
                    .extend(frames.into_iter().map(|f| Deferred::Frame(conn, f)));
            }
            CommonOp::Request(spec) => self.request(spec),
            CommonOp::Body(spec) => self.body(spec),
            CommonOp::Drained(sel) => {
                let conn = self.pick(*sel, Fit::Ws);
                self.m.handle_ws_drained(conn, self.now);
            }
            CommonOp::Closed(sel, error) => {
                let conn = self.pick(*sel, Fit::Open);
                self.close_conn(conn, *error);
            }
            CommonOp::Clock(clock) => self.clock(*clock),
        }
    }

    /// POSTs `packets` to a session, framed as its handshake asked.
    fn post_packets(&mut self, sel: &SidSel, packets: &[Packet]) {
        let flavour = self.flavour(sel);
        let binary = packets.iter().any(Packet::is_binary);
        let framing = match (flavour.protocol, flavour.jsonp) {
            (Protocol::V4, false) => PayloadFraming::V4,
            (Protocol::V4, true) => PayloadFraming::JsonpV4,
            (Protocol::V3, true) => PayloadFraming::JsonpV3,
            (Protocol::V3, false) if flavour.xhr2 && binary => PayloadFraming::V3Xhr2,
            (Protocol::V3, false) => PayloadFraming::V3String,
        };
        self.post(sel, encode_body(framing, packets), content_type_of(framing));
    }

    /// A well-formed POST on a session; the body follows when the machine asks for it.
    fn post(&mut self, sel: &SidSel, body: Bytes, content_type: &str) {
        let query = self.session_query(sel, "polling");
        let headers = format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            body.len()
        );
        if let Some(conn) = self.send_request("POST", &query, &headers) {
            self.deferred.push_back(Deferred::Body(conn, body));
        }
    }

    /// The query of a request on a session: its protocol, the transport, its id, and its
    /// JSONP index when it has one.
    fn session_query(&self, sel: &SidSel, transport: &str) -> Vec<String> {
        let flavour = self.flavour(sel);
        let eio = match flavour.protocol {
            Protocol::V3 => 3,
            Protocol::V4 => 4,
        };
        let mut query = vec![
            format!("EIO={eio}"),
            format!("transport={transport}"),
            format!("sid={}", escape(&self.sid_text(sel))),
        ];
        if flavour.jsonp && transport == "polling" {
            query.push("j=0".to_owned());
        }
        query
    }

    /// Hands a well-formed request to the machine on a fresh connection.
    fn send_request(&mut self, method: &str, query: &[String], headers: &str) -> Option<ConnId> {
        let raw = format!(
            "{method} {}?{} HTTP/1.1\r\nHost: example.com\r\n{headers}\r\n",
            self.path,
            query.join("&")
        );
        let conn = self.fresh_conn();
        self.hand_in(conn, raw.as_bytes()).then_some(conn)
    }

    /// Delivers the next deferred input of the current operation; false when none is left.
    pub(crate) fn next_deferred(&mut self) -> bool {
        let Some(next) = self.deferred.pop_front() else {
            return false;
        };
        match next {
            Deferred::Frame(conn, frame) => {
                let is_ws = matches!(self.state(conn), Conn::Ws(_));
                let result = self.m.handle_ws_message(conn, frame, self.now);
                if is_ws {
                    assert_eq!(result, Ok(()), "a message on a WebSocket was refused");
                } else {
                    assert_eq!(result, Err(ApiMisuse::NotWebSocket(conn)));
                }
            }
            Deferred::Body(conn, bytes) => {
                if let Conn::Body(req) = self.state(conn) {
                    let result = self.m.handle_body(conn, Body::Complete(bytes), self.now);
                    assert_eq!(result, Ok(()), "an expected body was refused");
                    self.conns.insert(conn, Conn::Awaiting(req));
                }
            }
        }
        true
    }

    fn close_conn(&mut self, conn: ConnId, error: bool) {
        if let Some(state) = self.conns.get_mut(&conn) {
            *state = Conn::Closed;
        }
        self.m.handle_conn_closed(conn, error, self.now);
    }

    fn clock(&mut self, clock: Clock) {
        match clock {
            Clock::Advance(ms, fire) => {
                self.now += ms.or(Duration::from_secs(30));
                self.fired = false;
                if fire {
                    self.fire();
                }
            }
            Clock::ToDeadline => {
                if let Some(t) = self.m.poll_timeout() {
                    self.now = self.now.max(t);
                }
                self.fire();
            }
        }
    }

    /// `handle_timeout(now)`: afterwards nothing may be due any more.
    fn fire(&mut self) {
        self.m.handle_timeout(self.now);
        self.fired = true;
        if let Some(t) = self.m.poll_timeout() {
            assert!(t > self.now, "a deadline not after handle_timeout(now)");
        }
    }

    fn request(&mut self, spec: &RequestSpec) {
        let conn = match spec.conn {
            // A runtime never reuses a number, nor sends a request on a closed connection.
            ConnSel::Unknown(_) => self.fresh_conn(),
            sel => self.pick(sel, Fit::Request),
        };
        if self.state(conn) == Conn::Closed {
            return;
        }
        let raw = self.request_bytes(spec);
        self.hand_in(conn, &raw);
    }

    /// Parses a request as the runtime does and hands it in; false when the machine did not
    /// take it (malformed HTTP, which the runtime answers itself, or a busy connection).
    fn hand_in(&mut self, conn: ConnId, raw: &[u8]) -> bool {
        let head = match parse_head(raw, &Limits::default()) {
            Ok(Some((head, consumed))) => {
                assert_eq!(consumed, raw.len(), "the head ends early: {raw:?}");
                head
            }
            Ok(None) | Err(_) => {
                if !self.state(conn).busy() {
                    self.conns.insert(conn, Conn::Closed);
                }
                return false;
            }
        };
        let busy = self.state(conn).busy();
        let req = Req {
            method: head.method(),
            protocol: match head.query_param("EIO").as_deref() {
                Some("4") => Some(Protocol::V4),
                Some("3") => Some(Protocol::V3),
                _ => None,
            },
            jsonp: head.query_param("j").is_some(),
            b64: head.query_param("b64").is_some_and(|v| !v.is_empty()),
            keep_alive: head.keep_alive(),
            sid: head.query_param("sid").and_then(|s| Sid::new(&s).ok()),
        };
        let result = self.m.handle_request(conn, head, self.now);
        if busy {
            assert_eq!(result, Err(ApiMisuse::ConnectionBusy(conn)));
            return false;
        }
        assert_eq!(
            result,
            Ok(()),
            "a request on an idle connection was refused"
        );
        self.conns.insert(conn, Conn::Awaiting(req));
        true
    }

    fn request_bytes(&self, spec: &RequestSpec) -> Vec<u8> {
        let method = match &spec.method {
            MethodSel::Get => "GET",
            MethodSel::Post => "POST",
            MethodSel::Put => "PUT",
            MethodSel::Options => "OPTIONS",
            MethodSel::Head => "HEAD",
            MethodSel::Raw(m) => m.as_str(),
        };
        let base = self.path.as_str();
        let path = match &spec.path {
            PathSel::Base => base.to_owned(),
            PathSel::NoSlash => base.trim_end_matches('/').to_owned(),
            PathSel::Below => format!("{base}x/y"),
            PathSel::Absolute => format!("http://example.com{base}"),
            PathSel::Elsewhere => "/elsewhere/".to_owned(),
            PathSel::Raw(p) => format!("/{}", escape(p)),
        };
        let mut parts: Vec<QueryPartRef<'_>> = Vec::new();
        parts.extend(spec.eio.as_ref().map(QueryPartRef::Eio));
        parts.extend(spec.transport.as_ref().map(QueryPartRef::Transport));
        parts.extend(spec.sid.as_ref().map(QueryPartRef::Sid));
        parts.extend(spec.b64.map(QueryPartRef::B64));
        parts.extend(spec.j.as_ref().map(QueryPartRef::J));
        parts.extend(spec.more.iter().take(6).map(QueryPartRef::Part));
        let query: Vec<String> = parts.into_iter().map(|p| self.query_part(p)).collect();
        let version = if spec.http10 { "HTTP/1.0" } else { "HTTP/1.1" };
        let mut out = format!(
            "{method} {path}?{} {version}\r\nHost: example.com\r\n",
            query.join("&")
        );
        let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
        match spec.upgrade {
            UpgradeSel::None => {}
            UpgradeSel::Valid => out.push_str(WS_HEADERS),
            UpgradeSel::WrongVersion => out.push_str(&format!(
                "Upgrade: websocket\r\nConnection: Upgrade\r\n{key}Sec-WebSocket-Version: 8\r\n"
            )),
            UpgradeSel::BadKey => out.push_str(
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: abc\r\n\
                 Sec-WebSocket-Version: 13\r\n",
            ),
            UpgradeSel::NoConnectionHeader => out.push_str(&format!(
                "Upgrade: websocket\r\n{key}Sec-WebSocket-Version: 13\r\n"
            )),
            UpgradeSel::TwoKeys => out.push_str(&format!("{WS_HEADERS}{key}")),
        }
        if let Some(ct) = &spec.content_type {
            let value = match ct {
                ContentTypeSel::Text => "text/plain;charset=UTF-8".to_owned(),
                ContentTypeSel::OctetStream => "application/octet-stream".to_owned(),
                ContentTypeSel::Form => "application/x-www-form-urlencoded".to_owned(),
                ContentTypeSel::Raw(s) => field_value(s),
            };
            out.push_str(&format!("Content-Type: {value}\r\n"));
        }
        match spec.framing {
            FramingSel::None => {}
            FramingSel::Length(n) => out.push_str(&format!("Content-Length: {n}\r\n")),
            FramingSel::Chunked => out.push_str("Transfer-Encoding: chunked\r\n"),
            FramingSel::Both => {
                out.push_str("Content-Length: 4\r\nTransfer-Encoding: chunked\r\n");
            }
        }
        if spec.close {
            out.push_str("Connection: close\r\n");
        }
        if let Some((name, value)) = &spec.extra {
            let name: String = name
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            if !name.is_empty() {
                out.push_str(&format!("{name}: {}\r\n", field_value(value)));
            }
        }
        out.push_str("\r\n");
        out.into_bytes()
    }

    fn query_part(&self, part: QueryPartRef<'_>) -> String {
        match part {
            QueryPartRef::Eio(e) | QueryPartRef::Part(QueryPart::Eio(e)) => format!(
                "EIO={}",
                match e {
                    EioSel::Four => "4".to_owned(),
                    EioSel::Three => "3".to_owned(),
                    EioSel::Five => "5".to_owned(),
                    EioSel::Empty => String::new(),
                    EioSel::Raw(s) => escape(s),
                }
            ),
            QueryPartRef::Transport(t) | QueryPartRef::Part(QueryPart::Transport(t)) => format!(
                "transport={}",
                match t {
                    TransportSel::Polling => "polling",
                    TransportSel::Websocket => "websocket",
                    TransportSel::Flashsocket => "flashsocket",
                    TransportSel::Empty => "",
                }
            ),
            QueryPartRef::Sid(sel) | QueryPartRef::Part(QueryPart::Sid(sel)) => {
                format!("sid={}", escape(&self.sid_text(sel)))
            }
            QueryPartRef::B64(true) | QueryPartRef::Part(QueryPart::B64(true)) => {
                "b64=1".to_owned()
            }
            QueryPartRef::B64(false) | QueryPartRef::Part(QueryPart::B64(false)) => {
                "b64".to_owned()
            }
            QueryPartRef::J(j) | QueryPartRef::Part(QueryPart::J(j)) => match j {
                JSel::Zero => "j=0".to_owned(),
                JSel::Twelve => "j=12".to_owned(),
                JSel::Raw(s) => format!("j={}", escape(s)),
            },
            QueryPartRef::Part(QueryPart::T) => "t=OxK1a2b".to_owned(),
            QueryPartRef::Part(QueryPart::Raw(k, v)) => format!("{}={}", escape(k), escape(v)),
        }
    }

    fn body<X: Messages>(&mut self, spec: &BodySpec<X>) {
        let conn = self.pick(spec.conn, Fit::Body);
        let state = self.state(conn);
        let body = match &spec.content {
            BodyContent::TooLarge => Body::TooLarge,
            BodyContent::Raw(b) => Body::Complete(Bytes::copy_from_slice(b)),
            BodyContent::Payload(framing, packets) => {
                Body::Complete(payload_body(*framing, packets))
            }
        };
        let result = self.m.handle_body(conn, body, self.now);
        match state {
            Conn::Body(req) => {
                assert_eq!(result, Ok(()), "an expected body was refused");
                self.conns.insert(conn, Conn::Awaiting(req));
            }
            _ => assert_eq!(result, Err(ApiMisuse::UnexpectedBody(conn))),
        }
    }

    // ---- outputs ----

    /// Performs every output the machine has; returns how many there were.
    pub(crate) fn drain_outputs(&mut self) -> usize {
        let mut n = 0;
        while let Some(output) = self.m.poll_output() {
            n += 1;
            assert!(
                n < DRAIN_BUDGET,
                "the machine never stops producing outputs"
            );
            self.perform(output);
        }
        n
    }

    fn perform(&mut self, output: Output) {
        match output {
            Output::Response { conn, response } => {
                let state = self.state(conn);
                let Conn::Awaiting(req) = state else {
                    panic!("a response on {conn} in state {state:?}: {response:?}");
                };
                for packet in check_response(&req, &response) {
                    self.learn(&packet, &req);
                    if let Packet::Message(m) = packet {
                        self.delivered.push((req.sid, m));
                    }
                }
                if response.status == 101 {
                    self.conns.insert(conn, Conn::Ws(req.protocol));
                    if let Some(sid) = req.sid {
                        self.ws_sids.insert(conn, sid);
                    }
                } else if response.close || !req.keep_alive {
                    self.close_conn(conn, false);
                } else {
                    self.conns.insert(conn, Conn::Idle);
                }
            }
            Output::ReadBody { conn, limit } => {
                let state = self.state(conn);
                let Conn::Awaiting(req) = state else {
                    panic!("a body read on {conn} in state {state:?}");
                };
                assert_eq!(
                    req.method,
                    Method::Post,
                    "a body read for a {:?}",
                    req.method
                );
                assert_eq!(limit, self.m.engine().config().max_payload);
                self.conns.insert(conn, Conn::Body(req));
            }
            Output::Send { conn, message } => {
                let state = self.state(conn);
                let Conn::Ws(protocol) = state else {
                    panic!("a WebSocket send on {conn} in state {state:?}");
                };
                if let Some(protocol) = protocol {
                    match Packet::from_ws(message.clone(), protocol) {
                        Ok(packet) => {
                            let req = Req {
                                method: Method::Get,
                                protocol: Some(protocol),
                                jsonp: false,
                                b64: false,
                                keep_alive: true,
                                sid: None,
                            };
                            if let Some(sid) = self.learn(&packet, &req) {
                                self.ws_sids.insert(conn, sid);
                            }
                            if let Packet::Message(m) = packet {
                                self.delivered.push((self.ws_sids.get(&conn).copied(), m));
                            }
                        }
                        Err(e) => panic!("the server sent {message:?}, which does not decode: {e}"),
                    }
                }
            }
            Output::Close { conn } => {
                let state = self.state(conn);
                assert!(
                    matches!(state, Conn::Ws(_)),
                    "a WebSocket close on {conn} in state {state:?}"
                );
                self.close_conn(conn, false);
            }
        }
    }

    /// Learns a session from its open packet, as a client does.
    fn learn(&mut self, packet: &Packet, req: &Req) -> Option<Sid> {
        let Packet::Open(json) = packet else {
            return None;
        };
        let value: serde_json::Value =
            serde_json::from_str(json).expect("the open packet is not JSON");
        let sid = value["sid"].as_str().expect("the open packet has no sid");
        let sid = Sid::new(sid).expect("the open packet's sid is not an id");
        let protocol = req.protocol.expect("a handshake without a protocol");
        self.saw_sid(sid);
        self.flavours.insert(
            sid,
            Flavour {
                protocol,
                jsonp: req.jsonp,
                xhr2: protocol == Protocol::V3 && !req.b64,
            },
        );
        Some(sid)
    }

    /// Records a session id the machine handed out.
    pub(crate) fn saw_sid(&mut self, sid: Sid) {
        if !self.sids.contains(&sid) {
            self.sids.push(sid);
        }
    }

    // ---- invariants ----

    /// What holds after every settled step.
    pub(crate) fn check(&self) {
        let engine = self.m.engine();
        let busy = self.conns.values().filter(|c| c.busy()).count();
        assert_eq!(
            engine.connection_count(),
            busy,
            "the engine holds other connections than the busy ones"
        );
        // Every session has a deadline (a ping, a pong, a close); one without would live
        // forever once its client vanished.
        assert_eq!(
            engine.timer_count(),
            engine.session_count(),
            "sessions without a timer"
        );
        if self.fired {
            if let Some(t) = self.m.poll_timeout() {
                if self.strict {
                    assert!(t > self.now, "a deadline not after now");
                } else {
                    assert!(t >= self.now, "a deadline in the past");
                }
            }
        }
    }

    /// Closes every connection the runtime still has open (each followed by `settle`).
    pub(crate) fn close_all(&mut self, settle: &mut dyn FnMut(&mut Self)) {
        self.deferred.clear();
        for conn in self.order.clone() {
            if self.state(conn) != Conn::Closed {
                self.close_conn(conn, false);
                settle(self);
            }
        }
    }

    /// A long jump, then every deadline in turn until none is left; then nothing may remain.
    pub(crate) fn run_out_the_clock(&mut self, settle: &mut dyn FnMut(&mut Self)) {
        self.now += Duration::from_secs(24 * 3600);
        self.fire();
        settle(self);
        for _ in 0..10_000 {
            let Some(t) = self.m.poll_timeout() else {
                break;
            };
            self.now = self.now.max(t);
            self.fire();
            settle(self);
        }
        assert_eq!(self.m.poll_timeout(), None, "deadlines keep coming");
        let engine = self.m.engine();
        assert_eq!(engine.session_count(), 0, "sessions left");
        assert_eq!(engine.connection_count(), 0, "connections left");
        assert_eq!(engine.timer_count(), 0, "timers left");
        assert!(self.conns.values().all(|c| !c.busy()));
    }
}

/// The request headers of a valid WebSocket handshake.
const WS_HEADERS: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";

/// The content type a client sends with a body in `framing`.
fn content_type_of(framing: PayloadFraming) -> &'static str {
    match framing {
        PayloadFraming::V4 | PayloadFraming::V3String => "text/plain;charset=UTF-8",
        PayloadFraming::V3Xhr2 => "application/octet-stream",
        PayloadFraming::JsonpV4 | PayloadFraming::JsonpV3 => "application/x-www-form-urlencoded",
    }
}

/// A query parameter of a [`RequestSpec`], from its fixed fields or its free list.
#[derive(Clone, Copy)]
enum QueryPartRef<'a> {
    Eio(&'a EioSel),
    Transport(&'a TransportSel),
    Sid(&'a SidSel),
    B64(bool),
    J(&'a JSel),
    Part(&'a QueryPart),
}

/// A response must be well formed, and a polling response must decode in its protocol;
/// returns the packets of a polling response.
fn check_response(req: &Req, response: &Response) -> Vec<Packet> {
    assert!((100..600).contains(&response.status), "{response:?}");
    let mut out = bytes::BytesMut::new();
    response.write_to(&mut out);
    if response.status != 200 {
        return Vec::new();
    }
    if req.method == Method::Post {
        assert_eq!(&response.body[..], b"ok");
        return Vec::new();
    }
    assert_eq!(req.method, Method::Get, "200 to a {:?}", req.method);
    let protocol = req.protocol.expect("200 to a poll without a protocol");
    let text_framing = match protocol {
        Protocol::V4 => Framing::V4,
        Protocol::V3 => Framing::V3String,
    };
    let content_type = response.get_header("content-type").unwrap_or("");
    let decoded = if content_type.starts_with("text/plain") {
        decode_payload(response.body.clone(), text_framing)
    } else if content_type.starts_with("application/octet-stream") {
        assert_eq!(protocol, Protocol::V3, "a binary payload for v4");
        decode_payload(response.body.clone(), Framing::V3Binary)
    } else if content_type.starts_with("text/javascript") {
        let script = std::str::from_utf8(&response.body).expect("a script that is not UTF-8");
        let literal = script
            .strip_prefix("___eio[")
            .and_then(|s| s.split_once("]("))
            .and_then(|(_, s)| s.strip_suffix(");"))
            .unwrap_or_else(|| panic!("not a JSONP script: {script:?}"));
        let text: String = serde_json::from_str(literal).expect("not a JS string literal");
        decode_payload(Bytes::from(text), text_framing)
    } else {
        panic!("a poll answered as {content_type:?}");
    };
    decoded.unwrap_or_else(|e| panic!("a poll response does not decode ({e}): {:?}", response.body))
}

/// Percent-encodes everything but unreserved characters.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Text made fit for a header value: visible ASCII and spaces.
fn field_value(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Reads operations until the input or [`MAX_OPS`] runs out.
pub(crate) fn ops<'a, T: Arbitrary<'a>>(u: &mut Unstructured<'a>) -> Vec<T> {
    let mut out = Vec::new();
    while out.len() < MAX_OPS && !u.is_empty() {
        match T::arbitrary(u) {
            Ok(op) => out.push(op),
            Err(_) => break,
        }
    }
    out
}
