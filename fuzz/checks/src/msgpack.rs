//! The MessagePack parser.
//!
//! # `sio_msgpack`
//! The input is one binary Engine.IO message for a server speaking `socket.io-msgpack-parser`.
//! An optional first byte `0xC1` (never valid MessagePack, so never the start of a packet) is
//! followed by the attachment limit, else the default of 10 applies.
//!
//! Invariants:
//! - the message gives a packet or an `SioDecodeError`, never a panic, however its lengths
//!   and nesting lie;
//! - a packet has a non-empty namespace, at most the limit of attachments, and the
//!   binary type exactly when it has attachments; its data is JSON whose placeholders refer
//!   to existing attachments; an event has a name;
//! - the packet encodes to one message that decodes to the same packet, up to what the JSON
//!   form cannot tell apart: a placeholder and the attachment it refers to are one value, and
//!   an integral float is an integer.

use bytes::Bytes;
use serde_json::Value;
use volley_core::socketio::decoder::DEFAULT_MAX_ATTACHMENTS;
use volley_core::socketio::msgpack::{decode, encode};
use volley_core::socketio::{Packet, PacketType};

/// Checks one MessagePack message (see the module documentation).
pub fn sio_msgpack(data: &[u8]) {
    let (max, message) = match data {
        [0xc1, max, rest @ ..] => (usize::from(*max), rest),
        _ => (DEFAULT_MAX_ATTACHMENTS, data),
    };
    let packet = match decode(message, max) {
        Ok(packet) => packet,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    // Any string is a namespace here (one without `/` names none and is refused later, as
    // the reference does); only the empty one is read as `/`.
    assert!(!packet.nsp.is_empty(), "empty namespace");
    assert!(
        packet.attachments.len() <= max,
        "more attachments than the limit"
    );
    assert_eq!(packet.kind.is_binary(), !packet.attachments.is_empty());
    assert!(packet.query.is_none());
    if matches!(packet.kind, PacketType::Event | PacketType::BinaryEvent) {
        assert!(
            packet.event_name().is_some(),
            "event without a name: {packet:?}"
        );
    }
    let first = resolved(&packet);

    let bytes = encode(&packet);
    let back = decode(&bytes, usize::MAX)
        .unwrap_or_else(|e| panic!("re-encoded {packet:?} does not decode: {e}"));
    assert_eq!(
        (
            back.kind.is_binary() || packet.kind.is_binary(),
            &back.nsp,
            back.id
        ),
        (packet.kind.is_binary(), &packet.nsp, packet.id),
        "re-encoded as {bytes:?}"
    );
    assert_eq!(resolved(&back), first, "re-encoded as {bytes:?}");
}

/// The packet's data as a JSON value with placeholders replaced by their bytes (as an array
/// tagged `"<bin>"`) and integral floats made integers; `None` without data.
fn resolved(p: &Packet) -> Option<Value> {
    let data = p.data.as_deref()?;
    let value: Value =
        serde_json::from_str(data).unwrap_or_else(|e| panic!("data {data:?} is not JSON: {e}"));
    Some(resolve(value, &p.attachments))
}

fn resolve(v: Value, attachments: &[Bytes]) -> Value {
    match v {
        Value::Object(map) => {
            let num = (map.len() == 2 && map.get("_placeholder") == Some(&Value::Bool(true)))
                .then(|| map.get("num").and_then(Value::as_u64))
                .flatten();
            if let Some(num) = num {
                let bin = usize::try_from(num)
                    .ok()
                    .and_then(|i| attachments.get(i))
                    .unwrap_or_else(|| {
                        panic!("placeholder {num} of {} attachments", attachments.len())
                    });
                return Value::Array(vec![Value::from("<bin>"), Value::from(bin.to_vec())]);
            }
            Value::Object(
                map.into_iter()
                    .map(|(k, v)| (k, resolve(v, attachments)))
                    .collect(),
            )
        }
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| resolve(v, attachments)).collect())
        }
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        other => other,
    }
}
