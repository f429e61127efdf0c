//! Query strings: `application/x-www-form-urlencoded` pairs and percent-decoding.

use std::borrow::Cow;

/// Decodes `%XX` escapes; with `plus_as_space`, `+` becomes a space (form encoding, as in query
/// strings).
///
/// Lenient like browsers and Node's `querystring`: an invalid escape (`%`, `%4`, `%zz`) is kept
/// literally, and decoded bytes that are not UTF-8 become U+FFFD. Borrows when nothing needs
/// decoding.
pub fn percent_decode(s: &str, plus_as_space: bool) -> Cow<'_, str> {
    let bytes = s.as_bytes();
    if !bytes
        .iter()
        .any(|&b| b == b'%' || (plus_as_space && b == b'+'))
    {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'%' => match tail {
                [hi, lo, after @ ..] => match (hex(*hi), hex(*lo)) {
                    (Some(hi), Some(lo)) => {
                        out.push(hi << 4 | lo);
                        rest = after;
                    }
                    _ => out.push(b'%'),
                },
                _ => out.push(b'%'),
            },
            b'+' if plus_as_space => out.push(b' '),
            _ => out.push(b),
        }
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// The `key=value` pairs of a query string (without the leading `?`), both decoded with
/// [`percent_decode`] (`+` as space). Empty segments (`a=1&&b=2`) are skipped; a segment
/// without `=` is a key with an empty value.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query
        .split('&')
        .filter(|segment| !segment.is_empty())
        .map(|segment| {
            let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
            (percent_decode(key, true), percent_decode(value, true))
        })
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
