//! Base64 (RFC 4648): the standard alphabet with padding for Engine.IO binary packets and the
//! WebSocket accept key, the URL-safe alphabet without padding for session ids.

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The input was not valid base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidBase64;

impl std::fmt::Display for InvalidBase64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("invalid base64")
    }
}

impl std::error::Error for InvalidBase64 {}

/// Encodes `input`, handing the output to `out` a few characters at a time.
fn encode_to(input: &[u8], alphabet: &[u8; 64], pad: bool, mut out: impl FnMut(&[u8])) {
    let mut chunks = input.chunks_exact(3);
    for c in &mut chunks {
        let n = u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]);
        out(&[
            alphabet[(n >> 18) as usize & 63],
            alphabet[(n >> 12) as usize & 63],
            alphabet[(n >> 6) as usize & 63],
            alphabet[n as usize & 63],
        ]);
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out(&[alphabet[(n >> 18) as usize & 63]]);
            out(&[alphabet[(n >> 12) as usize & 63]]);
            if pad {
                out(b"==");
            }
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            out(&[alphabet[(n >> 18) as usize & 63]]);
            out(&[alphabet[(n >> 12) as usize & 63]]);
            out(&[alphabet[(n >> 6) as usize & 63]]);
            if pad {
                out(b"=");
            }
        }
        _ => {}
    }
}

fn encode_with(input: &[u8], alphabet: &[u8; 64], pad: bool, out: &mut Vec<u8>) {
    out.reserve(input.len().div_ceil(3) * 4);
    encode_to(input, alphabet, pad, |chunk| out.extend_from_slice(chunk));
}

/// Writes the URL-safe encoding of `input`, without padding, into `out`; returns how many
/// bytes it wrote. Characters beyond `out`'s length are dropped: size it
/// `input.len().div_ceil(3) * 4` (or exactly, without padding).
pub(crate) fn encode_url_to(input: &[u8], out: &mut [u8]) -> usize {
    let mut n = 0;
    encode_to(input, URL_SAFE, false, |chunk| {
        for &c in chunk {
            if let Some(slot) = out.get_mut(n) {
                *slot = c;
                n += 1;
            }
        }
    });
    n
}

/// Appends the standard, padded encoding of `input` to `out`.
pub fn encode_into(input: &[u8], out: &mut Vec<u8>) {
    encode_with(input, STANDARD, true, out);
}

/// The standard, padded encoding of `input`.
pub fn encode(input: &[u8]) -> String {
    let mut out = Vec::new();
    encode_into(input, &mut out);
    // The alphabet is ASCII.
    String::from_utf8(out).unwrap_or_default()
}

/// The URL-safe encoding of `input`, without padding.
pub fn encode_url(input: &[u8]) -> String {
    let mut out = Vec::new();
    encode_with(input, URL_SAFE, false, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

fn value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' | b'-' => 62,
        b'/' | b'_' => 63,
        _ => return None,
    } as u32)
}

/// Decodes base64 in either alphabet; padding is optional, but if present it must be
/// correct. Bits left over in the last character must be zero (canonical input only).
pub fn decode(input: &[u8]) -> Result<Vec<u8>, InvalidBase64> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 2);
    decode_to(input, |bytes| out.extend_from_slice(bytes))?;
    Ok(out)
}

/// How many bytes `input` decodes to, under the rules of [`decode`], without keeping them.
pub fn decoded_len(input: &[u8]) -> Result<usize, InvalidBase64> {
    let mut n = 0;
    decode_to(input, |bytes| n += bytes.len())?;
    Ok(n)
}

/// [`decode`], handing the output to `out` a few bytes at a time.
fn decode_to(input: &[u8], mut out: impl FnMut(&[u8])) -> Result<(), InvalidBase64> {
    let body = match input {
        [rest @ .., b'=', b'='] if input.len() % 4 == 0 => rest,
        [rest @ .., b'='] if input.len() % 4 == 0 => rest,
        _ => input,
    };
    if body.len() % 4 == 1 {
        return Err(InvalidBase64);
    }
    let mut chunks = body.chunks_exact(4);
    for c in &mut chunks {
        let mut n = 0u32;
        for &b in c {
            n = n << 6 | value(b).ok_or(InvalidBase64)?;
        }
        out(&[(n >> 16) as u8, (n >> 8) as u8, n as u8]);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut n = 0u32;
        for &b in rest {
            n = n << 6 | value(b).ok_or(InvalidBase64)?;
        }
        match rest.len() {
            2 => {
                if n & 0xf != 0 {
                    return Err(InvalidBase64);
                }
                out(&[(n >> 4) as u8]);
            }
            3 => {
                if n & 0x3 != 0 {
                    return Err(InvalidBase64);
                }
                out(&[(n >> 10) as u8, (n >> 2) as u8]);
            }
            _ => return Err(InvalidBase64),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_into_a_slice_matches_encoding_into_a_string() {
        for len in 0..40 {
            let input: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let expected = encode_url(&input);
            let mut out = [0u8; 64];
            let n = encode_url_to(&input, &mut out);
            assert_eq!(&out[..n], expected.as_bytes(), "{len} bytes");
            // A slice too short keeps what fits.
            let mut short = [0u8; 3];
            assert_eq!(encode_url_to(&input, &mut short), expected.len().min(3));
        }
    }

    #[test]
    fn decoded_len_agrees_with_decode() {
        for text in [
            "",
            "Zg",
            "Zg==",
            "Zm8=",
            "Zm9v",
            "dGhlIHNhbXBsZSBub25jZQ==",
            "Zh==",
            "Z",
            "Zm9v!",
            "a-_b",
            "Zg=",
        ] {
            assert_eq!(
                decoded_len(text.as_bytes()),
                decode(text.as_bytes()).map(|d| d.len()),
                "{text:?}"
            );
        }
    }
}
