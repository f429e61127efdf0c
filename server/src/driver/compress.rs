//! HTTP compression of the machine's long-polling answers (the reference's
//! `httpCompression`): gzip or deflate, as the request's `Accept-Encoding` prefers, for
//! bodies of at least the threshold.
//!
//! Only answers to `GET` requests are compressed (polls; a handshake's open packet is far
//! below any useful threshold), only with status 200 and without a `Content-Encoding` of
//! their own. WebSocket messages are never compressed: permessage-deflate needs support in
//! async-tungstenite, which it does not have.

use std::io::Write;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::{GzEncoder, ZlibEncoder};
use volley_core::http::{Method, RequestHead, Response};

/// The reference's default threshold: bodies shorter than this go out as they are.
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 1024;

/// A header the machine's layer puts on an answer that must stay uncompressed (it carries a
/// packet sent with `compress(false)` and none that allows compression); removed here
/// before the answer is written.
pub(crate) const UNCOMPRESSED: &str = "x-volley-uncompressed";

/// The codings this server can apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Gzip,
    Deflate,
}

impl Coding {
    fn name(self) -> &'static str {
        match self {
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
        }
    }
}

/// The quality `accept` gives `coding` (`*` standing for any coding not named), 0 when none.
fn quality(accept: &str, coding: &str) -> f32 {
    let mut wildcard = None;
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let q = parts
            .filter_map(|p| {
                let p = p.trim();
                p.strip_prefix("q=").or_else(|| p.strip_prefix("Q="))
            })
            .find_map(|v| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        if name.eq_ignore_ascii_case(coding) {
            return q;
        }
        if name == "*" {
            wildcard = Some(q);
        }
    }
    wildcard.unwrap_or(0.0)
}

/// The coding to answer with for `Accept-Encoding: accept`: the one with the higher quality,
/// gzip on a tie, none when both are refused.
fn choose(accept: &str) -> Option<Coding> {
    let gzip = quality(accept, "gzip");
    let deflate = quality(accept, "deflate");
    if gzip <= 0.0 && deflate <= 0.0 {
        None
    } else if gzip >= deflate {
        Some(Coding::Gzip)
    } else {
        Some(Coding::Deflate)
    }
}

fn encode(coding: Coding, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let out = Vec::with_capacity(body.len() / 2);
    match coding {
        Coding::Gzip => {
            let mut e = GzEncoder::new(out, Compression::default());
            e.write_all(body)?;
            e.finish()
        }
        Coding::Deflate => {
            // HTTP's "deflate" is the zlib format (RFC 1950), as Node's createDeflate makes.
            let mut e = ZlibEncoder::new(out, Compression::default());
            e.write_all(body)?;
            e.finish()
        }
    }
}

/// `response` to `head`, compressed when `threshold` is set and everything allows it.
pub(crate) fn compress(
    threshold: Option<usize>,
    head: &RequestHead,
    mut response: Response,
) -> Response {
    let before = response.headers.len();
    response
        .headers
        .retain(|(name, _)| !name.eq_ignore_ascii_case(UNCOMPRESSED));
    let marked = response.headers.len() != before;
    let Some(threshold) = threshold else {
        return response;
    };
    if marked
        || response.status != 200
        || head.method() != Method::Get
        || response.body.len() < threshold
        || response.get_header("content-encoding").is_some()
    {
        return response;
    }
    let Some(coding) = head.header("accept-encoding").and_then(choose) else {
        return response;
    };
    match encode(coding, &response.body) {
        Ok(body) => {
            response.body = Bytes::from(body);
            response
                .headers
                .retain(|(name, _)| !name.eq_ignore_ascii_case("content-length"));
            response.header("Content-Encoding", coding.name())
        }
        Err(e) => {
            // Writing to memory does not fail; if it did, the body goes out as it is.
            tracing::debug!(error = %e, "compression failed");
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preferred_coding_wins_gzip_on_a_tie_none_when_refused() {
        assert_eq!(choose("gzip, deflate, br"), Some(Coding::Gzip));
        assert_eq!(choose("deflate"), Some(Coding::Deflate));
        assert_eq!(choose("gzip;q=0.5, deflate"), Some(Coding::Deflate));
        assert_eq!(choose("gzip;q=0, deflate;q=0"), None);
        assert_eq!(choose("br"), None);
        assert_eq!(choose("*"), Some(Coding::Gzip));
        assert_eq!(choose("*;q=0.2, deflate;q=0.1"), Some(Coding::Gzip));
        assert_eq!(choose("identity"), None);
        assert_eq!(choose("GZIP"), Some(Coding::Gzip));
    }
}
