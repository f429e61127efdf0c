//! The wire format of `@socket.io/redis-streams-adapter` 0.3: where each [`ClusterMessage`]
//! goes and which bytes it becomes, and back; the stored sessions; stream offsets. No IO.
//!
//! Messages are socket.io-adapter's `ClusterAdapter` messages `{uid, nsp, type, data}` (types
//! in [`message_type`]). Those worth keeping go to the stream (`XADD <stream> MAXLEN ~ <n> *`)
//! as four fields:
//!
//! | field | value |
//! | --- | --- |
//! | `uid` | the sending node |
//! | `nsp` | the namespace |
//! | `type` | the type, in decimal |
//! | `data` | `JSON.stringify(data)`, or base64 of its MessagePack when a message of a kind that may carry binary does |
//!
//! The rest travel by Pub/Sub as MessagePack of the whole message: the *ephemeral* requests
//! (a broadcast with acknowledgement, `FETCH_SOCKETS`, `SERVER_SIDE_EMIT`, and Volley's
//! `ALL_ROOMS`) on `prefix#<nsp>#`, the answers on `prefix#<nsp>#<uid>#` of the node that
//! asked. The stream keeps broadcasts without acknowledgement, `SOCKETS_JOIN`,
//! `SOCKETS_LEAVE` and `DISCONNECT_SOCKETS`; a broadcast's entry id is the offset its packet
//! carries to the clients when connection state recovery is on.
//!
//! A session left behind is `SET sio:session:<pid> <base64 of MessagePack {sid, pid, rooms,
//! data}> PX <window in ms>`; Volley adds `nsp`, which the reference ignores.

use crate::codec::{DecodeError, Decoded, Outgoing, get, get_str, json, json_to_mp, map};
use crate::codec::{mp_to_json, msgpack, parse, s, string_list, strings};
use crate::sharded::{decode_value, envelope, message_parts};
use rmpv::Value;
use serde_json::Value as Json;
use volley_core::cluster::ClusterMessage;
use volley_core::socketio::{Room, SessionState};
use volley_core::{NodeId, SocketId, Utf8Bytes};

pub use crate::sharded::message_type;

/// Where an encoded message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    /// An entry of the stream: its fields, in order.
    Entry(Vec<(&'static str, String)>),
    /// A Pub/Sub message.
    Publish(Outgoing),
}

/// The streams codec under one channel prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamsCodec {
    prefix: String,
}

impl Default for StreamsCodec {
    fn default() -> Self {
        StreamsCodec::new("socket.io")
    }
}

/// Whether `message` is worth keeping in the stream (the reference's non-ephemeral kinds).
pub fn is_kept(message: &ClusterMessage) -> bool {
    matches!(
        message,
        ClusterMessage::Broadcast { ack: None, .. }
            | ClusterMessage::SocketsJoin { .. }
            | ClusterMessage::SocketsLeave { .. }
            | ClusterMessage::DisconnectSockets { .. }
    )
}

impl StreamsCodec {
    /// The codec for channel prefix `prefix` (the reference's `channelPrefix`).
    pub fn new(prefix: &str) -> Self {
        StreamsCodec {
            prefix: prefix.to_owned(),
        }
    }

    /// `prefix#<nsp>#`: the ephemeral requests of a namespace; its `NUMSUB` counts the
    /// servers.
    pub fn channel(&self, nsp: &str) -> String {
        format!("{}#{nsp}#", self.prefix)
    }

    /// `prefix#<nsp>#<uid>#`: answers for node `uid`.
    pub fn response_channel(&self, nsp: &str, uid: NodeId) -> String {
        format!("{}#{nsp}#{uid}#", self.prefix)
    }

    /// `prefix#volley#`: subscribed by Volley nodes only, so that they can be told from
    /// Node servers (`NUMSUB`); nothing is published on it (no namespace or answer channel
    /// is named so: they all start `prefix#/`). See
    /// [`ShardedCodec::presence_channel`](crate::sharded::ShardedCodec::presence_channel).
    pub fn presence_channel(&self) -> String {
        format!("{}#volley#", self.prefix)
    }

    /// `prefix#*`: every channel of the adapter, namespaces not known in advance included.
    pub fn pattern(&self) -> String {
        format!("{}#*", self.prefix)
    }

    /// Whether a message on `channel` may be for node `me`: a namespace's channel, or the
    /// answer channel of `me` (not of another node).
    pub fn is_for(&self, me: NodeId, channel: &str) -> bool {
        let Some(rest) = channel
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|r| r.strip_suffix('#'))
        else {
            return false;
        };
        // Namespaces start with `/` and hold no `#`: what follows one is a node's uid.
        match rest.split_once('#') {
            None => true,
            Some((_, uid)) => uid == me.as_str(),
        }
    }

    /// Encodes `message` from node `uid`; an answer goes to `to`, under namespace `nsp` (the
    /// one of the request it answers).
    pub fn encode(
        &self,
        uid: NodeId,
        to: Option<NodeId>,
        nsp: &str,
        message: &ClusterMessage,
    ) -> Encoded {
        let (msg_nsp, kind, data, binary) = message_parts(nsp, message);
        if is_kept(message) {
            let data = if binary {
                volley_core::base64::encode(&msgpack(&data))
            } else {
                String::from_utf8(json(&data)).unwrap_or_default()
            };
            return Encoded::Entry(vec![
                ("uid", uid.as_str().to_owned()),
                ("nsp", msg_nsp.to_owned()),
                ("type", kind.to_string()),
                ("data", data),
            ]);
        }
        let channel = match (message.answers(), to) {
            (Some(_), Some(to)) => self.response_channel(msg_nsp, to),
            _ => self.channel(msg_nsp),
        };
        Encoded::Publish(Outgoing {
            channel,
            payload: msgpack(&envelope(uid.as_str(), msg_nsp, kind, data)),
        })
    }

    /// Decodes a stream entry (its fields) for node `me`.
    pub fn decode_entry(
        &self,
        me: NodeId,
        fields: &[(String, String)],
    ) -> Result<Decoded, DecodeError> {
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let bad = |what: &str| DecodeError::Malformed(what.to_owned());
        let uid = field("uid").ok_or_else(|| bad("no uid"))?;
        let nsp = field("nsp").ok_or_else(|| bad("no nsp"))?;
        let kind: u64 = field("type")
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| bad("no type"))?;
        let data = match field("data") {
            None | Some("") => Value::Nil,
            Some(d) if d.starts_with('{') => {
                let v: Json = serde_json::from_str(d).map_err(|e| bad(&e.to_string()))?;
                json_to_mp(&v, None)
            }
            Some(d) => {
                let bytes = volley_core::base64::decode(d.as_bytes())
                    .map_err(|_| bad("data is neither JSON nor base64"))?;
                rmpv::decode::read_value(&mut bytes.as_slice()).map_err(|e| bad(&e.to_string()))?
            }
        };
        decode_value(me, &envelope(uid, nsp, kind, data))
    }

    /// Decodes a Pub/Sub message on `channel` for node `me`.
    pub fn decode_published(
        &self,
        me: NodeId,
        channel: &str,
        payload: &[u8],
    ) -> Result<Decoded, DecodeError> {
        if !self.is_for(me, channel) {
            return Ok(Decoded::Ignored);
        }
        decode_value(me, &parse(payload)?)
    }
}

/// A session as the reference stores it: base64 of MessagePack `{sid, pid, rooms, data}`
/// (plus `nsp`). Data that is not JSON is stored as `{}` (the reference's default).
pub fn encode_session(session: &SessionState) -> String {
    let data = session
        .data
        .as_ref()
        .and_then(|d| serde_json::from_str::<Json>(d.as_str()).ok())
        .unwrap_or(Json::Object(Default::default()));
    let mut fields = vec![
        ("sid", s(session.socket.as_str())),
        ("pid", s(&session.pid)),
        ("rooms", strings(session.rooms.iter().map(Room::as_str))),
        ("data", json_to_mp(&data, None)),
    ];
    if let Some(nsp) = &session.nsp {
        fields.push(("nsp", s(nsp)));
    }
    volley_core::base64::encode(&msgpack(&map(fields)))
}

/// A stored session back. Empty data (`{}`, `null`) is no data.
pub fn decode_session(text: &[u8]) -> Result<SessionState, DecodeError> {
    let bad = |what: &str| DecodeError::Malformed(what.to_owned());
    let bytes = volley_core::base64::decode(text).map_err(|_| bad("session is not base64"))?;
    let doc = rmpv::decode::read_value(&mut bytes.as_slice()).map_err(|e| bad(&e.to_string()))?;
    let sid = get_str(&doc, "sid").ok_or_else(|| bad("no sid"))?;
    let socket = SocketId::new(sid).map_err(|_| bad("invalid sid"))?;
    let pid = get_str(&doc, "pid")
        .ok_or_else(|| bad("no pid"))?
        .to_owned();
    let data = get(&doc, "data")
        .map(|d| mp_to_json(d, None))
        .filter(|d| !d.is_null() && d.as_object().is_none_or(|o| !o.is_empty()))
        .map(|d| Utf8Bytes::from(d.to_string()));
    Ok(SessionState {
        socket,
        pid,
        nsp: get_str(&doc, "nsp").map(str::to_owned),
        rooms: string_list(get(&doc, "rooms"))
            .into_iter()
            .map(Room::from)
            .collect(),
        data,
    })
}

/// Whether `offset` is a stream entry id (`<ms>-<seq>`).
pub fn is_offset(offset: &str) -> bool {
    parse_offset(offset).is_some()
}

fn parse_offset(offset: &str) -> Option<(u64, u64)> {
    let (ms, seq) = offset.split_once('-')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(ms) || !digits(seq) {
        return None;
    }
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The smallest entry id after `offset` (an inclusive `XRANGE` start that excludes it, for
/// servers older than Redis 6.2's exclusive ranges).
pub fn next_offset(offset: &str) -> Option<String> {
    let (ms, seq) = parse_offset(offset)?;
    Some(match seq.checked_add(1) {
        Some(seq) => format!("{ms}-{seq}"),
        None => format!("{}-0", ms.checked_add(1)?),
    })
}
