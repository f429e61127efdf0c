//! Small IO helpers shared by the HTTP and WebSocket halves of a connection.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures::future::{Either, select};
use futures::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::runtime::Runtime;

/// How long a closing connection keeps reading (and discarding) after its last write, so the
/// peer sees the response rather than a reset for data it sent meanwhile.
pub(crate) const LINGER: Duration = Duration::from_secs(2);
/// Most bytes discarded while lingering.
const LINGER_BYTES: usize = 64 * 1024;

thread_local! {
    /// Where reads land before the bytes that arrived are appended to the connection's
    /// buffer: zero-filled once per thread instead of once per poll.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads once (at most `want` bytes) and appends what arrived to `buf`.
///
/// Poll-based so that it is cancel-safe: bytes are appended only when the read completes.
/// The read goes through a per-thread buffer, so a poll that finds nothing to read (most of
/// them, for an idle keep-alive connection) costs no zero-filling of `want` bytes. Only the
/// `n` bytes the stream reports are copied, which every `AsyncRead` must have written.
pub(crate) fn poll_read_buf<S: AsyncRead + Unpin>(
    stream: &mut S,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
    want: usize,
) -> Poll<io::Result<usize>> {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => {
            if scratch.len() < want {
                scratch.resize(want, 0);
            }
            let result = Pin::new(stream).poll_read(cx, &mut scratch[..want]);
            if let Poll::Ready(Ok(n)) = &result {
                buf.extend_from_slice(&scratch[..(*n).min(want)]);
            }
            result
        }
        // A stream that reads through this function itself: straight into `buf`.
        Err(_) => {
            let len = buf.len();
            buf.resize(len + want, 0);
            let result = Pin::new(stream).poll_read(cx, &mut buf[len..]);
            let n = match &result {
                Poll::Ready(Ok(n)) => *n,
                _ => 0,
            };
            buf.truncate(len + n);
            result
        }
    })
}

/// [`poll_read_buf`] into an empty `buf`, letting `take` look at the bytes first: when it
/// uses the leading `n` of them (a request head parsed where it landed), only the rest is
/// appended, so a request that arrives whole in one read is never copied into `buf` (nor
/// `buf` allocated for it). Returns the bytes read and what `take` made of them.
pub(crate) async fn read_with<S: AsyncRead + Unpin, T>(
    stream: &mut S,
    buf: &mut BytesMut,
    want: usize,
    take: impl Fn(&[u8]) -> Option<(T, usize)>,
) -> io::Result<(usize, Option<T>)> {
    poll_fn(|cx| {
        if !buf.is_empty() {
            return poll_read_buf(stream, cx, buf, want).map_ok(|n| (n, None));
        }
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => {
                if scratch.len() < want {
                    scratch.resize(want, 0);
                }
                let result = Pin::new(&mut *stream).poll_read(cx, &mut scratch[..want]);
                result.map_ok(|n| {
                    let read = &scratch[..n.min(want)];
                    let taken = take(read).filter(|(_, used)| *used <= read.len());
                    let used = taken.as_ref().map_or(0, |(_, used)| *used);
                    buf.extend_from_slice(&read[used..]);
                    (n, taken.map(|(value, _)| value))
                })
            }
            Err(_) => poll_read_buf(stream, cx, buf, want).map_ok(|n| (n, None)),
        })
    })
    .await
}

/// [`poll_read_buf`] as a future.
pub(crate) async fn read_buf<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    want: usize,
) -> io::Result<usize> {
    poll_fn(|cx| poll_read_buf(stream, cx, buf, want)).await
}

/// Runs `fut` until `sleep` completes; `None` on timeout.
pub(crate) async fn or_timeout<T, F, D>(fut: F, sleep: Pin<&mut D>) -> Option<T>
where
    F: Future<Output = T>,
    D: Future<Output = ()>,
{
    match select(pin!(fut), sleep).await {
        Either::Left((value, _)) => Some(value),
        Either::Right(_) => None,
    }
}

/// Writes and flushes `bytes` within `timeout`.
pub(crate) async fn write_all<R: Runtime, S: AsyncWrite + Unpin>(
    runtime: &R,
    stream: &mut S,
    bytes: &[u8],
    timeout: Duration,
) -> io::Result<()> {
    let sleep = pin!(runtime.sleep(timeout));
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    or_timeout(write, sleep)
        .await
        .unwrap_or_else(|| Err(io::ErrorKind::TimedOut.into()))
}

/// Closes our side (TCP FIN), then reads and discards what the peer still sends, until it
/// closes too, [`LINGER`] passes, or [`LINGER_BYTES`] were discarded. Closing a socket whose
/// receive buffer holds unread data makes the kernel send a reset, which can destroy a
/// response the peer has not read yet; this is the lingering close HTTP servers do.
pub(crate) async fn linger_close<R: Runtime, S: AsyncRead + AsyncWrite + Unpin>(
    runtime: &R,
    stream: &mut S,
) {
    linger_close_after(runtime, stream, 0).await;
}

/// [`linger_close`] for a peer known to have up to `in_flight` more bytes on the way (the
/// rest of a message over the limit): discards that much beyond [`LINGER_BYTES`].
pub(crate) async fn linger_close_after<R: Runtime, S: AsyncRead + AsyncWrite + Unpin>(
    runtime: &R,
    stream: &mut S,
    in_flight: usize,
) {
    let limit = LINGER_BYTES.saturating_add(in_flight);
    let sleep = pin!(runtime.sleep(LINGER));
    let drain = async {
        stream.close().await?;
        let mut scratch = BytesMut::new();
        let mut discarded = 0;
        while discarded < limit {
            scratch.clear();
            match read_buf(stream, &mut scratch, 4096).await? {
                0 => break,
                n => discarded += n,
            }
        }
        Ok::<(), io::Error>(())
    };
    let _ = or_timeout(drain, sleep).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use futures::io::Cursor;

    /// Takes everything up to the first `|`, as a head parsed in place would be.
    fn upto_bar(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
        let at = bytes.iter().position(|&b| b == b'|')?;
        Some((bytes[..at].to_vec(), at + 1))
    }

    #[test]
    fn a_read_into_an_empty_buffer_keeps_only_what_the_taker_left() {
        let mut stream = Cursor::new(b"head|body".to_vec());
        let mut buf = BytesMut::new();
        let (n, taken) = block_on(read_with(&mut stream, &mut buf, 64, upto_bar)).unwrap();
        assert_eq!((n, taken.as_deref()), (9, Some(&b"head"[..])));
        assert_eq!(&buf[..], b"body");

        // Nothing taken: every byte is kept.
        let mut stream = Cursor::new(b"no bar".to_vec());
        let mut buf = BytesMut::new();
        let (n, taken) = block_on(read_with(&mut stream, &mut buf, 64, upto_bar)).unwrap();
        assert_eq!((n, taken), (6, None));
        assert_eq!(&buf[..], b"no bar");

        // Bytes already held: the read only appends, and the taker is not asked.
        let mut stream = Cursor::new(b"|rest".to_vec());
        let (n, taken) = block_on(read_with(&mut stream, &mut buf, 64, upto_bar)).unwrap();
        assert_eq!((n, taken), (5, None));
        assert_eq!(&buf[..], b"no bar|rest");
    }
}
