//! An in-memory byte stream pair, so a test client reaches the driver without sockets.

use futures::io::{AsyncRead, AsyncWrite};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

#[derive(Default)]
struct Half {
    buf: VecDeque<u8>,
    closed: bool,
    reader: Option<Waker>,
}

/// One end of an in-memory duplex stream (see [`pipe`]).
pub struct PipeEnd {
    incoming: Arc<Mutex<Half>>,
    outgoing: Arc<Mutex<Half>>,
}

impl std::fmt::Debug for PipeEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PipeEnd")
    }
}

/// Two connected ends: what one writes the other reads. Dropping or closing an end gives the
/// other end of-file.
pub fn pipe() -> (PipeEnd, PipeEnd) {
    let a = Arc::new(Mutex::new(Half::default()));
    let b = Arc::new(Mutex::new(Half::default()));
    (
        PipeEnd {
            incoming: a.clone(),
            outgoing: b.clone(),
        },
        PipeEnd {
            incoming: b,
            outgoing: a,
        },
    )
}

fn close(half: &Mutex<Half>) {
    let mut h = half.lock().unwrap_or_else(PoisonError::into_inner);
    h.closed = true;
    if let Some(w) = h.reader.take() {
        w.wake();
    }
}

impl AsyncRead for PipeEnd {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let mut h = self.incoming.lock().unwrap_or_else(PoisonError::into_inner);
        if h.buf.is_empty() {
            if h.closed {
                return Poll::Ready(Ok(0));
            }
            h.reader = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = out.len().min(h.buf.len());
        for (slot, byte) in out.iter_mut().zip(h.buf.drain(..n)) {
            *slot = byte;
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for PipeEnd {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut h = self.outgoing.lock().unwrap_or_else(PoisonError::into_inner);
        if h.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        h.buf.extend(data);
        if let Some(w) = h.reader.take() {
            w.wake();
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        close(&self.outgoing);
        Poll::Ready(Ok(()))
    }
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        close(&self.outgoing);
        close(&self.incoming);
    }
}
