//! Volley nodes in one process, each with its own `StreamsAdapter` on a redis-server this test
//! starts, raw Socket.IO clients over WebSocket; and a Node socket.io server with
//! `@socket.io/redis-streams-adapter` (`tests/node/streams-node.mjs`) in the same cluster.
//! Node 20 or later with the packages of `tests/node` installed is required for the interop
//! test: without it, it fails.

use serde_json::{Value, json};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::time::{sleep, timeout};
use volley::{Data, Socket};
use volley_redis::streams::{StreamsAdapter, StreamsOptions};
use volley_tokio::TokioRuntime;

mod common;
use common::{Client, LIMIT, Redis, node_dir, serve};

struct Node {
    io: volley::Io<TokioRuntime>,
    adapter: StreamsAdapter,
    port: u16,
    /// Socket handles kept by the `keep` event.
    kept: Arc<Mutex<Vec<Socket>>>,
}

async fn node(url: &str, stream: &str, window: Duration) -> Node {
    let rt = TokioRuntime::current();
    let mut options = StreamsOptions::new(url).stream_name(stream);
    options.redis.backoff = (Duration::from_millis(50), Duration::from_millis(400));
    options.redis.connect_timeout = Duration::from_millis(500);
    options.redis.count_interval = Duration::from_millis(200);
    options.block = Duration::from_millis(1000);
    let adapter = StreamsAdapter::new(options, rt.clone());
    let io = volley::builder()
        .adapter(adapter.clone())
        .request_timeout(Duration::from_secs(2))
        .connection_state_recovery(window, true)
        .build(rt);
    io.ns("/")
        .on("join", |s: Socket, Data(room): Data<String>| async move {
            s.join(room.as_str());
            true
        })
        .on("recovered", |s: Socket| async move { s.recovered() });
    // The application keeps socket handles, to emit through them later.
    let kept: Arc<Mutex<Vec<Socket>>> = Arc::default();
    let keep = kept.clone();
    io.ns("/").on("keep", move |s: Socket| {
        keep.lock().unwrap().push(s);
        async move { true }
    });
    let port = serve(&io).await;
    timeout(LIMIT, adapter.ready())
        .await
        .expect("adapter ready in time");
    Node {
        io,
        adapter,
        port,
        kept,
    }
}

/// The offset a packet carries as its last argument.
fn offset(ev: &Value) -> String {
    let o = ev
        .as_array()
        .and_then(|a| a.last())
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no offset in {ev}"));
    let (ms, seq) = o
        .split_once('-')
        .unwrap_or_else(|| panic!("{o} is no entry id"));
    assert!(
        ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok(),
        "{o}"
    );
    o.to_owned()
}

/// `ev` without its offset.
fn strip(ev: &Value) -> Value {
    let mut items = ev.as_array().unwrap().clone();
    items.pop();
    Value::Array(items)
}

async fn redis_conn(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Waits until the session of `pid` is kept in Redis (the server persists it when it sees
/// the connection go).
async fn session_kept(url: &str, pid: &str) {
    let mut conn = redis_conn(url).await;
    let key = format!("sio:session:{pid}");
    timeout(LIMIT, async {
        loop {
            let n: i64 = redis::cmd("EXISTS")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            if n == 1 {
                return;
            }
            sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the session kept in Redis in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_rooms_and_requests_across_nodes() {
    let redis = Redis::start().await;
    let window = Duration::from_secs(30);
    let a = node(&redis.url(), "s1", window).await;
    let b = node(&redis.url(), "s1", window).await;
    let c = node(&redis.url(), "s1", window).await;
    for n in [&a, &b, &c] {
        let count = timeout(LIMIT, n.adapter.refresh_server_count())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(count, 3);
    }
    let mut ca = Client::connect(a.port).await;
    let mut cb = Client::connect(b.port).await;
    let mut cc = Client::connect(c.port).await;

    // One entry of the stream: every node's clients get it with the same offset, its id.
    a.io.emit("hello", &"all").unwrap();
    let mut offsets = Vec::new();
    for cl in [&mut ca, &mut cb, &mut cc] {
        let ev = cl.event().await;
        assert_eq!(strip(&ev), json!(["hello", "all"]));
        offsets.push(offset(&ev));
    }
    assert!(offsets.iter().all(|o| *o == offsets[0]), "{offsets:?}");

    // Rooms across nodes, in stream order: the join reaches C before the broadcast.
    a.io.to(cc.sid.as_str()).sockets_join(["vip"]);
    a.io.to("vip").emit("vip-only", &1).unwrap();
    assert_eq!(strip(&cc.event().await), json!(["vip-only", 1]));
    b.io.emit("marker", &2).unwrap();
    for cl in [&mut ca, &mut cb, &mut cc] {
        assert_eq!(strip(&cl.event().await), json!(["marker", 2]));
    }

    // Requests and answers go by Pub/Sub.
    let sockets = timeout(LIMIT, b.io.fetch_sockets()).await.unwrap();
    let mut ids: Vec<String> = sockets.iter().map(|s| s.id().to_string()).collect();
    ids.sort();
    let mut want = vec![ca.sid.clone(), cb.sid.clone(), cc.sid.clone()];
    want.sort();
    assert_eq!(
        ids, want,
        "fetch_sockets sees every node (Pub/Sub requests)"
    );
    let remote_c = sockets.iter().find(|s| s.id().as_str() == cc.sid).unwrap();
    assert!(remote_c.rooms().iter().any(|r| r.as_str() == "vip"));
    let rooms = timeout(LIMIT, a.io.all_rooms()).await.unwrap();
    assert!(rooms.iter().any(|r| r.as_str() == "vip"), "{rooms:?}");
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_on_another_node_then_expiry() {
    let redis = Redis::start().await;
    let url = redis.url();
    let window = Duration::from_millis(2500);
    let a = node(&url, "s2", window).await;
    let b = node(&url, "s2", window).await;
    // Observers see every broadcast to all, in stream order: the test waits on them.
    let mut watch_a = Client::connect(a.port).await;
    let mut watch_b = Client::connect(b.port).await;

    let mut cl = Client::connect(a.port).await;
    assert!(cl.pid.is_some(), "recovery on: the CONNECT reply has a pid");
    assert_eq!(cl.call("join", &[json!("r1")]).await, json!([true]));
    assert_eq!(cl.call("keep", &[]).await, json!([true]));
    a.io.emit("e", &0).unwrap();
    let first = cl.event().await;
    assert_eq!(strip(&first), json!(["e", 0]));
    let last_seen = offset(&first);
    assert_eq!(strip(&watch_a.event().await), json!(["e", 0]));
    assert_eq!(strip(&watch_b.event().await), json!(["e", 0]));
    let (sid, pid) = (cl.sid.clone(), cl.pid.clone().unwrap());
    let auth = cl.recovery(&last_seen);
    cl.drop_connection().await;
    session_kept(&url, &pid).await;

    // Missed while away, from both nodes: only what its rooms select.
    b.io.emit("e", &1).unwrap();
    assert_eq!(strip(&watch_a.event().await), json!(["e", 1]));
    a.io.to("r1").emit("e", &2).unwrap();
    a.io.to("other").emit("x", &3).unwrap();
    a.io.except("r1").emit("x", &4).unwrap();
    a.io.emit("e", &5).unwrap();
    // Through the handle the application kept: stored for the socket's room, as the
    // reference stores a private emit, though the socket is away.
    let handle = a.kept.lock().unwrap()[0].clone();
    handle.emit("p", &9).unwrap();
    a.io.emit("e", &10).unwrap();
    // A's writer keeps call order: once 10 is seen, 2 to 9 are in the stream.
    assert_eq!(strip(&watch_a.event().await), json!(["x", 4]));
    assert_eq!(strip(&watch_a.event().await), json!(["e", 5]));
    assert_eq!(strip(&watch_a.event().await), json!(["e", 10]));

    let mut back = Client::connect_with(b.port, Some(auth)).await;
    assert_eq!(back.sid, sid, "same socket id");
    assert_eq!(back.pid.as_deref(), Some(pid.as_str()), "same private id");
    let mut got = Vec::new();
    let mut offsets = Vec::new();
    for _ in 0..5 {
        let ev = back.event().await;
        offsets.push(offset(&ev));
        got.push(strip(&ev));
    }
    assert_eq!(
        got,
        vec![
            json!(["e", 1]),
            json!(["e", 2]),
            json!(["e", 5]),
            json!(["p", 9]),
            json!(["e", 10])
        ]
    );
    assert!(offsets.windows(2).all(|w| w[0] != w[1]));
    assert_eq!(back.call("recovered", &[]).await, json!([true]));
    // Exactly once: the next event is a new one.
    b.io.emit("m", &6).unwrap();
    assert_eq!(strip(&back.event().await), json!(["m", 6]));
    // Its rooms came back: a broadcast to r1 from the other node reaches it.
    a.io.to("r1").emit("r", &7).unwrap();
    assert_eq!(strip(&back.event().await), json!(["r", 7]));

    // After the window: a new session.
    let recent = {
        b.io.emit("n", &8).unwrap();
        offset(&back.event().await)
    };
    let (sid2, pid2) = (back.sid.clone(), back.pid.clone().unwrap());
    let auth = back.recovery(&recent);
    back.drop_connection().await;
    session_kept(&url, &pid2).await;
    sleep(window + Duration::from_millis(300)).await;
    let mut fresh = Client::connect_with(a.port, Some(auth)).await;
    assert_ne!(fresh.sid, sid2, "a new socket");
    assert_ne!(
        fresh.pid.as_deref(),
        Some(pid2.as_str()),
        "a new private id"
    );
    assert_eq!(fresh.call("recovered", &[]).await, json!([false]));
    assert!(
        fresh.events.is_empty(),
        "nothing replayed: {:?}",
        fresh.events
    );
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_node_misses_nothing_in_the_stream() {
    let redis = Redis::start().await;
    let url = redis.url();
    let window = Duration::from_secs(30);
    let a = node(&url, "s3", window).await;
    let b = node(&url, "s3", window).await;
    let mut watch_b = Client::connect(b.port).await;
    let mut cl = Client::connect(a.port).await;
    cl.call("join", &[json!("team")]).await;
    b.io.emit("e", &0).unwrap();
    let seen = offset(&cl.event().await);
    assert_eq!(strip(&watch_b.event().await), json!(["e", 0]));
    let (sid, pid) = (cl.sid.clone(), cl.pid.clone().unwrap());
    let auth = cl.recovery(&seen);
    cl.drop_connection().await;
    session_kept(&url, &pid).await;

    // Node A goes away.
    timeout(LIMIT, a.io.driver().shutdown())
        .await
        .expect("A shuts down");
    a.adapter.stop();
    drop(a);
    for i in 1..=3 {
        b.io.to("team").emit("t", &i).unwrap();
    }
    b.io.emit("e", &4).unwrap();
    assert_eq!(strip(&watch_b.event().await), json!(["e", 4]));

    // A new node on the same stream: the client recovers there, nothing missing.
    let a2 = node(&url, "s3", window).await;
    let mut back = Client::connect_with(a2.port, Some(auth)).await;
    assert_eq!(
        (back.sid.as_str(), back.pid.as_deref()),
        (sid.as_str(), Some(pid.as_str()))
    );
    for want in [
        json!(["t", 1]),
        json!(["t", 2]),
        json!(["t", 3]),
        json!(["e", 4]),
    ] {
        assert_eq!(strip(&back.event().await), want);
    }
    assert_eq!(back.call("recovered", &[]).await, json!([true]));
    // The new node reads from the stream's end: new broadcasts only.
    b.io.emit("e", &5).unwrap();
    assert_eq!(strip(&back.event().await), json!(["e", 5]));
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_during_recovery() {
    let redis = Redis::start().await;
    let url = redis.url();
    let window = Duration::from_secs(30);
    let a = node(&url, "s4", window).await;
    let b = node(&url, "s4", window).await;
    let mut watch_a = Client::connect(a.port).await;
    let mut cl = Client::connect(b.port).await;
    b.io.emit("e", &0).unwrap();
    let seen = offset(&cl.event().await);
    assert_eq!(strip(&watch_a.event().await), json!(["e", 0]));
    let (sid, pid) = (cl.sid.clone(), cl.pid.clone().unwrap());
    let auth = cl.recovery(&seen);
    cl.drop_connection().await;
    session_kept(&url, &pid).await;

    // Redis goes away (and with it, having no persistence, the session and the stream).
    let port = redis.stop().await;
    // Recovering now fails cleanly: a new session, within the adapter's time limits.
    let mut fresh = Client::connect_with(a.port, Some(auth.clone())).await;
    assert_ne!(fresh.sid, sid);
    assert_eq!(fresh.call("recovered", &[]).await, json!([false]));
    // Local delivery goes on, without offsets.
    a.io.emit("local", &1).unwrap();
    assert_eq!(fresh.event().await, json!(["local", 1]));
    assert_eq!(watch_a.event().await, json!(["local", 1]));

    let redis = Redis::start_on(port).await;
    // The adapters reconnect: broadcasts cross again.
    let resumed = timeout(LIMIT, async {
        let mut i = 100;
        loop {
            i += 1;
            b.io.emit("n", &i).unwrap();
            if let Ok(ev) = timeout(Duration::from_millis(300), fresh.event()).await {
                return ev;
            }
        }
    })
    .await
    .expect("cluster delivery resumed");
    assert_eq!(resumed[0], "n");
    // Drain what was still on its way.
    while let Ok(ev) = timeout(Duration::from_millis(300), fresh.event()).await {
        assert_eq!(ev[0], "n");
    }
    // The old session is gone with the old Redis: a new session again.
    let mut again = Client::connect_with(b.port, Some(auth)).await;
    assert_ne!(again.sid, sid);
    assert_eq!(again.call("recovered", &[]).await, json!([false]));
    // And recovery works again after the restart.
    a.io.emit("z", &1).unwrap();
    let seen = offset(&fresh.event().await);
    let (sid, pid) = (fresh.sid.clone(), fresh.pid.clone().unwrap());
    let auth = fresh.recovery(&seen);
    fresh.drop_connection().await;
    session_kept(&url, &pid).await;
    a.io.emit("z", &2).unwrap();
    assert_eq!(strip(&again.event().await), json!(["z", 1]));
    assert_eq!(strip(&again.event().await), json!(["z", 2]));
    let mut back = Client::connect_with(b.port, Some(auth)).await;
    assert_eq!(back.sid, sid);
    assert_eq!(strip(&back.event().await), json!(["z", 2]));
    assert_eq!(back.call("recovered", &[]).await, json!([true]));
    drop(redis);
}

// ---- interop with Node ----

/// `streams-node.mjs`: killed on drop, and it exits when its stdin closes.
struct NodeServer {
    stdin: ChildStdin,
    port: u16,
    _child: Child,
}

impl NodeServer {
    async fn start(url: &str, stream: &str, window: Duration) -> NodeServer {
        let dir = node_dir();
        assert!(
            dir.join("node_modules/@socket.io/redis-streams-adapter")
                .is_dir(),
            "the Node packages of {dir:?} are not installed (npm ci there)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("streams-node.mjs"))
            .args([url, stream, &window.as_millis().to_string()])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("Node.js (`node`) is required for this test: {e}"));
        let stdin = child.stdin.take().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = timeout(LIMIT, lines.next_line())
            .await
            .expect("the Node server ready in time")
            .unwrap()
            .expect("the Node server exited before it was ready");
        let v: Value = serde_json::from_str(&ready).unwrap();
        let port = u16::try_from(v["ready"].as_u64().unwrap()).unwrap();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        NodeServer {
            stdin,
            port,
            _child: child,
        }
    }

    async fn emit(&mut self, to: Option<&str>, event: &str, args: Value) {
        let line = json!({ "emit": event, "args": args, "to": to }).to_string() + "\n";
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        self.stdin.flush().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_with_node_streams_adapter() {
    let redis = Redis::start().await;
    let url = redis.url();
    let window = Duration::from_secs(30);
    let v = node(&url, "s5", window).await;
    let mut n = NodeServer::start(&url, "s5", window).await;

    // Node reads the stream from "$" once its reader connected: warm up until it does.
    let mut warm = Client::connect(n.port).await;
    warm.call("join", &[json!("warm")]).await;
    timeout(LIMIT, async {
        loop {
            v.io.to("warm").emit("warm", &0).unwrap();
            if timeout(Duration::from_millis(200), warm.event())
                .await
                .is_ok()
            {
                return;
            }
        }
    })
    .await
    .expect("the Node server reads the stream");

    let mut cv = Client::connect(v.port).await;
    let mut cn = Client::connect(n.port).await;
    assert!(cn.pid.is_some() && cv.pid.is_some());

    // Volley to Node, and Node to Volley: the same entry, the same offset.
    v.io.emit("from-volley", &1).unwrap();
    let (ev, en) = (cv.event().await, cn.event().await);
    assert_eq!(strip(&en), json!(["from-volley", 1]));
    assert_eq!(offset(&ev), offset(&en));
    n.emit(None, "from-node", json!([2, {"k": "v"}])).await;
    let (ev, en) = (cv.event().await, cn.event().await);
    assert_eq!(strip(&ev), json!(["from-node", 2, {"k": "v"}]));
    assert_eq!(offset(&ev), offset(&en));

    // From Volley onto Node.
    cv.call("join", &[json!("r")]).await;
    cn.call("join", &[json!("r")]).await;
    let seen = offset(&ev);
    let (sid, pid) = (cv.sid.clone(), cv.pid.clone().unwrap());
    let auth = cv.recovery(&seen);
    cv.drop_connection().await;
    session_kept(&url, &pid).await;
    n.emit(None, "a", json!([1])).await;
    assert_eq!(strip(&cn.event().await), json!(["a", 1]));
    v.io.to("r").emit("a", &2).unwrap();
    v.io.to("elsewhere").emit("a", &3).unwrap();
    v.io.emit("a", &4).unwrap();
    assert_eq!(strip(&cn.event().await), json!(["a", 2]));
    assert_eq!(strip(&cn.event().await), json!(["a", 4]));
    let mut on_node = Client::connect_with(n.port, Some(auth)).await;
    assert_eq!(on_node.sid, sid, "Node restored the Volley session");
    assert_eq!(on_node.pid.as_deref(), Some(pid.as_str()));
    for want in [json!(["a", 1]), json!(["a", 2]), json!(["a", 4])] {
        assert_eq!(strip(&on_node.event().await), want);
    }
    assert_eq!(on_node.call("recovered", &[]).await, json!([true]));
    // Its room came along.
    v.io.to("r").emit("r", &5).unwrap();
    assert_eq!(strip(&on_node.event().await), json!(["r", 5]));
    assert_eq!(strip(&cn.event().await), json!(["r", 5]));

    // From Node onto Volley.
    v.io.emit("last", &0).unwrap();
    let ev = on_node.event().await;
    assert_eq!(strip(&ev), json!(["last", 0]));
    assert_eq!(strip(&cn.event().await), json!(["last", 0]));
    let seen = offset(&ev);
    let (sid, pid) = (on_node.sid.clone(), on_node.pid.clone().unwrap());
    let auth = on_node.recovery(&seen);
    on_node.drop_connection().await;
    session_kept(&url, &pid).await;
    n.emit(Some("r"), "b", json!([1])).await;
    assert_eq!(strip(&cn.event().await), json!(["b", 1]));
    v.io.emit("b", &2).unwrap();
    assert_eq!(strip(&cn.event().await), json!(["b", 2]));
    let mut on_volley = Client::connect_with(v.port, Some(auth)).await;
    assert_eq!(on_volley.sid, sid, "Volley restored the Node session");
    assert_eq!(strip(&on_volley.event().await), json!(["b", 1]));
    assert_eq!(strip(&on_volley.event().await), json!(["b", 2]));
    assert_eq!(on_volley.call("recovered", &[]).await, json!([true]));
    n.emit(Some("r"), "c", json!([3])).await;
    assert_eq!(strip(&on_volley.event().await), json!(["c", 3]));

    // all_rooms: Node's adapter lacks the request; the Volley nodes answer it and nobody
    // waits for Node (the request timeout is 2 s).
    let v2 = node(&url, "s5", window).await;
    let mut c2 = Client::connect(v2.port).await;
    c2.call("join", &[json!("on-v2")]).await;
    let servers = timeout(LIMIT, v.adapter.refresh_server_count())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(servers, 3);
    let started = std::time::Instant::now();
    let rooms = timeout(LIMIT, v.io.all_rooms()).await.unwrap();
    let took = started.elapsed();
    eprintln!("streams: all_rooms with a Node server present took {took:?}: {rooms:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");
    for room in ["r", "on-v2"] {
        assert!(
            rooms.iter().any(|x| x.as_str() == room),
            "{room} in {rooms:?}"
        );
    }
    drop(n);
    drop(redis);
}
