//! The HTTP/1.1 codec: request heads and bodies.
//!
//! # `http_head`
//! The input is the start of a connection's byte stream. Invariants, for the default limits
//! and for small limits derived from the input:
//! - [`parse_head`] gives a head, "need more", or an `HttpError` (status 4xx/5xx, closing
//!   response), never a panic;
//! - parsing every growing prefix, the first answer that is not "need more" is the answer
//!   for the whole input (the outcome does not depend on how reads split the stream);
//! - "need more" only below `max_head_bytes`; a head consumes at most the input and the limit;
//! - every accessor of a parsed head works, and an HTTP/1.1 head rebuilt with
//!   [`RequestHead::from_parts`] is the same head;
//! - a [`BodyDecoder`] for the head's body kind, fed the bytes after the head whole, one byte
//!   at a time and in an input-derived chunking, reaches the same result and leaves the same
//!   bytes for the next request; the same holds for each body kind (none, a length, chunked)
//!   applied to the whole input; a body is never longer than the limit, a length body is
//!   exactly the first bytes, and a finished or failed decoder keeps answering the same.

use bytes::BytesMut;
use volley_core::http::{
    BodyDecoder, BodyKind, BodyProgress, HttpError, Limits, RequestHead, parse_head,
    websocket_handshake,
};

use crate::util::{Mix, chunking, pieces};

/// A parse outcome in comparable form.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    NeedMore,
    Head(Summary, usize),
    Error(HttpError),
}

/// Everything a head exposes.
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

/// Checks one connection's opening bytes (see the module documentation).
pub fn http_head(data: &[u8]) {
    let mut mix = Mix::of(data, 0x4854_5450);
    let small = Limits {
        max_head_bytes: mix.below(600),
        max_headers: mix.below(10),
    };
    let body_limit = 1 + mix.below(64);
    for limits in [Limits::default(), small] {
        let whole = outcome(data, &limits);
        let first = (0..=data.len())
            .map(|n| outcome(&data[..n], &limits))
            .find(|o| *o != Outcome::NeedMore)
            .unwrap_or(Outcome::NeedMore);
        assert_eq!(
            first, whole,
            "a growing prefix decided differently ({limits:?})"
        );
        match parse_head(data, &limits) {
            Ok(Some((head, consumed))) => {
                assert!(consumed <= data.len() && consumed <= limits.max_head_bytes);
                check_head(&head);
                let rest = &data[consumed..];
                check_body(head.body_kind(), 1_000_000, rest);
                check_body(head.body_kind(), body_limit, rest);
            }
            Ok(None) => assert!(data.len() < limits.max_head_bytes),
            Err(e) => {
                assert!((400..600).contains(&e.status()), "{e:?}");
                let response = e.response();
                assert!(response.close);
                assert_eq!(response.status, e.status());
                let mut out = BytesMut::new();
                response.write_to(&mut out);
                assert!(!out.is_empty());
            }
        }
    }
    let length = u64::from(data.first().copied().unwrap_or(0));
    for kind in [BodyKind::None, BodyKind::Length(length), BodyKind::Chunked] {
        check_body(kind, 1_000_000, data);
        check_body(kind, body_limit, data);
    }
}

/// Every accessor answers, and `from_parts` rebuilds an HTTP/1.1 head identically.
fn check_head(head: &RequestHead) {
    let _ = (head.method(), head.path(), head.query(), head.peer_addr());
    for key in ["EIO", "transport", "sid", "b64", "j", "t", ""] {
        let _ = head.query_param(key);
    }
    let _ = (
        head.content_type(),
        head.expects_continue(),
        head.websocket_key(),
    );
    let _ = format!("{head:?}");
    if let Some(response) = websocket_handshake(head) {
        assert_eq!(response.status, 101);
        assert!(head.is_websocket_upgrade());
    }
    if head.http_minor_version() == 1 {
        let fields = head
            .headers()
            .map(|(n, v)| (n.to_owned(), v.to_vec()))
            .collect();
        let rebuilt = RequestHead::from_parts(head.method_str(), head.target(), fields)
            .unwrap_or_else(|e| panic!("from_parts refused a parsed head {head:?}: {e}"));
        assert_eq!(summary(&rebuilt), summary(head));
    }
}

/// Feeds `pieces` one after another until the decoder stops asking for more; returns its
/// answer and the bytes it did not consume (left in the buffer, or never fed).
fn feed(
    kind: BodyKind,
    limit: usize,
    pieces: &[&[u8]],
) -> (Result<BodyProgress, HttpError>, Vec<u8>) {
    let mut decoder = BodyDecoder::new(kind, limit);
    let mut buf = BytesMut::new();
    let mut progress = decoder.feed(&mut buf);
    let mut fed = 0;
    for piece in pieces {
        if !matches!(progress, Ok(BodyProgress::NeedMore)) {
            break;
        }
        buf.extend_from_slice(piece);
        fed += 1;
        progress = decoder.feed(&mut buf);
    }
    // A decoder that is done or failed answers the same again and consumes nothing.
    if !matches!(progress, Ok(BodyProgress::NeedMore)) {
        let before = buf.clone();
        assert_eq!(
            decoder.feed(&mut buf),
            progress,
            "a settled decoder changed its answer"
        );
        assert_eq!(buf, before, "a settled decoder consumed bytes");
    }
    let mut left = buf.to_vec();
    for piece in pieces.iter().skip(fed) {
        left.extend_from_slice(piece);
    }
    (progress, left)
}

fn check_body(kind: BodyKind, limit: usize, input: &[u8]) {
    let (whole, whole_left) = feed(kind, limit, &[input]);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let lengths = chunking(input, limit as u64, input.len());
    for (how, split) in [
        ("byte at a time", bytes),
        ("chunked", pieces(input, &lengths)),
    ] {
        let (progress, left) = feed(kind, limit, &split);
        assert_eq!(progress, whole, "{kind:?} fed {how} differs from whole");
        if progress.is_ok() {
            assert_eq!(left, whole_left, "{kind:?} fed {how} left other bytes");
        }
    }
    match (&whole, kind) {
        (Ok(BodyProgress::Done(body)), _) => {
            assert!(body.len() <= limit, "a body over the limit");
            assert!(body.len() + whole_left.len() <= input.len());
            if let BodyKind::Length(n) = kind {
                assert_eq!(body.len() as u64, n);
                assert_eq!(&body[..], &input[..body.len()]);
            }
            if kind == BodyKind::None {
                assert!(body.is_empty());
                assert_eq!(whole_left, input);
            }
        }
        (Ok(BodyProgress::NeedMore), BodyKind::Length(n)) => {
            assert!((input.len() as u64) < n);
        }
        (Ok(BodyProgress::NeedMore), _) => {}
        (Err(e), _) => {
            assert!((400..600).contains(&e.status()), "{e:?}");
            if let BodyKind::Length(n) = kind {
                assert!(n > limit as u64 && *e == HttpError::BodyTooLarge, "{e:?}");
            }
        }
    }
}
