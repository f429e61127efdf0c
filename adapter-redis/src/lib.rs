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
//! - the subscriber: one Pub/Sub connection (RESP3, so that a refused subscription is an
//!   error; RESP2 before Redis 6), `PSUBSCRIBE prefix#*`, `prefix-request#*`,
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
//! decides). TLS (`rediss://`) with features `tls-tokio` (on by default) / `tls-smol`
//! (rustls), trusting the system's roots or [`RedisOptions::tls_root_cert`].
//!
//! Redis is one server ([`RedisOptions::new`]), the master that Sentinels name
//! ([`RedisOptions::sentinel`], asked again at every connection, so a failover is followed)
//! or a Redis Cluster ([`RedisOptions::cluster`]: in the sharded mode each channel at the
//! master of its slot; in the classic mode one node to subscribe on and one to publish on).
//! `docs/deployment.md` has the options and the failover figures the tests measured.
//!
//! # Forwarding requests to the session's node
//!
//! With [`RedisOptions::forward_sessions`] (off by default; for the Streams adapter
//! [`StreamsOptions::forward_sessions`](streams::StreamsOptions::forward_sessions)) the
//! adapter offers a [`RedisRelay`] ([`Adapter::relay`]): the server then forwards a
//! request for another node's session to that node, so the balancer in front of the
//! cluster needs no sticky sessions. On start the relay subscribes `<key>-relay#<node>#`
//! on a connection of its own; a frame for a node is one `PUBLISH` on that node's
//! channel, from a publisher task that keeps the order of the calls. It uses classic
//! Pub/Sub in every mode (a Redis Cluster carries it between its nodes) and follows the
//! same target, backoff and outage rules as the adapter; closing the adapter stops it.
//! Every Volley node of the cluster must turn the option on.
//!
//! # Sharded Pub/Sub
//!
//! With [`RedisOptions::sharded`] ([`PubSub::Sharded`]) the adapter speaks Redis 7's sharded
//! Pub/Sub in the format of `createShardedAdapter` ([`sharded`]), which a Redis Cluster
//! spreads over its shards instead of copying every message to every node:
//!
//! ```no_run
//! # async fn run() {
//! use volley_redis::{RedisAdapter, RedisOptions, SubscriptionMode};
//! # let runtime = volley::testing::TestRuntime::new();
//! let options = RedisOptions::new("redis://127.0.0.1:6379")
//!     .namespaces(&["/", "/admin"])
//!     .sharded(); // or .sharded_mode(SubscriptionMode::Static), ...
//! let adapter = RedisAdapter::new(options, runtime.clone());
//! # }
//! ```
//!
//! The [subscription mode](SubscriptionMode) is the reference's `subscriptionMode`, and
//! every server of the cluster, Volley or Node, must use the same one:
//!
//! - [`Dynamic`](SubscriptionMode::Dynamic) (`"dynamic"`, the default here as in the
//!   reference): each node also subscribes `prefix#<nsp>#<room>#` for every public room
//!   that has members on it, and a broadcast without acknowledgement to exactly one room
//!   is published on that room's channel, so only the nodes with members receive it;
//! - [`DynamicPrivate`](SubscriptionMode::DynamicPrivate) (`"dynamic-private"`): the same
//!   for private rooms too (a socket's own room), so that a message to one socket goes to
//!   its node only;
//! - [`Static`](SubscriptionMode::Static) (`"static"`): the namespace and answer channels
//!   only; every message goes to every node.
//!
//! The tasks are the same as in the classic mode, with other commands:
//!
//! - the subscriber opens one RESP3 connection and sends `SSUBSCRIBE prefix#<nsp>#` (every
//!   message of the namespace) and `SSUBSCRIBE prefix#<nsp>#<uid>#` (answers for this
//!   node) for each of [`RedisOptions::namespaces`]; messages arrive as RESP3 push
//!   messages. Sharded Pub/Sub has no patterns, so a namespace missing from that list is
//!   not clustered (publishing in one is logged once). In a dynamic mode the server tells
//!   the adapter as rooms are created and deleted ([`Adapter::room_changed`], which only
//!   queues the change: local delivery never waits on Redis); the subscriber sends
//!   `SSUBSCRIBE` / `SUNSUBSCRIBE` of the room's channel in that order, and after a
//!   reconnection subscribes the channels of every room that exists then, in one round
//!   trip (`SSUBSCRIBE` commands of up to 512 channels written at once; on a Redis Cluster
//!   one command per channel, all in flight at once, each at its slot's master);
//!   [`RedisAdapter::subscribed`] tells when the rooms created so far are subscribed;
//! - the publisher sends `SPUBLISH`: answers to the asking node's answer channel, a
//!   broadcast to one room to that room's channel as the mode says
//!   ([`SubscriptionMode::room_of`]), all else to the namespace's channel;
//! - the counter asks `PUBSUB SHARDNUMSUB prefix#<nsp>#` for the first namespace (the
//!   sharded adapter has no heartbeats: a server is whoever subscribes that channel).
//!
//! As in the reference, a room's channel is subscribed a moment after its first member
//! joined: a broadcast to it published on another node in that moment does not reach
//! this node (one made after the join was acknowledged and [`RedisAdapter::subscribed`]
//! completed does). In the static mode every node reads every message, so there is no such
//! window.
//!
//! Outages are handled as in the classic mode. The subscriber also sends `PING` when
//! nothing arrived for a [count interval](RedisOptions::count_interval), so that a
//! connection that died without closing is replaced.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod codec;
mod conn;
mod relay;
pub mod sharded;
pub mod streams;

pub use relay::RedisRelay;
pub use sharded::SubscriptionMode;

use codec::{Codec, DecodeError, Decoded, Outgoing};
use conn::{
    Backlog, Conn, Link, Reconnect, RequestNamespaces, Running, SubscriberHooks, SubscriberLog,
    Writer, WriterLog,
};
use futures::channel::{mpsc, oneshot};
use futures::future::{Either, select};
use futures::{FutureExt, StreamExt};
use sharded::ShardedCodec;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use volley::adapter::{Adapter, Inbox, Relay};

/// How often the publisher tries again while publications wait for Redis (connecting is
/// paced by the backoff).
const RETRY_PUBLISH: Duration = Duration::from_millis(50);
use volley::runtime::Runtime;
use volley_core::NodeId;
use volley_core::cluster::ClusterMessage;
use volley_core::socketio::RoomChange;

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
    /// A Redis Cluster, found through any of `nodes` (URLs); each command goes to the
    /// master of its channel's slot in sharded Pub/Sub; one node each for subscribing and
    /// publishing in the classic mode ([`RedisOptions::cluster`]).
    Cluster {
        /// URLs of some of the cluster's nodes (`redis://host:7000`).
        nodes: Vec<String>,
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
    /// `createShardedAdapter` ([`sharded`]), in the subscription mode of
    /// [`RedisOptions::subscription_mode`]; the server count is `PUBSUB SHARDNUMSUB`.
    /// Sharded Pub/Sub has no patterns: only the namespaces of [`RedisOptions::namespaces`]
    /// are clustered.
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
    /// With [`PubSub::Sharded`], which room channels this node subscribes and publishes to
    /// (the reference's `subscriptionMode`): [`SubscriptionMode::Dynamic`], the reference's
    /// default. Ignored by the classic mode.
    pub subscription_mode: SubscriptionMode,
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
    /// The CA certificate (PEM) that a `rediss://` server's certificate must chain to,
    /// instead of the system's roots: `None`. Needs feature `tls-tokio` or `tls-smol`
    /// (without one, connecting with it set fails with an `InvalidClientConfig` error).
    pub tls_root_cert: Option<Vec<u8>>,
    /// What is kept while Redis is away (see [`OutageBuffer`]): 8 MiB, 10 s.
    pub outage_buffer: OutageBuffer,
    /// Whether requests for sessions owned by other nodes are forwarded to their owner
    /// over Redis Pub/Sub, so that the cluster needs no sticky sessions (a balancer may
    /// send any request to any node): `false`.
    ///
    /// When on, [`Adapter::relay`] offers a [`RedisRelay`]: each node subscribes a channel
    /// of its own (`<key>-relay#<node>#`) and a node that receives a request for another
    /// node's session publishes it there and answers with what the owner sends back. The
    /// cost is one `PUBLISH` each way per forwarded request, and one per chunk of the bytes
    /// of a WebSocket relayed to its session's owner (on a Redis Cluster, also a
    /// `PUBSUB NUMSUB` on every node when the node that took the `PUBLISH` holds no
    /// subscriber of it, see [`RedisRelay`]); requests that reach their owner cost
    /// nothing. Every Volley node of the cluster must turn it on (a node without it neither
    /// names itself in its session ids nor receives forwarded requests).
    pub forward_sessions: bool,
}

/// The publications a node keeps while Redis is away, sent in order once it is back: at
/// most `max_bytes` of payload (the oldest make room) and none older than `max_age` (those
/// are dropped, with a warning). After an outage the node waits, up to `resubscribe_wait`,
/// for as many servers as it counted before to be subscribed again, so that the nodes that
/// come back receive what was kept exactly once and in order. `max_bytes` 0 keeps nothing,
/// as the reference adapter does. A publication already sent when the connection fails is
/// not kept: Redis may have taken it, and sending it again could deliver it twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutageBuffer {
    /// Most payload bytes kept: 8 MiB.
    pub max_bytes: usize,
    /// Oldest publication kept: 10 s.
    pub max_age: Duration,
    /// Longest wait for the other servers to subscribe again before sending what was kept:
    /// 3 s.
    pub resubscribe_wait: Duration,
}

impl Default for OutageBuffer {
    fn default() -> Self {
        OutageBuffer {
            max_bytes: 8 * 1024 * 1024,
            max_age: Duration::from_secs(10),
            resubscribe_wait: Duration::from_secs(3),
        }
    }
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
            subscription_mode: SubscriptionMode::Dynamic,
            namespaces: vec!["/".to_owned()],
            count_interval: Duration::from_secs(1),
            backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            connect_timeout: Duration::from_secs(2),
            tls_root_cert: None,
            outage_buffer: OutageBuffer::default(),
            forward_sessions: false,
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

    /// Options for a Redis Cluster found through `nodes` (URLs of some of its nodes), in
    /// sharded Pub/Sub ([`RedisOptions::sharded`], the dynamic subscription mode unless
    /// [`RedisOptions::sharded_mode`] says otherwise): each channel is published to and
    /// subscribed at the master that owns its slot, and a failover is followed.
    ///
    /// With `pub_sub` set back to [`PubSub::Classic`], the classic mode runs on the cluster
    /// too: it publishes and subscribes on one of `nodes` each (the next one at each
    /// reconnection; Redis Cluster forwards classic Pub/Sub to every node, so each message
    /// crosses the cluster bus) and counts the servers on every node.
    /// The Streams adapter does not support this target (its subscriber fails with an
    /// `InvalidClientConfig` error): give it one node's URL.
    pub fn cluster(nodes: &[&str]) -> Self {
        RedisOptions {
            target: Target::Cluster {
                nodes: nodes.iter().map(|s| (*s).to_owned()).collect(),
            },
            ..RedisOptions::new("redis://127.0.0.1:6379").sharded()
        }
    }

    /// Sets the password.
    pub fn password(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// Sets the ACL user name (the password with [`RedisOptions::password`]).
    pub fn username(mut self, username: &str) -> Self {
        self.username = Some(username.to_owned());
        self
    }

    /// Trusts the CA certificate `pem` (PEM) for `rediss://` servers, instead of the
    /// system's roots (feature `tls-tokio` or `tls-smol`).
    pub fn tls_root_cert(mut self, pem: &[u8]) -> Self {
        self.tls_root_cert = Some(pem.to_vec());
        self
    }

    /// Sets what is kept while Redis is away ([`OutageBuffer`]).
    pub fn outage_buffer(mut self, buffer: OutageBuffer) -> Self {
        self.outage_buffer = buffer;
        self
    }

    /// Forwards requests for sessions of other nodes to their owner over Redis
    /// ([`RedisOptions::forward_sessions`]), so that no sticky sessions are needed. Every
    /// Volley node of the cluster must turn it on.
    pub fn forward_sessions(mut self) -> Self {
        self.forward_sessions = true;
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

    /// Switches to sharded Pub/Sub ([`PubSub::Sharded`], Redis 7 or later) in the
    /// [subscription mode](RedisOptions::subscription_mode) set, by default
    /// [`SubscriptionMode::Dynamic`]: it joins Node servers built with
    /// `createShardedAdapter(pub, sub)` and their default `subscriptionMode`.
    pub fn sharded(mut self) -> Self {
        self.pub_sub = PubSub::Sharded;
        self
    }

    /// Switches to sharded Pub/Sub in `mode`: it joins Node servers built with
    /// `createShardedAdapter(pub, sub, { subscriptionMode: mode.as_str() })`. Every server of
    /// the cluster must use the same mode.
    pub fn sharded_mode(mut self, mode: SubscriptionMode) -> Self {
        self.pub_sub = PubSub::Sharded;
        self.subscription_mode = mode;
        self
    }

    /// Whether the adapter subscribes per room (sharded Pub/Sub in a dynamic mode).
    fn dynamic(&self) -> bool {
        self.pub_sub == PubSub::Sharded && self.subscription_mode != SubscriptionMode::Static
    }

    fn redis_settings(&self, base: &redis::RedisConnectionInfo) -> redis::RedisConnectionInfo {
        // No `CLIENT SETINFO` on connecting: one command fewer for an ACL user to be
        // granted (its result is ignored anyway, and Redis before 7.2 lacks it).
        let mut settings = base.clone().set_skip_set_lib_name();
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
                self.open(info.set_redis_settings(settings))
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
            // The classic subscriber's connection: any node, as Redis Cluster forwards
            // classic Pub/Sub to every node; the next one at each (re)connection, so that a
            // node that is gone is left behind.
            Target::Cluster { nodes } if !nodes.is_empty() => {
                use redis::IntoConnectionInfo;
                static NEXT: std::sync::atomic::AtomicUsize =
                    std::sync::atomic::AtomicUsize::new(0);
                let n = NEXT.fetch_add(1, Ordering::Relaxed) % nodes.len();
                let info = nodes[n].as_str().into_connection_info()?;
                let settings = self.redis_settings(info.redis_settings());
                self.open(info.set_redis_settings(settings))
            }
            Target::Cluster { .. } => Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "a Redis Cluster target without nodes",
            ))),
        }
    }

    /// A client for the cluster of [`Target::Cluster`]: RESP3 with `push` receiving the
    /// push messages when given; replies may take `response` (the connect timeout when
    /// `None`).
    fn cluster_client(
        &self,
        response: Option<Duration>,
        push: Option<mpsc::UnboundedSender<redis::PushInfo>>,
    ) -> redis::RedisResult<redis::cluster::ClusterClient> {
        let Target::Cluster { nodes } = &self.target else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "not a Redis Cluster target",
            )));
        };
        let mut infos = Vec::new();
        for url in nodes {
            use redis::IntoConnectionInfo;
            let info = url.as_str().into_connection_info()?;
            let settings = self.redis_settings(info.redis_settings());
            infos.push(info.set_redis_settings(settings));
        }
        let mut builder = redis::cluster::ClusterClientBuilder::new(infos)
            .connection_timeout(self.connect_timeout)
            .response_timeout(response.unwrap_or(self.connect_timeout))
            // A command whose node is gone fails soon: the tasks reconnect themselves.
            .retries(2)
            .min_retry_wait(20)
            .max_retry_wait(200);
        if let Some(p) = &self.password {
            builder = builder.password(p);
        }
        if let Some(u) = &self.username {
            builder = builder.username(u);
        }
        #[cfg(any(feature = "tls-tokio", feature = "tls-smol"))]
        if let Some(pem) = &self.tls_root_cert {
            install_crypto_provider();
            builder = builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            });
        }
        if let Some(tx) = push {
            builder = builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(move |push| tx.unbounded_send(push));
        }
        builder.build()
    }

    /// A client for `info`, trusting [`RedisOptions::tls_root_cert`] when set.
    fn open(&self, info: redis::ConnectionInfo) -> redis::RedisResult<redis::Client> {
        let Some(pem) = &self.tls_root_cert else {
            return redis::Client::open(info);
        };
        #[cfg(any(feature = "tls-tokio", feature = "tls-smol"))]
        {
            install_crypto_provider();
            redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            )
        }
        #[cfg(not(any(feature = "tls-tokio", feature = "tls-smol")))]
        {
            let _ = (pem, info);
            Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "RedisOptions::tls_root_cert needs feature tls-tokio or tls-smol of volley-redis",
            )))
        }
    }
}

/// Makes rustls's `ring` provider the process default unless one is installed already
/// (rustls needs one, and the redis client does not pick one).
#[cfg(any(feature = "tls-tokio", feature = "tls-smol"))]
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is there either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

struct Shared {
    link: Link,
    /// The relay, with [`RedisOptions::forward_sessions`].
    relay: Option<Arc<RedisRelay>>,
    codec: Codec,
    sharded: ShardedCodec,
    /// Set while the subscriptions are in place.
    subscribed: AtomicBool,
    /// Room subscriptions to make or drop, for the sharded subscriber (dynamic modes).
    rooms: mpsc::UnboundedSender<RoomSubscription>,
    state: Mutex<State>,
}

/// A room channel to subscribe (its room was created on this node) or to leave (deleted).
struct RoomSubscription {
    channel: String,
    subscribe: bool,
}

#[derive(Default)]
struct State {
    run: Running<Outgoing>,
    request_nsp: RequestNamespaces,
    /// Who waits in [`RedisAdapter::subscribed`], each for the room subscriptions handed
    /// over before it asked (their count).
    waiting: Vec<(u64, oneshot::Sender<()>)>,
    /// Room subscriptions handed to the subscriber, and how many of those it has made or
    /// dropped in Redis (or folded into a resubscription).
    rooms_sent: u64,
    rooms_done: u64,
    /// The subscriber's end of [`Shared::rooms`], until it starts.
    rooms_rx: Option<mpsc::UnboundedReceiver<RoomSubscription>>,
    /// Sharded mode: namespaces published in but not subscribed, already warned about.
    unlisted: HashSet<String>,
    /// Where the other nodes' messages go, once started (for the answers given on behalf
    /// of Node servers, see [`answer_for_foreign_nodes`]).
    inbox: Option<Inbox>,
}

/// A node's membership of a cluster over Redis. Cheap to clone (a handle).
#[derive(Clone)]
pub struct RedisAdapter {
    shared: Arc<Shared>,
}

impl fmt::Debug for RedisAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAdapter")
            .field("target", &self.shared.link.options.target)
            .field("key", &self.shared.link.options.key)
            .field("server_count", &self.server_count())
            .finish()
    }
}

impl RedisAdapter {
    /// An adapter connecting with `options`; its tasks run on `runtime`. Nothing connects
    /// before the server starts it.
    pub fn new<R: Runtime>(options: RedisOptions, runtime: R) -> Self {
        let (rooms, rooms_rx) = mpsc::unbounded();
        let codec = Codec::new(&options.key);
        let sharded = ShardedCodec::new(&options.key).with_mode(options.subscription_mode);
        let nsp = options.namespaces.first().map_or("/", String::as_str);
        let count_query = match options.pub_sub {
            PubSub::Classic => ("NUMSUB", codec.request_channel(nsp)),
            PubSub::Sharded => ("SHARDNUMSUB", sharded.channel(nsp)),
        };
        let relay = options
            .forward_sessions
            .then(|| RedisRelay::new(&options, runtime.clone()));
        RedisAdapter {
            shared: Arc::new(Shared {
                relay,
                link: match options.pub_sub {
                    PubSub::Classic => Link::new(options, runtime, count_query),
                    PubSub::Sharded => {
                        let presence = sharded.presence_channel();
                        Link::new(options, runtime, count_query).with_presence(presence)
                    }
                },
                codec,
                sharded,
                subscribed: AtomicBool::new(false),
                rooms,
                state: Mutex::new(State {
                    rooms_rx: Some(rooms_rx),
                    ..State::default()
                }),
            }),
        }
    }

    /// Completes once the subscriptions are in place (at once if they are): from then on
    /// this node receives what the others publish. In a dynamic
    /// [subscription mode](RedisOptions::subscription_mode) that includes the channels of
    /// the rooms created (and the leaving of those deleted) on this node before the call:
    /// once a socket's join has been acknowledged, this tells when broadcasts to that room
    /// from other nodes reach it.
    pub async fn subscribed(&self) {
        let rx = {
            let mut state = self.shared.lock();
            if self.shared.subscribed.load(Ordering::SeqCst) && state.rooms_done >= state.rooms_sent
            {
                return;
            }
            let (tx, rx) = oneshot::channel();
            let target = state.rooms_sent;
            state.waiting.push((target, tx));
            rx
        };
        let _ = rx.await;
    }

    /// Asks Redis for the server count now (and caches it).
    ///
    /// It connects anew within [`RedisOptions::connect_timeout`], so it also tells whether
    /// the options work: a wrong password, an unknown user, a certificate that does not
    /// chain to the trusted CA or a Redis that does not answer come back as the error.
    pub async fn refresh_server_count(&self) -> redis::RedisResult<usize> {
        let mut conn = self.shared.link.connect(None).await?;
        self.shared.link.query_count(&mut conn).await
    }

    /// Stops the adapter's tasks (they end at their next step), the relay's included;
    /// publishing stops at once.
    pub fn stop(&self) {
        self.shared.lock().run.stop();
        if let Some(relay) = &self.shared.relay {
            relay.stop();
        }
    }

    /// The relay that [`Adapter::relay`] offers (with [`RedisOptions::forward_sessions`]),
    /// as its own type: the same object on every call.
    pub fn redis_relay(&self) -> Option<Arc<RedisRelay>> {
        self.shared.relay.clone()
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopped(&self) -> bool {
        self.lock().run.stopped
    }

    fn set_subscribed(&self, on: bool) {
        self.subscribed.store(on, Ordering::SeqCst);
        self.wake_waiting();
    }

    /// Records that the first `done` room subscriptions handed over are in place.
    fn rooms_applied(&self, done: u64) {
        self.lock().rooms_done = done;
        self.wake_waiting();
    }

    fn wake_waiting(&self) {
        let ready = {
            let mut state = self.lock();
            if !self.subscribed.load(Ordering::SeqCst) {
                return;
            }
            let done = state.rooms_done;
            let (ready, still): (Vec<_>, Vec<_>) = std::mem::take(&mut state.waiting)
                .into_iter()
                .partition(|(target, _)| *target <= done);
            state.waiting = still;
            ready
        };
        for (_, w) in ready {
            let _ = w.send(());
        }
    }

    /// Publishes in order. While Redis is away, keeps what comes in the outage buffer
    /// (logged once per outage) and tries to reconnect no more often than the backoff says;
    /// once it is back, waits for the servers counted before to subscribe again (at most
    /// `resubscribe_wait`), then sends what was kept, in order.
    async fn publisher(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
        let mut writer = Writer::new(
            &self.link,
            WriterLog {
                unreachable: "redis adapter: cannot publish, Redis unreachable",
                failed: "redis adapter: publish failed, Redis unreachable",
                again: "redis adapter: publishing again",
            },
        );
        let command = match self.link.options.pub_sub {
            PubSub::Classic => "PUBLISH",
            PubSub::Sharded => "SPUBLISH",
        };
        let limits = self.link.options.outage_buffer;
        // With no outage buffer, the backlog only holds what came in one turn.
        let keep_bytes = match limits.max_bytes {
            0 => usize::MAX,
            n => n,
        };
        let mut backlog = Backlog::new(keep_bytes, limits.max_age);
        // The servers subscribed when Redis last took a publication.
        let mut servers = 1;
        // When the first attempt to send what was kept after an outage came.
        let mut resync_since: Option<Instant> = None;
        let mut open = true;
        loop {
            let waiting = !backlog.is_empty();
            if !waiting && !open {
                return;
            }
            let next = if waiting {
                // Something waits for Redis: wake up for the next attempt even if nothing
                // else comes.
                let retry = (self.link.sleep)(RETRY_PUBLISH);
                match select(rx.next(), retry).await {
                    Either::Left((next, _)) => next,
                    Either::Right(_) => None,
                }
            } else {
                rx.next().await
            };
            match next {
                Some(out) => self.keep(&mut backlog, out),
                None if !waiting => open = false,
                None => {}
            }
            while let Ok(out) = rx.try_recv() {
                self.keep(&mut backlog, out);
            }
            backlog.expire(Instant::now());
            let dropped = backlog.take_dropped();
            if dropped > 0 {
                tracing::warn!(
                    dropped,
                    "redis adapter: publications dropped, Redis away for longer than the outage buffer keeps"
                );
            }
            let resync = writer.is_down() && limits.max_bytes > 0;
            let Some(c) = writer.conn(&self.link).await else {
                if limits.max_bytes == 0 {
                    // Nothing is kept: what Redis cannot take is gone, as with the reference.
                    while backlog.pop().is_some() {}
                }
                continue;
            };
            if resync {
                // Back after an outage: the other servers resubscribe on their own
                // schedule; what was kept goes out once they are there (or the wait is over).
                let since = *resync_since.get_or_insert_with(Instant::now);
                let counted = self.link.query_count(c).await;
                match counted {
                    Ok(n) if n < servers && since.elapsed() < limits.resubscribe_wait => continue,
                    Ok(n) => servers = servers.max(n),
                    Err(e) => {
                        writer.done(Err(e));
                        continue;
                    }
                }
            }
            while let Some(out) = backlog.front() {
                let Some(c) = writer.conn(&self.link).await else {
                    break;
                };
                let sent: redis::RedisResult<i64> = redis::cmd(command)
                    .arg(&out.channel)
                    .arg(&out.payload)
                    .query_async(c)
                    .await;
                match sent {
                    Ok(_) => {
                        backlog.pop();
                        writer.done(Ok::<(), redis::RedisError>(()));
                        if resync_since.is_none() {
                            servers = self.link.server_count();
                        }
                    }
                    Err(e) => {
                        if may_have_run(&e) {
                            // Sent, and the connection failed before the answer: Redis may
                            // have taken it and passed it on, so sending it again could
                            // deliver it twice. As with the reference, it goes with the
                            // connection.
                            backlog.pop();
                            tracing::warn!(
                                error = %e,
                                "redis adapter: a publication in flight when the connection failed may be lost"
                            );
                        }
                        writer.done(Err(e));
                        break;
                    }
                }
            }
            if backlog.is_empty() {
                resync_since = None;
            }
            if limits.max_bytes == 0 {
                // Nothing is kept: what Redis did not take is gone, as with the reference.
                while backlog.pop().is_some() {}
            }
        }
    }

    /// Puts `out` in the backlog.
    fn keep(&self, backlog: &mut Backlog<Outgoing>, out: Outgoing) {
        let size = out.payload.len() + out.channel.len();
        backlog.push(out, size, Instant::now());
    }

    /// Subscribes, delivers, and starts again when the connection drops.
    async fn subscriber(self: Arc<Self>, node: NodeId, inbox: Inbox) {
        let exact: HashSet<String> = self
            .link
            .options
            .namespaces
            .iter()
            .flat_map(|nsp| self.codec.channels(nsp, node))
            .collect();
        let log = SubscriberLog {
            cannot: "redis adapter: cannot subscribe, retrying",
            again: "redis adapter: subscribed again",
            lost: "redis adapter: subscription connection lost, reconnecting",
        };
        let hooks = Classic {
            shared: &self,
            node,
            inbox: &inbox,
        };
        self.link
            .subscriber(&self.codec.patterns(), &exact, None, &log, hooks)
            .await;
    }

    /// The sharded subscriber: one RESP3 connection with `SSUBSCRIBE` of each namespace's
    /// channel and of this node's answer channel, and in a dynamic mode of the channel of
    /// each room that exists here (made and dropped as `rooms` says, all made again after a
    /// reconnection); messages arrive as push messages. A `PING` when nothing arrived for a
    /// count interval finds a connection that died without closing.
    async fn sharded_subscriber(
        self: Arc<Self>,
        node: NodeId,
        inbox: Inbox,
        mut rooms: mpsc::UnboundedReceiver<RoomSubscription>,
    ) {
        let mut retry = Reconnect::new(&self.link);
        let fixed: Vec<String> = self
            .link
            .options
            .namespaces
            .iter()
            .flat_map(|nsp| {
                [
                    self.sharded.channel(nsp),
                    self.sharded.response_channel(nsp, node),
                ]
            })
            .chain(self.link.presence().map(str::to_owned))
            .collect();
        // The room channels wanted now, and how many subscriptions were taken from `rooms`.
        let mut wanted: HashSet<String> = HashSet::new();
        let mut taken: u64 = 0;
        let mut refused_logged = false;
        // Whether (re)subscribing sends every channel at once (see `subscribe_batch`).
        let mut batch = true;
        while !self.stopped() {
            // What came while disconnected is folded in: the connection subscribes the rest.
            while let Ok(r) = rooms.try_recv() {
                taken += 1;
                if r.subscribe {
                    wanted.insert(r.channel);
                } else {
                    wanted.remove(&r.channel);
                }
            }
            let (tx, pushes) = mpsc::unbounded::<redis::PushInfo>();
            let conn = self
                .link
                .timed(async {
                    if let Target::Cluster { .. } = self.link.options.target {
                        let client = self.link.options.cluster_client(None, Some(tx))?;
                        let conn = client.get_async_connection().await?;
                        let rooms: Vec<&String> =
                            wanted.iter().filter(|c| !fixed.contains(c)).collect();
                        subscribe_cluster(&conn, &fixed, &rooms, &mut refused_logged).await?;
                        return Ok(Conn::Cluster(conn));
                    }
                    let client = self.link.options.client().await?;
                    // Push messages (and so subscribing on a multiplexed connection) need RESP3.
                    let info = client.get_connection_info().clone();
                    let settings = info
                        .redis_settings()
                        .clone()
                        .set_protocol(redis::ProtocolVersion::RESP3);
                    let client = redis::Client::open(info.set_redis_settings(settings))?;
                    let config = redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(self.link.options.connect_timeout))
                        .set_response_timeout(Some(self.link.options.connect_timeout))
                        .set_push_sender(move |push| tx.unbounded_send(push));
                    let mut conn = client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?;
                    let rooms: Vec<&String> =
                        wanted.iter().filter(|c| !fixed.contains(c)).collect();
                    if batch {
                        if let Err(e) = subscribe_batch(&mut conn, &fixed, &rooms).await {
                            // From now on one channel per command, which tells which
                            // channel Redis refuses.
                            batch = false;
                            return Err(e);
                        }
                        return Ok(Conn::Single(conn));
                    }
                    // One channel per command: each confirmation is one reply.
                    for channel in &fixed {
                        redis::cmd("SSUBSCRIBE")
                            .arg(channel)
                            .exec_async(&mut conn)
                            .await?;
                    }
                    for channel in rooms {
                        let done = redis::cmd("SSUBSCRIBE")
                            .arg(channel)
                            .exec_async(&mut conn)
                            .await;
                        refused(done, channel, &mut refused_logged)?;
                    }
                    Ok(Conn::Single(conn))
                })
                .await;
            let mut conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    let what = "redis adapter: cannot subscribe (sharded), retrying";
                    retry.failed(&self.link, &e, what).await;
                    continue;
                }
            };
            retry.connected(&self.link, "redis adapter: subscribed again");
            self.set_subscribed(true);
            self.rooms_applied(taken);
            self.link.count_now().await;
            // Confirmations of the room channels this node left, still to come as pushes
            // (they must not read as Redis taking a subscription away).
            let mut leaving: HashMap<String, usize> = HashMap::new();
            let pushes = pushes
                .map(Event::Push)
                .chain(futures::stream::iter([Event::Closed]));
            let mut events = futures::stream::select(pushes, rooms.by_ref().map(Event::Room));
            loop {
                let tick = (self.link.sleep)(self.link.options.count_interval);
                let event = match select(events.next(), tick).await {
                    Either::Left((Some(event), _)) => event,
                    Either::Left((None, _)) => Event::Closed,
                    Either::Right(_) => Event::Idle,
                };
                match event {
                    Event::Push(push) => match push.kind {
                        redis::PushKind::SMessage => {
                            if let [
                                redis::Value::BulkString(channel),
                                redis::Value::BulkString(payload),
                            ] = push.data.as_slice()
                            {
                                let channel = String::from_utf8_lossy(channel);
                                let decoded = self.sharded.decode(node, payload);
                                self.deliver(&inbox, &channel, decoded);
                            }
                            if self.stopped() {
                                return;
                            }
                        }
                        redis::PushKind::SUnsubscribe => {
                            let channel = match push.data.first() {
                                Some(redis::Value::BulkString(c)) => {
                                    String::from_utf8_lossy(c).into_owned()
                                }
                                _ => String::new(),
                            };
                            match leaving.get_mut(&channel) {
                                Some(n) if *n > 1 => *n -= 1,
                                Some(_) => {
                                    leaving.remove(&channel);
                                }
                                // Redis took a subscription away (a slot moved): subscribe
                                // again.
                                None if fixed.contains(&channel) || wanted.contains(&channel) => {
                                    break;
                                }
                                None => {}
                            }
                        }
                        redis::PushKind::Disconnection => break,
                        _ => {}
                    },
                    Event::Closed => break,
                    Event::Room(r) => {
                        taken += 1;
                        let changed = if r.subscribe {
                            wanted.insert(r.channel.clone())
                        } else {
                            wanted.remove(&r.channel)
                        };
                        if changed && !fixed.contains(&r.channel) {
                            let command = if r.subscribe {
                                "SSUBSCRIBE"
                            } else {
                                *leaving.entry(r.channel.clone()).or_default() += 1;
                                "SUNSUBSCRIBE"
                            };
                            let done = redis::cmd(command)
                                .arg(&r.channel)
                                .exec_async(&mut conn)
                                .await;
                            if refused(done, &r.channel, &mut refused_logged).is_err() {
                                break;
                            }
                        }
                        self.rooms_applied(taken);
                    }
                    Event::Idle => {
                        if self.stopped() {
                            return;
                        }
                        if redis::cmd("PING").exec_async(&mut conn).await.is_err() {
                            break;
                        }
                    }
                }
            }
            drop(events);
            drop(conn);
            self.set_subscribed(false);
            self.link.count_alone();
            retry.lost(
                "redis adapter: subscription connection lost, reconnecting",
                None,
            );
        }
    }

    /// Delivers what `decoded` holds, remembering a request's namespace for its answers.
    fn deliver(&self, inbox: &Inbox, channel: &str, decoded: Result<Decoded, DecodeError>) {
        match decoded {
            Ok(Decoded::Message { from, message }) => {
                self.lock().request_nsp.remember(&message);
                if !inbox.deliver(from, message) {
                    self.lock().run.stopped = true;
                }
            }
            Ok(Decoded::Ignored) => {}
            Err(e) => tracing::debug!(channel, error = %e, "redis adapter: message ignored"),
        }
    }
}

/// The classic subscriber's view of the adapter.
struct Classic<'a> {
    shared: &'a Shared,
    node: NodeId,
    inbox: &'a Inbox,
}

impl SubscriberHooks for Classic<'_> {
    fn stopped(&self) -> bool {
        self.shared.stopped()
    }

    fn set_subscribed(&self, on: bool) {
        self.shared.set_subscribed(on);
    }

    fn on_message(&self, channel: &str, payload: &[u8]) {
        let decoded = self.shared.codec.decode(self.node, channel, payload);
        self.shared.deliver(self.inbox, channel, decoded);
    }
}

impl Adapter for RedisAdapter {
    fn close(&self) {
        RedisAdapter::stop(self);
    }

    fn start(&self, node: NodeId, inbox: Inbox) {
        let rx = {
            let mut state = self.shared.lock();
            state.inbox = Some(inbox.clone());
            state.run.start(node)
        };
        let s = &self.shared;
        let spawn = &s.link.spawn;
        spawn(s.clone().publisher(rx).boxed());
        let counter = s.clone();
        spawn(async move { counter.link.counter(|| counter.stopped()).await }.boxed());
        match s.link.options.pub_sub {
            PubSub::Classic => spawn(s.clone().subscriber(node, inbox).boxed()),
            PubSub::Sharded => {
                let rooms = s.lock().rooms_rx.take();
                let Some(rooms) = rooms else {
                    tracing::warn!("redis adapter: started twice; the second start is ignored");
                    return;
                };
                spawn(s.clone().sharded_subscriber(node, inbox, rooms).boxed());
            }
        }
    }

    fn publish(&self, to: Option<NodeId>, message: ClusterMessage) {
        let mut state = self.shared.lock();
        let Some(node) = state.run.node else {
            return;
        };
        let nsp = state.request_nsp.for_answer(&message);
        let options = &self.shared.link.options;
        let out = match options.pub_sub {
            PubSub::Classic => self.shared.codec.encode(node, to, &nsp, &message),
            PubSub::Sharded => {
                let unlisted =
                    message_nsp(&message).filter(|n| !options.namespaces.iter().any(|l| l == n));
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
        state.run.send(out);
        if let Some(inbox) = &state.inbox {
            answer_for_foreign_nodes(&self.shared.link, inbox, &message);
        }
    }

    fn server_count(&self) -> usize {
        self.shared.link.server_count()
    }

    fn relay(&self) -> Option<Arc<dyn Relay>> {
        self.redis_relay().map(|r| r as Arc<dyn Relay>)
    }

    fn tracks_rooms(&self) -> bool {
        self.shared.link.options.dynamic()
    }

    fn room_changed(&self, nsp: &str, change: &RoomChange) {
        let options = &self.shared.link.options;
        if !options.dynamic()
            || !options
                .subscription_mode
                .subscribes_room(change.room.as_str(), change.private)
            || !options.namespaces.iter().any(|n| n == nsp)
        {
            // Only the rooms the mode subscribes, in the listed namespaces (the others are
            // not subscribed at all, their rooms neither).
            return;
        }
        let mut state = self.shared.lock();
        if state.run.stopped {
            return;
        }
        let sent = self.shared.rooms.unbounded_send(RoomSubscription {
            channel: self
                .shared
                .sharded
                .dynamic_channel(nsp, change.room.as_str()),
            subscribe: change.created,
        });
        if sent.is_ok() {
            state.rooms_sent += 1;
        }
    }
}

/// For a request that only Volley nodes understand (`all_rooms`, types 100/101 in the
/// sharded and Streams formats, which Node's `ClusterAdapter` lacks), delivers an empty
/// answer on behalf of each counted server that is not a Volley node, so that the request
/// completes once the Volley nodes answered instead of waiting for its timeout. The Volley
/// nodes are those subscribing the presence channel, as last counted; a server that joined
/// since is waited for as before.
pub(crate) fn answer_for_foreign_nodes(link: &Link, inbox: &Inbox, message: &ClusterMessage) {
    let ClusterMessage::AllRooms { request, .. } = message else {
        return;
    };
    for _ in 0..link.foreign_count() {
        inbox.deliver(
            codec::unknown_node(),
            ClusterMessage::AllRoomsResponse {
                request: *request,
                rooms: Vec::new(),
            },
        );
    }
}

/// What the sharded subscriber waits for.
enum Event {
    /// A push message of the subscription connection.
    Push(redis::PushInfo),
    /// The connection's pushes ended.
    Closed,
    /// A room channel to subscribe or leave.
    Room(RoomSubscription),
    /// Nothing came for a count interval.
    Idle,
}

/// Most channels in one `SSUBSCRIBE` of a [batch](subscribe_batch).
const SUBSCRIBE_BATCH: usize = 512;

/// Subscribes `fixed` and `rooms` in one round trip: `SSUBSCRIBE` commands of up to
/// [`SUBSCRIBE_BATCH`] channels each, written at once, whose replies are one confirmation
/// per channel. Redis refusing a command (an ACL, a channel whose slot is elsewhere) answers
/// it with one error instead of a confirmation per channel, so the replies come short and
/// this fails with the response timeout, or with the error if the count still matches; the
/// caller then subscribes one channel per command.
async fn subscribe_batch(
    conn: &mut redis::aio::MultiplexedConnection,
    fixed: &[String],
    rooms: &[&String],
) -> redis::RedisResult<()> {
    use redis::aio::ConnectionLike;
    let channels: Vec<&String> = fixed.iter().chain(rooms.iter().copied()).collect();
    if channels.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for chunk in channels.chunks(SUBSCRIBE_BATCH) {
        pipe.cmd("SSUBSCRIBE").arg(chunk);
    }
    let replies = conn.req_packed_commands(&pipe, 0, channels.len()).await?;
    match replies.into_iter().find_map(|v| match v {
        redis::Value::ServerError(e) => Some(e),
        _ => None,
    }) {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Subscribes `fixed` and `rooms` on a Redis Cluster: one `SSUBSCRIBE` per channel, all in
/// flight at once, each sent to the master of its channel's slot (so still one round trip
/// per master). A refused room channel is logged once, as [`refused`] says.
async fn subscribe_cluster(
    conn: &redis::cluster_async::ClusterConnection,
    fixed: &[String],
    rooms: &[&String],
    refused_logged: &mut bool,
) -> redis::RedisResult<()> {
    let subscribe = |channel: &String| {
        let mut conn = conn.clone();
        let channel = channel.clone();
        async move {
            redis::cmd("SSUBSCRIBE")
                .arg(&channel)
                .exec_async(&mut conn)
                .await
        }
    };
    for done in futures::future::join_all(fixed.iter().map(subscribe)).await {
        done?;
    }
    let done = futures::future::join_all(rooms.iter().map(|c| subscribe(c))).await;
    for (done, channel) in done.into_iter().zip(rooms) {
        refused(done, channel, refused_logged)?;
    }
    Ok(())
}

/// Passes a room channel's `SSUBSCRIBE` / `SUNSUBSCRIBE` result on when the connection
/// failed; a refusal by Redis (the channel's slot is elsewhere, an ACL) only costs that
/// room its own channel: it is logged once and the room is still reached through the
/// namespace channel by the nodes that publish there.
fn refused(
    done: redis::RedisResult<()>,
    channel: &str,
    logged: &mut bool,
) -> redis::RedisResult<()> {
    match done {
        Err(e) if e.code().is_some() && !e.is_connection_dropped() => {
            if !*logged {
                tracing::warn!(channel, error = %e, "redis adapter: room channel refused");
                *logged = true;
            }
            Ok(())
        }
        other => other,
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

/// Whether a command that failed may still have been carried out: its connection failed
/// (or its answer did not come in time) after it was sent. An error Redis answered with
/// means it was not.
fn may_have_run(e: &redis::RedisError) -> bool {
    e.is_timeout() || e.is_connection_dropped() || (e.is_io_error() && !e.is_connection_refusal())
}
