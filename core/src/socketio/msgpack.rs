//! The MessagePack parser (`socket.io-msgpack-parser`): every Socket.IO packet is one binary
//! Engine.IO message holding a MessagePack map `{type, data, nsp, id}`, binary values inline.
//!
//! Inside, a packet keeps the form the rest of the core works with: [`Packet::data`] is JSON
//! text and binary values are attachments referred to by `{"_placeholder":true,"num":i}`.
//! [`decode`] turns a MessagePack packet into that form, [`encode`] turns it back, so
//! handlers, rooms, acks, recovery and clustering do not know which parser a client speaks.
//!
//! The values, as the client's encoder (notepack) writes and reads them:
//!
//! | MessagePack | JSON inside |
//! |---|---|
//! | nil, booleans, strings, arrays, maps | the same |
//! | integers, floats | numbers (`NaN` and infinities become `null`, as `JSON.stringify`) |
//! | bin, ext type 0 (an `ArrayBuffer`) | an attachment |
//! | fixext 1 type 0 (`undefined`) | `null` in an array, left out of a map or of `data` |
//! | fixext 8 type 0 (a `Date`) | its ISO 8601 string, as `Date#toJSON` |
//! | any other ext | `[type, <attachment>]`, as notepack decodes it |
//! | map keys that are integers, booleans or nil | their decimal or literal text |
//!
//! Written back, integral numbers use the smallest integer encoding, other numbers float 64,
//! and attachments bin, as notepack does for a Node `Buffer`.
//!
//! Validity follows the reference parser: a map whose `type` is an integer 0..=4 (the binary
//! types 5 and 6 do not exist here), `nsp` a string, `id` absent or an integer, and `data` of
//! the shape the type requires; on top of that the rules of the text decoder apply (event
//! names, reserved names, the ack id range, the attachment cap, binary values in events and
//! acks only). One difference: an object in the data that looks exactly like a placeholder
//! is read as one.

use super::decoder::{MAX_ACK_ID, check_payload};
use super::packet::{Packet, PacketType, SioDecodeError, write_json_string};
use crate::utf8::Utf8Bytes;
use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;
use std::fmt::Write as _;

/// How deep arrays and maps may nest in received data: what `serde_json` parses by default,
/// so that whatever is decoded can be read as JSON by the layers above.
const MAX_DEPTH: usize = 127;

/// How a server encodes and decodes Socket.IO packets. One parser serves every connection, as
/// in the reference server, whose clients must all use the same one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Parser {
    /// The default: text packets, binary attachments in separate messages.
    #[default]
    Default,
    /// `socket.io-msgpack-parser`: one binary MessagePack message per packet.
    MsgPack,
}

/// Decodes one MessagePack packet. Its attachments are the binary values found in `data`, in
/// the order they appear; more than `max_attachments` is [`SioDecodeError::TooManyAttachments`].
pub fn decode(message: &[u8], max_attachments: usize) -> Result<Packet, SioDecodeError> {
    let mut r = Reader {
        bytes: message,
        at: 0,
    };
    let entries = match r.byte()? {
        b @ 0x80..=0x8f => usize::from(b & 0x0f),
        0xde => r.len(2)?,
        0xdf => r.len(4)?,
        _ => return Err(SioDecodeError::InvalidPayload),
    };
    let mut kind = None;
    let mut nsp = None;
    let mut id = None;
    let mut data = None;
    for _ in 0..entries {
        let key = r.key_text()?;
        let start = r.at;
        match key.as_str() {
            "type" => kind = Some(r.integer()?),
            "nsp" => nsp = Some(r.string()?),
            "id" => id = r.integer_or_undefined()?,
            "data" => {
                r.skip(0)?;
                data = Some(start..r.at);
            }
            _ => r.skip(0)?,
        }
    }
    if r.at != message.len() {
        return Err(SioDecodeError::InvalidPayload);
    }
    let kind = match kind {
        Some(Some(0)) => PacketType::Connect,
        Some(Some(1)) => PacketType::Disconnect,
        Some(Some(2)) => PacketType::Event,
        Some(Some(3)) => PacketType::Ack,
        Some(Some(4)) => PacketType::ConnectError,
        _ => return Err(SioDecodeError::InvalidPayload),
    };
    let nsp = nsp.ok_or(SioDecodeError::InvalidPayload)?;
    let id = match id {
        None => None,
        Some(Some(n)) if n <= MAX_ACK_ID as i128 && n >= 0 => Some(n as u64),
        Some(_) => return Err(SioDecodeError::InvalidAckId),
    };

    let mut json = String::new();
    let mut attachments = Vec::new();
    if let Some(span) = data {
        let mut r = Reader {
            bytes: &message[span],
            at: 0,
        };
        let mut w = JsonWriter {
            out: &mut json,
            attachments: &mut attachments,
            max_attachments,
        };
        w.value(&mut r, 0)?;
    }
    // `undefined` data is no data.
    let data = (!json.is_empty()).then_some(json);
    let top_ok = matches!(
        (kind, data.as_deref().and_then(|d| d.bytes().next())),
        (PacketType::Connect, None | Some(b'{'))
            | (PacketType::Disconnect, None)
            | (PacketType::ConnectError, Some(b'{' | b'"'))
            | (PacketType::Event | PacketType::Ack, Some(b'['))
    );
    if !top_ok {
        return Err(SioDecodeError::InvalidPayload);
    }
    let kind = match kind {
        PacketType::Event if !attachments.is_empty() => PacketType::BinaryEvent,
        PacketType::Ack if !attachments.is_empty() => PacketType::BinaryAck,
        // Binary values exist only in events and acks (as with the text parser), never in
        // auth or error data.
        _ if !attachments.is_empty() => return Err(SioDecodeError::InvalidPayload),
        other => other,
    };
    if let Some(d) = &data {
        let count = kind.is_binary().then_some(attachments.len() as u64);
        check_payload(kind, d, count)?;
    }
    Ok(Packet {
        kind,
        nsp: if nsp.is_empty() {
            Utf8Bytes::from_static("/")
        } else {
            Utf8Bytes::from(nsp)
        },
        query: None,
        id,
        data: data.map(Utf8Bytes::from),
        attachments,
    })
}

/// Encodes `packet` as one MessagePack message: `{type, data, nsp, id}`, with `data` left out
/// when the packet has none and `id` when it has no ack id. Binary packets are written with
/// the EVENT and ACK types, their placeholders replaced by the attachments.
pub fn encode(packet: &Packet) -> Bytes {
    let data = packet.data.as_deref().and_then(parse_unbounded);
    let kind = match packet.kind {
        PacketType::BinaryEvent => PacketType::Event,
        PacketType::BinaryAck => PacketType::Ack,
        other => other,
    };
    let entries = 2 + usize::from(data.is_some()) + usize::from(packet.id.is_some());
    let mut out = BytesMut::with_capacity(
        packet.data.as_ref().map_or(0, |d| d.len())
            + packet.attachments.iter().map(Bytes::len).sum::<usize>()
            + packet.nsp.len()
            + 32,
    );
    out.put_u8(0x80 | entries as u8);
    write_str(&mut out, "type");
    write_int(&mut out, kind as i128);
    if let Some(data) = &data {
        write_str(&mut out, "data");
        write_value(&mut out, data, &packet.attachments);
    }
    write_str(&mut out, "nsp");
    write_str(
        &mut out,
        if packet.nsp.is_empty() {
            "/"
        } else {
            &packet.nsp
        },
    );
    if let Some(id) = packet.id {
        write_str(&mut out, "id");
        write_int(&mut out, i128::from(id));
    }
    out.freeze()
}

/// JSON text to a value, however deep: the data of packets the server itself built, which may
/// nest deeper than what a peer is allowed to send.
fn parse_unbounded(json: &str) -> Option<Value> {
    use serde::Deserialize;
    let mut de = serde_json::Deserializer::from_str(json);
    de.disable_recursion_limit();
    let value = Value::deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(value)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

const BAD: SioDecodeError = SioDecodeError::InvalidPayload;

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, SioDecodeError> {
        let b = *self.bytes.get(self.at).ok_or(BAD)?;
        self.at += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], SioDecodeError> {
        let end = self.at.checked_add(n).ok_or(BAD)?;
        let s = self.bytes.get(self.at..end).ok_or(BAD)?;
        self.at = end;
        Ok(s)
    }

    /// A big-endian unsigned length of `n` bytes.
    fn len(&mut self, n: usize) -> Result<usize, SioDecodeError> {
        let v = self
            .take(n)?
            .iter()
            .fold(0u64, |v, &b| v << 8 | u64::from(b));
        usize::try_from(v).map_err(|_| BAD)
    }

    fn uint(&mut self, n: usize) -> Result<u64, SioDecodeError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |v, &b| v << 8 | u64::from(b)))
    }

    fn int(&mut self, n: usize) -> Result<i64, SioDecodeError> {
        let u = self.uint(n)?;
        let shift = 64 - 8 * n as u32;
        Ok(((u << shift) as i64) >> shift)
    }

    /// A number that must be an integer (a float with no fraction counts, as `Number.isInteger`);
    /// `None` for any other number. Not a number at all is an error.
    fn integer(&mut self) -> Result<Option<i128>, SioDecodeError> {
        Ok(match self.scalar()? {
            Scalar::Int(n) => Some(n),
            Scalar::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 2f64.powi(64) => {
                Some(f as i128)
            }
            Scalar::Float(_) => None,
            _ => return Err(BAD),
        })
    }

    /// `id`: an integer, or `undefined` (absent).
    fn integer_or_undefined(&mut self) -> Result<Option<Option<i128>>, SioDecodeError> {
        if self.bytes.get(self.at..self.at + 3) == Some(&[0xd4, 0, 0]) {
            self.at += 3;
            return Ok(None);
        }
        match self.integer()? {
            Some(n) => Ok(Some(Some(n))),
            None => Err(SioDecodeError::InvalidAckId),
        }
    }

    fn string(&mut self) -> Result<String, SioDecodeError> {
        let n = match self.byte()? {
            b @ 0xa0..=0xbf => usize::from(b & 0x1f),
            0xd9 => self.len(1)?,
            0xda => self.len(2)?,
            0xdb => self.len(4)?,
            _ => return Err(BAD),
        };
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }

    /// A map key as JavaScript makes it a property name.
    fn key_text(&mut self) -> Result<String, SioDecodeError> {
        let b = *self.bytes.get(self.at).ok_or(BAD)?;
        if matches!(b, 0xa0..=0xbf | 0xd9..=0xdb) {
            return self.string();
        }
        Ok(match self.scalar()? {
            Scalar::Int(n) => n.to_string(),
            Scalar::Nil => "null".to_owned(),
            Scalar::Bool(v) => v.to_string(),
            _ => return Err(BAD),
        })
    }

    /// Integers, floats, nil and booleans; anything else is an error.
    fn scalar(&mut self) -> Result<Scalar, SioDecodeError> {
        Ok(match self.byte()? {
            b @ 0x00..=0x7f => Scalar::Int(i128::from(b)),
            b @ 0xe0..=0xff => Scalar::Int(i128::from(b as i8)),
            0xc0 => Scalar::Nil,
            0xc2 => Scalar::Bool(false),
            0xc3 => Scalar::Bool(true),
            0xca => {
                let bits = self.uint(4)? as u32;
                Scalar::Float(f64::from(f32::from_bits(bits)))
            }
            0xcb => Scalar::Float(f64::from_bits(self.uint(8)?)),
            0xcc => Scalar::Int(i128::from(self.uint(1)?)),
            0xcd => Scalar::Int(i128::from(self.uint(2)?)),
            0xce => Scalar::Int(i128::from(self.uint(4)?)),
            0xcf => Scalar::Int(i128::from(self.uint(8)?)),
            0xd0 => Scalar::Int(i128::from(self.int(1)?)),
            0xd1 => Scalar::Int(i128::from(self.int(2)?)),
            0xd2 => Scalar::Int(i128::from(self.int(4)?)),
            0xd3 => Scalar::Int(i128::from(self.int(8)?)),
            _ => return Err(BAD),
        })
    }

    /// Skips one value, checking its structure and depth.
    fn skip(&mut self, depth: usize) -> Result<(), SioDecodeError> {
        if depth > MAX_DEPTH {
            return Err(BAD);
        }
        let b = *self.bytes.get(self.at).ok_or(BAD)?;
        let (items, pairs) = match b {
            0x80..=0x8f => (usize::from(b & 0x0f), true),
            0x90..=0x9f => (usize::from(b & 0x0f), false),
            0xdc => {
                self.at += 1;
                (self.len(2)?, false)
            }
            0xdd => {
                self.at += 1;
                (self.len(4)?, false)
            }
            0xde => {
                self.at += 1;
                (self.len(2)?, true)
            }
            0xdf => {
                self.at += 1;
                (self.len(4)?, true)
            }
            0xa0..=0xbf | 0xd9..=0xdb => return self.string().map(drop),
            _ => {
                return match self.opaque()? {
                    Some(_) => Ok(()),
                    None => self.scalar().map(drop),
                };
            }
        };
        if b <= 0x9f {
            self.at += 1;
        }
        for _ in 0..items * (1 + usize::from(pairs)) {
            self.skip(depth + 1)?;
        }
        Ok(())
    }

    /// bin and ext values (`None` when the next value is neither; nothing is consumed then).
    fn opaque(&mut self) -> Result<Option<Opaque<'a>>, SioDecodeError> {
        let b = *self.bytes.get(self.at).ok_or(BAD)?;
        let (header, ext): (usize, Option<usize>) = match b {
            0xc4 => (1, None),
            0xc5 => (2, None),
            0xc6 => (4, None),
            0xc7 => (1, Some(0)),
            0xc8 => (2, Some(0)),
            0xc9 => (4, Some(0)),
            0xd4 => (0, Some(1)),
            0xd5 => (0, Some(2)),
            0xd6 => (0, Some(4)),
            0xd7 => (0, Some(8)),
            0xd8 => (0, Some(16)),
            _ => return Ok(None),
        };
        self.at += 1;
        let len = if header > 0 {
            self.len(header)?
        } else {
            ext.unwrap_or(0)
        };
        Ok(Some(match ext {
            None => Opaque::Bin(self.take(len)?),
            Some(_) => {
                let kind = self.byte()? as i8;
                Opaque::Ext {
                    kind,
                    fixed: header == 0,
                    data: self.take(len)?,
                }
            }
        }))
    }
}

enum Scalar {
    Nil,
    Bool(bool),
    Int(i128),
    Float(f64),
}

enum Opaque<'a> {
    Bin(&'a [u8]),
    Ext {
        kind: i8,
        fixed: bool,
        data: &'a [u8],
    },
}

/// Writes MessagePack values as JSON text, binary values as placeholders.
struct JsonWriter<'o> {
    out: &'o mut String,
    attachments: &'o mut Vec<Bytes>,
    max_attachments: usize,
}

impl JsonWriter<'_> {
    /// Writes one value; returns false (writing nothing) for `undefined`.
    fn value(&mut self, r: &mut Reader<'_>, depth: usize) -> Result<bool, SioDecodeError> {
        let b = *r.bytes.get(r.at).ok_or(BAD)?;
        let container = matches!(b, 0x80..=0x9f | 0xdc..=0xdf);
        if container && depth >= MAX_DEPTH {
            return Err(BAD);
        }
        match b {
            0x90..=0x9f | 0xdc | 0xdd => {
                r.at += 1;
                let n = match b {
                    0xdc => r.len(2)?,
                    0xdd => r.len(4)?,
                    _ => usize::from(b & 0x0f),
                };
                self.out.push('[');
                for i in 0..n {
                    if i > 0 {
                        self.out.push(',');
                    }
                    if !self.value(r, depth + 1)? {
                        self.out.push_str("null");
                    }
                }
                self.out.push(']');
            }
            0x80..=0x8f | 0xde | 0xdf => {
                r.at += 1;
                let n = match b {
                    0xde => r.len(2)?,
                    0xdf => r.len(4)?,
                    _ => usize::from(b & 0x0f),
                };
                self.out.push('{');
                let mut first = true;
                for _ in 0..n {
                    let key = r.key_text()?;
                    let mark = self.out.len();
                    if !first {
                        self.out.push(',');
                    }
                    write_json_string(self.out, &key);
                    self.out.push(':');
                    if self.value(r, depth + 1)? {
                        first = false;
                    } else {
                        // An `undefined` property is not written.
                        self.out.truncate(mark);
                    }
                }
                self.out.push('}');
            }
            0xa0..=0xbf | 0xd9..=0xdb => {
                let s = r.string()?;
                write_json_string(self.out, &s);
            }
            _ => match r.opaque()? {
                Some(Opaque::Bin(data)) => self.attachment(data)?,
                Some(Opaque::Ext {
                    kind: 0,
                    fixed,
                    data,
                }) => match (fixed, data.len()) {
                    (true, 1) => return Ok(false),
                    (true, 8) => {
                        let ms = i64::from_be_bytes(data.try_into().map_err(|_| BAD)?);
                        write_json_string(self.out, &iso_date(ms));
                    }
                    (true, _) => {
                        self.out.push_str("[0,");
                        self.attachment(data)?;
                        self.out.push(']');
                    }
                    (false, _) => self.attachment(data)?,
                },
                Some(Opaque::Ext { kind, data, .. }) => {
                    let _ = write!(self.out, "[{kind},");
                    self.attachment(data)?;
                    self.out.push(']');
                }
                None => match r.scalar()? {
                    Scalar::Nil => self.out.push_str("null"),
                    Scalar::Bool(v) => self.out.push_str(if v { "true" } else { "false" }),
                    Scalar::Int(n) => {
                        let _ = write!(self.out, "{n}");
                    }
                    Scalar::Float(f) => match serde_json::Number::from_f64(f) {
                        Some(n) => {
                            let _ = write!(self.out, "{n}");
                        }
                        None => self.out.push_str("null"),
                    },
                },
            },
        }
        Ok(true)
    }

    fn attachment(&mut self, data: &[u8]) -> Result<(), SioDecodeError> {
        if self.attachments.len() >= self.max_attachments {
            return Err(SioDecodeError::TooManyAttachments);
        }
        let _ = write!(
            self.out,
            "{{\"_placeholder\":true,\"num\":{}}}",
            self.attachments.len()
        );
        self.attachments.push(Bytes::copy_from_slice(data));
        Ok(())
    }
}

/// `Date#toJSON` for `ms` milliseconds since the epoch: `YYYY-MM-DDTHH:MM:SS.mmmZ`, with a
/// signed six-digit year outside 0..=9999.
fn iso_date(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Days to a civil date (proleptic Gregorian), counting eras of 400 years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{}{:06}", if year < 0 { '-' } else { '+' }, year.abs())
    };
    format!(
        "{year}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

fn write_len(out: &mut BytesMut, len: usize, fix: Option<(u8, usize)>, tags: [u8; 3]) {
    match fix {
        Some((base, max)) if len < max => out.put_u8(base | len as u8),
        _ if len < 0x100 && tags[0] != 0 => {
            out.put_u8(tags[0]);
            out.put_u8(len as u8);
        }
        _ if len < 0x10000 => {
            out.put_u8(tags[1]);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(tags[2]);
            out.put_u32(len as u32);
        }
    }
}

fn write_str(out: &mut BytesMut, s: &str) {
    write_len(out, s.len(), Some((0xa0, 32)), [0xd9, 0xda, 0xdb]);
    out.put_slice(s.as_bytes());
}

fn write_int(out: &mut BytesMut, n: i128) {
    match n {
        0..=0x7f => out.put_u8(n as u8),
        -32..=-1 => out.put_i8(n as i8),
        0x80..=0xff => {
            out.put_u8(0xcc);
            out.put_u8(n as u8);
        }
        0x100..=0xffff => {
            out.put_u8(0xcd);
            out.put_u16(n as u16);
        }
        0x1_0000..=0xffff_ffff => {
            out.put_u8(0xce);
            out.put_u32(n as u32);
        }
        0x1_0000_0000..=0xffff_ffff_ffff_ffff => {
            out.put_u8(0xcf);
            out.put_u64(n as u64);
        }
        -0x80..=-33 => {
            out.put_u8(0xd0);
            out.put_i8(n as i8);
        }
        -0x8000..=-0x81 => {
            out.put_u8(0xd1);
            out.put_i16(n as i16);
        }
        -0x8000_0000..=-0x8001 => {
            out.put_u8(0xd2);
            out.put_i32(n as i32);
        }
        _ => {
            out.put_u8(0xd3);
            out.put_i64(n as i64);
        }
    }
}

/// The attachment a placeholder object refers to, if `map` is one.
fn placeholder<'b>(
    map: &serde_json::Map<String, Value>,
    attachments: &'b [Bytes],
) -> Option<&'b Bytes> {
    if map.len() != 2 || map.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    let num = map.get("num")?.as_u64()?;
    attachments.get(usize::try_from(num).ok()?)
}

fn write_value(out: &mut BytesMut, value: &Value, attachments: &[Bytes]) {
    match value {
        Value::Null => out.put_u8(0xc0),
        Value::Bool(v) => out.put_u8(if *v { 0xc3 } else { 0xc2 }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                write_int(out, i128::from(i));
            } else if let Some(u) = n.as_u64() {
                write_int(out, i128::from(u));
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.fract() == 0.0 && f.abs() < 2f64.powi(63) {
                    write_int(out, f as i128);
                } else {
                    out.put_u8(0xcb);
                    out.put_f64(f);
                }
            }
        }
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            write_len(out, items.len(), Some((0x90, 16)), [0, 0xdc, 0xdd]);
            for item in items {
                write_value(out, item, attachments);
            }
        }
        Value::Object(map) => {
            if let Some(data) = placeholder(map, attachments) {
                write_len(out, data.len(), None, [0xc4, 0xc5, 0xc6]);
                out.put_slice(data);
                return;
            }
            write_len(out, map.len(), Some((0x80, 16)), [0, 0xde, 0xdf]);
            for (key, item) in map {
                write_str(out, key);
                write_value(out, item, attachments);
            }
        }
    }
}
