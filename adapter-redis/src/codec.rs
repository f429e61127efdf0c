//! The classic (`PUBLISH`/`SUBSCRIBE`) wire format of `@socket.io/redis-adapter` 8.x: which
//! channel a [`ClusterMessage`] goes to and which bytes it becomes, and back. No IO.
//!
//! Channels, with `prefix` the key prefix (`socket.io` by default):
//!
//! | channel | carries |
//! | --- | --- |
//! | `prefix#<nsp>#` | broadcasts without acknowledgement |
//! | `prefix#<nsp>#<room>#` | the same, when the broadcast targets exactly one room |
//! | `prefix-request#<nsp>#` | requests (join, leave, disconnect, fetch, server-side emit, rooms, broadcasts with acknowledgement) |
//! | `prefix-response#<nsp>#` | answers, for every node |
//! | `prefix-response#<nsp>#<uid>#` | answers for node `uid` |
//!
//! Payloads, as the reference adapter writes them:
//!
//! - broadcast: MessagePack `[uid, {type: 2, data: [event, ...args], nsp}, {rooms, except,
//!   flags}]`, binary arguments as MessagePack `bin`;
//! - requests 1–6 (`ALL_ROOMS`, `REMOTE_JOIN`, `REMOTE_LEAVE`, `REMOTE_DISCONNECT`,
//!   `REMOTE_FETCH`, `SERVER_SIDE_EMIT`), their answers and `BROADCAST_CLIENT_COUNT` (8): JSON
//!   objects;
//! - `BROADCAST` (7, a broadcast with acknowledgement) and `BROADCAST_ACK` (9): MessagePack
//!   maps.
//!
//! A payload whose first byte is `{` is JSON, anything else MessagePack (the reference's own
//! test). `SOCKETS` (0) is not sent by socket.io 4 and is ignored.
//!
//! Where the reference carries less than Volley: an answer has no sender (this codec adds a
//! `uid` key, which the reference ignores, and reads a missing one as [`unknown_node`]), nor
//! do the room and disconnect requests of `@socket.io/redis-emitter` (read the same way); an
//! acknowledgement relayed from another node carries only its first argument and no socket id
//! (this codec adds `sid`, and reads a missing one as [`unknown_socket`]); binary arguments of
//! a server-side emit travel as JSON (`{"type":"Buffer","data":[…]}`, as `JSON.stringify`
//! writes a Node buffer).

use bytes::Bytes;
use rmpv::Value;
use serde_json::Value as Json;
use std::fmt;
use std::time::Duration;
use volley_core::cluster::{ClusterMessage, HandshakeInfo, SocketInfo};
use volley_core::socketio::{BroadcastOptions, Room};
use volley_core::{NodeId, RequestId, SocketId};

/// Request types of the reference adapter (`RequestType`).
pub mod request_type {
    /// `SOCKETS` (legacy; ignored).
    pub const SOCKETS: u64 = 0;
    /// `ALL_ROOMS`.
    pub const ALL_ROOMS: u64 = 1;
    /// `REMOTE_JOIN`.
    pub const REMOTE_JOIN: u64 = 2;
    /// `REMOTE_LEAVE`.
    pub const REMOTE_LEAVE: u64 = 3;
    /// `REMOTE_DISCONNECT`.
    pub const REMOTE_DISCONNECT: u64 = 4;
    /// `REMOTE_FETCH`.
    pub const REMOTE_FETCH: u64 = 5;
    /// `SERVER_SIDE_EMIT` (the request and its answers).
    pub const SERVER_SIDE_EMIT: u64 = 6;
    /// `BROADCAST` (with acknowledgement).
    pub const BROADCAST: u64 = 7;
    /// `BROADCAST_CLIENT_COUNT`.
    pub const BROADCAST_CLIENT_COUNT: u64 = 8;
    /// `BROADCAST_ACK`.
    pub const BROADCAST_ACK: u64 = 9;
}

/// The Socket.IO `EVENT` packet type.
const EVENT: u64 = 2;
/// The Socket.IO `BINARY_EVENT` packet type (accepted from emitters that set it).
const BINARY_EVENT: u64 = 5;

/// The sender given to answers and requests that do not name theirs (the reference's
/// answers, the emitter's `socketsJoin`, `socketsLeave` and `disconnectSockets`).
pub fn unknown_node() -> NodeId {
    NodeId::new("unknown").expect("a valid node id")
}

/// The socket given to relayed acknowledgements that do not name theirs.
pub fn unknown_socket() -> SocketId {
    SocketId::new("unknown").expect("a valid socket id")
}

/// A message ready for `PUBLISH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The channel.
    pub channel: String,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Why bytes from Redis were not a message for this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Neither JSON nor MessagePack, or not the shape of any message.
    Malformed(String),
    /// A channel none of ours.
    UnknownChannel,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Malformed(m) => write!(f, "malformed cluster message: {m}"),
            DecodeError::UnknownChannel => f.write_str("message on an unknown channel"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn bad(what: impl Into<String>) -> DecodeError {
    DecodeError::Malformed(what.into())
}

/// What a payload from Redis meant.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // short-lived, never stored
pub enum Decoded {
    /// A message for this node, from node `from`.
    Message {
        /// The sender.
        from: NodeId,
        /// The message.
        message: ClusterMessage,
    },
    /// Nothing for this node: its own message echoed back, an answer for another node, or a
    /// message kind Volley does not act on.
    Ignored,
}

/// The classic codec under one key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codec {
    prefix: String,
}

impl Default for Codec {
    fn default() -> Self {
        Codec::new("socket.io")
    }
}

impl Codec {
    /// The codec for key prefix `prefix` (the reference's `key` option).
    pub fn new(prefix: &str) -> Self {
        Codec {
            prefix: prefix.to_owned(),
        }
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `prefix#<nsp>#`: broadcasts of a namespace.
    pub fn broadcast_channel(&self, nsp: &str) -> String {
        format!("{}#{nsp}#", self.prefix)
    }

    /// `prefix#<nsp>#<room>#`: broadcasts to exactly one room.
    pub fn room_channel(&self, nsp: &str, room: &str) -> String {
        format!("{}#{nsp}#{room}#", self.prefix)
    }

    /// `prefix-request#<nsp>#`: requests of a namespace. Its subscriber count
    /// (`PUBSUB NUMSUB`) is the number of servers.
    pub fn request_channel(&self, nsp: &str) -> String {
        format!("{}-request#{nsp}#", self.prefix)
    }

    /// `prefix-response#<nsp>#`: answers, read by every node.
    pub fn response_channel(&self, nsp: &str) -> String {
        format!("{}-response#{nsp}#", self.prefix)
    }

    /// `prefix-response#<nsp>#<uid>#`: answers for node `uid`.
    pub fn specific_response_channel(&self, nsp: &str, uid: NodeId) -> String {
        format!("{}-response#{nsp}#{uid}#", self.prefix)
    }

    /// The patterns (`PSUBSCRIBE`) covering every namespace: broadcasts, requests, answers.
    pub fn patterns(&self) -> [String; 3] {
        [
            format!("{}#*", self.prefix),
            format!("{}-request#*", self.prefix),
            format!("{}-response#*", self.prefix),
        ]
    }

    /// The exact channels (`SUBSCRIBE`) of namespace `nsp` for node `uid`, as the reference
    /// subscribes them: the request channel (counted by `PUBSUB NUMSUB`), the shared and the
    /// node's answer channels.
    pub fn channels(&self, nsp: &str, uid: NodeId) -> [String; 3] {
        [
            self.request_channel(nsp),
            self.response_channel(nsp),
            self.specific_response_channel(nsp, uid),
        ]
    }

    /// Encodes `message` from node `uid`. `to` is the node an answer is for; `nsp` the
    /// namespace of the request an answer answers (answers do not carry one; `/` when
    /// unknown).
    pub fn encode(
        &self,
        uid: NodeId,
        to: Option<NodeId>,
        nsp: &str,
        message: &ClusterMessage,
    ) -> Outgoing {
        use request_type as t;
        let me = s(uid.as_str());
        let answer_channel = |nsp: &str| match to {
            Some(to) => self.specific_response_channel(nsp, to),
            None => self.response_channel(nsp),
        };
        match message {
            ClusterMessage::Broadcast {
                nsp,
                opts,
                event,
                args,
                attachments,
                ack,
                timeout,
            } => {
                let packet = packet(nsp, event, args, attachments);
                let wire_opts = broadcast_opts(opts, *timeout, ack.is_some());
                match ack {
                    None => {
                        let channel = match opts.rooms.as_slice() {
                            [room] => self.room_channel(nsp, room.as_str()),
                            _ => self.broadcast_channel(nsp),
                        };
                        Outgoing {
                            channel,
                            payload: msgpack(&Value::Array(vec![me, packet, wire_opts])),
                        }
                    }
                    Some(request) => Outgoing {
                        channel: self.request_channel(nsp),
                        payload: msgpack(&map(vec![
                            ("uid", me),
                            ("requestId", s(request.as_str())),
                            ("type", Value::from(t::BROADCAST)),
                            ("packet", packet),
                            ("opts", wire_opts),
                        ])),
                    },
                }
            }
            ClusterMessage::BroadcastClientCount { request, count } => Outgoing {
                channel: answer_channel(nsp),
                payload: json(&map(vec![
                    ("type", Value::from(t::BROADCAST_CLIENT_COUNT)),
                    ("requestId", s(request.as_str())),
                    ("clientCount", Value::from(*count as u64)),
                    ("uid", me),
                ])),
            },
            ClusterMessage::BroadcastAck {
                request,
                socket,
                args,
                attachments,
            } => {
                let mut fields = vec![
                    ("type", Value::from(t::BROADCAST_ACK)),
                    ("requestId", s(request.as_str())),
                ];
                if let Some(first) = first_arg(args, attachments) {
                    fields.push(("packet", first));
                }
                fields.push(("uid", me));
                fields.push(("sid", s(socket.as_str())));
                Outgoing {
                    channel: answer_channel(nsp),
                    payload: msgpack(&map(fields)),
                }
            }
            ClusterMessage::SocketsJoin { nsp, opts, rooms }
            | ClusterMessage::SocketsLeave { nsp, opts, rooms } => {
                let kind = if matches!(message, ClusterMessage::SocketsJoin { .. }) {
                    t::REMOTE_JOIN
                } else {
                    t::REMOTE_LEAVE
                };
                Outgoing {
                    channel: self.request_channel(nsp),
                    payload: json(&map(vec![
                        ("uid", me),
                        ("type", Value::from(kind)),
                        ("opts", request_opts(opts)),
                        ("rooms", strings(rooms.iter().map(String::as_str))),
                    ])),
                }
            }
            ClusterMessage::DisconnectSockets { nsp, opts, close } => Outgoing {
                channel: self.request_channel(nsp),
                payload: json(&map(vec![
                    ("uid", me),
                    ("type", Value::from(t::REMOTE_DISCONNECT)),
                    ("opts", request_opts(opts)),
                    ("close", Value::from(*close)),
                ])),
            },
            ClusterMessage::FetchSockets { request, nsp, opts } => Outgoing {
                channel: self.request_channel(nsp),
                payload: json(&map(vec![
                    ("uid", me),
                    ("requestId", s(request.as_str())),
                    ("type", Value::from(t::REMOTE_FETCH)),
                    ("opts", request_opts(opts)),
                ])),
            },
            ClusterMessage::FetchSocketsResponse { request, sockets } => Outgoing {
                channel: answer_channel(nsp),
                payload: json(&map(vec![
                    ("requestId", s(request.as_str())),
                    (
                        "sockets",
                        Value::Array(sockets.iter().map(socket_to_value).collect()),
                    ),
                    ("uid", me),
                ])),
            },
            ClusterMessage::ServerSideEmit {
                nsp,
                event,
                args,
                attachments,
                request,
            } => {
                let mut fields = vec![("uid", me)];
                if let Some(request) = request {
                    fields.push(("requestId", s(request.as_str())));
                }
                fields.push(("type", Value::from(t::SERVER_SIDE_EMIT)));
                fields.push(("data", event_data(event, args, attachments)));
                Outgoing {
                    channel: self.request_channel(nsp),
                    payload: json(&map(fields)),
                }
            }
            ClusterMessage::ServerSideEmitResponse {
                request,
                args,
                attachments,
            } => {
                let mut fields = vec![
                    ("type", Value::from(t::SERVER_SIDE_EMIT)),
                    ("requestId", s(request.as_str())),
                ];
                if let Some(first) = first_arg(args, attachments) {
                    fields.push(("data", first));
                }
                fields.push(("uid", me));
                Outgoing {
                    channel: answer_channel(nsp),
                    payload: json(&map(fields)),
                }
            }
            ClusterMessage::AllRooms { request, nsp } => Outgoing {
                channel: self.request_channel(nsp),
                payload: json(&map(vec![
                    ("uid", me),
                    ("requestId", s(request.as_str())),
                    ("type", Value::from(t::ALL_ROOMS)),
                ])),
            },
            ClusterMessage::AllRoomsResponse { request, rooms } => Outgoing {
                channel: answer_channel(nsp),
                payload: json(&map(vec![
                    ("requestId", s(request.as_str())),
                    ("rooms", strings(rooms.iter().map(String::as_str))),
                    ("uid", me),
                ])),
            },
            // `ClusterMessage` is non-exhaustive: a kind this codec does not know yet is sent
            // as an ignorable JSON request.
            #[allow(unreachable_patterns)]
            _ => Outgoing {
                channel: self.request_channel(nsp),
                payload: json(&map(vec![("uid", me), ("type", Value::from(u64::MAX))])),
            },
        }
    }

    /// Decodes what arrived on `channel` for node `me`.
    pub fn decode(
        &self,
        me: NodeId,
        channel: &str,
        payload: &[u8],
    ) -> Result<Decoded, DecodeError> {
        if let Some(rest) = channel.strip_prefix(&format!("{}-request#", self.prefix)) {
            let nsp = rest
                .strip_suffix('#')
                .ok_or_else(|| bad("request channel"))?;
            let doc = parse(payload)?;
            return decode_request(me, nsp, &doc);
        }
        if let Some(rest) = channel.strip_prefix(&format!("{}-response#", self.prefix)) {
            let rest = rest
                .strip_suffix('#')
                .ok_or_else(|| bad("response channel"))?;
            // `<nsp>` or `<nsp>#<uid>`: an answer for another node is none of ours.
            if let Some((_, uid)) = rest.rsplit_once('#') {
                if uid != me.as_str() {
                    return Ok(Decoded::Ignored);
                }
            }
            let doc = parse(payload)?;
            return decode_response(me, &doc);
        }
        if channel.starts_with(&format!("{}#", self.prefix)) {
            let doc = parse(payload)?;
            return decode_broadcast(me, &doc);
        }
        Err(DecodeError::UnknownChannel)
    }
}

// ---- building values ----

/// A string value.
pub(crate) fn s(v: &str) -> Value {
    Value::from(v)
}

/// A map value with string keys, in the order given (the order on the wire).
pub(crate) fn map(fields: Vec<(&str, Value)>) -> Value {
    Value::Map(fields.into_iter().map(|(k, v)| (s(k), v)).collect())
}

/// An array value of strings.
pub(crate) fn strings<'a>(items: impl Iterator<Item = &'a str>) -> Value {
    Value::Array(items.map(s).collect())
}

fn rooms(rooms: &[Room]) -> Value {
    strings(rooms.iter().map(Room::as_str))
}

pub(crate) fn msgpack(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, v);
    out
}

pub(crate) fn json(v: &Value) -> Vec<u8> {
    mp_to_json(v, None).to_string().into_bytes()
}

/// `{rooms, except, flags}` of a broadcast.
pub(crate) fn broadcast_opts(
    opts: &BroadcastOptions,
    timeout: Option<Duration>,
    ack: bool,
) -> Value {
    let mut flags = Vec::new();
    if opts.volatile {
        flags.push(("volatile", Value::from(true)));
    }
    if opts.compress {
        flags.push(("compress", Value::from(true)));
    }
    if ack {
        let ms = timeout.map_or(5000, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        flags.push(("timeout", Value::from(ms)));
    }
    map(vec![
        ("rooms", rooms(&opts.rooms)),
        ("except", rooms(&opts.except)),
        ("flags", map(flags)),
    ])
}

/// `{rooms, except}` of a request.
fn request_opts(opts: &BroadcastOptions) -> Value {
    map(vec![
        ("rooms", rooms(&opts.rooms)),
        ("except", rooms(&opts.except)),
    ])
}

/// `[event, ...args]`, binary placeholders replaced by their attachments.
pub(crate) fn event_data(event: &str, args: &str, attachments: &[Bytes]) -> Value {
    let mut data = vec![s(event)];
    if let Ok(Json::Array(items)) = serde_json::from_str::<Json>(args) {
        data.extend(items.iter().map(|v| json_to_mp(v, Some(attachments))));
    }
    Value::Array(data)
}

/// `{type: 2, data: [event, ...args], nsp}`.
pub(crate) fn packet(nsp: &str, event: &str, args: &str, attachments: &[Bytes]) -> Value {
    map(vec![
        ("type", Value::from(EVENT)),
        ("data", event_data(event, args, attachments)),
        ("nsp", s(nsp)),
    ])
}

/// The first argument of an answer (the reference relays one), if any.
pub(crate) fn first_arg(args: &str, attachments: &[Bytes]) -> Option<Value> {
    match serde_json::from_str::<Json>(args) {
        Ok(Json::Array(items)) => items.first().map(|v| json_to_mp(v, Some(attachments))),
        _ => None,
    }
}

/// JSON to MessagePack. With `attachments`, `{"_placeholder":true,"num":n}` becomes the
/// attachment `n` as `bin`. Integral numbers become integers, others float64 (as notepack).
pub(crate) fn json_to_mp(v: &Json, attachments: Option<&[Bytes]>) -> Value {
    match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                let f = n.as_f64().unwrap_or(0.0);
                if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
                    // Exact: the magnitude is below 2^53.
                    Value::from(f as i64)
                } else {
                    Value::F64(f)
                }
            }
        }
        Json::String(t) => s(t),
        Json::Array(items) => {
            Value::Array(items.iter().map(|i| json_to_mp(i, attachments)).collect())
        }
        Json::Object(o) => {
            if let Some(atts) = attachments {
                if o.len() == 2 && o.get("_placeholder") == Some(&Json::Bool(true)) {
                    if let Some(b) = o
                        .get("num")
                        .and_then(Json::as_u64)
                        .and_then(|n| atts.get(usize::try_from(n).ok()?))
                    {
                        return Value::Binary(b.to_vec());
                    }
                }
            }
            Value::Map(
                o.iter()
                    .map(|(k, v)| (s(k), json_to_mp(v, attachments)))
                    .collect(),
            )
        }
    }
}

/// MessagePack to JSON. With `attachments`, each `bin` is appended there and replaced by
/// its placeholder; without, it becomes `{"type":"Buffer","data":[…]}` (a Node buffer in
/// JSON). Extension values (notepack's `undefined`, dates, array buffers): `ArrayBuffer`s
/// (type 0, longer than one byte) are binary, the rest `null`.
pub(crate) fn mp_to_json(v: &Value, mut attachments: Option<&mut Vec<Bytes>>) -> Json {
    fn binary(b: &[u8], attachments: Option<&mut Vec<Bytes>>) -> Json {
        match attachments {
            Some(atts) => {
                atts.push(Bytes::copy_from_slice(b));
                serde_json::json!({"_placeholder": true, "num": atts.len() - 1})
            }
            None => serde_json::json!({"type": "Buffer", "data": b}),
        }
    }
    match v {
        Value::Nil => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Json::from(u),
            (_, Some(i)) => Json::from(i),
            _ => Json::Null,
        },
        Value::F32(f) => {
            serde_json::Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number)
        }
        Value::F64(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(t) => Json::String(t.as_str().unwrap_or_default().to_owned()),
        Value::Binary(b) => binary(b, attachments),
        Value::Array(items) => Json::Array(
            items
                .iter()
                .map(|i| mp_to_json(i, attachments.as_deref_mut()))
                .collect(),
        ),
        Value::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::String(t) => t.as_str().unwrap_or_default().to_owned(),
                        other => mp_to_json(other, None).to_string(),
                    };
                    (key, mp_to_json(v, attachments.as_deref_mut()))
                })
                .collect(),
        ),
        Value::Ext(0, data) if data.len() > 1 => binary(data, attachments),
        Value::Ext(..) => Json::Null,
    }
}

pub(crate) fn socket_to_value(info: &SocketInfo) -> Value {
    let data = serde_json::from_str::<Json>(&info.data).unwrap_or(Json::Null);
    map(vec![
        ("id", s(&info.id)),
        ("handshake", handshake_to_value(&info.handshake)),
        ("rooms", strings(info.rooms.iter().map(String::as_str))),
        ("data", json_to_mp(&data, None)),
    ])
}

fn pairs(items: &[(String, String)]) -> Value {
    Value::Map(items.iter().map(|(k, v)| (s(k), s(v))).collect())
}

fn handshake_to_value(h: &HandshakeInfo) -> Value {
    let auth = serde_json::from_str::<Json>(&h.auth).unwrap_or(Json::Object(Default::default()));
    map(vec![
        ("headers", pairs(&h.headers)),
        ("time", s(&js_date_string(h.issued))),
        ("address", s(&h.address)),
        ("xdomain", Value::from(h.xdomain)),
        ("secure", Value::from(h.secure)),
        ("issued", Value::from(h.issued)),
        ("url", s(&h.url)),
        ("query", pairs(&h.query)),
        ("auth", json_to_mp(&auth, None)),
    ])
}

/// `Date.prototype.toString()` of a UTC instant (`Thu Jan 01 1970 00:00:00 GMT+0000
/// (Coordinated Universal Time)`), the reference's `handshake.time`.
pub fn js_date_string(ms: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{} {} {:02} {} {:02}:{:02}:{:02} GMT+0000 (Coordinated Universal Time)",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

// ---- reading values ----

/// JSON when the first byte is `{`, MessagePack otherwise; either way as a MessagePack value.
pub(crate) fn parse(payload: &[u8]) -> Result<Value, DecodeError> {
    if payload.first() == Some(&b'{') {
        let v: Json = serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))?;
        Ok(json_to_mp(&v, None))
    } else {
        let mut input = payload;
        let v = rmpv::decode::read_value(&mut input).map_err(|e| bad(e.to_string()))?;
        Ok(v)
    }
}

pub(crate) fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

pub(crate) fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    get(v, key)?.as_str()
}

/// A string, or a number as text (the reference allows numeric rooms).
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(t) => t.as_str().map(str::to_owned),
        Value::Integer(i) => Some(i.to_string()),
        Value::F64(f) => Some(f.to_string()),
        _ => None,
    }
}

pub(crate) fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|items| items.iter().filter_map(text).collect())
        .unwrap_or_default()
}

pub(crate) fn node_id(v: Option<&Value>) -> Result<NodeId, DecodeError> {
    let t = v.and_then(Value::as_str).ok_or_else(|| bad("no uid"))?;
    NodeId::new(t).map_err(|_| bad(format!("invalid uid {t:?}")))
}

pub(crate) fn request_id(v: Option<&Value>) -> Result<RequestId, DecodeError> {
    let t = v.and_then(text).ok_or_else(|| bad("no requestId"))?;
    RequestId::new(&t).map_err(|_| bad(format!("invalid requestId {t:?}")))
}

/// A request id that may be absent (a request that expects no answers); one that is there
/// must be valid.
pub(crate) fn optional_request_id(v: Option<&Value>) -> Result<Option<RequestId>, DecodeError> {
    v.map(|r| request_id(Some(r))).transpose()
}

/// The `clientCount` of a `BROADCAST_CLIENT_COUNT` answer.
pub(crate) fn client_count(v: Option<&Value>) -> Result<usize, DecodeError> {
    v.and_then(Value::as_u64)
        .and_then(|c| usize::try_from(c).ok())
        .ok_or_else(|| bad("no clientCount"))
}

/// The socket a `BROADCAST_ACK` answer comes from; an unknown one when absent or invalid
/// (the acknowledgement still counts).
pub(crate) fn socket_id(v: Option<&Value>) -> SocketId {
    v.and_then(Value::as_str)
        .and_then(|s| SocketId::new(s).ok())
        .unwrap_or_else(unknown_socket)
}

/// Options `{rooms, except, flags?}` and the acknowledgement timeout in the flags.
pub(crate) fn decode_opts(v: Option<&Value>) -> (BroadcastOptions, Option<Duration>) {
    let Some(v) = v else {
        return (BroadcastOptions::default(), None);
    };
    let flags = get(v, "flags");
    let flag = |name| flags.and_then(|f| get(f, name)).and_then(Value::as_bool) == Some(true);
    let opts = BroadcastOptions {
        rooms: string_list(get(v, "rooms"))
            .into_iter()
            .map(Room::from)
            .collect(),
        except: string_list(get(v, "except"))
            .into_iter()
            .map(Room::from)
            .collect(),
        volatile: flag("volatile"),
        local: false,
        compress: flag("compress"),
    };
    let timeout = flags
        .and_then(|f| get(f, "timeout"))
        .and_then(Value::as_f64)
        .filter(|t| *t >= 0.0)
        .map(|t| Duration::from_millis(t as u64));
    (opts, timeout)
}

/// `[event, ...args]` into the event name, the arguments as JSON text with placeholders and
/// the attachments.
pub(crate) fn decode_event_data(
    v: Option<&Value>,
) -> Result<(String, String, Vec<Bytes>), DecodeError> {
    let items = v
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no event data"))?;
    let (event, args) = items.split_first().ok_or_else(|| bad("empty event data"))?;
    let event = event.as_str().ok_or_else(|| bad("event name"))?.to_owned();
    let mut attachments = Vec::new();
    let args = Json::Array(
        args.iter()
            .map(|a| mp_to_json(a, Some(&mut attachments)))
            .collect(),
    );
    Ok((event, args.to_string(), attachments))
}

/// A single relayed argument (or none) as an argument list.
pub(crate) fn decode_single_arg(v: Option<&Value>) -> (String, Vec<Bytes>) {
    let mut attachments = Vec::new();
    let args = match v {
        None => Json::Array(Vec::new()),
        Some(v) => Json::Array(vec![mp_to_json(v, Some(&mut attachments))]),
    };
    (args.to_string(), attachments)
}

pub(crate) fn decode_socket(v: &Value) -> Option<SocketInfo> {
    let id = text(get(v, "id")?)?;
    let rooms = string_list(get(v, "rooms"));
    let data = get(v, "data")
        .map_or(Json::Null, |d| mp_to_json(d, None))
        .to_string();
    let h = get(v, "handshake");
    let field = |name: &str| h.and_then(|h| get(h, name));
    let pairs = |name: &str| -> Vec<(String, String)> {
        field(name)
            .and_then(Value::as_map)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| {
                        let value = match v {
                            Value::Array(items) => {
                                items.iter().filter_map(text).collect::<Vec<_>>().join(", ")
                            }
                            other => {
                                text(other).or_else(|| other.as_bool().map(|b| b.to_string()))?
                            }
                        };
                        Some((text(k)?, value))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let handshake = HandshakeInfo {
        headers: pairs("headers"),
        issued: field("issued")
            .and_then(Value::as_f64)
            .map_or(0, |f| f as u64),
        address: field("address").and_then(text).unwrap_or_default(),
        xdomain: field("xdomain").and_then(Value::as_bool).unwrap_or(false),
        secure: field("secure").and_then(Value::as_bool).unwrap_or(false),
        url: field("url").and_then(text).unwrap_or_default(),
        query: pairs("query"),
        auth: field("auth")
            .map_or(Json::Object(Default::default()), |a| mp_to_json(a, None))
            .to_string(),
    };
    Some(SocketInfo {
        id,
        rooms,
        data,
        handshake,
    })
}

fn decode_broadcast(me: NodeId, doc: &Value) -> Result<Decoded, DecodeError> {
    let items = doc
        .as_array()
        .ok_or_else(|| bad("broadcast is not an array"))?;
    let [uid, packet, opts, ..] = items.as_slice() else {
        return Err(bad("broadcast needs [uid, packet, opts]"));
    };
    let from = node_id(Some(uid))?;
    if from == me {
        return Ok(Decoded::Ignored);
    }
    let kind = get(packet, "type").and_then(Value::as_u64);
    if kind != Some(EVENT) && kind != Some(BINARY_EVENT) {
        return Ok(Decoded::Ignored);
    }
    let nsp = get_str(packet, "nsp").unwrap_or("/").to_owned();
    let (event, args, attachments) = decode_event_data(get(packet, "data"))?;
    let (opts, _) = decode_opts(Some(opts));
    Ok(Decoded::Message {
        from,
        message: ClusterMessage::Broadcast {
            nsp,
            opts,
            event,
            args,
            attachments,
            ack: None,
            timeout: None,
        },
    })
}

fn decode_request(me: NodeId, nsp: &str, doc: &Value) -> Result<Decoded, DecodeError> {
    use request_type as t;
    if doc.as_map().is_none() {
        return Err(bad("request is not a map"));
    }
    // The emitter's room and disconnect requests have no `uid`; the reference adapter acts
    // on them all the same.
    let from = match get(doc, "uid") {
        Some(u) => node_id(Some(u))?,
        None => unknown_node(),
    };
    if from == me {
        return Ok(Decoded::Ignored);
    }
    let nsp = nsp.to_owned();
    let kind = get(doc, "type").and_then(Value::as_u64);
    let message = match kind {
        Some(t::ALL_ROOMS) => ClusterMessage::AllRooms {
            request: request_id(get(doc, "requestId"))?,
            nsp,
        },
        Some(k @ (t::REMOTE_JOIN | t::REMOTE_LEAVE)) => {
            let (opts, rooms) = match get(doc, "opts") {
                Some(o) => (decode_opts(Some(o)).0, string_list(get(doc, "rooms"))),
                // The pre-6.0 form: one socket, one room.
                None => {
                    let sid = get(doc, "sid")
                        .and_then(text)
                        .ok_or_else(|| bad("no sid"))?;
                    let room = get(doc, "room")
                        .and_then(text)
                        .ok_or_else(|| bad("no room"))?;
                    let opts = BroadcastOptions {
                        rooms: vec![Room::from(sid)],
                        ..BroadcastOptions::default()
                    };
                    (opts, vec![room])
                }
            };
            if k == t::REMOTE_JOIN {
                ClusterMessage::SocketsJoin { nsp, opts, rooms }
            } else {
                ClusterMessage::SocketsLeave { nsp, opts, rooms }
            }
        }
        Some(t::REMOTE_DISCONNECT) => {
            let close = get(doc, "close").and_then(Value::as_bool).unwrap_or(false);
            let opts = match get(doc, "opts") {
                Some(o) => decode_opts(Some(o)).0,
                None => {
                    let sid = get(doc, "sid")
                        .and_then(text)
                        .ok_or_else(|| bad("no sid"))?;
                    BroadcastOptions {
                        rooms: vec![Room::from(sid)],
                        ..BroadcastOptions::default()
                    }
                }
            };
            ClusterMessage::DisconnectSockets { nsp, opts, close }
        }
        Some(t::REMOTE_FETCH) => ClusterMessage::FetchSockets {
            request: request_id(get(doc, "requestId"))?,
            nsp,
            opts: decode_opts(get(doc, "opts")).0,
        },
        Some(t::SERVER_SIDE_EMIT) => {
            let (event, args, attachments) = decode_event_data(get(doc, "data"))?;
            let request = optional_request_id(get(doc, "requestId"))?;
            ClusterMessage::ServerSideEmit {
                nsp,
                event,
                args,
                attachments,
                request,
            }
        }
        Some(t::BROADCAST) => {
            let packet = get(doc, "packet").ok_or_else(|| bad("no packet"))?;
            let (event, args, attachments) = decode_event_data(get(packet, "data"))?;
            let (opts, timeout) = decode_opts(get(doc, "opts"));
            ClusterMessage::Broadcast {
                nsp,
                opts,
                event,
                args,
                attachments,
                ack: Some(request_id(get(doc, "requestId"))?),
                timeout,
            }
        }
        _ => return Ok(Decoded::Ignored),
    };
    Ok(Decoded::Message { from, message })
}

fn decode_response(me: NodeId, doc: &Value) -> Result<Decoded, DecodeError> {
    use request_type as t;
    let from = match get(doc, "uid") {
        Some(u) => node_id(Some(u))?,
        None => unknown_node(),
    };
    if from == me {
        return Ok(Decoded::Ignored);
    }
    let request = request_id(get(doc, "requestId"))?;
    let message = match get(doc, "type").and_then(Value::as_u64) {
        Some(t::BROADCAST_CLIENT_COUNT) => ClusterMessage::BroadcastClientCount {
            request,
            count: client_count(get(doc, "clientCount"))?,
        },
        Some(t::BROADCAST_ACK) => {
            let (args, attachments) = decode_single_arg(get(doc, "packet"));
            ClusterMessage::BroadcastAck {
                request,
                socket: socket_id(get(doc, "sid")),
                args,
                attachments,
            }
        }
        Some(t::SERVER_SIDE_EMIT) => {
            let (args, attachments) = decode_single_arg(get(doc, "data"));
            ClusterMessage::ServerSideEmitResponse {
                request,
                args,
                attachments,
            }
        }
        _ => {
            if let Some(sockets) = get(doc, "sockets").and_then(Value::as_array) {
                ClusterMessage::FetchSocketsResponse {
                    request,
                    sockets: sockets.iter().filter_map(decode_socket).collect(),
                }
            } else if let Some(rooms) = get(doc, "rooms") {
                ClusterMessage::AllRoomsResponse {
                    request,
                    rooms: string_list(Some(rooms)),
                }
            } else {
                // The answer to a legacy single-socket join, leave or disconnect.
                return Ok(Decoded::Ignored);
            }
        }
    };
    Ok(Decoded::Message { from, message })
}
