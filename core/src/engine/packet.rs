//! The Engine.IO packet codec (v4 and v3): one packet to and from its text or binary form.
//!
//! Text form: one ASCII type digit, then the data (`4hello`, `2probe`, `6`). A binary message
//! has no type digit in v4 (`b<base64>`) and keeps it in v3 (`b4<base64>`). On a WebSocket a
//! binary message is a binary frame: the bare data in v4, a `0x04` type byte then the data in
//! v3.
//!
//! Decoding is zero-copy where the input allows: text data is a slice of the received buffer.

use crate::base64;
use crate::utf8::{Utf8Builder, Utf8Bytes};
use bytes::Bytes;
use std::fmt;

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

impl Message {
    /// The data's length in bytes (text or binary, before framing): what a queue's byte
    /// bound counts ([`Config::max_buffered_bytes`](super::Config::max_buffered_bytes)).
    pub fn len(&self) -> usize {
        match self {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
        }
    }

    /// Whether the data is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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

/// A WebSocket message as the runtime receives or sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    /// A text frame.
    Text(Utf8Bytes),
    /// A binary frame.
    Binary(Bytes),
}

impl WsMessage {
    /// The payload's length in bytes.
    pub fn len(&self) -> usize {
        match self {
            WsMessage::Text(t) => t.len(),
            WsMessage::Binary(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why received bytes are not a valid Engine.IO packet or payload.
///
/// Every variant is the peer's fault (a remote protocol error): the reference server closes
/// the session, and a polling POST that carried it may be answered 400.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// A packet without a type: an empty packet, frame or body, or a v3 `b` with no type
    /// digit after it.
    Empty,
    /// The type character (text) or byte (v3 binary) names no packet type.
    UnknownType(u8),
    /// Binary data for a packet type other than `message` (v3 `b2…` or a binary frame whose
    /// type byte is not 4); only messages carry binary data.
    UnexpectedBinary,
    /// Text that is not valid UTF-8.
    InvalidUtf8,
    /// A `b` packet whose data is not valid base64.
    InvalidBase64,
    /// A v3 length prefix that is empty, holds something other than decimal digits,
    /// overflows, or ends inside a character.
    InvalidLength,
    /// A v3 XHR2 payload entry whose first byte is neither 0 (string) nor 1 (binary).
    UnknownFrameKind(u8),
    /// The body ended inside a length prefix or before the length it announced.
    Truncated,
    /// The body holds more than [`MAX_PACKETS_PER_PAYLOAD`](super::payload::MAX_PACKETS_PER_PAYLOAD)
    /// packets.
    TooManyPackets,
    /// A JSONP POST body without exactly one `d` field.
    InvalidJsonpBody,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("empty packet"),
            DecodeError::UnknownType(t) => write!(f, "unknown packet type 0x{t:02x}"),
            DecodeError::UnexpectedBinary => f.write_str("binary data for a non-message packet"),
            DecodeError::InvalidUtf8 => f.write_str("invalid UTF-8 in a text packet"),
            DecodeError::InvalidBase64 => f.write_str("invalid base64 in a binary packet"),
            DecodeError::InvalidLength => f.write_str("invalid length prefix"),
            DecodeError::UnknownFrameKind(k) => write!(f, "unknown payload entry kind 0x{k:02x}"),
            DecodeError::Truncated => f.write_str("payload ends inside a packet"),
            DecodeError::TooManyPackets => f.write_str("too many packets in one payload"),
            DecodeError::InvalidJsonpBody => f.write_str("JSONP body without a single `d` field"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<base64::InvalidBase64> for DecodeError {
    fn from(_: base64::InvalidBase64) -> Self {
        DecodeError::InvalidBase64
    }
}

/// Type number of `message`, the only packet that carries binary data.
const MESSAGE: u8 = 4;

impl Packet {
    /// Decodes one packet in text form: `4hello`, `2probe`, `3`, `6`; a binary message is
    /// `b<base64>` in v4 and `b4<base64>` in v3.
    ///
    /// Data after the type digit of `close`, `upgrade` and `noop` is ignored, as the reference
    /// server does. Base64 is decoded strictly (see [`crate::base64::decode`]), where Node's
    /// decoder skips bad characters: only a broken client sends such input, and rejecting it
    /// beats delivering garbage.
    pub fn decode_text(text: Utf8Bytes, protocol: Protocol) -> Result<Packet, DecodeError> {
        let bytes = text.as_bytes();
        let Some((&first, rest)) = bytes.split_first() else {
            return Err(DecodeError::Empty);
        };
        if first == b'b' {
            let encoded = match protocol {
                Protocol::V4 => rest,
                Protocol::V3 => match rest.split_first() {
                    None => return Err(DecodeError::Empty),
                    Some((&b'4', encoded)) => encoded,
                    Some((&t, _)) if (b'0'..=b'6').contains(&t) => {
                        return Err(DecodeError::UnexpectedBinary);
                    }
                    Some((&t, _)) => return Err(DecodeError::UnknownType(t)),
                },
            };
            let data = base64::decode(encoded)?;
            return Ok(Packet::Message(Message::Binary(Bytes::from(data))));
        }
        let kind = match first {
            b'0'..=b'6' => first - b'0',
            _ => return Err(DecodeError::UnknownType(first)),
        };
        // The type digit is ASCII, so byte 1 is a character boundary and the slice shares the
        // caller's buffer instead of copying it.
        let data = || text.slice(1..bytes.len()).ok_or(DecodeError::InvalidUtf8);
        Ok(match kind {
            0 => Packet::Open(data()?),
            1 => Packet::Close,
            2 => Packet::Ping(data()?),
            3 => Packet::Pong(data()?),
            4 => Packet::Message(Message::Text(data()?)),
            5 => Packet::Upgrade,
            _ => Packet::Noop,
        })
    }

    /// Decodes a binary WebSocket frame, or a binary entry of a v3 XHR2 payload.
    ///
    /// v4: the whole frame is a binary message, kept as is. v3: the first byte is the packet
    /// type (0..=6) and the rest is the data, sliced without copying; only type 4 (message)
    /// may carry binary data.
    pub fn decode_binary(frame: Bytes, protocol: Protocol) -> Result<Packet, DecodeError> {
        match protocol {
            Protocol::V4 => Ok(Packet::Message(Message::Binary(frame))),
            Protocol::V3 => match frame.first() {
                None => Err(DecodeError::Empty),
                Some(&MESSAGE) => Ok(Packet::Message(Message::Binary(
                    frame.slice(1..frame.len()),
                ))),
                // Official v3 clients only ever send messages as binary; the reference would
                // accept e.g. a binary ping, but there is no faithful `Packet` for it.
                Some(&t) if t <= 6 => Err(DecodeError::UnexpectedBinary),
                Some(&t) => Err(DecodeError::UnknownType(t)),
            },
        }
    }

    /// Appends the text form to `out`; a binary message becomes `b<base64>` (v4) or
    /// `b4<base64>` (v3).
    pub fn encode_text(&self, protocol: Protocol, out: &mut Vec<u8>) {
        if let Packet::Message(Message::Binary(data)) = self {
            out.push(b'b');
            if protocol == Protocol::V3 {
                out.push(b'0' + MESSAGE);
            }
            base64::encode_into(data, out);
            return;
        }
        out.push(self.type_digit());
        if let Some(data) = self.text_data() {
            out.extend_from_slice(data.as_bytes());
        }
    }

    /// The length of the text form [`encode_text`](Self::encode_text) appends.
    pub(crate) fn text_len(&self, protocol: Protocol) -> usize {
        match self {
            Packet::Message(Message::Binary(data)) => {
                let prefix = if protocol == Protocol::V3 { 2 } else { 1 };
                prefix + data.len().div_ceil(3) * 4
            }
            _ => 1 + self.text_data().map_or(0, |d| d.len()),
        }
    }

    /// The WebSocket form: text packets as [`WsMessage::Text`] (`4hello`); a binary message
    /// as [`WsMessage::Binary`] holding the data itself in v4 (no copy) and `0x04` then the
    /// data in v3.
    pub fn to_ws(&self, protocol: Protocol) -> WsMessage {
        if let Packet::Message(Message::Binary(data)) = self {
            return match protocol {
                Protocol::V4 => WsMessage::Binary(data.clone()),
                Protocol::V3 => {
                    let mut frame = Vec::with_capacity(data.len().saturating_add(1));
                    frame.push(MESSAGE);
                    frame.extend_from_slice(data);
                    WsMessage::Binary(Bytes::from(frame))
                }
            };
        }
        // Built from known UTF-8 pieces, so neither the data nor the result is validated.
        let data = self.text_data();
        let mut text = Utf8Builder::with_capacity(data.map_or(0, Utf8Bytes::len) + 1);
        text.push_ascii(self.type_digit());
        if let Some(data) = data {
            text.push_utf8(data);
        }
        WsMessage::Text(text.finish())
    }

    /// Decodes a received WebSocket message: text frames with [`Packet::decode_text`],
    /// binary frames with [`Packet::decode_binary`].
    pub fn from_ws(msg: WsMessage, protocol: Protocol) -> Result<Packet, DecodeError> {
        match msg {
            WsMessage::Text(text) => Packet::decode_text(text, protocol),
            WsMessage::Binary(frame) => Packet::decode_binary(frame, protocol),
        }
    }

    /// Whether this is a binary message, which polling framings treat specially.
    pub fn is_binary(&self) -> bool {
        matches!(self, Packet::Message(Message::Binary(_)))
    }

    /// The ASCII type digit of the text form.
    fn type_digit(&self) -> u8 {
        match self {
            Packet::Open(_) => b'0',
            Packet::Close => b'1',
            Packet::Ping(_) => b'2',
            Packet::Pong(_) => b'3',
            Packet::Message(_) => b'4',
            Packet::Upgrade => b'5',
            Packet::Noop => b'6',
        }
    }

    /// The text after the type digit, for packets that carry text.
    fn text_data(&self) -> Option<&Utf8Bytes> {
        match self {
            Packet::Open(d) | Packet::Ping(d) | Packet::Pong(d) => Some(d),
            Packet::Message(Message::Text(d)) => Some(d),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_len_is_the_length_encode_text_writes() {
        let mut packets = vec![
            Packet::Open(Utf8Bytes::from("{\"sid\":\"x\"}")),
            Packet::Close,
            Packet::Ping(Utf8Bytes::new()),
            Packet::Pong(Utf8Bytes::from("probe")),
            Packet::Message(Message::Text(Utf8Bytes::from("héllo"))),
            Packet::Upgrade,
            Packet::Noop,
        ];
        for n in 0..8 {
            packets.push(Packet::Message(Message::Binary(Bytes::from(vec![7u8; n]))));
        }
        for protocol in [Protocol::V3, Protocol::V4] {
            for packet in &packets {
                let mut out = Vec::new();
                packet.encode_text(protocol, &mut out);
                assert_eq!(
                    packet.text_len(protocol),
                    out.len(),
                    "{packet:?} {protocol:?}"
                );
            }
        }
    }
}
