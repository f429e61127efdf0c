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
