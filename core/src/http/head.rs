//! The request head: parsing with `httparse`, the framing rules of RFC 9112 §6, and accessors.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use super::error::HttpError;
use super::query::query_pairs;
use super::syntax::{is_field_value_byte, is_token, list_contains, trim_ows};

/// Limits on what a peer may send before a body.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes in a request head, request line through the blank line, counting any empty
    /// lines before the request line. Default 16 KiB.
    pub max_head_bytes: usize,
    /// Most header fields in a request head. Default 64.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 64,
        }
    }
}

/// A request method. Methods are case-sensitive (RFC 9110 §9.1): `get` is [`Method::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `POST`
    Post,
    /// `OPTIONS`
    Options,
    /// `HEAD`
    Head,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `PATCH`
    Patch,
    /// Any other token; see [`RequestHead::method_str`].
    Other,
}

impl Method {
    /// The inverse of `method as u8`, for a head's prelude.
    fn from_code(code: u8) -> Method {
        [
            Method::Get,
            Method::Post,
            Method::Options,
            Method::Head,
            Method::Put,
            Method::Delete,
            Method::Patch,
        ]
        .into_iter()
        .find(|m| *m as u8 == code)
        .unwrap_or(Method::Other)
    }

    fn from_token(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "OPTIONS" => Method::Options,
            "HEAD" => Method::Head,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }
}

/// How the body after a request head is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body: neither `Content-Length` nor `Transfer-Encoding` was sent.
    None,
    /// `Content-Length` bytes follow (possibly zero).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head (owned, cheap to clone).
///
/// Built by [`parse_head`] or [`RequestHead::from_parts`]; both validate the same framing
/// rules, so a head that exists has an unambiguous [`body_kind`](RequestHead::body_kind).
#[derive(Clone)]
pub struct RequestHead {
    /// The whole head in one shared allocation (see [`Layout`]): parsing a head costs one
    /// allocation, and a clone none.
    data: Arc<[u8]>,
    /// The TCP peer, when the runtime records it (not part of the bytes).
    peer: Option<core::net::SocketAddr>,
}

/// Where each part sits in a head's bytes: first a fixed prelude ([`PRELUDE`] bytes: the
/// method's code, the minor version, keep-alive, the body's framing, then the lengths below
/// as little-endian `u32`s), then the method, target and field names back to back (validated
/// UTF-8), the field values back to back (bytes: they may hold obs-text), and last, per
/// field, where its name ends among the names and its value among the values (two `u32`s).
/// Eight bytes a field rather than two ranges' 32: a socket's handshake keeps its head for
/// the socket's life.
struct Layout {
    method: Method,
    minor: u8,
    keep_alive: bool,
    body_kind: BodyKind,
    method_len: usize,
    target_len: usize,
    /// Method, target and names.
    text_len: usize,
    values_len: usize,
    fields: usize,
}

/// Bytes of the fixed prelude: 4 flag bytes, the content length (`u64`), five `u32`s.
const PRELUDE: usize = 4 + 8 + 5 * 4;

impl Layout {
    fn text(&self) -> std::ops::Range<usize> {
        PRELUDE..PRELUDE + self.text_len
    }

    fn values(&self) -> std::ops::Range<usize> {
        let start = PRELUDE + self.text_len;
        start..start + self.values_len
    }

    fn spans(&self) -> std::ops::Range<usize> {
        let start = PRELUDE + self.text_len + self.values_len;
        start..start + self.fields * 8
    }

    fn total(&self) -> usize {
        self.spans().end
    }

    /// Writes the prelude into `out[..PRELUDE]`.
    fn write_prelude(&self, out: &mut [u8]) {
        let (kind, length) = match self.body_kind {
            BodyKind::None => (0, 0),
            BodyKind::Length(n) => (1, n),
            BodyKind::Chunked => (2, 0),
        };
        let mut prelude = [0u8; PRELUDE];
        prelude[0] = self.method as u8;
        prelude[1] = self.minor;
        prelude[2] = u8::from(self.keep_alive);
        prelude[3] = kind;
        prelude[4..12].copy_from_slice(&length.to_le_bytes());
        let lengths = [
            self.method_len,
            self.target_len,
            self.text_len,
            self.values_len,
            self.fields,
        ];
        for (slot, n) in prelude[12..].chunks_exact_mut(4).zip(lengths) {
            // Every length was checked to fit a `u32` when the head was built.
            slot.copy_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
        }
        if let Some(out) = out.get_mut(..PRELUDE) {
            out.copy_from_slice(&prelude);
        }
    }

    /// Reads the prelude of `data` (written by [`write_prelude`](Self::write_prelude)).
    fn read(data: &[u8]) -> Layout {
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let word = |i: usize| {
            let mut b = [0u8; 4];
            if let Some(src) = data.get(12 + 4 * i..16 + 4 * i) {
                b.copy_from_slice(src);
            }
            u32::from_le_bytes(b) as usize
        };
        let mut length = [0u8; 8];
        if let Some(src) = data.get(4..12) {
            length.copy_from_slice(src);
        }
        Layout {
            method: Method::from_code(byte(0)),
            minor: byte(1),
            keep_alive: byte(2) != 0,
            body_kind: match byte(3) {
                1 => BodyKind::Length(u64::from_le_bytes(length)),
                2 => BodyKind::Chunked,
                _ => BodyKind::None,
            },
            method_len: word(0),
            target_len: word(1),
            text_len: word(2),
            values_len: word(3),
            fields: word(4),
        }
    }
}

/// A head's bytes, read through its [`Layout`].
struct View<'a> {
    layout: Layout,
    data: &'a [u8],
}

impl<'a> View<'a> {
    fn new(data: &'a [u8]) -> Self {
        View {
            layout: Layout::read(data),
            data,
        }
    }

    /// `len` bytes of the text from `start`, as the `&str` they were validated as.
    fn text(&self, start: usize, len: usize) -> &'a str {
        let text = self.data.get(self.layout.text()).unwrap_or(&[]);
        text.get(start..start + len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    fn method_str(&self) -> &'a str {
        self.text(0, self.layout.method_len)
    }

    fn target(&self) -> &'a str {
        self.text(self.layout.method_len, self.layout.target_len)
    }

    /// The fields, in arrival order.
    fn fields(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a> {
        let data = self.data;
        let text = data.get(self.layout.text()).unwrap_or(&[]);
        let values = data.get(self.layout.values()).unwrap_or(&[]);
        let spans = data.get(self.layout.spans()).unwrap_or(&[]);
        let (mut name_start, mut value_start) =
            (self.layout.method_len + self.layout.target_len, 0);
        spans.chunks_exact(8).map(move |span| {
            let end = |b: &[u8]| {
                let mut w = [0u8; 4];
                w.copy_from_slice(b);
                u32::from_le_bytes(w) as usize
            };
            let (name_end, value_end) = (end(&span[..4]), end(&span[4..]));
            let name = text
                .get(name_start..name_end)
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or("");
            let value = values.get(value_start..value_end).unwrap_or(&[]);
            (name_start, value_start) = (name_end, value_end);
            (name, value)
        })
    }
}

impl RequestHead {
    fn view(&self) -> View<'_> {
        View::new(&self.data)
    }

    /// The same head, recording the TCP peer it came from.
    pub fn with_peer_addr(mut self, peer: core::net::SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// The TCP peer the runtime recorded, if any.
    pub fn peer_addr(&self) -> Option<core::net::SocketAddr> {
        self.peer
    }

    /// The method.
    pub fn method(&self) -> Method {
        self.view().layout.method
    }

    /// The method exactly as sent.
    pub fn method_str(&self) -> &str {
        self.view().method_str()
    }

    /// The raw request target, e.g. `/engine.io/?EIO=4&transport=polling`.
    pub fn target(&self) -> &str {
        self.view().target()
    }

    /// The target's path: everything before `?`. For an absolute-form target
    /// (`http://host/engine.io/?…`, as sent to proxies) the scheme and authority are dropped,
    /// so routing sees `/engine.io/` either way.
    pub fn path(&self) -> &str {
        let target = self.target();
        let before_query = target.split_once('?').map_or(target, |(p, _)| p);
        match before_query.split_once("://") {
            Some((scheme, rest)) if !scheme.is_empty() && !scheme.contains('/') => {
                rest.find('/').and_then(|i| rest.get(i..)).unwrap_or("/")
            }
            _ => before_query,
        }
    }

    /// The query: everything after the first `?`, `""` if there is none.
    pub fn query(&self) -> &str {
        self.target().split_once('?').map_or("", |(_, q)| q)
    }

    /// The first value of query parameter `name`, percent-decoded with `+` as space (see
    /// [`percent_decode`](super::percent_decode)). Keys are compared after decoding. A key
    /// present without `=` gives `Some("")`.
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        query_pairs(self.query())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// The first field named `name` (ASCII case-insensitive). `None` if absent or if that
    /// value is not valid UTF-8 (obs-text bytes); use [`headers`](RequestHead::headers) for the
    /// raw bytes.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// All fields in arrival order, values as raw bytes with surrounding whitespace removed.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.view().fields()
    }

    /// The minor HTTP version: `0` for HTTP/1.0, `1` for HTTP/1.1.
    pub fn http_minor_version(&self) -> u8 {
        self.view().layout.minor
    }

    /// Whether the connection may carry another request after this one: HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive` (and no `close`).
    pub fn keep_alive(&self) -> bool {
        self.view().layout.keep_alive
    }

    /// How the body is framed.
    pub fn body_kind(&self) -> BodyKind {
        self.view().layout.body_kind
    }

    /// Whether the client asks to switch to WebSocket: `GET`, `Upgrade` listing `websocket`,
    /// `Connection` listing `upgrade` (both case-insensitive) and a `Sec-WebSocket-Key`. This
    /// states intent only; [`websocket_handshake`](super::websocket_handshake) checks validity.
    pub fn is_websocket_upgrade(&self) -> bool {
        self.method() == Method::Get
            && self.has_token("upgrade", "websocket")
            && self.has_token("connection", "upgrade")
            && self.websocket_key().is_some()
    }

    /// The first non-empty `Sec-WebSocket-Key`.
    pub fn websocket_key(&self) -> Option<&str> {
        self.header("sec-websocket-key").filter(|k| !k.is_empty())
    }

    /// The full `Content-Type` value, parameters included (`text/plain; charset=UTF-8`).
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// Whether an HTTP/1.1 client waits for `100 Continue` before sending the body
    /// (`Expect: 100-continue`, RFC 9110 §10.1.1); curl does so for larger POSTs.
    pub fn expects_continue(&self) -> bool {
        self.http_minor_version() == 1
            && self
                .header_bytes("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"))
    }

    /// Build a head from parts (for tests and for runtimes that parse elsewhere, e.g. hyper).
    ///
    /// The head counts as HTTP/1.1. The method must be a token, the target non-empty without
    /// whitespace or control characters, names tokens and values free of control characters
    /// (surrounding whitespace is trimmed). The framing rules of [`parse_head`] apply.
    pub fn from_parts(
        method: &str,
        target: &str,
        headers: Vec<(String, Vec<u8>)>,
    ) -> Result<RequestHead, HttpError> {
        if !is_token(method.as_bytes()) {
            return Err(HttpError::Malformed("invalid method"));
        }
        // Same byte class httparse accepts in a request target.
        if target.is_empty() || !target.bytes().all(|b| b > b' ' && b != 0x7f) {
            return Err(HttpError::Malformed("invalid request target"));
        }
        for (name, value) in &headers {
            if !is_token(name.as_bytes()) {
                return Err(HttpError::Malformed("invalid header name"));
            }
            if !value.iter().all(|&b| is_field_value_byte(b)) {
                return Err(HttpError::Malformed("invalid header value"));
            }
        }
        build(
            method,
            target,
            1,
            headers
                .iter()
                .map(|(n, v)| (n.as_str(), trim_ows(v.as_slice()))),
        )
    }

    fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Whether any field `name` lists `token` in its comma-separated value.
    pub(crate) fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers()
            .any(|(n, v)| n.eq_ignore_ascii_case(name) && list_contains(v, token))
    }

    /// How many fields are named `name`.
    pub(crate) fn count(&self, name: &str) -> usize {
        self.headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
}

impl fmt::Debug for RequestHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Fields<'a>(&'a RequestHead);
        impl fmt::Debug for Fields<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(
                        self.0
                            .headers()
                            .map(|(n, v)| (n, String::from_utf8_lossy(v))),
                    )
                    .finish()
            }
        }
        f.debug_struct("RequestHead")
            .field("method", &self.method_str())
            .field("target", &self.target())
            .field(
                "version",
                &format_args!("HTTP/1.{}", self.http_minor_version()),
            )
            .field("headers", &Fields(self))
            .field("body_kind", &self.body_kind())
            .finish()
    }
}

/// Parse a head from the start of `buf`.
///
/// `Ok(None)`: need more bytes (and `buf` is still shorter than `max_head_bytes`).
/// `Ok(Some((head, consumed)))`: done; `consumed` is the head's length, the body (or the next
/// request) starts at `buf[consumed..]`.
///
/// Errors: head too large (also when the terminator never arrives), too many fields,
/// malformed syntax, both `Content-Length` and `Transfer-Encoding`, conflicting or invalid
/// `Content-Length`, a transfer coding other than `chunked`, `Transfer-Encoding` in HTTP/1.0,
/// more than one `Host`, an HTTP version other than 1.0/1.1.
///
/// Only the first `max_head_bytes` of `buf` are looked at, so the outcome for a given byte
/// stream does not depend on how it was split across reads. The parse restarts from the
/// beginning on each call: call it again only once more bytes have arrived.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<(RequestHead, usize)>, HttpError> {
    const STACK_FIELDS: usize = 64;
    let window = buf.get(..limits.max_head_bytes).unwrap_or(buf);
    let mut on_stack = [httparse::EMPTY_HEADER; STACK_FIELDS];
    let mut on_heap;
    let slots = match on_stack.get_mut(..limits.max_headers) {
        Some(slots) => slots,
        None => {
            on_heap = vec![httparse::EMPTY_HEADER; limits.max_headers];
            on_heap.as_mut_slice()
        }
    };
    let mut req = httparse::Request::new(slots);
    match req.parse(window) {
        Ok(httparse::Status::Complete(consumed)) => {
            let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version)
            else {
                return Err(HttpError::Malformed("incomplete request line"));
            };
            let head = build(
                method,
                target,
                minor,
                req.headers.iter().map(|h| (h.name, h.value)),
            )?;
            Ok(Some((head, consumed)))
        }
        // A head that fits the limit would have completed inside the window.
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_head_bytes => {
            Err(HttpError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(match e {
            httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
            httparse::Error::Version => HttpError::UnsupportedVersion,
            httparse::Error::HeaderName => HttpError::Malformed("invalid header name"),
            httparse::Error::HeaderValue => HttpError::Malformed("invalid header value"),
            httparse::Error::NewLine => HttpError::Malformed("invalid line ending"),
            httparse::Error::Token => HttpError::Malformed("invalid request line"),
            httparse::Error::Status => HttpError::Malformed("invalid status"),
        }),
    }
}

/// Heads up to this size are assembled on the stack and copied into their shared allocation
/// once; larger ones go through a temporary buffer.
const STACK_HEAD: usize = 1024;

/// Copies validated parts into one owned head and applies the framing rules.
fn build<'a>(
    method: &str,
    target: &str,
    minor: u8,
    fields: impl Iterator<Item = (&'a str, &'a [u8])> + Clone,
) -> Result<RequestHead, HttpError> {
    let names_len: usize = fields.clone().map(|(n, _)| n.len()).sum();
    let values_len: usize = fields.clone().map(|(_, v)| v.len()).sum();
    let mut layout = Layout {
        method: Method::from_token(method),
        minor,
        keep_alive: false,
        body_kind: BodyKind::None,
        method_len: method.len(),
        target_len: target.len(),
        text_len: method.len() + target.len() + names_len,
        values_len,
        fields: fields.clone().count(),
    };
    // Offsets are stored as `u32`s.
    if u32::try_from(layout.total()).is_err() {
        return Err(HttpError::HeadTooLarge);
    }
    let (body_kind, keep_alive) = framing(minor, fields.clone())?;
    layout.body_kind = body_kind;
    layout.keep_alive = keep_alive;
    let total = layout.total();
    let fill = |out: &mut [u8]| {
        layout.write_prelude(out);
        let (_, rest) = out.split_at_mut(PRELUDE);
        let (text, rest) = rest.split_at_mut(layout.text_len);
        let (values, spans) = rest.split_at_mut(layout.values_len);
        let mut t = 0;
        for part in [method, target] {
            text[t..t + part.len()].copy_from_slice(part.as_bytes());
            t += part.len();
        }
        let mut v = 0;
        for ((name, value), span) in fields.zip(spans.chunks_exact_mut(8)) {
            text[t..t + name.len()].copy_from_slice(name.as_bytes());
            t += name.len();
            values[v..v + value.len()].copy_from_slice(value);
            v += value.len();
            // Both fit: the whole head does.
            span[..4].copy_from_slice(&(t as u32).to_le_bytes());
            span[4..].copy_from_slice(&(v as u32).to_le_bytes());
        }
    };
    let data: Arc<[u8]> = if total <= STACK_HEAD {
        let mut stack = [0u8; STACK_HEAD];
        fill(&mut stack[..total]);
        Arc::from(&stack[..total])
    } else {
        let mut heap = vec![0u8; total];
        fill(&mut heap);
        Arc::from(heap)
    };
    Ok(RequestHead { data, peer: None })
}

/// Body framing (RFC 9112 §6.1–6.3) and connection persistence (§9.3).
fn framing<'a>(
    minor: u8,
    fields: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> Result<(BodyKind, bool), HttpError> {
    let mut content_length = None;
    let mut transfer_encoding = false;
    let mut chunked = false;
    let mut hosts = 0usize;
    let mut close = false;
    let mut keep_alive = false;
    for (name, value) in fields {
        if name.eq_ignore_ascii_case("content-length") {
            // RFC 9110 §8.6 lets a recipient accept a list of identical values.
            for item in value.split(|&b| b == b',') {
                let n = parse_content_length(trim_ows(item))?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(HttpError::InvalidContentLength);
                }
                content_length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = true;
            for item in value.split(|&b| b == b',').map(trim_ows) {
                if item.is_empty() {
                    continue;
                }
                // chunked must be the final coding and applied once (RFC 9112 §7).
                if chunked {
                    return Err(HttpError::UnsupportedTransferEncoding);
                }
                if !item.eq_ignore_ascii_case(b"chunked") {
                    return Err(HttpError::UnsupportedTransferEncoding);
                }
                chunked = true;
            }
        } else if name.eq_ignore_ascii_case("connection") {
            close |= list_contains(value, "close");
            keep_alive |= list_contains(value, "keep-alive");
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        }
    }
    // A missing Host is tolerated (we do not route by host, and HTTP/2 front ends hand us
    // :authority instead), but two make the target ambiguous (RFC 9112 §3.2).
    if hosts > 1 {
        return Err(HttpError::Malformed("more than one Host field"));
    }
    let body_kind = if transfer_encoding {
        if content_length.is_some() {
            return Err(HttpError::ContentLengthWithTransferEncoding);
        }
        // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
        if minor == 0 {
            return Err(HttpError::Malformed("Transfer-Encoding in HTTP/1.0"));
        }
        if !chunked {
            return Err(HttpError::Malformed("empty Transfer-Encoding"));
        }
        BodyKind::Chunked
    } else {
        content_length.map_or(BodyKind::None, BodyKind::Length)
    };
    let persistent = !close && (minor >= 1 || keep_alive);
    Ok((body_kind, persistent))
}

/// `1*DIGIT` into a `u64`, rejecting signs, spaces and overflow.
fn parse_content_length(s: &[u8]) -> Result<u64, HttpError> {
    if s.is_empty() {
        return Err(HttpError::InvalidContentLength);
    }
    s.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(HttpError::InvalidContentLength);
        }
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u64::from(b - b'0')))
            .ok_or(HttpError::InvalidContentLength)
    })
}
