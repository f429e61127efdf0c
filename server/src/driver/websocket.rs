//! One connection's task, WebSocket half: after a `101`, frames in both directions.
//!
//! Two loops in the connection's task (no second task), each polled only when its own waker
//! fired: a reader that forwards each message to the machine, and a writer that takes
//! everything the connection's [outbox](super::outbox) holds, feeds it to the codec and
//! flushes once. The machine's task lets the session send again as soon as it has pushed to
//! an outbox under its budget; only an outbox over its budget makes the writer report
//! `handle_ws_drained` once it has written enough.
//!
//! Backpressure goes the other way too: the reader does not read the next frame while the
//! batch being written holds more than the machine's byte budget
//! ([`Machine::max_buffered_bytes`](super::Machine::max_buffered_bytes)), or while a batch
//! has been in flight for longer than [`STALL`] (the peer is not reading). Unread frames then
//! stay in the kernel's buffers, which fill, and TCP stops the peer's writes: a client that
//! sends without reading cannot make the server hold its answers and its requests at once.
//! A message over the size limit is answered with close code 1009 (message too big).

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker, ready};
use std::time::Duration;

use async_tungstenite::tungstenite::error::CapacityError;
use async_tungstenite::tungstenite::protocol::frame::CloseFrame;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::tungstenite::{self, Message};
use async_tungstenite::{WebSocketReceiver, WebSocketSender, WebSocketStream};
use bytes::{Bytes, BytesMut};
use futures::future::{Either, select};
use futures::io::{AsyncRead, AsyncWrite};
use futures::task::AtomicWaker;
use futures::{FutureExt, Sink, SinkExt, StreamExt};
use volley_core::engine::{Output, WsMessage};
use volley_core::{ConnId, Utf8Bytes};

use super::Env;
use super::actor::Input;
use super::conn::Link;
use super::io::{LINGER, linger_close_after, or_timeout};
use super::machine::OwnedSession;
use super::metrics::WsCounts;
use super::outbox::{Outbox, Pushed, output_len};
use super::shutdown::Admission;
use crate::runtime::{Runtime, deadline_after};

/// How long a batch may take to write before the connection stops being read: long enough
/// for a reading peer on a slow link, short enough that a peer that does not read cannot
/// send much meanwhile.
pub(crate) const STALL: Duration = Duration::from_millis(100);

/// Messages read at once that cross to the machine's task together, at most.
const READ_BATCH: usize = 64;

/// The read buffer tungstenite allocates per connection. Its default (128 KiB) suits a few
/// heavy sockets; many light ones are the common case here.
const READ_BUFFER: usize = 4 * 1024;
/// Bytes tungstenite gathers before writing to the socket; a flush writes the rest.
const WRITE_BUFFER: usize = 16 * 1024;

/// The WebSocket codec's settings for a machine accepting messages up to `max_message`.
pub(crate) fn config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// How the writer stopped.
enum WriteEnd {
    /// The machine closed the socket; a close frame was sent.
    Closed,
    /// It failed, timed out, or the machine's task dropped the connection.
    Failed,
}

/// How the reader stopped.
enum ReadEnd {
    /// The peer closed the connection (close frame or end of stream).
    Closed,
    /// A message over the size limit (its declared size): answered with close code 1009.
    TooBig(usize),
    /// It failed, or the machine's task is gone.
    Failed,
}

/// What the writer tells the reader: whether to stop reading from the peer.
struct Gate {
    /// Bytes of the batch being written.
    unwritten: AtomicUsize,
    /// A batch is being written.
    busy: AtomicBool,
    /// Message bytes read since that batch started.
    read: AtomicUsize,
    /// The batch has been in flight for longer than [`STALL`].
    stalled: AtomicBool,
    /// The reader, waiting for the gate to open.
    reader: AtomicWaker,
    budget: usize,
}

impl Gate {
    fn new(budget: usize) -> Self {
        Gate {
            unwritten: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
            read: AtomicUsize::new(0),
            stalled: AtomicBool::new(false),
            reader: AtomicWaker::new(),
            budget,
        }
    }

    /// Whether the reader may read the next frame: no batch stalled, none above the budget,
    /// and at most a budget's worth read while the current one is written.
    fn is_open(&self) -> bool {
        !self.stalled.load(Ordering::Acquire)
            && self.unwritten.load(Ordering::Acquire) <= self.budget
            && !(self.busy.load(Ordering::Acquire)
                && self.read.load(Ordering::Acquire) > self.budget)
    }

    /// A batch of `unwritten` bytes starts.
    fn start(&self, unwritten: usize) {
        self.unwritten.store(unwritten, Ordering::Release);
        self.read.store(0, Ordering::Release);
        self.busy.store(true, Ordering::Release);
    }

    /// The batch has taken longer than [`STALL`].
    fn stall(&self) {
        self.stalled.store(true, Ordering::Release);
    }

    /// The batch is out (or abandoned).
    fn done(&self) {
        self.unwritten.store(0, Ordering::Release);
        self.busy.store(false, Ordering::Release);
        self.stalled.store(false, Ordering::Release);
        self.reader.wake();
    }

    /// The reader took a message of `n` bytes.
    fn read(&self, n: usize) {
        self.read.fetch_add(n, Ordering::AcqRel);
    }

    async fn opened(&self) {
        poll_fn(|cx| {
            if self.is_open() {
                return Poll::Ready(());
            }
            self.reader.register(cx.waker());
            if self.is_open() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }
}

/// The two halves of an open WebSocket.
pub(crate) type Halves<S> = (WebSocketSender<S>, WebSocketReceiver<S>);

/// Opens the WebSocket on `stream` after the `101`: `leftover` holds the bytes read past the
/// upgrade request (frames the client sent right behind it). The HTTP read buffer is not
/// needed for the WebSocket's life: it is freed here, not when the connection ends.
pub(crate) async fn open<R, S>(env: &Env<R>, stream: S, leftover: BytesMut) -> Halves<S>
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = Some(env.ws_config);
    let ws = if leftover.is_empty() {
        WebSocketStream::from_raw_socket(stream, Role::Server, config).await
    } else {
        WebSocketStream::from_partially_read(stream, leftover.to_vec(), Role::Server, config).await
    };
    drop(leftover);
    ws.split()
}

/// Serves the WebSocket [opened](open) as `halves` until either side ends it, then reports
/// the end to the machine (`error`: it failed rather than closed); `admission`, the
/// connection's place under the caps, is released at the very end.
///
/// An idle connection spends its life in this future, so what it holds across its awaits is
/// what an idle WebSocket costs beyond tungstenite's buffers. It takes the opened halves
/// (not the stream, which would stay in its frame after the split) and nothing of the HTTP
/// half, and uses what it is given in place (an `async fn` would keep each argument twice:
/// as passed, and moved into its body).
#[allow(clippy::manual_async_fn)] // on purpose: see above
pub(crate) fn run<R, S, E>(
    env: E,
    conn: ConnId,
    mut halves: Halves<S>,
    mut pending: VecDeque<Output>,
    mut link: Link,
    admission: Option<Admission>,
) -> impl Future<Output = ()>
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    E: std::ops::Deref<Target = Env<R>>,
{
    async move {
        let too_big = serve(&env, conn, &mut halves, &mut pending, &mut link).await;
        if let Some(size) = too_big {
            let (sink, source) = halves;
            // Boxed: the task is not sized for this rare ending.
            let close = too_big_close(&env, sink, source, link, pending, size);
            Box::pin(close).await;
        }
        drop(admission);
    }
}

/// [`run`]'s body, on borrowed state. Returns the size of a message over the limit, for
/// [`too_big_close`], when one ended it.
async fn serve<R, S>(
    env: &Env<R>,
    conn: ConnId,
    halves: &mut Halves<S>,
    pending: &mut VecDeque<Output>,
    link: &mut Link,
) -> Option<usize>
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tracing::Span::current().record("transport", "websocket");
    tracing::debug!("websocket open");
    let (sink, source) = halves;
    let Link { inputs, outbox, .. } = &*link;
    let closing = AtomicBool::new(false);
    let gate = Gate::new(env.output_budget);
    // A session run here: handed over with the `101`, or after an upgrade from
    // long-polling (the machine offers it, the reader asks). What is read goes to it, what
    // it outputs goes to the outbox, and only the end is reported to the machine.
    let owned = std::sync::OnceLock::new();
    let owned = &owned;
    if let Some(session) = outbox.take_owned() {
        install(owned, session, outbox, env.runtime.now());
    }

    let reader = async {
        // Bytes read and dropped after our close frame, while waiting for the peer's answer.
        let mut discarded = 0usize;
        // What one read means: a message to hand on (or to drop after our close frame), or
        // the end of reading.
        let mut take = |item: Option<Result<Message, tungstenite::Error>>| {
            let message = match item {
                Some(Ok(Message::Text(text))) => {
                    // tungstenite has checked the text: its bytes are taken as they are.
                    let bytes = Bytes::from(text.clone());
                    match Utf8Bytes::from_same_bytes(bytes, text.as_str()) {
                        Some(text) => WsMessage::Text(text),
                        None => match Utf8Bytes::try_from_bytes(Bytes::from(text)) {
                            Ok(text) => WsMessage::Text(text),
                            Err(_) => return Ok(None),
                        },
                    }
                }
                Some(Ok(Message::Binary(bytes))) => WsMessage::Binary(bytes),
                // Pings are answered by tungstenite; pongs and raw frames mean nothing here.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                    return Ok(None);
                }
                Some(Ok(Message::Close(_))) | None => return Err(ReadEnd::Closed),
                Some(Err(tungstenite::Error::Capacity(CapacityError::MessageTooLong {
                    size,
                    ..
                }))) => {
                    tracing::debug!(size, "websocket message over the size limit");
                    return Err(ReadEnd::TooBig(size));
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "websocket read failed");
                    return Err(ReadEnd::Failed);
                }
            };
            let size = message.len();
            gate.read(size);
            if closing.load(Ordering::Acquire) {
                discarded += size;
                if discarded > env.output_budget {
                    return Err(ReadEnd::Failed);
                }
                return Ok(None);
            }
            Ok(Some(message))
        };
        loop {
            if !gate.is_open() {
                tracing::trace!("websocket output backed up: not reading");
                gate.opened().await;
            }
            // A connection whose session runs on the machine's task looks for an offer to
            // run it here before each read.
            let next = poll_fn(|cx| {
                if owned.get().is_none() && outbox.poll_offer(cx) {
                    return Poll::Ready(None);
                }
                source.poll_next_unpin(cx).map(Some)
            });
            let Some(item) = next.await else {
                // Nothing read is on its way to the machine's task: ask, then wait for the
                // answer, reading nothing meanwhile.
                if inputs.send(Input::Adopt { conn }).await.is_err() {
                    return ReadEnd::Failed;
                }
                if let Some(session) = poll_fn(|cx| outbox.poll_answer(cx)).await {
                    install(owned, session, outbox, env.runtime.now());
                    outbox.wake_ticker();
                }
                continue;
            };
            let first = match take(item) {
                Ok(Some(message)) => message,
                Ok(None) => continue,
                Err(end) => return end,
            };
            // Messages already read behind the first go with it, in one crossing to the
            // machine's task, up to READ_BATCH and while the gate lets messages in.
            let mut more = Vec::new();
            let mut end = None;
            while more.len() < READ_BATCH && gate.is_open() {
                let Some(item) = source.next().now_or_never() else {
                    break;
                };
                match take(item) {
                    Ok(Some(message)) => more.push(message),
                    Ok(None) => {}
                    Err(e) => {
                        end = Some(e);
                        break;
                    }
                }
            }
            if let Some(owned) = owned.get() {
                let now = env.runtime.now();
                let mut counts = WsCounts::default();
                let mut session = lock(owned);
                for message in std::iter::once(first).chain(more) {
                    counts.received(&message);
                    session.handle_ws_message(message, now);
                }
                flush(&mut **session, outbox, now, &mut counts);
                drop(session);
                if let Some(end) = end {
                    return end;
                }
                continue;
            }
            let input = if more.is_empty() {
                Input::WsMessage {
                    conn,
                    message: first,
                }
            } else {
                more.insert(0, first);
                Input::WsMessages {
                    conn,
                    messages: more,
                }
            };
            if inputs.send(input).await.is_err() {
                return ReadEnd::Failed;
            }
            if let Some(end) = end {
                return end;
            }
        }
    };

    let writer = async {
        // Bytes taken from the outbox and not yet reported written: at first, the frames
        // the HTTP half took with the `101`, which go first.
        let mut taken: usize = pending.iter().map(output_len).sum();
        loop {
            if pending.is_empty() {
                let more = poll_fn(|cx| poll_more(cx, outbox, pending, &mut taken));
                if !more.await {
                    return WriteEnd::Failed;
                }
            }
            gate.start(pending.iter().map(output_len).sum());
            let mut later = VecDeque::new();
            let mut taken_later = 0;
            let result = {
                // The write timeout counts from here; its timer is made only if the batch
                // stalls, so the two timers never take room in this future at once.
                let started = env.runtime.now();
                // Polled in place, with no state of its own: the batch is what `pending`
                // still holds, so a connection's future keeps no room for a write.
                let mut batch = poll_fn(|cx| poll_batch(cx, sink, pending, &closing));
                // Most batches are written at their first poll (the socket has room): no
                // timer is made for them. The stall timer starts when one waits.
                let first = poll_fn(|cx| Poll::Ready(Pin::new(&mut batch).poll(cx))).await;
                let quick = match first {
                    Poll::Ready(result) => Some(result),
                    Poll::Pending => {
                        let stall = pin!(env.runtime.sleep(STALL));
                        or_timeout(&mut batch, stall).await
                    }
                };
                match quick {
                    Some(result) => Some(result),
                    None => {
                        // The peer is not reading: stop reading it until this batch is out.
                        gate.stall();
                        let deadline = deadline_after(started, env.config.write_timeout);
                        let mut deadline = pin!(env.runtime.sleep_until(deadline));
                        loop {
                            let next =
                                poll_fn(|cx| poll_more(cx, outbox, &mut later, &mut taken_later));
                            let waiting = select(deadline.as_mut(), next);
                            match select(&mut batch, waiting).await {
                                Either::Left((result, _)) => break Some(result),
                                Either::Right((Either::Left(((), _)), _)) => break None,
                                Either::Right((Either::Right((open, _)), _)) => {
                                    // A close cannot reach a peer that does not read: drop
                                    // the connection now rather than at the timeout.
                                    let close =
                                        later.iter().any(|o| matches!(o, Output::Close { .. }));
                                    if close {
                                        tracing::debug!("websocket closed while stalled");
                                        return WriteEnd::Failed;
                                    }
                                    if !open {
                                        return WriteEnd::Failed;
                                    }
                                }
                            }
                        }
                    }
                }
            };
            gate.done();
            pending.extend(later);
            match result {
                Some(Ok(true)) => {
                    // Under the outbox's budget again after it was over: the session may
                    // send again.
                    if outbox.written_giving_back(std::mem::take(&mut taken), pending) {
                        if let Some(owned) = owned.get() {
                            let now = env.runtime.now();
                            let mut session = lock(owned);
                            session.handle_ws_drained(now);
                            flush(&mut **session, outbox, now, &mut WsCounts::default());
                        } else {
                            let drained = || Input::WsDrained { conn };
                            if inputs.send_made(drained).await.is_err() {
                                return WriteEnd::Failed;
                            }
                        }
                    }
                    taken = taken_later;
                }
                Some(Ok(false)) => return WriteEnd::Closed,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "websocket write failed");
                    return WriteEnd::Failed;
                }
                None => {
                    tracing::debug!("websocket write timed out");
                    return WriteEnd::Failed;
                }
            }
        }
    };

    // An owned session's deadlines and the commands other tasks send it.
    let ticker = async {
        // Until the connection's task runs a session, there is nothing to tick for.
        let owned = poll_fn(|cx| {
            if let Some(owned) = owned.get() {
                return Poll::Ready(owned);
            }
            outbox.park_ticker(cx);
            match owned.get() {
                Some(owned) => Poll::Ready(owned),
                None => Poll::Pending,
            }
        })
        .await;
        let mut armed: Option<(std::time::Instant, Pin<Box<R::Sleep>>)> = None;
        loop {
            poll_fn(|cx| {
                let mut session = lock(owned);
                if session.poll_commands(cx) {
                    return Poll::Ready(());
                }
                let Some(due) = session.poll_timeout() else {
                    armed = None;
                    return Poll::Pending;
                };
                drop(session);
                if armed.as_ref().is_none_or(|(at, _)| *at != due) {
                    armed = Some((due, Box::pin(env.runtime.sleep_until(due))));
                }
                match armed.as_mut() {
                    Some((_, sleep)) => sleep.as_mut().poll(cx),
                    None => Poll::Pending,
                }
            })
            .await;
            armed = None;
            let now = env.runtime.now();
            let mut session = lock(owned);
            session.handle_timeout(now);
            flush(&mut **session, outbox, now, &mut WsCounts::default());
        }
    };
    let (peer_closed, too_big) = {
        let mut reader = pin!(reader);
        let mut ticker = pin!(ticker);
        let mut writer = pin!(writer);
        // (error, the peer ended it, we sent a close frame and the reader still runs, the
        // peer sent a message over the limit)
        let (error, peer_closed, we_closed, too_big) =
            // The ticker before the writer: what it queues is taken in the same poll.
            match race(reader.as_mut(), ticker.as_mut(), writer.as_mut()).await {
                Either::Left(ReadEnd::Closed) => (false, true, false, None),
                Either::Left(ReadEnd::TooBig(size)) => (true, false, false, Some(size)),
                Either::Left(ReadEnd::Failed) => (true, false, false, None),
                Either::Right(WriteEnd::Failed) => (true, false, false, None),
                Either::Right(WriteEnd::Closed) => (false, false, true, None),
            };
        tracing::debug!(error, peer_closed, "websocket ended");
        if let Some(owned) = owned.get() {
            lock(owned).handle_closed(error, env.runtime.now());
        }
        link.closed(conn, error).await;
        if we_closed {
            // We sent a close frame: give the peer a moment to answer it, so the TCP close
            // that follows does not race its reply.
            lingering(env, reader).await;
        }
        (peer_closed, too_big)
    };
    if too_big.is_some() {
        return too_big;
    }
    if peer_closed {
        // tungstenite queued the answer to the peer's close frame; the next read flushes it
        // if it could not be written at once.
        lingering(env, source.next()).await;
    }
    None
}

/// Runs `fut` for at most [`LINGER`], boxed: a connection's future keeps no room for the
/// timer of its last moments.
async fn lingering<R: Runtime, F: Future>(env: &Env<R>, fut: F) {
    let linger = env.runtime.sleep(LINGER);
    Box::pin(async move { or_timeout(fut, pin!(linger)).await }).await;
}

/// Writes what `pending` holds into `sink`, then flushes: `Ok(true)` once all is written,
/// `Ok(false)` once a close frame is (`closing` is set when it is queued, and what follows
/// it is left). The batch's state is `pending` and `closing`, so polling again after
/// `Pending` goes on where it stopped.
fn poll_batch<S>(
    cx: &mut Context<'_>,
    sink: &mut WebSocketSender<S>,
    pending: &mut VecDeque<Output>,
    closing: &AtomicBool,
) -> Poll<Result<bool, tungstenite::Error>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while !closing.load(Ordering::Acquire) {
        let Some(output) = pending.front() else {
            break;
        };
        if matches!(output, Output::Response { .. } | Output::ReadBody { .. }) {
            tracing::debug!("HTTP output for a WebSocket dropped");
            pending.pop_front();
            continue;
        }
        ready!(Pin::new(&mut *sink).poll_ready(cx))?;
        match pending.pop_front() {
            Some(Output::Send { message, .. }) => {
                if let Some(message) = to_tungstenite(message) {
                    Pin::new(&mut *sink).start_send(message)?;
                }
            }
            Some(Output::Close { .. }) => {
                closing.store(true, Ordering::Release);
                Pin::new(&mut *sink).start_send(Message::Close(None))?;
            }
            _ => {}
        }
    }
    ready!(Pin::new(&mut *sink).poll_flush(cx))?;
    Poll::Ready(Ok(!closing.load(Ordering::Acquire)))
}

/// Runs `session` on this connection's task from now on. What the machine's task sent
/// before is queued ahead of it: the session may send again (its drained report would have
/// gone to the machine).
fn install(
    owned: &std::sync::OnceLock<std::sync::Mutex<Box<dyn OwnedSession>>>,
    session: Box<dyn OwnedSession>,
    outbox: &Arc<Outbox>,
    now: std::time::Instant,
) {
    if owned.set(std::sync::Mutex::new(session)).is_err() {
        return;
    }
    if let Some(owned) = owned.get() {
        let mut session = lock(owned);
        session.attach(super::machine::ConnOutbox(outbox.clone()));
        session.handle_ws_drained(now);
        flush(&mut **session, outbox, now, &mut WsCounts::default());
    }
}

fn lock(
    owned: &std::sync::Mutex<Box<dyn OwnedSession>>,
) -> std::sync::MutexGuard<'_, Box<dyn OwnedSession>> {
    owned
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Pushes what an owned session has to send into the connection's outbox; while the outbox
/// takes it under its budget, the session may send again at once (as the machine's task
/// tells the sessions it runs).
fn flush(
    session: &mut dyn OwnedSession,
    outbox: &Outbox,
    now: std::time::Instant,
    counts: &mut WsCounts,
) {
    while let Some(first) = session.poll_output() {
        let mut sends = matches!(first, Output::Send { .. });
        counts.sent(&first);
        let rest = std::iter::from_fn(|| {
            let output = session.poll_output()?;
            sends |= matches!(output, Output::Send { .. });
            counts.sent(&output);
            Some(output)
        });
        let pushed = outbox.push(std::iter::once(first).chain(rest));
        match pushed {
            Pushed::Open if sends => session.handle_ws_drained(now),
            Pushed::Open | Pushed::Full | Pushed::Closed => break,
        }
    }
    session.flushed();
    counts.report();
}

/// Answers a message over the size limit: what the machine already handed over (the open
/// packet of a new session) goes out before the close frame, which says why (1009, message
/// too big); then the connection closes without a reset.
async fn too_big_close<R: Runtime, S>(
    env: &Env<R>,
    mut sink: WebSocketSender<S>,
    source: WebSocketReceiver<S>,
    link: Link,
    mut pending: VecDeque<Output>,
    size: usize,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let linger = pin!(env.runtime.sleep(LINGER));
    let _ = or_timeout(
        async {
            let _ = link.outbox.try_take(&mut pending);
            for output in pending.drain(..) {
                if let Output::Send { message, .. } = output {
                    if let Some(message) = to_tungstenite(message) {
                        sink.feed(message).await?;
                    }
                }
            }
            let frame = CloseFrame {
                code: CloseCode::Size,
                reason: "message too big".into(),
            };
            sink.send(Message::Close(Some(frame))).await?;
            Ok::<_, tungstenite::Error>(())
        },
        linger,
    )
    .await;
    // The rest of the oversized message may still be arriving. Closing with it unread
    // would reset the connection, and a reset can destroy the close frame before the
    // peer reads it: half-close, then discard raw bytes until the peer goes.
    if let Ok(ws) = WebSocketStream::reunite(sink, source) {
        let mut stream = ws.into_inner();
        linger_close_after(&env.runtime, &mut stream, size).await;
    }
}

/// Waits for more to write: takes what the outbox holds into `into`, counting its bytes in
/// `taken`. `Ready(false)` once it can bring nothing more (the connection was dropped, or the
/// machine's task ended: dropping a connection's route closes its outbox).
fn poll_more(
    cx: &mut Context<'_>,
    outbox: &Outbox,
    into: &mut VecDeque<Output>,
    taken: &mut usize,
) -> Poll<bool> {
    let mut got = false;
    let mut ended = false;
    let before = into.len();
    match outbox.poll_take(cx, into) {
        Poll::Ready(true) => {
            *taken += into.range(before..).map(output_len).sum::<usize>();
            got = true;
        }
        Poll::Ready(false) => ended = true,
        Poll::Pending => {}
    }
    if got {
        Poll::Ready(true)
    } else if ended {
        Poll::Ready(false)
    } else {
        Poll::Pending
    }
}

/// Runs `a`, `b` and `c` until one completes, polling each only when its own waker fired:
/// the reader (whose every poll makes tungstenite prepare a read buffer) is not polled for
/// each batch the writer is woken for, nor the writer for each frame read, nor an owned
/// session's ticker (its locks, its deadline) for either. Each side gets a waker of its own,
/// which marks it and wakes the task, kept once for the three: four small allocations for
/// the connection's life. The sides are polled in order, so what `b` queues for `c` is
/// taken in the same poll.
fn race<A, B, C>(mut a: A, mut b: B, mut c: C) -> impl Future<Output = Either<A::Output, B::Output>>
where
    A: Future + Unpin,
    B: Future + Unpin,
    C: Future<Output = B::Output> + Unpin,
{
    // A plain future rather than an `async fn`, which would hold the three twice.
    let task = Arc::new(AtomicWaker::new());
    let sides = [(); 3].map(|()| {
        Arc::new(Side {
            // Polled once at the start, as any future.
            woken: AtomicBool::new(true),
            task: task.clone(),
        })
    });
    let wakers = sides.clone().map(Waker::from);
    poll_fn(move |cx| {
        task.register(cx.waker());
        if let Poll::Ready(out) = sides[0].poll(&wakers[0], &mut a) {
            return Poll::Ready(Either::Left(out));
        }
        if let Poll::Ready(out) = sides[1].poll(&wakers[1], &mut b) {
            return Poll::Ready(Either::Right(out));
        }
        if let Poll::Ready(out) = sides[2].poll(&wakers[2], &mut c) {
            return Poll::Ready(Either::Right(out));
        }
        Poll::Pending
    })
}

/// One side of a [`race`]: whether its future was woken since it was last polled, and the
/// task to wake then (the race's, shared by its sides).
struct Side {
    woken: AtomicBool,
    task: Arc<AtomicWaker>,
}

impl Side {
    /// Polls `fut` with this side's waker if it was woken.
    fn poll<F: Future + Unpin>(&self, waker: &Waker, fut: &mut F) -> Poll<F::Output> {
        if !self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        Pin::new(fut).poll(&mut Context::from_waker(waker))
    }
}

impl Wake for Side {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Our message as tungstenite's; both hold `Bytes`, so no copy. Text goes as a ready text
/// frame, which is what tungstenite makes of a text message, without checking it again.
fn to_tungstenite(message: WsMessage) -> Option<Message> {
    use tungstenite::protocol::frame::Frame;
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    match message {
        WsMessage::Text(text) => Some(Message::Frame(Frame::message(
            text.into_bytes(),
            OpCode::Data(Data::Text),
            true,
        ))),
        WsMessage::Binary(bytes) => Some(Message::Binary(bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls, keeps the last waker, completes once `ready`.
    #[derive(Clone, Default)]
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Probe {
        fn polls(&self) -> usize {
            self.polls.load(Ordering::SeqCst)
        }

        fn wake(&self) {
            if let Some(waker) = self.waker.lock().unwrap().take() {
                waker.wake();
            }
        }
    }

    impl Future for Probe {
        type Output = usize;

        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
            let polls = self.polls.fetch_add(1, Ordering::SeqCst) + 1;
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            if self.ready.load(Ordering::SeqCst) {
                Poll::Ready(polls)
            } else {
                Poll::Pending
            }
        }
    }

    /// Counts the wakes of the task.
    #[derive(Default)]
    struct Task(AtomicUsize);

    impl Wake for Task {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn race_polls_only_the_side_that_was_woken() {
        let (a, b, c) = (Probe::default(), Probe::default(), Probe::default());
        let task = Arc::new(Task::default());
        let waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&waker);
        let mut all = std::pin::pin!(race(a.clone(), b.clone(), c.clone()));
        let polls = || (a.polls(), b.polls(), c.polls());
        assert!(all.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls(), (1, 1, 1), "each polled once at the start");
        assert!(all.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls(), (1, 1, 1), "not woken: not polled");
        a.wake();
        assert_eq!(
            task.0.load(Ordering::SeqCst),
            1,
            "a side's wake wakes the task"
        );
        assert!(all.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls(), (2, 1, 1));
        c.wake();
        assert!(all.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls(), (2, 1, 2), "only c was polled for c's wake");
        b.ready.store(true, Ordering::SeqCst);
        b.wake();
        assert_eq!(task.0.load(Ordering::SeqCst), 3);
        match all.as_mut().poll(&mut cx) {
            Poll::Ready(Either::Right(polls)) => assert_eq!(polls, 2),
            other => panic!("expected b's end, got {:?}", other.map(|_| ())),
        }
        assert_eq!(
            (a.polls(), c.polls()),
            (2, 2),
            "a and c not polled for b's wake"
        );
    }
}
