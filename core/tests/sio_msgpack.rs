//! The MessagePack parser: the codec against bytes written as notepack (the encoder of
//! `socket.io-msgpack-parser`) writes them, and the server machine speaking it.

mod sio_common;

use proptest::prelude::*;
use sio_common::{C, Frame, Kind, SioPair, config, show};
use volley_core::Bytes;
use volley_core::engine::{Message, Packet as EioPacket};
use volley_core::socketio::msgpack::{decode, encode};
use volley_core::socketio::packet::SioDecodeError;
use volley_core::socketio::{BroadcastOptions, Event, Packet, PacketType, Parser, Server};

// ---- a test-side MessagePack writer, kept apart from the codec under test ----

fn fixstr(s: &str) -> Vec<u8> {
    assert!(s.len() < 32);
    let mut v = vec![0xa0 | s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

fn map(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut v = vec![0x80 | entries.len() as u8];
    for (k, val) in entries {
        v.extend(fixstr(k));
        v.extend_from_slice(val);
    }
    v
}

fn array(items: &[Vec<u8>]) -> Vec<u8> {
    let mut v = vec![0x90 | items.len() as u8];
    for item in items {
        v.extend_from_slice(item);
    }
    v
}

fn bin8(data: &[u8]) -> Vec<u8> {
    let mut v = vec![0xc4, data.len() as u8];
    v.extend_from_slice(data);
    v
}

fn f64v(f: f64) -> Vec<u8> {
    let mut v = vec![0xcb];
    v.extend_from_slice(&f.to_be_bytes());
    v
}

const UNDEFINED: [u8; 3] = [0xd4, 0, 0];

fn date(ms: i64) -> Vec<u8> {
    let mut v = vec![0xd7, 0];
    v.extend_from_slice(&ms.to_be_bytes());
    v
}

/// `{type, data, nsp[, id]}`, as the client's `Socket#emit` builds it (with its `options`).
fn event(data: Vec<u8>, id: Option<u8>) -> Vec<u8> {
    let mut entries = vec![
        ("type", vec![2]),
        ("data", data),
        ("options", map(&[("compress", vec![0xc3])])),
    ];
    if let Some(id) = id {
        entries.push(("id", vec![id]));
    }
    entries.push(("nsp", fixstr("/")));
    map(&entries)
}

fn text(p: &Packet) -> &str {
    p.data.as_deref().expect("data")
}

// ---- decoding ----

#[test]
fn an_event_with_every_scalar_type_and_an_ack_id() {
    let data = array(&[
        fixstr("hello"),
        vec![1],
        vec![0xfb],                         // -5
        vec![0xcd, 0x12, 0x34],             // 4660
        vec![0xd2, 0xff, 0xff, 0xff, 0x00], // -256
        f64v(1.5),
        vec![0xc0],
        vec![0xc3],
        map(&[("a", fixstr("b")), ("z", vec![0xc2])]),
    ]);
    let p = decode(&event(data, Some(7)), 10).unwrap();
    assert_eq!(p.kind, PacketType::Event);
    assert_eq!(&*p.nsp, "/");
    assert_eq!(p.id, Some(7));
    assert_eq!(
        text(&p),
        r#"["hello",1,-5,4660,-256,1.5,null,true,{"a":"b","z":false}]"#
    );
    assert!(p.attachments.is_empty());
}

#[test]
fn binary_values_become_attachments_in_order() {
    let data = array(&[
        fixstr("upload"),
        bin8(&[1, 2, 3]),
        map(&[("inner", bin8(&[9]))]),
        // An ArrayBuffer, as notepack writes one: ext type 0.
        vec![0xc7, 2, 0, 7, 8],
    ]);
    let p = decode(&event(data, None), 10).unwrap();
    assert_eq!(p.kind, PacketType::BinaryEvent);
    assert_eq!(
        text(&p),
        r#"["upload",{"_placeholder":true,"num":0},{"inner":{"_placeholder":true,"num":1}},{"_placeholder":true,"num":2}]"#
    );
    let got: Vec<&[u8]> = p.attachments.iter().map(|a| &a[..]).collect();
    assert_eq!(got, vec![&[1u8, 2, 3][..], &[9][..], &[7, 8][..]]);
}

#[test]
fn undefined_dates_and_other_extensions_read_as_javascript_would_stringify_them() {
    let data = array(&[
        fixstr("e"),
        UNDEFINED.to_vec(),
        map(&[("gone", UNDEFINED.to_vec()), ("kept", vec![1])]),
        date(0),
        date(1_700_000_000_123),
        date(-1),
        vec![0xd5, 5, 0xaa, 0xbb],
    ]);
    let p = decode(&event(data, None), 10).unwrap();
    assert_eq!(
        text(&p),
        r#"["e",null,{"kept":1},"1970-01-01T00:00:00.000Z","2023-11-14T22:13:20.123Z","1969-12-31T23:59:59.999Z",[5,{"_placeholder":true,"num":0}]]"#
    );
    assert_eq!(&p.attachments[0][..], &[0xaa, 0xbb]);
}

#[test]
fn connect_with_and_without_auth_and_an_undefined_id() {
    let p = decode(
        &map(&[
            ("type", vec![0]),
            ("nsp", fixstr("/admin")),
            ("data", map(&[("token", fixstr("t"))])),
        ]),
        10,
    )
    .unwrap();
    assert_eq!((p.kind, &*p.nsp), (PacketType::Connect, "/admin"));
    assert_eq!(text(&p), r#"{"token":"t"}"#);
    let p = decode(
        &map(&[
            ("type", vec![0]),
            ("data", UNDEFINED.to_vec()),
            ("nsp", fixstr("/")),
            ("id", UNDEFINED.to_vec()),
        ]),
        10,
    )
    .unwrap();
    assert_eq!(
        (p.kind, p.data.is_none(), p.id),
        (PacketType::Connect, true, None)
    );
}

#[test]
fn map_keys_that_are_not_strings_become_property_names() {
    let mut inner = vec![0x83];
    inner.extend([1, 0xa1, b'a']); // 1: "a"
    inner.extend([0xc0, 0xc3]); // null: true
    inner.extend([0xc3, 0xc2]); // true: false
    let p = decode(&event(array(&[fixstr("k"), inner]), None), 10).unwrap();
    assert_eq!(text(&p), r#"["k",{"1":"a","null":true,"true":false}]"#);
}

#[test]
fn invalid_packets_are_refused_with_a_typed_error() {
    let ok_data = array(&[fixstr("e")]);
    let cases: Vec<(&str, Vec<u8>, SioDecodeError)> = vec![
        (
            "not a map",
            array(&[vec![2]]),
            SioDecodeError::InvalidPayload,
        ),
        (
            "binary type 5",
            map(&[
                ("type", vec![5]),
                ("data", ok_data.clone()),
                ("nsp", fixstr("/")),
            ]),
            SioDecodeError::InvalidPayload,
        ),
        (
            "no namespace",
            map(&[("type", vec![2]), ("data", ok_data.clone())]),
            SioDecodeError::InvalidPayload,
        ),
        (
            "namespace not a string",
            map(&[
                ("type", vec![2]),
                ("data", ok_data.clone()),
                ("nsp", vec![1]),
            ]),
            SioDecodeError::InvalidPayload,
        ),
        (
            "event data not an array",
            map(&[
                ("type", vec![2]),
                ("data", fixstr("e")),
                ("nsp", fixstr("/")),
            ]),
            SioDecodeError::InvalidPayload,
        ),
        (
            "event without data",
            map(&[("type", vec![2]), ("nsp", fixstr("/"))]),
            SioDecodeError::InvalidPayload,
        ),
        (
            "reserved event name",
            event(array(&[fixstr("disconnect")]), None),
            SioDecodeError::ReservedEventName,
        ),
        (
            "empty event",
            event(array(&[]), None),
            SioDecodeError::InvalidPayload,
        ),
        (
            "disconnect with data",
            map(&[
                ("type", vec![1]),
                ("data", ok_data.clone()),
                ("nsp", fixstr("/")),
            ]),
            SioDecodeError::InvalidPayload,
        ),
        (
            "fractional id",
            map(&[
                ("type", vec![2]),
                ("data", ok_data.clone()),
                ("nsp", fixstr("/")),
                ("id", f64v(1.5)),
            ]),
            SioDecodeError::InvalidAckId,
        ),
        (
            "negative id",
            map(&[
                ("type", vec![2]),
                ("data", ok_data.clone()),
                ("nsp", fixstr("/")),
                ("id", vec![0xff]),
            ]),
            SioDecodeError::InvalidAckId,
        ),
        (
            "id above 2^53 - 1",
            map(&[
                ("type", vec![2]),
                ("data", ok_data.clone()),
                ("nsp", fixstr("/")),
                ("id", vec![0xcf, 0, 0x20, 0, 0, 0, 0, 0, 0]),
            ]),
            SioDecodeError::InvalidAckId,
        ),
        (
            "binary in connect auth",
            map(&[
                ("type", vec![0]),
                ("data", map(&[("k", bin8(&[1]))])),
                ("nsp", fixstr("/")),
            ]),
            SioDecodeError::InvalidPayload,
        ),
        (
            "eleven attachments",
            event(array(&[fixstr("e"), array(&vec![bin8(&[1]); 11])]), None),
            SioDecodeError::TooManyAttachments,
        ),
    ];
    for (what, bytes, want) in cases {
        assert_eq!(decode(&bytes, 10).err(), Some(want), "{what}");
    }
}

#[test]
fn truncated_padded_and_hostile_input_is_refused_without_allocating_what_it_claims() {
    let whole = event(array(&[fixstr("e"), bin8(&[1, 2, 3])]), Some(1));
    for cut in 0..whole.len() {
        assert!(decode(&whole[..cut], 10).is_err(), "cut at {cut}");
    }
    let mut padded = whole.clone();
    padded.push(0xc0);
    assert!(decode(&padded, 10).is_err(), "trailing bytes");
    // A map claiming 2^32 - 1 entries, a string claiming 4 GiB.
    assert!(decode(&[0xdf, 0xff, 0xff, 0xff, 0xff], 10).is_err());
    let mut huge = vec![0x81, 0xdb, 0xff, 0xff, 0xff, 0xff];
    huge.extend_from_slice(b"type");
    assert!(decode(&huge, 10).is_err());
    // Arrays nested 10,000 deep.
    let mut deep = vec![0x83];
    deep.extend(fixstr("type"));
    deep.push(2);
    deep.extend(fixstr("nsp"));
    deep.extend(fixstr("/"));
    deep.extend(fixstr("data"));
    deep.extend(vec![0x91; 10_000]);
    deep.push(0xc0);
    assert!(decode(&deep, 10).is_err());
}

#[test]
fn data_nests_at_most_as_deep_as_json_readers_accept() {
    // The event array and 126 more: 127 levels, which serde_json reads back.
    let nested = |levels: usize| {
        let mut inner = vec![0x90 | 1; levels - 1];
        inner.push(0x91);
        inner.push(1);
        let mut data = vec![0x92];
        data.extend(fixstr("deep"));
        data.extend(inner);
        data
    };
    let p = decode(&event(nested(126), None), 10).unwrap();
    let v: serde_json::Value = serde_json::from_str(text(&p)).expect("readable JSON");
    assert_eq!(v[0], "deep");
    let bytes = encode(&p);
    assert_eq!(decode(&bytes, 10).unwrap(), p);
    assert_eq!(
        decode(&event(nested(127), None), 10).err(),
        Some(SioDecodeError::InvalidPayload)
    );
}

// ---- encoding ----

#[test]
fn encoding_writes_what_notepack_writes() {
    let p = Packet::event(
        "/",
        "news",
        r#"[1,-33,300,2.5,"x",null,[true],{"k":{"_placeholder":true,"num":0}}]"#,
        Some(12),
        vec![Bytes::from_static(&[4, 5])],
    );
    let data = array(&[
        fixstr("news"),
        vec![1],
        vec![0xd0, 0xdf], // -33
        vec![0xcd, 0x01, 0x2c],
        f64v(2.5),
        fixstr("x"),
        vec![0xc0],
        array(&[vec![0xc3]]),
        map(&[("k", bin8(&[4, 5]))]),
    ]);
    // The binary event is written with type 2, as the msgpack parser has no binary types.
    let want = map(&[
        ("type", vec![2]),
        ("data", data),
        ("nsp", fixstr("/")),
        ("id", vec![12]),
    ]);
    assert_eq!(&encode(&p)[..], &want[..]);

    let p = Packet::connect("/admin", Some(r#"{"sid":"abc"}"#.into()));
    let want = map(&[
        ("type", vec![0]),
        ("data", map(&[("sid", fixstr("abc"))])),
        ("nsp", fixstr("/admin")),
    ]);
    assert_eq!(&encode(&p)[..], &want[..]);
    let want = map(&[("type", vec![1]), ("nsp", fixstr("/"))]);
    assert_eq!(&encode(&Packet::disconnect("/"))[..], &want[..]);
}

#[test]
fn long_strings_arrays_and_integers_take_the_wider_forms() {
    let long = "é".repeat(100); // 200 bytes: str 8
    let args = format!(
        r#"["{long}",{},-70000,4294967296,1e300]"#,
        "[".to_owned() + &"0,".repeat(19) + "0]"
    );
    let p = Packet::event("/", "w", &args, None, Vec::new());
    let bytes = encode(&p);
    let back = decode(&bytes, 10).unwrap();
    let want: serde_json::Value = serde_json::from_str(&format!(r#"["w",{}"#, &args[1..])).unwrap();
    let got: serde_json::Value = serde_json::from_str(text(&back)).unwrap();
    assert_eq!(got, want);
    let s = bytes.windows(2).position(|w| w == [0xd9, 200]);
    assert!(s.is_some(), "str 8 header");
    assert!(
        bytes.windows(3).any(|w| w == [0xdc, 0, 20]),
        "array 16 header"
    );
    assert!(
        bytes
            .windows(5)
            .any(|w| w == [0xd2, 0xff, 0xfe, 0xee, 0x90]),
        "int 32"
    );
    assert!(
        bytes
            .windows(9)
            .any(|w| w == [0xcf, 0, 0, 0, 1, 0, 0, 0, 0]),
        "uint 64"
    );
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        "[a-zA-Z0-9 é\u{1F600}\"\\\\\n]{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{0,6}", inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn encode_then_decode_keeps_every_value(
        args in prop::collection::vec(json_value(), 0..6),
        bins in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..4),
        id in prop::option::of(0u64..(1 << 53)),
    ) {
        let mut args = serde_json::Value::Array(args);
        for i in 0..bins.len() {
            args.as_array_mut().unwrap().push(serde_json::json!({"_placeholder": true, "num": i}));
        }
        let attachments: Vec<Bytes> = bins.iter().cloned().map(Bytes::from).collect();
        let p = Packet::event("/chat", "ev", &args.to_string(), id, attachments.clone());
        let back = decode(&encode(&p), 10).unwrap();
        prop_assert_eq!(&*back.nsp, "/chat");
        prop_assert_eq!(back.id, id);
        prop_assert_eq!(&back.attachments, &attachments);
        let got: serde_json::Value = serde_json::from_str(text(&back)).unwrap();
        let want: serde_json::Value = serde_json::from_str(text(&p)).unwrap();
        // Integral floats come back as integers (one number type in JavaScript).
        prop_assert_eq!(normalise(got), normalise(want));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&bytes, 10);
    }
}

fn normalise(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(normalise).collect()),
        Value::Object(m) => Value::Object(m.into_iter().map(|(k, v)| (k, normalise(v))).collect()),
        other => other,
    }
}

// ---- the server machine with the msgpack parser ----

fn msgpack_pair() -> SioPair {
    let mut config = config();
    config.parser = Parser::MsgPack;
    SioPair::with_server(Server::new(config, [3; 32]))
}

fn send(p: &mut SioPair, c: C, bytes: Vec<u8>) {
    p.send_eio(
        c,
        &[EioPacket::Message(Message::Binary(Bytes::from(bytes)))],
    );
}

/// The Socket.IO packets a client received, decoded with the msgpack parser.
fn received(p: &mut SioPair, c: C) -> Vec<Packet> {
    p.recv(c)
        .into_iter()
        .filter_map(|f| match f {
            Frame::Binary(b) => Some(decode(&b, 10).expect("a msgpack packet")),
            Frame::Text(t) => {
                assert!(!t.starts_with('4'), "a text Socket.IO packet: {t}");
                None
            }
        })
        .collect()
}

fn connect(p: &mut SioPair, kind: Kind) -> (C, String) {
    let c = p.open(4, kind);
    send(
        p,
        c,
        map(&[
            ("type", vec![0]),
            ("nsp", fixstr("/")),
            ("data", map(&[("n", vec![1])])),
        ]),
    );
    let got = received(p, c);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].kind, PacketType::Connect);
    let reply: serde_json::Value = serde_json::from_str(text(&got[0])).unwrap();
    let sid = reply["sid"].as_str().expect("sid").to_owned();
    (c, sid)
}

#[test]
fn a_msgpack_client_connects_emits_with_binary_and_gets_its_ack() {
    for kind in [Kind::Ws, Kind::Polling] {
        let mut p = msgpack_pair();
        p.auto_accept = true;
        let (c, sid) = connect(&mut p, kind);
        assert!(p.requests.last().unwrap().auth.contains("\"n\":1"));
        send(
            &mut p,
            c,
            event(array(&[fixstr("up"), bin8(&[1, 2]), fixstr("ü")]), Some(4)),
        );
        let events = p.take_events();
        let ev = events
            .into_iter()
            .find(|e| matches!(e, Event::Event { .. }))
            .expect("an event");
        assert_eq!(
            show(&ev),
            format!(r#"event {sid} up [{{"_placeholder":true,"num":0}},"ü"] ack=4 +1"#)
        );
        let Event::Event {
            ack: Some(token), ..
        } = ev
        else {
            unreachable!()
        };
        p.server
            .ack(
                token,
                r#"[{"_placeholder":true,"num":0},"ok"]"#,
                vec![Bytes::from_static(b"yo")],
                p.now,
            )
            .unwrap();
        p.drive();
        let got = received(&mut p, c);
        assert_eq!(got.len(), 1, "one binary message per packet: {got:?}");
        assert_eq!((got[0].kind, got[0].id), (PacketType::BinaryAck, Some(4)));
        assert_eq!(text(&got[0]), r#"[{"_placeholder":true,"num":0},"ok"]"#);
        assert_eq!(&got[0].attachments[0][..], b"yo");
    }
}

#[test]
fn broadcasts_reach_msgpack_clients_as_one_binary_message_each() {
    let mut p = msgpack_pair();
    p.auto_accept = true;
    let (a, _) = connect(&mut p, Kind::Ws);
    let (b, _) = connect(&mut p, Kind::Polling);
    let n = p
        .server
        .broadcast(
            "/",
            &BroadcastOptions::default(),
            "tick",
            r#"[{"_placeholder":true,"num":0},3]"#,
            vec![Bytes::from_static(&[0xff])],
            p.now,
        )
        .unwrap();
    assert_eq!(n, 2);
    p.drive();
    if p.client(b).parked.is_none() {
        p.poll(b);
    }
    for c in [a, b] {
        let got = received(&mut p, c);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(text(&got[0]), r#"["tick",{"_placeholder":true,"num":0},3]"#);
        assert_eq!(&got[0].attachments[0][..], &[0xff]);
    }
}

/// Something a client sends that the msgpack parser refuses.
type BadInput = Box<dyn Fn(&mut SioPair, C)>;

#[test]
fn text_or_undecodable_messages_close_the_connection_with_parse_error() {
    let bad: Vec<BadInput> = vec![
        Box::new(|p, c| p.send(c, r#"2["a"]"#)),
        Box::new(|p, c| send(p, c, vec![0xc1])),
        Box::new(|p, c| send(p, c, event(array(&[fixstr("connect")]), None))),
    ];
    for how in bad {
        let mut p = msgpack_pair();
        p.auto_accept = true;
        let (c, sid) = connect(&mut p, Kind::Ws);
        let (other, _) = connect(&mut p, Kind::Ws);
        p.take_events();
        how(&mut p, c);
        let shown: Vec<String> = p.take_events().iter().map(show).collect();
        assert!(
            shown.contains(&format!("disconnect {sid} parse error")),
            "{shown:?}"
        );
        // The other client is untouched.
        assert!(p.socket_of(other, "/").is_some());
        send(&mut p, other, event(array(&[fixstr("still")]), None));
        let shown: Vec<String> = p.take_events().iter().map(show).collect();
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(shown[0].ends_with("still []"), "{shown:?}");
    }
}
