//! [`Utf8Bytes`]: shared, immutable bytes known to hold valid UTF-8.

use bytes::Bytes;
use std::fmt;
use std::ops::Deref;

/// Reference-counted bytes that are valid UTF-8, so text can be sliced out of a received
/// buffer and handed on without copying.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// An empty string.
    pub const fn new() -> Self {
        Utf8Bytes(Bytes::new())
    }

    /// Formats `args` into new shared bytes with one allocation: the text is written on the
    /// stack first (up to 256 bytes; longer text goes through a `String`, which `Bytes`
    /// would otherwise copy again for its spare capacity).
    pub(crate) fn format(args: fmt::Arguments<'_>) -> Self {
        struct Stack {
            buf: [u8; 256],
            len: usize,
        }
        impl fmt::Write for Stack {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                let end = self.len + s.len();
                let slot = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
                slot.copy_from_slice(s.as_bytes());
                self.len = end;
                Ok(())
            }
        }
        let mut stack = Stack {
            buf: [0; 256],
            len: 0,
        };
        if fmt::Write::write_fmt(&mut stack, args).is_ok() {
            // Only whole `&str` pieces were written.
            if let Some(text) = stack
                .buf
                .get(..stack.len)
                .and_then(|b| std::str::from_utf8(b).ok())
            {
                return Utf8Bytes::from(text);
            }
        }
        Utf8Bytes::from(fmt::format(args))
    }

    /// Wraps a static string without copying.
    pub const fn from_static(s: &'static str) -> Self {
        Utf8Bytes(Bytes::from_static(s.as_bytes()))
    }

    /// Checks `bytes` and wraps them.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Utf8Bytes(bytes))
    }

    /// Wraps `bytes` without a second check when they are the very bytes of `text`: the same
    /// memory, as when a checked string was turned into [`Bytes`] without a copy. `None`
    /// when they are not (then use [`try_from_bytes`](Self::try_from_bytes)).
    pub fn from_same_bytes(bytes: Bytes, text: &str) -> Option<Self> {
        let same = bytes.as_ptr() == text.as_ptr() && bytes.len() == text.len();
        same.then_some(Utf8Bytes(bytes))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Every constructor checks or is given UTF-8; a failure here would be a bug, so fall
        // back to an empty string rather than panic.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The length in bytes (without a pass over the text, unlike `str::len` through
    /// `Deref`).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty (without a pass over it).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the text is `s` (compares bytes, without a pass over the text).
    pub fn is(&self, s: &str) -> bool {
        self.0 == s.as_bytes()
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Unwraps the underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// A zero-copy slice; `range` must fall on character boundaries.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Option<Self> {
        // The bytes are valid UTF-8, so a boundary is any index not on a continuation byte:
        // two byte tests instead of validating the whole text again (`as_str`).
        let bytes = &self.0;
        if range.start > range.end
            || range.end > bytes.len()
            || !is_char_boundary(bytes, range.start)
            || !is_char_boundary(bytes, range.end)
        {
            return None;
        }
        Some(Utf8Bytes(self.0.slice(range)))
    }
}

/// Text built from pieces that are UTF-8 already (`&str`, [`Utf8Bytes`], ASCII bytes), so
/// the result needs no validation pass: only valid pieces can be appended.
pub(crate) struct Utf8Builder(Vec<u8>);

impl Utf8Builder {
    /// An empty builder with room for `capacity` bytes (give the exact length: `Bytes` then
    /// takes the buffer without allocating a shared header).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Utf8Builder(Vec::with_capacity(capacity))
    }

    /// Appends an ASCII byte; anything else is written as U+FFFD.
    pub(crate) fn push_ascii(&mut self, b: u8) {
        if b.is_ascii() {
            self.0.push(b);
        } else {
            self.push_str("\u{fffd}");
        }
    }

    /// Appends text.
    pub(crate) fn push_str(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    /// Appends text held in a [`Utf8Bytes`], without validating it again.
    pub(crate) fn push_utf8(&mut self, s: &Utf8Bytes) {
        self.0.extend_from_slice(&s.0);
    }

    /// The text.
    pub(crate) fn finish(self) -> Utf8Bytes {
        Utf8Bytes(Bytes::from(self.0))
    }
}

/// Whether `i` starts a character of the valid UTF-8 `bytes` (or is their end), as
/// `str::is_char_boundary` decides it: not a continuation byte `0b10xx_xxxx`.
fn is_char_boundary(bytes: &[u8], i: usize) -> bool {
    match bytes.get(i) {
        Some(&b) => (b as i8) >= -0x40,
        None => i == bytes.len(),
    }
}

impl Deref for Utf8Bytes {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for Utf8Bytes {
    fn from(s: String) -> Self {
        Utf8Bytes(Bytes::from(s))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(s: &str) -> Self {
        Utf8Bytes(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Utf8Bytes;

    #[test]
    fn format_writes_short_and_long_text_alike() {
        for n in [0, 1, 255, 256, 257, 1000] {
            let long = "é".repeat(n / 2);
            let text = Utf8Bytes::format(format_args!("{n}:{long}"));
            assert_eq!(&*text, format!("{n}:{long}"));
        }
    }

    #[test]
    fn same_bytes_are_taken_without_a_check_and_others_are_not() {
        let text = String::from("héllo");
        let bytes = bytes::Bytes::from(text.clone());
        // Another allocation with the same content is not the same memory.
        assert!(Utf8Bytes::from_same_bytes(bytes.clone(), &text).is_none());
        let owner = Utf8Bytes::from(text.as_str());
        let shared = owner.as_bytes().clone();
        let same = Utf8Bytes::from_same_bytes(shared.clone(), owner.as_str()).expect("same");
        assert_eq!(same.as_str(), "héllo");
        // Part of the memory is not the whole text.
        assert!(Utf8Bytes::from_same_bytes(shared.slice(0..2), owner.as_str()).is_none());
    }

    #[test]
    fn slice_accepts_exactly_the_char_boundaries() {
        let s = "aé€😀z";
        let text = Utf8Bytes::from(s);
        for start in 0..=s.len() + 1 {
            for end in 0..=s.len() + 1 {
                let expected = s.get(start..end);
                let got = text.slice(start..end);
                assert_eq!(got.as_deref(), expected, "{start}..{end}");
            }
        }
    }
}
