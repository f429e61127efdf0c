//! SHA-1 (FIPS 180-4), only for the WebSocket accept key (RFC 6455 §4.2.2).
//!
//! SHA-1 is broken for collision resistance; the handshake uses it as a fixed transform, not
//! for security, so nothing else in Volley should reach for it.

const H0: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

/// The SHA-1 digest of `data`.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut state = H0;
    let mut blocks = data.chunks_exact(64);
    for block in &mut blocks {
        compress(&mut state, block);
    }

    // Padding: 0x80, zeros, then the message length in bits as a big-endian u64; one or two
    // blocks depending on whether the length still fits after the remainder.
    let rest = blocks.remainder();
    let mut tail = [0u8; 128];
    let tail_len = if rest.len() < 56 { 64 } else { 128 };
    for (t, &b) in tail.iter_mut().zip(rest) {
        *t = b;
    }
    if let Some(t) = tail.get_mut(rest.len()) {
        *t = 0x80;
    }
    // FIPS 180-4 defines the length modulo 2^64 bits; wrapping matches that.
    let bit_len = (data.len() as u64).wrapping_mul(8);
    if let Some(len_field) = tail.get_mut(tail_len - 8..tail_len) {
        len_field.copy_from_slice(&bit_len.to_be_bytes());
    }
    for block in tail.chunks_exact(64).take(tail_len / 64) {
        compress(&mut state, block);
    }

    let mut out = [0u8; 20];
    for (o, word) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// One round of the compression function over a 64-byte block.
fn compress(state: &mut [u32; 5], block: &[u8]) {
    let mut w = [0u32; 80];
    for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    for t in 16..80 {
        w[t] = (w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16]).rotate_left(1);
    }

    let [mut a, mut b, mut c, mut d, mut e] = *state;
    for (t, &wt) in w.iter().enumerate() {
        let (f, k) = match t {
            0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
            20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
            40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
            _ => (b ^ c ^ d, 0xCA62_C1D6),
        };
        let temp = a
            .rotate_left(5)
            .wrapping_add(f)
            .wrapping_add(e)
            .wrapping_add(k)
            .wrapping_add(wt);
        e = d;
        d = c;
        c = b.rotate_left(30);
        b = a;
        a = temp;
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e]) {
        *s = s.wrapping_add(v);
    }
}
