//! HTTP/1.1 request heads, bodies and responses, without IO.
//!
//! The runtime moves bytes; every parsing and serialization decision is made here:
//!
//! 1. [`parse_head`] on the read buffer until it returns a head (or an error: answer
//!    [`HttpError::response`] and close).
//! 2. A [`BodyDecoder`] for the head's [`body_kind`](RequestHead::body_kind) on the bytes after
//!    the head, until it returns the body. Bytes it leaves behind belong to the next request.
//! 3. [`Response::write_to`] the answer; close afterwards if [`Response::close`] is set or the
//!    request was not [`keep_alive`](RequestHead::keep_alive).
//!
//! ```
//! use volley_core::http::{parse_head, BodyDecoder, BodyProgress, Limits, Response};
//! use volley_core::Bytes;
//!
//! let mut buf = bytes::BytesMut::from(
//!     &b"POST /engine.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\n\
//!        Host: example.com\r\nContent-Length: 6\r\n\r\n4hello"[..],
//! );
//! let (head, consumed) = parse_head(&buf, &Limits::default())?.expect("complete head");
//! assert_eq!(head.query_param("sid").as_deref(), Some("abc"));
//! let _ = buf.split_to(consumed);
//!
//! let mut body = BodyDecoder::new(head.body_kind(), 1_000_000);
//! assert_eq!(body.feed(&mut buf)?, BodyProgress::Done(Bytes::from_static(b"4hello")));
//!
//! let mut out = bytes::BytesMut::new();
//! Response::new(200).body("ok").write_to(&mut out);
//! assert_eq!(&out[..], b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
//! # Ok::<(), volley_core::http::HttpError>(())
//! ```

mod body;
mod error;
mod head;
mod query;
mod response;
mod syntax;
mod websocket;

pub use body::{
    BodyDecoder, BodyProgress, MAX_CHUNK_EXTENSIONS, MAX_CHUNK_LINE, MAX_TRAILER_BYTES,
};
pub use error::HttpError;
pub use head::{BodyKind, Limits, Method, RequestHead, parse_head};
pub use query::{percent_decode, query_pairs};
pub use response::{Response, reason_phrase};
pub use websocket::{websocket_accept, websocket_handshake};
