//! The Engine.IO packet, payload and JSONP codecs against the wire samples of the protocol
//! notes and the reference parsers' edge cases.

use volley_core::engine::jsonp;
use volley_core::engine::packet::{DecodeError, Message, Packet, Protocol, WsMessage};
use volley_core::engine::payload::{
    Framing, MAX_PACKETS_PER_PAYLOAD, PayloadDecoder, decode_payload, encode_payload,
};
use volley_core::{Bytes, Utf8Bytes};

fn text(s: &'static str) -> Utf8Bytes {
    Utf8Bytes::from_static(s)
}

fn msg(s: &'static str) -> Packet {
    Packet::Message(Message::Text(text(s)))
}

fn bin(data: &'static [u8]) -> Packet {
    Packet::Message(Message::Binary(Bytes::from_static(data)))
}

fn dec(s: &'static str, protocol: Protocol) -> Result<Packet, DecodeError> {
    Packet::decode_text(text(s), protocol)
}

fn enc(packet: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut out = Vec::new();
    packet.encode_text(protocol, &mut out);
    out
}

/// Whether `inner` points into `outer`'s memory, i.e. was sliced rather than copied.
fn shares(outer: &[u8], inner: &[u8]) -> bool {
    let range = outer.as_ptr_range();
    inner.is_empty() || (range.contains(&inner.as_ptr()) && inner.as_ptr_range().end <= range.end)
}

fn payload(body: &'static [u8], framing: Framing) -> Result<Vec<Packet>, DecodeError> {
    decode_payload(Bytes::from_static(body), framing)
}

fn chunked(body: &[u8], framing: Framing, size: usize) -> Result<Vec<Packet>, DecodeError> {
    let mut decoder = PayloadDecoder::new(framing);
    for chunk in body.chunks(size) {
        if let Err(err) = decoder.feed(chunk) {
            assert_eq!(decoder.feed(b"more").unwrap_err(), err, "errors are sticky");
            return Err(err);
        }
    }
    decoder.finish()
}

// ---- packets, text form ----

#[test]
fn decode_text_every_type_v4() {
    let p = Protocol::V4;
    assert_eq!(
        dec("0{\"sid\":\"x\"}", p),
        Ok(Packet::Open(text("{\"sid\":\"x\"}")))
    );
    assert_eq!(dec("1", p), Ok(Packet::Close));
    assert_eq!(dec("2", p), Ok(Packet::Ping(text(""))));
    assert_eq!(dec("2probe", p), Ok(Packet::Ping(text("probe"))));
    assert_eq!(dec("3probe", p), Ok(Packet::Pong(text("probe"))));
    assert_eq!(dec("4hello", p), Ok(msg("hello")));
    assert_eq!(dec("4", p), Ok(msg("")));
    assert_eq!(dec("4€ü", p), Ok(msg("€ü")));
    assert_eq!(dec("5", p), Ok(Packet::Upgrade));
    assert_eq!(dec("6", p), Ok(Packet::Noop));
}

#[test]
fn decode_text_every_type_v3() {
    let p = Protocol::V3;
    assert_eq!(dec("0{}", p), Ok(Packet::Open(text("{}"))));
    assert_eq!(dec("1", p), Ok(Packet::Close));
    assert_eq!(dec("2probe", p), Ok(Packet::Ping(text("probe"))));
    assert_eq!(dec("3", p), Ok(Packet::Pong(text(""))));
    assert_eq!(dec("4hello", p), Ok(msg("hello")));
    assert_eq!(dec("5", p), Ok(Packet::Upgrade));
    assert_eq!(dec("6", p), Ok(Packet::Noop));
}

#[test]
fn data_after_close_upgrade_noop_is_ignored() {
    for p in [Protocol::V3, Protocol::V4] {
        assert_eq!(dec("1bye", p), Ok(Packet::Close));
        assert_eq!(dec("5x", p), Ok(Packet::Upgrade));
        assert_eq!(dec("6probe", p), Ok(Packet::Noop));
    }
}

#[test]
fn decode_binary_message_in_text_form() {
    assert_eq!(dec("bAQIDBA==", Protocol::V4), Ok(bin(&[1, 2, 3, 4])));
    assert_eq!(dec("b", Protocol::V4), Ok(bin(&[])));
    assert_eq!(dec("b4AQIDBA==", Protocol::V3), Ok(bin(&[1, 2, 3, 4])));
    assert_eq!(dec("b4", Protocol::V3), Ok(bin(&[])));
    // Unpadded input is accepted, as Node's decoder does.
    assert_eq!(dec("bAQIDBA", Protocol::V4), Ok(bin(&[1, 2, 3, 4])));
}

#[test]
fn decode_text_errors() {
    for p in [Protocol::V3, Protocol::V4] {
        assert_eq!(dec("", p), Err(DecodeError::Empty));
        assert_eq!(dec("7", p), Err(DecodeError::UnknownType(b'7')));
        assert_eq!(dec("abc", p), Err(DecodeError::UnknownType(b'a')));
        assert_eq!(dec("€", p), Err(DecodeError::UnknownType(0xe2)));
        assert_eq!(dec(" 4", p), Err(DecodeError::UnknownType(b' ')));
    }
    assert_eq!(dec("b!!!!", Protocol::V4), Err(DecodeError::InvalidBase64));
    assert_eq!(dec("bA", Protocol::V4), Err(DecodeError::InvalidBase64));
    assert_eq!(dec("b4A===", Protocol::V3), Err(DecodeError::InvalidBase64));
    // v3 needs the type digit after `b`.
    assert_eq!(dec("b", Protocol::V3), Err(DecodeError::Empty));
    assert_eq!(
        dec("bAQIDBA==", Protocol::V3),
        Err(DecodeError::UnknownType(b'A'))
    );
    assert_eq!(
        dec("b2AQID", Protocol::V3),
        Err(DecodeError::UnexpectedBinary)
    );
    assert_eq!(
        dec("b9AQID", Protocol::V3),
        Err(DecodeError::UnknownType(b'9'))
    );
}

#[test]
fn decode_text_is_zero_copy() {
    let input = Utf8Bytes::from(String::from("4hello world"));
    let outer = input.as_bytes().clone();
    let Ok(Packet::Message(Message::Text(data))) = Packet::decode_text(input, Protocol::V4) else {
        panic!("not a text message");
    };
    assert_eq!(&*data, "hello world");
    assert_eq!(data.as_bytes().as_ptr(), outer[1..].as_ptr());
}

#[test]
fn encode_text_every_type() {
    for p in [Protocol::V3, Protocol::V4] {
        assert_eq!(enc(&Packet::Open(text("{}")), p), b"0{}");
        assert_eq!(enc(&Packet::Close, p), b"1");
        assert_eq!(enc(&Packet::Ping(text("probe")), p), b"2probe");
        assert_eq!(enc(&Packet::Ping(text("")), p), b"2");
        assert_eq!(enc(&Packet::Pong(text("probe")), p), b"3probe");
        assert_eq!(enc(&msg("hello"), p), b"4hello");
        assert_eq!(enc(&msg("€"), p), "4€".as_bytes());
        assert_eq!(enc(&Packet::Upgrade, p), b"5");
        assert_eq!(enc(&Packet::Noop, p), b"6");
    }
    assert_eq!(enc(&bin(&[1, 2, 3, 4]), Protocol::V4), b"bAQIDBA==");
    assert_eq!(enc(&bin(&[1, 2, 3, 4]), Protocol::V3), b"b4AQIDBA==");
    assert_eq!(enc(&bin(&[]), Protocol::V4), b"b");
    assert_eq!(enc(&bin(&[]), Protocol::V3), b"b4");

    let mut out = b"prefix".to_vec();
    msg("x").encode_text(Protocol::V4, &mut out);
    assert_eq!(out, b"prefix4x", "encode_text appends");
}

// ---- packets, WebSocket form ----

#[test]
fn decode_binary_frames() {
    let frame = Bytes::from(vec![1u8, 2, 3, 4]);
    let Ok(Packet::Message(Message::Binary(data))) =
        Packet::decode_binary(frame.clone(), Protocol::V4)
    else {
        panic!("not a binary message");
    };
    assert_eq!(data.as_ptr(), frame.as_ptr(), "v4 keeps the frame itself");
    assert_eq!(
        Packet::decode_binary(Bytes::new(), Protocol::V4),
        Ok(bin(&[]))
    );

    let frame = Bytes::from(vec![4u8, 1, 2, 3, 4]);
    let Ok(Packet::Message(Message::Binary(data))) =
        Packet::decode_binary(frame.clone(), Protocol::V3)
    else {
        panic!("not a binary message");
    };
    assert_eq!(&data[..], &[1, 2, 3, 4]);
    assert_eq!(
        data.as_ptr(),
        frame[1..].as_ptr(),
        "v3 slices after the type"
    );

    let v3 = |b: &'static [u8]| Packet::decode_binary(Bytes::from_static(b), Protocol::V3);
    assert_eq!(v3(&[4]), Ok(bin(&[])));
    assert_eq!(v3(&[]), Err(DecodeError::Empty));
    assert_eq!(v3(&[2, b'p']), Err(DecodeError::UnexpectedBinary));
    assert_eq!(v3(&[6]), Err(DecodeError::UnexpectedBinary));
    assert_eq!(v3(&[7, 1]), Err(DecodeError::UnknownType(7)));
    assert_eq!(v3(b"4x"), Err(DecodeError::UnknownType(b'4')));
}

#[test]
fn to_ws_forms() {
    let data = Bytes::from(vec![1u8, 2, 3, 4]);
    let packet = Packet::Message(Message::Binary(data.clone()));
    match packet.to_ws(Protocol::V4) {
        WsMessage::Binary(frame) => assert_eq!(frame.as_ptr(), data.as_ptr(), "no copy in v4"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        packet.to_ws(Protocol::V3),
        WsMessage::Binary(Bytes::from_static(&[4, 1, 2, 3, 4]))
    );
    for p in [Protocol::V3, Protocol::V4] {
        assert_eq!(msg("hello").to_ws(p), WsMessage::Text(text("4hello")));
        assert_eq!(
            Packet::Pong(text("probe")).to_ws(p),
            WsMessage::Text(text("3probe"))
        );
        assert_eq!(Packet::Noop.to_ws(p), WsMessage::Text(text("6")));
        assert_eq!(Packet::Close.to_ws(p), WsMessage::Text(text("1")));
    }
}

#[test]
fn from_ws_dispatches_on_frame_kind() {
    assert_eq!(
        Packet::from_ws(WsMessage::Text(text("2probe")), Protocol::V4),
        Ok(Packet::Ping(text("probe")))
    );
    assert_eq!(
        Packet::from_ws(
            WsMessage::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            Protocol::V4
        ),
        Ok(bin(&[1, 2, 3, 4]))
    );
    assert_eq!(
        Packet::from_ws(
            WsMessage::Binary(Bytes::from_static(&[4, 1, 2, 3, 4])),
            Protocol::V3
        ),
        Ok(bin(&[1, 2, 3, 4]))
    );
    assert_eq!(
        Packet::from_ws(WsMessage::Text(text("9")), Protocol::V4),
        Err(DecodeError::UnknownType(b'9'))
    );
}

// ---- payloads: v4 ----

#[test]
fn v4_payload_sample() {
    let body = Bytes::from_static(b"4hello\x1e2\x1e4world");
    let packets = decode_payload(body.clone(), Framing::V4).unwrap();
    assert_eq!(
        packets,
        vec![msg("hello"), Packet::Ping(text("")), msg("world")]
    );
    let Packet::Message(Message::Text(first)) = &packets[0] else {
        panic!("not text");
    };
    assert!(shares(&body, first.as_bytes()), "payload text is sliced");
    assert_eq!(first.as_bytes().as_ptr(), body[1..].as_ptr());
}

#[test]
fn v4_payload_with_binary_and_single_packet() {
    assert_eq!(
        payload(
            b"451-[\"m\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID",
            Framing::V4
        ),
        Ok(vec![
            msg("51-[\"m\",{\"_placeholder\":true,\"num\":0}]"),
            bin(&[1, 2, 3])
        ])
    );
    assert_eq!(payload(b"1", Framing::V4), Ok(vec![Packet::Close]));
}

#[test]
fn v4_payload_errors() {
    assert_eq!(payload(b"", Framing::V4), Err(DecodeError::Empty));
    assert_eq!(payload(b"4a\x1e", Framing::V4), Err(DecodeError::Empty));
    assert_eq!(payload(b"\x1e4a", Framing::V4), Err(DecodeError::Empty));
    assert_eq!(
        payload(b"4a\x1e\x1e4b", Framing::V4),
        Err(DecodeError::Empty)
    );
    assert_eq!(
        payload(b"abc", Framing::V4),
        Err(DecodeError::UnknownType(b'a'))
    );
    assert_eq!(
        payload(b"4a\x1e9", Framing::V4),
        Err(DecodeError::UnknownType(b'9'))
    );
    assert_eq!(
        payload(b"4\xff", Framing::V4),
        Err(DecodeError::InvalidUtf8)
    );
    assert_eq!(
        payload(b"4\xe2\x82", Framing::V4),
        Err(DecodeError::InvalidUtf8)
    );
    assert_eq!(
        payload(b"4a\x1eb@@", Framing::V4),
        Err(DecodeError::InvalidBase64)
    );
}

#[test]
fn v4_encode_payload() {
    let out = encode_payload(
        &[msg("hello"), Packet::Ping(text("")), msg("world")],
        Protocol::V4,
        true,
    );
    assert_eq!(&out.body[..], b"4hello\x1e2\x1e4world");
    assert!(!out.binary);
    let out = encode_payload(&[msg("x"), bin(&[1, 2, 3])], Protocol::V4, true);
    assert_eq!(&out.body[..], b"4x\x1ebAQID");
    assert!(!out.binary, "v4 bodies are always text");
    assert_eq!(&encode_payload(&[], Protocol::V4, false).body[..], b"");
}

// ---- payloads: v3 string ----

#[test]
fn v3_string_payload_samples() {
    assert_eq!(
        payload("6:4hello2:4€".as_bytes(), Framing::V3String),
        Ok(vec![msg("hello"), msg("€")])
    );
    assert_eq!(
        payload(b"10:b4AQIDBA==", Framing::V3String),
        Ok(vec![bin(&[1, 2, 3, 4])])
    );
    // A character outside the BMP counts as two UTF-16 units.
    assert_eq!(
        payload("3:4😀1:6".as_bytes(), Framing::V3String),
        Ok(vec![msg("😀"), Packet::Noop])
    );
}

#[test]
fn v3_string_payload_is_zero_copy() {
    let body = Bytes::from("6:4hello2:4€".as_bytes().to_vec());
    let packets = decode_payload(body.clone(), Framing::V3String).unwrap();
    for packet in &packets {
        let Packet::Message(Message::Text(t)) = packet else {
            panic!("not text");
        };
        assert!(shares(&body, t.as_bytes()));
    }
}

#[test]
fn v3_string_empty_entries_and_leading_zeros() {
    assert_eq!(payload(b"0:", Framing::V3String), Ok(vec![]));
    assert_eq!(
        payload(b"0:1:60:", Framing::V3String),
        Ok(vec![Packet::Noop])
    );
    assert_eq!(
        payload(b"006:4hello", Framing::V3String),
        Ok(vec![msg("hello")])
    );
    assert_eq!(payload(b"", Framing::V3String), Err(DecodeError::Empty));
}

#[test]
fn v3_string_length_errors() {
    let e = |b: &'static [u8]| payload(b, Framing::V3String).unwrap_err();
    assert_eq!(e(b":4hello"), DecodeError::InvalidLength);
    assert_eq!(e(b"a:4"), DecodeError::InvalidLength);
    assert_eq!(e(b"-1:4"), DecodeError::InvalidLength);
    assert_eq!(e(b" 1:6"), DecodeError::InvalidLength);
    assert_eq!(e(b"0x1:6"), DecodeError::InvalidLength);
    assert_eq!(e(b"1e0:6"), DecodeError::InvalidLength);
    assert_eq!(e(b"4hello"), DecodeError::InvalidLength);
    assert_eq!(
        e(b"99999999999999999999999999:4"),
        DecodeError::InvalidLength
    );
    // The length would end between the two halves of a surrogate pair.
    assert_eq!(e("2:4😀".as_bytes()), DecodeError::InvalidLength);
    assert_eq!(e("1:😀".as_bytes()), DecodeError::InvalidLength);
}

#[test]
fn v3_string_truncation_and_content_errors() {
    let e = |b: &'static [u8]| payload(b, Framing::V3String).unwrap_err();
    assert_eq!(e(b"6:4hel"), DecodeError::Truncated);
    assert_eq!(e(b"6"), DecodeError::Truncated);
    assert_eq!(e(b"6:4hello2"), DecodeError::Truncated);
    assert_eq!(e(b"2:4\xe2\x82"), DecodeError::Truncated);
    // A huge announced length is only an error once the body ends, and reserves nothing.
    assert_eq!(e(b"999999999999:4"), DecodeError::Truncated);
    assert_eq!(e(b"1:x"), DecodeError::UnknownType(b'x'));
    assert_eq!(e(b"2:4\xff"), DecodeError::InvalidUtf8);
    assert_eq!(e(b"2:4\xe2\x28\xa1"), DecodeError::InvalidUtf8);
    assert_eq!(e(b"3:b2AQ"), DecodeError::UnexpectedBinary);
}

#[test]
fn v3_string_encode_payload() {
    let out = encode_payload(&[msg("hello"), msg("€")], Protocol::V3, false);
    assert_eq!(&out.body[..], "6:4hello2:4€".as_bytes());
    assert!(!out.binary);
    let out = encode_payload(&[bin(&[1, 2, 3, 4])], Protocol::V3, false);
    assert_eq!(&out.body[..], b"10:b4AQIDBA==");
    assert!(!out.binary);
    let out = encode_payload(&[msg("😀")], Protocol::V3, false);
    assert_eq!(&out.body[..], "3:4😀".as_bytes());
    assert_eq!(&encode_payload(&[], Protocol::V3, true).body[..], b"0:");
    // Without a binary packet XHR2 clients also get the string framing.
    let out = encode_payload(&[msg("hello"), Packet::Noop], Protocol::V3, true);
    assert_eq!(&out.body[..], b"6:4hello1:6");
    assert!(!out.binary);
}

// ---- payloads: v3 binary (XHR2) ----

const XHR2_SAMPLE: &[u8] = &[
    0x00, 0x06, 0xff, 0x34, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x01, 0x05, 0xff, 0x04, 0x01, 0x02, 0x03,
    0x04,
];

#[test]
fn v3_binary_payload_sample() {
    let body = Bytes::from_static(XHR2_SAMPLE);
    let packets = decode_payload(body.clone(), Framing::V3Binary).unwrap();
    assert_eq!(packets, vec![msg("hello"), bin(&[1, 2, 3, 4])]);
    let Packet::Message(Message::Binary(data)) = &packets[1] else {
        panic!("not binary");
    };
    assert_eq!(
        data.as_ptr(),
        body[13..].as_ptr(),
        "binary entries are sliced"
    );
}

#[test]
fn v3_binary_payload_lengths() {
    // String lengths count UTF-8 bytes: "4€" is four bytes.
    assert_eq!(
        payload(&[0, 4, 0xff, b'4', 0xe2, 0x82, 0xac], Framing::V3Binary),
        Ok(vec![msg("€")])
    );
    // Multi-digit lengths, one byte per digit, leading zeros allowed.
    let mut body = vec![0, 1, 1, 0xff, b'4'];
    body.extend_from_slice(b"0123456789");
    body.extend_from_slice(&[0, 0, 1, 0xff, b'6']);
    assert_eq!(
        decode_payload(Bytes::from(body), Framing::V3Binary),
        Ok(vec![msg("0123456789"), Packet::Noop])
    );
    // A string entry may hold a base64 packet.
    assert_eq!(
        payload(b"\x00\x06\xffb4AQID", Framing::V3Binary),
        Ok(vec![bin(&[1, 2, 3])])
    );
    assert_eq!(payload(b"", Framing::V3Binary), Ok(vec![]));
}

#[test]
fn v3_binary_payload_errors() {
    let e = |b: &'static [u8]| payload(b, Framing::V3Binary).unwrap_err();
    assert_eq!(e(&[2, 1, 0xff, b'6']), DecodeError::UnknownFrameKind(2));
    assert_eq!(
        e(&[b'0', 1, 0xff, b'6']),
        DecodeError::UnknownFrameKind(b'0')
    );
    assert_eq!(e(&[0, 10, 0xff, b'6']), DecodeError::InvalidLength);
    assert_eq!(e(&[0, 0xff, b'6']), DecodeError::InvalidLength);
    assert_eq!(e(&[0, 6]), DecodeError::Truncated);
    assert_eq!(e(&[0]), DecodeError::Truncated);
    assert_eq!(e(&[0, 6, 0xff, b'4', b'h']), DecodeError::Truncated);
    assert_eq!(
        e(&[1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0xff, 4]),
        DecodeError::Truncated
    );
    assert_eq!(
        e(&[
            0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 0xff
        ]),
        DecodeError::InvalidLength
    );
    assert_eq!(e(&[0, 2, 0xff, b'4', 0xff]), DecodeError::InvalidUtf8);
    assert_eq!(e(&[0, 0, 0xff]), DecodeError::Empty);
    assert_eq!(e(&[1, 0, 0xff]), DecodeError::Empty);
    assert_eq!(e(&[1, 2, 0xff, 2, b'x']), DecodeError::UnexpectedBinary);
    assert_eq!(e(&[1, 2, 0xff, 8, b'x']), DecodeError::UnknownType(8));
    assert_eq!(e(&[0, 1, 0xff, b'x']), DecodeError::UnknownType(b'x'));
}

#[test]
fn v3_binary_encode_payload() {
    let out = encode_payload(&[msg("hello"), bin(&[1, 2, 3, 4])], Protocol::V3, true);
    assert_eq!(&out.body[..], XHR2_SAMPLE);
    assert!(out.binary);
    let out = encode_payload(&[msg("€"), bin(&[9; 10])], Protocol::V3, true);
    let mut expected = vec![0, 4, 0xff, b'4', 0xe2, 0x82, 0xac, 1, 1, 1, 0xff, 4];
    expected.extend_from_slice(&[9; 10]);
    assert_eq!(&out.body[..], &expected[..]);
}

// ---- limits and the incremental decoder ----

#[test]
fn packet_count_limit() {
    let body = |n: usize| {
        let mut body = b"6\x1e".repeat(n);
        body.pop();
        Bytes::from(body)
    };
    let ok = decode_payload(body(MAX_PACKETS_PER_PAYLOAD), Framing::V4).unwrap();
    assert_eq!(ok.len(), MAX_PACKETS_PER_PAYLOAD);
    assert_eq!(
        decode_payload(body(MAX_PACKETS_PER_PAYLOAD + 1), Framing::V4),
        Err(DecodeError::TooManyPackets)
    );
    let v3 = Bytes::from(b"1:6".repeat(MAX_PACKETS_PER_PAYLOAD + 1));
    assert_eq!(
        decode_payload(v3, Framing::V3String),
        Err(DecodeError::TooManyPackets)
    );
    // Empty v3 entries hold no packet and do not count.
    let mut empties = b"0:".repeat(MAX_PACKETS_PER_PAYLOAD + 1);
    empties.extend_from_slice(b"1:6");
    assert_eq!(
        decode_payload(Bytes::from(empties), Framing::V3String),
        Ok(vec![Packet::Noop])
    );
}

#[test]
fn incremental_decoder_matches_whole_body() {
    let cases: &[(&[u8], Framing)] = &[
        (b"4hello\x1e2\x1e4world", Framing::V4),
        (b"4a\x1e", Framing::V4),
        (b"", Framing::V4),
        ("4€\x1ebAQIDBA==".as_bytes(), Framing::V4),
        ("6:4hello2:4€".as_bytes(), Framing::V3String),
        ("3:4😀".as_bytes(), Framing::V3String),
        ("2:4😀".as_bytes(), Framing::V3String),
        (b"10:b4AQIDBA==", Framing::V3String),
        (b"0:", Framing::V3String),
        (b"", Framing::V3String),
        (b"6:4hel", Framing::V3String),
        (XHR2_SAMPLE, Framing::V3Binary),
        (&[0, 6], Framing::V3Binary),
        (&[0, 4, 0xff, b'4', 0xe2, 0x82, 0xac], Framing::V3Binary),
    ];
    for &(body, framing) in cases {
        let whole = decode_payload(Bytes::copy_from_slice(body), framing);
        for size in 1..=body.len().max(1) {
            assert_eq!(
                chunked(body, framing, size),
                whole,
                "{body:?} {framing:?} chunks of {size}"
            );
        }
    }
}

#[test]
fn incremental_decoder_fails_early() {
    let mut decoder = PayloadDecoder::new(Framing::V3String);
    assert_eq!(decoder.feed(b"6:4he"), Ok(()));
    assert_eq!(decoder.feed(b"llox"), Err(DecodeError::InvalidLength));
    assert_eq!(decoder.feed(b"1:6"), Err(DecodeError::InvalidLength));
    assert_eq!(decoder.finish(), Err(DecodeError::InvalidLength));

    let mut decoder = PayloadDecoder::new(Framing::V4);
    assert_eq!(decoder.feed(b"4a\x1e9"), Ok(()));
    assert_eq!(decoder.feed(b"\x1e"), Err(DecodeError::UnknownType(b'9')));

    let mut decoder = PayloadDecoder::new(Framing::V3Binary);
    assert_eq!(decoder.feed(&[7]), Err(DecodeError::UnknownFrameKind(7)));
}

#[test]
fn incremental_decoder_with_huge_length_stays_small() {
    let mut decoder = PayloadDecoder::new(Framing::V3String);
    assert_eq!(decoder.feed(b"18446744073709551615:4"), Ok(()));
    assert_eq!(decoder.finish(), Err(DecodeError::Truncated));
    let mut decoder = PayloadDecoder::new(Framing::V3Binary);
    let mut body = vec![1];
    body.extend_from_slice(&[9; 19]);
    body.push(0xff);
    assert_eq!(decoder.feed(&body), Ok(()));
    assert_eq!(decoder.feed(&[4, 1, 2]), Ok(()));
    assert_eq!(decoder.finish(), Err(DecodeError::Truncated));
}

// ---- JSONP ----

#[test]
fn jsonp_wrap() {
    assert_eq!(
        &jsonp::wrap("3", "6:4hello")[..],
        b"___eio[3](\"6:4hello\");"
    );
    // Only digits survive from the index.
    assert_eq!(
        &jsonp::wrap("1\");alert(2", "1:6")[..],
        b"___eio[12](\"1:6\");"
    );
    assert_eq!(&jsonp::wrap("", "")[..], b"___eio[](\"\");");
}

#[test]
fn jsonp_wrap_escapes_like_json_stringify() {
    let out = jsonp::wrap(
        "0",
        "a\"b\\c\nd\re\tf\u{8}\u{c}\u{1}\u{1e}\u{1f}\u{7f}/é€😀",
    );
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        "___eio[0](\"a\\\"b\\\\c\\nd\\re\\tf\\b\\f\\u0001\\u001e\\u001f\u{7f}/é€😀\");"
    );
    let out = jsonp::wrap("0", "x\u{2028}y\u{2029}z");
    assert_eq!(&out[..], b"___eio[0](\"x\\u2028y\\u2029z\");");
}

#[test]
fn jsonp_unwrap_post_form_decoding() {
    assert_eq!(jsonp::unwrap_post(b"d=6%3A4hello"), Ok("6:4hello".into()));
    assert_eq!(
        jsonp::unwrap_post(b"d=9:4hello+you"),
        Ok("9:4hello you".into())
    );
    assert_eq!(
        jsonp::unwrap_post(b"x=1&d=2%3A4%E2%82%AC&y"),
        Ok("2:4€".into())
    );
    assert_eq!(jsonp::unwrap_post("d=2:4€".as_bytes()), Ok("2:4€".into()));
    assert_eq!(jsonp::unwrap_post(b"d"), Ok(String::new()));
    assert_eq!(jsonp::unwrap_post(b"d=a=b"), Ok("a=b".into()));
    // A `%` without two hex digits stays literal, as in Node's querystring.
    assert_eq!(jsonp::unwrap_post(b"d=5%zz%4"), Ok("5%zz%4".into()));
    assert_eq!(jsonp::unwrap_post(b"%64=1:6"), Ok("1:6".into()));
}

#[test]
fn jsonp_unwrap_post_newline_escaping() {
    // The client sends a newline as `\n` and an original `\n` as `\\n`.
    assert_eq!(jsonp::unwrap_post(b"d=4a%5Cnb"), Ok("4a\nb".into()));
    assert_eq!(jsonp::unwrap_post(b"d=4a%5C%5Cnb"), Ok("4a\\nb".into()));
    assert_eq!(
        jsonp::unwrap_post(br"d=4\\\n"),
        Ok("4\\\\n".into()),
        "three backslashes then n: one kept, then \\\\n -> \\n"
    );
    assert_eq!(jsonp::unwrap_post(br"d=4\x\"), Ok("4\\x\\".into()));
    assert_eq!(jsonp::unwrap_post(br"d=\n\n"), Ok("\n\n".into()));
}

#[test]
fn jsonp_unwrap_post_errors() {
    assert_eq!(
        jsonp::unwrap_post(b"x=1"),
        Err(DecodeError::InvalidJsonpBody)
    );
    assert_eq!(jsonp::unwrap_post(b""), Err(DecodeError::InvalidJsonpBody));
    assert_eq!(
        jsonp::unwrap_post(b"d=1&d=2"),
        Err(DecodeError::InvalidJsonpBody)
    );
    assert_eq!(jsonp::unwrap_post(b"d=%FF"), Err(DecodeError::InvalidUtf8));
    assert_eq!(jsonp::unwrap_post(b"d=\xff"), Err(DecodeError::InvalidUtf8));
}

#[test]
fn decode_error_displays() {
    assert_eq!(
        DecodeError::UnknownType(b'x').to_string(),
        "unknown packet type 0x78"
    );
    let err: &dyn std::error::Error = &DecodeError::Truncated;
    assert!(!err.to_string().is_empty());
}
