//! Socket.IO packets, with attachment reassembly.
//!
//! # `sio_packet`
//! The input is the sequence of Engine.IO messages one session receives, fed to one
//! [`Decoder`]. Its form keeps seed files readable: messages are separated by `0xFF` (never
//! part of UTF-8); a message that starts with `0xFE`, or is not UTF-8, is a binary message
//! (an attachment), any other a text message (a packet, without Engine.IO's `4`). An optional
//! first byte below `0x10` sets the decoder up: bit 0 selects protocol 4 (else 5), bits 1-3
//! the attachment limit (else protocol 5 with the default limit of 10).
//!
//! Invariants:
//! - every message gives a packet, "waiting for attachments", or an `SioDecodeError`, never a
//!   panic; `is_waiting` and `buffered_bytes` agree with that (waiting holds exactly the header
//!   and the attachments so far; an error leaves the decoder idle);
//! - a packet has at most the limit of attachments, exactly as many as its header announced;
//! - an event has a name and its `args` are the payload array without its first element;
//! - a packet re-encodes (text, then attachments) to messages a fresh decoder turns into the
//!   same packet; protocol 4 normalises two things on the way (a CONNECT loses its payload,
//!   a CONNECT_ERROR object becomes its message), so there the re-encoding must be stable.

use bytes::Bytes;
use serde::de::IgnoredAny;
use volley_core::Utf8Bytes;
use volley_core::socketio::decoder::{DEFAULT_MAX_ATTACHMENTS, Decoder};
use volley_core::socketio::{Packet, PacketType, SioProtocol};

/// One Engine.IO message, as the Socket.IO layer receives it.
#[derive(Debug, Clone)]
enum Input {
    Text(Utf8Bytes),
    Binary(Bytes),
}

/// Splits the input into the decoder's setup and its messages (see the module documentation).
fn parse(data: &[u8]) -> (SioProtocol, usize, Vec<Input>) {
    let (protocol, max, rest) = match data.split_first() {
        Some((&b, rest)) if b < 0x10 => {
            let protocol = if b & 1 == 1 {
                SioProtocol::V4
            } else {
                SioProtocol::V5
            };
            (protocol, usize::from(b >> 1), rest)
        }
        _ => (SioProtocol::V5, DEFAULT_MAX_ATTACHMENTS, data),
    };
    let inputs = rest
        .split(|&b| b == 0xff)
        .map(|m| match m.split_first() {
            Some((0xfe, bin)) => Input::Binary(Bytes::copy_from_slice(bin)),
            _ => match Utf8Bytes::try_from_bytes(Bytes::copy_from_slice(m)) {
                Ok(text) => Input::Text(text),
                Err(_) => Input::Binary(Bytes::copy_from_slice(m)),
            },
        })
        .collect();
    (protocol, max, inputs)
}

/// Checks a sequence of Socket.IO messages through one decoder (see the module documentation).
pub fn sio_packet(data: &[u8]) {
    let (protocol, max, inputs) = parse(data);
    let mut decoder = Decoder::new(protocol, max);
    assert_eq!(decoder.protocol(), protocol);
    let mut held = 0usize;
    for input in inputs {
        let was_waiting = decoder.is_waiting();
        let (len, result) = match input {
            Input::Text(t) => (t.len(), decoder.decode_text(t)),
            Input::Binary(b) => (b.len(), decoder.decode_binary(b)),
        };
        match result {
            Ok(Some(packet)) => {
                assert!(!decoder.is_waiting());
                assert_eq!(decoder.buffered_bytes(), 0);
                held = 0;
                check_packet(&packet, protocol, max);
            }
            Ok(None) => {
                assert!(decoder.is_waiting());
                held = if was_waiting { held + len } else { len };
                assert_eq!(decoder.buffered_bytes(), held);
            }
            Err(e) => {
                assert!(!decoder.is_waiting(), "waiting after {e:?}");
                assert_eq!(decoder.buffered_bytes(), 0);
                assert!(!e.to_string().is_empty());
                held = 0;
            }
        }
    }
}

fn check_packet(p: &Packet, protocol: SioProtocol, max: usize) {
    assert!(
        p.attachments.len() <= max,
        "more attachments than the limit"
    );
    assert_eq!(p.kind.is_binary(), !p.attachments.is_empty());
    assert!(p.nsp.starts_with('/'), "namespace {:?}", p.nsp);
    if protocol == SioProtocol::V5 || p.kind != PacketType::Connect {
        assert!(p.query.is_none());
    }
    if matches!(p.kind, PacketType::Event | PacketType::BinaryEvent) {
        assert!(p.event_name().is_some(), "event without a name: {p:?}");
        let data = p.data.as_deref().expect("an event without payload");
        let all: Vec<IgnoredAny> = serde_json::from_str(data).expect("payload is not an array");
        let args = p.args().expect("an event without args");
        let rest: Vec<IgnoredAny> = serde_json::from_str(&args)
            .unwrap_or_else(|e| panic!("args {args:?} are not an array: {e}"));
        assert_eq!(rest.len() + 1, all.len(), "args {args:?} of {data:?}");
    } else {
        assert!(p.event_name().is_none());
    }

    let (text, attachments) = p.encode(protocol);
    let mut into = String::new();
    p.encode_text_into(protocol, &mut into);
    assert_eq!(text.as_str(), into, "encode and encode_text_into differ");
    assert_eq!(attachments, p.attachments);
    let back = decode_all(protocol, max, text.clone(), &attachments)
        .unwrap_or_else(|e| panic!("re-encoded {text:?} does not decode: {e}"));
    if protocol == SioProtocol::V5 {
        assert_eq!(&back, p, "re-encoded as {text:?}");
        return;
    }
    assert_eq!(
        (
            back.kind,
            &back.nsp,
            &back.query,
            back.id,
            &back.attachments
        ),
        (p.kind, &p.nsp, &p.query, p.id, &p.attachments),
        "re-encoded as {text:?}"
    );
    if !matches!(p.kind, PacketType::Connect | PacketType::ConnectError) {
        assert_eq!(back.data, p.data, "re-encoded as {text:?}");
    }
    let (again, _) = back.encode(protocol);
    assert_eq!(again, text, "protocol 4 re-encoding is not stable");
}

/// A fresh decoder fed `text` then `attachments`: the packet, which must come with the last.
fn decode_all(
    protocol: SioProtocol,
    max: usize,
    text: Utf8Bytes,
    attachments: &[Bytes],
) -> Result<Packet, String> {
    let mut d = Decoder::new(protocol, max);
    let mut out = d.decode_text(text).map_err(|e| e.to_string())?;
    for (i, a) in attachments.iter().enumerate() {
        if out.is_some() {
            return Err(format!("complete before attachment {i}"));
        }
        out = d.decode_binary(a.clone()).map_err(|e| e.to_string())?;
    }
    out.ok_or_else(|| "still waiting after the last attachment".to_owned())
}
