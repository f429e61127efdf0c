//! One connection's task, HTTP half: request heads, bodies, responses, keep-alive.
//!
//! The task reads a head, then either answers it with the fallback (requests the machine
//! does not own) or hands it to the machine and performs what the machine says for this
//! connection, in order, until a response ends the exchange. A `101` hands the connection to
//! the [WebSocket half](super::websocket).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use futures::future::{Either, select};
use futures::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;
use volley_core::ConnId;
use volley_core::engine::{Body, Output};
use volley_core::http::{
    BodyDecoder, BodyKind, BodyProgress, HttpError, Method, RequestHead, Response, parse_head,
};

use super::Env;
use super::actor::Input;
use super::forward::{self, Forwarded, Forwarder};
use super::inbox::{Gone, InputSender};
use super::io::{linger_close, or_timeout, poll_read_buf, read_buf, read_with, write_all};
use super::outbox::{self, Outbox};
use super::request::{decorate, hooks, screen, unavailable};
use super::shutdown::{Admission, Evicted};
use super::slot::{Slot, Way};
use super::websocket;
use crate::runtime::Runtime;
use volley_core::NodeId;
use volley_core::engine::ErrorCode;

/// Bytes asked of the socket per read of a head.
const HEAD_READ: usize = 8 * 1024;
/// Bytes asked of the socket per read of a body.
const BODY_READ: usize = 16 * 1024;

/// How the HTTP half ended.
enum End {
    /// The peer closed, went idle, or the machine closed the connection: drop it.
    Closed,
    /// We sent a final response: close our side, linger, drop.
    Answered,
    /// The connection failed (IO error, timeout, broken framing).
    Failed,
    /// A `101` was written: the connection is now a WebSocket.
    Upgrade,
    /// Another node's `101` was written: the connection's bytes now go to that node.
    Relay(forward::RelayStream),
}

/// What finished an exchange with the machine.
enum Exchange {
    /// Answered and kept alive: read the next request.
    Next,
    End(End),
}

/// What came while waiting for this connection's outputs.
enum Next {
    Output(Output),
    NotOwned,
    /// The peer closed (`false`) or failed (`true`), or the machine dropped us (`true`).
    Gone(bool),
}

pub(crate) struct Http<'a, R: Runtime, S> {
    env: &'a Env<R>,
    conn: ConnId,
    stream: S,
    /// Bytes read and not yet consumed: the rest of a head, a body, pipelined requests.
    buf: BytesMut,
    out: BytesMut,
    /// Set once the connection registered with the machine's task.
    link: Option<Link>,
    /// Outputs received and not yet performed.
    pending: VecDeque<Output>,
    /// The request being answered is a `HEAD`: its answer has no body.
    head_request: bool,
    /// The TCP peer, recorded on every head so the handshake knows the client's address.
    peer: Option<std::net::SocketAddr>,
    /// The connection's place in the cap and the per-address counts.
    admission: Admission,
    /// Fires when the connection, still without a complete request head, is closed to make
    /// room at the cap.
    evicted: Evicted,
}

/// The connection's ways to and from the machine's task, or the slot of the session its
/// exchange names.
pub(crate) struct Link {
    /// Where the connection's inputs go now.
    pub(crate) inputs: Way,
    /// What the machine (or the slot) has for this connection: HTTP outputs, then WebSocket
    /// frames.
    pub(crate) outbox: Arc<Outbox>,
    /// The machine's task, once it knows the connection (it was sent `Open`): it hears of
    /// the connection's end too.
    pub(crate) machine: Option<InputSender>,
}

impl Link {
    /// A link whose first exchange goes to `inputs`, the machine's task not told yet.
    pub(crate) fn new(inputs: Way, outbox: Arc<Outbox>) -> Self {
        Link {
            inputs,
            outbox,
            machine: None,
        }
    }

    /// Points the link at the slot `head` names, if one runs its session, or else at the
    /// machine's task (telling it of the connection the first time); a slot left behind
    /// learns that the connection is no longer its. Then registers the connection for the
    /// exchange. `Err` when the machine's task is gone.
    pub(crate) async fn route(
        &mut self,
        conn: ConnId,
        slot: Option<Arc<Slot>>,
        machine: &InputSender,
    ) -> Result<(), Gone> {
        if let Way::Slot(left) = &self.inputs {
            if slot.as_ref().is_none_or(|slot| !Arc::ptr_eq(slot, left)) {
                let closed = Input::Closed { conn, error: false };
                let _ = self.inputs.send(closed).await;
            }
        }
        match slot {
            Some(slot) => {
                self.inputs = Way::Slot(slot);
                // A slot forgets a connection once its exchange is answered.
                let outbox = self.outbox.clone();
                self.inputs.send(Input::Open { conn, outbox }).await
            }
            None => {
                if self.machine.is_none() {
                    let outbox = self.outbox.clone();
                    machine.send(Input::Open { conn, outbox }).await?;
                    self.machine = Some(machine.clone());
                }
                if let Way::Slot(_) = self.inputs {
                    self.inputs = Way::Machine(machine.clone());
                }
                Ok(())
            }
        }
    }

    /// The connection ended: the slot or machine it last went to hears of it, and the
    /// machine's task too if it knows the connection.
    pub(crate) async fn closed(&self, conn: ConnId, error: bool) {
        let _ = self.inputs.send(Input::Closed { conn, error }).await;
        if let (Way::Slot(_), Some(machine)) = (&self.inputs, &self.machine) {
            let _ = machine.send_now(Input::Closed { conn, error });
        }
    }
}

/// Serves `stream` until it ends, then tells the machine. With `detach`, a connection that
/// becomes a WebSocket goes on in a task of its own and this future completes at the
/// upgrade: that task is sized for the WebSocket half alone, where an idle connection
/// spends its life, not for the HTTP half and the layers around it (see
/// [`Driver::serve_accepted`](super::Driver::serve_accepted)).
pub(crate) async fn run<R, S>(
    env: &Arc<Env<R>>,
    conn: ConnId,
    stream: S,
    peer: Option<std::net::SocketAddr>,
    admission: Admission,
    evicted: Evicted,
    detach: bool,
) where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The HTTP half runs boxed and hands back what the rest needs: its state (the larger
    // one) is freed when the connection becomes a WebSocket, instead of sizing the whole
    // task for it.
    let (end, rest) = Box::pin(serve_http(env, conn, stream, peer, admission, evicted)).await;
    let Rest {
        mut stream,
        buf,
        link,
        pending,
        admission,
    } = rest;
    let (error, linger) = match end {
        End::Upgrade => {
            let Some(link) = link else {
                return;
            };
            let halves = websocket::open(env, stream, buf).await;
            if detach {
                let websocket =
                    websocket::run(env.clone(), conn, halves, pending, link, Some(admission));
                env.runtime
                    .spawn(websocket.instrument(tracing::Span::current()));
                return;
            }
            websocket::run(&**env, conn, halves, pending, link, Some(admission)).await;
            return;
        }
        End::Relay(relay) => {
            let pipe = forward::pipe(stream, buf.freeze(), relay);
            // The pipe ends with its client, its owner, or this node's shutdown (the client
            // then reconnects through another node).
            let _ = select(pin!(pipe), pin!(env.tracker.stopping())).await;
            drop(admission);
            return;
        }
        End::Closed => (false, false),
        End::Failed => (true, false),
        End::Answered => (false, true),
    };
    tracing::debug!(error, "connection ended");
    if let Some(link) = link {
        // The machine may hold a role for it (a parked poll, a body it asked for): it must
        // learn that the connection is gone, before any lingering.
        link.closed(conn, error).await;
    }
    if linger {
        linger_close(&env.runtime, &mut stream).await;
    }
    drop(admission);
}

/// What the HTTP half hands over when it ends.
struct Rest<S> {
    stream: S,
    /// Bytes read and not consumed (frames sent right behind an upgrade request).
    buf: BytesMut,
    link: Option<Link>,
    pending: VecDeque<Output>,
    admission: Admission,
}

/// The HTTP half, owning its state: how it ended, and what the rest needs.
async fn serve_http<R, S>(
    env: &Env<R>,
    conn: ConnId,
    stream: S,
    peer: Option<std::net::SocketAddr>,
    admission: Admission,
    evicted: Evicted,
) -> (End, Rest<S>)
where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut http = Http {
        env,
        conn,
        stream,
        buf: BytesMut::new(),
        out: BytesMut::new(),
        link: None,
        pending: VecDeque::new(),
        head_request: false,
        peer,
        admission,
        evicted,
    };
    let end = http.serve().await;
    let Http {
        stream,
        buf,
        link,
        pending,
        admission,
        ..
    } = http;
    let rest = Rest {
        stream,
        buf,
        link,
        pending,
        admission,
    };
    (end, rest)
}

impl<R: Runtime, S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Http<'_, R, S> {
    async fn serve(&mut self) -> End {
        let mut first = true;
        loop {
            let head = match self.next_head(first).await {
                Ok(head) => head,
                Err(end) => return end,
            };
            first = false;
            self.head_request = head.method() == Method::Head;
            let exchange = if self.env.router.may_own(&head) {
                self.exchange(head).await
            } else {
                self.fallback(&head).await
            };
            match exchange {
                Exchange::Next => {}
                Exchange::End(end) => return end,
            }
        }
    }

    /// Waits for the next request head: for its first byte, up to the head timeout on a new
    /// connection or the idle timeout between requests (either way, shutdown ends the wait),
    /// then up to the head timeout for the whole head.
    async fn next_head(&mut self, first: bool) -> Result<RequestHead, End> {
        let env = self.env;
        self.head_request = false;
        let mut early = None;
        if self.buf.is_empty() {
            if env.tracker.is_stopping() {
                return Err(End::Closed);
            }
            let quiet = match first {
                true => env.config.head_timeout,
                false => env.config.idle_timeout,
            };
            let quiet = pin!(env.runtime.sleep(quiet));
            let wait = select(select(quiet, env.tracker.stopping()), &mut self.evicted);
            // A head that arrives whole in this read is parsed where it landed.
            let limits = &env.config.limits;
            let read = read_with(&mut self.stream, &mut self.buf, HEAD_READ, |bytes| {
                parse_head(bytes, limits).ok().flatten()
            });
            match select(pin!(read), wait).await {
                Either::Left((Ok((0, _)), _)) => return Err(End::Closed),
                Either::Left((Ok((_, head)), _)) => early = head,
                Either::Left((Err(e), _)) => {
                    tracing::debug!(error = %e, "read failed");
                    return Err(End::Failed);
                }
                Either::Right((Either::Left(_), _)) => {
                    tracing::debug!("quiet connection closed");
                    return Err(End::Closed);
                }
                Either::Right((Either::Right(_), _)) => {
                    tracing::debug!("silent connection closed to make room at the cap");
                    return Err(End::Closed);
                }
            }
        }
        let mut deadline = pin!(env.runtime.sleep(env.config.head_timeout));
        loop {
            let parsed = match early.take() {
                Some(head) => Ok(Some(head)),
                None if self.buf.is_empty() => Ok(None),
                None => parse_head(&self.buf, &env.config.limits).map(|found| {
                    found.map(|(head, consumed)| {
                        self.buf.advance(consumed);
                        head
                    })
                }),
            };
            match parsed {
                Ok(Some(head)) => {
                    self.admission.settle();
                    self.evicted = Evicted::never();
                    if env.tracker.limits_addresses() && env.config.is_trusted_proxy(self.peer) {
                        if let Some(client) = env.config.client_key(self.peer, &head) {
                            if self.admission.rekey(client).is_err() {
                                tracing::debug!(%client, "request refused: per-address limit");
                                return Err(self.answer(unavailable()).await);
                            }
                        }
                    }
                    let head = match self.peer {
                        Some(peer) => head.with_peer_addr(peer),
                        None => head,
                    };
                    tracing::debug!(
                        method = head.method_str(),
                        target = head.target(),
                        "request"
                    );
                    return Ok(head);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "malformed request head");
                    return Err(self.answer_error(&e).await);
                }
            }
            let read = read_buf(&mut self.stream, &mut self.buf, HEAD_READ);
            let read = match select(pin!(read), select(deadline.as_mut(), &mut self.evicted)).await
            {
                Either::Left((read, _)) => Some(read),
                Either::Right((Either::Left(_), _)) => None,
                Either::Right((Either::Right(_), _)) => {
                    tracing::debug!("unfinished request head closed to make room at the cap");
                    return Err(End::Closed);
                }
            };
            match read {
                Some(Ok(0)) => return Err(End::Closed),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "read failed");
                    return Err(End::Failed);
                }
                None if self.buf.is_empty() => {
                    tracing::debug!("no request in time");
                    return Err(End::Closed);
                }
                None => {
                    tracing::debug!("request head too slow");
                    let response = Response::new(408)
                        .header("Content-Type", "text/plain; charset=utf-8")
                        .body("request head timeout")
                        .closing();
                    return Err(self.answer(response).await);
                }
            }
        }
    }

    /// Answers a request the machine does not own.
    async fn fallback(&mut self, head: &RequestHead) -> Exchange {
        let response = (self.env.config.fallback)(head);
        // The fallback does not read bodies: one left unread breaks the framing.
        let close = has_body(head) || !head.keep_alive();
        self.respond(response, close).await
    }

    /// Hands `head` to the machine and performs its outputs for this connection until the
    /// exchange ends.
    async fn exchange(&mut self, head: RequestHead) -> Exchange {
        if let Some(response) = screen(&self.env.config, &head) {
            let close = has_body(&head) || !head.keep_alive();
            return self.respond(response, close).await;
        }
        if let Some(fwd) = self.env.forward.get() {
            if let Some(owner) = fwd.owner(&head) {
                let fwd = fwd.clone();
                return self.forward(fwd, owner, head).await;
            }
        }
        let conn = self.conn;
        let keep_alive = head.keep_alive();
        let kind = head.body_kind();
        // Until the body is read, the connection cannot carry another request.
        let mut body_unread = has_body(&head);
        let expects_continue = head.expects_continue();
        let slot = self.env.slots.find(&head);
        let link = self.link.get_or_insert_with(|| {
            let inputs = Way::Machine(self.env.inputs.clone());
            Link::new(inputs, Arc::new(Outbox::default()))
        });
        if link.route(conn, slot, &self.env.inputs).await.is_err() {
            return Exchange::End(End::Failed);
        }
        // A small body already read with the head goes with it.
        let early = match kind {
            BodyKind::Length(n) if !expects_continue => usize::try_from(n)
                .ok()
                .filter(|&n| n > 0 && n <= self.env.max_body && n <= self.buf.len())
                .map(|n| self.buf.split_to(n).freeze()),
            _ => None,
        };
        let early_len = early.as_ref().map(Bytes::len);
        let request = Input::Request {
            conn,
            head: head.clone(),
            body: early,
        };
        if link.inputs.send(request).await.is_err() {
            return Exchange::End(End::Failed);
        }
        loop {
            match self.next_output().await {
                Next::Gone(error) => {
                    tracing::debug!(error, "connection gone while awaiting the machine");
                    return Exchange::End(if error { End::Failed } else { End::Closed });
                }
                Next::NotOwned => {
                    return self.fallback(&head).await;
                }
                Next::Output(Output::Response { response, .. }) => {
                    if response.status == 101 {
                        let response = hooks(&self.env.config, &head, response);
                        self.out.clear();
                        response.write_to(&mut self.out);
                        return match self.write_out().await {
                            Ok(()) => Exchange::End(End::Upgrade),
                            Err(()) => Exchange::End(End::Failed),
                        };
                    }
                    let close = response.close || !keep_alive || body_unread;
                    let response = decorate(&self.env.config, &head, response);
                    return self.respond(response, close).await;
                }
                Next::Output(Output::ReadBody { limit, .. }) if early_len.is_some() => {
                    // The machine took the body sent with the request.
                    body_unread = early_len.is_some_and(|n| n > limit);
                }
                Next::Output(Output::ReadBody { limit, .. }) => {
                    if expects_continue && self.buf.is_empty() {
                        self.out.clear();
                        self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                        if self.write_out().await.is_err() {
                            return Exchange::End(End::Failed);
                        }
                    }
                    let body = match self.read_body(kind, limit).await {
                        Ok(body) => body,
                        Err(end) => return Exchange::End(end),
                    };
                    body_unread = body == Body::TooLarge;
                    let Some(link) = self.link.as_mut() else {
                        return Exchange::End(End::Failed);
                    };
                    if link.inputs.send(Input::Body { conn, body }).await.is_err() {
                        return Exchange::End(End::Failed);
                    }
                }
                Next::Output(Output::Close { .. }) => return Exchange::End(End::Closed),
                Next::Output(Output::Send { .. }) => {
                    tracing::debug!("WebSocket message for an HTTP connection dropped");
                }
            }
        }
    }

    /// Sends a request for a session of node `owner` there, and writes its answer.
    async fn forward(&mut self, fwd: Arc<Forwarder>, owner: NodeId, head: RequestHead) -> Exchange {
        let keep_alive = head.keep_alive();
        let body = if has_body(&head) {
            if head.expects_continue() && self.buf.is_empty() {
                self.out.clear();
                self.out.extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                if self.write_out().await.is_err() {
                    return Exchange::End(End::Failed);
                }
            }
            match self.read_body(head.body_kind(), self.env.max_body).await {
                Ok(body) => Some(body),
                Err(end) => return Exchange::End(end),
            }
        } else {
            None
        };
        let body_unread = body == Some(Body::TooLarge);
        let request = forward::Request {
            head: head.clone(),
            peer: self.peer,
            body,
        };
        let forwarded = fwd.forward(&self.env.runtime, owner, request);
        let mut forwarded = pin!(forwarded);
        // While the owner holds the request (a parked poll), a client that goes is noticed:
        // dropping the forwarded request tells the owner.
        let max = self.env.config.limits.max_head_bytes;
        let watched = watching(&mut self.stream, &mut self.buf, max, |cx| {
            forwarded.as_mut().poll(cx)
        });
        let forwarded = match watched.await {
            Ok(answer) => answer,
            Err(error) => return Exchange::End(if error { End::Failed } else { End::Closed }),
        };
        match forwarded {
            Forwarded::Unreachable => {
                // The owner is gone: the client reconnects, as after any lost session.
                let response = match head.is_websocket_upgrade() {
                    true => ErrorCode::UnknownSid.ws_response(),
                    false => ErrorCode::UnknownSid.response(),
                };
                let response = decorate(&self.env.config, &head, response);
                self.respond(response, !keep_alive || body_unread).await
            }
            Forwarded::Answer(response) => {
                let close = !keep_alive || body_unread;
                self.respond(response, close).await
            }
            Forwarded::Upgraded { response, stream } => {
                self.out.clear();
                response.write_to(&mut self.out);
                match self.write_out().await {
                    Ok(()) => Exchange::End(End::Relay(stream)),
                    Err(()) => Exchange::End(End::Failed),
                }
            }
        }
    }

    /// The next output for this connection. While waiting, keeps reading the socket so that a
    /// peer closing under a parked poll is noticed (bytes it pipelines meanwhile are kept,
    /// up to a head's worth).
    async fn next_output(&mut self) -> Next {
        if let Some(output) = self.pending.pop_front() {
            return Next::Output(output);
        }
        let Some(link) = self.link.as_mut() else {
            return Next::Gone(true);
        };
        let max = self.env.config.limits.max_head_bytes;
        loop {
            let (stream, buf, pending) = (&mut self.stream, &mut self.buf, &mut self.pending);
            let outbox = &link.outbox;
            match watching(stream, buf, max, |cx| outbox.poll_take_http(cx, pending)).await {
                Ok(outbox::Http::Outputs) => {
                    if let Some(output) = self.pending.pop_front() {
                        return Next::Output(output);
                    }
                }
                Ok(outbox::Http::NotOwned) => return Next::NotOwned,
                Ok(outbox::Http::Closed) => return Next::Gone(true),
                Err(error) => return Next::Gone(error),
            }
        }
    }

    /// Reads a body of `kind`, at most `limit` bytes, within the body timeout.
    async fn read_body(&mut self, kind: BodyKind, limit: usize) -> Result<Body, End> {
        let env = self.env;
        let mut decoder = BodyDecoder::new(kind, limit);
        let mut deadline = pin!(env.runtime.sleep(env.config.body_timeout));
        loop {
            match decoder.feed(&mut self.buf) {
                Ok(BodyProgress::Done(bytes)) => return Ok(Body::Complete(bytes)),
                Ok(BodyProgress::NeedMore) => {}
                Err(HttpError::BodyTooLarge) => return Ok(Body::TooLarge),
                Err(e) => {
                    tracing::debug!(error = %e, "malformed request body");
                    return Err(self.answer_error(&e).await);
                }
            }
            let read = read_buf(&mut self.stream, &mut self.buf, BODY_READ);
            match or_timeout(read, deadline.as_mut()).await {
                Some(Ok(0)) => {
                    tracing::debug!("connection closed inside a body");
                    return Err(End::Failed);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "read failed");
                    return Err(End::Failed);
                }
                None => {
                    tracing::debug!("request body too slow");
                    return Err(End::Failed);
                }
            }
        }
    }

    /// Writes `response`, closing after it when `close` (or when shutting down).
    async fn respond(&mut self, mut response: Response, close: bool) -> Exchange {
        let close = close || response.close || self.env.tracker.is_stopping();
        response.close = close;
        if self.head_request && !response.body.is_empty() {
            // A HEAD answer describes the body it would have had, and carries none: bytes
            // after it would be read as the next response.
            if response.get_header("content-length").is_none() {
                let length = response.body.len().to_string();
                response = response.header("Content-Length", length);
            }
            response.body = Bytes::new();
        }
        self.out.clear();
        response.write_to(&mut self.out);
        match self.write_out().await {
            Err(()) => Exchange::End(End::Failed),
            Ok(()) if close => Exchange::End(End::Answered),
            Ok(()) => Exchange::Next,
        }
    }

    /// Answers a framing error (the answer closes the connection).
    async fn answer_error(&mut self, error: &HttpError) -> End {
        self.answer(error.response()).await
    }

    async fn answer(&mut self, response: Response) -> End {
        match self.respond(response, true).await {
            Exchange::End(end) => end,
            Exchange::Next => End::Answered,
        }
    }

    async fn write_out(&mut self) -> Result<(), ()> {
        let env = self.env;
        write_all(
            &env.runtime,
            &mut self.stream,
            &self.out,
            env.config.write_timeout,
        )
        .await
        .map_err(|e| tracing::debug!(error = %e, "write failed"))
    }
}

/// Waits for `poll` while reading the socket, so that a peer closing meanwhile (under a
/// parked poll) is noticed: `Err(false)` when it closed, `Err(true)` when the read failed.
/// Bytes it pipelines meanwhile are kept, up to a head's worth.
async fn watching<S: AsyncRead + Unpin, T>(
    stream: &mut S,
    buf: &mut BytesMut,
    max_buffered: usize,
    mut poll: impl FnMut(&mut std::task::Context<'_>) -> Poll<T>,
) -> Result<T, bool> {
    loop {
        let watch = buf.len() < max_buffered;
        let woke = poll_fn(|cx| {
            if let Poll::Ready(value) = poll(cx) {
                return Poll::Ready(Either::Left(value));
            }
            if watch {
                if let Poll::Ready(read) = poll_read_buf(stream, cx, buf, HEAD_READ) {
                    return Poll::Ready(Either::Right(read));
                }
            }
            Poll::Pending
        })
        .await;
        match woke {
            Either::Left(value) => return Ok(value),
            Either::Right(Ok(0)) => return Err(false),
            Either::Right(Ok(_)) => {}
            Either::Right(Err(e)) => {
                tracing::debug!(error = %e, "read failed");
                return Err(true);
            }
        }
    }
}

pub(crate) fn has_body(head: &RequestHead) -> bool {
    !matches!(head.body_kind(), BodyKind::None | BodyKind::Length(0))
}
