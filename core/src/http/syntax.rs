//! Character classes and list helpers from RFC 9110 §5.6, shared by the codecs.

/// `tchar`: the characters of a token (method, field name, transfer coding).
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// `1*tchar`.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// A byte allowed inside a field value: HTAB, SP, VCHAR, obs-text. Everything else is a control
/// character, and CR/LF/NUL in particular are how header injection happens.
pub(crate) fn is_field_value_byte(b: u8) -> bool {
    b == b'\t' || (b >= b' ' && b != 0x7f)
}

/// Strips optional whitespace (SP / HTAB) from both ends.
pub(crate) fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t');
    let end = s.iter().rposition(|&b| b != b' ' && b != b'\t');
    match (start, end) {
        (Some(start), Some(end)) => s.get(start..=end).unwrap_or(&[]),
        _ => &[],
    }
}

/// Whether a comma-separated field value lists `token` (ASCII case-insensitive). Empty list
/// elements are ignored, as RFC 9110 §5.6.1 asks of recipients.
pub(crate) fn list_contains(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| trim_ows(item).eq_ignore_ascii_case(token.as_bytes()))
}
