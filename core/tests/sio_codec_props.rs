//! Properties of the Socket.IO codec: arbitrary packets survive encode → decode (attachments
//! included), and arbitrary input is either decoded or rejected with a `SioDecodeError`,
//! never a panic; what decodes re-encodes to itself.

use proptest::prelude::*;
use serde_json::{Map, Value};
use volley_core::socketio::packet::{
    DEFAULT_MAX_ATTACHMENTS, Decoder, MAX_ACK_ID, Packet, PacketType, SioProtocol,
};
use volley_core::{Bytes, Utf8Bytes};

const RESERVED: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        "[a-z\"\\\\\n\u{1}é😀 ]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{0,4}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn placeholder(i: usize) -> Value {
    serde_json::json!({"_placeholder": true, "num": i})
}

/// A JSON array text of arguments; with `n` attachments, placeholders for each of them are
/// mixed in (some nested).
fn arb_args(n: usize) -> impl Strategy<Value = String> {
    (prop::collection::vec(arb_json(), 0..4), any::<bool>()).prop_map(move |(mut args, nest)| {
        for i in 0..n {
            let p = placeholder(i);
            let p = if nest && i % 2 == 1 {
                serde_json::json!({"deep": [p]})
            } else {
                p
            };
            let at = (i * 7) % (args.len() + 1);
            args.insert(at, p);
        }
        Value::Array(args).to_string()
    })
}

fn arb_nsp() -> impl Strategy<Value = String> {
    prop_oneof![Just("/".to_owned()), "/[a-zA-Z0-9_/é.-]{0,8}"]
}

fn arb_id() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        Just(None),
        (0..=MAX_ACK_ID).prop_map(Some),
        (0u64..1000).prop_map(Some)
    ]
}

fn arb_attachments() -> impl Strategy<Value = Vec<Bytes>> {
    prop::collection::vec(
        prop::collection::vec(any::<u8>(), 0..8).prop_map(Bytes::from),
        0..4,
    )
}

fn arb_object() -> impl Strategy<Value = String> {
    prop::collection::vec(("[a-z_]{0,4}", arb_json()), 0..3)
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()).to_string())
}

fn arb_packet(protocol: SioProtocol) -> impl Strategy<Value = Packet> {
    let v5 = protocol == SioProtocol::V5;
    let connect = (
        arb_nsp(),
        arb_id(),
        prop::option::of(arb_object()),
        prop::option::of("[a-z0-9=&%]{0,10}"),
    )
        .prop_map(move |(nsp, id, data, query)| {
            let mut p = Packet::connect(&nsp, if v5 { data.map(Utf8Bytes::from) } else { None });
            p.id = id;
            p.query = if v5 { None } else { query.map(Utf8Bytes::from) };
            p
        });
    let disconnect = (arb_nsp(), arb_id()).prop_map(|(nsp, id)| {
        let mut p = Packet::disconnect(&nsp);
        p.id = id;
        p
    });
    let name = any::<String>().prop_filter("reserved", |n| !RESERVED.contains(&n.as_str()));
    let event =
        (arb_nsp(), name, arb_id(), arb_attachments()).prop_flat_map(|(nsp, name, id, atts)| {
            arb_args(atts.len())
                .prop_map(move |args| Packet::event(&nsp, &name, &args, id, atts.clone()))
        });
    let numeric_event =
        (arb_nsp(), any::<i32>(), arb_id(), arb_args(0)).prop_map(|(nsp, name, id, args)| {
            let rest = args.strip_prefix('[').unwrap_or("]");
            let sep = if rest == "]" { "" } else { "," };
            let mut p = Packet::event(&nsp, "x", "[]", id, vec![]);
            p.data = Some(Utf8Bytes::from(format!("[{name}{sep}{rest}")));
            p
        });
    let ack = (arb_nsp(), 0..=MAX_ACK_ID, arb_attachments()).prop_flat_map(|(nsp, id, atts)| {
        arb_args(atts.len())
            .prop_map(move |args| Packet::ack(&nsp, id, Utf8Bytes::from(args), atts.clone()))
    });
    let message = any::<String>().prop_map(|m| Value::String(m).to_string());
    let error_data = if v5 {
        prop_oneof![
            message.clone(),
            any::<String>().prop_map(|m| serde_json::json!({ "message": m }).to_string()),
            arb_object(),
        ]
        .boxed()
    } else {
        message.boxed()
    };
    let connect_error = (arb_nsp(), arb_id(), error_data).prop_map(|(nsp, id, data)| {
        let mut p = Packet::connect_error(&nsp, Utf8Bytes::from(data));
        p.id = id;
        p
    });
    prop_oneof![
        connect,
        disconnect,
        event,
        numeric_event,
        ack,
        connect_error
    ]
}

/// Feeds an encoded packet (text then attachments) to a fresh decoder.
fn round_trip(protocol: SioProtocol, text: Utf8Bytes, atts: Vec<Bytes>) -> Result<Packet, String> {
    let mut d = Decoder::new(protocol, DEFAULT_MAX_ATTACHMENTS);
    let mut out = d.decode_text(text).map_err(|e| e.to_string())?;
    for (i, a) in atts.iter().enumerate() {
        if out.is_some() {
            return Err(format!("complete before attachment {i}"));
        }
        out = d.decode_binary(a.clone()).map_err(|e| e.to_string())?;
    }
    if d.is_waiting() {
        return Err("still waiting".into());
    }
    out.ok_or_else(|| "no packet".into())
}

/// Text biased toward the characters the grammar cares about.
fn arb_wire_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        "[0-9]",
        Just("-".to_owned()),
        Just("/".to_owned()),
        Just(",".to_owned()),
        Just("?".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("\"".to_owned()),
        Just(":".to_owned()),
        Just("\"_placeholder\":true".to_owned()),
        Just("\"num\":".to_owned()),
        Just("\"connect\"".to_owned()),
        Just("\"a\"".to_owned()),
        Just("null".to_owned()),
        Just(" ".to_owned()),
        Just("\\".to_owned()),
        any::<char>().prop_map(String::from),
    ];
    prop::collection::vec(token, 0..24).prop_map(|t| t.concat())
}

/// Packet-shaped text: a plausible header (type, count, namespace, id) before a body that is
/// valid JSON, an event with placeholders, or token soup, so most inputs get past the header.
fn arb_packet_text() -> impl Strategy<Value = String> {
    let header = (
        "[0-7]",
        prop::option::of("[0-9]{0,2}-"),
        prop::option::of("/[a-z?=]{0,4},?"),
        prop::option::of("[0-9]{1,3}"),
    )
        .prop_map(|(t, n, nsp, id)| {
            format!(
                "{t}{}{}{}",
                n.unwrap_or_default(),
                nsp.unwrap_or_default(),
                id.unwrap_or_default()
            )
        });
    let body = prop_oneof![
        arb_json().prop_map(|v| v.to_string()),
        (
            0usize..4,
            prop_oneof![Just("\"e\""), Just("\"connect\""), Just("7"), Just("null")]
        )
            .prop_flat_map(|(n, name)| arb_args(n).prop_map(move |a| {
                let rest = a.strip_prefix('[').unwrap_or("]");
                let sep = if rest == "]" { "" } else { "," };
                format!("[{name}{sep}{rest}")
            })),
        arb_wire_text(),
        Just(String::new()),
    ];
    (header, body).prop_map(|(h, b)| h + &b)
}

#[derive(Debug, Clone)]
enum Input {
    Text(String),
    Binary(Vec<u8>),
}

fn arb_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        4 => arb_packet_text().prop_map(Input::Text),
        1 => arb_wire_text().prop_map(Input::Text),
        1 => any::<String>().prop_map(Input::Text),
        2 => prop::collection::vec(any::<u8>(), 0..6).prop_map(Input::Binary),
    ]
}

fn arb_protocol() -> impl Strategy<Value = SioProtocol> {
    prop_oneof![Just(SioProtocol::V4), Just(SioProtocol::V5)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn v5_packets_round_trip(packet in arb_packet(SioProtocol::V5)) {
        let (text, atts) = packet.encode(SioProtocol::V5);
        prop_assert_eq!(atts.len(), packet.attachments.len());
        let mut into = String::new();
        packet.encode_text_into(SioProtocol::V5, &mut into);
        prop_assert_eq!(&*text, into.as_str());
        let back = round_trip(SioProtocol::V5, text.clone(), atts);
        prop_assert_eq!(back, Ok(packet), "wire text: {}", text);
    }

    #[test]
    fn v4_packets_round_trip(packet in arb_packet(SioProtocol::V4)) {
        let (text, atts) = packet.encode(SioProtocol::V4);
        let back = round_trip(SioProtocol::V4, text.clone(), atts);
        prop_assert_eq!(back, Ok(packet), "wire text: {}", text);
    }

    #[test]
    fn events_expose_name_and_args(
        name in any::<String>().prop_filter("reserved", |n| !RESERVED.contains(&n.as_str())),
        args in arb_args(0),
        id in arb_id(),
    ) {
        let (text, _) = Packet::event("/chat", &name, &args, id, vec![]).encode(SioProtocol::V5);
        let back = round_trip(SioProtocol::V5, text, vec![]).map_err(TestCaseError::fail)?;
        let got_name = back.event_name();
        prop_assert_eq!(got_name.as_deref(), Some(name.as_str()));
        let got_args = back.args();
        prop_assert_eq!(got_args.as_deref(), Some(args.as_str()));
    }

    #[test]
    fn arbitrary_input_never_panics(
        protocol in arb_protocol(),
        max in 0usize..4,
        inputs in prop::collection::vec(arb_input(), 1..8),
    ) {
        let mut d = Decoder::new(protocol, max);
        for input in inputs {
            let result = match input {
                Input::Text(t) => d.decode_text(Utf8Bytes::from(t)),
                Input::Binary(b) => d.decode_binary(Bytes::from(b)),
            };
            match result {
                Ok(Some(p)) => {
                    prop_assert!(!d.is_waiting());
                    prop_assert_eq!(d.buffered_bytes(), 0);
                    check_decoded(&p, protocol)?;
                }
                Ok(None) => prop_assert!(d.is_waiting()),
                Err(e) => {
                    prop_assert!(!d.is_waiting());
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }
    }

    #[test]
    fn arbitrary_text_decodes_or_fails_typed(protocol in arb_protocol(), text in any::<String>()) {
        let mut d = Decoder::new(protocol, DEFAULT_MAX_ATTACHMENTS);
        if let Ok(Some(p)) = d.decode_text(Utf8Bytes::from(text)) {
            check_decoded(&p, protocol)?;
        }
    }
}

/// What holds for every decoded packet: event accessors agree with the data, and (V5) the
/// packet re-encodes to text that decodes to the same packet.
fn check_decoded(p: &Packet, protocol: SioProtocol) -> Result<(), TestCaseError> {
    if matches!(p.kind, PacketType::Event | PacketType::BinaryEvent) {
        let name = p.event_name();
        prop_assert!(name.is_some());
        let args = p.args();
        let args = args.as_deref().unwrap_or("not an array");
        let all: Vec<serde::de::IgnoredAny> = serde_json::from_str(p.data.as_deref().unwrap_or(""))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let rest: Vec<serde::de::IgnoredAny> =
            serde_json::from_str(args).map_err(|e| TestCaseError::fail(format!("{args}: {e}")))?;
        prop_assert_eq!(rest.len() + 1, all.len());
    }
    if protocol == SioProtocol::V5 {
        let (text, atts) = p.encode(SioProtocol::V5);
        let back = round_trip(SioProtocol::V5, text, atts);
        prop_assert_eq!(back.as_ref(), Ok(p));
    }
    Ok(())
}
