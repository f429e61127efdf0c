//! A Volley cluster behind a round-robin balancer with no affinity (issue #16), with real
//! processes: a redis-server, three `forwarding-node` processes (`src/bin`), the proxy of
//! `proxy.rs` in front of them, and the official socket.io-client
//! (`tests/node/sticky-free-client.mjs`) in each transport mode; then the owner of a session
//! killed mid-session; then a Node socket.io node in the same cluster.
//!
//! Node 20 or later and npm are required (the pinned packages of `tests/node` are installed
//! when missing); without them the tests fail.

#[path = "../common/mod.rs"]
mod common;
mod proxy;

use common::node::NodeScript;
use common::{LIMIT, Redis};
use proxy::{Proxy, Upstream};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::process::Stdio;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

// ---- The cluster ----

/// Which adapter the nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Classic,
    Streams,
}

/// A `forwarding-node` process, killed on drop.
struct VolleyNode {
    child: Child,
    port: u16,
    id: String,
}

impl VolleyNode {
    async fn start(redis: &str, mode: Mode, recovery: bool, ping_ms: Option<u64>) -> VolleyNode {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_forwarding-node"));
        cmd.args(["--redis", redis, "--port", "0"])
            .args([
                "--mode",
                match mode {
                    Mode::Classic => "classic",
                    Mode::Streams => "streams",
                },
            ])
            .args(["--recovery", if recovery { "on" } else { "off" }]);
        if let Some(ms) = ping_ms {
            cmd.args(["--ping-ms", &ms.to_string()]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("forwarding-node starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = timeout(LIMIT, lines.next_line())
            .await
            .expect("forwarding-node ready in time")
            .unwrap()
            .expect("forwarding-node says where it listens");
        let mut words = line.split(' ');
        assert_eq!(words.next(), Some("listening"), "{line}");
        let port = words.next().and_then(|p| p.parse().ok()).expect(&line);
        let id = words.next().expect(&line).to_owned();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        VolleyNode { child, port, id }
    }

    fn upstream(&self) -> Upstream {
        Upstream {
            addr: ([127, 0, 0, 1], self.port).into(),
            node: self.id.clone(),
            volley: true,
            gone: false,
        }
    }

    /// SIGKILL, and waits until it is gone.
    async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        timeout(LIMIT, self.child.wait())
            .await
            .expect("killed in time")
            .unwrap();
    }
}

/// Redis, three Volley nodes and the proxy in front of them.
struct Cluster {
    proxy: Proxy,
    nodes: Vec<VolleyNode>,
    /// Kept so that Redis runs as long as the cluster.
    _redis: Redis,
}

impl Cluster {
    async fn start(mode: Mode, recovery: bool, ping_ms: Option<u64>) -> Cluster {
        let redis = Redis::start().await;
        let url = redis.url();
        let (a, b, c) = tokio::join!(
            VolleyNode::start(&url, mode, recovery, ping_ms),
            VolleyNode::start(&url, mode, recovery, ping_ms),
            VolleyNode::start(&url, mode, recovery, ping_ms),
        );
        let nodes = vec![a, b, c];
        let proxy = Proxy::start(nodes.iter().map(VolleyNode::upstream).collect()).await;
        Cluster {
            proxy,
            nodes,
            _redis: redis,
        }
    }

    fn node_ids(&self) -> BTreeSet<String> {
        self.nodes.iter().map(|n| n.id.clone()).collect()
    }
}

/// The node a session id names.
fn owner(engine_id: &str) -> String {
    engine_id
        .split_once('.')
        .unwrap_or_else(|| panic!("{engine_id} names no node"))
        .0
        .to_owned()
}

// ---- The clients ----

/// The transports a client is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transports {
    Polling,
    Upgrade,
    WebSocket,
}

impl Transports {
    fn option(self) -> Value {
        match self {
            Transports::Polling => json!(["polling"]),
            Transports::Upgrade => json!(["polling", "websocket"]),
            Transports::WebSocket => json!(["websocket"]),
        }
    }
}

/// socket.io-client sockets in one Node process, with what each received, in order.
struct Clients {
    script: NodeScript,
    inbox: HashMap<String, VecDeque<Value>>,
    /// The transport each client upgraded to, once it did.
    upgraded: HashMap<String, String>,
}

/// What `connect` and `info` answer.
#[derive(Debug, Clone)]
struct Info {
    id: String,
    engine_id: String,
    transport: String,
}

impl Info {
    fn of(v: &Value) -> Info {
        let s = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("{k} in {v}"))
                .to_owned()
        };
        Info {
            id: s("id"),
            engine_id: s("engineId"),
            transport: s("transport"),
        }
    }
}

impl Clients {
    async fn start() -> Clients {
        Clients {
            script: NodeScript::start("sticky-free-client.mjs", &[]).await,
            inbox: HashMap::new(),
            upgraded: HashMap::new(),
        }
    }

    /// Connects `name` through `url` with auth `{who, token}`; with `reconnect_ms`, it
    /// reconnects after that delay (give or take half) whenever it loses the connection.
    async fn connect(
        &mut self,
        name: &str,
        url: &str,
        transports: Transports,
        reconnect_ms: Option<u64>,
    ) -> Info {
        let args = json!({
            "name": name,
            "url": url,
            "auth": { "who": name, "token": format!("t-{name}") },
            "transports": transports.option(),
            "reconnectionDelay": reconnect_ms,
        });
        Info::of(&self.script.call("connect", args).await)
    }

    async fn info(&mut self, name: &str) -> Info {
        Info::of(&self.script.call("info", json!({ "client": name })).await)
    }

    async fn emit(&mut self, name: &str, event: &str, args: Value) {
        self.script
            .call(
                "emit",
                json!({ "client": name, "event": event, "args": args }),
            )
            .await;
    }

    async fn ack(&mut self, name: &str, event: &str, args: Value) -> Value {
        self.script
            .call(
                "emitWithAck",
                json!({ "client": name, "event": event, "args": args }),
            )
            .await
    }

    /// The next report about `name` (an event, a disconnection or a reconnection); upgrades
    /// are noted on the way and connection errors skipped.
    async fn next(&mut self, name: &str) -> Value {
        loop {
            if let Some(r) = self.inbox.get_mut(name).and_then(VecDeque::pop_front) {
                match r["report"].as_str() {
                    Some("upgrade") => {
                        self.upgraded
                            .insert(name.to_owned(), r["transport"].as_str().unwrap().into());
                    }
                    Some("connect_error") => {}
                    _ => return r,
                }
                continue;
            }
            let r = self.script.report().await;
            let client = r["client"].as_str().unwrap_or_default().to_owned();
            self.inbox.entry(client).or_default().push_back(r);
        }
    }

    /// The next event `name` received, as `[event, ...args]`.
    async fn event(&mut self, name: &str) -> Value {
        let r = self.next(name).await;
        assert_eq!(r["report"], "event", "{name}: {r}");
        let mut ev = vec![r["name"].clone()];
        ev.extend(r["args"].as_array().cloned().unwrap_or_default());
        Value::Array(ev)
    }

    /// Waits until `name` has upgraded to WebSocket.
    async fn upgrade(&mut self, name: &str) {
        while !self.upgraded.contains_key(name) {
            let r = self.script.report().await;
            let client = r["client"].as_str().unwrap_or_default().to_owned();
            if r["report"] == "upgrade" && client == name {
                self.upgraded
                    .insert(client, r["transport"].as_str().unwrap().into());
            } else {
                self.inbox.entry(client).or_default().push_back(r);
            }
        }
        assert_eq!(self.upgraded[name], "websocket");
    }

    /// Asserts that `name` has received nothing more so far (after a round trip to it).
    async fn assert_idle(&mut self, name: &str) {
        // An acknowledged emit: everything sent to it before has been reported before the
        // answer line.
        self.ack(name, "ack", json!([0])).await;
        while let Some(r) = self.script.try_report() {
            let client = r["client"].as_str().unwrap_or_default().to_owned();
            self.inbox.entry(client).or_default().push_back(r);
        }
        let left: Vec<&Value> = self
            .inbox
            .get(name)
            .map(|q| q.iter().filter(|r| r["report"] == "event").collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{name} got more: {left:?}");
    }
}

/// Bytes 0 to 255, as the line protocol carries binary.
fn binary() -> Value {
    let bytes: Vec<u8> = (0..=255).collect();
    json!({ "$bin": base64(&bytes) })
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---- The scenarios ----

/// The nodes' ping interval and ping timeout in the transport modes' tests: short enough
/// for two ping cycles in a test, long enough for a loaded machine.
const HEARTBEAT_MS: u64 = 2500;

/// Each of `names` gets one `from-node` per node of `nodes` (in any order between nodes).
async fn from_every_node(clients: &mut Clients, names: &[&str], nodes: &BTreeSet<String>) {
    for name in names {
        let mut got = BTreeSet::new();
        for _ in 0..nodes.len() {
            let ev = clients.event(name).await;
            assert_eq!(ev[0], "from-node", "{name}: {ev}");
            got.insert(ev[1].as_str().unwrap().to_owned());
        }
        assert_eq!(&got, nodes, "{name}");
    }
}

/// Every scenario of issue #16 in one transport mode, through the proxy.
async fn transport_mode(transports: Transports, mode: Mode) {
    let started = Instant::now();
    // Shown with a failure: where the test was, and when.
    let phase = |what: &str| eprintln!("{transports:?} ({mode:?}) {:?}: {what}", started.elapsed());
    // Short heartbeats, so that some happen during the test.
    let cluster = Cluster::start(mode, false, Some(HEARTBEAT_MS)).await;
    let url = cluster.proxy.url();
    let nodes = cluster.node_ids();
    let mut clients = Clients::start().await;

    // Connect with auth: `hello` names the node that owns the session.
    let mut names = Vec::new();
    let mut infos = HashMap::new();
    for name in ["a", "b", "w"] {
        // With an upgrade, the first client is one whose upgrade went through another node
        // than its session's owner (round robin makes that likely; retried until it does).
        let mut tries = 0;
        let (name, _) = loop {
            let attempt = if tries == 0 {
                name.to_owned()
            } else {
                format!("{name}{tries}")
            };
            let info = clients.connect(&attempt, &url, transports, None).await;
            let hello = clients.event(&attempt).await;
            assert_eq!(
                hello,
                json!(["hello", { "who": attempt, "token": format!("t-{attempt}") }, owner(&info.engine_id)]),
                "{attempt}"
            );
            if transports != Transports::Upgrade {
                break (attempt, info);
            }
            clients.upgrade(&attempt).await;
            let carrier = cluster
                .proxy
                .upgraded_on(&info.engine_id)
                .expect("upgraded");
            if name != "a" || carrier != owner(&info.engine_id) {
                break (attempt, info);
            }
            clients
                .script
                .call("close", json!({ "client": attempt }))
                .await;
            cluster.proxy.skip();
            tries += 1;
            assert!(tries < 20, "an upgrade through another node than the owner");
        };
        let info = clients.info(&name).await.clone();
        let want = if transports == Transports::Polling {
            "polling"
        } else {
            "websocket"
        };
        assert_eq!(info.transport, want, "{name}");
        assert!(nodes.contains(&owner(&info.engine_id)));
        names.push(name.clone());
        infos.insert(name.clone(), info);
    }
    let (a, b, w) = (names[0].clone(), names[1].clone(), names[2].clone());

    phase("heartbeats");
    // Heartbeats keep the sessions alive: idle for two ping cycles (the time passing is what
    // is tested here), then every session is the same one and none was lost.
    tokio::time::sleep(std::time::Duration::from_millis(2 * HEARTBEAT_MS + 500)).await;
    for name in [&a, &b, &w] {
        let now = clients.info(name).await;
        assert_eq!(now.engine_id, infos[name].engine_id, "{name}");
        assert_eq!(
            clients.ack(name, "ack", json!(["alive"])).await,
            json!("alive")
        );
    }

    phase("events and acks");
    // Events and acks both ways.
    clients.emit(&a, "echo", json!(["x", { "n": 1 }])).await;
    assert_eq!(clients.event(&a).await, json!(["echo", "x", { "n": 1 }]));
    assert_eq!(
        clients.ack(&a, "ack", json!([{ "n": 2 }])).await,
        json!({ "n": 2 })
    );
    clients.emit(&a, "server-ack", json!([{ "q": 3 }])).await;
    assert_eq!(clients.event(&a).await, json!(["ask", { "q": 3 }]));
    assert_eq!(
        clients.event(&a).await,
        json!(["answer", { "client": a, "echo": { "q": 3 } }])
    );

    phase("binary");
    // Binary both ways: in an event, an ack, and the client's ack to the server.
    clients.emit(&b, "echo", json!([binary(), "tail"])).await;
    assert_eq!(clients.event(&b).await, json!(["echo", binary(), "tail"]));
    assert_eq!(clients.ack(&b, "ack", json!([binary()])).await, binary());
    clients.emit(&b, "server-ack", json!([binary()])).await;
    assert_eq!(clients.event(&b).await, json!(["ask", binary()]));
    assert_eq!(
        clients.event(&b).await,
        json!(["answer", { "client": b, "echo": binary() }])
    );

    phase("rooms");
    // Rooms: a and b in r1, w not; a broadcast from the owner of each client's session.
    for name in [&a, &b] {
        assert_eq!(clients.ack(name, "join", json!(["r1"])).await, json!("r1"));
    }
    let mut from = BTreeSet::new();
    for name in [&a, &b, &w] {
        let node = clients
            .ack(name, "to-room", json!(["r1", "room-msg", { "from": name }]))
            .await;
        from.insert(node.as_str().unwrap().to_owned());
    }
    for name in [&a, &b] {
        let mut got = BTreeSet::new();
        for _ in 0..3 {
            let ev = clients.event(name).await;
            assert_eq!(ev[0], "room-msg", "{name}: {ev}");
            got.insert(ev[1]["from"].as_str().unwrap().to_owned());
        }
        let want: BTreeSet<String> = [&a, &b, &w].iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "{name}");
    }
    // And a broadcast from every node: each client gets one `from-node` per node.
    clients.ack(&w, "broadcast-all", json!([])).await;
    from_every_node(&mut clients, &[&a, &b, &w], &nodes).await;
    // w was never in r1.
    clients.assert_idle(&w).await;

    phase("burst");
    // 1,000 events in a burst, all echoed, in order.
    let burst = Instant::now();
    clients
        .script
        .call("burst", json!({ "client": a, "n": 1000 }))
        .await;
    for i in 0..1000 {
        assert_eq!(clients.event(&a).await, json!(["echo", { "i": i }]));
    }
    eprintln!("{transports:?}: 1000 echoes in {:?}", burst.elapsed());

    phase("disconnects");
    // Server and client disconnects; w watches who leaves.
    assert_eq!(
        clients.ack(&w, "join", json!(["watchers"])).await,
        json!("watchers")
    );
    // Over WebSocket the underlying connection is closed too (through the relay when the
    // upgrade went through another node).
    let close = transports != Transports::Polling;
    clients.emit(&b, "disconnect-me", json!([close])).await;
    let r = clients.next(&b).await;
    assert_eq!(
        (r["report"].as_str(), r["reason"].as_str()),
        (Some("disconnect"), Some("io server disconnect"))
    );
    assert_eq!(
        clients.event(&w).await,
        json!(["left", { "id": infos[&b].id, "reason": "server namespace disconnect" }])
    );
    clients.script.call("close", json!({ "client": a })).await;
    assert_eq!(
        clients.event(&w).await,
        json!(["left", { "id": infos[&a].id, "reason": "client namespace disconnect" }])
    );
    let sockets = clients.ack(&w, "sockets", json!([])).await;
    assert!(
        !sockets
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == &json!(infos[&a].id) || s == &json!(infos[&b].id)),
        "{sockets}"
    );
    assert!(sockets.as_array().unwrap().contains(&json!(infos[&w].id)));
    clients.assert_idle(&w).await;

    let counts = cluster.proxy.counts();
    eprintln!("{transports:?}: requests per node {counts:?}");
    match transports {
        // Every node served requests, and each served requests for sessions of others
        // unless it owns every session (round robin can hand all three handshakes to one).
        Transports::Polling => {
            let owners: BTreeSet<String> = infos.values().map(|i| owner(&i.engine_id)).collect();
            for (node, c) in &counts {
                assert!(c.requests > 0, "{node}: {counts:?}");
                let owns_all = owners.len() == 1 && owners.contains(node);
                assert!(owns_all || c.foreign > 0, "{node} ({owners:?}): {counts:?}");
            }
        }
        Transports::Upgrade => assert!(
            counts
                .iter()
                .map(|(_, c)| c.foreign_upgrades)
                .sum::<usize>()
                > 0,
            "{counts:?}"
        ),
        Transports::WebSocket => {}
    }
    eprintln!("{transports:?} ({mode:?}): {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_only_every_request_on_another_node() {
    transport_mode(Transports::Polling, Mode::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_then_websocket_upgrade_on_another_node() {
    transport_mode(Transports::Upgrade, Mode::Classic).await;
}

/// The same through nodes on the Streams adapter (its relay is the same Pub/Sub one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_only_on_the_streams_adapter() {
    transport_mode(Transports::Polling, Mode::Streams).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_only() {
    transport_mode(Transports::WebSocket, Mode::Classic).await;
}

/// `ev` without the offset a recovering server appends as the last argument.
fn strip(ev: &Value) -> Value {
    let mut items = ev.as_array().unwrap().clone();
    let offset = items.pop().unwrap();
    assert!(offset.is_string(), "an offset ends {ev}");
    Value::Array(items)
}

/// A WebSocket client (named `s<n>`) whose session is owned by another node than `node`:
/// it only ever talks to its own node, so killing `node` leaves it alone.
async fn websocket_client_not_of(clients: &mut Clients, url: &str, node: &str) -> String {
    for tries in 0..12 {
        let name = format!("s{tries}");
        let s = clients
            .connect(&name, url, Transports::WebSocket, None)
            .await;
        assert_eq!(strip(&clients.event(&name).await)[0], "hello");
        if owner(&s.engine_id) != node {
            return name;
        }
        clients
            .script
            .call("close", json!({ "client": name }))
            .await;
    }
    panic!("no client of another node than {node} in 12 tries");
}

/// A raw `GET` of session `sid` sent straight to the node on `port`: (status, body).
async fn raw_poll(port: u16, sid: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Connection: close\r\n\r\n"
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    timeout(LIMIT, tcp.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (status, body.unwrap_or_default())
}

/// The owner of a polling session is killed (SIGKILL, then taken out of the proxy's
/// rotation at once, so that no later request meets a closed port: what a balancer's health
/// check does, made deterministic). A request for the session through a node still alive
/// gets `400 Session ID unknown`; the client notices within its heartbeat and reconnects
/// through the proxy to a node still alive.
///
/// Connection state recovery is on (Streams adapter): with forwarding, the owner keeps the
/// session of each live socket in Redis (at connect and at each room change), so the client
/// recovers on another node with its id, its room and what was broadcast while it was away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_killed_mid_session() {
    let started = Instant::now();
    let mut cluster = Cluster::start(Mode::Streams, true, Some(1500)).await;
    let url = cluster.proxy.url();
    let mut clients = Clients::start().await;

    let k = clients
        .connect("k", &url, Transports::Polling, Some(100))
        .await;
    let k_owner = owner(&k.engine_id);
    assert_eq!(strip(&clients.event("k").await)[0], "hello");
    assert_eq!(
        clients.ack("k", "join", json!(["news"])).await,
        json!("news")
    );
    // The sender: a client of another node, over WebSocket so that it only ever talks to
    // that node (a polling client would lose its session if one of its requests was on its
    // way through the node that is killed).
    let sender = websocket_client_not_of(&mut clients, &url, &k_owner).await;
    clients
        .ack(&sender, "to-room", json!(["news", "n", 0]))
        .await;
    assert_eq!(strip(&clients.event("k").await), json!(["n", 0]));

    let victim = cluster.nodes.iter_mut().find(|n| n.id == k_owner).unwrap();
    victim.kill().await;
    cluster.proxy.remove(&k_owner);
    let alive = cluster.nodes.iter().find(|n| n.id != k_owner).unwrap().port;
    assert_eq!(
        raw_poll(alive, &k.engine_id).await,
        (
            400,
            r#"{"code":1,"message":"Session ID unknown"}"#.to_owned()
        ),
        "a request for the dead owner's session"
    );
    // Broadcast while the client is away (it notices within a heartbeat).
    for i in 1..=3 {
        clients
            .ack(&sender, "to-room", json!(["news", "n", i]))
            .await;
    }
    let r = clients.next("k").await;
    assert_eq!(r["report"], "disconnect", "{r}");
    eprintln!("k lost its session: {}", r["reason"]);
    let r = clients.next("k").await;
    assert_eq!(r["report"], "connect", "{r}");
    let back = Info::of(&r);
    assert_ne!(
        owner(&back.engine_id),
        k_owner,
        "reconnected to a node alive"
    );
    assert_eq!(
        (r["recovered"].as_bool(), &back.id),
        (Some(true), &k.id),
        "the session the killed owner kept, recovered ({r})"
    );
    for i in 1..=3 {
        assert_eq!(
            strip(&clients.event("k").await),
            json!(["n", i]),
            "missed {i}"
        );
    }
    // Its `connection` handler runs again on the new node, after the replay.
    assert_eq!(strip(&clients.event("k").await)[0], "hello");
    // The recovered socket is still in its room, on its new node.
    clients
        .ack(&sender, "to-room", json!(["news", "n", 4]))
        .await;
    assert_eq!(strip(&clients.event("k").await), json!(["n", 4]));
    eprintln!("owner killed: {:?}", started.elapsed());
}

/// A Node socket.io node (`@socket.io/redis-adapter`, `tests/node/interop-server.mjs`) in
/// the cluster, behind the same proxy, all clients polling. Node needs affinity for its own
/// sessions: the proxy sends a request whose `sid` has no `.` to the node that issued it
/// (learnt from the handshake's answer), and every other request to any node in turn (new
/// handshakes among all four, requests for Volley sessions among the Volley nodes). Room
/// broadcasts cross both ways between clients of Node and of Volley nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_socketio_node_in_the_cluster() {
    let started = Instant::now();
    let redis = Redis::start().await;
    let url = redis.url();
    let node_args = [url.as_str()];
    let (a, b, c, mut node) = tokio::join!(
        VolleyNode::start(&url, Mode::Classic, false, None),
        VolleyNode::start(&url, Mode::Classic, false, None),
        VolleyNode::start(&url, Mode::Classic, false, None),
        NodeScript::start("interop-server.mjs", &node_args),
    );
    let node_port = node.ready["port"].as_u64().expect("a port") as u16;
    let mut upstreams: Vec<Upstream> = [&a, &b, &c].iter().map(|n| n.upstream()).collect();
    upstreams.push(Upstream {
        addr: ([127, 0, 0, 1], node_port).into(),
        node: "node".to_owned(),
        volley: false,
        gone: false,
    });
    let proxy = Proxy::start(upstreams).await;
    let mut clients = Clients::start().await;

    // Clients until one is Node's and one a Volley node's.
    let (mut on_node, mut on_volley) = (None, None);
    for i in 0..16 {
        let name = format!("c{i}");
        let info = clients
            .connect(&name, &proxy.url(), Transports::Polling, None)
            .await;
        if info.engine_id.contains('.') {
            // A Volley node greets.
            assert_eq!(clients.event(&name).await[0], "hello");
            on_volley.get_or_insert(name);
        } else {
            on_node.get_or_insert(name);
        }
        if on_node.is_some() && on_volley.is_some() {
            break;
        }
    }
    let (n, v) = (
        on_node.expect("a client of the Node node"),
        on_volley.expect("a client of a Volley node"),
    );
    for name in [&n, &v] {
        assert_eq!(
            clients.ack(name, "join", json!(["mix"])).await,
            json!("mix")
        );
    }
    for i in 0..5 {
        // From a Volley node to the room...
        clients
            .ack(&v, "to-room", json!(["mix", "from-volley", i]))
            .await;
        // ...and from the Node node.
        node.call(
            "emit",
            json!({ "to": ["mix"], "event": "from-node-js", "args": [i] }),
        )
        .await;
        for name in [&n, &v] {
            let mut got = vec![clients.event(name).await, clients.event(name).await];
            got.sort_by_key(|e| e[0].as_str().unwrap().to_owned());
            assert_eq!(
                got,
                vec![json!(["from-node-js", i]), json!(["from-volley", i])],
                "{name}"
            );
        }
    }
    // Both sessions are still whole: every request of the Node client reached Node.
    for name in [&n, &v] {
        assert_eq!(clients.ack(name, "join", json!(["x"])).await, json!("x"));
        assert_eq!(clients.info(name).await.transport, "polling");
    }
    let counts = proxy.counts();
    eprintln!("with Node: requests per node {counts:?}");
    assert!(counts.iter().all(|(_, c)| c.requests > 0), "{counts:?}");
    let to_node = &counts.iter().find(|(id, _)| id == "node").unwrap().1;
    assert_eq!(
        to_node.foreign, 0,
        "no request for a Volley session went to Node"
    );
    eprintln!("with Node: {:?}", started.elapsed());
    drop(redis);
}

/// The node that carries a session's WebSocket (its upgrade went through a node other than
/// the owner) is killed; the owner lives on. The client reconnects through the proxy and,
/// with recovery on, gets its session back with what was broadcast meanwhile.
///
/// The owner learns that the carrier is gone when it next writes to the client (the relay
/// finds no node to take the frame); here that is the first broadcast, sent right after the
/// kill, well within the client's reconnection delay (socket.io-client's default of 1 s,
/// randomized by half). With nothing to send, the owner would only learn it at its next
/// ping, and a client reconnecting before that would not recover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carrier_killed_mid_session() {
    let started = Instant::now();
    let mut cluster = Cluster::start(Mode::Streams, true, Some(1500)).await;
    let url = cluster.proxy.url();
    let mut clients = Clients::start().await;

    // k: a session whose WebSocket goes through another node than its owner.
    let mut tries = 0;
    let (k, k_info, carrier) = loop {
        let name = format!("k{tries}");
        let info = clients
            .connect(&name, &url, Transports::Upgrade, Some(1000))
            .await;
        assert_eq!(strip(&clients.event(&name).await)[0], "hello");
        clients.upgrade(&name).await;
        let carrier = cluster
            .proxy
            .upgraded_on(&info.engine_id)
            .expect("upgraded");
        if carrier != owner(&info.engine_id) {
            break (name, info, carrier);
        }
        clients
            .script
            .call("close", json!({ "client": name }))
            .await;
        cluster.proxy.skip();
        tries += 1;
        assert!(tries < 20, "an upgrade through another node than the owner");
    };
    let k_owner = owner(&k_info.engine_id);
    assert_eq!(
        clients.ack(&k, "join", json!(["news"])).await,
        json!("news")
    );
    // The sender, which watches who leaves: a WebSocket client of any node but the carrier.
    let sender = websocket_client_not_of(&mut clients, &url, &carrier).await;
    assert_eq!(
        clients.ack(&sender, "join", json!(["watchers"])).await,
        json!("watchers")
    );
    clients
        .ack(&sender, "to-room", json!(["news", "n", 0]))
        .await;
    assert_eq!(strip(&clients.event(&k).await), json!(["n", 0]));

    let killed_at = Instant::now();
    let victim = cluster.nodes.iter_mut().find(|n| n.id == carrier).unwrap();
    victim.kill().await;
    cluster.proxy.remove(&carrier);
    for i in 1..=3 {
        clients
            .ack(&sender, "to-room", json!(["news", "n", i]))
            .await;
    }
    let r = clients.next(&k).await;
    assert_eq!(r["report"], "disconnect", "{r}");
    eprintln!(
        "k lost its connection after {:?}: {}",
        killed_at.elapsed(),
        r["reason"]
    );
    let r = clients.next(&k).await;
    assert_eq!(r["report"], "connect", "{r}");
    eprintln!("k back after {:?}: {r}", killed_at.elapsed());
    // The owner saw the socket leave (and stored its session) before it came back.
    let left = clients.event(&sender).await;
    assert_eq!(
        strip(&left),
        json!(["left", { "id": k_info.id, "reason": "transport error" }]),
        "{k_owner}"
    );
    assert_eq!(r["recovered"], true, "{r}");
    assert_eq!(Info::of(&r).id, k_info.id, "the same socket id");
    for i in 1..=3 {
        assert_eq!(strip(&clients.event(&k).await), json!(["n", i]));
    }
    eprintln!("carrier killed: {:?}", started.elapsed());
}

/// Large binary events both ways through the proxy: `n` echoes of `size` bytes sent in a
/// burst, then three of 300,000 bytes sent by the server at once.
async fn large_payloads(transports: Transports, n: usize, size: usize) {
    let started = Instant::now();
    let cluster = Cluster::start(Mode::Classic, false, None).await;
    let url = cluster.proxy.url();
    let mut clients = Clients::start().await;
    let mut tries = 0;
    let name = loop {
        let name = format!("big{tries}");
        let info = clients.connect(&name, &url, transports, None).await;
        assert_eq!(clients.event(&name).await[0], "hello");
        if transports != Transports::Upgrade {
            break name;
        }
        clients.upgrade(&name).await;
        let carrier = cluster.proxy.upgraded_on(&info.engine_id).unwrap();
        if carrier != owner(&info.engine_id) {
            break name;
        }
        clients
            .script
            .call("close", json!({ "client": name }))
            .await;
        cluster.proxy.skip();
        tries += 1;
        assert!(tries < 20, "an upgrade through another node than the owner");
    };
    clients
        .script
        .call(
            "burstBinary",
            json!({ "client": name, "n": n, "size": size }),
        )
        .await;
    for i in 0..n {
        let ev = clients.event(&name).await;
        assert_eq!(ev[0], "echo");
        assert_eq!(ev[1], json!({ "i": i }));
        let want = base64(&vec![(i % 256) as u8; size]);
        assert!(ev[2]["$bin"] == json!(want), "{i}: {size} bytes echoed");
    }
    assert_eq!(
        clients.ack(&name, "blobs", json!([3, 300_000])).await,
        json!(3)
    );
    for i in 0..3 {
        let ev = clients.event(&name).await;
        assert_eq!(ev[0], "blob");
        assert_eq!(ev[1], json!({ "i": i }));
        let want = base64(&vec![i as u8; 300_000]);
        assert!(ev[2]["$bin"] == json!(want), "{i}: 300,000 bytes received");
    }
    eprintln!(
        "{transports:?}, {n} x {size} bytes: {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_binary_events_polling() {
    large_payloads(Transports::Polling, 12, 300_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_binary_events_websocket_only() {
    large_payloads(Transports::WebSocket, 12, 300_000).await;
}

/// Large binaries through a relayed WebSocket, both ways, within what a relayed WebSocket
/// holds in flight: the relay window (1 MiB) each way plus the session's own queue
/// (`max_buffered_bytes`, 1 MiB). A burst beyond that, sent without reading, can close the
/// session as a slow client (`OverflowPolicy::Close`) where a direct connection's kernel
/// buffers would have taken it: 12 × 300,000 bytes did so once in eight runs here with both
/// cores busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_binary_events_through_a_relayed_websocket() {
    large_payloads(Transports::Upgrade, 3, 300_000).await;
}

/// Eight clients bursting at once: with polling, every request of each goes to any node,
/// and the relay carries the forwarded requests of all of them together; with an upgrade,
/// several WebSockets are relayed at once.
async fn many_clients_at_once(transports: Transports) {
    let started = Instant::now();
    let cluster = Cluster::start(Mode::Classic, false, None).await;
    let url = cluster.proxy.url();
    let mut clients = Clients::start().await;
    let names: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    for name in &names {
        clients.connect(name, &url, transports, None).await;
        assert_eq!(clients.event(name).await[0], "hello");
        if transports == Transports::Upgrade {
            clients.upgrade(name).await;
        }
    }
    let n = 300;
    for name in &names {
        clients
            .script
            .call("burst", json!({ "client": name, "n": n }))
            .await;
    }
    for name in &names {
        for i in 0..n {
            assert_eq!(
                clients.event(name).await,
                json!(["echo", { "i": i }]),
                "{name}"
            );
        }
    }
    let counts = cluster.proxy.counts();
    let forwarded: usize = counts
        .iter()
        .map(|(_, c)| match transports {
            Transports::Upgrade => c.foreign_upgrades,
            _ => c.foreign,
        })
        .sum();
    assert!(forwarded > 0, "{counts:?}");
    eprintln!("8 x {n} echoes, {transports:?}: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_polling_clients_at_once() {
    many_clients_at_once(Transports::Polling).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_relayed_websockets_at_once() {
    many_clients_at_once(Transports::Upgrade).await;
}
