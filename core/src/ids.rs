//! Small `Copy` identifiers.

use std::fmt;

/// Most bytes a [`Sid`] holds.
pub const SID_MAX_LEN: usize = 40;

/// Most bytes a [`SocketId`] holds (room for a v4 `/namespace#sid`).
pub const SOCKET_ID_MAX_LEN: usize = 64;

/// A string that cannot be an id: empty, too long, or holding characters outside the id
/// alphabet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSid;

impl fmt::Display for InvalidSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid id")
    }
}

impl std::error::Error for InvalidSid {}

macro_rules! inline_id {
    ($(#[$doc:meta])* $name:ident, $cap:expr, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        pub struct $name {
            len: u8,
            bytes: [u8; $cap],
        }

        impl $name {
            /// Checks and stores `s`.
            pub fn new(s: &str) -> Result<Self, InvalidSid> {
                let b = s.as_bytes();
                let allowed: fn(u8) -> bool = $allowed;
                if b.is_empty() || b.len() > $cap || !b.iter().all(|c| allowed(*c)) {
                    return Err(InvalidSid);
                }
                Ok(Self::from_ascii_trusted(b))
            }

            /// Stores bytes the caller guarantees to be within the alphabet, truncated to the
            /// capacity.
            pub(crate) fn from_ascii_trusted(b: &[u8]) -> Self {
                let n = b.len().min($cap);
                let mut bytes = [0; $cap];
                bytes[..n].copy_from_slice(&b[..n]);
                $name {
                    len: n as u8,
                    bytes,
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                // Only ASCII is ever stored.
                std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
            }
        }

        // Only the used bytes: ids are hashed on every lookup of the per-message path, and
        // the unused tail is always zero.
        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                state.write(&self.bytes[..usize::from(self.len)]);
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.as_str())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidSid;
            fn from_str(s: &str) -> Result<Self, InvalidSid> {
                $name::new(s)
            }
        }
    };
}

fn url_safe(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')
}

fn visible(c: u8) -> bool {
    c.is_ascii_graphic()
}

inline_id!(
    /// An Engine.IO session id: up to [`SID_MAX_LEN`] URL-safe ASCII characters
    /// (`A-Z a-z 0-9 - _ .`) stored inline, so it is `Copy` and hashes without the heap.
    Sid,
    SID_MAX_LEN,
    url_safe
);

inline_id!(
    /// A Socket.IO socket id (one per namespace connection): up to [`SOCKET_ID_MAX_LEN`]
    /// visible ASCII characters stored inline. v5 ids are random; a v4 client's id is its
    /// session id (`/`) or `/namespace#sid`.
    SocketId,
    SOCKET_ID_MAX_LEN,
    visible
);

/// A transport connection as the runtime numbers it: one TCP connection (which may carry
/// several HTTP requests in turn, or become a WebSocket). The runtime picks the numbers; the
/// core only requires that a number is not reused while the core still knows it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

inline_id!(
    /// A node of a cluster (the Redis adapter's `uid`): up to [`SID_MAX_LEN`] URL-safe
    /// characters.
    NodeId,
    SID_MAX_LEN,
    url_safe
);

inline_id!(
    /// A request between nodes of a cluster (the Redis adapter's `requestId`).
    RequestId,
    SID_MAX_LEN,
    url_safe
);

/// A fast, unkeyed [`Hasher`](std::hash::Hasher) for maps keyed by ids the server generates
/// ([`Sid`], [`SocketId`], [`ConnId`], ack numbers): each 8 bytes of the key are folded into
/// one word with a multiply (the scheme of rustc's FxHash), and the result is rotated so the
/// well-mixed high bits pick the bucket.
///
/// It is not resistant to hash flooding: whoever chooses the keys can make them collide.
/// That is sound only where the keys inserted are the server's own (random session and
/// socket ids, sequential numbers): a peer can look such keys up but not choose them. Maps
/// keyed by what a peer names (rooms, namespaces, event names) keep std's keyed SipHash.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

/// The multiplier of rustc-hash 2 (odd, with well-spread bits).
const ID_HASH_K: u64 = 0xf135_7aea_2e62_a9c5;

impl IdHasher {
    fn add(&mut self, word: u64) {
        self.0 = self.0.wrapping_add(word).wrapping_mul(ID_HASH_K);
    }
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(<[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            // Little-endian, with the tail's length in the byte above it: `ab` and `ab\0`
            // differ. (Byte by byte: a copy into a word array would call `memcpy`.)
            let word = rest
                .iter()
                .rev()
                .fold(rest.len() as u64, |w, &b| (w << 8) | u64::from(b));
            self.add(word);
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

/// Builds [`IdHasher`]s.
pub type IdBuildHasher = std::hash::BuildHasherDefault<IdHasher>;

/// A `HashMap` keyed by server-generated ids, hashed with [`IdHasher`]; create it with
/// `IdMap::default()`.
pub type IdMap<K, V> = std::collections::HashMap<K, V, IdBuildHasher>;

/// A `HashSet` of server-generated ids, hashed with [`IdHasher`].
pub type IdSet<K> = std::collections::HashSet<K, IdBuildHasher>;

#[cfg(test)]
mod id_hasher_tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn equal_ids_hash_equal_and_different_ones_spread() {
        let b = IdBuildHasher::default();
        let a = SocketId::new("abcdefghijklmnopqrst").unwrap();
        assert_eq!(b.hash_one(a), b.hash_one(a));
        assert_ne!(
            b.hash_one(Sid::new("ab").unwrap()),
            b.hash_one(Sid::new("ab0").unwrap())
        );
        // Sequential numbers land in distinct buckets of a small table (top bits differ).
        let buckets: std::collections::HashSet<u64> =
            (0..64u64).map(|n| b.hash_one(ConnId(n)) & 63).collect();
        assert!(buckets.len() > 32, "{}", buckets.len());
        let mut map = IdMap::default();
        for n in 0..1000 {
            map.insert(ConnId(n), n);
        }
        assert!((0..1000).all(|n| map[&ConnId(n)] == n));
    }
}
