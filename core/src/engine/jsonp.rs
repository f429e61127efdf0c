//! JSONP polling (query `j=<n>`), for v3 clients that can use neither XHR nor WebSocket.
//!
//! The server answers a GET with a script that hands the payload to the client's callback,
//! `___eio[<n>]("<payload>");`, and receives a POST as an HTML form field `d` holding the
//! payload, whose newlines the client escapes because old browsers mangle them in forms.

use super::packet::DecodeError;
use bytes::Bytes;

/// The response body for JSONP index `index` (only its ASCII digits are kept, so a hostile
/// query cannot inject script): `___eio[<digits>]("<payload as a JS string literal>");`.
///
/// The literal is escaped like `JSON.stringify`, and U+2028 and U+2029 too: JSON allows them
/// raw but older JavaScript parsers end a line there, which would break the script.
pub fn wrap(index: &str, payload: &str) -> Bytes {
    let mut out = Vec::with_capacity(payload.len().saturating_add(16).saturating_add(index.len()));
    out.extend_from_slice(b"___eio[");
    out.extend(index.bytes().filter(u8::is_ascii_digit));
    out.extend_from_slice(b"](");
    push_js_string(&mut out, payload);
    out.extend_from_slice(b");");
    Bytes::from(out)
}

/// The payload text from a JSONP POST body (`application/x-www-form-urlencoded`, field `d`).
///
/// The field is form-decoded (`+` is a space, `%XX` a byte; a `%` not followed by two hex
/// digits stays as is, like Node's `querystring`), then the client's newline escaping is
/// undone the way the reference server does it: `\n` (backslash, `n`) becomes a newline and
/// `\\n` becomes `\n`, scanning left to right.
///
/// A body without a `d` field, or with several (which `querystring` turns into an array), is
/// [`DecodeError::InvalidJsonpBody`]; the reference silently ignores such a POST. Decoded bytes
/// that are not UTF-8 are [`DecodeError::InvalidUtf8`] rather than replacement characters.
pub fn unwrap_post(body: &[u8]) -> Result<String, DecodeError> {
    let mut field = None;
    for pair in body.split(|&b| b == b'&') {
        // As in `querystring`, the first `=` splits key from value; none means an empty value.
        let mut parts = pair.splitn(2, |&b| b == b'=');
        let key = parts.next().unwrap_or_default();
        let value = parts.next().unwrap_or_default();
        if form_decode(key) != b"d" {
            continue;
        }
        if field.is_some() {
            return Err(DecodeError::InvalidJsonpBody);
        }
        field = Some(form_decode(value));
    }
    let field = field.ok_or(DecodeError::InvalidJsonpBody)?;
    let text = String::from_utf8(field).map_err(|_| DecodeError::InvalidUtf8)?;
    Ok(unescape_newlines(&text))
}

/// Undoes the client's escaping: `\\n` → `\n` (two characters) and `\n` → newline.
fn unescape_newlines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('\\') {
        let Some((before, from)) = rest.split_at_checked(i) else {
            break;
        };
        out.push_str(before);
        if let Some(after) = from.strip_prefix("\\\\n") {
            out.push_str("\\n");
            rest = after;
        } else if let Some(after) = from.strip_prefix("\\n") {
            out.push('\n');
            rest = after;
        } else {
            // A lone backslash is kept; the next one may start an escape of its own.
            out.push('\\');
            rest = from.get(1..).unwrap_or_default();
        }
    }
    out.push_str(rest);
    out
}

fn form_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        let escaped = match (
            b,
            input.get(i.saturating_add(1)),
            input.get(i.saturating_add(2)),
        ) {
            (b'%', Some(&hi), Some(&lo)) => hex(hi).zip(hex(lo)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match (escaped, b) {
            (Some(byte), _) => {
                out.push(byte);
                i = i.saturating_add(3);
            }
            (None, b'+') => {
                out.push(b' ');
                i = i.saturating_add(1);
            }
            (None, _) => {
                out.push(b);
                i = i.saturating_add(1);
            }
        }
    }
    out
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Appends `text` as a double-quoted JavaScript string literal.
fn push_js_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut utf8 = [0u8; 4];
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{2028}' => out.extend_from_slice(b"\\u2028"),
            '\u{2029}' => out.extend_from_slice(b"\\u2029"),
            // Other control characters as `JSON.stringify` writes them: lowercase hex.
            c if c < ' ' => {
                let n = c as usize;
                out.extend_from_slice(b"\\u00");
                out.push(HEX.get(n >> 4).copied().unwrap_or(b'0'));
                out.push(HEX.get(n & 0xf).copied().unwrap_or(b'0'));
            }
            c => out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
        }
    }
    out.push(b'"');
}
