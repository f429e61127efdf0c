//! Deterministic randomness: a ChaCha20 (RFC 8439) keystream seeded by the caller, and the
//! session id generators built on it. The core never draws entropy on its own.

use crate::base64;
use crate::http::RequestHead;
use crate::ids::Sid;

/// A cryptographically strong generator: the ChaCha20 keystream under a 256-bit seed.
#[derive(Clone)]
pub struct ChaCha20Rng {
    key: [u32; 8],
    counter: u64,
    block: [u8; 64],
    used: usize,
}

impl std::fmt::Debug for ChaCha20Rng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChaCha20Rng { .. }")
    }
}

#[inline]
fn quarter(s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(16);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(12);
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(8);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(7);
}

/// One ChaCha20 block (RFC 8439 §2.3) for `key`, a 32-bit block `counter` and a 96-bit
/// `nonce`, serialized little-endian.
pub fn chacha20_block(key: &[u32; 8], counter: u32, nonce: &[u32; 3]) -> [u8; 64] {
    let mut init = [0u32; 16];
    init[..4].copy_from_slice(&[0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574]);
    init[4..12].copy_from_slice(key);
    init[12] = counter;
    init[13..].copy_from_slice(nonce);
    let mut s = init;
    for _ in 0..10 {
        quarter(&mut s, 0, 4, 8, 12);
        quarter(&mut s, 1, 5, 9, 13);
        quarter(&mut s, 2, 6, 10, 14);
        quarter(&mut s, 3, 7, 11, 15);
        quarter(&mut s, 0, 5, 10, 15);
        quarter(&mut s, 1, 6, 11, 12);
        quarter(&mut s, 2, 7, 8, 13);
        quarter(&mut s, 3, 4, 9, 14);
    }
    let mut out = [0u8; 64];
    for (i, (w, i0)) in s.iter().zip(init.iter()).enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&w.wrapping_add(*i0).to_le_bytes());
    }
    out
}

impl ChaCha20Rng {
    /// A generator whose whole output is determined by `seed`. Seed it from the operating
    /// system's entropy in production, from a constant in tests.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let mut key = [0u32; 8];
        for (k, c) in key.iter_mut().zip(seed.chunks_exact(4)) {
            *k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
        ChaCha20Rng {
            key,
            counter: 0,
            block: [0; 64],
            used: 64,
        }
    }

    /// Fills `dest` with the next bytes of the keystream.
    pub fn fill(&mut self, dest: &mut [u8]) {
        for b in dest {
            if self.used == 64 {
                // A 64-bit block counter spread over the counter word and the first nonce
                // word: the stream does not repeat within 2^64 blocks.
                let nonce = [(self.counter >> 32) as u32, 0, 0];
                self.block = chacha20_block(&self.key, self.counter as u32, &nonce);
                self.counter = self.counter.wrapping_add(1);
                self.used = 0;
            }
            *b = self.block[self.used];
            self.used += 1;
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }
}

/// Makes session ids. The engine calls it once per handshake with the handshake request, so a
/// generator may derive ids from it (a header set by a proxy, say). It must not return an id
/// in use: the engine refuses the handshake when it does.
pub trait IdGenerator: Send {
    /// The id for a new session.
    fn generate(&mut self, request: &RequestHead) -> Sid;
}

/// The default generator: 128 bits from a seeded [`ChaCha20Rng`], 22 URL-safe characters.
#[derive(Debug, Clone)]
pub struct RandomIds(ChaCha20Rng);

impl RandomIds {
    /// A generator over the keystream of `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        RandomIds(ChaCha20Rng::from_seed(seed))
    }

    /// The next id, without a request.
    pub fn next_sid(&mut self) -> Sid {
        let mut b = [0u8; 15];
        self.0.fill(&mut b);
        // 15 bytes are 20 characters exactly, written on the stack.
        let mut id = [0u8; 20];
        let n = base64::encode_url_to(&b, &mut id);
        Sid::from_ascii_trusted(id.get(..n).unwrap_or(&id))
    }
}

impl IdGenerator for RandomIds {
    fn generate(&mut self, _request: &RequestHead) -> Sid {
        self.next_sid()
    }
}

impl<F> IdGenerator for F
where
    F: FnMut(&RequestHead) -> Sid + Send,
{
    fn generate(&mut self, request: &RequestHead) -> Sid {
        self(request)
    }
}
