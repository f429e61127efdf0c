//! The server side of the WebSocket opening handshake (RFC 6455 §4.2).

use super::head::{BodyKind, RequestHead};
use super::response::Response;
use crate::{base64, sha1::sha1};

/// RFC 6455 §1.3; any other value makes every real client reject the handshake.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Sec-WebSocket-Accept for a Sec-WebSocket-Key (RFC 6455: base64(sha1(key + GUID))).
pub fn websocket_accept(key: &str) -> String {
    // A valid key is 24 characters: key and GUID fit on the stack.
    let mut stack = [0u8; 128];
    let digest = match stack.get_mut(..key.len() + GUID.len()) {
        Some(input) => {
            let (k, g) = input.split_at_mut(key.len());
            k.copy_from_slice(key.as_bytes());
            g.copy_from_slice(GUID);
            sha1(input)
        }
        None => sha1(&[key.as_bytes(), GUID].concat()),
    };
    base64::encode(&digest)
}

/// A 101 Switching Protocols response for a valid upgrade request (Upgrade: websocket,
/// Connection: Upgrade, Sec-WebSocket-Accept).
///
/// `None` unless the request [is an upgrade](RequestHead::is_websocket_upgrade) over HTTP/1.1
/// with exactly one `Sec-WebSocket-Key` that decodes to 16 bytes, `Sec-WebSocket-Version: 13`,
/// and no body (bytes after the head must be WebSocket frames, nothing else). RFC 6455 would
/// answer a wrong version with 426; Engine.IO answers every failed handshake with 400, so that
/// choice is left to the caller.
pub fn websocket_handshake(head: &RequestHead) -> Option<Response> {
    if !head.is_websocket_upgrade()
        || head.http_minor_version() != 1
        || head.count("sec-websocket-key") != 1
        || !matches!(head.body_kind(), BodyKind::None | BodyKind::Length(0))
    {
        return None;
    }
    if head.header("sec-websocket-version") != Some("13") {
        return None;
    }
    let key = head.websocket_key()?;
    if base64::decoded_len(key.as_bytes()).ok()? != 16 {
        return None;
    }
    Some(
        Response::new(101)
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Accept", websocket_accept(key)),
    )
}
