//! Properties of the HTTP codec: every input is parsed or rejected with `HttpError`, never a
//! panic, and the outcome does not depend on how the bytes were split across reads.

use bytes::BytesMut;
use proptest::prelude::*;
use volley_core::http::{
    BodyDecoder, BodyKind, BodyProgress, HttpError, Limits, RequestHead, Response, parse_head,
    percent_decode, websocket_handshake,
};

/// What a parse outcome says, in a comparable form.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    NeedMore,
    Head(Summary, usize),
    Error(HttpError),
}

#[derive(Debug, PartialEq, Eq)]
struct Summary {
    method: String,
    target: String,
    minor: u8,
    headers: Vec<(String, Vec<u8>)>,
    body_kind: BodyKind,
    keep_alive: bool,
    upgrade: bool,
}

fn summary(head: &RequestHead) -> Summary {
    Summary {
        method: head.method_str().to_owned(),
        target: head.target().to_owned(),
        minor: head.http_minor_version(),
        headers: head
            .headers()
            .map(|(n, v)| (n.to_owned(), v.to_vec()))
            .collect(),
        body_kind: head.body_kind(),
        keep_alive: head.keep_alive(),
        upgrade: head.is_websocket_upgrade(),
    }
}

fn outcome(buf: &[u8], limits: &Limits) -> Outcome {
    match parse_head(buf, limits) {
        Ok(None) => Outcome::NeedMore,
        Ok(Some((head, consumed))) => Outcome::Head(summary(&head), consumed),
        Err(e) => Outcome::Error(e),
    }
}

fn limits() -> impl Strategy<Value = Limits> {
    prop_oneof![
        Just(Limits::default()),
        (0usize..300, 0usize..8).prop_map(|(max_head_bytes, max_headers)| Limits {
            max_head_bytes,
            max_headers
        }),
    ]
}

fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => Just("Host: example.com".to_owned()),
        1 => Just("Content-Length: 5".to_owned()),
        1 => Just("Content-Length: 5, 5".to_owned()),
        1 => Just("content-length: 7".to_owned()),
        1 => Just("Content-Length: 99999999999999999999".to_owned()),
        1 => Just("Transfer-Encoding: chunked".to_owned()),
        1 => Just("Transfer-Encoding: gzip".to_owned()),
        1 => Just("Connection: close".to_owned()),
        1 => Just("Connection: keep-alive, Upgrade".to_owned()),
        1 => Just("Upgrade: websocket".to_owned()),
        1 => Just("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".to_owned()),
        1 => Just("Sec-WebSocket-Version: 13".to_owned()),
        8 => "[A-Za-z-]{1,12}: [ -~]{0,20}",
        1 => "[ -~]{0,16}",
    ]
}

/// Request heads that are mostly plausible, with a few corruptions, and plain noise.
fn head_bytes() -> impl Strategy<Value = Vec<u8>> {
    let plausible = (
        prop_oneof![
            6 => Just("GET"),
            4 => Just("POST"),
            1 => Just("OPTIONS"),
            1 => Just("get"),
            1 => Just("G T"),
        ],
        "/[a-z./?=&%0-9+]{0,30}",
        prop_oneof![
            8 => Just("HTTP/1.1"),
            3 => Just("HTTP/1.0"),
            1 => Just("HTTP/2.0"),
            1 => Just("HTTP/1."),
        ],
        prop::collection::vec(field(), 0..8),
        prop_oneof![4 => Just("\r\n"), 1 => Just("\n")],
        prop::collection::vec(any::<u8>(), 0..8),
        prop_oneof![
            3 => Just(Vec::new()),
            1 => prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..3),
        ],
    )
        .prop_map(|(method, target, version, fields, eol, tail, flips)| {
            let mut raw = format!("{method} {target} {version}{eol}");
            for f in fields {
                raw.push_str(&f);
                raw.push_str(eol);
            }
            raw.push_str(eol);
            let mut raw = raw.into_bytes();
            raw.extend(tail);
            for (index, byte) in flips {
                let i = index.index(raw.len());
                raw[i] = byte;
            }
            raw
        });
    prop_oneof![
        4 => plausible,
        1 => prop::collection::vec(any::<u8>(), 0..200),
    ]
}

/// Chunked bodies built from random chunks, extensions and trailers, then perhaps corrupted.
fn chunked_bytes() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(
            (
                prop::collection::vec(any::<u8>(), 1..40),
                prop_oneof![Just(""), Just(";a=b"), Just(" ;x"), Just(";q=\"v v\"")],
                any::<bool>(),
            ),
            0..6,
        ),
        prop::collection::vec("[A-Za-z-]{1,8}: [ -~]{0,10}", 0..3),
        prop::collection::vec(any::<u8>(), 0..10),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..2),
    )
        .prop_map(|(chunks, trailers, tail, flips)| {
            let mut raw = Vec::new();
            for (data, ext, upper) in chunks {
                let size = if upper {
                    format!("{:X}", data.len())
                } else {
                    format!("{:x}", data.len())
                };
                raw.extend_from_slice(size.as_bytes());
                raw.extend_from_slice(ext.as_bytes());
                raw.extend_from_slice(b"\r\n");
                raw.extend_from_slice(&data);
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"0\r\n");
            for t in trailers {
                raw.extend_from_slice(t.as_bytes());
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(b"\r\n");
            raw.extend(tail);
            for (index, byte) in flips {
                let i = index.index(raw.len());
                raw[i] = byte;
            }
            raw
        })
}

fn body_kind() -> impl Strategy<Value = BodyKind> {
    prop_oneof![
        Just(BodyKind::None),
        Just(BodyKind::Chunked),
        (0u64..300).prop_map(BodyKind::Length),
        Just(BodyKind::Length(u64::MAX)),
    ]
}

/// Feeds `input` in pieces cut at `cuts`; returns the final progress and every byte not
/// consumed (left in the buffer or never fed).
fn feed_in_pieces(
    kind: BodyKind,
    limit: usize,
    input: &[u8],
    cuts: &[prop::sample::Index],
) -> (Result<BodyProgress, HttpError>, Vec<u8>) {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(input.len() + 1)).collect();
    points.push(input.len());
    points.sort_unstable();
    let mut decoder = BodyDecoder::new(kind, limit);
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut progress = decoder.feed(&mut buf);
    for point in points {
        if !matches!(progress, Ok(BodyProgress::NeedMore)) {
            break;
        }
        buf.extend_from_slice(&input[fed..point]);
        fed = point;
        progress = decoder.feed(&mut buf);
    }
    let mut left = buf.to_vec();
    left.extend_from_slice(&input[fed..]);
    (progress, left)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn parse_head_growing_prefix_equals_whole(raw in head_bytes(), limits in limits()) {
        let whole = outcome(&raw, &limits);
        let mut first = Outcome::NeedMore;
        for n in 0..=raw.len() {
            let result = outcome(&raw[..n], &limits);
            if result != Outcome::NeedMore {
                first = result;
                break;
            }
        }
        prop_assert_eq!(first, whole);
    }

    #[test]
    fn parse_head_consumed_is_within_buffer_and_limit(raw in head_bytes(), limits in limits()) {
        if let Ok(Some((_, consumed))) = parse_head(&raw, &limits) {
            prop_assert!(consumed <= raw.len());
            prop_assert!(consumed <= limits.max_head_bytes);
        }
    }

    #[test]
    fn from_parts_agrees_with_parse_head(raw in head_bytes()) {
        if let Ok(Some((head, _))) = parse_head(&raw, &Limits::default()) {
            if head.http_minor_version() == 1 {
                let rebuilt = RequestHead::from_parts(
                    head.method_str(),
                    head.target(),
                    head.headers().map(|(n, v)| (n.to_owned(), v.to_vec())).collect(),
                );
                prop_assert_eq!(rebuilt.map(|h| summary(&h)), Ok(summary(&head)));
            }
        }
    }

    #[test]
    fn body_decoder_chunking_does_not_matter(
        input in prop_oneof![chunked_bytes(), prop::collection::vec(any::<u8>(), 0..300)],
        kind in body_kind(),
        limit in prop_oneof![Just(1usize << 20), 0usize..200],
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let mut buf = BytesMut::from(&input[..]);
        let whole = BodyDecoder::new(kind, limit).feed(&mut buf);
        let (pieces, left) = feed_in_pieces(kind, limit, &input, &cuts);
        let is_ok = whole.is_ok();
        prop_assert_eq!(pieces, whole);
        if is_ok {
            prop_assert_eq!(left, buf.to_vec());
        }
    }

    #[test]
    fn valid_chunked_bodies_decode(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..50), 0..6),
        next in prop::collection::vec(any::<u8>(), 0..10),
    ) {
        let mut raw = Vec::new();
        for c in &chunks {
            raw.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            raw.extend_from_slice(c);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        raw.extend_from_slice(&next);
        let mut buf = BytesMut::from(&raw[..]);
        let expected: Vec<u8> = chunks.concat();
        let result = BodyDecoder::new(BodyKind::Chunked, 1 << 20).feed(&mut buf);
        prop_assert_eq!(result, Ok(BodyProgress::Done(expected.clone().into())));
        prop_assert_eq!(buf.to_vec(), next);
        let mut buf = BytesMut::from(&raw[..]);
        let too_small = expected.len().saturating_sub(1);
        if !expected.is_empty() {
            let result = BodyDecoder::new(BodyKind::Chunked, too_small).feed(&mut buf);
            prop_assert_eq!(result, Err(HttpError::BodyTooLarge));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..400), limits in limits()) {
        if let Ok(Some((head, consumed))) = parse_head(&raw, &limits) {
            let _ = websocket_handshake(&head);
            let _ = (head.path(), head.query_param("EIO"), head.header("x"), head.keep_alive());
            let mut rest = BytesMut::from(&raw[consumed..]);
            let _ = BodyDecoder::new(head.body_kind(), 100).feed(&mut rest);
        }
        for kind in [BodyKind::None, BodyKind::Chunked, BodyKind::Length(50)] {
            let mut buf = BytesMut::from(&raw[..]);
            let _ = BodyDecoder::new(kind, 100).feed(&mut buf);
        }
        let text = String::from_utf8_lossy(&raw);
        let _ = percent_decode(&text, true);
        let _ = RequestHead::from_parts(&text, &text, vec![(text.to_string(), raw.clone())]);
    }

    #[test]
    fn responses_never_carry_injected_lines(
        status in any::<u16>(),
        values in prop::collection::vec("[ -~\r\n\0\t]{0,20}", 0..5),
        body in prop::collection::vec(any::<u8>(), 0..20),
        close in any::<bool>(),
    ) {
        const NAMES: [&str; 5] = ["X-A", "Content-Length", "Connection", "Bad Name", "Set-Cookie"];
        let mut response = Response::new(status).body(body);
        for (i, v) in values.iter().enumerate() {
            response = response.header(NAMES[i % NAMES.len()], v.clone());
        }
        response.close = close;
        let mut out = BytesMut::new();
        response.write_to(&mut out);
        let end = out.windows(4).position(|w| w == b"\r\n\r\n");
        prop_assert!(end.is_some());
        let head = &out[..end.unwrap_or(0)];
        let text = std::str::from_utf8(head);
        prop_assert!(text.is_ok());
        let mut lines = text.unwrap_or("").split("\r\n");
        let status_line = lines.next().unwrap_or("");
        prop_assert!(status_line.starts_with("HTTP/1.1 "), "{}", status_line);
        for line in lines {
            prop_assert!(!line.contains('\r') && !line.contains('\n') && !line.contains('\0'));
            let name = line.split_once(": ").map(|(n, _)| n);
            let allowed = ["X-A", "Content-Length", "Connection", "Set-Cookie"];
            prop_assert!(name.is_some_and(|n| allowed.contains(&n)), "{:?}", line);
        }
    }
}
