//! The sharded wire format (`createShardedAdapter`, Redis 7 `SPUBLISH`/`SSUBSCRIBE`): the
//! messages of socket.io-adapter's `ClusterAdapter`. No IO.
//!
//! Every message is `{uid, nsp, type, data}`; JSON, except that a message of a kind that
//! may carry binary (3 `BROADCAST`, 8 `FETCH_SOCKETS_RESPONSE`, 9 `SERVER_SIDE_EMIT`, 10
//! `SERVER_SIDE_EMIT_RESPONSE`, 12 `BROADCAST_ACK`) and does is MessagePack. Channels:
//! `prefix#<nsp>#` for messages, `prefix#<nsp>#<uid>#` for the answers to node `uid`, and in
//! the reference's dynamic subscription modes `prefix#<nsp>#<room>#` for a broadcast without
//! acknowledgement to one room ([`SubscriptionMode`] has the rules).
//!
//! Every node, whatever its mode, subscribes `prefix#<nsp>#` and its answer channel; in the
//! dynamic modes it also subscribes the channel of each room that exists on it, so that a
//! broadcast to one room reaches only the nodes where that room has members. The modes
//! must agree across a cluster (a node in the static mode never reads room channels).
//! `ClusterAdapter` has no "all rooms" message: Volley nodes use types 100 and 101 between
//! themselves, which Node servers ignore. So that an `all_rooms` in a mixed cluster does not
//! wait for them until its timeout, every Volley node also subscribes
//! [`ShardedCodec::presence_channel`]; the servers counted on the namespace channel but not
//! there are Node servers, and the adapter answers for them at once (with no rooms: the
//! result lists the Volley nodes' rooms).

use crate::codec::{
    DecodeError, Decoded, Outgoing, broadcast_opts, client_count, decode_event_data, decode_opts,
    decode_single_arg, decode_socket, event_data, first_arg, get, get_str, json, map, msgpack,
    node_id, optional_request_id, packet, parse, request_id, s, socket_id, socket_to_value,
    string_list, strings,
};
use rmpv::Value;
use volley_core::NodeId;
use volley_core::cluster::ClusterMessage;
use volley_core::socketio::BroadcastOptions;

/// `MessageType` of socket.io-adapter's `ClusterAdapter`.
pub mod message_type {
    /// `INITIAL_HEARTBEAT` (ignored: the sharded adapter counts servers with `SHARDNUMSUB`).
    pub const INITIAL_HEARTBEAT: u64 = 1;
    /// `HEARTBEAT` (ignored).
    pub const HEARTBEAT: u64 = 2;
    /// `BROADCAST`.
    pub const BROADCAST: u64 = 3;
    /// `SOCKETS_JOIN`.
    pub const SOCKETS_JOIN: u64 = 4;
    /// `SOCKETS_LEAVE`.
    pub const SOCKETS_LEAVE: u64 = 5;
    /// `DISCONNECT_SOCKETS`.
    pub const DISCONNECT_SOCKETS: u64 = 6;
    /// `FETCH_SOCKETS`.
    pub const FETCH_SOCKETS: u64 = 7;
    /// `FETCH_SOCKETS_RESPONSE`.
    pub const FETCH_SOCKETS_RESPONSE: u64 = 8;
    /// `SERVER_SIDE_EMIT`.
    pub const SERVER_SIDE_EMIT: u64 = 9;
    /// `SERVER_SIDE_EMIT_RESPONSE`.
    pub const SERVER_SIDE_EMIT_RESPONSE: u64 = 10;
    /// `BROADCAST_CLIENT_COUNT`.
    pub const BROADCAST_CLIENT_COUNT: u64 = 11;
    /// `BROADCAST_ACK`.
    pub const BROADCAST_ACK: u64 = 12;
    /// `ADAPTER_CLOSE` (ignored).
    pub const ADAPTER_CLOSE: u64 = 13;
    /// Volley only: list the rooms of a namespace.
    pub const ALL_ROOMS: u64 = 100;
    /// Volley only: the answer to [`ALL_ROOMS`].
    pub const ALL_ROOMS_RESPONSE: u64 = 101;
}

/// Which room channels a node subscribes, and so where a broadcast to one room is published:
/// the reference's `subscriptionMode`. Every node of a cluster must use the same mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SubscriptionMode {
    /// `"static"`: only the namespace and answer channels; every message goes to every node.
    Static,
    /// `"dynamic"`, the reference's default: also the channel of every public room that
    /// exists on the node; a broadcast without acknowledgement to exactly one room that
    /// does not look like a socket id (20 characters, the length of Node's ids) is
    /// published on that room's channel. Volley's socket ids are 20 characters too; with a
    /// custom id generator making ids of another length, a node subscribes the channels of
    /// its sockets' own rooms as well, since the reference's publishers send a message to
    /// one such socket on its channel.
    #[default]
    Dynamic,
    /// `"dynamic-private"`: like [`Dynamic`](SubscriptionMode::Dynamic), for private rooms
    /// too, so that a message to one socket reaches only its node.
    DynamicPrivate,
}

impl SubscriptionMode {
    /// The reference's name for the mode: `"static"`, `"dynamic"` or `"dynamic-private"`.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionMode::Static => "static",
            SubscriptionMode::Dynamic => "dynamic",
            SubscriptionMode::DynamicPrivate => "dynamic-private",
        }
    }

    /// Whether a node subscribes the channel of `room`, which exists on it; `private` when
    /// the room is a socket's own (named by its id). In [`Dynamic`](SubscriptionMode::Dynamic)
    /// that is every public room, and every private one that some publisher would send to
    /// its channel (one not 20 characters long).
    pub fn subscribes_room(self, room: &str, private: bool) -> bool {
        match self {
            SubscriptionMode::Static => false,
            SubscriptionMode::Dynamic => !private || !is_socket_id_length(room),
            SubscriptionMode::DynamicPrivate => true,
        }
    }

    /// The room on whose channel `message` is published, if any: a broadcast without
    /// acknowledgement (whose answers must come from every node) to exactly one room, in a
    /// dynamic mode; in [`Dynamic`](SubscriptionMode::Dynamic) only when the room does not
    /// look like a socket id. The reference's test is "20 UTF-16 units"; the id of a Node
    /// server's v4 client in another namespace (`/nsp#<20 characters>`) counts as one too,
    /// since that server does not subscribe its channel in this mode (the namespace channel
    /// always reaches everyone).
    pub fn room_of(self, message: &ClusterMessage) -> Option<&str> {
        let ClusterMessage::Broadcast {
            opts, ack: None, ..
        } = message
        else {
            return None;
        };
        let [room] = opts.rooms.as_slice() else {
            return None;
        };
        let room = room.as_str();
        match self {
            SubscriptionMode::Static => None,
            SubscriptionMode::Dynamic if looks_like_a_socket_id(room) => None,
            SubscriptionMode::Dynamic | SubscriptionMode::DynamicPrivate => Some(room),
        }
    }
}

impl std::fmt::Display for SubscriptionMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The reference's `looksLikeASocketId`: 20 UTF-16 units, as Node's socket ids.
fn is_socket_id_length(room: &str) -> bool {
    room.encode_utf16().count() == 20
}

/// [`is_socket_id_length`], or a v4 id `/nsp#<id>` of a Node server.
fn looks_like_a_socket_id(room: &str) -> bool {
    is_socket_id_length(room)
        || (room.starts_with('/')
            && room
                .rsplit_once('#')
                .is_some_and(|(_, id)| is_socket_id_length(id)))
}

/// The sharded codec under one channel prefix, for one [`SubscriptionMode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardedCodec {
    prefix: String,
    mode: SubscriptionMode,
}

impl Default for ShardedCodec {
    fn default() -> Self {
        ShardedCodec::new("socket.io")
    }
}

fn opts_value(opts: &BroadcastOptions) -> Value {
    crate::codec::broadcast_opts(opts, None, false)
}

impl ShardedCodec {
    /// The codec for channel prefix `prefix` (the reference's `channelPrefix`) in the
    /// [static](SubscriptionMode::Static) mode: everything but answers on the namespace
    /// channel.
    pub fn new(prefix: &str) -> Self {
        ShardedCodec {
            prefix: prefix.to_owned(),
            mode: SubscriptionMode::Static,
        }
    }

    /// The same codec, publishing as nodes in `mode` do.
    pub fn with_mode(mut self, mode: SubscriptionMode) -> Self {
        self.mode = mode;
        self
    }

    /// The subscription mode.
    pub fn mode(&self) -> SubscriptionMode {
        self.mode
    }

    /// `prefix#<nsp>#`: the messages of a namespace; its `SHARDNUMSUB` counts the servers.
    pub fn channel(&self, nsp: &str) -> String {
        format!("{}#{nsp}#", self.prefix)
    }

    /// `prefix#volley#`: a channel that only Volley nodes subscribe, so that they can be
    /// told from Node servers (`SHARDNUMSUB`); no message is published on it. No namespace,
    /// room or answer channel is named so (they all start `prefix#/`).
    pub fn presence_channel(&self) -> String {
        format!("{}#volley#", self.prefix)
    }

    /// `prefix#<nsp>#<uid>#`: answers for node `uid`.
    pub fn response_channel(&self, nsp: &str, uid: NodeId) -> String {
        format!("{}#{nsp}#{uid}#", self.prefix)
    }

    /// `prefix#<nsp>#<room>#`: a room's channel in the reference's dynamic modes.
    pub fn dynamic_channel(&self, nsp: &str, room: &str) -> String {
        format!("{}#{nsp}#{room}#", self.prefix)
    }

    /// Encodes `message` from node `uid`; `to` and `nsp` as [`crate::codec::Codec::encode`].
    /// The channel is the asking node's answer channel for an answer, the room's channel for
    /// a broadcast the mode sends there ([`SubscriptionMode::room_of`]), else the
    /// namespace's.
    pub fn encode(
        &self,
        uid: NodeId,
        to: Option<NodeId>,
        nsp: &str,
        message: &ClusterMessage,
    ) -> Outgoing {
        let (msg_nsp, kind, data, binary) = message_parts(nsp, message);
        let doc = envelope(uid.as_str(), msg_nsp, kind, data);
        let answer = message.answers().is_some();
        let channel = match (answer, to) {
            (true, Some(to)) => self.response_channel(msg_nsp, to),
            _ => match self.mode.room_of(message) {
                Some(room) => self.dynamic_channel(msg_nsp, room),
                None => self.channel(msg_nsp),
            },
        };
        Outgoing {
            channel,
            payload: if binary { msgpack(&doc) } else { json(&doc) },
        }
    }

    /// Decodes what arrived for node `me` (on a namespace, answer or room channel alike).
    pub fn decode(&self, me: NodeId, payload: &[u8]) -> Result<Decoded, DecodeError> {
        decode_value(me, &parse(payload)?)
    }
}

/// A message `{uid, nsp, type, data}`, in that order.
pub(crate) fn envelope(uid: &str, nsp: &str, kind: u64, data: Value) -> Value {
    map(vec![
        ("uid", s(uid)),
        ("nsp", s(nsp)),
        ("type", Value::from(kind)),
        ("data", data),
    ])
}

/// A message's namespace (`nsp` for answers, which carry none), `MessageType`, `data` and
/// whether that holds binary.
pub(crate) fn message_parts<'a>(
    nsp: &'a str,
    message: &'a ClusterMessage,
) -> (&'a str, u64, Value, bool) {
    use message_type as t;
    let (msg_nsp, kind, data, binary) = match message {
        ClusterMessage::Broadcast {
            nsp,
            opts,
            event,
            args,
            attachments,
            ack,
            timeout,
        } => {
            let mut fields = vec![
                ("opts", broadcast_opts(opts, *timeout, ack.is_some())),
                ("packet", packet(nsp, event, args, attachments)),
            ];
            if let Some(r) = ack {
                fields.push(("requestId", s(r.as_str())));
            }
            (
                nsp.as_str(),
                t::BROADCAST,
                map(fields),
                !attachments.is_empty(),
            )
        }
        ClusterMessage::SocketsJoin {
            nsp,
            opts,
            rooms: r,
        }
        | ClusterMessage::SocketsLeave {
            nsp,
            opts,
            rooms: r,
        } => {
            let kind = if matches!(message, ClusterMessage::SocketsJoin { .. }) {
                t::SOCKETS_JOIN
            } else {
                t::SOCKETS_LEAVE
            };
            let data = map(vec![
                ("opts", opts_value(opts)),
                ("rooms", strings(r.iter().map(String::as_str))),
            ]);
            (nsp.as_str(), kind, data, false)
        }
        ClusterMessage::DisconnectSockets { nsp, opts, close } => (
            nsp.as_str(),
            t::DISCONNECT_SOCKETS,
            map(vec![
                ("opts", opts_value(opts)),
                ("close", Value::from(*close)),
            ]),
            false,
        ),
        ClusterMessage::FetchSockets { request, nsp, opts } => (
            nsp.as_str(),
            t::FETCH_SOCKETS,
            map(vec![
                ("opts", opts_value(opts)),
                ("requestId", s(request.as_str())),
            ]),
            false,
        ),
        ClusterMessage::ServerSideEmit {
            nsp,
            event,
            args,
            attachments,
            request,
        } => {
            let mut fields = Vec::new();
            if let Some(r) = request {
                fields.push(("requestId", s(r.as_str())));
            }
            fields.push(("packet", event_data(event, args, attachments)));
            (
                nsp.as_str(),
                t::SERVER_SIDE_EMIT,
                map(fields),
                !attachments.is_empty(),
            )
        }
        ClusterMessage::AllRooms { request, nsp } => (
            nsp.as_str(),
            t::ALL_ROOMS,
            map(vec![("requestId", s(request.as_str()))]),
            false,
        ),
        ClusterMessage::FetchSocketsResponse { request, sockets } => (
            nsp,
            t::FETCH_SOCKETS_RESPONSE,
            map(vec![
                ("requestId", s(request.as_str())),
                (
                    "sockets",
                    Value::Array(sockets.iter().map(socket_to_value).collect()),
                ),
            ]),
            false,
        ),
        ClusterMessage::ServerSideEmitResponse {
            request,
            args,
            attachments,
        } => {
            let mut fields = vec![("requestId", s(request.as_str()))];
            if let Some(first) = first_arg(args, attachments) {
                fields.push(("packet", first));
            }
            (
                nsp,
                t::SERVER_SIDE_EMIT_RESPONSE,
                map(fields),
                !attachments.is_empty(),
            )
        }
        ClusterMessage::BroadcastClientCount { request, count } => (
            nsp,
            t::BROADCAST_CLIENT_COUNT,
            map(vec![
                ("requestId", s(request.as_str())),
                ("clientCount", Value::from(*count as u64)),
            ]),
            false,
        ),
        ClusterMessage::BroadcastAck {
            request,
            socket,
            args,
            attachments,
        } => {
            let mut fields = vec![("requestId", s(request.as_str()))];
            if let Some(first) = first_arg(args, attachments) {
                fields.push(("packet", first));
            }
            fields.push(("sid", s(socket.as_str())));
            (nsp, t::BROADCAST_ACK, map(fields), !attachments.is_empty())
        }
        ClusterMessage::AllRoomsResponse { request, rooms: r } => (
            nsp,
            t::ALL_ROOMS_RESPONSE,
            map(vec![
                ("requestId", s(request.as_str())),
                ("rooms", strings(r.iter().map(String::as_str))),
            ]),
            false,
        ),
        #[allow(unreachable_patterns)]
        _ => (nsp, u64::MAX, Value::Nil, false),
    };
    (msg_nsp, kind, data, binary)
}

/// A message `{uid, nsp, type, data}` for node `me`, as a MessagePack value.
pub(crate) fn decode_value(me: NodeId, doc: &Value) -> Result<Decoded, DecodeError> {
    use message_type as t;
    let from = node_id(get(doc, "uid"))?;
    if from == me {
        return Ok(Decoded::Ignored);
    }
    let nsp = get_str(doc, "nsp").unwrap_or("/").to_owned();
    let empty = Value::Nil;
    let data = get(doc, "data").unwrap_or(&empty);
    let req = || request_id(get(data, "requestId"));
    let message = match get(doc, "type").and_then(Value::as_u64) {
        Some(t::BROADCAST) => {
            let packet =
                get(data, "packet").ok_or_else(|| DecodeError::Malformed("no packet".into()))?;
            let (event, args, attachments) = decode_event_data(get(packet, "data"))?;
            let (opts, timeout) = decode_opts(get(data, "opts"));
            let ack = optional_request_id(get(data, "requestId"))?;
            ClusterMessage::Broadcast {
                nsp,
                opts,
                event,
                args,
                attachments,
                timeout: ack.and(timeout),
                ack,
            }
        }
        Some(k @ (t::SOCKETS_JOIN | t::SOCKETS_LEAVE)) => {
            let opts = decode_opts(get(data, "opts")).0;
            let rooms = string_list(get(data, "rooms"));
            if k == t::SOCKETS_JOIN {
                ClusterMessage::SocketsJoin { nsp, opts, rooms }
            } else {
                ClusterMessage::SocketsLeave { nsp, opts, rooms }
            }
        }
        Some(t::DISCONNECT_SOCKETS) => ClusterMessage::DisconnectSockets {
            nsp,
            opts: decode_opts(get(data, "opts")).0,
            close: get(data, "close").and_then(Value::as_bool).unwrap_or(false),
        },
        Some(t::FETCH_SOCKETS) => ClusterMessage::FetchSockets {
            request: req()?,
            nsp,
            opts: decode_opts(get(data, "opts")).0,
        },
        Some(t::FETCH_SOCKETS_RESPONSE) => ClusterMessage::FetchSocketsResponse {
            request: req()?,
            sockets: get(data, "sockets")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(decode_socket).collect())
                .unwrap_or_default(),
        },
        Some(t::SERVER_SIDE_EMIT) => {
            let (event, args, attachments) = decode_event_data(get(data, "packet"))?;
            let request = optional_request_id(get(data, "requestId"))?;
            ClusterMessage::ServerSideEmit {
                nsp,
                event,
                args,
                attachments,
                request,
            }
        }
        Some(t::SERVER_SIDE_EMIT_RESPONSE) => {
            let (args, attachments) = decode_single_arg(get(data, "packet"));
            ClusterMessage::ServerSideEmitResponse {
                request: req()?,
                args,
                attachments,
            }
        }
        Some(t::BROADCAST_CLIENT_COUNT) => ClusterMessage::BroadcastClientCount {
            request: req()?,
            count: client_count(get(data, "clientCount"))?,
        },
        Some(t::BROADCAST_ACK) => {
            let (args, attachments) = decode_single_arg(get(data, "packet"));
            ClusterMessage::BroadcastAck {
                request: req()?,
                socket: socket_id(get(data, "sid")),
                args,
                attachments,
            }
        }
        Some(t::ALL_ROOMS) => ClusterMessage::AllRooms {
            request: req()?,
            nsp,
        },
        Some(t::ALL_ROOMS_RESPONSE) => ClusterMessage::AllRoomsResponse {
            request: req()?,
            rooms: string_list(get(data, "rooms")),
        },
        _ => return Ok(Decoded::Ignored),
    };
    Ok(Decoded::Message { from, message })
}
