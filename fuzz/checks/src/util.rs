//! Small helpers: a deterministic generator for chunkings, derived from the input itself so
//! that a crash reproduces from its file alone.

/// SplitMix64: tiny, deterministic, good enough to pick cut points.
pub(crate) struct Mix(u64);

impl Mix {
    /// Seeded from a hash of `data` (FNV-1a) and a `salt` telling uses apart.
    pub(crate) fn of(data: &[u8], salt: u64) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ salt;
        for &b in data {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Mix(h)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next() % n as u64) as usize
    }
}

/// Chunk lengths that add up to `len`: mostly short pieces, now and then an empty one (a read
/// that returned nothing new) or a long one.
pub(crate) fn chunking(data: &[u8], salt: u64, len: usize) -> Vec<usize> {
    let mut mix = Mix::of(data, salt);
    let mut out = Vec::new();
    let mut left = len;
    while left > 0 {
        let n = match mix.below(8) {
            0 => 0,
            1 => left,
            2 | 3 => 1,
            _ => 1 + mix.below(16),
        }
        .min(left);
        out.push(n);
        left -= n;
    }
    out
}

/// The same bytes as pieces of the given lengths.
pub(crate) fn pieces<'a>(data: &'a [u8], lengths: &[usize]) -> Vec<&'a [u8]> {
    let mut rest = data;
    let mut out = Vec::with_capacity(lengths.len() + 1);
    for &n in lengths {
        let (piece, after) = rest.split_at(n.min(rest.len()));
        out.push(piece);
        rest = after;
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}
