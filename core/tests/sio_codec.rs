//! The Socket.IO packet codec: the protocol's wire samples, the reference parser's invalid
//! inputs, attachment reassembly, and the exact bytes the encoder writes.
//!
//! Decoder inputs are Engine.IO message data, so the suite's `42[...]` is `2[...]` here.

use std::borrow::Cow;
use volley_core::socketio::packet::{
    DEFAULT_MAX_ATTACHMENTS, Decoder, MAX_ACK_ID, Packet, PacketType, SioDecodeError, SioProtocol,
};
use volley_core::{Bytes, Utf8Bytes};

fn v5() -> Decoder {
    Decoder::new(SioProtocol::V5, DEFAULT_MAX_ATTACHMENTS)
}

fn v4() -> Decoder {
    Decoder::new(SioProtocol::V4, DEFAULT_MAX_ATTACHMENTS)
}

/// Decodes a complete (non-binary) packet.
fn decode(text: &str) -> Packet {
    match v5().decode_text(Utf8Bytes::from(text)) {
        Ok(Some(p)) => p,
        other => panic!("{text:?} decoded to {other:?}"),
    }
}

fn decode_err(text: &str) -> SioDecodeError {
    match v5().decode_text(Utf8Bytes::from(text)) {
        Err(e) => e,
        other => panic!("{text:?} should fail, got {other:?}"),
    }
}

fn text(packet: &Packet, protocol: SioProtocol) -> String {
    packet.encode(protocol).0.to_string()
}

fn data(p: &Packet) -> Option<&str> {
    p.data.as_deref()
}

// ---- protocol-notes §2 samples -------------------------------------------------------------

#[test]
fn plain_event_keeps_data_verbatim() {
    let p = decode(r#"2["message",1,"2",{"3":[true]}]"#);
    assert_eq!(p.kind, PacketType::Event);
    assert_eq!(&*p.nsp, "/");
    assert_eq!(p.id, None);
    assert_eq!(p.query, None);
    assert_eq!(data(&p), Some(r#"["message",1,"2",{"3":[true]}]"#));
    assert_eq!(p.event_name().as_deref(), Some("message"));
    assert!(matches!(p.event_name(), Some(Cow::Borrowed(_))));
    assert_eq!(p.args().as_deref(), Some(r#"[1,"2",{"3":[true]}]"#));
    assert!(p.attachments.is_empty());
    // Re-encoding is byte-identical.
    assert_eq!(
        text(&p, SioProtocol::V5),
        r#"2["message",1,"2",{"3":[true]}]"#
    );
}

#[test]
fn data_is_a_zero_copy_slice_of_the_message() {
    let msg = Utf8Bytes::from(r#"2/admin,7["a",{"b":1}]"#);
    let p = v5().decode_text(msg.clone()).unwrap().unwrap();
    let base = msg.as_bytes().as_ptr() as usize;
    let d = p.data.as_ref().unwrap().as_bytes().as_ptr() as usize;
    assert_eq!(d - base, 9);
    let n = p.nsp.as_bytes().as_ptr() as usize;
    assert_eq!(n - base, 1);
}

#[test]
fn key_order_and_number_formatting_survive() {
    let json = r#"["e",{"z":1,"a":2,"m":[1.50,1e3,-0,12345678901234567890]}]"#;
    let p = decode(&format!("2{json}"));
    assert_eq!(data(&p), Some(json));
    assert_eq!(
        p.args().as_deref(),
        Some(r#"[{"z":1,"a":2,"m":[1.50,1e3,-0,12345678901234567890]}]"#)
    );
}

#[test]
fn event_with_ack_id() {
    let p = decode(r#"2456["message-with-ack",1,"2",{"3":[false]}]"#);
    assert_eq!(p.kind, PacketType::Event);
    assert_eq!(p.id, Some(456));
    assert_eq!(p.event_name().as_deref(), Some("message-with-ack"));
    assert_eq!(p.args().as_deref(), Some(r#"[1,"2",{"3":[false]}]"#));
}

#[test]
fn ack_reply_encodes_exactly() {
    let reply = Packet::ack(
        "/",
        456,
        Utf8Bytes::from(r#"[1,"2",{"3":[false]}]"#),
        vec![],
    );
    assert_eq!(reply.kind, PacketType::Ack);
    assert_eq!(
        text(&reply, SioProtocol::V5),
        r#"3456[1,"2",{"3":[false]}]"#
    );
    let back = decode(r#"3456[1,"2",{"3":[false]}]"#);
    assert_eq!(back, reply);
    assert_eq!(back.args().as_deref(), Some(r#"[1,"2",{"3":[false]}]"#));
    assert_eq!(back.event_name(), None);
}

#[test]
fn ack_with_empty_array() {
    let p = decode("312[]");
    assert_eq!(
        (p.kind, p.id, data(&p)),
        (PacketType::Ack, Some(12), Some("[]"))
    );
}

#[test]
fn connect_without_comma_and_disconnect_without_comma() {
    let p = decode("0/random");
    assert_eq!(
        (p.kind, &*p.nsp, p.data.is_none()),
        (PacketType::Connect, "/random", true)
    );
    let p = decode("1/custom");
    assert_eq!(
        (p.kind, &*p.nsp, p.data.is_none()),
        (PacketType::Disconnect, "/custom", true)
    );
    let p = decode("1/custom,");
    assert_eq!(&*p.nsp, "/custom");
    let p = decode("1");
    assert_eq!((p.kind, &*p.nsp), (PacketType::Disconnect, "/"));
}

#[test]
fn connect_with_auth() {
    let p = decode(r#"0{"token":"123"}"#);
    assert_eq!((&*p.nsp, data(&p)), ("/", Some(r#"{"token":"123"}"#)));
    let p = decode(r#"0/custom,{"token":"abc"}"#);
    assert_eq!((&*p.nsp, data(&p)), ("/custom", Some(r#"{"token":"abc"}"#)));
    let p = decode("0");
    assert_eq!((p.kind, &*p.nsp, p.data), (PacketType::Connect, "/", None));
}

#[test]
fn connect_error_samples() {
    let p = decode(r#"4/random,{"message":"Invalid namespace"}"#);
    assert_eq!(p.kind, PacketType::ConnectError);
    assert_eq!(&*p.nsp, "/random");
    assert_eq!(data(&p), Some(r#"{"message":"Invalid namespace"}"#));
    let p = decode(r#"4"Unauthorized""#);
    assert_eq!(data(&p), Some(r#""Unauthorized""#));

    let refusal = Packet::connect_error(
        "/random",
        Utf8Bytes::from(r#"{"message":"Invalid namespace"}"#),
    );
    assert_eq!(
        text(&refusal, SioProtocol::V5),
        r#"4/random,{"message":"Invalid namespace"}"#
    );
}

#[test]
fn binary_event_with_one_attachment() {
    let mut d = v5();
    let header = r#"51-["message",{"_placeholder":true,"num":0}]"#;
    assert_eq!(d.decode_text(Utf8Bytes::from(header)), Ok(None));
    assert!(d.is_waiting());
    assert_eq!(d.buffered_bytes(), header.len());
    let p = d
        .decode_binary(Bytes::from_static(&[1, 2, 3]))
        .unwrap()
        .unwrap();
    assert!(!d.is_waiting());
    assert_eq!(d.buffered_bytes(), 0);
    assert_eq!(p.kind, PacketType::BinaryEvent);
    assert_eq!(p.attachments, vec![Bytes::from_static(&[1, 2, 3])]);
    assert_eq!(
        data(&p),
        Some(r#"["message",{"_placeholder":true,"num":0}]"#)
    );
    assert_eq!(p.event_name().as_deref(), Some("message"));
    assert_eq!(
        p.args().as_deref(),
        Some(r#"[{"_placeholder":true,"num":0}]"#)
    );
    let (t, atts) = p.encode(SioProtocol::V5);
    assert_eq!(&*t, header);
    assert_eq!(atts, vec![Bytes::from_static(&[1, 2, 3])]);
}

#[test]
fn binary_event_with_namespace_and_ack_id() {
    let mut d = v5();
    let header = r#"52-/admin,789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
    assert_eq!(d.decode_text(Utf8Bytes::from(header)), Ok(None));
    assert_eq!(d.decode_binary(Bytes::from_static(&[1, 2, 3])), Ok(None));
    assert!(d.is_waiting());
    assert_eq!(d.buffered_bytes(), header.len() + 3);
    let p = d
        .decode_binary(Bytes::from_static(&[4, 5, 6]))
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.kind, &*p.nsp, p.id),
        (PacketType::BinaryEvent, "/admin", Some(789))
    );
    assert_eq!(
        p.attachments,
        vec![
            Bytes::from_static(&[1, 2, 3]),
            Bytes::from_static(&[4, 5, 6])
        ]
    );
    assert_eq!(p.encode(SioProtocol::V5).0.to_string(), header);
}

#[test]
fn binary_ack_reply_encodes_exactly() {
    let atts = vec![
        Bytes::from_static(&[1, 2, 3]),
        Bytes::from_static(&[4, 5, 6]),
    ];
    let args = r#"[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
    let reply = Packet::ack("/", 789, Utf8Bytes::from(args), atts.clone());
    assert_eq!(reply.kind, PacketType::BinaryAck);
    let (t, out) = reply.encode(SioProtocol::V5);
    assert_eq!(&*t, format!("62-789{args}"));
    assert_eq!(out, atts);

    let mut d = v5();
    assert_eq!(d.decode_text(t), Ok(None));
    assert_eq!(d.decode_binary(atts[0].clone()), Ok(None));
    assert_eq!(d.decode_binary(atts[1].clone()), Ok(Some(reply)));
}

#[test]
fn attachments_need_not_all_be_referenced() {
    // As in the reference: only placeholders are checked, not coverage.
    let mut d = v5();
    assert_eq!(
        d.decode_text(Utf8Bytes::from(r#"52-["a",{"_placeholder":true,"num":1}]"#)),
        Ok(None)
    );
    assert_eq!(d.decode_binary(Bytes::from_static(b"x")), Ok(None));
    let p = d.decode_binary(Bytes::from_static(b"y")).unwrap().unwrap();
    assert_eq!(p.attachments.len(), 2);
    let mut d = v5();
    assert_eq!(d.decode_text(Utf8Bytes::from(r#"51-["a"]"#)), Ok(None));
    assert!(d.decode_binary(Bytes::new()).unwrap().is_some());
}

#[test]
fn decoder_is_reusable_after_a_binary_packet() {
    let mut d = v5();
    assert_eq!(
        d.decode_text(Utf8Bytes::from(r#"61-3[{"_placeholder":true,"num":0}]"#)),
        Ok(None)
    );
    let p = d.decode_binary(Bytes::from_static(b"z")).unwrap().unwrap();
    assert_eq!((p.kind, p.id), (PacketType::BinaryAck, Some(3)));
    let p = d
        .decode_text(Utf8Bytes::from(r#"2["next"]"#))
        .unwrap()
        .unwrap();
    assert_eq!(p.event_name().as_deref(), Some("next"));
    assert!(p.attachments.is_empty());
}

// ---- invalid input (socket.io-parser and socket.io-protocol test suites) ------------------

#[test]
fn unknown_packet_types() {
    assert_eq!(decode_err("abc"), SioDecodeError::UnknownType(b'a'));
    assert_eq!(decode_err("999"), SioDecodeError::UnknownType(b'9'));
    assert_eq!(decode_err("7[]"), SioDecodeError::UnknownType(b'7'));
    assert_eq!(decode_err("€"), SioDecodeError::UnknownType(0xe2));
    assert_eq!(decode_err(""), SioDecodeError::Empty);
}

#[test]
fn suite_invalid_formats() {
    // `42{}`: an event whose payload is not an array.
    assert_eq!(decode_err("2{}"), SioDecodeError::InvalidPayload);
    // `42abc[...]`: letters where the ack id would be, so the payload is not JSON.
    assert_eq!(
        decode_err(r#"2abc["message-with-ack",1,"2",{"3":[false]}]"#),
        SioDecodeError::InvalidJson
    );
}

#[test]
fn parser_suite_invalid_payloads() {
    use SioDecodeError::*;
    let cases: &[(&str, SioDecodeError)] = &[
        (r#"442["some","data""#, InvalidJson),
        (r#"0/admin,"invalid""#, InvalidPayload),
        ("0[]", InvalidPayload),
        ("1/admin,{}", InvalidPayload),
        (r#"2/admin,"invalid"#, InvalidJson),
        ("2/admin,{}", InvalidPayload),
        (r#"2[{"toString":"foo"}]"#, InvalidPayload),
        (r#"2[true,"foo"]"#, InvalidPayload),
        (r#"2[null,"bar"]"#, InvalidPayload),
        (r#"2["connect"]"#, ReservedEventName),
        (r#"2["disconnect","123"]"#, ReservedEventName),
    ];
    for (input, want) in cases {
        assert_eq!(&decode_err(input), want, "{input}");
    }
}

#[test]
fn payload_shape_rules() {
    use SioDecodeError::*;
    let cases: &[(&str, SioDecodeError)] = &[
        ("2", InvalidPayload),       // an event needs its name
        ("2[]", InvalidPayload),     // ... a non-empty array
        (r#"2"a""#, InvalidPayload), // ... an array
        ("2[[1]]", InvalidPayload),  // name is neither string nor number
        ("3", InvalidPayload),       // an ack needs its array
        ("3{}", InvalidPayload),
        ("31\"x\"", InvalidPayload),
        ("0null", InvalidPayload),
        ("0\"x\"", InvalidPayload),
        ("4[]", InvalidPayload),
        ("4null", InvalidPayload),
        ("1 ", InvalidPayload), // DISCONNECT takes no payload, not even blanks
        ("1/a,null", InvalidPayload),
    ];
    for (input, want) in cases {
        assert_eq!(&decode_err(input), want, "{input}");
    }
    // Digits right after the type are an ack id, not a payload, and CONNECT and
    // CONNECT_ERROR may come without one.
    let p = decode("01");
    assert_eq!((p.kind, p.id, p.data), (PacketType::Connect, Some(1), None));
    let p = decode("41");
    assert_eq!(
        (p.kind, p.id, p.data),
        (PacketType::ConnectError, Some(1), None)
    );
    assert_eq!(decode("4").data, None);
}

#[test]
fn every_reserved_event_name_is_refused() {
    for name in [
        "connect",
        "connect_error",
        "disconnect",
        "disconnecting",
        "newListener",
        "removeListener",
    ] {
        assert_eq!(
            decode_err(&format!(r#"2["{name}",1]"#)),
            SioDecodeError::ReservedEventName
        );
        // Escapes do not hide a reserved name.
        let escaped = name.replacen('c', "\\u0063", 1);
        if escaped != name {
            assert_eq!(
                decode_err(&format!(r#"2["{escaped}"]"#)),
                SioDecodeError::ReservedEventName
            );
        }
        // Binary events too.
        let mut d = v5();
        assert_eq!(
            d.decode_text(Utf8Bytes::from(format!(
                r#"51-["{name}",{{"_placeholder":true,"num":0}}]"#
            ))),
            Err(SioDecodeError::ReservedEventName)
        );
    }
    // Near misses are ordinary events.
    for name in [
        "Connect",
        "connected",
        "disconnect ",
        "error",
        "newlistener",
    ] {
        assert_eq!(
            decode(&format!(r#"2["{name}"]"#)).event_name().as_deref(),
            Some(name)
        );
    }
    // A reserved name as an ack argument is just data.
    assert_eq!(data(&decode(r#"3["connect"]"#)), Some(r#"["connect"]"#));
}

#[test]
fn numeric_event_names() {
    let p = decode(r#"2[42,"a"]"#);
    assert_eq!(p.event_name().as_deref(), Some("42"));
    assert_eq!(p.args().as_deref(), Some(r#"["a"]"#));
    let p = decode("2[-1.5e3]");
    assert_eq!(p.event_name().as_deref(), Some("-1.5e3"));
    assert_eq!(p.args().as_deref(), Some("[]"));
}

#[test]
fn escaped_event_names_and_whitespace() {
    let p = decode(r#"2 [ "a\"b\u00e9" , 1 ] "#);
    assert_eq!(p.event_name().as_deref(), Some("a\"bé"));
    assert!(matches!(p.event_name(), Some(Cow::Owned(_))));
    assert_eq!(p.args().as_deref(), Some("[ 1 ]"));
    let p = decode("2[\"é😀\"]");
    assert_eq!(p.event_name().as_deref(), Some("é😀"));
}

#[test]
fn json_errors() {
    use SioDecodeError::*;
    assert_eq!(decode_err(r#"2["a"]x"#), InvalidJson); // trailing garbage
    assert_eq!(decode_err(r#"2["a"]["b"]"#), InvalidJson); // two values
    assert_eq!(decode_err(r#"2["a",]"#), InvalidJson);
    assert_eq!(decode_err(r#"2['a']"#), InvalidJson);
    assert_eq!(decode_err(r#"0{"a":1,}"#), InvalidJson);
    assert_eq!(decode_err(r#"2["a",NaN]"#), InvalidJson);
    // Skipped JSON is checked without recursion, so any depth is fine, as in JSON.parse ...
    let deep = format!(r#"3{}{}"#, "[".repeat(10_000), "]".repeat(10_000));
    assert_eq!(decode(&deep).data.map(|d| d.len()), Some(20_000));
    let deep = format!(
        r#"2["a",{}1{}]"#,
        "{\"k\":".repeat(10_000),
        "}".repeat(10_000)
    );
    assert!(v5().decode_text(Utf8Bytes::from(deep)).is_ok());
    // ... but a binary packet's placeholder walk recurses and stops at 128 levels.
    let walk = |depth: usize| {
        let header = format!(r#"61-{}{}"#, "[".repeat(depth), "]".repeat(depth));
        v5().decode_text(Utf8Bytes::from(header))
    };
    assert_eq!(walk(100), Ok(None));
    assert_eq!(walk(10_000), Err(InvalidJson));
    // Surrounding JSON whitespace is allowed, as by JSON.parse.
    assert_eq!(data(&decode("3 [] \n")), Some(" [] \n"));
}

#[test]
fn ack_ids() {
    assert_eq!(decode(r#"2007["a"]"#).id, Some(7));
    assert_eq!(
        decode(&format!(r#"2{MAX_ACK_ID}["a"]"#)).id,
        Some(MAX_ACK_ID)
    );
    assert_eq!(
        decode_err(&format!(r#"2{}["a"]"#, MAX_ACK_ID + 1)),
        SioDecodeError::InvalidAckId
    );
    assert_eq!(
        decode_err(r#"2123456789012345678901234567890["a"]"#),
        SioDecodeError::InvalidAckId
    );
    assert_eq!(decode("3/x,0[]").id, Some(0));
    // An ack without an id decodes (the reference allows it); the server ignores it.
    assert_eq!(decode("3[]").id, None);
}

#[test]
fn namespaces() {
    assert_eq!(&*decode("2/a/b,[\"x\"]").nsp, "/a/b");
    assert_eq!(&*decode("0/,").nsp, "/");
    assert_eq!(&*decode("0/é,").nsp, "/é");
    // No leading slash: no namespace, so the text is id/payload.
    assert_eq!(decode_err("0admin,"), SioDecodeError::InvalidJson);
    // A `/` namespace runs to the end when no comma follows, swallowing what comes after.
    assert_eq!(
        decode_err(r#"2/admin["a"]"#),
        SioDecodeError::InvalidPayload
    );
    // V5 keeps a `?` in the namespace; only V4 CONNECT treats it as a query.
    let p = decode("0/admin?x=1,");
    assert_eq!((&*p.nsp, p.query.as_deref()), ("/admin?x=1", None));
}

#[test]
fn attachment_count_rules() {
    use SioDecodeError::*;
    assert_eq!(decode_err("5"), InvalidAttachments);
    assert_eq!(decode_err(r#"5["a"]"#), InvalidAttachments);
    assert_eq!(decode_err(r#"5-["a"]"#), InvalidAttachments);
    assert_eq!(decode_err(r#"50-["a"]"#), InvalidAttachments);
    assert_eq!(decode_err(r#"5a-["a"]"#), InvalidAttachments);
    assert_eq!(decode_err(r#"51["a"]"#), InvalidAttachments);
    assert_eq!(decode_err(r#"5 1-["a"]"#), InvalidAttachments);
    assert_eq!(decode_err("6"), InvalidAttachments);
    assert_eq!(decode_err(r#"611["a"]"#), InvalidAttachments);
    assert_eq!(decode_err(r#"511-["a"]"#), TooManyAttachments);
    assert_eq!(
        decode_err(r#"599999999999999999999999-["a"]"#),
        TooManyAttachments
    );
    let mut d = v5();
    assert_eq!(d.decode_text(Utf8Bytes::from(r#"510-["a"]"#)), Ok(None));
    assert_eq!(
        d.decode_text(Utf8Bytes::from(r#"510-["a"]"#)),
        Err(UnexpectedText)
    );
    // The limit is the decoder's.
    let mut d = Decoder::new(SioProtocol::V5, 2);
    assert_eq!(
        d.decode_text(Utf8Bytes::from(r#"53-["a"]"#)),
        Err(TooManyAttachments)
    );
    assert_eq!(d.decode_text(Utf8Bytes::from(r#"52-["a"]"#)), Ok(None));
    let mut d = Decoder::new(SioProtocol::V5, 0);
    assert_eq!(
        d.decode_text(Utf8Bytes::from(r#"51-["a"]"#)),
        Err(TooManyAttachments)
    );
    // Non-binary packets ignore the limit and never wait.
    assert!(
        d.decode_text(Utf8Bytes::from(r#"2["a"]"#))
            .unwrap()
            .is_some()
    );
}

#[test]
fn eleven_attachments_exceed_the_default() {
    let placeholders: Vec<String> = (0..11)
        .map(|i| format!(r#"{{"_placeholder":true,"num":{i}}}"#))
        .collect();
    let header = format!(r#"511-["a",{}]"#, placeholders.join(","));
    assert_eq!(
        v5().decode_text(Utf8Bytes::from(header)),
        Err(SioDecodeError::TooManyAttachments)
    );
    let header = format!(r#"510-["a",{}]"#, placeholders[..10].join(","));
    let mut d = v5();
    assert_eq!(d.decode_text(Utf8Bytes::from(header)), Ok(None));
    for i in 0..9 {
        assert_eq!(d.decode_binary(Bytes::from(vec![i])), Ok(None));
    }
    assert_eq!(
        d.decode_binary(Bytes::from_static(b"last"))
            .unwrap()
            .unwrap()
            .attachments
            .len(),
        10
    );
}

#[test]
fn bad_placeholders() {
    use SioDecodeError::BadPlaceholder;
    let bad = [
        r#"51-["a",{"_placeholder":true,"num":1}]"#,
        r#"51-["a",{"_placeholder":true,"num":-1}]"#,
        r#"51-["a",{"_placeholder":true,"num":0.5}]"#,
        r#"51-["a",{"_placeholder":true,"num":"0"}]"#,
        r#"51-["a",{"_placeholder":true,"num":null}]"#,
        r#"51-["a",{"_placeholder":true}]"#,
        r#"52-["a",{"x":[{"y":{"_placeholder":true,"num":2}}]}]"#,
        r#"51-["a",{"num":0,"_placeholder":true,"num":7}]"#,
        r#"61-[{"_placeholder":true,"num":1}]"#,
        r#"51-/n,3["a",[[{"_placeholder":true,"num":99999999999999999999}]]]"#,
    ];
    for header in bad {
        let mut d = v5();
        assert_eq!(
            d.decode_text(Utf8Bytes::from(header)),
            Err(BadPlaceholder),
            "{header}"
        );
        assert!(!d.is_waiting(), "{header}");
    }
    let good = [
        r#"52-["a",{"_placeholder":true,"num":1.0},{"_placeholder":true,"num":0}]"#,
        r#"51-["a",{"num":0,"_placeholder":true}]"#,
        r#"51-["a",{"_placeholder":false,"num":9}]"#,
        r#"51-["a",{"_placeholder":"true","num":9}]"#,
        r#"51-["a",{"_placeholder":1,"num":9}]"#,
        r#"51-["a",{"_placeholder":true,"num":0,"extra":[1]}]"#,
        r#"51-[7,{"k":{"_placeholder":true,"num":0e0}}]"#,
    ];
    for header in good {
        assert_eq!(
            v5().decode_text(Utf8Bytes::from(header)),
            Ok(None),
            "{header}"
        );
    }
    // Placeholders mean nothing in a non-binary packet.
    assert!(
        decode(r#"2["a",{"_placeholder":true,"num":5}]"#)
            .attachments
            .is_empty()
    );
}

#[test]
fn text_while_awaiting_attachments_is_an_error() {
    let mut d = v5();
    assert_eq!(
        d.decode_text(Utf8Bytes::from(r#"52-["a",{"_placeholder":true,"num":0}]"#)),
        Ok(None)
    );
    assert_eq!(d.decode_binary(Bytes::from_static(b"1")), Ok(None));
    assert_eq!(
        d.decode_text(Utf8Bytes::from(r#"2["b"]"#)),
        Err(SioDecodeError::UnexpectedText)
    );
    // The waiting packet is dropped with the error.
    assert!(!d.is_waiting());
    assert_eq!(d.buffered_bytes(), 0);
    assert_eq!(
        d.decode_binary(Bytes::from_static(b"2")),
        Err(SioDecodeError::UnexpectedAttachment)
    );
}

#[test]
fn binary_while_not_awaiting_is_an_error() {
    let mut d = v5();
    assert_eq!(
        d.decode_binary(Bytes::from_static(b"x")),
        Err(SioDecodeError::UnexpectedAttachment)
    );
    assert!(
        d.decode_text(Utf8Bytes::from(r#"2["a"]"#))
            .unwrap()
            .is_some()
    );
    assert_eq!(
        d.decode_binary(Bytes::from_static(b"x")),
        Err(SioDecodeError::UnexpectedAttachment)
    );
}

#[test]
fn errors_display_and_are_std_errors() {
    let e: Box<dyn std::error::Error> = Box::new(SioDecodeError::UnknownType(b'9'));
    assert_eq!(e.to_string(), "unknown packet type 0x39");
    assert_eq!(
        SioDecodeError::ReservedEventName.to_string(),
        "reserved event name"
    );
    assert_eq!(
        SioDecodeError::TooManyAttachments.to_string(),
        "too many attachments"
    );
}

// ---- protocol 4 ---------------------------------------------------------------------------

#[test]
fn v4_connect_query_is_split_off() {
    let p = v4()
        .decode_text(Utf8Bytes::from("0/admin?token=1234,"))
        .unwrap()
        .unwrap();
    assert_eq!(
        (p.kind, &*p.nsp, p.query.as_deref()),
        (PacketType::Connect, "/admin", Some("token=1234"))
    );
    assert_eq!(p.data, None);
    let p = v4()
        .decode_text(Utf8Bytes::from("0/admin?a=1&b=?2"))
        .unwrap()
        .unwrap();
    assert_eq!((&*p.nsp, p.query.as_deref()), ("/admin", Some("a=1&b=?2")));
    let p = v4()
        .decode_text(Utf8Bytes::from("0/admin,"))
        .unwrap()
        .unwrap();
    assert_eq!((&*p.nsp, p.query.as_deref()), ("/admin", None));
    let p = v4()
        .decode_text(Utf8Bytes::from("0/?x=1,"))
        .unwrap()
        .unwrap();
    assert_eq!((&*p.nsp, p.query.as_deref()), ("/", Some("x=1")));
    // Only CONNECT carries a query.
    let p = v4()
        .decode_text(Utf8Bytes::from("1/admin?token=1,"))
        .unwrap()
        .unwrap();
    assert_eq!((&*p.nsp, p.query.as_deref()), ("/admin?token=1", None));
}

#[test]
fn v4_connect_query_encodes_back() {
    let p = v4()
        .decode_text(Utf8Bytes::from("0/admin?token=1234,"))
        .unwrap()
        .unwrap();
    assert_eq!(text(&p, SioProtocol::V4), "0/admin?token=1234,");
    // V5 has no query.
    assert_eq!(text(&p, SioProtocol::V5), "0/admin,");
}

#[test]
fn v4_connect_reply_has_no_payload() {
    let reply = Packet::connect("/admin", Some(Utf8Bytes::from(r#"{"sid":"abc"}"#)));
    assert_eq!(text(&reply, SioProtocol::V4), "0/admin,");
    assert_eq!(text(&reply, SioProtocol::V5), r#"0/admin,{"sid":"abc"}"#);
    assert_eq!(text(&Packet::connect("/", None), SioProtocol::V4), "0");
    assert_eq!(text(&Packet::connect("", None), SioProtocol::V5), "0");
}

#[test]
fn v4_connect_error_is_a_string() {
    let obj = Packet::connect_error(
        "/admin",
        Utf8Bytes::from(r#"{"message":"Not authorized","data":{"a":1}}"#),
    );
    assert_eq!(text(&obj, SioProtocol::V4), r#"4/admin,"Not authorized""#);
    assert_eq!(
        text(&obj, SioProtocol::V5),
        r#"4/admin,{"message":"Not authorized","data":{"a":1}}"#
    );
    let s = Packet::connect_error("/admin", Utf8Bytes::from(r#""Not authorized""#));
    assert_eq!(text(&s, SioProtocol::V4), r#"4/admin,"Not authorized""#);
    let escaped = Packet::connect_error("/", Utf8Bytes::from(r#"{"message":"a\"b\n"}"#));
    assert_eq!(text(&escaped, SioProtocol::V4), r#"4"a\"b\n""#);
    // Decoded back in V4 it is a string payload.
    let p = v4()
        .decode_text(Utf8Bytes::from(r#"4/admin,"Not authorized""#))
        .unwrap()
        .unwrap();
    assert_eq!(data(&p), Some(r#""Not authorized""#));
}

#[test]
fn v4_events_are_as_v5() {
    let mut d = v4();
    let p = d
        .decode_text(Utf8Bytes::from(r#"2/admin,5["message",1]"#))
        .unwrap()
        .unwrap();
    assert_eq!(
        (&*p.nsp, p.id, p.event_name().as_deref()),
        ("/admin", Some(5), Some("message"))
    );
    assert_eq!(text(&p, SioProtocol::V4), r#"2/admin,5["message",1]"#);
    assert_eq!(
        d.decode_text(Utf8Bytes::from(r#"51-["a",{"_placeholder":true,"num":0}]"#)),
        Ok(None)
    );
    assert!(
        d.decode_binary(Bytes::from_static(b"\x01"))
            .unwrap()
            .is_some()
    );
    assert_eq!(
        d.decode_text(Utf8Bytes::from(r#"2["disconnect"]"#)),
        Err(SioDecodeError::ReservedEventName)
    );
}

// ---- encoder ------------------------------------------------------------------------------

#[test]
fn event_builder() {
    let p = Packet::event("/", "message-back", r#"[1,"2",{"3":[true]}]"#, None, vec![]);
    assert_eq!(p.kind, PacketType::Event);
    assert_eq!(
        text(&p, SioProtocol::V5),
        r#"2["message-back",1,"2",{"3":[true]}]"#
    );
    let p = Packet::event("/custom", "auth", "[{}]", None, vec![]);
    assert_eq!(text(&p, SioProtocol::V5), r#"2/custom,["auth",{}]"#);
    let p = Packet::event("/", "ping", "[]", Some(12), vec![]);
    assert_eq!(text(&p, SioProtocol::V5), r#"212["ping"]"#);
    let p = Packet::event("/", "q\"\\\n\u{1}\u{7f}é", " [ 1 ] ", None, vec![]);
    assert_eq!(
        text(&p, SioProtocol::V5),
        "2[\"q\\\"\\\\\\n\\u0001\u{7f}é\",1]"
    );
    assert_eq!(p.event_name().as_deref(), Some("q\"\\\n\u{1}\u{7f}é"));
    // Bare (non-array) text is one argument.
    let p = Packet::event("/", "n", "5", None, vec![]);
    assert_eq!(text(&p, SioProtocol::V5), r#"2["n",5]"#);
}

#[test]
fn binary_event_builder() {
    let atts = vec![Bytes::from_static(b"ab"), Bytes::from_static(b"cd")];
    let p = Packet::event(
        "/admin",
        "file",
        r#"[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        Some(9),
        atts.clone(),
    );
    assert_eq!(p.kind, PacketType::BinaryEvent);
    let (t, out) = p.encode(SioProtocol::V5);
    assert_eq!(
        &*t,
        r#"52-/admin,9["file",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
    );
    assert_eq!(out, atts);
}

#[test]
fn type_follows_the_attachments_when_encoding() {
    let mut p = Packet::event("/", "a", "[]", None, vec![]);
    p.kind = PacketType::BinaryEvent;
    assert_eq!(
        p.encode(SioProtocol::V5),
        (Utf8Bytes::from(r#"2["a"]"#), vec![])
    );
    let mut p = Packet::ack("/", 1, Utf8Bytes::from("[]"), vec![]);
    p.attachments.push(Bytes::from_static(b"x"));
    assert_eq!(
        p.encode(SioProtocol::V5),
        (Utf8Bytes::from("61-1[]"), vec![Bytes::from_static(b"x")])
    );
    // Attachments on other types are not sent.
    let mut p = Packet::disconnect("/a");
    p.attachments.push(Bytes::from_static(b"x"));
    assert_eq!(p.encode(SioProtocol::V5), (Utf8Bytes::from("1/a,"), vec![]));
}

#[test]
fn disconnect_and_misc_encodings() {
    assert_eq!(text(&Packet::disconnect("/"), SioProtocol::V5), "1");
    assert_eq!(
        text(&Packet::disconnect("/admin"), SioProtocol::V5),
        "1/admin,"
    );
    assert_eq!(
        text(&Packet::disconnect("/admin"), SioProtocol::V4),
        "1/admin,"
    );
    let p = Packet::connect("/custom", Some(Utf8Bytes::from(r#"{"sid":"x1"}"#)));
    assert_eq!(text(&p, SioProtocol::V5), r#"0/custom,{"sid":"x1"}"#);
    let mut out = String::from("4");
    Packet::event("/", "m", "[]", None, vec![]).encode_text_into(SioProtocol::V5, &mut out);
    assert_eq!(out, r#"42["m"]"#);
}

#[test]
fn args_and_name_only_for_the_right_types() {
    assert_eq!(decode("0").event_name(), None);
    assert_eq!(decode("0").args(), None);
    assert_eq!(decode("1/a").args(), None);
    assert_eq!(decode(r#"4"x""#).args(), None);
    assert_eq!(decode(r#"3["a",1]"#).args().as_deref(), Some(r#"["a",1]"#));
    assert_eq!(decode(r#"2["only"]"#).args().as_deref(), Some("[]"));
    assert_eq!(
        decode(r#"2["a", [1,2] ,3 ]"#).args().as_deref(),
        Some("[ [1,2] ,3 ]")
    );
}
