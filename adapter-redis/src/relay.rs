//! [`RedisRelay`]: the [`Relay`] of both adapters ([`RedisOptions::forward_sessions`]),
//! which carries the frames of requests forwarded to the node owning their session over
//! classic Redis Pub/Sub.
//!
//! Each node subscribes `<key>-relay#<node>#` (`key` is [`RedisOptions::key`]) and a frame
//! for node `n` is `PUBLISH <key>-relay#<n>#` of its raw bytes: `PUBLISH` answers how many
//! connections received it, so "no node took it" costs no extra round trip. The channel is
//! outside the patterns of the adapters (`<key>#*`, `<key>-request#*`,
//! `<key>-response#*`), so neither Volley nor Node servers see relayed frames as adapter
//! messages. On a Redis Cluster, classic Pub/Sub reaches subscribers on every node, so the
//! relay subscribes and publishes on one node each, as the classic adapter does.

use crate::conn::{Conn, Link, SubscriberHooks, SubscriberLog, Writer, WriterLog};
use crate::{PubSub, RedisOptions, Target};
use bytes::Bytes;
use futures::channel::{mpsc, oneshot};
use futures::future::{BoxFuture, select};
use futures::{FutureExt, StreamExt};
use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use volley::adapter::{Relay, RelayInbox};
use volley::runtime::Runtime;
use volley_core::NodeId;

/// Most frames one pipeline of `PUBLISH` commands carries: 256.
const PIPELINE_FRAMES: usize = 256;

/// Most payload bytes one pipeline carries (a larger frame goes alone): 1 MiB.
const PIPELINE_BYTES: usize = 1024 * 1024;

/// Where a started relay hands the frames sent to its node; false once the receiver has
/// stopped.
type Deliver = Arc<dyn Fn(Bytes) -> bool + Send + Sync>;

/// A frame waiting for the publisher: its channel, its bytes, and who waits for the reply.
struct Frame {
    channel: String,
    payload: Bytes,
    reply: oneshot::Sender<bool>,
}

#[derive(Default)]
struct State {
    /// Set by [`RedisRelay::stop`] (or when the receiver stopped): nothing is sent or
    /// delivered until the next start.
    stopped: bool,
    /// Bumped by every stop, so that a publisher of an earlier run sends nothing more.
    run: u64,
    /// The publisher's queue, once it runs.
    queue: Option<mpsc::UnboundedSender<Frame>>,
    /// The subscriber of the current start: dropping it ends that task.
    subscriber: Option<oneshot::Sender<()>>,
    /// How many times the relay was started: the subscriber of an earlier start no longer
    /// says whether the channel is subscribed.
    starts: u64,
    /// Whether the subscription of the current start is in place.
    subscribed: bool,
    /// Who waits in [`RedisRelay::subscribed`].
    waiting: Vec<oneshot::Sender<()>>,
}

/// The [`Relay`] of [`RedisAdapter`](crate::RedisAdapter) and
/// [`StreamsAdapter`](crate::streams::StreamsAdapter) when
/// [`RedisOptions::forward_sessions`] is on: frames for another node are `PUBLISH`ed on
/// that node's channel (`<key>-relay#<node>#`), and each started node subscribes its own.
///
/// Two tasks run on the adapter's [`Runtime`]: the subscriber (one Pub/Sub connection of
/// its own, reconnecting with the adapter's [backoff](RedisOptions::backoff)) and the
/// publisher, which takes frames from one unbounded queue, filled at the time of each
/// [`Relay::send`] call, and sends them in that order, pipelined (at most 256 frames or
/// 1 MiB at once) on one connection. So frames to a node arrive in the order they were
/// sent, and a frame is sent even if the future `send` returned is dropped. A `send`
/// resolves to false when no node subscribes the channel, when Redis cannot be reached
/// (logged once per outage at `warn`) or answers something unexpected (logged at `warn` the
/// first time, then at `debug`), and after [`RedisRelay::stop`].
///
/// On a Redis Cluster the relay subscribes and publishes on one node each (classic Pub/Sub
/// reaches subscribers on every node), but `PUBLISH` there counts only the receivers on
/// the node that took it; when that is none, the relay asks every node (`PUBSUB NUMSUB`,
/// once per channel and pipeline) before it says the frame was not received.
pub struct RedisRelay {
    /// This relay, for its tasks (a relay only exists in an `Arc`).
    me: Weak<RedisRelay>,
    link: Link,
    state: Mutex<State>,
    /// Whether an unexpected reply was logged at `warn` already.
    odd_reply_logged: AtomicBool,
    /// Whether Redis is a Redis Cluster (see [`RedisRelay::recount`]).
    cluster: bool,
}

impl fmt::Debug for RedisRelay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock();
        f.debug_struct("RedisRelay")
            .field("key", &self.link.options.key)
            .field("stopped", &state.stopped)
            .field("subscribed", &state.subscribed)
            .finish()
    }
}

impl RedisRelay {
    /// A relay reaching Redis as `options` say (classic Pub/Sub whatever their
    /// [`RedisOptions::pub_sub`]); its tasks run on `runtime`. Nothing connects before it is
    /// started or sends.
    pub(crate) fn new<R: Runtime>(options: &RedisOptions, runtime: R) -> Arc<Self> {
        let mut options = options.clone();
        options.pub_sub = PubSub::Classic;
        let cluster = matches!(options.target, Target::Cluster { .. });
        // The relay counts no servers; the link wants a query all the same.
        let count_query = ("NUMSUB", String::new());
        Arc::new_cyclic(|me| RedisRelay {
            me: me.clone(),
            link: Link::new(options, runtime, count_query),
            state: Mutex::new(State::default()),
            odd_reply_logged: AtomicBool::new(false),
            cluster,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The channel frames for `node` are published on: `<key>-relay#<node>#`.
    pub fn channel(&self, node: NodeId) -> String {
        format!("{}-relay#{node}#", self.link.options.key)
    }

    /// What [`Relay::start`] does, with each frame handed to `deliver` instead of a
    /// server's inbox: subscribes the channel of `node` (on a task of the adapter's
    /// runtime) and calls `deliver` with each frame, in arrival order. When `deliver`
    /// returns false (its receiver stopped), the relay stops. Starting again replaces the
    /// earlier subscription.
    pub fn start_with(
        &self,
        node: NodeId,
        deliver: impl Fn(Bytes) -> bool + Send + Sync + 'static,
    ) {
        let (stop_tx, stop_rx) = oneshot::channel();
        let start = {
            let mut state = self.lock();
            state.stopped = false;
            state.subscribed = false;
            state.starts += 1;
            // Dropping the earlier sender ends the earlier subscriber.
            state.subscriber = Some(stop_tx);
            state.starts
        };
        let Some(relay) = self.me.upgrade() else {
            return;
        };
        let deliver: Deliver = Arc::new(deliver);
        (self.link.spawn)(
            async move {
                let channel = relay.channel(node);
                let exact: HashSet<String> = [channel].into_iter().collect();
                let log = SubscriberLog {
                    cannot: "redis relay: cannot subscribe, retrying",
                    again: "redis relay: subscribed again",
                    lost: "redis relay: subscription connection lost, reconnecting",
                };
                let hooks = RelayHooks {
                    relay: &relay,
                    start,
                    deliver,
                };
                let run = relay.link.subscriber(&[], &exact, None, &log, hooks);
                // Ends with the subscription when the relay stops or starts again; dropping
                // the connection leaves the channel.
                let _ = select(Box::pin(run), stop_rx).await;
                relay.set_subscribed(start, false);
            }
            .boxed(),
        );
    }

    /// Completes once the channel of the node this relay was started for is subscribed
    /// (at once if it is): from then on frames sent to that node reach it.
    pub async fn subscribed(&self) {
        let rx = {
            let mut state = self.lock();
            if state.subscribed {
                return;
            }
            let (tx, rx) = oneshot::channel();
            state.waiting.push(tx);
            rx
        };
        let _ = rx.await;
    }

    /// Stops the relay's tasks: the subscription ends (so frames sent to this node are no
    /// longer received) and frames not yet published are not sent (their `send` resolves
    /// to false). The adapter's [`close`](volley::adapter::Adapter::close) calls it.
    pub fn stop(&self) {
        let mut state = self.lock();
        state.stopped = true;
        state.run += 1;
        state.queue = None;
        state.subscriber = None;
    }

    /// Records whether the subscription of start number `start` is in place.
    fn set_subscribed(&self, start: u64, on: bool) {
        let waiting = {
            let mut state = self.lock();
            if state.starts != start {
                return;
            }
            state.subscribed = on && !state.stopped;
            if state.subscribed {
                std::mem::take(&mut state.waiting)
            } else {
                Vec::new()
            }
        };
        for w in waiting {
            let _ = w.send(());
        }
    }

    /// Queues `frame` for `channel`, starting the publisher first if it does not run;
    /// `None` when the relay is stopped.
    fn enqueue(&self, channel: String, payload: Bytes) -> Option<oneshot::Receiver<bool>> {
        let (reply, rx) = oneshot::channel();
        let frame = Frame {
            channel,
            payload,
            reply,
        };
        let mut state = self.lock();
        if state.stopped {
            return None;
        }
        let queue = match &state.queue {
            Some(q) => q.clone(),
            None => {
                let relay = self.me.upgrade()?;
                let (tx, queue_rx) = mpsc::unbounded();
                state.queue = Some(tx.clone());
                (self.link.spawn)(relay.publisher(state.run, queue_rx).boxed());
                tx
            }
        };
        queue.unbounded_send(frame).ok()?;
        Some(rx)
    }

    /// Publishes the queued frames in order, a pipeline at a time, until the relay stops
    /// (`run` is no longer the current run) or the queue closes.
    async fn publisher(self: Arc<Self>, run: u64, mut rx: mpsc::UnboundedReceiver<Frame>) {
        let mut writer = Writer::new(
            &self.link,
            WriterLog {
                unreachable: "redis relay: cannot forward, Redis unreachable",
                failed: "redis relay: forwarding failed, Redis unreachable",
                again: "redis relay: forwarding again",
            },
        );
        let mut batch: Vec<Frame> = Vec::new();
        let mut next = None;
        // On a Redis Cluster: the connection that counts subscribers on every node.
        let mut counter: Option<Conn> = None;
        loop {
            let first = match next.take() {
                Some(f) => f,
                None => match rx.next().await {
                    Some(f) => f,
                    None => return,
                },
            };
            let mut bytes = first.payload.len();
            batch.push(first);
            while batch.len() < PIPELINE_FRAMES {
                let Ok(f) = rx.try_recv() else {
                    break;
                };
                if bytes + f.payload.len() > PIPELINE_BYTES {
                    next = Some(f);
                    break;
                }
                bytes += f.payload.len();
                batch.push(f);
            }
            if self.lock().run != run {
                // Stopped: what is left is not sent (dropping the replies answers false).
                return;
            }
            let Some(conn) = writer.conn(&self.link).await else {
                // Redis is away (logged by the writer): not delivered.
                for f in batch.drain(..) {
                    let _ = f.reply.send(false);
                }
                continue;
            };
            let mut pipe = redis::pipe();
            for f in &batch {
                pipe.cmd("PUBLISH").arg(&f.channel).arg(f.payload.as_ref());
            }
            let sent = {
                use redis::aio::ConnectionLike;
                conn.req_packed_commands(&pipe, 0, batch.len()).await
            };
            match sent {
                Ok(replies) => {
                    writer.done(Ok::<(), redis::RedisError>(()));
                    let mut replies = replies.into_iter();
                    let mut delivered: Vec<bool> = Vec::with_capacity(batch.len());
                    for _ in &batch {
                        delivered.push(self.receivers(replies.next()));
                    }
                    if self.cluster {
                        self.recount(&mut counter, &batch, &mut delivered).await;
                    }
                    for (f, delivered) in batch.drain(..).zip(delivered) {
                        let _ = f.reply.send(delivered);
                    }
                }
                Err(e) => {
                    writer.done(Err(e));
                    for f in batch.drain(..) {
                        let _ = f.reply.send(false);
                    }
                }
            }
        }
    }

    /// On a Redis Cluster, `PUBLISH` counts only the receivers connected to the node that
    /// took it, though every node passes it on: for each channel whose frames that node
    /// did not deliver itself, asks every node whether someone subscribes it
    /// (`PUBSUB NUMSUB`, one round trip to each node per channel and pipeline).
    async fn recount(&self, counter: &mut Option<Conn>, batch: &[Frame], delivered: &mut [bool]) {
        let mut asked: Vec<(&str, bool)> = Vec::new();
        for (f, delivered) in batch.iter().zip(delivered.iter_mut()) {
            if *delivered {
                continue;
            }
            if let Some((_, found)) = asked.iter().find(|(c, _)| *c == f.channel) {
                *delivered = *found;
                continue;
            }
            if counter.is_none() {
                *counter = self.link.connect(None).await.ok();
            }
            let found = match counter.as_mut() {
                Some(c) => match self.link.subscribers(c, "NUMSUB", &f.channel).await {
                    Ok(n) => n > 0,
                    Err(e) => {
                        tracing::debug!(error = %e, "redis relay: cannot count subscribers");
                        *counter = None;
                        false
                    }
                },
                None => false,
            };
            asked.push((&f.channel, found));
            *delivered = found;
        }
    }

    /// Whether a `PUBLISH` reply says some connection received the frame; anything but an
    /// integer is logged (once at `warn`, then at `debug`) and counts as not delivered.
    fn receivers(&self, reply: Option<redis::Value>) -> bool {
        match reply {
            Some(redis::Value::Int(n)) => n > 0,
            other => {
                if self.odd_reply_logged.swap(true, Ordering::Relaxed) {
                    tracing::debug!(reply = ?other, "redis relay: unexpected PUBLISH reply");
                } else {
                    tracing::warn!(reply = ?other, "redis relay: unexpected PUBLISH reply");
                }
                false
            }
        }
    }
}

impl Relay for RedisRelay {
    fn start(&self, node: NodeId, inbox: RelayInbox) {
        self.start_with(node, move |frame| inbox.deliver(frame));
    }

    fn send(&self, to: NodeId, frame: Bytes) -> BoxFuture<'static, bool> {
        let channel = self.channel(to);
        match self.enqueue(channel, frame) {
            Some(rx) => Box::pin(rx.map(|r| r.unwrap_or(false))),
            None => Box::pin(futures::future::ready(false)),
        }
    }
}

/// The relay subscriber's view of the relay.
struct RelayHooks<'a> {
    relay: &'a RedisRelay,
    /// Which start of the relay this subscriber serves.
    start: u64,
    deliver: Deliver,
}

impl SubscriberHooks for RelayHooks<'_> {
    fn stopped(&self) -> bool {
        self.relay.lock().stopped
    }

    fn set_subscribed(&self, on: bool) {
        self.relay.set_subscribed(self.start, on);
    }

    fn on_message(&self, _channel: &str, payload: &[u8]) {
        if !(self.deliver)(Bytes::copy_from_slice(payload)) {
            // The receiving server stopped.
            self.relay.stop();
        }
    }

    fn counts_servers(&self) -> bool {
        false
    }
}
