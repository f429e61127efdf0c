//! The Socket.IO packet: its model, its builders and its text encoding.
//!
//! Text form: `<type>[<n>-][<nsp>,][<id>][<json>]`, one Engine.IO message; a binary packet's
//! `n` attachments follow as `n` binary Engine.IO messages. The JSON payload is never turned
//! into a tree: [`Packet::data`] is the text exactly as received or to be written, sliced out of
//! the received buffer without a copy, so key order and number formatting survive an echo.
//!
//! Decoding, with the validity rules and attachment reassembly, lives in
//! [`decoder`](super::decoder); [`Decoder`] is re-exported here so the whole codec is one
//! import.

use crate::utf8::{Utf8Builder, Utf8Bytes};
use bytes::Bytes;
use std::borrow::Cow;
use std::fmt;

pub use super::decoder::{DEFAULT_MAX_ATTACHMENTS, Decoder, MAX_ACK_ID};

/// Socket.IO protocol revision: V5 (Socket.IO 3+/EIO4) or V4 (Socket.IO 1/2, over EIO3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SioProtocol {
    /// Protocol 4 (Socket.IO v1/v2 clients, Engine.IO v3): namespace queries, string errors,
    /// payload-less CONNECT replies.
    V4,
    /// Protocol 5 (Socket.IO v3/v4 clients, Engine.IO v4): auth objects, `{"sid":…}` replies.
    V5,
}

/// The packet type, the first character of the text form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// `0`: join a namespace (client), or accept the join (server).
    Connect = 0,
    /// `1`: leave a namespace, from either side.
    Disconnect = 1,
    /// `2`: an event, `[name, ...args]`.
    Event = 2,
    /// `3`: the answer to an event that asked for one, `[...args]`.
    Ack = 3,
    /// `4`: the server refuses a join (named ERROR in protocol 4).
    ConnectError = 4,
    /// `5`: an event with binary attachments.
    BinaryEvent = 5,
    /// `6`: an ack with binary attachments.
    BinaryAck = 6,
}

impl PacketType {
    /// The type for a type digit (`b'0'..=b'6'`).
    pub fn from_digit(digit: u8) -> Option<PacketType> {
        Some(match digit {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    /// The ASCII digit of the text form.
    pub fn digit(self) -> u8 {
        b'0' + self as u8
    }

    /// Whether this is `BINARY_EVENT` or `BINARY_ACK`, which announce attachments.
    pub fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }
}

/// A decoded or to-be-encoded packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The packet type. A decoded binary packet keeps its binary type (5 or 6).
    pub kind: PacketType,
    /// The namespace, `/` when absent on the wire. For a protocol 4 CONNECT the query part is
    /// split off into [`query`](Packet::query).
    pub nsp: Utf8Bytes,
    /// Protocol 4 CONNECT only: the query after `?` in the namespace, without the `?`
    /// (`token=1234` from `0/admin?token=1234,`).
    pub query: Option<Utf8Bytes>,
    /// The ack id. Decoding accepts at most [`MAX_ACK_ID`] (2^53 − 1, the largest integer a
    /// JavaScript peer represents exactly).
    pub id: Option<u64>,
    /// The JSON payload text, exactly as received (a zero-copy slice) or to be written
    /// verbatim; binary packets hold their `{"_placeholder":true,"num":i}` objects in it.
    pub data: Option<Utf8Bytes>,
    /// Binary packets: the attachments, in order, once all arrived (placeholder `num` `i`
    /// refers to `attachments[i]`). Empty for every other packet.
    pub attachments: Vec<Bytes>,
}

/// Why a received Socket.IO packet (or the message sequence carrying it) is invalid.
///
/// Every variant is the peer's fault: the reference server closes the whole Engine.IO
/// connection on any of them, with the disconnect reason `parse error`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SioDecodeError {
    /// An empty text message, which carries no packet type.
    Empty,
    /// The first byte is not a packet type digit `0`..=`6`.
    UnknownType(u8),
    /// The attachment count of a binary packet is missing, not decimal digits, zero, or not
    /// followed by `-`.
    InvalidAttachments,
    /// A binary packet announces more attachments than the decoder accepts.
    TooManyAttachments,
    /// The ack id exceeds [`MAX_ACK_ID`].
    InvalidAckId,
    /// The payload is not valid JSON or has something other than whitespace after it; or,
    /// in a binary packet, whose placeholder walk recurses, it nests over 128 levels.
    InvalidJson,
    /// The payload is valid JSON of the wrong shape for the packet type, or missing where it
    /// is required (EVENT and ACK), or present where none is allowed (DISCONNECT).
    InvalidPayload,
    /// An event named `connect`, `connect_error`, `disconnect`, `disconnecting`,
    /// `newListener` or `removeListener`, which only the library itself may emit.
    ReservedEventName,
    /// A binary message while no binary packet waits for attachments.
    UnexpectedAttachment,
    /// A text message while a binary packet still waits for attachments.
    UnexpectedText,
    /// A binary packet's `{"_placeholder":true,…}` object whose `num` is not an integer `i`
    /// with `0 <= i < count`.
    BadPlaceholder,
}

impl fmt::Display for SioDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SioDecodeError::Empty => f.write_str("empty Socket.IO packet"),
            SioDecodeError::UnknownType(t) => write!(f, "unknown packet type 0x{t:02x}"),
            SioDecodeError::InvalidAttachments => f.write_str("illegal attachment count"),
            SioDecodeError::TooManyAttachments => f.write_str("too many attachments"),
            SioDecodeError::InvalidAckId => f.write_str("ack id out of range"),
            SioDecodeError::InvalidJson => f.write_str("invalid JSON payload"),
            SioDecodeError::InvalidPayload => f.write_str("invalid payload"),
            SioDecodeError::ReservedEventName => f.write_str("reserved event name"),
            SioDecodeError::UnexpectedAttachment => {
                f.write_str("binary data while no packet awaits attachments")
            }
            SioDecodeError::UnexpectedText => {
                f.write_str("text packet while a packet awaits attachments")
            }
            SioDecodeError::BadPlaceholder => f.write_str("illegal attachment placeholder"),
        }
    }
}

impl std::error::Error for SioDecodeError {}

const ROOT: Utf8Bytes = Utf8Bytes::from_static("/");

/// The namespace as stored: the empty string means the root, as in the reference encoder.
fn namespace(nsp: &str) -> Utf8Bytes {
    if nsp.is_empty() || nsp == "/" {
        ROOT
    } else {
        Utf8Bytes::from(nsp)
    }
}

impl Packet {
    /// CONNECT for `nsp`. Server side, `data` is the reply payload (`{"sid":"…"}`); it is not
    /// written in protocol 4, whose replies carry none.
    pub fn connect(nsp: &str, data: Option<Utf8Bytes>) -> Packet {
        Packet::bare(PacketType::Connect, nsp, None, data, Vec::new())
    }

    /// DISCONNECT for `nsp`.
    pub fn disconnect(nsp: &str) -> Packet {
        Packet::bare(PacketType::Disconnect, nsp, None, None, Vec::new())
    }

    /// CONNECT_ERROR for `nsp`: `data` is `{"message":…}` (optionally with `"data"`) or a
    /// JSON string. Protocol 4 writes the message alone, as a JSON string.
    pub fn connect_error(nsp: &str, data: Utf8Bytes) -> Packet {
        Packet::bare(PacketType::ConnectError, nsp, None, Some(data), Vec::new())
    }

    /// EVENT (or BINARY_EVENT when `attachments` is non-empty).
    ///
    /// `args` is the JSON array text of the arguments without the event name (`[1,"2"]`);
    /// the data becomes `["<name, JSON-escaped>",1,"2"]`, or `["name"]` for `[]`. Text that
    /// is not bracketed is taken as one argument, so a caller's bare value still reaches the
    /// peer intact.
    pub fn event(
        nsp: &str,
        name: &str,
        args: &str,
        id: Option<u64>,
        attachments: Vec<Bytes>,
    ) -> Packet {
        let inner = array_inner(args);
        // Exact: `Bytes` then takes the buffer as it is, without allocating a shared header
        // for spare capacity.
        let args_len = if inner.is_empty() { 0 } else { inner.len() + 1 };
        let mut data = String::with_capacity(json_string_len(name) + args_len + 2);
        data.push('[');
        write_json_string(&mut data, name);
        if !inner.is_empty() {
            data.push(',');
            data.push_str(inner);
        }
        data.push(']');
        let kind = if attachments.is_empty() {
            PacketType::Event
        } else {
            PacketType::BinaryEvent
        };
        Packet::bare(kind, nsp, id, Some(Utf8Bytes::from(data)), attachments)
    }

    /// The text form of `Packet::event(nsp, name, args, id, …)` with `attachments`
    /// attachments, as [`encode`](Packet::encode) writes it (the same in both protocols),
    /// built in one buffer of the exact size instead of the packet's data and then its text.
    pub(crate) fn event_text(
        nsp: &str,
        name: &str,
        args: &str,
        id: Option<u64>,
        attachments: usize,
    ) -> Utf8Bytes {
        let inner = array_inner(args);
        let root = nsp.is_empty() || nsp == "/";
        let len =
            1 + if attachments > 0 {
                decimal_len(attachments as u64) + 1
            } else {
                0
            } + if root { 0 } else { nsp.len() + 1 }
                + id.map_or(0, decimal_len)
                + 2
                + json_string_len(name)
                + if inner.is_empty() { 0 } else { inner.len() + 1 };
        let mut out = Utf8Builder::with_capacity(len);
        let kind = if attachments > 0 {
            PacketType::BinaryEvent
        } else {
            PacketType::Event
        };
        out.ascii(kind.digit());
        if attachments > 0 {
            out.decimal(attachments as u64);
            out.ascii(b'-');
        }
        if !root {
            out.text(nsp);
            out.ascii(b',');
        }
        if let Some(id) = id {
            out.decimal(id);
        }
        out.ascii(b'[');
        write_json_string(&mut out, name);
        if !inner.is_empty() {
            out.ascii(b',');
            out.text(inner);
        }
        out.ascii(b']');
        out.finish()
    }

    /// ACK (or BINARY_ACK when `attachments` is non-empty); `args` is the JSON array text.
    pub fn ack(nsp: &str, id: u64, args: Utf8Bytes, attachments: Vec<Bytes>) -> Packet {
        let kind = if attachments.is_empty() {
            PacketType::Ack
        } else {
            PacketType::BinaryAck
        };
        Packet::bare(kind, nsp, Some(id), Some(args), attachments)
    }

    fn bare(
        kind: PacketType,
        nsp: &str,
        id: Option<u64>,
        data: Option<Utf8Bytes>,
        attachments: Vec<Bytes>,
    ) -> Packet {
        Packet {
            kind,
            nsp: namespace(nsp),
            query: None,
            id,
            data,
            attachments,
        }
    }

    /// The event name of an EVENT/BINARY_EVENT (a number as its JSON text, e.g. `"42"`);
    /// `None` for other packets. Borrowed from the data unless the name holds escapes.
    pub fn event_name(&self) -> Option<Cow<'_, str>> {
        if !matches!(self.kind, PacketType::Event | PacketType::BinaryEvent) {
            return None;
        }
        let data = self.data.as_deref()?;
        let (start, end) = first_element(data.as_bytes())?;
        let token = data.get(start..end)?;
        if !token.starts_with('"') {
            return Some(Cow::Borrowed(token));
        }
        let inner = token.get(1..token.len().saturating_sub(1))?;
        if inner.contains('\\') {
            serde_json::from_str::<String>(token).ok().map(Cow::Owned)
        } else {
            Some(Cow::Borrowed(inner))
        }
    }

    /// The arguments as a JSON array text: for EVENT/BINARY_EVENT the data without the name
    /// (`["a",1,2]` → `[1,2]`, a new buffer); for ACK/BINARY_ACK the data itself (shared).
    /// `None` for other packets.
    pub fn args(&self) -> Option<Utf8Bytes> {
        match self.kind {
            PacketType::Ack | PacketType::BinaryAck => self.data.clone(),
            PacketType::Event | PacketType::BinaryEvent => {
                // On the bytes: every index below is next to an ASCII byte, so the text is
                // neither validated nor copied more than once.
                let data = self.data.as_ref()?;
                let bytes = data.as_bytes();
                let (_, end) = first_element(bytes)?;
                let next = skip_ws(bytes, end);
                match bytes.get(next)? {
                    b']' => Some(Utf8Bytes::from_static("[]")),
                    b',' => {
                        let mut last = bytes.len();
                        while last > next + 1 && bytes[last - 1].is_ascii_whitespace() {
                            last -= 1;
                        }
                        let rest = data.slice(next + 1..last)?;
                        let mut args = Utf8Builder::with_capacity(rest.len() + 1);
                        args.push_ascii(b'[');
                        args.push_utf8(&rest);
                        Some(args.finish())
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Whether the binary form is written: an event or ack with attachments.
    fn writes_binary(&self) -> bool {
        matches!(
            self.kind,
            PacketType::Event | PacketType::BinaryEvent | PacketType::Ack | PacketType::BinaryAck
        ) && !self.attachments.is_empty()
    }

    /// Encodes: the text part and the attachments to send after it as binary messages.
    ///
    /// The text is `<type>[<n>-][<nsp>,][<id>][<json>]`: the namespace only when it is not
    /// `/`, always followed by `,`. The type follows the attachments: an event or ack with
    /// attachments is written as BINARY_EVENT/BINARY_ACK with `n` = their count, one without
    /// as EVENT/ACK; other packet types never carry attachments and any are ignored.
    ///
    /// Protocol 4: a CONNECT carries no payload but its [`query`](Packet::query)
    /// (`0/admin?token=1,`); a CONNECT_ERROR whose data is an object with a string
    /// `message` is written as that message, a JSON string (`4/admin,"Not authorized"`).
    pub fn encode(&self, protocol: SioProtocol) -> (Utf8Bytes, Vec<Bytes>) {
        let mut text = Utf8Builder::with_capacity(self.encoded_len(protocol));
        self.write_text(protocol, &mut text);
        let attachments = if self.writes_binary() {
            self.attachments.clone()
        } else {
            Vec::new()
        };
        (text.finish(), attachments)
    }

    /// The text part of [`encode`](Packet::encode), appended to `out` (lets callers build once
    /// and share the bytes, or add a prefix).
    pub fn encode_text_into(&self, protocol: SioProtocol, out: &mut String) {
        self.write_text(protocol, out);
    }

    /// Writes the text form to `out`.
    fn write_text(&self, protocol: SioProtocol, out: &mut impl TextOut) {
        let binary = self.writes_binary();
        let kind = match self.kind {
            PacketType::Event | PacketType::BinaryEvent if binary => PacketType::BinaryEvent,
            PacketType::Event | PacketType::BinaryEvent => PacketType::Event,
            PacketType::Ack | PacketType::BinaryAck if binary => PacketType::BinaryAck,
            PacketType::Ack | PacketType::BinaryAck => PacketType::Ack,
            other => other,
        };
        out.ascii(kind.digit());
        if binary {
            out.decimal(self.attachments.len() as u64);
            out.ascii(b'-');
        }
        let query = match (protocol, kind) {
            (SioProtocol::V4, PacketType::Connect) => self.query.as_ref(),
            _ => None,
        };
        let root = self.nsp.is_empty() || self.nsp.is("/");
        if !root || query.is_some() {
            if root {
                out.ascii(b'/');
            } else {
                out.utf8(&self.nsp);
            }
            if let Some(query) = query {
                out.ascii(b'?');
                out.utf8(query);
            }
            out.ascii(b',');
        }
        if let Some(id) = self.id {
            out.decimal(id);
        }
        let Some(data) = self.data.as_ref() else {
            return;
        };
        match (protocol, kind) {
            (SioProtocol::V4, PacketType::Connect) => {}
            (SioProtocol::V4, PacketType::ConnectError) => match error_message(data) {
                Some(message) => {
                    let mut quoted = String::with_capacity(message.len() + 2);
                    write_json_string(&mut quoted, &message);
                    out.text(&quoted);
                }
                None => out.utf8(data),
            },
            _ => out.utf8(data),
        }
    }

    /// The length of the text [`encode_text_into`](Packet::encode_text_into) writes (a bound
    /// for a protocol 4 CONNECT_ERROR, whose message it may rewrite): sizing the buffer
    /// exactly lets `Bytes` take it without allocating a shared header.
    fn encoded_len(&self, protocol: SioProtocol) -> usize {
        let mut n = 1;
        if self.writes_binary() {
            n += decimal_len(self.attachments.len() as u64) + 1;
        }
        let query = match (protocol, self.kind) {
            (SioProtocol::V4, PacketType::Connect) => self.query.as_ref(),
            _ => None,
        };
        let root = self.nsp.is_empty() || self.nsp.is("/");
        if !root || query.is_some() {
            n += if root { 1 } else { self.nsp.len() };
            n += query.map_or(0, |q| q.len() + 1);
            n += 1;
        }
        if let Some(id) = self.id {
            n += decimal_len(id);
        }
        if let Some(data) = &self.data {
            n += match (protocol, self.kind) {
                (SioProtocol::V4, PacketType::Connect) => 0,
                (SioProtocol::V4, PacketType::ConnectError) => data.len() + 8,
                _ => data.len(),
            };
        }
        n
    }
}

/// Where [`Packet::write_text`] and [`write_json_string`] write: a `String` (the public
/// [`encode_text_into`](Packet::encode_text_into)) or a [`Utf8Builder`] ([`Packet::encode`],
/// which so never validates the data it copies).
pub(crate) trait TextOut {
    fn ascii(&mut self, b: u8);
    fn text(&mut self, s: &str);
    fn utf8(&mut self, s: &Utf8Bytes);
    fn decimal(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for &d in &digits[i..] {
            self.ascii(d);
        }
    }
}

impl TextOut for String {
    fn ascii(&mut self, b: u8) {
        self.push(char::from(b));
    }
    fn text(&mut self, s: &str) {
        self.push_str(s);
    }
    fn utf8(&mut self, s: &Utf8Bytes) {
        self.push_str(s);
    }
}

impl TextOut for Utf8Builder {
    fn ascii(&mut self, b: u8) {
        self.push_ascii(b);
    }
    fn text(&mut self, s: &str) {
        self.push_str(s);
    }
    fn utf8(&mut self, s: &Utf8Bytes) {
        self.push_utf8(s);
    }
}

/// The number of decimal digits of `n`.
fn decimal_len(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// The `message` of a `{"message":"…",…}` error object, for protocol 4's string errors.
fn error_message(data: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct ErrorObject {
        message: String,
    }
    if !data.trim_start().starts_with('{') {
        return None;
    }
    serde_json::from_str::<ErrorObject>(data)
        .ok()
        .map(|e| e.message)
}

/// The text between the brackets of a JSON array text, trimmed; non-array text whole.
fn array_inner(args: &str) -> &str {
    let trimmed = args.trim();
    match trimmed
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
    {
        Some(inner) => inner.trim(),
        None => trimmed,
    }
}

/// Appends `s` as a JSON string literal, escaped as `JSON.stringify` does: `"`, `\`, the
/// short escapes for `\b \f \n \r \t`, and `\u00XX` for the other control characters.
pub(crate) fn write_json_string(out: &mut impl TextOut, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.ascii(b'"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape: &str = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // `i` is an ASCII byte, so both slices end on character boundaries.
        out.text(s.get(plain..i).unwrap_or_default());
        if escape.is_empty() {
            out.text("\\u00");
            out.ascii(HEX[usize::from(b >> 4)]);
            out.ascii(HEX[usize::from(b & 0xf)]);
        } else {
            out.text(escape);
        }
        plain = i + 1;
    }
    out.text(s.get(plain..).unwrap_or_default());
    out.ascii(b'"');
}

/// The length of `s` written by [`write_json_string`].
fn json_string_len(s: &str) -> usize {
    s.bytes().fold(2, |n, b| {
        n + match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        }
    })
}

pub(crate) fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while matches!(bytes.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The byte range of the first element of a JSON array text when it is a string or a number
/// (the only event names); `None` otherwise. Assumes the text was validated as JSON.
fn first_element(bytes: &[u8]) -> Option<(usize, usize)> {
    let open = skip_ws(bytes, 0);
    if bytes.get(open) != Some(&b'[') {
        return None;
    }
    let start = skip_ws(bytes, open + 1);
    let mut i = start;
    match bytes.get(i)? {
        b'"' => {
            i += 1;
            loop {
                match bytes.get(i)? {
                    b'\\' => i += 2,
                    b'"' => return Some((start, i + 1)),
                    _ => i += 1,
                }
            }
        }
        b'-' | b'0'..=b'9' => {
            while matches!(
                bytes.get(i),
                Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')
            ) {
                i += 1;
            }
            Some((start, i))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_encoded_length_is_computed_exactly() {
        let att = || vec![Bytes::from_static(b"x"); 12];
        let mut v4_connect = Packet::connect("/admin", Some(Utf8Bytes::from("{\"a\":1}")));
        v4_connect.query = Some(Utf8Bytes::from("token=1"));
        let packets = [
            Packet::event("/", "echo", "[1,\"é\"]", None, Vec::new()),
            Packet::event("/chat", "a\"b", "[]", Some(1234567), Vec::new()),
            Packet::event(
                "/",
                "bin",
                "[{\"_placeholder\":true,\"num\":0}]",
                Some(0),
                att(),
            ),
            Packet::ack("/x", 9, Utf8Bytes::from("[true]"), Vec::new()),
            Packet::ack("/", 10, Utf8Bytes::from("[1]"), att()),
            Packet::disconnect("/y"),
            Packet::connect("/", None),
            v4_connect,
        ];
        for packet in &packets {
            for protocol in [SioProtocol::V4, SioProtocol::V5] {
                let (text, _) = packet.encode(protocol);
                assert_eq!(packet.encoded_len(protocol), text.len(), "{packet:?}");
            }
        }
    }

    #[test]
    fn an_event_text_is_the_encoded_event() {
        let att = |n| vec![Bytes::from_static(b"x"); n];
        let cases: [(&str, &str, &str, Option<u64>, usize); 6] = [
            ("/", "echo", "[1,\"é\"]", None, 0),
            ("", "e", "[]", Some(0), 0),
            (
                "/chat",
                "a\"b\\c\n\u{1}",
                " [ {\"k\":[1]} ] ",
                Some(1234567),
                0,
            ),
            (
                "/",
                "bin",
                "[{\"_placeholder\":true,\"num\":0}]",
                Some(7),
                1,
            ),
            (
                "/x",
                "many",
                "[{\"_placeholder\":true,\"num\":0}]",
                None,
                12,
            ),
            ("/", "plain", "3", None, 0),
        ];
        for (nsp, name, args, id, n) in cases {
            let packet = Packet::event(nsp, name, args, id, att(n));
            let text = Packet::event_text(nsp, name, args, id, n);
            assert_eq!(text, packet.encode(SioProtocol::V5).0, "{packet:?}");
            assert_eq!(text.as_bytes().len(), text.as_str().len());
        }
    }
}
