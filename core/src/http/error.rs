//! The one error type of the HTTP codec.

use std::fmt;

use super::response::Response;

/// A request the peer sent could not be accepted.
///
/// Every variant is the peer's fault: the codec has no misuse errors, and no IO errors exist in
/// a sans-IO codec. [`status`](HttpError::status) is the status to answer with;
/// [`response`](HttpError::response) builds that answer. After any of these the connection's
/// framing can no longer be trusted, so the answer closes it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The head did not end within [`Limits::max_head_bytes`](super::Limits::max_head_bytes).
    HeadTooLarge,
    /// The head had more than [`Limits::max_headers`](super::Limits::max_headers) fields.
    TooManyHeaders,
    /// The head is not valid HTTP/1.x; the text names what was wrong.
    Malformed(&'static str),
    /// The request line named an HTTP version other than 1.0 or 1.1.
    UnsupportedVersion,
    /// A `Content-Length` value is not a decimal number that fits in a `u64`, or several values
    /// disagree.
    InvalidContentLength,
    /// Both `Content-Length` and `Transfer-Encoding` were sent: the framing is ambiguous, the
    /// classic request-smuggling shape (RFC 9112 §6.1).
    ContentLengthWithTransferEncoding,
    /// A transfer coding other than a single, final `chunked`.
    UnsupportedTransferEncoding,
    /// The body is larger than the limit given to [`BodyDecoder`](super::BodyDecoder).
    BodyTooLarge,
    /// The chunked framing is broken (bad size line, missing CRLF, oversized line or
    /// extensions, malformed trailer).
    BadChunk,
    /// The trailer section after the last chunk exceeded
    /// [`MAX_TRAILER_BYTES`](super::MAX_TRAILER_BYTES).
    TrailersTooLarge,
}

impl HttpError {
    /// The status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders | HttpError::TrailersTooLarge => {
                431
            }
            HttpError::BodyTooLarge => 413,
            HttpError::UnsupportedTransferEncoding => 501,
            HttpError::UnsupportedVersion => 505,
            HttpError::Malformed(_)
            | HttpError::InvalidContentLength
            | HttpError::ContentLengthWithTransferEncoding
            | HttpError::BadChunk => 400,
        }
    }

    /// The answer to send: [`status`](HttpError::status), the error text as a `text/plain`
    /// body, and `Connection: close` because the rest of the stream cannot be framed.
    pub fn response(&self) -> Response {
        Response::new(self.status())
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(self.to_string())
            .closing()
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::HeadTooLarge => f.write_str("request head too large"),
            HttpError::TooManyHeaders => f.write_str("too many header fields"),
            HttpError::Malformed(what) => write!(f, "malformed request: {what}"),
            HttpError::UnsupportedVersion => f.write_str("unsupported HTTP version"),
            HttpError::InvalidContentLength => f.write_str("invalid Content-Length"),
            HttpError::ContentLengthWithTransferEncoding => {
                f.write_str("both Content-Length and Transfer-Encoding")
            }
            HttpError::UnsupportedTransferEncoding => f.write_str("unsupported transfer coding"),
            HttpError::BodyTooLarge => f.write_str("request body too large"),
            HttpError::BadChunk => f.write_str("invalid chunked encoding"),
            HttpError::TrailersTooLarge => f.write_str("trailer section too large"),
        }
    }
}

impl std::error::Error for HttpError {}
