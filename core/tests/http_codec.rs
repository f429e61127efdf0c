//! The HTTP/1.1 codec: heads, bodies, responses, query strings, the WebSocket handshake.

use bytes::{Bytes, BytesMut};
use volley_core::http::{
    BodyDecoder, BodyKind, BodyProgress, HttpError, Limits, MAX_CHUNK_LINE, MAX_TRAILER_BYTES,
    Method, RequestHead, Response, parse_head, percent_decode, query_pairs, reason_phrase,
    websocket_accept, websocket_handshake,
};
use volley_core::sha1::sha1;

fn parse(raw: &[u8]) -> Result<Option<(RequestHead, usize)>, HttpError> {
    parse_head(raw, &Limits::default())
}

fn head(raw: &str) -> RequestHead {
    match parse(raw.as_bytes()) {
        Ok(Some((head, consumed))) => {
            assert_eq!(consumed, raw.len(), "whole input is the head");
            head
        }
        other => panic!("expected a complete head, got {other:?}"),
    }
}

fn err(raw: &[u8]) -> HttpError {
    match parse(raw) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_whole(
    kind: BodyKind,
    limit: usize,
    input: &[u8],
) -> (Result<BodyProgress, HttpError>, BytesMut) {
    let mut buf = BytesMut::from(input);
    let mut decoder = BodyDecoder::new(kind, limit);
    let progress = decoder.feed(&mut buf);
    (progress, buf)
}

fn done(body: &'static [u8]) -> Result<BodyProgress, HttpError> {
    Ok(BodyProgress::Done(Bytes::from_static(body)))
}

fn written(response: &Response) -> String {
    let mut out = BytesMut::new();
    response.write_to(&mut out);
    String::from_utf8(out.to_vec()).expect("test responses are UTF-8")
}

// ---- heads ----

#[test]
fn get_head_with_engine_io_query() {
    let h = head(
        "GET /engine.io/?EIO=4&transport=polling&t=NzK3 HTTP/1.1\r\nHost: localhost:3000\r\nAccept: */*\r\n\r\n",
    );
    assert_eq!(h.method(), Method::Get);
    assert_eq!(h.method_str(), "GET");
    assert_eq!(h.target(), "/engine.io/?EIO=4&transport=polling&t=NzK3");
    assert_eq!(h.path(), "/engine.io/");
    assert_eq!(h.query(), "EIO=4&transport=polling&t=NzK3");
    assert_eq!(h.query_param("EIO").as_deref(), Some("4"));
    assert_eq!(h.query_param("transport").as_deref(), Some("polling"));
    assert_eq!(h.query_param("sid"), None);
    assert_eq!(h.http_minor_version(), 1);
    assert!(h.keep_alive());
    assert_eq!(h.body_kind(), BodyKind::None);
    assert!(!h.is_websocket_upgrade());
    assert_eq!(h.header("host"), Some("localhost:3000"));
}

#[test]
fn post_head_with_body_left_in_buffer() {
    let raw = b"POST /socket.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 6\r\n\r\n4hello";
    let (h, consumed) = parse(raw).unwrap().unwrap();
    assert_eq!(&raw[consumed..], b"4hello");
    assert_eq!(h.method(), Method::Post);
    assert_eq!(h.body_kind(), BodyKind::Length(6));
    assert_eq!(h.content_type(), Some("text/plain;charset=UTF-8"));
    assert_eq!(h.query_param("sid").as_deref(), Some("abc"));
}

#[test]
fn methods_are_case_sensitive_tokens() {
    let cases = [
        ("GET", Method::Get),
        ("POST", Method::Post),
        ("OPTIONS", Method::Options),
        ("HEAD", Method::Head),
        ("PUT", Method::Put),
        ("DELETE", Method::Delete),
        ("PATCH", Method::Patch),
        ("get", Method::Other),
        ("PROPFIND", Method::Other),
    ];
    for (token, method) in cases {
        let h = head(&format!("{token} / HTTP/1.1\r\n\r\n"));
        assert_eq!(h.method(), method, "{token}");
        assert_eq!(h.method_str(), token);
    }
}

#[test]
fn query_params_are_percent_decoded() {
    let h = head(
        "GET /p?a=1&name=J%C3%BCrgen+M%20x&empty=&flag&bad=%zz%4&a=2&%73id=s HTTP/1.1\r\n\r\n",
    );
    assert_eq!(h.query_param("a").as_deref(), Some("1"), "first value wins");
    assert_eq!(h.query_param("name").as_deref(), Some("Jürgen M x"));
    assert_eq!(h.query_param("empty").as_deref(), Some(""));
    assert_eq!(
        h.query_param("flag").as_deref(),
        Some(""),
        "key without '='"
    );
    assert_eq!(
        h.query_param("bad").as_deref(),
        Some("%zz%4"),
        "invalid escapes stay literal"
    );
    assert_eq!(
        h.query_param("sid").as_deref(),
        Some("s"),
        "keys are decoded too"
    );
    assert_eq!(h.query_param("missing"), None);
}

#[test]
fn target_without_query() {
    let h = head("GET /engine.io/ HTTP/1.1\r\n\r\n");
    assert_eq!(h.path(), "/engine.io/");
    assert_eq!(h.query(), "");
    assert_eq!(h.query_param("EIO"), None);
    let h = head("GET /x? HTTP/1.1\r\n\r\n");
    assert_eq!(h.path(), "/x");
    assert_eq!(h.query(), "");
}

#[test]
fn absolute_form_path_drops_scheme_and_authority() {
    let h = head("GET http://example.com:80/engine.io/?EIO=4 HTTP/1.1\r\n\r\n");
    assert_eq!(h.path(), "/engine.io/");
    assert_eq!(h.query_param("EIO").as_deref(), Some("4"));
    let h = head("GET http://example.com HTTP/1.1\r\n\r\n");
    assert_eq!(h.path(), "/");
    let h = head("OPTIONS * HTTP/1.1\r\n\r\n");
    assert_eq!(h.path(), "*");
}

#[test]
fn header_lookup_is_case_insensitive_and_first_wins() {
    let h = head(
        "GET / HTTP/1.1\r\nX-Thing: one\r\nx-thing: two\r\nSEC-WEBSOCKET-KEY:   padded  \r\n\r\n",
    );
    assert_eq!(h.header("X-THING"), Some("one"));
    assert_eq!(h.header("x-thing"), Some("one"));
    assert_eq!(h.header("Sec-WebSocket-Key"), Some("padded"), "OWS trimmed");
    assert_eq!(h.header("absent"), None);
    let all: Vec<_> = h.headers().collect();
    assert_eq!(
        all,
        vec![
            ("X-Thing", &b"one"[..]),
            ("x-thing", &b"two"[..]),
            ("SEC-WEBSOCKET-KEY", &b"padded"[..]),
        ]
    );
}

#[test]
fn non_utf8_header_value_is_none_but_visible_in_headers() {
    let h = head("GET / HTTP/1.1\r\nX-Latin: caf\u{e9}\r\n\r\n"); // UTF-8 é
    assert_eq!(h.header("x-latin"), Some("café"));
    let (h, _) = parse(b"GET / HTTP/1.1\r\nX-Latin: caf\xe9\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(h.header("x-latin"), None);
    assert_eq!(h.headers().next(), Some(("X-Latin", &b"caf\xe9"[..])));
}

#[test]
fn keep_alive_rules() {
    let cases = [
        ("HTTP/1.1", "", true),
        ("HTTP/1.1", "Connection: close\r\n", false),
        ("HTTP/1.1", "Connection: keep-alive, Close\r\n", false),
        ("HTTP/1.1", "Connection: Upgrade\r\n", true),
        ("HTTP/1.0", "", false),
        ("HTTP/1.0", "Connection: keep-alive\r\n", true),
        ("HTTP/1.0", "Connection: Keep-Alive\r\n", true),
        (
            "HTTP/1.0",
            "Connection: keep-alive\r\nConnection: close\r\n",
            false,
        ),
    ];
    for (version, fields, keep_alive) in cases {
        let h = head(&format!("GET / {version}\r\n{fields}\r\n"));
        assert_eq!(h.keep_alive(), keep_alive, "{version} {fields:?}");
        assert_eq!(h.http_minor_version(), u8::from(version == "HTTP/1.1"));
    }
}

#[test]
fn incomplete_head_needs_more() {
    let raw = b"GET /engine.io/?EIO=4 HTTP/1.1\r\nHost: x\r\n\r\n";
    for n in 0..raw.len() {
        assert!(matches!(parse(&raw[..n]), Ok(None)), "prefix {n}");
    }
    assert!(matches!(parse(raw), Ok(Some(_))));
}

#[test]
fn head_too_large_even_without_terminator() {
    let limits = Limits {
        max_head_bytes: 64,
        max_headers: 64,
    };
    let mut raw = b"GET / HTTP/1.1\r\nX-Long: ".to_vec();
    raw.resize(63, b'a');
    assert!(
        matches!(parse_head(&raw, &limits), Ok(None)),
        "below the limit: wait"
    );
    raw.push(b'a');
    assert_eq!(
        parse_head(&raw, &limits).unwrap_err(),
        HttpError::HeadTooLarge
    );
    raw.resize(10_000, b'a');
    assert_eq!(
        parse_head(&raw, &limits).unwrap_err(),
        HttpError::HeadTooLarge
    );
    assert_eq!(HttpError::HeadTooLarge.status(), 431);
}

#[test]
fn head_of_exactly_the_limit_is_accepted() {
    let raw = b"GET / HTTP/1.1\r\nA: b\r\n\r\n";
    let limits = Limits {
        max_head_bytes: raw.len(),
        max_headers: 4,
    };
    let (_, consumed) = parse_head(raw, &limits).unwrap().unwrap();
    assert_eq!(consumed, raw.len());
    let limits = Limits {
        max_head_bytes: raw.len() - 1,
        max_headers: 4,
    };
    assert_eq!(
        parse_head(raw, &limits).unwrap_err(),
        HttpError::HeadTooLarge
    );
}

#[test]
fn too_many_headers() {
    let limits = Limits {
        max_head_bytes: 16 * 1024,
        max_headers: 3,
    };
    let ok = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert!(parse_head(ok, &limits).unwrap().is_some());
    let too_many = b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    assert_eq!(
        parse_head(too_many, &limits).unwrap_err(),
        HttpError::TooManyHeaders
    );
    assert_eq!(HttpError::TooManyHeaders.status(), 431);

    let mut many = b"GET / HTTP/1.1\r\n".to_vec();
    for i in 0..65 {
        many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(err(&many), HttpError::TooManyHeaders, "default limit is 64");
    let big = Limits {
        max_head_bytes: 16 * 1024,
        max_headers: 100,
    };
    assert!(
        parse_head(&many, &big).unwrap().is_some(),
        "limits above 64 work"
    );
}

#[test]
fn malformed_heads() {
    let cases: &[&[u8]] = &[
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 \r\n\r\n",
        b"GET /\r\n\r\n",
        b"G(T / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nNo-Colon\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\n Folded: x\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    ];
    for raw in cases {
        let e = err(raw);
        assert!(
            matches!(e, HttpError::Malformed(_) | HttpError::UnsupportedVersion),
            "{:?} gave {e:?}",
            String::from_utf8_lossy(raw)
        );
        assert!(e.status() == 400 || e.status() == 505);
    }
}

#[test]
fn unsupported_versions() {
    for version in ["HTTP/2.0", "HTTP/1.2", "HTTP/0.9", "HTTP/3.0"] {
        let raw = format!("GET / {version}\r\n\r\n");
        assert_eq!(
            err(raw.as_bytes()),
            HttpError::UnsupportedVersion,
            "{version}"
        );
    }
    assert_eq!(HttpError::UnsupportedVersion.status(), 505);
}

#[test]
fn leading_empty_lines_are_skipped_and_counted() {
    let raw = "\r\nGET / HTTP/1.1\r\n\r\nNEXT";
    let (h, consumed) = parse(raw.as_bytes()).unwrap().unwrap();
    assert_eq!(h.target(), "/");
    assert_eq!(&raw[consumed..], "NEXT");
}

#[test]
fn content_length_and_transfer_encoding_conflict() {
    let raw = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(err(raw), HttpError::ContentLengthWithTransferEncoding);
    let raw = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
    assert_eq!(err(raw), HttpError::ContentLengthWithTransferEncoding);
    assert_eq!(HttpError::ContentLengthWithTransferEncoding.status(), 400);
}

#[test]
fn content_length_validation() {
    let ok = [
        ("Content-Length: 0\r\n", 0),
        ("Content-Length: 42\r\n", 42),
        ("Content-Length: 42, 42\r\n", 42),
        ("Content-Length: 42\r\ncontent-length: 42\r\n", 42),
        ("Content-Length: 18446744073709551615\r\n", u64::MAX),
    ];
    for (fields, n) in ok {
        let h = head(&format!("POST / HTTP/1.1\r\n{fields}\r\n"));
        assert_eq!(h.body_kind(), BodyKind::Length(n), "{fields:?}");
    }
    let bad = [
        "Content-Length: 18446744073709551616\r\n",
        "Content-Length: -1\r\n",
        "Content-Length: +5\r\n",
        "Content-Length: 5 5\r\n",
        "Content-Length: 0x10\r\n",
        "Content-Length: \r\n",
        "Content-Length: 5,\r\n",
        "Content-Length: 5, 6\r\n",
        "Content-Length: 5\r\nContent-Length: 6\r\n",
    ];
    for fields in bad {
        let raw = format!("POST / HTTP/1.1\r\n{fields}\r\n");
        assert_eq!(
            err(raw.as_bytes()),
            HttpError::InvalidContentLength,
            "{fields:?}"
        );
    }
}

#[test]
fn transfer_encoding_rules() {
    for fields in [
        "Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: CHUNKED\r\n",
        "Transfer-Encoding: , chunked\r\n",
    ] {
        let h = head(&format!("POST / HTTP/1.1\r\n{fields}\r\n"));
        assert_eq!(h.body_kind(), BodyKind::Chunked, "{fields:?}");
    }
    for fields in [
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: chunked, gzip\r\n",
        "Transfer-Encoding: identity\r\n",
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    ] {
        let raw = format!("POST / HTTP/1.1\r\n{fields}\r\n");
        assert_eq!(
            err(raw.as_bytes()),
            HttpError::UnsupportedTransferEncoding,
            "{fields:?}"
        );
    }
    assert_eq!(HttpError::UnsupportedTransferEncoding.status(), 501);
    assert!(matches!(
        err(b"POST / HTTP/1.1\r\nTransfer-Encoding:\r\n\r\n"),
        HttpError::Malformed(_)
    ));
    assert!(matches!(
        err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
        HttpError::Malformed(_)
    ));
}

#[test]
fn from_parts_matches_parsing() {
    let built = RequestHead::from_parts(
        "POST",
        "/socket.io/?EIO=4&transport=polling&sid=x%2By",
        vec![
            ("Host".into(), b"example.com".to_vec()),
            ("Content-Length".into(), b" 12 ".to_vec()),
            ("Connection".into(), b"close".to_vec()),
        ],
    )
    .unwrap();
    assert_eq!(built.method(), Method::Post);
    assert_eq!(built.path(), "/socket.io/");
    assert_eq!(built.query_param("sid").as_deref(), Some("x+y"));
    assert_eq!(built.body_kind(), BodyKind::Length(12));
    assert_eq!(built.http_minor_version(), 1);
    assert!(!built.keep_alive());
    assert_eq!(built.header("content-length"), Some("12"));

    let bad = [
        ("G T", "/", vec![]),
        ("", "/", vec![]),
        ("GET", "", vec![]),
        ("GET", "/a b", vec![]),
        ("GET", "/\r\n", vec![]),
        ("GET", "/", vec![("Bad Name".to_string(), b"x".to_vec())]),
        (
            "GET",
            "/",
            vec![("X".to_string(), b"a\r\nInjected: 1".to_vec())],
        ),
        ("GET", "/", vec![("X".to_string(), b"a\0".to_vec())]),
    ];
    for (method, target, headers) in bad {
        let result = RequestHead::from_parts(method, target, headers);
        assert!(
            matches!(result, Err(HttpError::Malformed(_))),
            "{method:?} {target:?}: {result:?}"
        );
    }
    let conflict = RequestHead::from_parts(
        "POST",
        "/",
        vec![
            ("Content-Length".into(), b"1".to_vec()),
            ("Transfer-Encoding".into(), b"chunked".to_vec()),
        ],
    );
    assert_eq!(
        conflict.unwrap_err(),
        HttpError::ContentLengthWithTransferEncoding
    );
}

#[test]
fn heads_are_cheap_to_clone_and_debug_readable() {
    let h = head("GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
    let copy = h.clone();
    assert_eq!(copy.target(), "/x");
    let debug = format!("{h:?}");
    assert!(
        debug.contains("\"/x\"") && debug.contains("Host"),
        "{debug}"
    );
}

#[test]
fn heads_of_every_size_keep_every_part() {
    // Small heads and heads over a kilobyte (stored through another path) read back alike.
    for width in [0, 10, 600, 5000] {
        let long = "v".repeat(width);
        let raw = format!(
            "POST /engine.io/?EIO=4&sid=abc HTTP/1.1\r\nHost: h\r\nX-Long: {long}\r\n\
             Content-Length: 12\r\nConnection: keep-alive, Upgrade\r\nX-Obs: caf#\r\n\r\n"
        );
        let mut bytes = raw.into_bytes();
        // An obs-text byte in the last value (not valid UTF-8 alone).
        let at = bytes.iter().position(|&b| b == b'#').unwrap();
        bytes[at] = 0xe9;
        let (h, consumed) = parse(&bytes).unwrap().unwrap();
        assert_eq!(consumed, bytes.len());
        assert_eq!(h.method(), Method::Post);
        assert_eq!(h.method_str(), "POST");
        assert_eq!(h.target(), "/engine.io/?EIO=4&sid=abc");
        assert_eq!(h.query_param("sid").as_deref(), Some("abc"));
        assert_eq!(h.header("x-long"), Some(long.as_str()));
        assert_eq!(h.body_kind(), BodyKind::Length(12));
        assert!(h.keep_alive());
        assert_eq!(h.http_minor_version(), 1);
        assert_eq!(h.header("x-obs"), None);
        let fields: Vec<(&str, &[u8])> = h.headers().collect();
        assert_eq!(fields.len(), 5);
        assert_eq!(fields[4], ("X-Obs", &b"caf\xe9"[..]));
        assert_eq!(fields[0], ("Host", &b"h"[..]));
    }
    for (method, expected) in [
        ("GET", Method::Get),
        ("POST", Method::Post),
        ("OPTIONS", Method::Options),
        ("HEAD", Method::Head),
        ("PUT", Method::Put),
        ("DELETE", Method::Delete),
        ("PATCH", Method::Patch),
        ("BREW", Method::Other),
    ] {
        let h = head(&format!(
            "{method} / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ))
        .clone();
        assert_eq!((h.method(), h.method_str()), (expected, method));
        assert_eq!(h.body_kind(), BodyKind::Chunked);
        assert_eq!(h.http_minor_version(), 1, "{method}");
    }
}

#[test]
fn expect_continue() {
    assert!(head("POST / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n").expects_continue());
    assert!(!head("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").expects_continue());
    assert!(!head("POST / HTTP/1.1\r\n\r\n").expects_continue());
}

// ---- bodies ----

#[test]
fn no_body_is_done_immediately_and_consumes_nothing() {
    let (progress, rest) = decode_whole(BodyKind::None, 10, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(progress, done(b""));
    assert_eq!(&rest[..], b"GET / HTTP/1.1\r\n\r\n");
    let (progress, rest) = decode_whole(BodyKind::Length(0), 10, b"next");
    assert_eq!(progress, done(b""));
    assert_eq!(&rest[..], b"next");
}

#[test]
fn content_length_body_leaves_pipelined_bytes() {
    let (progress, rest) = decode_whole(BodyKind::Length(6), 100, b"4helloGET / HTTP/1.1\r\n\r\n");
    assert_eq!(progress, done(b"4hello"));
    assert_eq!(&rest[..], b"GET / HTTP/1.1\r\n\r\n");
}

#[test]
fn content_length_body_in_pieces() {
    let mut decoder = BodyDecoder::new(BodyKind::Length(10), 100);
    let mut buf = BytesMut::from(&b"0123"[..]);
    assert_eq!(decoder.feed(&mut buf), Ok(BodyProgress::NeedMore));
    assert!(buf.is_empty(), "partial body is consumed");
    buf.extend_from_slice(b"456");
    assert_eq!(decoder.feed(&mut buf), Ok(BodyProgress::NeedMore));
    buf.extend_from_slice(b"789XYZ");
    assert_eq!(decoder.feed(&mut buf), done(b"0123456789"));
    assert_eq!(&buf[..], b"XYZ");
    assert_eq!(
        decoder.feed(&mut buf),
        done(b"0123456789"),
        "done is sticky"
    );
    assert_eq!(&buf[..], b"XYZ", "and consumes nothing");
}

#[test]
fn content_length_over_limit_fails_before_any_byte() {
    let mut decoder = BodyDecoder::new(BodyKind::Length(11), 10);
    let mut buf = BytesMut::new();
    assert_eq!(decoder.feed(&mut buf), Err(HttpError::BodyTooLarge));
    assert_eq!(
        decoder.feed(&mut buf),
        Err(HttpError::BodyTooLarge),
        "failure is sticky"
    );
    let (progress, _) = decode_whole(BodyKind::Length(u64::MAX), 1 << 20, b"x");
    assert_eq!(progress, Err(HttpError::BodyTooLarge));
    let (progress, _) = decode_whole(BodyKind::Length(10), 10, b"0123456789");
    assert_eq!(progress, done(b"0123456789"), "exactly the limit is fine");
    assert_eq!(HttpError::BodyTooLarge.status(), 413);
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let input = b"4;name=value;flag\r\nWiki\r\n5 ; q=\"a b\"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0;last\r\nExpires: never\r\nX-Sum: 1\r\n\r\nPOST /next";
    let (progress, rest) = decode_whole(BodyKind::Chunked, 100, input);
    assert_eq!(progress, done(b"Wikipedia in\r\n\r\nchunks."));
    assert_eq!(&rest[..], b"POST /next");
}

#[test]
fn chunked_body_fed_byte_by_byte() {
    let input = b"3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\nNEXT";
    let mut decoder = BodyDecoder::new(BodyKind::Chunked, 100);
    let mut buf = BytesMut::new();
    let mut result = None;
    for &b in input.iter() {
        buf.extend_from_slice(&[b]);
        match decoder.feed(&mut buf).unwrap() {
            BodyProgress::NeedMore => {}
            BodyProgress::Done(body) => {
                result = Some(body);
                break;
            }
        }
    }
    assert_eq!(result.as_deref(), Some(&b"abc0123456789abcdef"[..]));
    buf.extend_from_slice(b"NEXT");
    assert_eq!(&buf[..], b"NEXT");
}

#[test]
fn chunked_single_chunk_is_zero_copy() {
    let mut buf = BytesMut::from(&b"5\r\nhello\r\n0\r\n\r\n"[..]);
    let data_ptr = buf[3..].as_ptr();
    let mut decoder = BodyDecoder::new(BodyKind::Chunked, 100);
    let Ok(BodyProgress::Done(body)) = decoder.feed(&mut buf) else {
        panic!("complete body");
    };
    assert_eq!(&body[..], b"hello");
    assert_eq!(body.as_ptr(), data_ptr);
}

#[test]
fn chunked_body_limit() {
    let (progress, _) = decode_whole(BodyKind::Chunked, 10, b"6\r\nabcdef\r\n5\r\n");
    assert_eq!(
        progress,
        Err(HttpError::BodyTooLarge),
        "rejected at the size line"
    );
    let (progress, _) = decode_whole(
        BodyKind::Chunked,
        10,
        b"6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n",
    );
    assert_eq!(progress, done(b"abcdefghij"));
    let (progress, _) = decode_whole(BodyKind::Chunked, 1 << 20, b"ffffffffffffffff\r\n");
    assert_eq!(
        progress,
        Err(HttpError::BodyTooLarge),
        "u64::MAX chunk size, no overflow"
    );
}

#[test]
fn malformed_chunks() {
    let cases: &[&[u8]] = &[
        b"\r\n",
        b"x\r\n",
        b"-1\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5;a\x00b\r\nhello\r\n0\r\n\r\n",
        b"10000000000000000\r\n",
        b"0\r\nNoColon\r\n\r\n",
        b"0\r\n Folded: x\r\n\r\n",
        b"0\r\nX: a\x01\r\n\r\n",
        b"0\r\n\n",
    ];
    for input in cases {
        let (progress, _) = decode_whole(BodyKind::Chunked, 1 << 20, input);
        assert_eq!(
            progress,
            Err(HttpError::BadChunk),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    assert_eq!(HttpError::BadChunk.status(), 400);
}

#[test]
fn chunk_lines_and_trailers_are_bounded() {
    let mut long_ext = b"1;".to_vec();
    long_ext.resize(MAX_CHUNK_LINE, b'a');
    let (progress, _) = decode_whole(BodyKind::Chunked, 100, &long_ext);
    assert_eq!(
        progress,
        Err(HttpError::BadChunk),
        "no terminator within the line bound"
    );

    let mut long_trailers = b"0\r\n".to_vec();
    while long_trailers.len() < MAX_TRAILER_BYTES + 100 {
        long_trailers.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let (progress, _) = decode_whole(BodyKind::Chunked, 100, &long_trailers);
    assert_eq!(progress, Err(HttpError::TrailersTooLarge));

    let mut many_ext = Vec::new();
    for _ in 0..100 {
        many_ext.extend_from_slice(b"1;");
        many_ext.extend(std::iter::repeat_n(b'e', 400));
        many_ext.extend_from_slice(b"\r\nx\r\n");
    }
    let (progress, _) = decode_whole(BodyKind::Chunked, 1000, &many_ext);
    assert_eq!(
        progress,
        Err(HttpError::BadChunk),
        "total extension bytes are capped"
    );
}

#[test]
fn incomplete_chunked_body_waits() {
    for input in [
        &b""[..],
        b"5",
        b"5\r",
        b"5\r\nhel",
        b"5\r\nhello",
        b"5\r\nhello\r",
        b"5\r\nhello\r\n0\r\n",
        b"5\r\nhello\r\n0\r\nX: y\r\n",
    ] {
        let (progress, _) = decode_whole(BodyKind::Chunked, 100, input);
        assert_eq!(
            progress,
            Ok(BodyProgress::NeedMore),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
}

// ---- responses ----

#[test]
fn response_exact_bytes() {
    let r = Response::new(200)
        .header("Content-Type", "text/plain; charset=UTF-8")
        .body("4hello\x1e2");
    assert_eq!(
        written(&r),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: 8\r\n\r\n4hello\x1e2"
    );
    assert_eq!(
        written(&Response::new(404)),
        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(
        written(&Response::new(400).body("bad").closing()),
        "HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbad"
    );
}

#[test]
fn response_without_content_length() {
    assert_eq!(
        written(&Response::new(204).body("ignored")),
        "HTTP/1.1 204 No Content\r\n\r\n"
    );
    let r = Response::new(101)
        .header("Upgrade", "websocket")
        .header("Content-Length", "5");
    assert_eq!(
        written(&r),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    );
}

#[test]
fn response_given_content_length_is_kept() {
    let r = Response::new(200).header("Content-Length", "1234");
    assert_eq!(
        written(&r),
        "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"
    );
    let r = Response::new(200)
        .header("Content-Length", "12x")
        .body("ab");
    assert_eq!(
        written(&r),
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nab",
        "invalid one replaced"
    );
}

#[test]
fn response_never_writes_injected_values() {
    let r = Response::new(200)
        .header("X-Ok", "fine")
        .header("X-Evil", "a\r\nSet-Cookie: pwned=1")
        .header("X-Lf", "a\nb")
        .header("X-Nul", "a\0b")
        .header("Bad Name", "x")
        .header("Transfer-Encoding", "chunked");
    assert_eq!(
        written(&r),
        "HTTP/1.1 200 OK\r\nX-Ok: fine\r\nContent-Length: 0\r\n\r\n"
    );
}

#[test]
fn closing_response_overrides_connection_field() {
    let r = Response::new(200)
        .header("Connection", "keep-alive")
        .closing();
    assert_eq!(
        written(&r),
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn reason_phrases_and_odd_statuses() {
    for (status, reason) in [
        (101, "Switching Protocols"),
        (200, "OK"),
        (204, "No Content"),
        (400, "Bad Request"),
        (403, "Forbidden"),
        (404, "Not Found"),
        (413, "Payload Too Large"),
        (431, "Request Header Fields Too Large"),
        (500, "Internal Server Error"),
        (501, "Not Implemented"),
        (503, "Service Unavailable"),
        (505, "HTTP Version Not Supported"),
    ] {
        assert_eq!(reason_phrase(status), reason);
        assert!(
            written(&Response::new(status)).starts_with(&format!("HTTP/1.1 {status} {reason}\r\n"))
        );
    }
    assert_eq!(
        written(&Response::new(299)),
        "HTTP/1.1 299 \r\nContent-Length: 0\r\n\r\n"
    );
    assert!(written(&Response::new(42)).starts_with("HTTP/1.1 500 Internal Server Error\r\n"));
}

#[test]
fn response_builder_and_lookup() {
    let r = Response::new(200)
        .header("Content-Type", "text/html")
        .body(Bytes::from_static(b"ok"));
    assert_eq!(r.get_header("content-type"), Some("text/html"));
    assert_eq!(r.get_header("x"), None);
    assert_eq!(r.body, Bytes::from_static(b"ok"));
    assert!(!r.close);
    assert!(r.closing().close);
}

#[test]
fn error_responses_close() {
    let r = HttpError::HeadTooLarge.response();
    assert_eq!(r.status, 431);
    assert!(r.close);
    assert_eq!(
        written(&HttpError::BodyTooLarge.response()),
        "HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 22\r\nConnection: close\r\n\r\nrequest body too large"
    );
}

// ---- websocket ----

const WS_UPGRADE: &str = "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

#[test]
fn websocket_accept_rfc_sample() {
    assert_eq!(
        websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn websocket_handshake_accepts_valid_upgrade() {
    let h = head(WS_UPGRADE);
    assert!(h.is_websocket_upgrade());
    assert_eq!(h.websocket_key(), Some("dGhlIHNhbXBsZSBub25jZQ=="));
    let r = websocket_handshake(&h).expect("valid upgrade");
    assert_eq!(
        written(&r),
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
    );
    let mixed_case = WS_UPGRADE
        .replace("Upgrade: websocket", "upgrade: WebSocket")
        .replace("keep-alive, Upgrade", "UPGRADE");
    assert!(websocket_handshake(&head(&mixed_case)).is_some());
}

#[test]
fn websocket_handshake_refusals() {
    let refusals = [
        WS_UPGRADE.replace("GET", "POST"),
        WS_UPGRADE.replace("Upgrade: websocket\r\n", ""),
        WS_UPGRADE.replace("Upgrade: websocket", "Upgrade: h2c"),
        WS_UPGRADE.replace("keep-alive, Upgrade", "keep-alive"),
        WS_UPGRADE.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
        WS_UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
        WS_UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "not base64!"),
        WS_UPGRADE.replace("Sec-WebSocket-Version: 13\r\n", ""),
        WS_UPGRADE.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
        WS_UPGRADE.replace("HTTP/1.1", "HTTP/1.0"),
        WS_UPGRADE.replace(
            "Host:",
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\nHost:",
        ),
        WS_UPGRADE.replace("Host:", "Content-Length: 3\r\nHost:"),
    ];
    for raw in &refusals {
        let h = head(raw);
        assert!(websocket_handshake(&h).is_none(), "{raw:?}");
    }
    let h = head("GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    assert!(!h.is_websocket_upgrade(), "no key, no upgrade");
}

// ---- helpers ----

#[test]
fn percent_decoding() {
    assert!(matches!(
        percent_decode("plain", true),
        std::borrow::Cow::Borrowed("plain")
    ));
    assert_eq!(percent_decode("a+b%20c", true), "a b c");
    assert_eq!(percent_decode("a+b%20c", false), "a+b c");
    assert_eq!(percent_decode("%E2%82%AC", true), "€");
    assert_eq!(percent_decode("%e2%82%ac", true), "€", "lowercase hex");
    assert_eq!(percent_decode("100%", true), "100%");
    assert_eq!(percent_decode("%4", true), "%4");
    assert_eq!(percent_decode("%g0%41", true), "%g0A");
    assert_eq!(
        percent_decode("%ff", true),
        "\u{fffd}",
        "invalid UTF-8 is replaced"
    );
    let pairs: Vec<_> = query_pairs("a=1&&b&c=x%3Dy=z").collect();
    assert_eq!(
        pairs,
        vec![
            ("a".into(), "1".into()),
            ("b".into(), "".into()),
            ("c".into(), "x=y=z".into())
        ]
    );
}

#[test]
fn sha1_standard_vectors() {
    assert_eq!(
        hex(&sha1(b"abc")),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
    assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(
        hex(&sha1(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
    );
    assert_eq!(
        hex(&sha1(&vec![b'a'; 1_000_000])),
        "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
    );
    // Padding boundaries: 55 bytes fit one padded block, 56 and 64 need two.
    assert_eq!(
        hex(&sha1(&[b'a'; 55])),
        "c1c8bbdc22796e28c0e15163d20899b65621d65a"
    );
    assert_eq!(
        hex(&sha1(&[b'a'; 56])),
        "c2db330f6083854c99d4b5bfb6e8f29f201be699"
    );
    assert_eq!(
        hex(&sha1(&[b'a'; 64])),
        "0098ba824b5c16427bd7a1122a5a442a25ec644d"
    );
}
