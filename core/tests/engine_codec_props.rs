//! Properties of the Engine.IO codecs: every framing round-trips arbitrary packets, and the
//! incremental payload decoder agrees with the whole-body decoder on any input and chunking.

use proptest::prelude::*;
use volley_core::engine::packet::{DecodeError, Message, Packet, Protocol};
use volley_core::engine::payload::{Framing, PayloadDecoder, decode_payload, encode_payload};
use volley_core::{Bytes, Utf8Bytes};

/// Text data; v4 polling cannot carry U+001E inside a packet (it is the separator).
fn arb_text(v4_polling: bool) -> impl Strategy<Value = Utf8Bytes> {
    prop_oneof![
        any::<String>(),
        "[a-z0-9€😀:\\\\\"\n]{0,12}",
        Just(String::new()),
    ]
    .prop_map(move |s| {
        if v4_polling {
            Utf8Bytes::from(s.replace('\u{1e}', ""))
        } else {
            Utf8Bytes::from(s)
        }
    })
}

fn arb_packet(v4_polling: bool) -> impl Strategy<Value = Packet> {
    prop_oneof![
        arb_text(v4_polling).prop_map(Packet::Open),
        Just(Packet::Close),
        arb_text(v4_polling).prop_map(Packet::Ping),
        arb_text(v4_polling).prop_map(Packet::Pong),
        arb_text(v4_polling).prop_map(|t| Packet::Message(Message::Text(t))),
        proptest::collection::vec(any::<u8>(), 0..40)
            .prop_map(|b| Packet::Message(Message::Binary(Bytes::from(b)))),
        Just(Packet::Upgrade),
        Just(Packet::Noop),
    ]
}

fn arb_framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        Just(Framing::V4),
        Just(Framing::V3String),
        Just(Framing::V3Binary)
    ]
}

/// Bytes drawn mostly from the characters the framings care about, so random input reaches
/// deep parser states rather than failing on the first byte.
fn arb_body() -> impl Strategy<Value = Vec<u8>> {
    let interesting = prop_oneof![
        Just(0x00u8),
        Just(0x01),
        Just(0x02),
        Just(0x04),
        Just(0x06),
        Just(0x09),
        Just(0x1e),
        Just(0xff),
        Just(b':'),
        Just(b'b'),
        Just(b'A'),
        Just(b'='),
        Just(0xe2),
        Just(0x82),
        Just(0xac),
        Just(0xf0),
        Just(0x9f),
        0x30u8..=0x39,
        any::<u8>(),
    ];
    prop_oneof![
        proptest::collection::vec(interesting, 0..48),
        proptest::collection::vec(any::<u8>(), 0..48),
    ]
}

/// Feeds `body` in chunks ending at `cuts` (sorted, deduplicated), recording that an error
/// from `feed` is sticky and is also what `finish` returns.
fn incremental(body: &[u8], framing: Framing, cuts: &[usize]) -> Result<Vec<Packet>, DecodeError> {
    let mut decoder = PayloadDecoder::new(framing);
    let mut start = 0;
    let mut first_err = None;
    for &cut in cuts.iter().chain(std::iter::once(&body.len())) {
        let cut = cut.min(body.len());
        if cut < start {
            continue;
        }
        let res = decoder.feed(&body[start..cut]);
        match (&first_err, res) {
            (None, Err(e)) => first_err = Some(e),
            (Some(e), res) => assert_eq!(res, Err(e.clone()), "feed errors are sticky"),
            (None, Ok(())) => {}
        }
        start = cut;
    }
    let result = decoder.finish();
    if let Some(e) = first_err {
        assert_eq!(result, Err(e), "finish repeats the feed error");
    }
    result
}

fn byte_at_a_time(body: &[u8], framing: Framing) -> Result<Vec<Packet>, DecodeError> {
    let cuts: Vec<usize> = (0..body.len()).collect();
    incremental(body, framing, &cuts)
}

fn mutate(mut body: Vec<u8>, ops: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, byte, op) in ops {
        let at = if body.is_empty() {
            0
        } else {
            at % (body.len() + 1)
        };
        match op % 3 {
            0 if at < body.len() => body[at] = byte,
            1 => body.insert(at, byte),
            _ if at < body.len() => {
                body.remove(at);
            }
            _ => body.push(byte),
        }
    }
    body
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn v4_payload_round_trip(packets in proptest::collection::vec(arb_packet(true), 1..8)) {
        let out = encode_payload(&packets, Protocol::V4, true);
        prop_assert!(!out.binary);
        prop_assert_eq!(decode_payload(out.body.clone(), Framing::V4), Ok(packets.clone()));
        prop_assert_eq!(byte_at_a_time(&out.body, Framing::V4), Ok(packets));
    }

    #[test]
    fn v3_string_payload_round_trip(packets in proptest::collection::vec(arb_packet(false), 0..8)) {
        let out = encode_payload(&packets, Protocol::V3, false);
        prop_assert!(!out.binary);
        prop_assert_eq!(decode_payload(out.body.clone(), Framing::V3String), Ok(packets.clone()));
        prop_assert_eq!(byte_at_a_time(&out.body, Framing::V3String), Ok(packets));
    }

    #[test]
    fn v3_xhr2_payload_round_trip(packets in proptest::collection::vec(arb_packet(false), 0..8)) {
        let out = encode_payload(&packets, Protocol::V3, true);
        prop_assert_eq!(out.binary, packets.iter().any(Packet::is_binary));
        let framing = if out.binary { Framing::V3Binary } else { Framing::V3String };
        prop_assert_eq!(decode_payload(out.body.clone(), framing), Ok(packets.clone()));
        prop_assert_eq!(byte_at_a_time(&out.body, framing), Ok(packets));
    }

    #[test]
    fn packet_text_and_ws_round_trip(packet in arb_packet(false)) {
        for protocol in [Protocol::V3, Protocol::V4] {
            let mut out = Vec::new();
            packet.encode_text(protocol, &mut out);
            let text = Utf8Bytes::try_from_bytes(Bytes::from(out)).unwrap();
            prop_assert_eq!(Packet::decode_text(text, protocol), Ok(packet.clone()));
            prop_assert_eq!(Packet::from_ws(packet.to_ws(protocol), protocol), Ok(packet.clone()));
        }
    }

    #[test]
    fn byte_at_a_time_equals_whole(body in arb_body(), framing in arb_framing()) {
        let whole = decode_payload(Bytes::from(body.clone()), framing);
        prop_assert_eq!(byte_at_a_time(&body, framing), whole);
    }

    #[test]
    fn any_chunking_equals_whole(
        body in arb_body(),
        framing in arb_framing(),
        mut cuts in proptest::collection::vec(0usize..48, 0..6),
    ) {
        cuts.sort_unstable();
        cuts.dedup();
        let whole = decode_payload(Bytes::from(body.clone()), framing);
        prop_assert_eq!(incremental(&body, framing, &cuts), whole);
    }

    #[test]
    fn mutated_valid_bodies_decode_the_same_in_chunks(
        packets in proptest::collection::vec(arb_packet(false), 0..5),
        protocol in prop_oneof![Just(Protocol::V3), Just(Protocol::V4)],
        ops in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..3),
    ) {
        let out = encode_payload(&packets, protocol, true);
        let framing = match (protocol, out.binary) {
            (Protocol::V4, _) => Framing::V4,
            (Protocol::V3, true) => Framing::V3Binary,
            (Protocol::V3, false) => Framing::V3String,
        };
        let body = mutate(out.body.to_vec(), &ops);
        let whole = decode_payload(Bytes::from(body.clone()), framing);
        prop_assert_eq!(byte_at_a_time(&body, framing), whole);
    }
}
