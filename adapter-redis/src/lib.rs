//! A Redis cluster adapter for Volley, wire-compatible with `@socket.io/redis-adapter` 8.x,
//! classic (`createAdapter`) or sharded (`createShardedAdapter`, see
//! [below](#sharded-pubsub)): Volley servers and Node servers using that adapter (or, in the
//! classic mode, `@socket.io/redis-emitter`) can share one Redis and one cluster.
//!
//! ```no_run
//! # async fn run() {
//! use volley_redis::{RedisAdapter, RedisOptions};
//! # let runtime = volley::testing::TestRuntime::new();
//! let adapter = RedisAdapter::new(RedisOptions::new("redis://127.0.0.1:6379"), runtime.clone());
//! let io = volley::builder().adapter(adapter.clone()).build(runtime);
//! # }
//! ```
//!
//! # How it runs
//!
//! [`codec`] (and [`sharded`]) decide channels and bytes; this module moves them. On
//! [`Adapter::start`] three tasks are spawned on the [`Runtime`] given to
//! [`RedisAdapter::new`]:
//!
//! - the subscriber: one Pub/Sub connection, `PSUBSCRIBE prefix#*`, `prefix-request#*`,
//!   `prefix-response#*` (every namespace, including dynamic ones) plus `SUBSCRIBE` of the
//!   request and answer channels of [`RedisOptions::namespaces`] (so that `PUBSUB NUMSUB`, the
//!   reference's server count, counts this node); a message matched both ways is handled once;
//! - the publisher: `PUBLISH` of what the node hands over, in order, on a multiplexed
//!   connection;
//! - the counter: `PUBSUB NUMSUB prefix-request#/#` every [`RedisOptions::count_interval`],
//!   cached for [`Adapter::server_count`] (which is synchronous).
//!
//! Each task reconnects with exponential backoff ([`RedisOptions::backoff`]). While Redis is
//! away, local delivery goes on (the adapter only forwards), publishing fails and is logged
//! once per outage, the server count drops to 1 (requests do not wait for nodes that cannot
//! answer); when Redis returns the subscriptions are made again and cluster delivery resumes.
//!
//! The redis client's IO runs on tokio (feature `tokio`, the default) or smol (feature
//! `smol`; with both, tokio is used when a tokio runtime is current, as the redis crate
//! decides). TLS (`rediss://`) with features `tls-tokio` / `tls-smol` (rustls).
//!
//! # Sharded Pub/Sub
//!
//! With [`RedisOptions::sharded`] ([`PubSub::Sharded`]) the adapter speaks Redis 7's sharded
//! Pub/Sub in the format of `createShardedAdapter` ([`sharded`]), which a Redis Cluster
//! spreads over its shards instead of copying every message to every node:
//!
//! ```no_run
//! # async fn run() {
//! use volley_redis::{RedisAdapter, RedisOptions};
//! # let runtime = volley::testing::TestRuntime::new();
//! let options = RedisOptions::new("redis://127.0.0.1:6379")
//!     .namespaces(&["/", "/admin"])
//!     .sharded();
//! let adapter = RedisAdapter::new(options, runtime.clone());
//! # }
//! ```
//!
//! The tasks are the same, with other commands:
//!
//! - the subscriber opens one RESP3 connection and sends `SSUBSCRIBE prefix#<nsp>#` (every
//!   message of the namespace) and `SSUBSCRIBE prefix#<nsp>#<uid>#` (answers for this
//!   node) for each of [`RedisOptions::namespaces`]; messages arrive as RESP3 push
//!   messages. Sharded Pub/Sub has no patterns, so a namespace missing from that list is
//!   not clustered (publishing in one is logged once);
//! - the publisher sends `SPUBLISH`: answers to the asking node's answer channel, all else
//!   to the namespace's channel (the reference's `subscriptionMode: "static"`; Node
//!   servers in the cluster must use that mode, since in `"dynamic"`, the reference's
//!   default, their broadcasts to one room go to per-room channels Volley does not read);
//! - the counter asks `PUBSUB SHARDNUMSUB prefix#<nsp>#` for the first namespace (the
//!   sharded adapter has no heartbeats: a server is whoever subscribes that channel).
//!
//! Outages are handled as in the classic mode. The subscriber also sends `PING` when
//! nothing arrived for a [count interval](RedisOptions::count_interval), so that a
//! connection that died without closing is replaced.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod codec;
pub mod sharded;
pub mod streams;

use codec::{Codec, Decoded, Outgoing};
use futures::channel::{mpsc, oneshot};
use futures::future::{BoxFuture, Either, select};
use futures::{FutureExt, StreamExt};
use sharded::ShardedCodec;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use volley::adapter::{Adapter, Inbox};
use volley::runtime::Runtime;
use volley_core::cluster::ClusterMessage;
use volley_core::{NodeId, RequestId};

/// Where Redis is: one server, or a master found through Sentinel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A server URL (`redis://host:port/db`, `rediss://` for TLS, `redis+unix:///path`).
    Url(String),
    /// The master `master_name` as the Sentinels at `sentinels` (URLs) report it.
    Sentinel {
        /// The monitored master's name.
        master_name: String,
        /// Sentinel URLs (`redis://host:26379`).
        sentinels: Vec<String>,
    },
}

/// Which kind of Redis Pub/Sub the adapter speaks, and so which Node adapter it joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PubSub {
    /// `PUBLISH`/`SUBSCRIBE`/`PSUBSCRIBE` in the format of `createAdapter` ([`codec`]); the
    /// server count is `PUBSUB NUMSUB`. The default.
    #[default]
    Classic,
    /// Redis 7 sharded Pub/Sub (`SPUBLISH`/`SSUBSCRIBE`) in the format of
    /// `createShardedAdapter` with `subscriptionMode: "static"` ([`sharded`]); the server
    /// count is `PUBSUB SHARDNUMSUB`. Sharded Pub/Sub has no patterns: only the namespaces of
    /// [`RedisOptions::namespaces`] are clustered.
    Sharded,
}

/// How to reach Redis and how to name channels.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Where Redis is.
    pub target: Target,
    /// Password (overrides one in the URL).
    pub password: Option<String>,
    /// ACL user name (with `password`).
    pub username: Option<String>,
    /// Database number (overrides one in the URL; Pub/Sub ignores it, commands do not).
    pub db: Option<i64>,
    /// The key prefix (the reference's `key`, or `channelPrefix` of the sharded adapter):
    /// `socket.io`.
    pub key: String,
    /// Classic or sharded Pub/Sub: [`PubSub::Classic`].
    pub pub_sub: PubSub,
    /// Namespaces whose request channel this node subscribes by name, so Node servers count
    /// it (`PUBSUB NUMSUB`); messages of every namespace are received through patterns
    /// anyway. `["/"]` by default. In the sharded mode these are the only namespaces whose
    /// messages this node receives; the first is the one whose subscribers are counted.
    pub namespaces: Vec<String>,
    /// How often the server count is refreshed: 1 s.
    pub count_interval: Duration,
    /// Reconnection backoff: first and longest delay (100 ms, 5 s).
    pub backoff: (Duration, Duration),
    /// How long connecting may take before it counts as failed: 2 s.
    pub connect_timeout: Duration,
}

impl RedisOptions {
    /// Options for the server at `url`, with the reference's defaults.
    pub fn new(url: &str) -> Self {
        RedisOptions {
            target: Target::Url(url.to_owned()),
            password: None,
            username: None,
            db: None,
            key: "socket.io".to_owned(),
            pub_sub: PubSub::Classic,
            namespaces: vec!["/".to_owned()],
            count_interval: Duration::from_secs(1),
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            connect_timeout: Duration::from_secs(2),
        }
    }

    /// Options for the master `master_name` found through `sentinels`.
    pub fn sentinel(master_name: &str, sentinels: &[&str]) -> Self {
        RedisOptions {
            target: Target::Sentinel {
                master_name: master_name.to_owned(),
                sentinels: sentinels.iter().map(|s| (*s).to_owned()).collect(),
            },
            ..RedisOptions::new("redis://127.0.0.1:6379")
        }
    }

    /// Sets the password.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// Sets the database number.
    pub fn db(mut self, db: i64) -> Self {
        self.db = Some(db);
        self
    }

    /// Sets the key prefix.
    pub fn key(mut self, key: &str) -> Self {
        self.key = key.to_owned();
        self
    }

    /// Sets the namespaces subscribed by name.
    pub fn namespaces(mut self, namespaces: &[&str]) -> Self {
        self.namespaces = namespaces.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Switches to sharded Pub/Sub ([`PubSub::Sharded`]): Redis 7 or later, and Node servers
    /// of the cluster built with `createShardedAdapter(pub, sub, { subscriptionMode: "static"
    /// })` (in the reference's default `"dynamic"` mode, their broadcasts to a single room go
    /// to per-room channels this node does not read).
    pub fn sharded(mut self) -> Self {
        self.pub_sub = PubSub::Sharded;
        self
    }

    fn redis_settings(&self, base: &redis::RedisConnectionInfo) -> redis::RedisConnectionInfo {
        let mut settings = base.clone();
        if let Some(p) = &self.password {
            settings = settings.set_password(p);
        }
        if let Some(u) = &self.username {
            settings = settings.set_username(u);
        }
        if let Some(db) = self.db {
            settings = settings.set_db(db);
        }
        settings
    }

    /// A client for the current master (asks the Sentinels each time).
    async fn client(&self) -> redis::RedisResult<redis::Client> {
        use redis::IntoConnectionInfo;
        match &self.target {
            Target::Url(url) => {
                let info = url.as_str().into_connection_info()?;
                let settings = self.redis_settings(info.redis_settings());
                redis::Client::open(info.set_redis_settings(settings))
            }
            Target::Sentinel {
                master_name,
                sentinels,
            } => {
                let node = redis::sentinel::SentinelNodeConnectionInfo::default()
                    .set_redis_connection_info(
                        self.redis_settings(&redis::RedisConnectionInfo::default()),
                    );
                let mut sentinel = redis::sentinel::SentinelClient::build(
                    sentinels.iter().map(String::as_str).collect(),
                    master_name.clone(),
                    Some(node),
                    redis::sentinel::SentinelServerType::Master,
                )?;
                sentinel.async_get_client().await
            }
        }
    }
}

type Spawn = Arc<dyn Fn(BoxFuture<'static, ()>) + Send + Sync>;
type Sleep = Arc<dyn Fn(Duration) -> BoxFuture<'static, ()> + Send + Sync>;

struct Shared {
    options: RedisOptions,
    codec: Codec,
    sharded: ShardedCodec,
    spawn: Spawn,
    sleep: Sleep,
    count: AtomicUsize,
    /// Set while the subscriptions are in place.
    subscribed: AtomicBool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    node: Option<NodeId>,
    outbox: Option<mpsc::UnboundedSender<Outgoing>>,
    /// The namespace of each request received from another node, for its answers (which
    /// carry none), with when it came.
    request_nsp: HashMap<RequestId, (String, Instant)>,
    waiting: Vec<oneshot::Sender<()>>,
    stopped: bool,
    /// Sharded mode: namespaces published in but not subscribed, already warned about.
    unlisted: HashSet<String>,
}

/// A node's membership of a cluster over Redis. Cheap to clone (a handle).
#[derive(Clone)]
pub struct RedisAdapter {
    shared: Arc<Shared>,
}

impl fmt::Debug for RedisAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAdapter")
            .field("target", &self.shared.options.target)
            .field("key", &self.shared.options.key)
            .field("server_count", &self.server_count())
            .finish()
    }
}

/// How long the namespace of a received request is remembered for its answers.
const REQUEST_MEMORY: Duration = Duration::from_secs(300);

impl RedisAdapter {
    /// An adapter connecting with `options`; its tasks run on `runtime`. Nothing connects
    /// before the server starts it.
    pub fn new<R: Runtime>(options: RedisOptions, runtime: R) -> Self {
        let spawner = runtime.clone();
        let spawn: Spawn = Arc::new(move |f| spawner.spawn(f));
        let sleep: Sleep = Arc::new(move |d| runtime.sleep(d).boxed());
        RedisAdapter {
            shared: Arc::new(Shared {
                codec: Codec::new(&options.key),
                sharded: ShardedCodec::new(&options.key),
                options,
                spawn,
                sleep,
                count: AtomicUsize::new(1),
                subscribed: AtomicBool::new(false),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Completes once the subscriptions are in place (at once if they are): from then on
    /// this node receives what the others publish.
    pub async fn subscribed(&self) {
        let rx = {
            let mut state = self.shared.lock();
            if self.shared.subscribed.load(Ordering::SeqCst) {
                return;
            }
            let (tx, rx) = oneshot::channel();
            state.waiting.push(tx);
            rx
        };
        let _ = rx.await;
    }

    /// Asks Redis for the server count now (and caches it).
    pub async fn refresh_server_count(&self) -> redis::RedisResult<usize> {
        let client = self.shared.options.client().await?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let n = self.shared.query_count(&mut conn).await?;
        Ok(n)
    }

    /// Stops the adapter's tasks (they end at their next step); publishing stops at once.
    pub fn stop(&self) {
        let mut state = self.shared.lock();
        state.stopped = true;
        state.outbox = None;
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopped(&self) -> bool {
        self.lock().stopped
    }

    async fn query_count(
        &self,
        conn: &mut redis::aio::MultiplexedConnection,
    ) -> redis::RedisResult<usize> {
        let nsp = self.options.namespaces.first().map_or("/", String::as_str);
        let (subcommand, channel) = match self.options.pub_sub {
            PubSub::Classic => ("NUMSUB", self.codec.request_channel(nsp)),
            PubSub::Sharded => ("SHARDNUMSUB", self.sharded.channel(nsp)),
        };
        let (_, n): (String, usize) = redis::cmd("PUBSUB")
            .arg(subcommand)
            .arg(channel)
            .query_async::<Vec<(String, usize)>>(conn)
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
        self.count.store(n.max(1), Ordering::SeqCst);
        Ok(n.max(1))
    }

    /// Waits `d`, or fails when connecting takes longer than the connect timeout.
    async fn timed<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>> + Send,
    ) -> redis::RedisResult<T> {
        let timeout = (self.sleep)(self.options.connect_timeout);
        match select(Box::pin(fut), timeout).await {
            Either::Left((r, _)) => r,
            Either::Right(_) => Err(redis::RedisError::from(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connecting to Redis timed out",
            ))),
        }
    }

    async fn connect(&self) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
        self.timed(async {
            let client = self.options.client().await?;
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(self.options.connect_timeout))
                .set_response_timeout(Some(self.options.connect_timeout));
            client
                .get_multiplexed_async_connection_with_config(&config)
                .await
        })
        .await
    }

    fn next_backoff(&self, current: Duration) -> Duration {
        (current * 2).min(self.options.backoff.1)
    }

    fn set_subscribed(&self, on: bool) {
        let waiting = {
            let mut state = self.lock();
            self.subscribed.store(on, Ordering::SeqCst);
            if on {
                std::mem::take(&mut state.waiting)
            } else {
                Vec::new()
            }
        };
        for w in waiting {
            let _ = w.send(());
        }
    }

    /// Publishes in order; while Redis is away, drops what comes (logged once per outage)
    /// and tries to reconnect no more often than the backoff says.
    async fn publisher(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
        let mut conn: Option<redis::aio::MultiplexedConnection> = None;
        let mut backoff = self.options.backoff.0;
        let mut retry_at = Instant::now();
        let mut down = false;
        let command = match self.options.pub_sub {
            PubSub::Classic => "PUBLISH",
            PubSub::Sharded => "SPUBLISH",
        };
        while let Some(out) = rx.next().await {
            if conn.is_none() && Instant::now() >= retry_at {
                match self.connect().await {
                    Ok(c) => {
                        conn = Some(c);
                        backoff = self.options.backoff.0;
                    }
                    Err(e) => {
                        retry_at = Instant::now() + backoff;
                        backoff = self.next_backoff(backoff);
                        if !down {
                            tracing::warn!(error = %e, "redis adapter: cannot publish, Redis unreachable");
                            down = true;
                        }
                    }
                }
            }
            let Some(c) = conn.as_mut() else {
                continue;
            };
            let sent: redis::RedisResult<i64> = redis::cmd(command)
                .arg(&out.channel)
                .arg(&out.payload)
                .query_async(c)
                .await;
            match sent {
                Ok(_) => {
                    if down {
                        tracing::info!("redis adapter: publishing again");
                        down = false;
                    }
                }
                Err(e) => {
                    conn = None;
                    retry_at = Instant::now();
                    if !down {
                        tracing::warn!(error = %e, "redis adapter: publish failed, Redis unreachable");
                        down = true;
                    }
                }
            }
        }
    }

    /// Keeps the cached server count fresh.
    async fn counter(self: Arc<Self>) {
        let mut conn: Option<redis::aio::MultiplexedConnection> = None;
        while !self.stopped() {
            if conn.is_none() {
                conn = self.connect().await.ok();
            }
            if let Some(c) = conn.as_mut() {
                if self.query_count(c).await.is_err() {
                    conn = None;
                    self.count.store(1, Ordering::SeqCst);
                }
            } else {
                self.count.store(1, Ordering::SeqCst);
            }
            (self.sleep)(self.options.count_interval).await;
        }
    }

    /// Subscribes, delivers, and starts again when the connection drops.
    async fn subscriber(self: Arc<Self>, node: NodeId, inbox: Inbox) {
        let mut backoff = self.options.backoff.0;
        let mut down_logged = false;
        let exact: HashSet<String> = self
            .options
            .namespaces
            .iter()
            .flat_map(|nsp| self.codec.channels(nsp, node))
            .collect();
        while !self.stopped() {
            let pubsub = self
                .timed(async {
                    let client = self.options.client().await?;
                    let mut pubsub = client.get_async_pubsub().await?;
                    for pattern in self.codec.patterns() {
                        pubsub.psubscribe(pattern).await?;
                    }
                    for channel in &exact {
                        pubsub.subscribe(channel).await?;
                    }
                    Ok(pubsub)
                })
                .await;
            let mut pubsub = match pubsub {
                Ok(p) => p,
                Err(e) => {
                    if !down_logged {
                        tracing::warn!(error = %e, "redis adapter: cannot subscribe, retrying");
                        down_logged = true;
                    }
                    (self.sleep)(backoff).await;
                    backoff = self.next_backoff(backoff);
                    continue;
                }
            };
            if down_logged {
                tracing::info!("redis adapter: subscribed again");
            }
            backoff = self.options.backoff.0;
            self.set_subscribed(true);
            // Count at once rather than at the next tick: the cluster may have changed.
            if let Ok(mut c) = self.connect().await {
                let _ = self.query_count(&mut c).await;
            }
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                let channel = msg.get_channel_name();
                if msg.from_pattern() && exact.contains(channel) {
                    // Delivered by the exact subscription as well.
                    continue;
                }
                self.on_message(node, &inbox, channel, msg.get_payload_bytes());
                if self.stopped() {
                    return;
                }
            }
            drop(messages);
            self.set_subscribed(false);
            self.count.store(1, Ordering::SeqCst);
            tracing::warn!("redis adapter: subscription connection lost, reconnecting");
            down_logged = true;
        }
    }

    /// The sharded subscriber: one RESP3 connection with `SSUBSCRIBE` of each namespace's
    /// channel and of this node's answer channel; messages arrive as push messages. A
    /// `PING` when nothing arrived for a count interval finds a connection that died
    /// without closing.
    async fn sharded_subscriber(self: Arc<Self>, node: NodeId, inbox: Inbox) {
        let mut backoff = self.options.backoff.0;
        let mut down_logged = false;
        let channels: Vec<String> = self
            .options
            .namespaces
            .iter()
            .flat_map(|nsp| {
                [
                    self.sharded.channel(nsp),
                    self.sharded.response_channel(nsp, node),
                ]
            })
            .collect();
        while !self.stopped() {
            let (tx, mut pushes) = mpsc::unbounded::<redis::PushInfo>();
            let conn = self
                .timed(async {
                    let client = self.options.client().await?;
                    // Push messages (and so subscribing on a multiplexed connection) need RESP3.
                    let info = client.get_connection_info().clone();
                    let settings = info
                        .redis_settings()
                        .clone()
                        .set_protocol(redis::ProtocolVersion::RESP3);
                    let client = redis::Client::open(info.set_redis_settings(settings))?;
                    let config = redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(self.options.connect_timeout))
                        .set_response_timeout(Some(self.options.connect_timeout))
                        .set_push_sender(move |push| tx.unbounded_send(push));
                    let mut conn = client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?;
                    // One channel per command: each confirmation is one reply.
                    for channel in &channels {
                        redis::cmd("SSUBSCRIBE")
                            .arg(channel)
                            .exec_async(&mut conn)
                            .await?;
                    }
                    Ok(conn)
                })
                .await;
            let mut conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    if !down_logged {
                        tracing::warn!(error = %e, "redis adapter: cannot subscribe (sharded), retrying");
                        down_logged = true;
                    }
                    (self.sleep)(backoff).await;
                    backoff = self.next_backoff(backoff);
                    continue;
                }
            };
            if down_logged {
                tracing::info!("redis adapter: subscribed again");
            }
            backoff = self.options.backoff.0;
            self.set_subscribed(true);
            if let Ok(mut c) = self.connect().await {
                let _ = self.query_count(&mut c).await;
            }
            loop {
                let tick = (self.sleep)(self.options.count_interval);
                match select(pushes.next(), tick).await {
                    Either::Left((Some(push), _)) => match push.kind {
                        redis::PushKind::SMessage => {
                            if let [
                                redis::Value::BulkString(channel),
                                redis::Value::BulkString(payload),
                            ] = push.data.as_slice()
                            {
                                let channel = String::from_utf8_lossy(channel);
                                self.on_sharded_message(node, &inbox, &channel, payload);
                            }
                            if self.stopped() {
                                return;
                            }
                        }
                        // Redis took a subscription away (a slot moved): subscribe again.
                        redis::PushKind::SUnsubscribe | redis::PushKind::Disconnection => break,
                        _ => {}
                    },
                    Either::Left((None, _)) => break,
                    Either::Right(_) => {
                        if self.stopped() {
                            return;
                        }
                        if redis::cmd("PING").exec_async(&mut conn).await.is_err() {
                            break;
                        }
                    }
                }
            }
            drop(conn);
            self.set_subscribed(false);
            self.count.store(1, Ordering::SeqCst);
            tracing::warn!("redis adapter: subscription connection lost, reconnecting");
            down_logged = true;
        }
    }

    fn on_sharded_message(&self, node: NodeId, inbox: &Inbox, channel: &str, payload: &[u8]) {
        match self.sharded.decode(node, payload) {
            Ok(Decoded::Message { from, message }) => {
                self.remember_request(&message);
                if !inbox.deliver(from, message) {
                    self.lock().stopped = true;
                }
            }
            Ok(Decoded::Ignored) => {}
            Err(e) => tracing::debug!(channel, error = %e, "redis adapter: message ignored"),
        }
    }

    fn on_message(&self, node: NodeId, inbox: &Inbox, channel: &str, payload: &[u8]) {
        match self.codec.decode(node, channel, payload) {
            Ok(Decoded::Message { from, message }) => {
                self.remember_request(&message);
                if !inbox.deliver(from, message) {
                    self.lock().stopped = true;
                }
            }
            Ok(Decoded::Ignored) => {}
            Err(e) => tracing::debug!(channel, error = %e, "redis adapter: message ignored"),
        }
    }

    fn remember_request(&self, message: &ClusterMessage) {
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
        let mut state = self.lock();
        if state.request_nsp.len() >= 4096 {
            state
                .request_nsp
                .retain(|_, (_, at)| now.duration_since(*at) < REQUEST_MEMORY);
        }
        state.request_nsp.insert(request, (nsp.clone(), now));
    }
}

impl Adapter for RedisAdapter {
    fn start(&self, node: NodeId, inbox: Inbox) {
        let (tx, rx) = mpsc::unbounded();
        {
            let mut state = self.shared.lock();
            state.node = Some(node);
            state.outbox = Some(tx);
            state.stopped = false;
        }
        let s = &self.shared;
        (s.spawn)(s.clone().publisher(rx).boxed());
        (s.spawn)(s.clone().counter().boxed());
        match s.options.pub_sub {
            PubSub::Classic => (s.spawn)(s.clone().subscriber(node, inbox).boxed()),
            PubSub::Sharded => (s.spawn)(s.clone().sharded_subscriber(node, inbox).boxed()),
        }
    }

    fn publish(&self, to: Option<NodeId>, message: ClusterMessage) {
        let mut state = self.shared.lock();
        let Some(node) = state.node else {
            return;
        };
        let nsp = match message.answers() {
            Some(request) => {
                let nsp = state.request_nsp.get(&request).map(|(n, _)| n.clone());
                // One answer per request, except acknowledgements relayed one by one.
                if !matches!(
                    message,
                    ClusterMessage::BroadcastAck { .. }
                        | ClusterMessage::BroadcastClientCount { .. }
                ) {
                    state.request_nsp.remove(&request);
                }
                nsp.unwrap_or_else(|| "/".to_owned())
            }
            None => String::new(),
        };
        let out = match self.shared.options.pub_sub {
            PubSub::Classic => self.shared.codec.encode(node, to, &nsp, &message),
            PubSub::Sharded => {
                let unlisted = message_nsp(&message)
                    .filter(|n| !self.shared.options.namespaces.iter().any(|l| l == n));
                if let Some(n) = unlisted {
                    // Bounded: many dynamic namespaces must not grow this without end.
                    if state.unlisted.len() < 1024 && state.unlisted.insert(n.to_owned()) {
                        tracing::warn!(
                            nsp = n,
                            "redis adapter: namespace not in RedisOptions::namespaces; sharded \
                             Pub/Sub has no patterns, so this node receives neither answers \
                             nor messages in it"
                        );
                    }
                }
                self.shared.sharded.encode(node, to, &nsp, &message)
            }
        };
        if let Some(outbox) = &state.outbox {
            let _ = outbox.unbounded_send(out);
        }
    }

    fn server_count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst).max(1)
    }
}

/// The namespace a message that is not an answer is about.
fn message_nsp(message: &ClusterMessage) -> Option<&str> {
    match message {
        ClusterMessage::Broadcast { nsp, .. }
        | ClusterMessage::SocketsJoin { nsp, .. }
        | ClusterMessage::SocketsLeave { nsp, .. }
        | ClusterMessage::DisconnectSockets { nsp, .. }
        | ClusterMessage::FetchSockets { nsp, .. }
        | ClusterMessage::ServerSideEmit { nsp, .. }
        | ClusterMessage::AllRooms { nsp, .. } => Some(nsp),
        _ => None,
    }
}
