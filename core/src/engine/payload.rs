//! The polling payload codec: the packets of one HTTP long-polling body.
//!
//! Three framings exist:
//! - v4: text packets joined by the record separator `0x1e` (`4hello\x1e2\x1e4world`).
//! - v3 string: `<len>:<packet>` repeated, `len` counting UTF-16 code units (`6:4hello2:4€`);
//!   binary messages travel as `b4<base64>`.
//! - v3 binary ("XHR2", `application/octet-stream`): per packet a kind byte (0 = string,
//!   1 = binary), the length as one byte per decimal digit (each 0..=9), `0xFF`, then the
//!   packet. A string packet is its UTF-8 text form and its length counts bytes (the reference
//!   UTF-8-encodes the text before measuring it); a binary packet is the type byte plus the
//!   data, and its length includes the type byte.
//!
//! [`decode_payload`] and [`PayloadDecoder`] share one state machine, so any chunking of a body
//! yields exactly the packets, or the error, of decoding it whole. A body that holds an invalid
//! packet is rejected as a whole: the reference server handles the packets before the bad one
//! and then closes the session, so the only difference is that those packets are dropped along
//! with the session.

use super::packet::{DecodeError, Packet, Protocol};
use crate::utf8::Utf8Bytes;
use bytes::{Buf, Bytes, BytesMut};

/// Most packets one polling body may hold; more is [`DecodeError::TooManyPackets`].
///
/// A Socket.IO event or ack takes at least 5 bytes on the wire (`43[]` plus a separator), so a
/// body within the reference's default 1 MB `maxPayload` holds at most 200 000 of them; the
/// bound sits above that and keeps the decoded list near 10 MB when `max_payload` is raised.
pub const MAX_PACKETS_PER_PAYLOAD: usize = 1 << 18;

/// Packets a whole v4 body's decoding makes room for at once, from its separators; a body
/// with more grows the list as it decodes.
const PRESIZED_PACKETS: usize = 64;

/// The v4 record separator between packets.
const SEPARATOR: u8 = 0x1e;

/// How a polling body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Engine.IO v4: text packets separated by `0x1e`.
    V4,
    /// Engine.IO v3 as text: `<UTF-16 length>:<packet>` repeated.
    V3String,
    /// Engine.IO v3 as `application/octet-stream` (XHR2): kind byte, length digits, `0xFF`,
    /// packet.
    V3Binary,
}

/// Result of encoding: the body, and whether it is binary (`Content-Type:
/// application/octet-stream`) or text (`text/plain; charset=UTF-8`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPayload {
    /// The response body.
    pub body: Bytes,
    /// Whether the body uses the v3 binary (XHR2) framing.
    pub binary: bool,
}

/// Decodes a whole polling body.
///
/// Edge cases, following the reference parsers where they are well defined:
/// - v4: an empty body, an empty packet between separators and a trailing separator are all
///   [`DecodeError::Empty`]: the reference splits on `0x1e` and an empty part fails to parse.
/// - v3 string: an empty body is [`DecodeError::Empty`] (the reference rejects it), while `0:`
///   is a valid empty payload (it is what the reference sends for no packets); any `0:` entry
///   is skipped. A length is one or more ASCII digits; leading zeros are accepted, as the
///   reference's `Number()` accepts them, but the signs, spaces, hex and exponents that
///   `Number()` would also take are [`DecodeError::InvalidLength`]: no client writes them.
///   A length that ends in the middle of a surrogate pair is [`DecodeError::InvalidLength`]
///   (the reference fails later on the orphaned half).
/// - v3 binary: an empty body is a valid empty payload (the reference loops zero times); the
///   kind byte must be 0 or 1 and length digits 0..=9 (the reference would misread anything
///   else); a length running past the end is [`DecodeError::Truncated`] where the reference
///   silently keeps the shorter remainder.
/// - Text that is not UTF-8 is [`DecodeError::InvalidUtf8`] in every framing.
pub fn decode_payload(body: Bytes, framing: Framing) -> Result<Vec<Packet>, DecodeError> {
    let mut machine = Machine::new(framing);
    if framing == Framing::V4 {
        // One packet per separator and one more: sized once rather than grown, up to
        // PRESIZED_PACKETS (a body of separators must not reserve for what it will not hold).
        let separators = body.iter().filter(|&&b| b == SEPARATOR).count();
        machine
            .packets
            .reserve_exact(separators.saturating_add(1).min(PRESIZED_PACKETS));
    }
    let mut body = body;
    machine.started = !body.is_empty();
    machine.run(&mut body, true)?;
    Ok(machine.packets)
}

/// Incremental decoder: feeding the same bytes in any chunking (even one byte at a time)
/// gives exactly the packets, or the error, of [`decode_payload`] on the whole body.
///
/// Errors are reported as soon as the bytes seen so far prove them, so a caller can stop
/// reading a bad body early; once an error is returned every later call returns it again.
/// The decoder holds at most the bytes of the packet in progress plus the decoded packets;
/// a length prefix never makes it reserve memory.
#[derive(Debug)]
pub struct PayloadDecoder {
    machine: Machine,
    buf: BytesMut,
}

impl PayloadDecoder {
    /// A decoder for a body in `framing`.
    pub fn new(framing: Framing) -> Self {
        PayloadDecoder {
            machine: Machine::new(framing),
            buf: BytesMut::new(),
        }
    }

    /// Feeds the next chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), DecodeError> {
        if let Some(err) = &self.machine.error {
            return Err(err.clone());
        }
        self.machine.started |= !chunk.is_empty();
        self.buf.extend_from_slice(chunk);
        self.machine.run(&mut self.buf, false)
    }

    /// Ends the body and returns its packets.
    pub fn finish(mut self) -> Result<Vec<Packet>, DecodeError> {
        if let Some(err) = self.machine.error {
            return Err(err);
        }
        self.machine.run(&mut self.buf, true)?;
        Ok(self.machine.packets)
    }
}

/// Encodes packets for a polling response.
///
/// v4: text forms joined by `0x1e` (binary messages as `b<base64>`). A text packet whose data
/// contains U+001E cannot survive this framing, as with the reference; Socket.IO never
/// produces one because JSON escapes control characters.
///
/// v3: when `xhr2` is true and a packet is a binary message, the binary (XHR2) framing for
/// the whole body; otherwise the string framing with binary messages as `b4<base64>`, and
/// `0:` for no packets, as the reference writes it.
pub fn encode_payload(packets: &[Packet], protocol: Protocol, xhr2: bool) -> EncodedPayload {
    encode_payload_of(packets.iter(), protocol, xhr2)
}

/// [`encode_payload`] over any run of packets (a session's queue, without gathering them).
pub(crate) fn encode_payload_of<'a, I>(packets: I, protocol: Protocol, xhr2: bool) -> EncodedPayload
where
    I: ExactSizeIterator<Item = &'a Packet> + Clone,
{
    let (out, binary) = match protocol {
        Protocol::V4 => {
            // Sized exactly, so that the body is one allocation and `Bytes` takes it as is.
            let len = packets
                .clone()
                .map(|p| p.text_len(Protocol::V4))
                .sum::<usize>()
                + packets.len().saturating_sub(1);
            let mut out = Vec::with_capacity(len);
            for (i, packet) in packets.enumerate() {
                if i > 0 {
                    out.push(SEPARATOR);
                }
                packet.encode_text(Protocol::V4, &mut out);
            }
            (out, false)
        }
        Protocol::V3 if xhr2 && packets.clone().any(Packet::is_binary) => {
            let mut out = Vec::new();
            encode_v3_binary(packets, &mut out);
            (out, true)
        }
        Protocol::V3 => {
            let mut out = Vec::new();
            encode_v3_string(packets, &mut out);
            (out, false)
        }
    };
    EncodedPayload {
        body: Bytes::from(out),
        binary,
    }
}

fn encode_v3_string<'a>(packets: impl ExactSizeIterator<Item = &'a Packet>, out: &mut Vec<u8>) {
    if packets.len() == 0 {
        out.extend_from_slice(b"0:");
        return;
    }
    let mut text = Vec::new();
    for packet in packets {
        text.clear();
        packet.encode_text(Protocol::V3, &mut text);
        push_decimal(out, utf16_len(&text), b'0');
        out.push(b':');
        out.extend_from_slice(&text);
    }
}

fn encode_v3_binary<'a>(packets: impl Iterator<Item = &'a Packet>, out: &mut Vec<u8>) {
    let mut text = Vec::new();
    for packet in packets {
        match packet {
            Packet::Message(super::packet::Message::Binary(data)) => {
                out.push(1);
                // A slice is at most isize::MAX bytes long, so adding the type byte fits.
                push_decimal(out, data.len().saturating_add(1), 0);
                out.push(0xff);
                out.push(4);
                out.extend_from_slice(data);
            }
            _ => {
                text.clear();
                packet.encode_text(Protocol::V3, &mut text);
                out.push(0);
                push_decimal(out, text.len(), 0);
                out.push(0xff);
                out.extend_from_slice(&text);
            }
        }
    }
}

/// Appends the decimal digits of `n`, each as `zero + digit` (ASCII for the string framing,
/// raw values for the binary one).
fn push_decimal(out: &mut Vec<u8>, mut n: usize, zero: u8) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start = start.saturating_sub(1);
        if let Some(slot) = digits.get_mut(start) {
            *slot = zero + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// The number of UTF-16 code units in valid UTF-8 `text`, which is what v3 lengths count
/// (JavaScript's `String.length`).
fn utf16_len(text: &[u8]) -> usize {
    text.iter()
        .map(|&b| match b {
            0x80..=0xbf => 0,
            // Four-byte sequences are outside the BMP: a surrogate pair.
            0xf0..=0xff => 2,
            _ => 1,
        })
        .sum()
}

/// The bytes a [`Machine`] reads from: the whole body ([`Bytes`]) or the decoder's buffer
/// ([`BytesMut`]). Taking a prefix is zero-copy for both, so decoded text always shares the
/// received memory.
trait Input {
    fn bytes(&self) -> &[u8];
    fn take(&mut self, n: usize) -> Bytes;
    fn skip(&mut self, n: usize);
}

impl Input for Bytes {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn take(&mut self, n: usize) -> Bytes {
        self.split_to(n.min(self.len()))
    }
    fn skip(&mut self, n: usize) {
        self.advance(n.min(self.len()));
    }
}

impl Input for BytesMut {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn take(&mut self, n: usize) -> Bytes {
        self.split_to(n.min(self.len())).freeze()
    }
    fn skip(&mut self, n: usize) {
        self.advance(n.min(self.len()));
    }
}

/// Where the parser stands; positions count from the start of the unconsumed input.
#[derive(Debug, Clone, Copy)]
enum State {
    /// v4: inside a packet; the first `scanned` bytes hold no separator.
    V4 { scanned: usize },
    /// v3 string: reading a length prefix.
    Length { value: usize, digits: usize },
    /// v3 string: reading a packet of `need` UTF-16 units; the first `pos` bytes hold
    /// `units` of them, ending on a character boundary.
    Text {
        need: usize,
        units: usize,
        pos: usize,
    },
    /// v3 binary: expecting the kind byte of the next entry (or the end).
    Kind,
    /// v3 binary: reading length digits.
    BinLength {
        binary: bool,
        value: usize,
        digits: usize,
    },
    /// v3 binary: waiting for `len` bytes of packet.
    Body { binary: bool, len: usize },
}

#[derive(Debug)]
struct Machine {
    state: State,
    packets: Vec<Packet>,
    /// Whether any byte arrived: a v3 string body may be `0:` but not empty.
    started: bool,
    /// The first error, repeated by every later call.
    error: Option<DecodeError>,
}

impl Machine {
    fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::V4 => State::V4 { scanned: 0 },
            Framing::V3String => State::Length {
                value: 0,
                digits: 0,
            },
            Framing::V3Binary => State::Kind,
        };
        Machine {
            state,
            packets: Vec::new(),
            started: false,
            error: None,
        }
    }

    /// Consumes what `input` allows; `last` says no more bytes will come.
    fn run<I: Input>(&mut self, input: &mut I, last: bool) -> Result<(), DecodeError> {
        let result = self.step(input, last);
        if let Err(err) = &result {
            self.error = Some(err.clone());
        }
        result
    }

    fn step<I: Input>(&mut self, input: &mut I, last: bool) -> Result<(), DecodeError> {
        // Every iteration consumes input or returns, so the loop ends with the input.
        loop {
            match self.state {
                State::V4 { scanned } => {
                    let bytes = input.bytes();
                    let unseen = bytes.get(scanned..).unwrap_or_default();
                    match unseen.iter().position(|&b| b == SEPARATOR) {
                        Some(i) => {
                            let packet = input.take(scanned.saturating_add(i));
                            input.skip(1);
                            self.state = State::V4 { scanned: 0 };
                            self.push_text(packet, Protocol::V4)?;
                        }
                        None if last => {
                            // What follows the last separator is a packet too, even when
                            // empty, which makes "" and a trailing separator errors.
                            let len = bytes.len();
                            let packet = input.take(len);
                            return self.push_text(packet, Protocol::V4);
                        }
                        None => {
                            self.state = State::V4 {
                                scanned: bytes.len(),
                            };
                            return Ok(());
                        }
                    }
                }
                State::Length { value, digits } => {
                    let Some(&byte) = input.bytes().first() else {
                        return match (last, digits, self.started) {
                            (false, _, _) => Ok(()),
                            (true, 0, true) => Ok(()),
                            (true, 0, false) => Err(DecodeError::Empty),
                            (true, _, _) => Err(DecodeError::Truncated),
                        };
                    };
                    input.skip(1);
                    self.state = match byte {
                        b'0'..=b'9' => State::Length {
                            value: push_digit(value, byte - b'0')?,
                            digits: digits.saturating_add(1),
                        },
                        b':' if digits == 0 => return Err(DecodeError::InvalidLength),
                        // An empty entry carries no packet; the reference skips it too.
                        b':' if value == 0 => State::Length {
                            value: 0,
                            digits: 0,
                        },
                        b':' => State::Text {
                            need: value,
                            units: 0,
                            pos: 0,
                        },
                        _ => return Err(DecodeError::InvalidLength),
                    };
                }
                State::Text {
                    need,
                    mut units,
                    mut pos,
                } => {
                    let bytes = input.bytes();
                    while units < need {
                        let Some(&lead) = bytes.get(pos) else { break };
                        let (width, width_units) = match lead {
                            0x00..=0x7f => (1, 1),
                            0xc2..=0xdf => (2, 1),
                            0xe0..=0xef => (3, 1),
                            0xf0..=0xf4 => (4, 2),
                            _ => return Err(DecodeError::InvalidUtf8),
                        };
                        if width_units > need - units {
                            return Err(DecodeError::InvalidLength);
                        }
                        let end = pos.saturating_add(width);
                        if end > bytes.len() {
                            break;
                        }
                        pos = end;
                        units += width_units;
                    }
                    if units == need {
                        let packet = input.take(pos);
                        self.state = State::Length {
                            value: 0,
                            digits: 0,
                        };
                        self.push_text(packet, Protocol::V3)?;
                    } else if last {
                        return Err(DecodeError::Truncated);
                    } else {
                        self.state = State::Text { need, units, pos };
                        return Ok(());
                    }
                }
                State::Kind => {
                    let Some(&kind) = input.bytes().first() else {
                        return Ok(());
                    };
                    input.skip(1);
                    let binary = match kind {
                        0 => false,
                        1 => true,
                        _ => return Err(DecodeError::UnknownFrameKind(kind)),
                    };
                    self.state = State::BinLength {
                        binary,
                        value: 0,
                        digits: 0,
                    };
                }
                State::BinLength {
                    binary,
                    value,
                    digits,
                } => {
                    let Some(&byte) = input.bytes().first() else {
                        return if last {
                            Err(DecodeError::Truncated)
                        } else {
                            Ok(())
                        };
                    };
                    input.skip(1);
                    self.state = match byte {
                        0..=9 => State::BinLength {
                            binary,
                            value: push_digit(value, byte)?,
                            digits: digits.saturating_add(1),
                        },
                        0xff if digits == 0 => return Err(DecodeError::InvalidLength),
                        0xff => State::Body { binary, len: value },
                        _ => return Err(DecodeError::InvalidLength),
                    };
                }
                State::Body { binary, len } => {
                    if input.bytes().len() < len {
                        return if last {
                            Err(DecodeError::Truncated)
                        } else {
                            Ok(())
                        };
                    }
                    let packet = input.take(len);
                    self.state = State::Kind;
                    if binary {
                        self.check_room()?;
                        let packet = Packet::decode_binary(packet, Protocol::V3)?;
                        self.packets.push(packet);
                    } else {
                        self.push_text(packet, Protocol::V3)?;
                    }
                }
            }
        }
    }

    fn push_text(&mut self, bytes: Bytes, protocol: Protocol) -> Result<(), DecodeError> {
        self.check_room()?;
        let text = Utf8Bytes::try_from_bytes(bytes).map_err(|_| DecodeError::InvalidUtf8)?;
        self.packets.push(Packet::decode_text(text, protocol)?);
        Ok(())
    }

    fn check_room(&self) -> Result<(), DecodeError> {
        if self.packets.len() >= MAX_PACKETS_PER_PAYLOAD {
            return Err(DecodeError::TooManyPackets);
        }
        Ok(())
    }
}

/// `value * 10 + digit`, or [`DecodeError::InvalidLength`] when it overflows (no body is that
/// long, so such a prefix is garbage).
fn push_digit(value: usize, digit: u8) -> Result<usize, DecodeError> {
    value
        .checked_mul(10)
        .and_then(|v| v.checked_add(usize::from(digit)))
        .ok_or(DecodeError::InvalidLength)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Utf8Bytes;
    use crate::engine::packet::Message;

    #[test]
    fn a_v4_body_joins_its_packets_with_separators() {
        let packets = [
            Packet::Message(Message::Text(Utf8Bytes::from("hello"))),
            Packet::Message(Message::Binary(Bytes::from_static(b"\x01\x02\x03\x04"))),
            Packet::Ping(Utf8Bytes::new()),
        ];
        let encoded = encode_payload(&packets, Protocol::V4, false);
        assert_eq!(&encoded.body[..], b"4hello\x1ebAQIDBA==\x1e2");
        assert_eq!(encode_payload(&[], Protocol::V4, false).body.len(), 0);
    }
}
