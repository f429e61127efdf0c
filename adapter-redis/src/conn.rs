//! What the tasks of [`RedisAdapter`](crate::RedisAdapter) and
//! [`StreamsAdapter`](crate::streams::StreamsAdapter) share: connecting within the connect
//! timeout, reconnecting with backoff while logging each outage once, the cached server
//! count, the Pub/Sub subscriber, and the namespace of the requests received (for their
//! answers, which carry none). The wire formats stay in the codecs.

use crate::{PubSub, RedisOptions, Target};
use futures::channel::mpsc;
use futures::future::{BoxFuture, Either, select};
use futures::{FutureExt, StreamExt};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use volley::runtime::Runtime;
use volley_core::cluster::ClusterMessage;
use volley_core::{NodeId, RequestId};

pub(crate) type Spawn = std::sync::Arc<dyn Fn(BoxFuture<'static, ()>) + Send + Sync>;
pub(crate) type Sleep = std::sync::Arc<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>;

/// How long the namespace of a received request is remembered for its answers.
const REQUEST_MEMORY: Duration = Duration::from_secs(300);

/// How many remembered requests make a sweep of the expired ones worth it.
const REQUEST_SWEEP: usize = 4096;

/// An adapter's way to Redis: the options, the runtime's spawn and sleep, and the cached
/// server count.
pub(crate) struct Link {
    pub(crate) options: RedisOptions,
    pub(crate) spawn: Spawn,
    pub(crate) sleep: Sleep,
    count: AtomicUsize,
    /// The `PUBSUB` subcommand and the channel whose subscribers are the servers.
    count_query: (&'static str, String),
    /// The channel only Volley nodes subscribe, in the formats whose `all_rooms` request
    /// Node servers lack (see [`Link::foreign_count`]); counted with the same subcommand.
    presence: Option<String>,
    /// How many subscribe [`Link::presence`] (Volley nodes, this one included).
    volley: AtomicUsize,
}

impl Link {
    /// A link for `options` whose tasks run on `runtime`; the servers are counted with
    /// `PUBSUB <count_query.0> <count_query.1>`.
    pub(crate) fn new<R: Runtime>(
        options: RedisOptions,
        runtime: R,
        count_query: (&'static str, String),
    ) -> Self {
        let spawner = runtime.clone();
        Link {
            options,
            spawn: std::sync::Arc::new(move |f| spawner.spawn(f)),
            sleep: std::sync::Arc::new(move |d| runtime.sleep(d).boxed()),
            count: AtomicUsize::new(1),
            count_query,
            presence: None,
            volley: AtomicUsize::new(1),
        }
    }

    /// Counts the subscribers of `channel` too: the Volley nodes (see
    /// [`Link::foreign_count`]).
    pub(crate) fn with_presence(mut self, channel: String) -> Self {
        self.presence = Some(channel);
        self
    }

    /// The presence channel, if any.
    pub(crate) fn presence(&self) -> Option<&str> {
        self.presence.as_deref()
    }

    /// How many of the counted servers are not Volley nodes (Node servers), as last
    /// counted: 0 without a presence channel.
    pub(crate) fn foreign_count(&self) -> usize {
        if self.presence.is_none() {
            return 0;
        }
        self.server_count()
            .saturating_sub(self.volley.load(Ordering::SeqCst).max(1))
    }

    /// The cached server count (1 at least: this node).
    pub(crate) fn server_count(&self) -> usize {
        self.count.load(Ordering::SeqCst).max(1)
    }

    /// Forgets the other servers: requests do not wait for nodes that cannot answer.
    pub(crate) fn count_alone(&self) {
        self.count.store(1, Ordering::SeqCst);
        self.volley.store(1, Ordering::SeqCst);
    }

    /// `fut`, or a timeout error after the connect timeout.
    pub(crate) async fn timed<T>(
        &self,
        fut: impl Future<Output = redis::RedisResult<T>> + Send,
    ) -> redis::RedisResult<T> {
        self.timed_for(self.options.connect_timeout, fut).await
    }

    /// `fut`, or a timeout error after `limit`.
    pub(crate) async fn timed_for<T>(
        &self,
        limit: Duration,
        fut: impl Future<Output = redis::RedisResult<T>> + Send,
    ) -> redis::RedisResult<T> {
        let timeout = (self.sleep)(limit);
        match select(Box::pin(fut), timeout).await {
            Either::Left((r, _)) => r,
            Either::Right(_) => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting to Redis timed out",
            ))),
        }
    }

    /// A new connection; replies may take `response` (the connect timeout when `None`).
    pub(crate) async fn connect(&self, response: Option<Duration>) -> redis::RedisResult<Conn> {
        if let Target::Cluster { .. } = self.options.target {
            return self
                .timed(async {
                    let client = self.options.cluster_client(response, None)?;
                    Ok(Conn::Cluster(client.get_async_connection().await?))
                })
                .await;
        }
        self.connect_one(response).await
    }

    /// A new connection for publishing. Classic Pub/Sub on a Redis Cluster publishes on one
    /// node (the next of the target's nodes at each reconnection): any node takes a
    /// `PUBLISH` and forwards it to the others, but messages published on different nodes
    /// may overtake each other on the way, and the cluster client sends a command whose
    /// node is gone to a random one.
    pub(crate) async fn connect_for_publishing(&self) -> redis::RedisResult<Conn> {
        if let (Target::Cluster { .. }, PubSub::Classic) =
            (&self.options.target, self.options.pub_sub)
        {
            return self.connect_one(None).await;
        }
        self.connect(None).await
    }

    /// A connection to the one server [`RedisOptions::client`] names.
    async fn connect_one(&self, response: Option<Duration>) -> redis::RedisResult<Conn> {
        let limit = self.options.connect_timeout;
        self.timed(async {
            let client = self.options.client().await?;
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(limit))
                .set_response_timeout(Some(response.unwrap_or(limit)));
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map(Conn::Single)
        })
        .await
    }

    fn next_backoff(&self, current: Duration) -> Duration {
        (current * 2).min(self.options.backoff.1)
    }

    /// Asks Redis for the server count (and the Volley nodes' count, with a presence
    /// channel) and caches it.
    pub(crate) async fn query_count(&self, conn: &mut Conn) -> redis::RedisResult<usize> {
        let (subcommand, channel) = &self.count_query;
        let n = self.subscribers(conn, subcommand, channel).await?.max(1);
        if let Some(presence) = &self.presence {
            let v = self.subscribers(conn, subcommand, presence).await?.max(1);
            self.volley.store(v, Ordering::SeqCst);
        }
        self.count.store(n, Ordering::SeqCst);
        Ok(n)
    }

    /// `PUBSUB <subcommand> <channel>`: how many subscribe `channel`.
    pub(crate) async fn subscribers(
        &self,
        conn: &mut Conn,
        subcommand: &str,
        channel: &str,
    ) -> redis::RedisResult<usize> {
        let mut cmd = redis::cmd("PUBSUB");
        cmd.arg(subcommand).arg(channel);
        let reply = match conn {
            // Classic Pub/Sub on a Redis Cluster: each node counts its own subscribers, so
            // every node is asked and the counts are added up.
            Conn::Cluster(c) if subcommand == "NUMSUB" => {
                let routing = redis::cluster_routing::RoutingInfo::MultiNode((
                    redis::cluster_routing::MultipleNodeRoutingInfo::AllNodes,
                    None,
                ));
                let per_node = c.route_command(cmd, routing).await?;
                let redis::Value::Map(per_node) = per_node else {
                    return Err(redis::RedisError::from((
                        redis::ErrorKind::UnexpectedReturnType,
                        "PUBSUB NUMSUB on every node: no map of answers",
                    )));
                };
                let mut total = 0;
                for (_, answer) in per_node {
                    let counts: Vec<(String, usize)> = redis::from_redis_value(answer)?;
                    total += counts.first().map_or(0, |(_, n)| *n);
                }
                return Ok(total);
            }
            // Asked of the master that owns the channel's slot (the client would ask every
            // node and add up their answers).
            Conn::Cluster(c) => {
                let route = redis::cluster_routing::Route::new(
                    key_slot(channel.as_bytes()),
                    redis::cluster_routing::SlotAddr::Master,
                );
                let routing = redis::cluster_routing::RoutingInfo::SingleNode(
                    redis::cluster_routing::SingleNodeRoutingInfo::SpecificNode(route),
                );
                c.route_command(cmd, routing).await?
            }
            Conn::Single(_) => cmd.query_async::<redis::Value>(conn).await?,
        };
        let (_, n): (String, usize) = redis::from_redis_value::<Vec<(String, usize)>>(reply)?
            .into_iter()
            .next()
            .unwrap_or_default();
        Ok(n)
    }

    /// Counts the servers now on a connection of its own, if Redis answers (after a
    /// reconnection the cluster may have changed).
    pub(crate) async fn count_now(&self) {
        if let Ok(mut c) = self.connect(None).await {
            let _ = self.query_count(&mut c).await;
        }
    }

    /// The counter task: keeps the cached server count fresh until `stopped`; 1 while Redis
    /// is away.
    pub(crate) async fn counter(&self, stopped: impl Fn() -> bool) {
        let mut conn: Option<Conn> = None;
        while !stopped() {
            if conn.is_none() {
                conn = self.connect(None).await.ok();
            }
            if let Some(c) = conn.as_mut() {
                if self.query_count(c).await.is_err() {
                    conn = None;
                    self.count_alone();
                }
            } else {
                self.count_alone();
            }
            (self.sleep)(self.options.count_interval).await;
        }
    }

    /// The subscriber task of a Pub/Sub connection: subscribes `patterns` and `exact`,
    /// hands each message to `on_message` (once: a message matched by a pattern and an exact
    /// channel comes twice) and starts again when the connection drops, until `stopped`
    /// (looked at after each message, and every `poll` when given).
    ///
    /// It subscribes on a RESP3 connection, where Redis's refusal of a subscription (an ACL
    /// that lacks a pattern) is an error, logged and retried with the backoff; the redis
    /// client's RESP2 Pub/Sub connection drops such refusals unseen. A server without RESP3
    /// (before Redis 6) gets the RESP2 connection.
    pub(crate) async fn subscriber(
        &self,
        patterns: &[String],
        exact: &HashSet<String>,
        poll: Option<Duration>,
        log: &SubscriberLog,
        hooks: impl SubscriberHooks,
    ) {
        let mut retry = Reconnect::new(self);
        let mut resp3 = true;
        while !hooks.stopped() {
            let messages = if resp3 {
                self.timed(self.subscribe_resp3(patterns, exact)).await
            } else {
                self.timed(self.subscribe_resp2(patterns, exact)).await
            };
            let mut messages = match messages {
                Ok(m) => m,
                Err(e) => {
                    if resp3 && e.to_string().to_ascii_lowercase().contains("hello") {
                        // No RESP3 here (`HELLO` unknown): the RESP2 connection from now on.
                        resp3 = false;
                        continue;
                    }
                    retry.failed(self, &e, log.cannot).await;
                    continue;
                }
            };
            retry.connected(self, log.again);
            hooks.set_subscribed(true);
            if hooks.counts_servers() {
                self.count_now().await;
            }
            loop {
                let msg = match poll {
                    None => messages.next().await,
                    Some(d) => match select(messages.next(), (self.sleep)(d)).await {
                        Either::Left((msg, _)) => msg,
                        Either::Right(_) if hooks.stopped() => return,
                        Either::Right(_) => continue,
                    },
                };
                let Some((channel, payload, from_pattern)) = msg else {
                    break;
                };
                if from_pattern && exact.contains(&channel) {
                    // Delivered by the exact subscription as well.
                    continue;
                }
                hooks.on_message(&channel, &payload);
                if hooks.stopped() {
                    return;
                }
            }
            drop(messages);
            hooks.set_subscribed(false);
            if hooks.counts_servers() {
                self.count_alone();
            }
            retry.lost(log.lost, None);
        }
    }

    /// Subscribes on a RESP3 connection; its messages as (channel, payload, matched by a
    /// pattern), ending when the connection does or Redis takes a subscription away.
    async fn subscribe_resp3(
        &self,
        patterns: &[String],
        exact: &HashSet<String>,
    ) -> redis::RedisResult<Messages> {
        let client = self.options.client().await?;
        let info = client.get_connection_info().clone();
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        let (tx, pushes) = mpsc::unbounded::<redis::PushInfo>();
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.options.connect_timeout))
            .set_response_timeout(Some(self.options.connect_timeout))
            .set_push_sender(move |push| tx.unbounded_send(push));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        for pattern in patterns {
            redis::cmd("PSUBSCRIBE")
                .arg(pattern)
                .exec_async(&mut conn)
                .await?;
        }
        for channel in exact {
            redis::cmd("SUBSCRIBE")
                .arg(channel)
                .exec_async(&mut conn)
                .await?;
        }
        let bytes = |v: &redis::Value| match v {
            redis::Value::BulkString(b) => Some(b.clone()),
            _ => None,
        };
        let messages = pushes
            .map(move |push| {
                // The connection lives as long as its messages are read.
                let _ = &conn;
                push
            })
            .take_while(|push| {
                let go_on = !matches!(
                    push.kind,
                    redis::PushKind::Disconnection
                        | redis::PushKind::Unsubscribe
                        | redis::PushKind::PUnsubscribe
                );
                futures::future::ready(go_on)
            })
            .filter_map(move |push| {
                let msg = match (push.kind, push.data.as_slice()) {
                    (redis::PushKind::Message, [channel, payload]) => bytes(channel)
                        .zip(bytes(payload))
                        .map(|(c, p)| (String::from_utf8_lossy(&c).into_owned(), p, false)),
                    (redis::PushKind::PMessage, [_, channel, payload]) => bytes(channel)
                        .zip(bytes(payload))
                        .map(|(c, p)| (String::from_utf8_lossy(&c).into_owned(), p, true)),
                    _ => None,
                };
                futures::future::ready(msg)
            });
        Ok(Box::pin(messages))
    }

    /// Subscribes on the redis client's RESP2 Pub/Sub connection (a refused subscription
    /// goes unnoticed there).
    async fn subscribe_resp2(
        &self,
        patterns: &[String],
        exact: &HashSet<String>,
    ) -> redis::RedisResult<Messages> {
        let client = self.options.client().await?;
        let mut pubsub = client.get_async_pubsub().await?;
        for pattern in patterns {
            pubsub.psubscribe(pattern).await?;
        }
        for channel in exact {
            pubsub.subscribe(channel).await?;
        }
        let messages = pubsub.into_on_message().map(|msg| {
            (
                msg.get_channel_name().to_owned(),
                msg.get_payload_bytes().to_vec(),
                msg.from_pattern(),
            )
        });
        Ok(Box::pin(messages))
    }
}

/// The messages of a subscription connection: (channel, payload, matched by a pattern).
type Messages = futures::stream::BoxStream<'static, (String, Vec<u8>, bool)>;

/// What starting and stopping an adapter change: the node it runs for, the queue of its
/// writing task, and whether it was stopped.
pub(crate) struct Running<T> {
    /// The node, once started.
    pub(crate) node: Option<NodeId>,
    outbox: Option<mpsc::UnboundedSender<T>>,
    /// Set by [`Running::stop`], or when the node is gone; the tasks end when they see it.
    pub(crate) stopped: bool,
}

impl<T> Default for Running<T> {
    fn default() -> Self {
        Running {
            node: None,
            outbox: None,
            stopped: false,
        }
    }
}

impl<T> Running<T> {
    /// Starts for `node`; returns the writing task's end of a new queue.
    pub(crate) fn start(&mut self, node: NodeId) -> mpsc::UnboundedReceiver<T> {
        let (tx, rx) = mpsc::unbounded();
        self.node = Some(node);
        self.outbox = Some(tx);
        self.stopped = false;
        rx
    }

    /// Stops: nothing more is queued, and the tasks end at their next look.
    pub(crate) fn stop(&mut self) {
        self.stopped = true;
        self.outbox = None;
    }

    /// Queues `item` for the writing task (dropped when stopped or not started).
    pub(crate) fn send(&self, item: T) {
        if let Some(outbox) = &self.outbox {
            let _ = outbox.unbounded_send(item);
        }
    }
}

/// What a [subscriber](Link::subscriber) tells its adapter.
pub(crate) trait SubscriberHooks: Sync {
    /// Whether the adapter was stopped.
    fn stopped(&self) -> bool;
    /// The subscriptions are in place (`true`) or gone.
    fn set_subscribed(&self, on: bool);
    /// A message arrived on `channel`.
    fn on_message(&self, channel: &str, payload: &[u8]);
    /// Whether the subscriber refreshes the link's server count when it subscribes (and
    /// counts this node alone when the connection drops): yes, except for a subscription
    /// that says nothing about the servers (the relay's).
    fn counts_servers(&self) -> bool {
        true
    }
}

/// What a [subscriber](Link::subscriber) logs.
pub(crate) struct SubscriberLog {
    /// Subscribing failed (the first time in an outage).
    pub(crate) cannot: &'static str,
    /// Subscribed after an outage.
    pub(crate) again: &'static str,
    /// The connection was lost.
    pub(crate) lost: &'static str,
}

/// The reconnections of a task that holds one connection: the wait before the next attempt
/// (from the shortest backoff, doubling up to the longest) and whether the outage was
/// logged, so that each is logged once.
pub(crate) struct Reconnect {
    backoff: Duration,
    down: bool,
}

impl Reconnect {
    /// No outage yet.
    pub(crate) fn new(link: &Link) -> Self {
        Reconnect {
            backoff: link.options.backoff.0,
            down: false,
        }
    }

    /// A failed attempt: logs `what` with `error` if it is the outage's first, waits the
    /// backoff and lengthens the next.
    pub(crate) async fn failed(&mut self, link: &Link, error: &redis::RedisError, what: &str) {
        if !self.down {
            tracing::warn!(error = %error, "{what}");
            self.down = true;
        }
        (link.sleep)(self.backoff).await;
        self.backoff = link.next_backoff(self.backoff);
    }

    /// Connected: logs `what` if that ends an outage; the next wait is the shortest again.
    pub(crate) fn connected(&mut self, link: &Link, what: &str) {
        if self.down {
            tracing::info!("{what}");
            self.down = false;
        }
        self.backoff = link.options.backoff.0;
    }

    /// The connection was lost (logged as `what`, with `error` when known: the outage's
    /// first report).
    pub(crate) fn lost(&mut self, what: &str, error: Option<&redis::RedisError>) {
        match error {
            Some(e) => tracing::warn!(error = %e, "{what}"),
            None => tracing::warn!("{what}"),
        }
        self.down = true;
    }
}

/// What a [`Writer`] logs.
pub(crate) struct WriterLog {
    /// Connecting failed (the first time in an outage).
    pub(crate) unreachable: &'static str,
    /// A command failed (the first time in an outage).
    pub(crate) failed: &'static str,
    /// A command succeeded after an outage.
    pub(crate) again: &'static str,
}

/// The connection of a task that sends commands in order: made when a command comes and
/// there is none, while Redis is away no more often than the backoff says; each outage is
/// logged once.
pub(crate) struct Writer {
    conn: Option<Conn>,
    backoff: Duration,
    retry_at: Instant,
    down: bool,
    log: WriterLog,
}

impl Writer {
    /// No connection yet.
    pub(crate) fn new(link: &Link, log: WriterLog) -> Self {
        Writer {
            conn: None,
            backoff: link.options.backoff.0,
            retry_at: Instant::now(),
            down: false,
            log,
        }
    }

    /// The connection for the next command, connecting first when there is none and the
    /// backoff allows; `None` while Redis is away (the command is dropped).
    pub(crate) async fn conn(&mut self, link: &Link) -> Option<&mut Conn> {
        if self.conn.is_none() && Instant::now() >= self.retry_at {
            match link.connect_for_publishing().await {
                Ok(c) => {
                    self.conn = Some(c);
                    self.backoff = link.options.backoff.0;
                }
                Err(e) => {
                    self.retry_at = Instant::now() + self.backoff;
                    self.backoff = link.next_backoff(self.backoff);
                    if !self.down {
                        tracing::warn!(error = %e, "{}", self.log.unreachable);
                        self.down = true;
                    }
                }
            }
        }
        self.conn.as_mut()
    }

    /// Whether the last attempt failed and no command has succeeded since (an outage).
    pub(crate) fn is_down(&self) -> bool {
        self.down
    }

    /// Records how a command went: a failure drops the connection (the next command
    /// connects again at once).
    pub(crate) fn done(&mut self, result: Result<(), impl std::fmt::Display>) {
        match result {
            Ok(()) => {
                if self.down {
                    tracing::info!("{}", self.log.again);
                    self.down = false;
                }
            }
            Err(e) => {
                self.conn = None;
                self.retry_at = Instant::now();
                if !self.down {
                    tracing::warn!(error = %e, "{}", self.log.failed);
                    self.down = true;
                }
            }
        }
    }
}

/// Publications kept while Redis is away, to be sent in order once it is back: at most
/// `max_bytes` of payload (the oldest make room) and none older than `max_age`.
pub(crate) struct Backlog<T> {
    items: VecDeque<(Instant, usize, T)>,
    bytes: usize,
    max_bytes: usize,
    max_age: Duration,
    /// Dropped (too old or no room) since the last [`Backlog::take_dropped`].
    dropped: usize,
}

impl<T> Backlog<T> {
    /// An empty backlog with these bounds (`max_bytes` 0 keeps nothing).
    pub(crate) fn new(max_bytes: usize, max_age: Duration) -> Self {
        Backlog {
            items: VecDeque::new(),
            bytes: 0,
            max_bytes,
            max_age,
            dropped: 0,
        }
    }

    /// Keeps `item` of `size` bytes, made at `now`; the oldest go to make room.
    pub(crate) fn push(&mut self, item: T, size: usize, now: Instant) {
        if size > self.max_bytes {
            self.dropped += 1;
            return;
        }
        while self.bytes + size > self.max_bytes {
            self.pop();
            self.dropped += 1;
        }
        self.bytes += size;
        self.items.push_back((now, size, item));
    }

    /// Drops what is older than the age limit at `now`.
    pub(crate) fn expire(&mut self, now: Instant) {
        while let Some((made, _, _)) = self.items.front() {
            if now.saturating_duration_since(*made) <= self.max_age {
                break;
            }
            self.pop();
            self.dropped += 1;
        }
    }

    /// The oldest item.
    pub(crate) fn front(&self) -> Option<&T> {
        self.items.front().map(|(_, _, item)| item)
    }

    /// Removes the oldest item (it was sent, or it is dropped).
    pub(crate) fn pop(&mut self) -> Option<T> {
        let (_, size, item) = self.items.pop_front()?;
        self.bytes -= size;
        Some(item)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// How many were dropped since the last call.
    pub(crate) fn take_dropped(&mut self) -> usize {
        std::mem::take(&mut self.dropped)
    }
}

/// The namespace of each request received from another node, with when it came, for its
/// answers (which carry none).
#[derive(Default)]
pub(crate) struct RequestNamespaces {
    by_request: HashMap<RequestId, (String, Instant)>,
}

impl RequestNamespaces {
    /// Remembers the namespace of `message` if it is a request that expects answers.
    pub(crate) fn remember(&mut self, message: &ClusterMessage) {
        let (request, nsp) = match message {
            ClusterMessage::Broadcast {
                ack: Some(r), nsp, ..
            }
            | ClusterMessage::FetchSockets {
                request: r, nsp, ..
            }
            | ClusterMessage::ServerSideEmit {
                request: Some(r),
                nsp,
                ..
            }
            | ClusterMessage::AllRooms { request: r, nsp } => (*r, nsp),
            _ => return,
        };
        let now = Instant::now();
        if self.by_request.len() >= REQUEST_SWEEP {
            self.by_request
                .retain(|_, (_, at)| now.duration_since(*at) < REQUEST_MEMORY);
        }
        self.by_request.insert(request, (nsp.clone(), now));
    }

    /// The namespace to send `message` under: for an answer, the one of its request (`/`
    /// when unknown), forgotten after the answer unless more answers of that request may
    /// follow (acknowledgements relayed one by one); for anything else the empty string.
    pub(crate) fn for_answer(&mut self, message: &ClusterMessage) -> String {
        let Some(request) = message.answers() else {
            return String::new();
        };
        let nsp = self.by_request.get(&request).map(|(n, _)| n.clone());
        if !matches!(
            message,
            ClusterMessage::BroadcastAck { .. } | ClusterMessage::BroadcastClientCount { .. }
        ) {
            self.by_request.remove(&request);
        }
        nsp.unwrap_or_else(|| "/".to_owned())
    }
}

/// A connection to one server (or the master the Sentinels name), or to a Redis Cluster
/// (each command goes to the node that owns its key's or channel's slot).
#[derive(Clone)]
pub(crate) enum Conn {
    /// One server.
    Single(redis::aio::MultiplexedConnection),
    /// A Redis Cluster.
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The Redis Cluster slot of `key` (a channel name for sharded Pub/Sub): CRC16 (XMODEM) of
/// the key, or of its hash tag (the part between the first `{` and the next `}`, when not
/// empty), modulo 16384.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    let tagged = key.iter().position(|b| *b == b'{').and_then(|open| {
        let rest = &key[open + 1..];
        rest.iter()
            .position(|b| *b == b'}')
            .filter(|close| *close > 0)
            .map(|close| &rest[..close])
    });
    let mut crc: u16 = 0;
    for byte in tagged.unwrap_or(key) {
        crc ^= u16::from(*byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::key_slot;

    #[test]
    fn slots_as_redis_computes_them() {
        // `CLUSTER KEYSLOT` of these, from a Redis 7 server.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"123456789"), 12739);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_ne!(
            key_slot(b"foo{}{bar}"),
            key_slot(b"bar"),
            "an empty tag is no tag"
        );
    }
}

#[cfg(test)]
mod backlog_tests {
    use super::Backlog;
    use std::time::{Duration, Instant};

    #[test]
    fn the_backlog_keeps_order_within_its_bytes_and_age() {
        let t0 = Instant::now();
        let mut b = Backlog::new(10, Duration::from_secs(5));
        for (i, at) in [(1u8, 0u64), (2, 1), (3, 2)] {
            b.push(i, 4, t0 + Duration::from_secs(at));
        }
        // 12 bytes asked for 10: the oldest made room.
        assert_eq!((b.len(), b.take_dropped()), (2, 1));
        assert_eq!(b.front(), Some(&2));
        b.expire(t0 + Duration::from_millis(6_500));
        assert_eq!(b.take_dropped(), 1);
        assert_eq!(b.front(), Some(&3));
        assert_eq!(b.pop(), Some(3));
        assert!(b.is_empty());
        // Larger than the whole budget: never kept.
        b.push(9, 11, t0);
        assert!(b.is_empty());
        assert_eq!(b.take_dropped(), 1);
        let mut off = Backlog::new(0, Duration::from_secs(5));
        off.push(1u8, 1, t0);
        assert!(off.is_empty());
    }
}
