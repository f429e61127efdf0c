//! One cluster, two implementations: a Volley node (in this process, on tokio, with
//! `RedisAdapter`) and a Node socket.io 4.8 server with `@socket.io/redis-adapter` 8.3
//! (`tests/node/interop-server.mjs`) share a redis-server this test starts. Official
//! socket.io-client sockets connect to both (`tests/node/interop-clients.mjs`), and
//! `@socket.io/redis-emitter` publishes into the cluster (`tests/node/interop-emitter.mjs`).
//!
//! Node (20 or later) is required: without it these tests fail. The pinned packages of
//! `tests/node/package-lock.json` are installed with `npm ci` when `node_modules` is missing
//! or older than the lockfile.
//!
//! The same runs with sharded Pub/Sub: `createShardedAdapter` in its default
//! `subscriptionMode: "dynamic"` (and in "dynamic-private") against Volley in the same mode.
//!
//! The scripts speak JSON lines over stdin/stdout (see `tests/node/interop-lines.mjs`) and
//! exit when their stdin closes, so none outlives its test.

use serde_json::{Value, json};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::time::timeout;
use volley::{ConnectCtx, Data, Json, Next, Payload, Socket};
use volley_redis::{RedisAdapter, RedisOptions, SubscriptionMode};
use volley_tokio::TokioRuntime;

mod common;
use common::node::{Clients, NodeScript};
use common::redis_cluster::RedisCluster;
use common::{LIMIT, Redis, serve};

// ---- the Volley node ----

struct VolleyNode {
    io: volley::Io<TokioRuntime>,
    adapter: RedisAdapter,
    port: u16,
    /// Server-side events received from other nodes, as `[event, ...args]`.
    server_events: mpsc::UnboundedReceiver<Value>,
}

fn as_event(event: &str, payload: &Payload) -> Value {
    let mut ev = vec![json!(event)];
    ev.extend(payload.args().iter().cloned());
    Value::Array(ev)
}

/// A Volley node whose sockets keep `{"node":"volley","who":<auth.who>}` as data, answer
/// `join` like the Node server's, and whose server-side `note` and `ask` handlers mirror its.
async fn volley_node(redis: &Redis, sharded: Option<SubscriptionMode>) -> VolleyNode {
    let mut options = RedisOptions::new(&redis.url());
    if let Some(mode) = sharded {
        options = options.sharded_mode(mode);
    }
    volley_node_with(options).await
}

/// [`volley_node`] with `options`.
async fn volley_node_with(options: RedisOptions) -> VolleyNode {
    let rt = TokioRuntime::current();
    let adapter = RedisAdapter::new(options, rt.clone());
    let io = volley::builder().adapter(adapter.clone()).build(rt);
    let ns = io.ns("/");
    ns.use_connect(|ctx: ConnectCtx, next: Next| async move {
        let who = ctx.auth().get("who").cloned().unwrap_or(Value::Null);
        ctx.data().insert(json!({ "node": "volley", "who": who }));
        next.run(ctx).await
    });
    ns.on("join", |s: Socket, Data(room): Data<String>| async move {
        s.join(room.as_str());
        room
    });
    let (tx, server_events) = mpsc::unbounded_channel();
    let notes = tx.clone();
    ns.on_server_event("note", move |p: Payload| {
        let _ = notes.send(as_event("note", &p));
        async {}
    });
    ns.on_server_event("ask", move |p: Payload| {
        let _ = tx.send(as_event("ask", &p));
        let got = p.args().first().cloned().unwrap_or(Value::Null);
        async move { Json(json!({ "node": "volley", "got": got })) }
    });
    let port = serve(&io).await;
    timeout(LIMIT, adapter.subscribed())
        .await
        .expect("Volley subscribed in time");
    VolleyNode {
        io,
        adapter,
        port,
        server_events,
    }
}

impl VolleyNode {
    async fn server_event(&mut self) -> Value {
        timeout(LIMIT, self.server_events.recv())
            .await
            .expect("a server-side event in time")
            .expect("the node runs")
    }
}

// ---- the cluster ----

/// Redis, a Volley node, a Node node, and clients `v1`, `v2` on Volley and `n1`, `n2` on
/// Node (`v2` and `n2` WebSocket-only, the others upgrading from polling); `v1` and `n1` in
/// room `red`.
struct Cluster {
    redis: Redis,
    volley: VolleyNode,
    node: NodeScript,
    clients: Clients,
}

impl Cluster {
    async fn start() -> Cluster {
        Cluster::start_in(None).await
    }

    /// The cluster over classic Pub/Sub (`None`) or sharded Pub/Sub in a subscription mode.
    async fn start_in(sharded: Option<SubscriptionMode>) -> Cluster {
        let redis = Redis::start().await;
        let volley = volley_node(&redis, sharded).await;
        let url = redis.url();
        let mut args = vec![url.as_str()];
        args.extend(sharded.map(SubscriptionMode::as_str));
        let mut node = NodeScript::start("interop-server.mjs", &args).await;
        let node_port = u16::try_from(node.ready["port"].as_u64().expect("a port")).unwrap();
        // Both count two servers (`PUBSUB NUMSUB` of the request channel, or `SHARDNUMSUB` of
        // the namespace channel), and Volley's cached count, which its requests wait on, says
        // so too. Nothing announces it: poll.
        timeout(LIMIT, async {
            loop {
                let volley_count = volley.adapter.refresh_server_count().await.unwrap_or(0);
                let node_count = node.call("serverCount", json!({})).await;
                if volley_count == 2 && volley.io.server_count() == 2 && node_count == 2 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("both nodes see two servers");
        let mut clients = Clients::start().await;
        clients.connect("v1", volley.port, false).await;
        clients.connect("v2", volley.port, true).await;
        clients.connect("n1", node_port, false).await;
        clients.connect("n2", node_port, true).await;
        clients.join("v1", "red").await;
        clients.join("n1", "red").await;
        if sharded.is_some_and(|m| m != SubscriptionMode::Static) {
            // Broadcasts to `red` go on its channel: both nodes must subscribe it first.
            timeout(LIMIT, volley.adapter.subscribed())
                .await
                .expect("Volley subscribed its rooms in time");
            await_shard_numsub(&redis, "socket.io#/#red#", 2).await;
        }
        Cluster {
            redis,
            volley,
            node,
            clients,
        }
    }
}

const ALL: [&str; 4] = ["v1", "v2", "n1", "n2"];

/// Waits (bounded) until `channel` has `n` subscribers (`PUBSUB SHARDNUMSUB`): Node's
/// adapter subscribes a room's channel without telling anyone when it is done.
async fn await_shard_numsub(redis: &Redis, channel: &str, n: usize) {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = timeout(LIMIT, client.get_multiplexed_async_connection())
        .await
        .expect("connected in time")
        .expect("connected");
    timeout(LIMIT, async {
        loop {
            let counts: Vec<(String, usize)> = redis::cmd("PUBSUB")
                .arg("SHARDNUMSUB")
                .arg(channel)
                .query_async(&mut conn)
                .await
                .unwrap();
            if counts.first().map_or(0, |(_, c)| *c) == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{channel} has {n} subscribers in time"));
}

fn bin(bytes: &[u8]) -> Value {
    json!({ "$bin": volley_core::base64::encode(bytes) })
}

// ---- the tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_cross_both_ways() {
    let mut c = Cluster::start().await;
    let io = &c.volley.io;

    // From Volley: to all, to a room, to all but a room; then a marker, so that what a
    // client must not get would show up before it.
    io.emit("all", &"from-volley").unwrap();
    io.to("red").emit("red", &1).unwrap();
    io.except("red").emit("not-red", &2).unwrap();
    io.to("red")
        .except(c.clients.id("n1"))
        .emit("red-but-n1", &3)
        .unwrap();
    io.emit("mark", &4).unwrap();
    let (all, mark) = (json!(["all", "from-volley"]), json!(["mark", 4]));
    c.clients
        .expect(
            &["v1"],
            &[
                all.clone(),
                json!(["red", 1]),
                json!(["red-but-n1", 3]),
                mark.clone(),
            ],
        )
        .await;
    c.clients
        .expect(&["n1"], &[all.clone(), json!(["red", 1]), mark.clone()])
        .await;
    c.clients
        .expect(&["v2", "n2"], &[all, json!(["not-red", 2]), mark])
        .await;

    // From Node: the same.
    let n = &mut c.node;
    n.call("emit", json!({ "event": "all", "args": ["from-node"] }))
        .await;
    n.call(
        "emit",
        json!({ "to": ["red"], "event": "red", "args": [1] }),
    )
    .await;
    n.call(
        "emit",
        json!({ "except": ["red"], "event": "not-red", "args": [2] }),
    )
    .await;
    let except_v1 = c.clients.id("v1").to_owned();
    n.call(
        "emit",
        json!({ "to": ["red"], "except": [except_v1], "event": "red-but-v1", "args": [3] }),
    )
    .await;
    n.call("emit", json!({ "event": "mark", "args": [4] }))
        .await;
    let (all, mark) = (json!(["all", "from-node"]), json!(["mark", 4]));
    c.clients
        .expect(
            &["n1"],
            &[
                all.clone(),
                json!(["red", 1]),
                json!(["red-but-v1", 3]),
                mark.clone(),
            ],
        )
        .await;
    c.clients
        .expect(&["v1"], &[all.clone(), json!(["red", 1]), mark.clone()])
        .await;
    c.clients
        .expect(&["v2", "n2"], &[all, json!(["not-red", 2]), mark])
        .await;

    // Binary arguments, both ways: MessagePack `bin` on the wire, bytes at the clients.
    let bytes = [0u8, 1, 2, 0xfe, 0xff];
    let payload = Payload::new()
        .arg(&"text")
        .unwrap()
        .bin(bytes.to_vec())
        .arg(&json!({ "n": 1 }))
        .unwrap();
    io.all().emit_payload("bin", payload);
    c.clients
        .expect(&ALL, &[json!(["bin", "text", bin(&bytes), { "n": 1 }])])
        .await;
    c.node
        .call(
            "emit",
            json!({ "event": "bin", "args": [bin(&bytes), { "nested": bin(&[7, 8]) }] }),
        )
        .await;
    c.clients
        .expect(
            &ALL,
            &[json!(["bin", bin(&bytes), { "nested": bin(&[7, 8]) }])],
        )
        .await;
}

/// What Node's `fetchSockets` said about socket `id`.
fn find<'a>(sockets: &'a Value, id: &str) -> &'a Value {
    sockets
        .as_array()
        .expect("a list of sockets")
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no socket {id} in {sockets}"))
}

/// `items`, sorted.
fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort();
    items
}

/// The ids of the sockets Node's `fetchSockets` listed, sorted.
fn sorted_ids(sockets: &Value) -> Vec<String> {
    sorted(
        sockets
            .as_array()
            .expect("a list of sockets")
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect(),
    )
}

/// The rooms of a socket as Node's `fetchSockets` listed it, sorted.
fn node_rooms(socket: &Value) -> Vec<&str> {
    sorted(
        socket["rooms"]
            .as_array()
            .expect("a list of rooms")
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect(),
    )
}

/// The ids of the clients `names`, sorted.
fn ids_of(c: &Cluster, names: &[&str]) -> Vec<String> {
    sorted(names.iter().map(|n| c.clients.id(n).to_owned()).collect())
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_sockets_and_room_changes_both_ways() {
    let mut c = Cluster::start().await;
    let (n1, n2) = (c.clients.id("n1").to_owned(), c.clients.id("n2").to_owned());
    let (v1, v2) = (c.clients.id("v1").to_owned(), c.clients.id("v2").to_owned());

    // Volley sees Node's sockets: ids, rooms, handshake, data.
    let sockets = timeout(LIMIT, c.volley.io.fetch_sockets()).await.unwrap();
    let ids = sorted(sockets.iter().map(|s| s.id().to_string()).collect());
    assert_eq!(ids, ids_of(&c, &ALL));
    let remote = sockets.iter().find(|s| s.id().as_str() == n1).unwrap();
    assert!(!remote.is_local());
    assert!(remote.node().is_some());
    let rooms = sorted(remote.rooms().iter().map(|r| r.as_str()).collect());
    assert_eq!(rooms, sorted(vec![n1.as_str(), "red"]));
    let h = remote.handshake();
    assert_eq!(h.query("who").as_deref(), Some("n1"));
    assert_eq!(h.header("x-client"), Some("n1"));
    assert_eq!(h.auth(), &json!({ "who": "n1", "token": "t-n1" }));
    assert!(h.url().starts_with("/socket.io/?"), "{}", h.url());
    let ip: IpAddr = h.peer_addr().expect("Node's address").ip();
    assert!(ip.to_canonical().is_loopback(), "{ip}");
    assert_eq!(
        remote.data().get::<Value>(),
        Some(json!({ "node": "node", "who": "n1" }))
    );
    let red = timeout(LIMIT, c.volley.io.to("red").fetch_sockets())
        .await
        .unwrap();
    let red_ids = sorted(red.iter().map(|s| s.id().to_string()).collect());
    assert_eq!(red_ids, ids_of(&c, &["v1", "n1"]));

    // Node sees Volley's.
    let sockets = c.node.call("fetchSockets", json!({})).await;
    assert_eq!(sorted_ids(&sockets), ids_of(&c, &ALL));
    let s = find(&sockets, &v1);
    assert_eq!(node_rooms(s), sorted(vec![v1.as_str(), "red"]));
    assert_eq!(s["data"], json!({ "node": "volley", "who": "v1" }));
    let h = &s["handshake"];
    assert_eq!(h["query"]["who"], "v1");
    assert_eq!(h["headers"]["x-client"], "v1");
    assert_eq!(h["auth"], json!({ "who": "v1", "token": "t-v1" }));
    assert_eq!(h["address"], "127.0.0.1");
    assert!(
        h["url"].as_str().unwrap().starts_with("/socket.io/?"),
        "{h}"
    );
    let issued = h["issued"].as_u64().expect("issued in ms");
    assert!(now_ms().abs_diff(issued) < 60_000, "issued {issued}");
    assert!(h["time"].as_str().unwrap().contains("GMT"), "{h}");
    let red = c.node.call("fetchSockets", json!({ "to": ["red"] })).await;
    assert_eq!(sorted_ids(&red), ids_of(&c, &["v1", "n1"]));

    // A fetched socket of the other node can be emitted to.
    let n2_remote = sockets_of(&c.volley.io.fetch_sockets().await, &n2);
    n2_remote.emit("direct", &"to-n2").unwrap();
    c.clients
        .expect(&["n2"], &[json!(["direct", "to-n2"])])
        .await;
    c.node
        .call(
            "remoteEmit",
            json!({ "id": v2, "event": "direct", "args": ["to-v2"] }),
        )
        .await;
    c.clients
        .expect(&["v2"], &[json!(["direct", "to-v2"])])
        .await;

    // Room changes cross. A request leaves after the room change its node sent before it,
    // and the other node handles both in that order: Volley puts n2 in `blue` and fetches.
    c.volley.io.to(n2.as_str()).sockets_join(["blue"]);
    let blue = timeout(LIMIT, c.volley.io.to("blue").fetch_sockets())
        .await
        .unwrap();
    let blue_ids: Vec<String> = blue.iter().map(|s| s.id().to_string()).collect();
    assert_eq!(blue_ids, [n2.as_str()]);
    // Node puts v2 there too and fetches; then Volley, which answered Node's fetch after
    // handling its join, sees both.
    c.node
        .call("socketsJoin", json!({ "to": [v2], "rooms": ["blue"] }))
        .await;
    let blue = c.node.call("fetchSockets", json!({ "to": ["blue"] })).await;
    assert_eq!(sorted_ids(&blue), ids_of(&c, &["v2", "n2"]));
    let blue = timeout(LIMIT, c.volley.io.to("blue").fetch_sockets())
        .await
        .unwrap();
    let blue_ids = sorted(blue.iter().map(|s| s.id().to_string()).collect());
    assert_eq!(blue_ids, ids_of(&c, &["v2", "n2"]));

    // Every node's rooms.
    let rooms = timeout(LIMIT, c.volley.io.all_rooms()).await.unwrap();
    for room in ["red", "blue", n1.as_str(), v1.as_str()] {
        assert!(
            rooms.iter().any(|r| r.as_str() == room),
            "{room} in {rooms:?}"
        );
    }
    let rooms = c.node.call("allRooms", json!({})).await;
    for room in ["red", "blue", n1.as_str(), v1.as_str()] {
        assert!(
            rooms.as_array().unwrap().iter().any(|r| r == room),
            "{room} in {rooms}"
        );
    }

    // Disconnection crosses too.
    c.volley.io.to(n2.as_str()).disconnect_sockets(false);
    let r = c.clients.next("n2").await;
    assert_eq!(r["report"], "disconnect", "{r}");
    assert_eq!(r["reason"], "io server disconnect");
    c.node
        .call("disconnectSockets", json!({ "to": [v2] }))
        .await;
    let r = c.clients.next("v2").await;
    assert_eq!(r["report"], "disconnect", "{r}");
    assert_eq!(r["reason"], "io server disconnect");
}

fn sockets_of(sockets: &[volley::RemoteSocket], id: &str) -> volley::RemoteSocket {
    sockets
        .iter()
        .find(|s| s.id().as_str() == id)
        .unwrap_or_else(|| panic!("no socket {id}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_emit_both_ways() {
    let mut c = Cluster::start().await;

    // Volley to Node, without and with acknowledgement.
    c.volley
        .io
        .server_side_emit("note", &json!({ "from": "volley" }))
        .unwrap();
    let r = c.node.report().await;
    assert_eq!(r["report"], "server-event");
    assert_eq!(r["name"], "note");
    assert_eq!(r["args"], json!([{ "from": "volley" }]));
    let answers = timeout(LIMIT, c.volley.io.server_side_emit_with_ack("ask", &7))
        .await
        .unwrap()
        .expect("Node answered");
    assert_eq!(answers.len(), 1);
    assert_eq!(answers[0].args(), &[json!({ "node": "node", "got": 7 })]);
    let r = c.node.report().await;
    assert_eq!((&r["name"], &r["args"]), (&json!("ask"), &json!([7])));

    // Node to Volley, without and with acknowledgement.
    c.node
        .call(
            "serverSideEmit",
            json!({ "event": "note", "args": [{ "from": "node" }, "two"] }),
        )
        .await;
    assert_eq!(
        c.volley.server_event().await,
        json!(["note", { "from": "node" }, "two"])
    );
    let answers = c
        .node
        .call(
            "serverSideEmitWithAck",
            json!({ "event": "ask", "args": [8] }),
        )
        .await;
    assert_eq!(answers, json!([{ "node": "volley", "got": 8 }]));
    assert_eq!(c.volley.server_event().await, json!(["ask", 8]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_with_ack_spans_both_nodes() {
    let mut c = Cluster::start().await;
    let names = |answers: Vec<Value>| {
        sorted(
            answers
                .iter()
                .map(|a| a["client"].as_str().expect("a client name").to_owned())
                .collect(),
        )
    };

    // From Volley: every client of both nodes answers, and the answers are gathered.
    let answers = timeout(
        LIMIT,
        c.volley
            .io
            .timeout(Duration::from_secs(5))
            .emit_with_ack("ask", &"from-volley"),
    )
    .await
    .unwrap()
    .expect("every client answered");
    for a in &answers {
        let v: Value = a.data().unwrap();
        assert_eq!(v["echo"], "from-volley");
        let name = v["client"].as_str().unwrap();
        if name.starts_with('v') {
            assert_eq!(a.socket.as_str(), c.clients.id(name));
        }
    }
    let values: Vec<Value> = answers.iter().map(|a| a.data().unwrap()).collect();
    assert_eq!(names(values), ["n1", "n2", "v1", "v2"]);
    let answers = timeout(
        LIMIT,
        c.volley
            .io
            .to("red")
            .timeout(Duration::from_secs(5))
            .emit_with_ack("ask", &"red"),
    )
    .await
    .unwrap()
    .expect("the red clients answered");
    let values: Vec<Value> = answers.iter().map(|a| a.data().unwrap()).collect();
    assert_eq!(names(values), ["n1", "v1"]);

    // From Node: the same.
    let answers = c
        .node
        .call(
            "emitWithAck",
            json!({ "event": "ask", "args": ["from-node"], "timeout": 5000 }),
        )
        .await;
    let answers = answers.as_array().unwrap().clone();
    assert!(
        answers.iter().all(|a| a["echo"] == "from-node"),
        "{answers:?}"
    );
    assert_eq!(names(answers), ["n1", "n2", "v1", "v2"]);
    let answers = c
        .node
        .call(
            "emitWithAck",
            json!({ "to": ["red"], "event": "ask", "args": ["red"], "timeout": 5000 }),
        )
        .await;
    assert_eq!(names(answers.as_array().unwrap().clone()), ["n1", "v1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_emitter_reaches_volley_clients() {
    let mut c = Cluster::start().await;
    let mut emitter = NodeScript::start("interop-emitter.mjs", &[&c.redis.url()]).await;

    // To all, to a room, to all but a room; then a marker.
    emitter
        .call("emit", json!({ "event": "all", "args": ["from-emitter"] }))
        .await;
    emitter
        .call(
            "emit",
            json!({ "to": ["red"], "event": "red", "args": [1] }),
        )
        .await;
    emitter
        .call(
            "emit",
            json!({ "except": ["red"], "event": "not-red", "args": [2] }),
        )
        .await;
    emitter
        .call("emit", json!({ "event": "mark", "args": [3] }))
        .await;
    let (all, mark) = (json!(["all", "from-emitter"]), json!(["mark", 3]));
    c.clients
        .expect(
            &["v1", "n1"],
            &[all.clone(), json!(["red", 1]), mark.clone()],
        )
        .await;
    c.clients
        .expect(&["v2", "n2"], &[all, json!(["not-red", 2]), mark])
        .await;

    // Binary arguments, at the top level and nested.
    let bytes = [0xffu8, 0, 0x80, 0x7f];
    emitter
        .call(
            "emit",
            json!({ "event": "bin", "args": [bin(&bytes), { "inner": [bin(&[1])] }] }),
        )
        .await;
    c.clients
        .expect(
            &ALL,
            &[json!(["bin", bin(&bytes), { "inner": [bin(&[1])] }])],
        )
        .await;

    // Room changes (the emitter's requests carry no sender id), then a broadcast to the new
    // room, published after them on the same connection.
    emitter
        .call("socketsJoin", json!({ "to": ["red"], "rooms": ["green"] }))
        .await;
    emitter
        .call(
            "emit",
            json!({ "to": ["green"], "event": "green", "args": [] }),
        )
        .await;
    emitter
        .call("emit", json!({ "event": "mark", "args": [4] }))
        .await;
    c.clients
        .expect(&["v1", "n1"], &[json!(["green"]), json!(["mark", 4])])
        .await;
    c.clients.expect(&["v2", "n2"], &[json!(["mark", 4])]).await;
    let green = timeout(LIMIT, c.volley.io.in_("green").local().fetch_sockets())
        .await
        .unwrap();
    assert_eq!(green.len(), 1);
    assert_eq!(green[0].id().as_str(), c.clients.id("v1"));

    // Server-side emit, to both nodes.
    emitter
        .call(
            "serverSideEmit",
            json!({ "event": "note", "args": [{ "from": "emitter" }] }),
        )
        .await;
    assert_eq!(
        c.volley.server_event().await,
        json!(["note", { "from": "emitter" }])
    );
    let r = c.node.report().await;
    assert_eq!(r["args"], json!([{ "from": "emitter" }]));

    // Disconnection of one socket by id.
    let v2 = c.clients.id("v2").to_owned();
    emitter
        .call("disconnectSockets", json!({ "to": [v2], "close": true }))
        .await;
    let r = c.clients.next("v2").await;
    assert_eq!(r["report"], "disconnect", "{r}");
}

/// Broadcasts (to all, to one room, to all but a room, to one socket of the other node) and
/// `fetch_sockets`, both ways, between Volley and `createShardedAdapter` in `mode`.
async fn sharded_broadcasts_and_fetch(mode: SubscriptionMode) {
    let mut c = Cluster::start_in(Some(mode)).await;
    let (v1, v2) = (c.clients.id("v1").to_owned(), c.clients.id("v2").to_owned());
    let (n1, n2) = (c.clients.id("n1").to_owned(), c.clients.id("n2").to_owned());

    // From Volley: `red` and `n2` go on their own channels in the dynamic modes (`n2`, a
    // Node id of 20 characters, only in "dynamic-private").
    let io = &c.volley.io;
    io.emit("all", &"from-volley").unwrap();
    io.to("red").emit("red", &1).unwrap();
    io.except("red").emit("not-red", &2).unwrap();
    io.to(n2.as_str()).emit("to-n2", &3).unwrap();
    io.to("red")
        .except(n1.as_str())
        .emit("red-but-n1", &4)
        .unwrap();
    io.emit("mark", &5).unwrap();
    let (all, mark) = (json!(["all", "from-volley"]), json!(["mark", 5]));
    c.clients
        .expect(
            &["v1"],
            &[
                all.clone(),
                json!(["red", 1]),
                json!(["red-but-n1", 4]),
                mark.clone(),
            ],
        )
        .await;
    c.clients
        .expect(&["n1"], &[all.clone(), json!(["red", 1]), mark.clone()])
        .await;
    c.clients
        .expect(&["v2"], &[all.clone(), json!(["not-red", 2]), mark.clone()])
        .await;
    c.clients
        .expect(
            &["n2"],
            &[all, json!(["not-red", 2]), json!(["to-n2", 3]), mark],
        )
        .await;

    // From Node: the same; `v2` (a Volley id, 20 characters as Node's) goes on the channel
    // the mode gives a socket id: the namespace's in "dynamic", its own in
    // "dynamic-private".
    let n = &mut c.node;
    n.call("emit", json!({ "event": "all", "args": ["from-node"] }))
        .await;
    n.call(
        "emit",
        json!({ "to": ["red"], "event": "red", "args": [1] }),
    )
    .await;
    n.call(
        "emit",
        json!({ "except": ["red"], "event": "not-red", "args": [2] }),
    )
    .await;
    n.call("emit", json!({ "to": [v2], "event": "to-v2", "args": [3] }))
        .await;
    n.call(
        "emit",
        json!({ "to": ["red"], "except": [v1], "event": "red-but-v1", "args": [4] }),
    )
    .await;
    n.call("emit", json!({ "event": "mark", "args": [5] }))
        .await;
    let (all, mark) = (json!(["all", "from-node"]), json!(["mark", 5]));
    c.clients
        .expect(
            &["n1"],
            &[
                all.clone(),
                json!(["red", 1]),
                json!(["red-but-v1", 4]),
                mark.clone(),
            ],
        )
        .await;
    c.clients
        .expect(&["v1"], &[all.clone(), json!(["red", 1]), mark.clone()])
        .await;
    c.clients
        .expect(&["n2"], &[all.clone(), json!(["not-red", 2]), mark.clone()])
        .await;
    c.clients
        .expect(
            &["v2"],
            &[all, json!(["not-red", 2]), json!(["to-v2", 3]), mark],
        )
        .await;

    // A room that exists on one node only, joined after the start: Node's client `n2` joins
    // `blue`, and Volley's broadcast to it reaches n2 once Node subscribed its channel.
    c.clients.join("n2", "blue").await;
    let per_room = usize::from(mode != SubscriptionMode::Static);
    await_shard_numsub(&c.redis, "socket.io#/#blue#", per_room).await;
    c.volley.io.to("blue").emit("blue", &6).unwrap();
    c.clients.expect(&["n2"], &[json!(["blue", 6])]).await;
    // And Volley's `v2` joins `green`, which Node broadcasts to.
    c.clients.join("v2", "green").await;
    timeout(LIMIT, c.volley.adapter.subscribed()).await.unwrap();
    await_shard_numsub(&c.redis, "socket.io#/#green#", per_room).await;
    c.node
        .call(
            "emit",
            json!({ "to": ["green"], "event": "green", "args": [7] }),
        )
        .await;
    c.clients.expect(&["v2"], &[json!(["green", 7])]).await;

    // fetch_sockets both ways, with the rooms of each socket.
    let sockets = timeout(LIMIT, c.volley.io.fetch_sockets()).await.unwrap();
    let ids = sorted(sockets.iter().map(|s| s.id().to_string()).collect());
    assert_eq!(ids, ids_of(&c, &ALL));
    let remote = sockets.iter().find(|s| s.id().as_str() == n2).unwrap();
    assert!(!remote.is_local());
    let rooms = sorted(remote.rooms().iter().map(|r| r.as_str()).collect());
    assert_eq!(rooms, sorted(vec![n2.as_str(), "blue"]));
    assert_eq!(
        remote.data().get::<Value>(),
        Some(json!({ "node": "node", "who": "n2" }))
    );
    let red = timeout(LIMIT, c.volley.io.to("red").fetch_sockets())
        .await
        .unwrap();
    let red_ids = sorted(red.iter().map(|s| s.id().to_string()).collect());
    assert_eq!(red_ids, ids_of(&c, &["v1", "n1"]));

    let sockets = c.node.call("fetchSockets", json!({})).await;
    assert_eq!(sorted_ids(&sockets), ids_of(&c, &ALL));
    let s = find(&sockets, &v2);
    assert_eq!(node_rooms(s), sorted(vec![v2.as_str(), "green"]));
    assert_eq!(s["data"], json!({ "node": "volley", "who": "v2" }));
    let red = c.node.call("fetchSockets", json!({ "to": ["red"] })).await;
    assert_eq!(sorted_ids(&red), ids_of(&c, &["v1", "n1"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_dynamic_broadcasts_and_fetch_both_ways() {
    sharded_broadcasts_and_fetch(SubscriptionMode::Dynamic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_dynamic_private_broadcasts_and_fetch_both_ways() {
    sharded_broadcasts_and_fetch(SubscriptionMode::DynamicPrivate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_static_broadcasts_and_fetch_both_ways() {
    sharded_broadcasts_and_fetch(SubscriptionMode::Static).await;
}

// ---- on a Redis Cluster ----

/// Volley and `createShardedAdapter` (dynamic mode, node-redis's `createCluster`) on a Redis
/// Cluster of three masters: rooms whose channels live on each master, broadcasts both ways,
/// `fetch_sockets` both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_sharded_both_ways() {
    let cluster = RedisCluster::start().await;
    let urls = cluster.urls();
    let url_refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let volley = volley_node_with(RedisOptions::cluster(&url_refs)).await;
    let arg = format!("cluster:{}", urls.join(","));
    let mut node = NodeScript::start("interop-server.mjs", &[arg.as_str(), "dynamic"]).await;
    let node_port = u16::try_from(node.ready["port"].as_u64().expect("a port")).unwrap();
    timeout(LIMIT, async {
        loop {
            let volley_count = volley.adapter.refresh_server_count().await.unwrap_or(0);
            let node_count = node.call("serverCount", json!({})).await;
            if volley_count == 2 && volley.io.server_count() == 2 && node_count == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("both nodes see two servers");

    let mut clients = Clients::start().await;
    clients.connect("v1", volley.port, true).await;
    clients.connect("n1", node_port, true).await;
    // A room whose channel lives on each master; both clients join all three.
    let mut rooms: Vec<(String, u16)> = Vec::new();
    for i in 0.. {
        let room = format!("room-{i}");
        let master = cluster.master_of(&format!("socket.io#/#{room}#")).await;
        if !rooms.iter().any(|(_, m)| *m == master) {
            rooms.push((room, master));
        }
        if rooms.len() == 3 {
            break;
        }
    }
    for (room, _) in &rooms {
        clients.join("v1", room).await;
        clients.join("n1", room).await;
    }
    timeout(LIMIT, volley.adapter.subscribed()).await.unwrap();
    for (room, master) in &rooms {
        let channel = format!("socket.io#/#{room}#");
        timeout(LIMIT, async {
            while cluster.shard_numsub(*master, &channel).await != 2 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{channel} subscribed by both at its master {master}"));
    }

    // Room broadcasts, one master after the other, both ways.
    for (i, (room, _)) in rooms.iter().enumerate() {
        volley.io.to(room.as_str()).emit("from-volley", &i).unwrap();
        clients
            .expect(&["v1", "n1"], &[json!(["from-volley", i])])
            .await;
        node.call(
            "emit",
            json!({ "event": "from-node", "args": [i], "to": [room] }),
        )
        .await;
        clients
            .expect(&["v1", "n1"], &[json!(["from-node", i])])
            .await;
    }
    // To all.
    volley.io.emit("all", &"v").unwrap();
    clients.expect(&["v1", "n1"], &[json!(["all", "v"])]).await;
    node.call("emit", json!({ "event": "all", "args": ["n"] }))
        .await;
    clients.expect(&["v1", "n1"], &[json!(["all", "n"])]).await;

    // Requests across: each node lists the other's socket.
    let sockets = timeout(LIMIT, volley.io.fetch_sockets()).await.unwrap();
    let ids = sorted(sockets.iter().map(|s| s.id().to_string()).collect());
    assert_eq!(
        ids,
        sorted(vec![
            clients.id("v1").to_owned(),
            clients.id("n1").to_owned()
        ])
    );
    let sockets = node.call("fetchSockets", json!({})).await;
    assert_eq!(
        sorted_ids(&sockets),
        sorted(vec![
            clients.id("v1").to_owned(),
            clients.id("n1").to_owned()
        ])
    );
}

/// `all_rooms` in a sharded cluster of two Volley nodes and a Node node: Node's sharded
/// adapter has no all-rooms request, so the Volley nodes answer it and the request does not
/// wait for Node until its timeout (5 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_all_rooms_does_not_wait_for_node() {
    let mut c = Cluster::start_in(Some(SubscriptionMode::Dynamic)).await;
    let second = volley_node(&c.redis, Some(SubscriptionMode::Dynamic)).await;
    c.clients.connect("v3", second.port, true).await;
    c.clients.join("v3", "green").await;
    timeout(LIMIT, second.adapter.subscribed()).await.unwrap();
    let servers = timeout(LIMIT, c.volley.adapter.refresh_server_count())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(servers, 3);
    let started = Instant::now();
    let rooms = timeout(LIMIT, c.volley.io.all_rooms()).await.unwrap();
    let took = started.elapsed();
    eprintln!("sharded: all_rooms with a Node server present took {took:?}: {rooms:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    // This node's and the other Volley node's rooms.
    for room in ["red", "green"] {
        assert!(
            rooms.iter().any(|r| r.as_str() == room),
            "{room} in {rooms:?}"
        );
    }
    let v3 = c.clients.id("v3").to_owned();
    assert!(rooms.iter().any(|r| r.as_str() == v3), "{rooms:?}");
}
