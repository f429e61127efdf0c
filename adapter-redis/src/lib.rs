//! A Redis cluster adapter for Volley, wire-compatible with `@socket.io/redis-adapter` 8.x
//! (classic Pub/Sub): Volley servers and Node servers using that adapter (or
//! `@socket.io/redis-emitter`) can share one Redis and one cluster.
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
//! Sharded Pub/Sub (Redis 7, `createShardedAdapter`): the wire format is in [`sharded`]; the
//! IO here speaks the classic format only.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod codec;
pub mod sharded;

use codec::{Codec, Decoded, Outgoing};
use futures::channel::{mpsc, oneshot};
use futures::future::{BoxFuture, Either, select};
use futures::{FutureExt, StreamExt};
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
    /// The key prefix (the reference's `key`): `socket.io`.
    pub key: String,
    /// Namespaces whose request channel this node subscribes by name, so Node servers count
    /// it (`PUBSUB NUMSUB`); messages of every namespace are received through patterns
    /// anyway. `["/"]` by default.
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
        let (_, n): (String, usize) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(self.codec.request_channel(nsp))
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
            let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
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
        (s.spawn)(s.clone().subscriber(node, inbox).boxed());
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
        let out = self.shared.codec.encode(node, to, &nsp, &message);
        if let Some(outbox) = &state.outbox {
            let _ = outbox.unbounded_send(out);
        }
    }

    fn server_count(&self) -> usize {
        self.shared.count.load(Ordering::SeqCst).max(1)
    }
}
