//! A cluster adapter over one Redis stream, wire-compatible with
//! `@socket.io/redis-streams-adapter` 0.3, that keeps connection state recovery for the whole
//! cluster: a client may recover on any node, Volley or Node.
//!
//! ```no_run
//! # async fn run() {
//! use std::time::Duration;
//! use volley_redis::streams::{StreamsAdapter, StreamsOptions};
//! # let runtime = volley::testing::TestRuntime::new();
//! let adapter = StreamsAdapter::new(StreamsOptions::new("redis://127.0.0.1:6379"), runtime.clone());
//! let io = volley::builder()
//!     .adapter(adapter.clone())
//!     .connection_state_recovery(Duration::from_secs(120), true)
//!     .build(runtime);
//! # }
//! ```
//!
//! # What goes where
//!
//! [`codec`] decides the bytes. Broadcasts without acknowledgement and room and disconnect
//! commands are appended to the stream (`XADD <stream> MAXLEN ~ <max_len> *`) and every node
//! reads it with a blocking `XREAD` on a connection of its own, applying what the others
//! appended, in stream order. Requests that expect answers (`fetch_sockets`, server-side
//! emits, acknowledged broadcasts, `all_rooms`) and their answers go by Pub/Sub, as the
//! reference sends them; the server count is `PUBSUB NUMSUB prefix#/#` (every node
//! subscribes that channel), refreshed every [`RedisOptions::count_interval`].
//!
//! # Connection state recovery
//!
//! With [`volley::Builder::connection_state_recovery`] on, the server asks this adapter
//! ([`Adapter::keeps_sessions`]):
//!
//! - a broadcast's offset is the id of its stream entry: the server delivers it locally
//!   once `XADD` answered (in call order), the other nodes when they read the entry;
//! - a socket that leaves for a recoverable reason leaves `SET sio:session:<pid> <session>
//!   PX <window>`;
//! - a CONNECT with `auth {pid, offset}` takes the session and checks that `offset` is
//!   still in the stream in one transaction (`MULTI GET DEL XRANGE offset offset EXEC`),
//!   then reads the entries after `offset` (`XRANGE`, in batches); the server replays the
//!   broadcasts of the namespace that the session's rooms select.
//!
//! So recovery works across nodes, and a node that restarts misses nothing that is still in
//! the stream. The window is bounded by the stream's length as well as by time: an offset
//! trimmed away (`MAXLEN ~`) cannot be recovered from.
//!
//! # Failures
//!
//! Each task reconnects with backoff ([`RedisOptions::backoff`]). While Redis is away local
//! delivery goes on without offsets (as the reference), sessions are not kept, recoveries
//! fail (the client gets a new session) and the server count drops to 1; the reader then
//! resumes after the last entry it read. Bad data from Redis is dropped (logged once at
//! `warn`, then at `debug`).

pub mod codec;

use crate::codec::{Decoded, Outgoing, unknown_node};
use crate::conn::{
    Link, Reconnect, RequestNamespaces, Running, SubscriberHooks, SubscriberLog, Writer, WriterLog,
};
use crate::{RedisOptions, RedisRelay};
use codec::{
    Encoded, StreamsCodec, decode_session, encode_session, is_offset, message_type, next_offset,
};
use futures::channel::{mpsc, oneshot};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use volley::adapter::{Adapter, Inbox, Relay};
use volley::runtime::Runtime;
use volley_core::NodeId;
use volley_core::cluster::ClusterMessage;
use volley_core::socketio::{SessionState, StoredMessage};

/// How to reach Redis, and the reference adapter's options.
#[derive(Debug, Clone)]
pub struct StreamsOptions {
    /// Where Redis is, the channel prefix ([`RedisOptions::key`], the reference's
    /// `channelPrefix`), the namespaces whose channel is subscribed by name (so that
    /// `NUMSUB` counts this node), the count interval, backoff and connect timeout, and
    /// whether requests for other nodes' sessions are forwarded
    /// ([`RedisOptions::forward_sessions`], set with [`StreamsOptions::forward_sessions`]).
    pub redis: RedisOptions,
    /// The stream (`streamName`): `socket.io`.
    pub stream_name: String,
    /// About how many entries the stream keeps (`maxLen`, `XADD MAXLEN ~`): 10 000.
    pub max_len: usize,
    /// Most entries one `XREAD` returns (`readCount`): 100.
    pub read_count: usize,
    /// How long one `XREAD` blocks (`blockTimeInMs`): 5 s.
    pub block: Duration,
    /// The prefix of session keys (`sessionKeyPrefix`): `sio:session:`.
    pub session_key_prefix: String,
}

impl StreamsOptions {
    /// Options for the server at `url`, with the reference's defaults.
    pub fn new(url: &str) -> Self {
        StreamsOptions {
            redis: RedisOptions::new(url),
            stream_name: "socket.io".to_owned(),
            max_len: 10_000,
            read_count: 100,
            block: Duration::from_secs(5),
            session_key_prefix: "sio:session:".to_owned(),
        }
    }

    /// Sets the stream's name.
    pub fn stream_name(mut self, name: &str) -> Self {
        self.stream_name = name.to_owned();
        self
    }

    /// Forwards requests for sessions of other nodes to their owner over Redis Pub/Sub, so
    /// that no sticky sessions are needed: [`RedisOptions::forward_sessions`] of
    /// [`StreamsOptions::redis`], off by default, where its costs are described. Every
    /// Volley node of the cluster must turn it on.
    ///
    /// With connection state recovery on, the server then also keeps the session of every
    /// connected socket under the session key (written at connect and at each room change,
    /// refreshed every half recovery window), so that a client whose node dies recovers on
    /// another one: one `SET` per connect and per room change, and one per socket every half
    /// window.
    pub fn forward_sessions(mut self) -> Self {
        self.redis.forward_sessions = true;
        self
    }

    /// Sets about how many entries the stream keeps.
    pub fn max_len(mut self, n: usize) -> Self {
        self.max_len = n;
        self
    }
}

/// Most entries one `XRANGE` of a recovery reads.
const RESTORE_BATCH: usize = 1000;

/// How often a task blocked on Redis looks whether the adapter was stopped.
const STOP_CHECK: Duration = Duration::from_millis(500);

/// What the writer does, in order.
enum Command {
    /// `XADD`; the entry id (or `None` on failure) goes to `reply`.
    Add {
        fields: Vec<(&'static str, String)>,
        reply: Option<oneshot::Sender<Option<String>>>,
    },
    /// `PUBLISH`.
    Publish(Outgoing),
    /// `SET key value PX ttl`.
    Persist {
        key: String,
        value: String,
        ttl: Duration,
    },
}

#[derive(Default)]
struct State {
    run: Running<Command>,
    request_nsp: RequestNamespaces,
    subscribed: bool,
    reading: bool,
    waiting: Vec<oneshot::Sender<()>>,
    /// Where the other nodes' messages go, once started (for the answers given on behalf
    /// of Node servers).
    inbox: Option<Inbox>,
}

struct Shared {
    /// The options; [`Link`] holds their [`StreamsOptions::redis`] part.
    options: StreamsOptions,
    link: Link,
    /// The relay, with [`RedisOptions::forward_sessions`].
    relay: Option<Arc<RedisRelay>>,
    codec: StreamsCodec,
    state: Mutex<State>,
    /// A connection for recoveries, which run beside the writer's commands.
    commands: Mutex<Option<crate::conn::Conn>>,
    /// Whether bad data from Redis was reported at `warn` already.
    bad_data_logged: AtomicBool,
}

/// A node's membership of a cluster over a Redis stream. Cheap to clone (a handle).
#[derive(Clone)]
pub struct StreamsAdapter {
    shared: Arc<Shared>,
}

impl fmt::Debug for StreamsAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamsAdapter")
            .field("target", &self.shared.link.options.target)
            .field("stream", &self.shared.options.stream_name)
            .field("server_count", &self.server_count())
            .finish()
    }
}

impl StreamsAdapter {
    /// An adapter connecting with `options`; its tasks run on `runtime`. Nothing connects
    /// before the server starts it.
    pub fn new<R: Runtime>(options: StreamsOptions, runtime: R) -> Self {
        let codec = StreamsCodec::new(&options.redis.key);
        let nsp = options.redis.namespaces.first().map_or("/", String::as_str);
        let count_query = ("NUMSUB", codec.channel(nsp));
        let relay = options
            .redis
            .forward_sessions
            .then(|| RedisRelay::new(&options.redis, runtime.clone()));
        StreamsAdapter {
            shared: Arc::new(Shared {
                relay,
                link: Link::new(options.redis.clone(), runtime, count_query)
                    .with_presence(codec.presence_channel()),
                codec,
                options,
                state: Mutex::new(State::default()),
                commands: Mutex::new(None),
                bad_data_logged: AtomicBool::new(false),
            }),
        }
    }

    /// Completes once this node receives what the others send: subscribed, and reading the
    /// stream from its end (at once if both hold).
    pub async fn ready(&self) {
        let rx = {
            let mut state = self.shared.lock();
            if state.subscribed && state.reading {
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
        let mut conn = self.shared.link.connect(None).await?;
        self.shared.link.query_count(&mut conn).await
    }

    /// Stops the adapter's tasks (they end within about half a second), the relay's
    /// included; publishing stops at once.
    pub fn stop(&self) {
        self.shared.lock().run.stop();
        if let Some(relay) = &self.shared.relay {
            relay.stop();
        }
    }

    /// The relay that [`Adapter::relay`] offers (with [`StreamsOptions::forward_sessions`]),
    /// as its own type: the same object on every call.
    pub fn redis_relay(&self) -> Option<Arc<RedisRelay>> {
        self.shared.relay.clone()
    }
}

/// A Redis reply as text.
fn text(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::VerbatimString { text, .. } => Some(text.clone()),
        redis::Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// The items of an array-like reply.
fn items(v: &redis::Value) -> Vec<&redis::Value> {
    match v {
        redis::Value::Array(a) | redis::Value::Set(a) => a.iter().collect(),
        redis::Value::Map(m) => m.iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    }
}

/// Stream entries `[[id, [field, value, …]], …]` (an `XRANGE` reply); malformed ones are
/// left out.
fn entries(v: &redis::Value) -> Vec<(String, Vec<(String, String)>)> {
    items(v)
        .into_iter()
        .filter_map(|entry| {
            let parts = items(entry);
            let [id, fields] = parts.as_slice() else {
                return None;
            };
            let flat = items(fields);
            let fields = flat
                .chunks(2)
                .filter_map(|kv| Some((text(kv.first()?)?, text(kv.get(1)?)?)))
                .collect();
            Some((text(id)?, fields))
        })
        .collect()
}

/// The entries of an `XREAD` reply for one stream (nil when it timed out).
fn read_entries(v: &redis::Value) -> Vec<(String, Vec<(String, String)>)> {
    match v {
        redis::Value::Map(streams) => streams.first().map(|(_, e)| entries(e)).unwrap_or_default(),
        redis::Value::Array(streams) => streams
            .first()
            .map(|s| items(s).get(1).map(|e| entries(e)).unwrap_or_default())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stopped(&self) -> bool {
        self.lock().run.stopped
    }

    fn bad_data(&self, what: &str, error: &dyn fmt::Display) {
        if self.bad_data_logged.swap(true, Ordering::Relaxed) {
            tracing::debug!(what, %error, "redis streams adapter: bad data dropped");
        } else {
            tracing::warn!(what, %error, "redis streams adapter: bad data dropped");
        }
    }

    /// Sets the subscribed or reading flag; wakes the waiters once both hold.
    fn set_flag(&self, reading: bool, on: bool) {
        let waiting = {
            let mut state = self.lock();
            if reading {
                state.reading = on;
            } else {
                state.subscribed = on;
            }
            if state.reading && state.subscribed {
                std::mem::take(&mut state.waiting)
            } else {
                Vec::new()
            }
        };
        for w in waiting {
            let _ = w.send(());
        }
    }

    /// Runs the commands in order; while Redis is away, fails them (logged once per outage)
    /// and tries to reconnect no more often than the backoff says.
    async fn writer(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut writer = Writer::new(
            &self.link,
            WriterLog {
                unreachable: "redis streams adapter: Redis unreachable",
                failed: "redis streams adapter: write failed, Redis unreachable",
                again: "redis streams adapter: writing again",
            },
        );
        while let Some(command) = rx.next().await {
            let Some(c) = writer.conn(&self.link).await else {
                // Dropping a reply's sender answers `None`.
                continue;
            };
            let done = match command {
                Command::Add { fields, reply } => {
                    let mut cmd = redis::cmd("XADD");
                    cmd.arg(&self.options.stream_name)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(self.options.max_len)
                        .arg("*");
                    for (k, v) in &fields {
                        cmd.arg(*k).arg(v);
                    }
                    let id = cmd.query_async::<redis::Value>(c).await;
                    let ok = id.as_ref().map(|_| ()).map_err(|e| e.to_string());
                    if let Some(reply) = reply {
                        let _ = reply.send(id.ok().as_ref().and_then(text));
                    }
                    ok
                }
                Command::Publish(out) => redis::cmd("PUBLISH")
                    .arg(&out.channel)
                    .arg(&out.payload)
                    .query_async::<i64>(c)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Command::Persist { key, value, ttl } => redis::cmd("SET")
                    .arg(&key)
                    .arg(&value)
                    .arg("PX")
                    .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1))
                    .query_async::<redis::Value>(c)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            writer.done(done);
        }
    }

    /// Reads the stream from its end (or after the last entry read, on reconnection) and
    /// delivers what the other nodes appended.
    async fn reader(self: Arc<Self>, node: NodeId, inbox: Inbox) {
        let mut last: Option<String> = None;
        let mut retry = Reconnect::new(&self.link);
        let block = self.options.block;
        let block_ms = u64::try_from(block.as_millis()).unwrap_or(5000).max(1);
        let stream = self.options.stream_name.clone();
        while !self.stopped() {
            let start = async {
                let mut conn = self
                    .link
                    .connect(Some(block + self.link.options.connect_timeout))
                    .await?;
                let end = match &last {
                    Some(id) => id.clone(),
                    // The newest entry, so that nothing appended from now on is missed.
                    None => redis::cmd("XREVRANGE")
                        .arg(&stream)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(1)
                        .query_async::<redis::Value>(&mut conn)
                        .await
                        .map(|v| entries(&v).into_iter().next().map(|(id, _)| id))?
                        .unwrap_or_else(|| "0-0".to_owned()),
                };
                Ok::<_, redis::RedisError>((conn, end))
            };
            let (mut conn, end) = match start.await {
                Ok(c) => c,
                Err(e) => {
                    let what = "redis streams adapter: cannot read the stream, retrying";
                    retry.failed(&self.link, &e, what).await;
                    continue;
                }
            };
            retry.connected(
                &self.link,
                "redis streams adapter: reading the stream again",
            );
            last = Some(end);
            self.set_flag(true, true);
            while !self.stopped() {
                let from = last.clone().unwrap_or_else(|| "0-0".to_owned());
                let read = redis::cmd("XREAD")
                    .arg("COUNT")
                    .arg(self.options.read_count.max(1))
                    .arg("BLOCK")
                    .arg(block_ms)
                    .arg("STREAMS")
                    .arg(&stream)
                    .arg(&from)
                    .query_async::<redis::Value>(&mut conn)
                    .await;
                match read {
                    Ok(v) => {
                        for (id, fields) in read_entries(&v) {
                            self.on_entry(node, &inbox, &id, &fields);
                            last = Some(id);
                        }
                    }
                    Err(e) => {
                        let what = "redis streams adapter: reading the stream failed, reconnecting";
                        retry.lost(what, Some(&e));
                        break;
                    }
                }
            }
            self.set_flag(true, false);
        }
    }

    fn on_entry(&self, node: NodeId, inbox: &Inbox, id: &str, fields: &[(String, String)]) {
        match self.codec.decode_entry(node, fields) {
            Ok(Decoded::Message { from, message }) => {
                if !inbox.deliver_at(from, message, id.to_owned()) {
                    self.lock().run.stopped = true;
                }
            }
            Ok(Decoded::Ignored) => {}
            Err(e) => self.bad_data("stream entry", &e),
        }
    }

    /// Subscribes, delivers, and starts again when the connection drops.
    async fn subscriber(self: Arc<Self>, node: NodeId, inbox: Inbox) {
        let exact: HashSet<String> = self
            .link
            .options
            .namespaces
            .iter()
            .map(|nsp| self.codec.channel(nsp))
            .chain(self.link.presence().map(str::to_owned))
            .collect();
        let log = SubscriberLog {
            cannot: "redis streams adapter: cannot subscribe, retrying",
            again: "redis streams adapter: subscribed again",
            lost: "redis streams adapter: subscription connection lost, reconnecting",
        };
        let hooks = Subscription {
            shared: &self,
            node,
            inbox: &inbox,
        };
        self.link
            .subscriber(
                &[self.codec.pattern()],
                &exact,
                Some(STOP_CHECK),
                &log,
                hooks,
            )
            .await;
    }

    fn send(&self, command: Command) {
        self.lock().run.send(command);
    }

    /// The connection for recoveries, connecting when there is none.
    async fn command_conn(&self) -> redis::RedisResult<crate::conn::Conn> {
        let cached = self
            .commands
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(c) = cached {
            return Ok(c);
        }
        let c = self.link.connect(None).await?;
        *self.commands.lock().unwrap_or_else(PoisonError::into_inner) = Some(c.clone());
        Ok(c)
    }

    /// Takes session `pid` if `offset` is still in the stream, with the entries of `nsp`
    /// after it.
    async fn restore(
        &self,
        pid: &str,
        offset: &str,
        nsp: &str,
    ) -> redis::RedisResult<Option<(SessionState, Vec<StoredMessage>)>> {
        if !is_offset(offset) {
            return Ok(None);
        }
        let mut conn = self.command_conn().await?;
        let key = format!("{}{pid}", self.options.session_key_prefix);
        let stream = &self.options.stream_name;
        let (raw, kept): (Option<Vec<u8>>, redis::Value) = redis::pipe()
            .atomic()
            .cmd("GET")
            .arg(&key)
            .cmd("DEL")
            .arg(&key)
            .ignore()
            .cmd("XRANGE")
            .arg(stream)
            .arg(offset)
            .arg(offset)
            .query_async(&mut conn)
            .await?;
        let Some(raw) = raw else {
            return Ok(None);
        };
        if entries(&kept).is_empty() {
            return Ok(None);
        }
        let session = match decode_session(&raw) {
            Ok(s) => s,
            Err(e) => {
                self.bad_data("session", &e);
                return Ok(None);
            }
        };
        let mut stored = Vec::new();
        let mut from = next_offset(offset);
        // Bounded: entries appended faster than they are read cannot keep this going.
        let batches = self.options.max_len / RESTORE_BATCH + 2;
        for _ in 0..batches {
            let Some(start) = from.take() else {
                break;
            };
            let reply: redis::Value = redis::cmd("XRANGE")
                .arg(stream)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(RESTORE_BATCH)
                .query_async(&mut conn)
                .await?;
            let batch = entries(&reply);
            let full = batch.len() >= RESTORE_BATCH;
            for (id, fields) in &batch {
                let of = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v);
                let broadcast = message_type::BROADCAST.to_string();
                if of("nsp").map(String::as_str) == Some(nsp) && of("type") == Some(&broadcast) {
                    // Every sender counts here, this node included.
                    match self.codec.decode_entry(unknown_node(), fields) {
                        Ok(Decoded::Message { message, .. }) => stored.push(StoredMessage {
                            offset: id.clone(),
                            message,
                        }),
                        Ok(Decoded::Ignored) => {}
                        Err(e) => self.bad_data("stream entry", &e),
                    }
                }
                from = next_offset(id);
            }
            if !full {
                break;
            }
        }
        Ok(Some((session, stored)))
    }
}

/// The subscriber's view of the adapter.
struct Subscription<'a> {
    shared: &'a Shared,
    node: NodeId,
    inbox: &'a Inbox,
}

impl SubscriberHooks for Subscription<'_> {
    fn stopped(&self) -> bool {
        self.shared.stopped()
    }

    fn set_subscribed(&self, on: bool) {
        self.shared.set_flag(false, on);
    }

    fn on_message(&self, channel: &str, payload: &[u8]) {
        let shared = self.shared;
        match shared.codec.decode_published(self.node, channel, payload) {
            Ok(Decoded::Message { from, message }) => {
                shared.lock().request_nsp.remember(&message);
                if !self.inbox.deliver(from, message) {
                    shared.lock().run.stopped = true;
                }
            }
            Ok(Decoded::Ignored) => {}
            Err(e) => shared.bad_data("message", &e),
        }
    }
}

impl Adapter for StreamsAdapter {
    fn close(&self) {
        StreamsAdapter::stop(self);
    }

    fn start(&self, node: NodeId, inbox: Inbox) {
        if let crate::Target::Cluster { .. } = self.shared.link.options.target {
            // Its session transaction spans keys of several slots.
            tracing::error!(
                "redis streams adapter: a Redis Cluster target is not supported (give one \
                 node's URL); the adapter does not start"
            );
            return;
        }
        let rx = {
            let mut state = self.shared.lock();
            state.inbox = Some(inbox.clone());
            state.run.start(node)
        };
        let s = &self.shared;
        let spawn = &s.link.spawn;
        spawn(s.clone().writer(rx).boxed());
        let counter = s.clone();
        spawn(async move { counter.link.counter(|| counter.stopped()).await }.boxed());
        spawn(s.clone().subscriber(node, inbox.clone()).boxed());
        spawn(s.clone().reader(node, inbox).boxed());
    }

    fn publish(&self, to: Option<NodeId>, message: ClusterMessage) {
        let encoded = {
            let mut state = self.shared.lock();
            let Some(node) = state.run.node else {
                return;
            };
            let nsp = state.request_nsp.for_answer(&message);
            let encoded = self.shared.codec.encode(node, to, &nsp, &message);
            if let Some(inbox) = &state.inbox {
                crate::answer_for_foreign_nodes(&self.shared.link, inbox, &message);
            }
            encoded
        };
        self.shared.send(match encoded {
            Encoded::Entry(fields) => Command::Add {
                fields,
                reply: None,
            },
            Encoded::Publish(out) => Command::Publish(out),
        });
    }

    fn server_count(&self) -> usize {
        self.shared.link.server_count()
    }

    fn keeps_sessions(&self) -> bool {
        true
    }

    fn relay(&self) -> Option<Arc<dyn Relay>> {
        self.redis_relay().map(|r| r as Arc<dyn Relay>)
    }

    fn publish_broadcast(&self, message: ClusterMessage) -> BoxFuture<'static, Option<String>> {
        let node = self.shared.lock().run.node;
        let Some(node) = node else {
            return Box::pin(futures::future::ready(None));
        };
        match self.shared.codec.encode(node, None, "", &message) {
            Encoded::Entry(fields) => {
                let (tx, rx) = oneshot::channel();
                self.shared.send(Command::Add {
                    fields,
                    reply: Some(tx),
                });
                Box::pin(async move { rx.await.ok().flatten() })
            }
            Encoded::Publish(out) => {
                self.shared.send(Command::Publish(out));
                Box::pin(futures::future::ready(None))
            }
        }
    }

    fn persist_session(&self, session: SessionState, ttl: Duration) {
        let key = format!("{}{}", self.shared.options.session_key_prefix, session.pid);
        self.shared.send(Command::Persist {
            key,
            value: encode_session(&session),
            ttl,
        });
    }

    fn restore_session(
        &self,
        pid: &str,
        offset: &str,
        nsp: &str,
    ) -> BoxFuture<'static, Option<(SessionState, Vec<StoredMessage>)>> {
        let shared = self.shared.clone();
        let (pid, offset, nsp) = (pid.to_owned(), offset.to_owned(), nsp.to_owned());
        Box::pin(async move {
            // Connecting, and a few round trips beyond.
            let limit = shared.link.options.connect_timeout * 4;
            match shared
                .link
                .timed_for(limit, shared.restore(&pid, &offset, &nsp))
                .await
            {
                Ok(found) => found,
                Err(e) => {
                    // The cached connection may be the broken one.
                    *shared
                        .commands
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = None;
                    tracing::warn!(error = %e, "redis streams adapter: cannot restore a session");
                    None
                }
            }
        })
    }
}
