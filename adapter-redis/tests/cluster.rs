//! Volley nodes in one process, each with its own RedisAdapter on a redis-server this test
//! starts, and raw Socket.IO clients over WebSocket; in the classic mode and the sharded
//! mode's three subscription modes (the tests shared with the classic mode run the static
//! one, which has no per-room subscriptions; the dynamic ones have their own below).

use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use volley::operators::BroadcastAckError;
use volley::{Data, Socket};
use volley_redis::{PubSub, RedisAdapter, RedisOptions, SubscriptionMode};
use volley_tokio::TokioRuntime;

mod common;
use common::{Client, LIMIT, Redis, serve};

struct Server {
    io: volley::Io<TokioRuntime>,
    adapter: RedisAdapter,
    port: u16,
}

/// The builder's `request_timeout` of every node.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Fails loudly unless redis-server is 7 or later (sharded Pub/Sub).
fn require_redis_7() {
    common::ensure_redis_server();
    let out = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .expect("redis-server --version runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let major = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix("v="))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if m >= 7 => {}
        _ => panic!("the sharded mode needs redis-server 7 or later, found: {text}"),
    }
}

/// A node in `pub_sub`; sharded means the static subscription mode.
async fn start(redis: &Redis, pub_sub: PubSub) -> Server {
    let mut options = RedisOptions::new(&redis.url());
    if pub_sub == PubSub::Sharded {
        options = options.sharded_mode(SubscriptionMode::Static);
    }
    assert_eq!(options.pub_sub, pub_sub);
    start_with(options).await
}

/// A node with `options` (and quick reconnections); its sockets answer `join` and `leave`.
async fn start_with(mut options: RedisOptions) -> Server {
    let rt = TokioRuntime::current();
    if options.pub_sub == PubSub::Sharded {
        require_redis_7();
    }
    options.backoff = (Duration::from_millis(50), Duration::from_millis(500));
    options.connect_timeout = Duration::from_millis(500);
    let adapter = RedisAdapter::new(options, rt.clone());
    let io = volley::builder()
        .adapter(adapter.clone())
        .request_timeout(REQUEST_TIMEOUT)
        .build(rt);
    io.ns("/")
        .on("join", |s: Socket, Data(room): Data<String>| async move {
            s.join(room.as_str());
            true
        });
    io.ns("/")
        .on("leave", |s: Socket, Data(room): Data<String>| async move {
            s.leave(room.as_str());
            true
        });
    let port = serve(&io).await;
    timeout(LIMIT, adapter.subscribed())
        .await
        .expect("subscribed in time");
    Server { io, adapter, port }
}

async fn expect_count(servers: &[&Server], n: usize) {
    for s in servers {
        let count = timeout(LIMIT, s.adapter.refresh_server_count())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(count, n);
        assert_eq!(s.io.server_count(), n);
    }
}

/// A node that subscribes like a server, so the others count it, and never answers: a raw
/// Redis connection with `SUBSCRIBE` (classic) or `SSUBSCRIBE` (sharded) of the channel the
/// server count is taken from. Dropping it closes the connection.
async fn silent_node(redis: &Redis, pub_sub: PubSub) -> TcpStream {
    let (command, channel) = match pub_sub {
        PubSub::Sharded => ("SSUBSCRIBE", "socket.io#/#"),
        _ => ("SUBSCRIBE", "socket.io-request#/#"),
    };
    let mut tcp = TcpStream::connect(("127.0.0.1", redis.port)).await.unwrap();
    let req = format!(
        "*2\r\n${}\r\n{command}\r\n${}\r\n{channel}\r\n",
        command.len(),
        channel.len()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    // The confirmation names the channel.
    timeout(LIMIT, async {
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains(channel) {
            let mut buf = [0u8; 256];
            let n = tcp.read(&mut buf).await.unwrap();
            assert!(n > 0, "redis closed the silent node's connection");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("subscription confirmed in time");
    tcp
}

async fn broadcast_rooms_and_fetch(pub_sub: PubSub) {
    let redis = Redis::start().await;
    let a = start(&redis, pub_sub).await;
    let b = start(&redis, pub_sub).await;
    let c = start(&redis, pub_sub).await;
    expect_count(&[&a, &b, &c], 3).await;
    let mut ca = Client::connect(a.port).await;
    let mut cb = Client::connect(b.port).await;
    let mut cc = Client::connect(c.port).await;

    // A broadcast reaches the clients of every node.
    a.io.emit("hello", &"all").unwrap();
    for cl in [&mut ca, &mut cb, &mut cc] {
        assert_eq!(cl.event().await, serde_json::json!(["hello", "all"]));
    }

    // Room membership across nodes: node A puts C's client in a room.
    a.io.to(cc.sid.as_str()).sockets_join(["vip"]);
    cb.call("join", &[json!("other")]).await;
    // Ordering on one Redis connection: the join arrives at C before this broadcast.
    a.io.to("vip").emit("vip-only", &1).unwrap();
    assert_eq!(cc.event().await, serde_json::json!(["vip-only", 1]));
    // A room joined locally on B, broadcast to from C.
    c.io.to("other").emit("other-only", &3).unwrap();
    assert_eq!(cb.event().await, serde_json::json!(["other-only", 3]));
    b.io.emit("marker", &2).unwrap();
    assert_eq!(
        ca.event().await,
        serde_json::json!(["marker", 2]),
        "no room broadcast went to A"
    );
    assert_eq!(
        cb.event().await,
        serde_json::json!(["marker", 2]),
        "vip-only did not go to B"
    );
    assert_eq!(
        cc.event().await,
        serde_json::json!(["marker", 2]),
        "other-only did not go to C"
    );

    // fetch_sockets sees every node's sockets, with their rooms.
    let sockets = timeout(LIMIT, a.io.fetch_sockets()).await.unwrap();
    let mut ids: Vec<String> = sockets.iter().map(|s| s.id().to_string()).collect();
    ids.sort();
    let mut want = vec![ca.sid.clone(), cb.sid.clone(), cc.sid.clone()];
    want.sort();
    assert_eq!(ids, want);
    let remote_c = sockets.iter().find(|s| s.id().as_str() == cc.sid).unwrap();
    assert!(remote_c.rooms().iter().any(|r| r.as_str() == "vip"));
    assert!(!remote_c.is_local());
    let remote_b = sockets.iter().find(|s| s.id().as_str() == cb.sid).unwrap();
    assert!(remote_b.rooms().iter().any(|r| r.as_str() == "other"));
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_rooms_and_fetch_across_nodes() {
    broadcast_rooms_and_fetch(PubSub::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_broadcast_rooms_and_fetch_across_nodes() {
    broadcast_rooms_and_fetch(PubSub::Sharded).await;
}

/// Three nodes and one that is counted but never answers: acknowledgements and
/// `fetch_sockets` wait for it until their timeout, then give what the others sent.
async fn silent_node_partial_results(pub_sub: PubSub) {
    let redis = Redis::start().await;
    let a = start(&redis, pub_sub).await;
    let b = start(&redis, pub_sub).await;
    let c = start(&redis, pub_sub).await;
    expect_count(&[&a, &b, &c], 3).await;
    let _silent = silent_node(&redis, pub_sub).await;
    expect_count(&[&a, &b, &c], 4).await;
    let mut ca = Client::connect(a.port).await;
    let mut cb = Client::connect(b.port).await;
    let mut cc = Client::connect(c.port).await;

    // Every client answers at once with its own id; the silent node never reports a count.
    let limit = Duration::from_millis(1500);
    let started = Instant::now();
    let acks = a.io.timeout(limit).emit_with_ack("ask", &"q");
    for cl in [&mut ca, &mut cb, &mut cc] {
        let sid = serde_json::Value::from(cl.sid.clone());
        assert_eq!(cl.answer(&sid).await, serde_json::json!(["ask", "q"]));
    }
    let answered = started.elapsed();
    let result = timeout(LIMIT, acks).await.expect("the acks resolve");
    let elapsed = started.elapsed();
    assert!(
        answered < limit,
        "the clients answered before the timeout ({answered:?})"
    );
    assert!(
        elapsed >= limit,
        "resolved at {elapsed:?}, before the {limit:?} timeout"
    );
    let partial = match result {
        Err(BroadcastAckError::Partial(p)) => p,
        other => panic!("expected a partial result, got {other:?}"),
    };
    assert_eq!(partial.missing, 1, "one node never reported its count");
    let mut got: Vec<(String, String)> = partial
        .responses
        .iter()
        .map(|r| (r.socket.to_string(), r.data::<String>().unwrap()))
        .collect();
    got.sort();
    let mut want: Vec<(String, String)> = [&ca, &cb, &cc]
        .iter()
        .map(|cl| (cl.sid.clone(), cl.sid.clone()))
        .collect();
    want.sort();
    assert_eq!(
        got, want,
        "the answers of every real client, from every node"
    );

    // fetch_sockets waits the request timeout for the silent node, then lists the others'.
    let started = Instant::now();
    let sockets = timeout(LIMIT, a.io.fetch_sockets())
        .await
        .expect("fetch_sockets resolves");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= REQUEST_TIMEOUT,
        "resolved at {elapsed:?}, before the request timeout"
    );
    let mut ids: Vec<String> = sockets.iter().map(|s| s.id().to_string()).collect();
    ids.sort();
    let mut want: Vec<String> = [&ca, &cb, &cc].iter().map(|cl| cl.sid.clone()).collect();
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(
        timeout(LIMIT, a.io.pending_request_count()).await.unwrap(),
        0
    );
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_node_leaves_partial_results() {
    silent_node_partial_results(PubSub::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_silent_node_leaves_partial_results() {
    silent_node_partial_results(PubSub::Sharded).await;
}

async fn redis_restart(pub_sub: PubSub) {
    let redis = Redis::start().await;
    let a = start(&redis, pub_sub).await;
    let b = start(&redis, pub_sub).await;
    expect_count(&[&a, &b], 2).await;
    let mut ca = Client::connect(a.port).await;
    let mut cb = Client::connect(b.port).await;
    b.io.emit("n", &0).unwrap();
    assert_eq!(ca.event().await, serde_json::json!(["n", 0]));
    assert_eq!(cb.event().await, serde_json::json!(["n", 0]));

    let port = redis.stop().await;
    // Local delivery goes on while Redis is away; publishing fails quietly.
    for i in 1..20 {
        b.io.emit("n", &i).unwrap();
        assert_eq!(cb.event().await, serde_json::json!(["n", i]));
    }

    let redis = Redis::start_on(port).await;
    // Delivery resumes: keep broadcasting from B until A's client hears one.
    let resumed = timeout(LIMIT, async {
        let mut i = 100;
        loop {
            i += 1;
            b.io.emit("n", &i).unwrap();
            assert_eq!(cb.event().await, serde_json::json!(["n", i]));
            if let Ok(ev) = timeout(Duration::from_millis(200), ca.event()).await {
                return ev;
            }
        }
    })
    .await
    .expect("cluster delivery resumed");
    assert_eq!(resumed[0], "n");
    timeout(LIMIT, a.adapter.subscribed()).await.unwrap();
    timeout(LIMIT, b.adapter.subscribed()).await.unwrap();
    expect_count(&[&a, &b], 2).await;
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_during_broadcasts() {
    redis_restart(PubSub::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_redis_restart_during_broadcasts() {
    redis_restart(PubSub::Sharded).await;
}

// ---- the sharded mode's dynamic subscriptions ----

/// A sharded node in `mode`.
async fn start_sharded(redis: &Redis, mode: SubscriptionMode) -> Server {
    let options = RedisOptions::new(&redis.url()).sharded_mode(mode);
    assert_eq!(options.subscription_mode, mode);
    let server = start_with(options).await;
    assert_eq!(
        volley::adapter::Adapter::tracks_rooms(&server.adapter),
        mode != SubscriptionMode::Static
    );
    server
}

/// `socket.io#/#<room>#`: a room's channel in `/`.
fn room_channel(room: &str) -> String {
    format!("socket.io#/#{room}#")
}

/// A plain connection to Redis, to ask it what is subscribed.
async fn inspect(redis: &Redis) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(redis.url()).unwrap();
    timeout(LIMIT, client.get_multiplexed_async_connection())
        .await
        .expect("connected in time")
        .expect("connected")
}

/// `PUBSUB SHARDNUMSUB channel`: how many connections subscribe `channel`.
async fn shard_numsub(conn: &mut redis::aio::MultiplexedConnection, channel: &str) -> usize {
    let counts: Vec<(String, usize)> = redis::cmd("PUBSUB")
        .arg("SHARDNUMSUB")
        .arg(channel)
        .query_async(conn)
        .await
        .unwrap();
    counts.into_iter().next().map_or(0, |(_, n)| n)
}

/// `PUBSUB SHARDCHANNELS socket.io#/#*`, sorted.
async fn shard_channels(conn: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let mut channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("SHARDCHANNELS")
        .arg("socket.io#/#*")
        .query_async(conn)
        .await
        .unwrap();
    channels.sort();
    channels
}

/// Waits (bounded) until `channel` has `n` subscribers: for changes nothing announces, such
/// as the rooms a disconnected socket leaves behind.
async fn await_numsub(conn: &mut redis::aio::MultiplexedConnection, channel: &str, n: usize) {
    timeout(LIMIT, async {
        while shard_numsub(conn, channel).await != n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{channel} has {n} subscribers in time"));
}

/// A raw connection subscribed to one channel, which keeps what arrives on it: proof of
/// which channel a message was published on. It counts as a subscriber of that channel.
struct Spy {
    tcp: TcpStream,
    seen: String,
}

impl Spy {
    async fn on(redis: &Redis, channel: &str) -> Spy {
        let mut spy = Spy {
            tcp: TcpStream::connect(("127.0.0.1", redis.port)).await.unwrap(),
            seen: String::new(),
        };
        let req = format!(
            "*2\r\n$10\r\nSSUBSCRIBE\r\n${}\r\n{channel}\r\n",
            channel.len()
        );
        spy.tcp.write_all(req.as_bytes()).await.unwrap();
        spy.until("ssubscribe").await;
        spy
    }

    /// Reads until `needle` has arrived; returns everything up to it and keeps the rest.
    async fn until(&mut self, needle: &str) -> String {
        timeout(LIMIT, async {
            loop {
                if let Some(at) = self.seen.find(needle) {
                    let rest = self.seen.split_off(at + needle.len());
                    return std::mem::replace(&mut self.seen, rest);
                }
                let mut buf = [0u8; 4096];
                let n = self.tcp.read(&mut buf).await.unwrap();
                assert!(n > 0, "redis closed the spy's connection");
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{needle:?} on the spied channel in time"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_rooms_are_subscribed_where_they_have_members() {
    let redis = Redis::start().await;
    let a = start_sharded(&redis, SubscriptionMode::Dynamic).await;
    let b = start_sharded(&redis, SubscriptionMode::Dynamic).await;
    let c = start_sharded(&redis, SubscriptionMode::Dynamic).await;
    expect_count(&[&a, &b, &c], 3).await;
    let mut redis_conn = inspect(&redis).await;
    let mut ca = Client::connect(a.port).await;
    let mut cb = Client::connect(b.port).await;
    let mut cc = Client::connect(c.port).await;

    // B's client joins `red`, C's `blue`; each node then subscribes its room's channel.
    cb.call("join", &[json!("red")]).await;
    cc.call("join", &[json!("blue")]).await;
    timeout(LIMIT, b.adapter.subscribed()).await.unwrap();
    timeout(LIMIT, c.adapter.subscribed()).await.unwrap();
    assert_eq!(shard_numsub(&mut redis_conn, &room_channel("red")).await, 1);
    assert_eq!(
        shard_numsub(&mut redis_conn, &room_channel("blue")).await,
        1
    );
    // Private rooms are not subscribed in this mode: socket ids are 20 characters, as the
    // reference's, and a message to one socket goes on the namespace channel.
    for cl in [&ca, &cb, &cc] {
        assert_eq!(cl.sid.len(), 20);
        assert_eq!(
            shard_numsub(&mut redis_conn, &room_channel(&cl.sid)).await,
            0
        );
    }
    let mut want = vec![
        "socket.io#/#".to_owned(),
        room_channel("red"),
        room_channel("blue"),
    ];
    want.extend(
        [&a, &b, &c]
            .iter()
            .map(|s| format!("socket.io#/#{}#", s.io.node_id())),
    );
    want.sort();
    assert_eq!(shard_channels(&mut redis_conn).await, want);

    // A broadcast to one room goes on the room's channel (a spy there sees it) and reaches
    // the members on the other node.
    let mut spy = Spy::on(&redis, &room_channel("red")).await;
    a.io.to("red").emit("red-only", &1).unwrap();
    assert_eq!(cb.event().await, serde_json::json!(["red-only", 1]));
    spy.until("red-only").await;
    // With an exception too (still one room).
    a.io.to("red")
        .except("blue")
        .emit("red-not-blue", &2)
        .unwrap();
    assert_eq!(cb.event().await, serde_json::json!(["red-not-blue", 2]));
    spy.until("red-not-blue").await;

    // To two rooms, to all, to all but a room: the namespace channel, as before (all from
    // A, so that they arrive in order).
    a.io.to("red").to("blue").emit("two-rooms", &3).unwrap();
    a.io.emit("all", &4).unwrap();
    a.io.except("red").emit("not-red", &5).unwrap();
    // One socket: its own channel (its id is not 20 characters long).
    a.io.to(cc.sid.as_str()).emit("direct", &6).unwrap();
    a.io.to("red").emit("red-mark", &7).unwrap();
    let red_channel = spy.until("red-mark").await;
    for other in ["two-rooms", "\"all\"", "not-red", "direct"] {
        assert!(
            !red_channel.contains(other),
            "{other} was not published on the room channel: {red_channel}"
        );
    }
    assert_eq!(ca.event().await, serde_json::json!(["all", 4]));
    assert_eq!(ca.event().await, serde_json::json!(["not-red", 5]));
    assert_eq!(cb.event().await, serde_json::json!(["two-rooms", 3]));
    assert_eq!(cb.event().await, serde_json::json!(["all", 4]));
    assert_eq!(cb.event().await, serde_json::json!(["red-mark", 7]));
    assert_eq!(cc.event().await, serde_json::json!(["two-rooms", 3]));
    assert_eq!(cc.event().await, serde_json::json!(["all", 4]));
    assert_eq!(cc.event().await, serde_json::json!(["not-red", 5]));
    assert_eq!(cc.event().await, serde_json::json!(["direct", 6]));

    // A room joined on a second node gets a second subscriber; requests (acknowledgements,
    // fetch_sockets) go on the namespace channel and see every node.
    ca.call("join", &[json!("red")]).await;
    timeout(LIMIT, a.adapter.subscribed()).await.unwrap();
    // The spy is the third.
    assert_eq!(shard_numsub(&mut redis_conn, &room_channel("red")).await, 3);
    c.io.to("red").emit("red-again", &8).unwrap();
    assert_eq!(ca.event().await, serde_json::json!(["red-again", 8]));
    assert_eq!(cb.event().await, serde_json::json!(["red-again", 8]));
    let red = timeout(LIMIT, c.io.to("red").fetch_sockets())
        .await
        .unwrap();
    let mut ids: Vec<String> = red.iter().map(|s| s.id().to_string()).collect();
    ids.sort();
    let mut want = vec![ca.sid.clone(), cb.sid.clone()];
    want.sort();
    assert_eq!(ids, want);
    let acks =
        c.io.to("red")
            .timeout(Duration::from_secs(5))
            .emit_with_ack("ask", &"q");
    for cl in [&mut ca, &mut cb] {
        let sid = serde_json::Value::from(cl.sid.clone());
        assert_eq!(cl.answer(&sid).await, serde_json::json!(["ask", "q"]));
    }
    let answers = timeout(LIMIT, acks).await.unwrap().expect("both answered");
    assert_eq!(answers.len(), 2);

    // Rooms deleted: the last member leaving, or disconnecting, ends the subscription.
    cb.call("leave", &[json!("red")]).await;
    timeout(LIMIT, b.adapter.subscribed()).await.unwrap();
    assert_eq!(shard_numsub(&mut redis_conn, &room_channel("red")).await, 2);
    ca.call("leave", &[json!("red")]).await;
    timeout(LIMIT, a.adapter.subscribed()).await.unwrap();
    assert_eq!(shard_numsub(&mut redis_conn, &room_channel("red")).await, 1);
    drop(spy);
    await_numsub(&mut redis_conn, &room_channel("red"), 0).await;
    let cc_sid = cc.sid.clone();
    drop(cc);
    await_numsub(&mut redis_conn, &room_channel("blue"), 0).await;
    await_numsub(&mut redis_conn, &room_channel(&cc_sid), 0).await;
    let mut want = vec!["socket.io#/#".to_owned()];
    want.extend(
        [&a, &b, &c]
            .iter()
            .map(|s| format!("socket.io#/#{}#", s.io.node_id())),
    );
    want.sort();
    assert_eq!(shard_channels(&mut redis_conn).await, want);
    expect_count(&[&a, &b, &c], 3).await;
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_private_subscribes_socket_rooms() {
    let redis = Redis::start().await;
    let a = start_sharded(&redis, SubscriptionMode::DynamicPrivate).await;
    let b = start_sharded(&redis, SubscriptionMode::DynamicPrivate).await;
    expect_count(&[&a, &b], 2).await;
    let mut redis_conn = inspect(&redis).await;
    let mut ca = Client::connect(a.port).await;
    let mut cb = Client::connect(b.port).await;
    timeout(LIMIT, a.adapter.subscribed()).await.unwrap();
    timeout(LIMIT, b.adapter.subscribed()).await.unwrap();
    // Each socket's own room is subscribed, by its node.
    assert_eq!(
        shard_numsub(&mut redis_conn, &room_channel(&ca.sid)).await,
        1
    );
    assert_eq!(
        shard_numsub(&mut redis_conn, &room_channel(&cb.sid)).await,
        1
    );

    // A message to one socket goes on its own channel, to its node only.
    let mut spy = Spy::on(&redis, &room_channel(&cb.sid)).await;
    a.io.to(cb.sid.as_str()).emit("direct", &1).unwrap();
    assert_eq!(cb.event().await, serde_json::json!(["direct", 1]));
    spy.until("direct").await;
    // Public rooms as in the dynamic mode; all as always.
    cb.call("join", &[json!("red")]).await;
    timeout(LIMIT, b.adapter.subscribed()).await.unwrap();
    assert_eq!(shard_numsub(&mut redis_conn, &room_channel("red")).await, 1);
    a.io.to("red").emit("red-only", &2).unwrap();
    a.io.emit("all", &3).unwrap();
    a.io.to(cb.sid.as_str()).emit("direct-mark", &4).unwrap();
    let seen = spy.until("direct-mark").await;
    assert!(
        !seen.contains("red-only") && !seen.contains("\"all\""),
        "{seen}"
    );
    assert_eq!(cb.event().await, serde_json::json!(["red-only", 2]));
    assert_eq!(cb.event().await, serde_json::json!(["all", 3]));
    assert_eq!(cb.event().await, serde_json::json!(["direct-mark", 4]));
    assert_eq!(ca.event().await, serde_json::json!(["all", 3]));

    // A socket that goes takes its rooms' subscriptions with it.
    let cb_channel = room_channel(&cb.sid);
    drop(cb);
    drop(spy);
    await_numsub(&mut redis_conn, &room_channel("red"), 0).await;
    await_numsub(&mut redis_conn, &cb_channel, 0).await;
    let channels = shard_channels(&mut redis_conn).await;
    assert!(channels.contains(&room_channel(&ca.sid)), "{channels:?}");
    assert_eq!(
        channels.len(),
        4,
        "namespace, two answer channels, ca: {channels:?}"
    );
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_rooms_are_subscribed_again_after_a_redis_restart() {
    let redis = Redis::start().await;
    let a = start_sharded(&redis, SubscriptionMode::Dynamic).await;
    let b = start_sharded(&redis, SubscriptionMode::Dynamic).await;
    expect_count(&[&a, &b], 2).await;
    let mut cb = Client::connect(b.port).await;
    cb.call("join", &[json!("red")]).await;
    timeout(LIMIT, b.adapter.subscribed()).await.unwrap();
    a.io.to("red").emit("n", &0).unwrap();
    assert_eq!(cb.event().await, serde_json::json!(["n", 0]));

    let port = redis.stop().await;
    // A room created while Redis is away is subscribed once it is back.
    cb.call("join", &[json!("blue")]).await;
    let redis = Redis::start_on(port).await;
    let mut redis_conn = inspect(&redis).await;
    await_numsub(&mut redis_conn, &room_channel("red"), 1).await;
    await_numsub(&mut redis_conn, &room_channel("blue"), 1).await;
    timeout(LIMIT, b.adapter.subscribed()).await.unwrap();
    // Broadcasts to the room, published on its channel, reach B again (A's publisher
    // reconnects at its first publish after the outage: keep publishing until one lands).
    let resumed = timeout(LIMIT, async {
        let mut i = 0;
        loop {
            i += 1;
            a.io.to("blue").emit("n", &i).unwrap();
            if let Ok(ev) = timeout(Duration::from_millis(200), cb.event()).await {
                return ev;
            }
        }
    })
    .await
    .expect("room delivery resumed");
    assert_eq!(resumed[0], "n");
    drop(redis);
}
