//! Engine.IO codecs: packets, polling payloads, JSONP.
//!
//! # `eio_packet`
//! The input is one packet as a peer sends it: as a text packet (when it is UTF-8) and as a
//! binary frame, each in v3 and v4. Invariants:
//! - decoding gives a `Packet` or a `DecodeError` (with a message), never a panic;
//! - [`Packet::from_ws`] agrees with `decode_text` / `decode_binary`;
//! - a decoded packet re-encodes (text form and WebSocket form) to something that decodes to
//!   the same packet, and the text form is UTF-8;
//! - a text packet that carries its data (`0`, `2`, `3`, `4`) re-encodes to exactly the input;
//! - a binary frame is a message: all of it in v4, all but the `0x04` type byte in v3.
//!
//! # `eio_payload`
//! The input is one polling body, decoded in all three framings. Invariants:
//! - [`decode_payload`] gives packets or a `DecodeError`, never a panic;
//! - [`PayloadDecoder`] fed one byte at a time, and fed in an input-derived chunking, gives
//!   exactly the same packets or the same error (and repeats the error once failed);
//! - decoded packets re-encode with [`encode_payload`] (v3: string and XHR2 framings) to a
//!   body that decodes, in the framing the encoder reports, to the same packets.
//!
//! # `jsonp`
//! The input is a JSONP POST body. Invariants:
//! - [`jsonp::unwrap_post`] gives text or `InvalidJsonpBody` / `InvalidUtf8`, never a panic;
//! - text it returns, written back as a form body with a canonical escaping, unwraps to the
//!   same text (the decoder is consistent with some encoder);
//! - [`jsonp::wrap`] of any text is `___eio[<digits>](<literal>);` where the literal is a JSON
//!   string that parses back to the text, and the index keeps only digits.

use bytes::Bytes;
use volley_core::Utf8Bytes;
use volley_core::engine::jsonp;
use volley_core::engine::payload::{Framing, PayloadDecoder, decode_payload, encode_payload};
use volley_core::engine::{DecodeError, Message, Packet, Protocol, WsMessage};

use crate::util::{chunking, pieces};

const PROTOCOLS: [Protocol; 2] = [Protocol::V3, Protocol::V4];

/// Checks one Engine.IO packet, as text and as a binary frame, in v3 and v4 (see the module
/// documentation for the invariants).
pub fn eio_packet(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    for protocol in PROTOCOLS {
        if let Ok(text) = Utf8Bytes::try_from_bytes(bytes.clone()) {
            let decoded = Packet::decode_text(text.clone(), protocol);
            let via_ws = Packet::from_ws(WsMessage::Text(text), protocol);
            assert_eq!(decoded, via_ws, "from_ws(Text) disagrees with decode_text");
            match decoded {
                Ok(packet) => {
                    round_trip(&packet, protocol);
                    if carries_text(&packet) {
                        let mut out = Vec::new();
                        packet.encode_text(protocol, &mut out);
                        assert_eq!(out, data, "a text packet does not re-encode to its input");
                    }
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
        let decoded = Packet::decode_binary(bytes.clone(), protocol);
        let via_ws = Packet::from_ws(WsMessage::Binary(bytes.clone()), protocol);
        assert_eq!(
            decoded, via_ws,
            "from_ws(Binary) disagrees with decode_binary"
        );
        match (decoded, protocol) {
            (Ok(Packet::Message(Message::Binary(d))), Protocol::V4) => assert_eq!(d, bytes),
            (Ok(Packet::Message(Message::Binary(d))), Protocol::V3) => {
                assert_eq!(data.first(), Some(&4));
                assert_eq!(d, bytes.slice(1..));
            }
            (Ok(other), _) => panic!("a binary frame decoded to {other:?}"),
            (Err(e), Protocol::V4) => panic!("a v4 binary frame failed: {e}"),
            (Err(e), Protocol::V3) => {
                assert_ne!(data.first(), Some(&4), "a v3 binary message failed: {e}");
            }
        }
    }
}

/// Packets whose text form keeps every byte of the input.
fn carries_text(packet: &Packet) -> bool {
    matches!(
        packet,
        Packet::Open(_) | Packet::Ping(_) | Packet::Pong(_) | Packet::Message(Message::Text(_))
    )
}

/// The text and WebSocket forms of `packet` decode to `packet`.
fn round_trip(packet: &Packet, protocol: Protocol) {
    let mut out = Vec::new();
    packet.encode_text(protocol, &mut out);
    let text = Utf8Bytes::try_from_bytes(Bytes::from(out)).expect("text form is not UTF-8");
    let back = Packet::decode_text(text.clone(), protocol);
    assert_eq!(
        back.as_ref(),
        Ok(packet),
        "text form {text:?} does not round-trip"
    );
    let ws = packet.to_ws(protocol);
    let back = Packet::from_ws(ws.clone(), protocol);
    assert_eq!(
        back.as_ref(),
        Ok(packet),
        "WebSocket form {ws:?} does not round-trip"
    );
}

const FRAMINGS: [Framing; 3] = [Framing::V4, Framing::V3String, Framing::V3Binary];

/// Checks one polling body in the three framings (see the module documentation).
pub fn eio_payload(data: &[u8]) {
    for (salt, framing) in (1u64..).zip(FRAMINGS) {
        let whole = decode_payload(Bytes::copy_from_slice(data), framing);

        let one_by_one = incremental(data.chunks(1), framing);
        assert_eq!(
            one_by_one, whole,
            "{framing:?}: byte at a time differs from whole"
        );

        let lengths = chunking(data, salt, data.len());
        let chunked = incremental(pieces(data, &lengths).into_iter(), framing);
        assert_eq!(
            chunked, whole,
            "{framing:?}: chunking {lengths:?} differs from whole"
        );

        match whole {
            Ok(packets) => reencode(&packets, framing),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
}

/// Feeds `chunks` to a [`PayloadDecoder`]; once it fails, every later call must fail the same.
fn incremental<'a>(
    chunks: impl Iterator<Item = &'a [u8]>,
    framing: Framing,
) -> Result<Vec<Packet>, DecodeError> {
    let mut decoder = PayloadDecoder::new(framing);
    let mut failed = None;
    for chunk in chunks {
        let result = decoder.feed(chunk);
        match (&failed, result) {
            (None, Ok(())) => {}
            (None, Err(e)) => failed = Some(e),
            (Some(first), Ok(())) => panic!("{framing:?}: feed succeeded after {first:?}"),
            (Some(first), Err(e)) => assert_eq!(&e, first, "{framing:?}: error changed"),
        }
    }
    let finished = decoder.finish();
    if let Some(first) = failed {
        assert_eq!(
            finished.as_ref().err(),
            Some(&first),
            "finish forgot the error"
        );
    }
    finished
}

/// Decoded packets re-encode to a body that decodes to them again.
fn reencode(packets: &[Packet], framing: Framing) {
    let variants: &[(Protocol, bool)] = match framing {
        Framing::V4 => &[(Protocol::V4, false)],
        Framing::V3String | Framing::V3Binary => &[(Protocol::V3, false), (Protocol::V3, true)],
    };
    for &(protocol, xhr2) in variants {
        let encoded = encode_payload(packets, protocol, xhr2);
        let back_framing = match (protocol, encoded.binary) {
            (Protocol::V4, false) => Framing::V4,
            (Protocol::V3, false) => Framing::V3String,
            (Protocol::V3, true) => Framing::V3Binary,
            (Protocol::V4, true) => panic!("v4 encoded a binary payload"),
        };
        if xhr2 {
            assert_eq!(encoded.binary, packets.iter().any(Packet::is_binary));
        }
        let back = decode_payload(encoded.body.clone(), back_framing);
        assert_eq!(
            back.as_deref(),
            Ok(packets),
            "{framing:?} packets re-encoded as {back_framing:?} ({:?}) do not decode back",
            encoded.body
        );
    }
}

/// Checks one JSONP POST body, and `wrap` of the input as text (see the module documentation).
pub fn jsonp(data: &[u8]) {
    match jsonp::unwrap_post(data) {
        Ok(text) => {
            let body = form_body(&text);
            let back = jsonp::unwrap_post(body.as_bytes());
            assert_eq!(
                back.as_deref(),
                Ok(text.as_str()),
                "canonical body {body:?}"
            );
        }
        Err(e) => assert!(
            matches!(e, DecodeError::InvalidJsonpBody | DecodeError::InvalidUtf8),
            "unexpected error {e:?}"
        ),
    }
    let text = String::from_utf8_lossy(data);
    let split = data.iter().position(|&b| b == b'|').unwrap_or(0);
    let index = String::from_utf8_lossy(&data[..split]);
    check_wrap(&index, &text);
}

fn check_wrap(index: &str, text: &str) {
    let script = jsonp::wrap(index, text);
    let script = std::str::from_utf8(&script).expect("the script is not UTF-8");
    let digits: String = index.chars().filter(char::is_ascii_digit).collect();
    let prefix = format!("___eio[{digits}](");
    let literal = script
        .strip_prefix(&prefix)
        .and_then(|s| s.strip_suffix(");"))
        .unwrap_or_else(|| panic!("script {script:?} lacks the callback frame"));
    assert!(
        !literal.contains(['\u{2028}', '\u{2029}', '\n', '\r']),
        "raw line terminator in {literal:?}"
    );
    let back: String = serde_json::from_str(literal)
        .unwrap_or_else(|e| panic!("literal {literal:?} is not a JSON string: {e}"));
    assert_eq!(back, text);
}

/// `d=<text>` as a form body, escaped so that `unwrap_post` must give `text` back: a
/// backslash that starts `\n` is written `\\n`, every byte outside the unreserved set is
/// percent-encoded (newlines stay raw newlines, which the unescaping leaves alone).
fn form_body(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("\\n") {
            escaped.push_str("\\\\n");
            rest = after;
        } else {
            escaped.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    let mut body = String::from("d=");
    for b in escaped.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            body.push(char::from(b));
        } else {
            body.push_str(&format!("%{b:02X}"));
        }
    }
    body
}
