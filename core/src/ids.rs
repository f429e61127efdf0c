//! Small `Copy` identifiers.

use std::fmt;

/// Most bytes a [`Sid`] holds.
pub const SID_MAX_LEN: usize = 40;

/// An Engine.IO session id: up to [`SID_MAX_LEN`] URL-safe ASCII characters stored inline,
/// so it is `Copy` and hashes without touching the heap.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid {
    len: u8,
    bytes: [u8; SID_MAX_LEN],
}

/// A string that cannot be a [`Sid`]: empty, too long, or holding characters other than
/// `A-Z a-z 0-9 - _ .`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSid;

impl fmt::Display for InvalidSid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid session id")
    }
}

impl std::error::Error for InvalidSid {}

impl Sid {
    /// Checks and stores `s`.
    pub fn new(s: &str) -> Result<Self, InvalidSid> {
        let b = s.as_bytes();
        if b.is_empty()
            || b.len() > SID_MAX_LEN
            || !b
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        {
            return Err(InvalidSid);
        }
        let mut bytes = [0; SID_MAX_LEN];
        bytes[..b.len()].copy_from_slice(b);
        Ok(Sid {
            len: b.len() as u8,
            bytes,
        })
    }

    /// Stores bytes the caller guarantees to be within the alphabet, truncated to the limit.
    pub(crate) fn from_ascii_trusted(b: &[u8]) -> Self {
        let n = b.len().min(SID_MAX_LEN);
        let mut bytes = [0; SID_MAX_LEN];
        bytes[..n].copy_from_slice(&b[..n]);
        Sid {
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

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.as_str())
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Sid {
    type Err = InvalidSid;
    fn from_str(s: &str) -> Result<Self, InvalidSid> {
        Sid::new(s)
    }
}

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
