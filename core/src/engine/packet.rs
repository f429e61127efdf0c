//! The Engine.IO packet codec (v4 and v3): one packet to and from its text or binary form.

use crate::utf8::Utf8Bytes;
use bytes::Bytes;

/// Which Engine.IO protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Engine.IO v3 (Socket.IO v1/v2 clients): client-side ping, length-prefixed payloads.
    V3,
    /// Engine.IO v4 (Socket.IO v3/v4 clients): server-side ping, `\x1e`-separated payloads.
    V4,
}

/// The data of a `message` packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0`: the handshake, server to client; the data is the JSON handshake object.
    Open(Utf8Bytes),
    /// `1`: close the session.
    Close,
    /// `2`: ping, with optional data (`probe` during an upgrade).
    Ping(Utf8Bytes),
    /// `3`: pong, echoing the ping's data.
    Pong(Utf8Bytes),
    /// `4`: an application message.
    Message(Message),
    /// `5`: the client completes an upgrade.
    Upgrade,
    /// `6`: no-op, ends a pending poll.
    Noop,
}
