//! Request bodies: `Content-Length` and chunked framing, fed incrementally.

use bytes::{Bytes, BytesMut};

use super::error::HttpError;
use super::head::BodyKind;
use super::syntax::{is_field_value_byte, is_token};

/// Longest chunk-size line accepted, extensions and CRLF included.
pub const MAX_CHUNK_LINE: usize = 4096;
/// Most chunk-extension bytes accepted over a whole body. Extensions are discarded, but
/// without a cap a peer could make us scan unbounded metadata per body byte.
pub const MAX_CHUNK_EXTENSIONS: usize = 16 * 1024;
/// Most bytes in the trailer section after the last chunk (trailers are discarded).
pub const MAX_TRAILER_BYTES: usize = 8 * 1024;

/// What [`BodyDecoder::feed`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyProgress {
    /// The body is incomplete; feed more bytes.
    NeedMore,
    /// The whole body. Zero-copy (split off the input) when it arrived in one buffer.
    Done(Bytes),
}

/// Incremental body reader.
///
/// Feed it the connection's read buffer after the head; it removes body bytes from the front
/// and leaves whatever follows (a pipelined request) in place. Chunked framing is strict:
/// lines end in CRLF, extensions are checked for control characters and ignored, trailers are
/// checked and discarded. Memory is bounded by `limit` plus [`MAX_CHUNK_LINE`] /
/// [`MAX_TRAILER_BYTES`] left unconsumed in the caller's buffer while a line is incomplete.
///
/// Once `Done`, further calls return the same body and consume nothing; once failed, further
/// calls return the same error.
#[derive(Debug)]
pub struct BodyDecoder {
    state: State,
    limit: usize,
    body: BytesMut,
    extension_bytes: usize,
}

#[derive(Debug)]
enum State {
    Length { remaining: usize },
    ChunkSize,
    ChunkData { remaining: usize },
    ChunkDataEnd,
    Trailers { seen: usize },
    Done(Bytes),
    Failed(HttpError),
}

impl BodyDecoder {
    /// A decoder for a body framed as `kind`; `limit` is the most body bytes accepted (decoded
    /// bytes for chunked). A `Content-Length` over the limit fails on the first
    /// [`feed`](BodyDecoder::feed), before any byte arrives.
    pub fn new(kind: BodyKind, limit: usize) -> Self {
        let state = match kind {
            BodyKind::None => State::Done(Bytes::new()),
            BodyKind::Chunked => State::ChunkSize,
            BodyKind::Length(n) => match usize::try_from(n) {
                Ok(n) if n <= limit => State::Length { remaining: n },
                _ => State::Failed(HttpError::BodyTooLarge),
            },
        };
        BodyDecoder {
            state,
            limit,
            body: BytesMut::new(),
            extension_bytes: 0,
        }
    }

    /// Consumes what it can from the front of `input` (leaving any following pipelined request
    /// bytes in place).
    pub fn feed(&mut self, input: &mut BytesMut) -> Result<BodyProgress, HttpError> {
        match self.step(input) {
            Ok(progress) => Ok(progress),
            Err(e) => {
                self.state = State::Failed(e.clone());
                self.body = BytesMut::new();
                Err(e)
            }
        }
    }

    fn step(&mut self, input: &mut BytesMut) -> Result<BodyProgress, HttpError> {
        // Every iteration either consumes input, changes state, or returns: bounded by
        // input.len() plus a few transitions.
        loop {
            match &mut self.state {
                State::Done(body) => return Ok(BodyProgress::Done(body.clone())),
                State::Failed(e) => return Err(e.clone()),
                State::Length { remaining } => {
                    let want = *remaining;
                    let took = self.take(input, want);
                    let left = want - took;
                    if left > 0 {
                        self.state = State::Length { remaining: left };
                        return Ok(BodyProgress::NeedMore);
                    }
                    return Ok(self.finish());
                }
                State::ChunkSize => {
                    let Some(len) =
                        find_line(input, MAX_CHUNK_LINE).map_err(|_| HttpError::BadChunk)?
                    else {
                        return Ok(BodyProgress::NeedMore);
                    };
                    let line = input.split_to(len);
                    let content = line.get(..len - 2).unwrap_or(&[]);
                    let (size, ext_len) = parse_chunk_line(content)?;
                    self.extension_bytes = self
                        .extension_bytes
                        .checked_add(ext_len)
                        .filter(|&n| n <= MAX_CHUNK_EXTENSIONS)
                        .ok_or(HttpError::BadChunk)?;
                    if size == 0 {
                        self.state = State::Trailers { seen: 0 };
                        continue;
                    }
                    let total = u64::try_from(self.body.len())
                        .ok()
                        .and_then(|have| have.checked_add(size));
                    let remaining = match (total, usize::try_from(size)) {
                        (Some(total), Ok(size)) if total <= self.limit as u64 => size,
                        _ => return Err(HttpError::BodyTooLarge),
                    };
                    self.state = State::ChunkData { remaining };
                }
                State::ChunkData { remaining } => {
                    let want = *remaining;
                    let took = self.take(input, want);
                    let left = want - took;
                    if left > 0 {
                        self.state = State::ChunkData { remaining: left };
                        return Ok(BodyProgress::NeedMore);
                    }
                    self.state = State::ChunkDataEnd;
                }
                State::ChunkDataEnd => match input.as_ref() {
                    [b'\r', b'\n', ..] => {
                        let _ = input.split_to(2);
                        self.state = State::ChunkSize;
                    }
                    [] | [b'\r'] => return Ok(BodyProgress::NeedMore),
                    _ => return Err(HttpError::BadChunk),
                },
                State::Trailers { seen } => {
                    let seen = *seen;
                    let budget = MAX_TRAILER_BYTES.saturating_sub(seen);
                    let len = match find_line(input, budget) {
                        Ok(Some(len)) => len,
                        Ok(None) => return Ok(BodyProgress::NeedMore),
                        Err(LineError::TooLong) => return Err(HttpError::TrailersTooLarge),
                        Err(LineError::BareLf) => return Err(HttpError::BadChunk),
                    };
                    let line = input.split_to(len);
                    if len == 2 {
                        return Ok(self.finish());
                    }
                    if !is_trailer_field(line.get(..len - 2).unwrap_or(&[])) {
                        return Err(HttpError::BadChunk);
                    }
                    self.state = State::Trailers { seen: seen + len };
                }
            }
        }
    }

    /// Moves up to `want` bytes from `input` into the body, splitting instead of copying
    /// while the body is still empty.
    fn take(&mut self, input: &mut BytesMut, want: usize) -> usize {
        let n = want.min(input.len());
        if n > 0 {
            self.body.unsplit(input.split_to(n));
        }
        n
    }

    fn finish(&mut self) -> BodyProgress {
        let body = std::mem::take(&mut self.body).freeze();
        self.state = State::Done(body.clone());
        BodyProgress::Done(body)
    }
}

enum LineError {
    /// No LF within the allowed length.
    TooLong,
    /// LF without CR before it: a known desync vector between lenient and strict parsers.
    BareLf,
}

/// The length of the CRLF-terminated line at the front of `input`, CRLF included; `None` if
/// incomplete. Only the first `max` bytes are searched, so the outcome does not depend on how
/// the input was split.
fn find_line(input: &[u8], max: usize) -> Result<Option<usize>, LineError> {
    match input.iter().take(max).position(|&b| b == b'\n') {
        Some(lf) if lf > 0 && input.get(lf - 1) == Some(&b'\r') => Ok(Some(lf + 1)),
        Some(_) => Err(LineError::BareLf),
        None if input.len() >= max => Err(LineError::TooLong),
        None => Ok(None),
    }
}

/// `chunk-size [chunk-ext]` (RFC 9112 §7.1) without the CRLF: the size and the extension
/// length. Extensions are only checked for forbidden bytes, then ignored.
fn parse_chunk_line(line: &[u8]) -> Result<(u64, usize), HttpError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(HttpError::BadChunk);
    }
    let size = line.iter().take(digits).try_fold(0u64, |acc, &b| {
        let digit = char::from(b).to_digit(16).ok_or(HttpError::BadChunk)?;
        acc.checked_mul(16)
            .and_then(|acc| acc.checked_add(u64::from(digit)))
            .ok_or(HttpError::BadChunk)
    })?;
    let ext = line.get(digits..).unwrap_or(&[]);
    let after_ws = ext
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .and_then(|i| ext.get(i..));
    match after_ws {
        // Only whitespace (or nothing) after the size: whitespace alone is not `chunk-ext`.
        None if ext.is_empty() => Ok((size, 0)),
        Some([b';', ..]) if ext.iter().all(|&b| is_field_value_byte(b)) => Ok((size, ext.len())),
        _ => Err(HttpError::BadChunk),
    }
}

/// `field-name ":" OWS field-value OWS`; obs-fold is not accepted.
fn is_trailer_field(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        Some(colon) => {
            is_token(line.get(..colon).unwrap_or(&[]))
                && line
                    .get(colon + 1..)
                    .unwrap_or(&[])
                    .iter()
                    .all(|&b| is_field_value_byte(b))
        }
        None => false,
    }
}
