//! Requests for sessions another node of the cluster owns, forwarded to that node over the
//! adapter's [`Relay`], so that a cluster needs no sticky sessions.
//!
//! With a relay, every session id names its node: `<node id>.<id>` ([`Tagged`]). A request
//! whose `sid` names another node is not handed to this node's machine: the connection's task
//! (the *requester*) reads its body, sends it to the owner as one `REQUEST` frame and writes
//! the owner's `RESPONSE` back to its client. On the owner, the request is served by
//! [`Driver::serve_forwarded`], exactly as a request of its own (a poll parks there until
//! there is something to send). A `101` turns the exchange into a byte pipe: the requester
//! copies its client's bytes up (`UP_DATA`), the owner runs its WebSocket half on a
//! [`RelayStream`] and sends its bytes down (`DOWN_DATA`), until either side ends it
//! (`UP_END` / `DOWN_END`). The session never moves: its machine, its sockets and their
//! handlers stay where they are, and the node that holds the client's connection carries
//! bytes.
//!
//! Frames: `kind` (1 byte), the stream id the requester drew (8 bytes, big-endian), the
//! sender's node id (1 length byte and the id), then the kind's payload.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::channel::mpsc;
use futures::future::{BoxFuture, Either, select};
use futures::io::{AsyncRead, AsyncWrite};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use volley_core::engine::Body;
use volley_core::http::{RequestHead, Response};
use volley_core::ids::SID_MAX_LEN;
use volley_core::rng::IdGenerator;
use volley_core::{NodeId, Sid};

use super::Driver;
use super::machine::Machine;
use crate::adapter::Relay;
use crate::runtime::Runtime;

const REQUEST: u8 = 1;
const RESPONSE: u8 = 2;
const UP_DATA: u8 = 3;
const DOWN_DATA: u8 = 4;
const UP_END: u8 = 5;
const DOWN_END: u8 = 6;
/// From the requester: how many bytes of `DOWN_DATA` it has read so far (8 bytes).
const UP_CREDIT: u8 = 7;
/// From the owner: how many bytes of `UP_DATA` it has read so far (8 bytes).
const DOWN_CREDIT: u8 = 8;
/// "Are you there?": ignored by the receiver; the relay says whether one received it.
const PROBE: u8 = 9;

/// `RESPONSE` flag: the answer is a `101` and the exchange goes on as a byte pipe.
const FLAG_UPGRADE: u8 = 1;
/// `RESPONSE` flag: the owner closes after this answer.
const FLAG_CLOSE: u8 = 2;

/// Frames a relayed stream's writer may have sent and not yet seen delivered before it waits.
const SENDS_IN_FLIGHT: usize = 32;

/// How often a node checks that the nodes at the other end of its open streams still
/// listen; the streams of one that does not are ended.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Separates the node id from the rest of a session id.
const TAG_SEPARATOR: char = '.';

/// A frame that could not be read: the relay carried something this version does not speak.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadFrame(&'static str);

impl fmt::Display for BadFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad relay frame: {}", self.0)
    }
}

/// A request as the requester sends it.
#[derive(Debug)]
pub(crate) struct Request {
    pub head: RequestHead,
    pub peer: Option<SocketAddr>,
    /// The body the requester read (`None`: the request has none).
    pub body: Option<Body>,
}

/// What one frame says.
#[derive(Debug)]
pub(crate) enum Frame {
    Request(Request),
    /// The owner's answer (its `close` flag: the owner closes after it).
    Response {
        upgrade: bool,
        response: Response,
    },
    Data(Bytes),
    /// Bytes of the other side's data read so far.
    Credit(u64),
    End,
    Probe,
}

/// One frame with its routing fields.
#[derive(Debug)]
pub(crate) struct Envelope {
    pub kind: u8,
    pub stream: u64,
    pub from: NodeId,
    pub frame: Frame,
}

fn header(kind: u8, stream: u64, from: NodeId, extra: usize) -> BytesMut {
    let id = from.as_str().as_bytes();
    let mut out = BytesMut::with_capacity(10 + id.len() + extra);
    out.put_u8(kind);
    out.put_u64(stream);
    out.put_u8(id.len() as u8);
    out.put_slice(id);
    out
}

fn put_str16(out: &mut BytesMut, s: &[u8]) {
    out.put_u16(s.len().min(usize::from(u16::MAX)) as u16);
    out.put_slice(&s[..s.len().min(usize::from(u16::MAX))]);
}

pub(crate) fn encode_request(stream: u64, from: NodeId, request: &Request) -> Bytes {
    let head = &request.head;
    let body_len = match &request.body {
        Some(Body::Complete(b)) => b.len(),
        _ => 0,
    };
    let mut out = header(REQUEST, stream, from, 256 + body_len);
    let peer = request.peer.map(|p| p.to_string()).unwrap_or_default();
    out.put_u8(peer.len() as u8);
    out.put_slice(peer.as_bytes());
    put_str16(&mut out, head.method_str().as_bytes());
    put_str16(&mut out, head.target().as_bytes());
    let fields: Vec<(&str, &[u8])> = head.headers().collect();
    out.put_u16(fields.len().min(usize::from(u16::MAX)) as u16);
    for (name, value) in fields.iter().take(usize::from(u16::MAX)) {
        put_str16(&mut out, name.as_bytes());
        out.put_u32(value.len() as u32);
        out.put_slice(value);
    }
    match &request.body {
        None => out.put_u8(0),
        Some(Body::Complete(body)) => {
            out.put_u8(1);
            out.put_slice(body);
        }
        Some(Body::TooLarge) => out.put_u8(2),
    }
    out.freeze()
}

pub(crate) fn encode_response(
    stream: u64,
    from: NodeId,
    response: &Response,
    upgrade: bool,
) -> Bytes {
    let fields: usize = response
        .headers
        .iter()
        .map(|(n, v)| n.len() + v.len() + 6)
        .sum();
    let mut out = header(RESPONSE, stream, from, 8 + fields + response.body.len());
    let mut flags = 0;
    if upgrade {
        flags |= FLAG_UPGRADE;
    }
    if response.close {
        flags |= FLAG_CLOSE;
    }
    out.put_u8(flags);
    out.put_u16(response.status);
    let count = response.headers.len().min(usize::from(u16::MAX));
    out.put_u16(count as u16);
    for (name, value) in response.headers.iter().take(count) {
        put_str16(&mut out, name.as_bytes());
        out.put_u32(value.len() as u32);
        out.put_slice(value.as_bytes());
    }
    out.put_slice(&response.body);
    out.freeze()
}

/// The header names Volley writes itself.
const KNOWN_NAMES: [&str; 17] = [
    "Access-Control-Allow-Credentials",
    "Access-Control-Allow-Headers",
    "Access-Control-Allow-Methods",
    "Access-Control-Allow-Origin",
    "Access-Control-Expose-Headers",
    "Access-Control-Max-Age",
    "Cache-Control",
    "Connection",
    "Content-Encoding",
    "Content-Length",
    "Content-Type",
    "Retry-After",
    "Sec-WebSocket-Accept",
    "Set-Cookie",
    "Upgrade",
    "Vary",
    "X-XSS-Protection",
];

/// Most header names of other nodes' answers kept beyond [`KNOWN_NAMES`] (the names the
/// application's hooks add: a fixed set in a cluster of one program).
const MAX_EXTRA_NAMES: usize = 256;

/// `name` as the `&'static str` a [`Response`] field holds: one of [`KNOWN_NAMES`], or a copy
/// kept for the life of the process, at most [`MAX_EXTRA_NAMES`] of them (`None` beyond).
fn static_name(name: &str) -> Option<&'static str> {
    if let Some(known) = KNOWN_NAMES.iter().find(|k| k.eq_ignore_ascii_case(name)) {
        return Some(known);
    }
    static EXTRA: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut extra = lock(&EXTRA);
    if let Some(kept) = extra.iter().find(|k| **k == name) {
        return Some(kept);
    }
    if extra.len() >= MAX_EXTRA_NAMES {
        return None;
    }
    let kept: &'static str = Box::leak(name.to_owned().into_boxed_str());
    extra.push(kept);
    Some(kept)
}

fn decode_response(buf: &mut Bytes) -> Result<Response, BadFrame> {
    let status = take(buf, 2, "status")?.get_u16();
    let count = take(buf, 2, "fields")?.get_u16();
    let mut response = Response::new(status);
    for _ in 0..count {
        let name = take_str16(buf, "field name")?;
        let len = take(buf, 4, "field value")?.get_u32() as usize;
        let value = take(buf, len, "field value")?;
        let value = String::from_utf8(value.to_vec()).map_err(|_| BadFrame("field value"))?;
        match static_name(&name) {
            Some(name) => response.headers.push((name, value)),
            None => tracing::warn!(name, "field of a forwarded answer dropped: too many names"),
        }
    }
    response.body = std::mem::take(buf);
    Ok(response)
}

pub(crate) fn encode_data(kind: u8, stream: u64, from: NodeId, data: &[u8]) -> Bytes {
    let mut out = header(kind, stream, from, data.len());
    out.put_slice(data);
    out.freeze()
}

pub(crate) fn encode_end(kind: u8, stream: u64, from: NodeId) -> Bytes {
    header(kind, stream, from, 0).freeze()
}

pub(crate) fn encode_credit(kind: u8, stream: u64, from: NodeId, read: u64) -> Bytes {
    let mut out = header(kind, stream, from, 8);
    out.put_u64(read);
    out.freeze()
}

fn take(buf: &mut Bytes, n: usize, what: &'static str) -> Result<Bytes, BadFrame> {
    if buf.len() < n {
        return Err(BadFrame(what));
    }
    Ok(buf.split_to(n))
}

fn take_u8(buf: &mut Bytes, what: &'static str) -> Result<u8, BadFrame> {
    Ok(take(buf, 1, what)?[0])
}

fn take_str16(buf: &mut Bytes, what: &'static str) -> Result<String, BadFrame> {
    let n = take(buf, 2, what)?.get_u16();
    let bytes = take(buf, usize::from(n), what)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| BadFrame(what))
}

pub(crate) fn decode(mut buf: Bytes) -> Result<Envelope, BadFrame> {
    let kind = take_u8(&mut buf, "kind")?;
    let stream = take(&mut buf, 8, "stream id")?.get_u64();
    let n = take_u8(&mut buf, "node id")?;
    let from = take(&mut buf, usize::from(n), "node id")?;
    let from = std::str::from_utf8(&from)
        .ok()
        .and_then(|s| NodeId::new(s).ok())
        .ok_or(BadFrame("node id"))?;
    let frame = match kind {
        REQUEST => {
            let n = take_u8(&mut buf, "peer")?;
            let peer = take(&mut buf, usize::from(n), "peer")?;
            let peer = std::str::from_utf8(&peer).ok().and_then(|s| s.parse().ok());
            let method = take_str16(&mut buf, "method")?;
            let target = take_str16(&mut buf, "target")?;
            let count = take(&mut buf, 2, "fields")?.get_u16();
            let mut fields = Vec::with_capacity(usize::from(count).min(128));
            for _ in 0..count {
                let name = take_str16(&mut buf, "field name")?;
                let len = take(&mut buf, 4, "field value")?.get_u32() as usize;
                let value = take(&mut buf, len, "field value")?;
                fields.push((name, value.to_vec()));
            }
            let body = match take_u8(&mut buf, "body")? {
                0 => None,
                1 => Some(Body::Complete(buf)),
                2 => Some(Body::TooLarge),
                _ => return Err(BadFrame("body")),
            };
            let head = RequestHead::from_parts(&method, &target, fields)
                .map_err(|_| BadFrame("request head"))?;
            Frame::Request(Request { head, peer, body })
        }
        RESPONSE => {
            let flags = take_u8(&mut buf, "flags")?;
            let mut response = decode_response(&mut buf)?;
            response.close = flags & FLAG_CLOSE != 0;
            Frame::Response {
                upgrade: flags & FLAG_UPGRADE != 0,
                response,
            }
        }
        UP_DATA | DOWN_DATA => Frame::Data(buf),
        UP_CREDIT | DOWN_CREDIT => Frame::Credit(take(&mut buf, 8, "credit")?.get_u64()),
        UP_END | DOWN_END => Frame::End,
        PROBE => Frame::Probe,
        _ => return Err(BadFrame("kind")),
    };
    Ok(Envelope {
        kind,
        stream,
        from,
        frame,
    })
}

/// The node a session id names, when it names one (`<node id>.<rest>`).
pub(crate) fn owner_of(sid: &str) -> Option<NodeId> {
    let (tag, rest) = sid.split_once(TAG_SEPARATOR)?;
    if rest.is_empty() {
        return None;
    }
    NodeId::new(tag).ok()
}

/// Session ids that name their node: `<node id>.<id from the inner generator>`, cut to the
/// longest session id ([`SID_MAX_LEN`]) when the inner id is longer than what is left.
pub(crate) struct Tagged {
    pub node: NodeId,
    pub inner: Box<dyn IdGenerator>,
}

impl IdGenerator for Tagged {
    fn generate(&mut self, request: &RequestHead) -> Sid {
        let inner = self.inner.generate(request);
        let mut s = String::with_capacity(SID_MAX_LEN);
        s.push_str(self.node.as_str());
        s.push(TAG_SEPARATOR);
        s.push_str(inner.as_str());
        s.truncate(SID_MAX_LEN);
        // Node ids and session ids share the URL-safe alphabet, and the separator is in it.
        Sid::new(&s).unwrap_or(inner)
    }
}

/// What a relayed stream's reader receives.
#[derive(Debug)]
enum Event {
    Response {
        upgrade: bool,
        response: Response,
    },
    Data(Bytes),
    End,
    /// More bytes waited than the window allows: the stream is dropped.
    Overflow,
}

/// One stream's way in: its events, and its flow state.
#[derive(Clone)]
struct Inlet {
    tx: mpsc::UnboundedSender<Event>,
    flow: Arc<Flow>,
    /// The node at the other end.
    peer: NodeId,
}

/// A relayed stream's flow control, shared by the inbox that fills it and the stream.
///
/// A writer may have at most a window of bytes sent and not yet read by the other side; the
/// reader reports what it has read (`*_CREDIT`) each quarter window. So the bytes waiting
/// unread on a node are bounded by the window, and a reader that stops reading (its
/// WebSocket half pushing back on a client) stops the writer on the other node, as TCP would.
#[derive(Default)]
struct Flow {
    /// Bytes received and not yet read here.
    queued: AtomicUsize,
    /// Bytes of ours the other side has read (its last credit).
    acked: AtomicU64,
    /// The writer waiting for credit.
    writer: futures::task::AtomicWaker,
}

fn inlet(peer: NodeId) -> (Inlet, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded();
    let inlet = Inlet {
        tx,
        flow: Arc::default(),
        peer,
    };
    (inlet, rx)
}

/// This node's side of forwarding: its id, the relay, and the streams open through it.
pub(crate) struct Forwarder {
    me: NodeId,
    relay: Arc<dyn Relay>,
    next: AtomicU64,
    /// Streams this node opened as the requester, by their id.
    opened: Mutex<HashMap<u64, Inlet>>,
    /// Streams other nodes opened here, by (requester, id).
    served: Mutex<HashMap<(NodeId, u64), Inlet>>,
    /// Most bytes of a relayed stream that may wait unread on this node before the stream
    /// is dropped.
    window: usize,
    /// How long a requester waits for the owner's answer before it takes the owner for gone.
    answer_timeout: Duration,
}

impl fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forwarder")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What forwarding a request came to, on the requester.
pub(crate) enum Forwarded {
    /// The owner's answer.
    Answer(Response),
    /// The owner answered `101` (`response`): carry the connection's bytes through `stream`.
    Upgraded {
        response: Response,
        stream: RelayStream,
    },
    /// No node took the request, or its owner did not answer in time.
    Unreachable,
}

impl Forwarder {
    pub(crate) fn new(
        me: NodeId,
        relay: Arc<dyn Relay>,
        window: usize,
        answer_timeout: Duration,
    ) -> Self {
        Forwarder {
            me,
            relay,
            next: AtomicU64::new(1),
            opened: Mutex::default(),
            served: Mutex::default(),
            window,
            answer_timeout,
        }
    }

    /// The node that owns the session `head` names, when that is another node.
    pub(crate) fn owner(&self, head: &RequestHead) -> Option<NodeId> {
        let sid = head.query_param("sid")?;
        owner_of(&sid).filter(|node| *node != self.me)
    }

    fn send(&self, to: NodeId, frame: Bytes) -> BoxFuture<'static, bool> {
        self.relay.send(to, frame)
    }

    /// Sends `request` to `to` and waits for its answer (up to the answer timeout).
    pub(crate) async fn forward<R: Runtime>(
        self: &Arc<Self>,
        runtime: &R,
        to: NodeId,
        request: Request,
    ) -> Forwarded {
        let stream = self.next.fetch_add(1, Ordering::Relaxed);
        let (inlet, mut rx) = inlet(to);
        let flow = inlet.flow.clone();
        lock(&self.opened).insert(stream, inlet);
        // Until the answer came, a drop (the client went) tells the owner to let go.
        let mut guard = StreamGuard {
            fwd: self.clone(),
            to,
            stream,
            end: UP_END,
            requester: true,
            armed: true,
        };
        let frame = encode_request(stream, self.me, &request);
        if !self.send(to, frame).await {
            guard.armed = false;
            tracing::debug!(node = %to, "forwarded request: no such node");
            crate::metrics::forwarded("unreachable");
            return Forwarded::Unreachable;
        }
        let timeout = runtime.sleep(self.answer_timeout);
        let answer = match select(rx.next(), std::pin::pin!(timeout)).await {
            Either::Left((Some(event), _)) => event,
            Either::Left((None, _)) => Event::End,
            Either::Right(_) => {
                tracing::debug!(node = %to, "forwarded request: no answer in time");
                crate::metrics::forwarded("unreachable");
                return Forwarded::Unreachable;
            }
        };
        match answer {
            Event::Response {
                upgrade: false,
                response,
            } => {
                // The owner is done with the stream.
                guard.armed = false;
                crate::metrics::forwarded("answered");
                Forwarded::Answer(response)
            }
            Event::Response {
                upgrade: true,
                response,
            } => {
                crate::metrics::forwarded("upgraded");
                let stream = RelayStream::new(guard, rx, flow);
                Forwarded::Upgraded { response, stream }
            }
            _ => {
                crate::metrics::forwarded("unreachable");
                Forwarded::Unreachable
            }
        }
    }

    /// Ends the streams whose other end's node no longer listens (it died, or left the
    /// cluster): one probe per such node. Without it, a node would learn of it only when it
    /// next wrote to the stream (a parked poll's owner, at its next ping).
    pub(crate) async fn probe(&self) {
        let mut peers: Vec<NodeId> = lock(&self.opened).values().map(|i| i.peer).collect();
        peers.extend(lock(&self.served).values().map(|i| i.peer));
        peers.sort_unstable();
        peers.dedup();
        for peer in peers {
            if self.send(peer, encode_end(PROBE, 0, self.me)).await {
                continue;
            }
            tracing::debug!(node = %peer, "relay peer gone: its streams end");
            let mut ended: Vec<Inlet> = lock(&self.opened)
                .values()
                .filter(|i| i.peer == peer)
                .cloned()
                .collect();
            ended.extend(
                lock(&self.served)
                    .values()
                    .filter(|i| i.peer == peer)
                    .cloned(),
            );
            for inlet in ended {
                let _ = inlet.tx.unbounded_send(Event::End);
            }
        }
    }

    /// Hands one frame that arrived to its stream; a request starts being served.
    fn dispatch<M: Machine, R: Runtime>(
        self: &Arc<Self>,
        driver: &Driver<M, R>,
        envelope: Envelope,
    ) {
        let Envelope {
            kind,
            stream,
            from,
            frame,
        } = envelope;
        match frame {
            Frame::Request(request) => {
                let (inlet, rx) = inlet(from);
                let flow = inlet.flow.clone();
                lock(&self.served).insert((from, stream), inlet);
                let fwd = self.clone();
                let served = driver.clone();
                driver.spawn_until_halted(async move {
                    fwd.serve(&served, from, stream, request, rx, flow).await;
                });
            }
            Frame::Probe => {}
            frame => {
                let inlet = match kind {
                    RESPONSE | DOWN_DATA | DOWN_END | DOWN_CREDIT => {
                        lock(&self.opened).get(&stream).cloned()
                    }
                    _ => lock(&self.served).get(&(from, stream)).cloned(),
                };
                let Some(inlet) = inlet else {
                    // A stream that ended here already.
                    return;
                };
                let event = match frame {
                    Frame::Response { upgrade, response } => Event::Response { upgrade, response },
                    Frame::Credit(read) => {
                        inlet.flow.acked.fetch_max(read, Ordering::AcqRel);
                        inlet.flow.writer.wake();
                        return;
                    }
                    Frame::Data(bytes) => {
                        let queued = inlet.flow.queued.fetch_add(bytes.len(), Ordering::AcqRel);
                        if queued + bytes.len() > self.window {
                            tracing::warn!(
                                node = %from,
                                window = self.window,
                                "relayed stream dropped: its peer sent beyond its window"
                            );
                            Event::Overflow
                        } else {
                            Event::Data(bytes)
                        }
                    }
                    _ => Event::End,
                };
                let _ = inlet.tx.unbounded_send(event);
            }
        }
    }

    /// Serves a request another node forwarded, and sends the answer back; a `101` goes on
    /// as a byte pipe.
    async fn serve<M: Machine, R: Runtime>(
        self: Arc<Self>,
        driver: &Driver<M, R>,
        from: NodeId,
        stream: u64,
        request: Request,
        mut rx: mpsc::UnboundedReceiver<Event>,
        flow: Arc<Flow>,
    ) {
        let guard = StreamGuard {
            fwd: self.clone(),
            to: from,
            stream,
            end: DOWN_END,
            requester: false,
            armed: false,
        };
        let serve = driver.serve_forwarded(request.head, request.body, request.peer);
        // The requester's client may go while a poll is parked: its end drops the exchange,
        // which reports the connection closed, as for a client of this node.
        let served = match select(std::pin::pin!(serve), rx.next()).await {
            Either::Left((served, _)) => served,
            Either::Right(_) => return,
        };
        crate::metrics::forwarded("served");
        let upgrade = served.upgrade;
        let frame = encode_response(stream, self.me, &served.response, upgrade.is_some());
        if !self.send(from, frame).await {
            return;
        }
        if let Some(upgrade) = upgrade {
            upgrade.run(RelayStream::new(guard, rx, flow)).await;
        }
    }
}

/// Forgets a stream when its user goes, and tells the other side when asked to.
struct StreamGuard {
    fwd: Arc<Forwarder>,
    to: NodeId,
    stream: u64,
    end: u8,
    requester: bool,
    armed: bool,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if self.requester {
            lock(&self.fwd.opened).remove(&self.stream);
        } else {
            lock(&self.fwd.served).remove(&(self.to, self.stream));
        }
        if self.armed {
            let end = encode_end(self.end, self.stream, self.fwd.me);
            // Sent even though the future is dropped (the relay's contract).
            drop(self.fwd.send(self.to, end));
        }
    }
}

/// Runs the frames the relay delivers to this node until the driver halts.
pub(crate) async fn run_inbox<M: Machine, R: Runtime>(
    fwd: Arc<Forwarder>,
    driver: Driver<M, R>,
    mut frames: mpsc::UnboundedReceiver<Bytes>,
) {
    while let Some(frame) = frames.next().await {
        match decode(frame) {
            Ok(envelope) => fwd.dispatch(&driver, envelope),
            Err(e) => tracing::warn!(error = %e, "relay frame dropped"),
        }
    }
}

/// One side of a relayed byte stream: reads what the other side sent, writes frames to it.
/// Closing (or dropping) it tells the other side the stream ended.
pub(crate) struct RelayStream {
    guard: StreamGuard,
    data: u8,
    credit: u8,
    rx: mpsc::UnboundedReceiver<Event>,
    flow: Arc<Flow>,
    /// Bytes of data sent so far.
    sent: u64,
    /// Bytes of the other side's data read so far, and the last count reported to it.
    read: u64,
    credited: u64,
    unread: Bytes,
    eof: bool,
    sends: FuturesUnordered<BoxFuture<'static, bool>>,
}

impl fmt::Debug for RelayStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RelayStream")
            .field("to", &self.guard.to)
            .field("stream", &self.guard.stream)
            .finish_non_exhaustive()
    }
}

impl RelayStream {
    /// The byte pipe of the exchange `guard` keeps: it ends the stream when it goes.
    fn new(mut guard: StreamGuard, rx: mpsc::UnboundedReceiver<Event>, flow: Arc<Flow>) -> Self {
        let (data, end, credit) = match guard.requester {
            true => (UP_DATA, UP_END, UP_CREDIT),
            false => (DOWN_DATA, DOWN_END, DOWN_CREDIT),
        };
        guard.end = end;
        guard.armed = true;
        RelayStream {
            guard,
            data,
            credit,
            rx,
            flow,
            sent: 0,
            read: 0,
            credited: 0,
            unread: Bytes::new(),
            eof: false,
            sends: FuturesUnordered::new(),
        }
    }

    /// Completes the sends that are done; an undelivered one means the other side is gone.
    fn poll_sends(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while let Poll::Ready(Some(delivered)) = self.sends.poll_next_unpin(cx) {
            if !delivered {
                self.guard.armed = false;
                return Err(io::ErrorKind::BrokenPipe.into());
            }
        }
        Ok(())
    }
}

impl AsyncRead for RelayStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        while this.unread.is_empty() {
            if this.eof {
                return Poll::Ready(Ok(0));
            }
            match this.rx.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Event::Data(bytes))) => {
                    this.flow.queued.fetch_sub(bytes.len(), Ordering::AcqRel);
                    this.unread = bytes;
                }
                Poll::Ready(Some(Event::Overflow)) => {
                    this.eof = true;
                    return Poll::Ready(Err(io::Error::other("relayed stream over its window")));
                }
                Poll::Ready(Some(Event::End) | None) => {
                    // The other side ended: nothing to tell it.
                    this.guard.armed = false;
                    this.eof = true;
                }
                Poll::Ready(Some(Event::Response { .. })) => {}
            }
        }
        let n = buf.len().min(this.unread.len());
        buf[..n].copy_from_slice(&this.unread[..n]);
        this.unread.advance(n);
        this.read += n as u64;
        let g = &this.guard;
        if this.read - this.credited >= (g.fwd.window / 4) as u64 {
            this.credited = this.read;
            // Sent even though the future is dropped (the relay's contract).
            drop(g.fwd.send(
                g.to,
                encode_credit(this.credit, g.stream, g.fwd.me, this.read),
            ));
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for RelayStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.poll_sends(cx)?;
        if this.sends.len() >= SENDS_IN_FLIGHT {
            return Poll::Pending;
        }
        // At most a window unread on the other side.
        let window = this.guard.fwd.window as u64;
        let mut room = window.saturating_sub(this.sent - this.flow.acked.load(Ordering::Acquire));
        if room == 0 {
            this.flow.writer.register(cx.waker());
            room = window.saturating_sub(this.sent - this.flow.acked.load(Ordering::Acquire));
            if room == 0 {
                return Poll::Pending;
            }
        }
        let n = buf.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        let g = &this.guard;
        let frame = encode_data(this.data, g.stream, g.fwd.me, &buf[..n]);
        this.sends.push(g.fwd.send(g.to, frame));
        this.sent += n as u64;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.poll_sends(cx)?;
        if this.sends.is_empty() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.guard.armed {
            this.guard.armed = false;
            let g = &this.guard;
            this.sends
                .push(g.fwd.send(g.to, encode_end(g.end, g.stream, g.fwd.me)));
        }
        match this.poll_sends(cx) {
            Ok(()) if this.sends.is_empty() => Poll::Ready(Ok(())),
            Ok(()) => Poll::Pending,
            // The other side is gone: closed all the same.
            Err(_) => Poll::Ready(Ok(())),
        }
    }
}

/// Waits for either stream to end, copying both ways; the first to end ends the pipe.
pub(crate) async fn pipe<S>(client: S, leftover: Bytes, relay: RelayStream)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    use futures::io::AsyncReadExt;
    use futures::io::AsyncWriteExt;
    let (mut client_r, mut client_w) = client.split();
    let (mut relay_r, mut relay_w) = relay.split();
    let up = async {
        if !leftover.is_empty() && relay_w.write_all(&leftover).await.is_err() {
            return;
        }
        let _ = futures::io::copy(&mut client_r, &mut relay_w).await;
        let _ = relay_w.close().await;
    };
    let down = async {
        let _ = futures::io::copy(&mut relay_r, &mut client_w).await;
        let _ = client_w.close().await;
    };
    let _ = select(std::pin::pin!(up.fuse()), std::pin::pin!(down.fuse())).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    #[test]
    fn a_request_survives_the_frame_format() {
        let head = RequestHead::from_parts(
            "POST",
            "/socket.io/?EIO=4&transport=polling&sid=abc.def",
            vec![
                ("Host".into(), b"example".to_vec()),
                ("X-Bytes".into(), vec![b'a', 0x80, 0xff]),
            ],
        )
        .unwrap();
        let request = Request {
            head,
            peer: Some("127.0.0.9:4000".parse().unwrap()),
            body: Some(Body::Complete(Bytes::from_static(b"4hello\x1e4world"))),
        };
        let frame = encode_request(7, node("nodeA"), &request);
        let envelope = decode(frame).unwrap();
        assert_eq!((envelope.kind, envelope.stream), (REQUEST, 7));
        assert_eq!(envelope.from, node("nodeA"));
        let Frame::Request(got) = envelope.frame else {
            panic!("not a request");
        };
        assert_eq!(got.head.method_str(), "POST");
        assert_eq!(got.head.target(), request.head.target());
        let fields: Vec<_> = got
            .head
            .headers()
            .map(|(n, v)| (n.to_owned(), v.to_vec()))
            .collect();
        assert_eq!(
            fields,
            vec![
                ("Host".to_owned(), b"example".to_vec()),
                ("X-Bytes".to_owned(), vec![b'a', 0x80, 0xff]),
            ]
        );
        assert_eq!(got.peer, request.peer);
        assert_eq!(got.body, request.body);
    }

    #[test]
    fn every_cut_of_a_frame_is_refused_without_a_panic() {
        let head = RequestHead::from_parts("GET", "/socket.io/?sid=a.b", vec![]).unwrap();
        let request = Request {
            head,
            peer: None,
            body: None,
        };
        let frame = encode_request(1, node("n"), &request);
        for cut in 0..frame.len() {
            assert!(decode(frame.slice(..cut)).is_err(), "cut at {cut}");
        }
        assert!(decode(Bytes::from_static(&[42, 0, 0, 0, 0, 0, 0, 0, 1, 1, b'n'])).is_err());
    }

    #[test]
    fn arbitrary_bytes_decode_to_a_frame_or_an_error() {
        // A frame of each kind, then every single-byte change of each, then noise.
        let head = RequestHead::from_parts("POST", "/socket.io/?sid=a.b", vec![]).unwrap();
        let request = Request {
            head,
            peer: None,
            body: Some(Body::Complete(Bytes::from_static(b"4x"))),
        };
        let frames = [
            encode_request(1, node("n"), &request),
            encode_response(
                2,
                node("n"),
                &Response::new(200).header("Vary", "Origin"),
                false,
            ),
            encode_data(UP_DATA, 3, node("n"), b"abc"),
            encode_end(DOWN_END, 4, node("n")),
        ];
        for frame in &frames {
            assert!(decode(frame.clone()).is_ok());
            for at in 0..frame.len() {
                for value in [0u8, 1, 0x7f, 0x80, 0xff] {
                    let mut changed = frame.to_vec();
                    changed[at] = value;
                    let _ = decode(Bytes::from(changed));
                }
            }
        }
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2_000 {
            let len = (x % 64) as usize;
            let noise: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode(Bytes::from(noise));
        }
    }

    #[test]
    fn answers_keep_their_fields_and_flags() {
        let response = Response::new(200)
            .header("Content-Type", "text/plain; charset=UTF-8")
            .header("Vary", "Origin")
            .body("ok")
            .closing();
        let upgraded = Response::new(101).header("Upgrade", "websocket");
        for (sent, upgrade) in [(response, false), (upgraded, true)] {
            let envelope = decode(encode_response(3, node("b"), &sent, upgrade)).unwrap();
            let Frame::Response {
                upgrade: got_upgrade,
                response: got,
            } = envelope.frame
            else {
                panic!("not a response");
            };
            assert_eq!(got_upgrade, upgrade);
            assert_eq!(got, sent);
        }
    }

    #[test]
    fn names_beyond_the_bound_are_dropped_not_kept() {
        for i in 0..MAX_EXTRA_NAMES + 10 {
            let _ = static_name(&format!("X-Name-{i}"));
        }
        assert_eq!(static_name("content-type"), Some("Content-Type"));
        assert_eq!(static_name("X-Name-0"), Some("X-Name-0"));
        assert_eq!(static_name("X-Never-Seen-Before"), None);
    }

    #[test]
    fn session_ids_name_their_node() {
        struct Fixed;
        impl IdGenerator for Fixed {
            fn generate(&mut self, _: &RequestHead) -> Sid {
                Sid::new("0123456789abcdefghijklmnopqrstuvwxyz").unwrap()
            }
        }
        let head = RequestHead::from_parts("GET", "/", vec![]).unwrap();
        let mut ids = Tagged {
            node: node("N0de-id_16chars0"),
            inner: Box::new(Fixed),
        };
        let sid = ids.generate(&head);
        assert_eq!(sid.as_str().len(), SID_MAX_LEN);
        assert!(sid.as_str().starts_with("N0de-id_16chars0.0123"));
        assert_eq!(owner_of(sid.as_str()), Some(node("N0de-id_16chars0")));
        assert_eq!(owner_of("plainsid"), None);
        assert_eq!(owner_of("trailing."), None);
        assert_eq!(owner_of(".x"), None);
    }
}
