//! Socket.IO packet decoding: the validity rules of the reference parser and the reassembly
//! of binary packets from their attachments.
//!
//! A text Engine.IO message (without its `4` message prefix) holds one packet; a binary
//! packet's header announces `n` attachments, which arrive as the next `n` binary messages.
//! [`Decoder`] keeps that state, one per Engine.IO session.
//!
//! The JSON payload is validated in one streaming pass, without building a value tree: the
//! array shape and the event name are read, the rest is skipped, and only binary packets
//! walk their objects in search of placeholders. [`Packet::data`] stays the received slice.
//!
//! Rules, after socket.io-parser (v4.2: protocol 5; v3.4: protocol 4):
//!
//! - The type is one digit `0`..=`6`.
//! - BINARY_EVENT/BINARY_ACK: a decimal attachment count `n` ≥ 1 then `-`, with
//!   `n` ≤ the decoder's maximum (10 by default, as the reference's `maxAttachments`).
//! - A namespace starts with `/` and ends at the first `,` (consumed) or at the end of the
//!   text, so `0/random` is valid. Protocol 4 CONNECT: a `?` in it starts the query.
//! - The ack id is the run of decimal digits that follows; at most [`MAX_ACK_ID`].
//! - Whatever follows is the payload, which must be one JSON value (whitespace around it
//!   allowed, as `JSON.parse` does) of the shape the type requires: CONNECT an object or
//!   nothing; DISCONNECT nothing; EVENT an array whose first element is a number or a
//!   string outside the reserved names; ACK an array; CONNECT_ERROR an object, a string or
//!   nothing.
//!
//! Deliberate differences from the reference, all on input no official client sends:
//!
//! - An empty message is [`SioDecodeError::Empty`] (`Number("")` makes it a CONNECT there).
//! - EVENT and ACK without a payload are rejected (the reference hands on `undefined`).
//! - Counts and ids are plain digits (JavaScript's `Number()` also takes spaces, `1e0`, …).
//! - Protocol 4 uses the protocol 5 shape rules; its v3 parser was laxer (a CONNECT payload
//!   could be `null` or an array, and reserved event names were allowed).
//! - Placeholders are checked as soon as the header arrives, since the count is known then:
//!   the outcome is the reference's, without buffering the attachments of a doomed packet.
//! - Every object with `"_placeholder":true` is checked, even one inside another placeholder
//!   object, which the reference replaces without looking into.
//!
//! As in the reference, an attachment no placeholder refers to is accepted and delivered.

use super::packet::{Packet, PacketType, SioDecodeError, SioProtocol};
use crate::utf8::Utf8Bytes;
use bytes::Bytes;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;

/// The default cap on a binary packet's attachments, as the reference's `maxAttachments`.
pub const DEFAULT_MAX_ATTACHMENTS: usize = 10;

/// The largest ack id accepted: 2^53 − 1, `Number.MAX_SAFE_INTEGER`. A JavaScript peer cannot
/// represent a larger id exactly, so one would only come from a broken or hostile client.
pub const MAX_ACK_ID: u64 = (1 << 53) - 1;

/// Event names only the library may emit; the reference rejects events that use them.
const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// Decoding with attachment reassembly, one per Engine.IO session.
///
/// After an error the decoder is back in its initial state (a waiting packet is dropped),
/// though the caller is expected to close the connection, as the reference does.
#[derive(Debug, Clone)]
pub struct Decoder {
    protocol: SioProtocol,
    max_attachments: usize,
    /// Boxed: a decoder lives as long as its session, and most sessions never send a binary
    /// packet (a `Packet` inline would be most of the decoder's size).
    pending: Option<Box<Pending>>,
}

#[derive(Debug, Clone)]
struct Pending {
    packet: Packet,
    expected: usize,
    /// Header and attachment bytes held so far.
    held: usize,
}

impl Decoder {
    /// A decoder for `protocol`, accepting binary packets with at most `max_attachments`
    /// attachments ([`DEFAULT_MAX_ATTACHMENTS`] is the reference's default).
    pub fn new(protocol: SioProtocol, max_attachments: usize) -> Self {
        Decoder {
            protocol,
            max_attachments,
            pending: None,
        }
    }

    /// The protocol this decoder reads.
    pub fn protocol(&self) -> SioProtocol {
        self.protocol
    }

    /// A text Engine.IO message (the Socket.IO packet, without Engine.IO's `4`).
    ///
    /// `Ok(Some(packet))` when complete; `Ok(None)` when it is a binary packet header, now
    /// waiting for its attachments. A text message while attachments are still awaited is
    /// [`SioDecodeError::UnexpectedText`], as in the reference.
    pub fn decode_text(&mut self, text: Utf8Bytes) -> Result<Option<Packet>, SioDecodeError> {
        if self.pending.take().is_some() {
            return Err(SioDecodeError::UnexpectedText);
        }
        let held = text.len();
        let (packet, expected) = decode_packet(text, self.protocol, self.max_attachments)?;
        if expected == 0 {
            return Ok(Some(packet));
        }
        self.pending = Some(Box::new(Pending {
            packet,
            expected,
            held,
        }));
        Ok(None)
    }

    /// A binary Engine.IO message: the next attachment of the waiting packet.
    ///
    /// `Ok(Some(packet))` once the last one arrived, `Ok(None)` before;
    /// [`SioDecodeError::UnexpectedAttachment`] when no packet waits. The placeholders were
    /// already checked against the count when the header arrived.
    pub fn decode_binary(&mut self, data: Bytes) -> Result<Option<Packet>, SioDecodeError> {
        let Some(pending) = self.pending.as_mut() else {
            return Err(SioDecodeError::UnexpectedAttachment);
        };
        pending.held = pending.held.saturating_add(data.len());
        pending.packet.attachments.push(data);
        if pending.packet.attachments.len() < pending.expected {
            return Ok(None);
        }
        Ok(self.pending.take().map(|p| p.packet))
    }

    /// Whether a binary packet is waiting for attachments (its bytes count toward memory).
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// The bytes held for the waiting packet (its header text and the attachments so far);
    /// 0 when none waits.
    pub fn buffered_bytes(&self) -> usize {
        self.pending.as_ref().map_or(0, |p| p.held)
    }
}

/// Decodes one packet's text; returns it with the number of attachments still to come.
fn decode_packet(
    text: Utf8Bytes,
    protocol: SioProtocol,
    max_attachments: usize,
) -> Result<(Packet, usize), SioDecodeError> {
    let bytes = text.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(SioDecodeError::Empty);
    };
    let kind = PacketType::from_digit(first).ok_or(SioDecodeError::UnknownType(first))?;
    let mut i = 1;

    let mut expected = 0;
    if kind.is_binary() {
        let digits = count_digits(bytes, i);
        if digits == 0 || bytes.get(i + digits) != Some(&b'-') {
            return Err(SioDecodeError::InvalidAttachments);
        }
        match parse_decimal(bytes, i, digits) {
            Some(0) => return Err(SioDecodeError::InvalidAttachments),
            Some(n) if n <= max_attachments as u64 => expected = n as usize,
            _ => return Err(SioDecodeError::TooManyAttachments),
        }
        i += digits + 1;
    }

    // Every boundary below is an ASCII byte or the end, so the slices cannot fail; the
    // fallbacks only keep the code free of panics.
    let slice = |range: std::ops::Range<usize>| text.slice(range).unwrap_or_default();
    let mut nsp = Utf8Bytes::from_static("/");
    let mut query = None;
    if bytes.get(i) == Some(&b'/') {
        let end = find(bytes, i, bytes.len(), b',').unwrap_or(bytes.len());
        let mut nsp_end = end;
        if protocol == SioProtocol::V4 && kind == PacketType::Connect {
            if let Some(q) = find(bytes, i, end, b'?') {
                nsp_end = q;
                query = Some(slice(q + 1..end));
            }
        }
        nsp = slice(i..nsp_end);
        i = (end + 1).min(bytes.len());
    }

    let mut id = None;
    let digits = count_digits(bytes, i);
    if digits > 0 {
        match parse_decimal(bytes, i, digits) {
            Some(n) if n <= MAX_ACK_ID => id = Some(n),
            _ => return Err(SioDecodeError::InvalidAckId),
        }
        i += digits;
    }

    let data = if i < bytes.len() {
        let data = slice(i..bytes.len());
        let attachments = kind.is_binary().then_some(expected as u64);
        check_payload(kind, &data, attachments)?;
        Some(data)
    } else {
        check_missing_payload(kind)?;
        None
    };

    let packet = Packet {
        kind,
        nsp,
        query,
        id,
        data,
        attachments: Vec::with_capacity(expected),
    };
    Ok((packet, expected))
}

fn count_digits(bytes: &[u8], from: usize) -> usize {
    bytes.get(from..).map_or(0, |rest| {
        rest.iter().take_while(|b| b.is_ascii_digit()).count()
    })
}

/// The first `byte` in `bytes[from..to]`, as an index into `bytes`.
fn find(bytes: &[u8], from: usize, to: usize, byte: u8) -> Option<usize> {
    let p = bytes.get(from..to)?.iter().position(|&b| b == byte)?;
    Some(from + p)
}

/// The `len` decimal digits at `from` as a number; `None` on overflow. Leading zeros are
/// fine, as in JavaScript.
fn parse_decimal(bytes: &[u8], from: usize, len: usize) -> Option<u64> {
    let digits = bytes.get(from..from.checked_add(len)?)?;
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?
            .checked_add(u64::from(d.wrapping_sub(b'0')))
    })
}

fn check_missing_payload(kind: PacketType) -> Result<(), SioDecodeError> {
    match kind {
        PacketType::Connect | PacketType::Disconnect | PacketType::ConnectError => Ok(()),
        PacketType::Event | PacketType::BinaryEvent | PacketType::Ack | PacketType::BinaryAck => {
            Err(SioDecodeError::InvalidPayload)
        }
    }
}

/// Validates a payload for `kind` in one pass; `attachments` (binary packets) also checks
/// every placeholder against that count.
pub(super) fn check_payload(
    kind: PacketType,
    json: &str,
    attachments: Option<u64>,
) -> Result<(), SioDecodeError> {
    if kind == PacketType::Disconnect {
        return Err(SioDecodeError::InvalidPayload);
    }
    let fault = Cell::new(None);
    let check = Check {
        attachments,
        fault: &fault,
    };
    let mut de = serde_json::Deserializer::from_str(json);
    let shape = TopSeed(check)
        .deserialize(&mut de)
        .and_then(|shape| de.end().map(|()| shape));
    let shape = match shape {
        Ok(shape) => shape,
        Err(_) => return Err(fault.take().unwrap_or(SioDecodeError::InvalidJson)),
    };
    let ok = match kind {
        PacketType::Connect => matches!(shape, Shape::Object),
        PacketType::ConnectError => matches!(shape, Shape::Object | Shape::String),
        PacketType::Ack | PacketType::BinaryAck => matches!(shape, Shape::Array(_)),
        PacketType::Event | PacketType::BinaryEvent => match shape {
            Shape::Array(First::Name { reserved: true }) => {
                return Err(SioDecodeError::ReservedEventName);
            }
            Shape::Array(First::Name { reserved: false } | First::Number) => true,
            _ => false,
        },
        PacketType::Disconnect => false,
    };
    if ok {
        Ok(())
    } else {
        Err(SioDecodeError::InvalidPayload)
    }
}

/// The top level of a payload.
enum Shape {
    Object,
    Array(First),
    String,
    Other,
}

/// The first element of a top-level array: what decides an event's validity.
enum First {
    Missing,
    Name { reserved: bool },
    Number,
    Other,
}

/// A value seen while walking a binary payload, as far as placeholders care.
#[derive(PartialEq)]
enum Seen {
    True,
    /// A non-negative integer (JSON `2`, `2.0` or `2e0`).
    Index(u64),
    Other,
}

/// What the walk checks, shared by every level: the attachment count (binary packets only)
/// and where a placeholder fault is reported, since serde errors are opaque strings.
#[derive(Clone, Copy)]
struct Check<'c> {
    attachments: Option<u64>,
    fault: &'c Cell<Option<SioDecodeError>>,
}

impl Check<'_> {
    fn map<'de, A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some(count) = self.attachments else {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(());
        };
        let mut placeholder = false;
        let mut num = None;
        // Duplicate keys: the last one counts, as in `JSON.parse`.
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let seen = map.next_value_seed(ValueSeed(self))?;
            match key {
                Key::Placeholder => placeholder = seen == Seen::True,
                Key::Num => num = Some(seen),
                Key::Other => {}
            }
        }
        if !placeholder {
            return Ok(());
        }
        match num {
            Some(Seen::Index(i)) if i < count => Ok(()),
            _ => {
                self.fault.set(Some(SioDecodeError::BadPlaceholder));
                Err(de::Error::custom("illegal attachment placeholder"))
            }
        }
    }

    fn rest<'de, A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(ValueSeed(self))?.is_some() {}
        Ok(())
    }
}

struct TopSeed<'c>(Check<'c>);

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = Shape;
    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<Shape, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_unit<E>(self) -> Result<Shape, E> {
        Ok(Shape::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::String)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        let first = seq
            .next_element_seed(FirstSeed(self.0))?
            .unwrap_or(First::Missing);
        self.0.rest(seq)?;
        Ok(Shape::Array(first))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Shape, A::Error> {
        self.0.map(map)?;
        Ok(Shape::Object)
    }
}

struct FirstSeed<'c>(Check<'c>);

impl<'de> DeserializeSeed<'de> for FirstSeed<'_> {
    type Value = First;
    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<First, D::Error> {
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FirstSeed<'_> {
    type Value = First;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<First, E> {
        Ok(First::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<First, E> {
        Ok(First::Number)
    }
    fn visit_u64<E>(self, _: u64) -> Result<First, E> {
        Ok(First::Number)
    }
    fn visit_f64<E>(self, _: f64) -> Result<First, E> {
        Ok(First::Number)
    }
    fn visit_unit<E>(self) -> Result<First, E> {
        Ok(First::Other)
    }
    fn visit_str<E>(self, name: &str) -> Result<First, E> {
        Ok(First::Name {
            reserved: RESERVED_EVENTS.contains(&name),
        })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<First, A::Error> {
        self.0.rest(seq)?;
        Ok(First::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<First, A::Error> {
        self.0.map(map)?;
        Ok(First::Other)
    }
}

/// Any value below the top level: skipped outright, or walked for placeholders.
struct ValueSeed<'c>(Check<'c>);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Seen;
    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<Seen, D::Error> {
        if self.0.attachments.is_none() {
            de.deserialize_ignored_any(IgnoredAny)?;
            return Ok(Seen::Other);
        }
        de.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Seen;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Seen, E> {
        Ok(if v { Seen::True } else { Seen::Other })
    }
    fn visit_i64<E>(self, v: i64) -> Result<Seen, E> {
        Ok(u64::try_from(v).map_or(Seen::Other, Seen::Index))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Seen, E> {
        Ok(Seen::Index(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Seen, E> {
        // JSON numbers are JavaScript numbers: `1.0` indexes like `1`; `0.5` or `-1` do not.
        // The upper bound only keeps the cast exact; any index that large fails the count.
        let integral = v.is_finite() && v.fract() == 0.0 && v >= 0.0 && v <= MAX_ACK_ID as f64;
        Ok(if integral {
            Seen::Index(v as u64)
        } else {
            Seen::Other
        })
    }
    fn visit_unit<E>(self) -> Result<Seen, E> {
        Ok(Seen::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Seen, E> {
        Ok(Seen::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Seen, A::Error> {
        self.0.rest(seq)?;
        Ok(Seen::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Seen, A::Error> {
        self.0.map(map)?;
        Ok(Seen::Other)
    }
}

/// An object key, as far as placeholders care.
enum Key {
    Placeholder,
    Num,
    Other,
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: de::Deserializer<'de>>(self, de: D) -> Result<Key, D::Error> {
        de.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "_placeholder" => Key::Placeholder,
            "num" => Key::Num,
            _ => Key::Other,
        })
    }
}
