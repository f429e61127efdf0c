//! Responses and their serialization.

use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};

use super::syntax::{is_field_value_byte, is_token};

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code. Codes outside `100..=999` are written as 500.
    pub status: u16,
    /// Fields in the order they are written. See [`write_to`](Response::write_to) for the
    /// ones the serializer controls.
    pub headers: Vec<(&'static str, String)>,
    /// The body, written whole with a `Content-Length`.
    pub body: Bytes,
    /// Send `Connection: close` and close the connection after writing.
    pub close: bool,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            close: false,
        }
    }

    /// Adds a field.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    /// Marks the response as the connection's last.
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    /// The first field named `name` (ASCII case-insensitive).
    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Appends the serialized response to `out`: status line with the canonical reason phrase
    /// ([`reason_phrase`]), fields, `Content-Length`, `Connection: close` when
    /// [`close`](Response::close), blank line, body.
    ///
    /// The serializer keeps the framing its own:
    /// - A field whose value contains a control character (CR, LF, NUL…), or whose name is not
    ///   a token, is dropped silently: writing it would let the value inject fields or split
    ///   the response, and rewriting it would change its meaning.
    /// - `Content-Length` is computed from the body unless a field gives a valid one (e.g. the
    ///   length a `HEAD` answer describes); it is never written for 1xx and 204, and for 304
    ///   only when given. Extra or invalid `Content-Length` fields are dropped.
    /// - `Transfer-Encoding` fields are dropped, since the body is always sent whole.
    /// - With `close`, other `Connection` fields are dropped so the peer sees one answer.
    /// - No body is written for 1xx, 204 and 304, which cannot have one.
    pub fn write_to(&self, out: &mut BytesMut) {
        let status = if (100..=999).contains(&self.status) {
            self.status
        } else {
            500
        };
        let no_body = status < 200 || status == 204 || status == 304;
        let reason = reason_phrase(status);
        // One reservation for the whole response: the status line, `Content-Length` and
        // `Connection` fit in 128 bytes, each field takes its name, value and 4 more.
        let fields: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.len() + value.len() + 4)
            .sum();
        out.reserve(128 + fields + self.body.len());
        // fmt::Write for BytesMut cannot fail.
        let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
        let mut has_length = false;
        for (name, value) in &self.headers {
            if !is_token(name.as_bytes()) || !value.bytes().all(is_field_value_byte) {
                continue;
            }
            if name.eq_ignore_ascii_case("transfer-encoding")
                || (self.close && name.eq_ignore_ascii_case("connection"))
            {
                continue;
            }
            if name.eq_ignore_ascii_case("content-length") {
                let valid = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
                if !valid || has_length || status < 200 || status == 204 {
                    continue;
                }
                has_length = true;
            }
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !has_length && !no_body {
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        if self.close {
            out.extend_from_slice(b"Connection: close\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !no_body {
            out.extend_from_slice(&self.body);
        }
    }
}

/// The canonical reason phrase for `status` (RFC 9110 §15), `""` for codes it does not name
/// (the status line then ends in `"<code> "`, which is valid).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        // RFC 9110 renamed it "Content Too Large"; clients only look at the code, and this is
        // the phrase Node and most servers still send.
        413 => "Payload Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}
