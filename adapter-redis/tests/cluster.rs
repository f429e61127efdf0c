//! Volley nodes in one process, each with its own RedisAdapter on a redis-server this test
//! starts, and raw Socket.IO clients over WebSocket; in the classic and the sharded mode.

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::Role;
use futures::StreamExt;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};
use volley::operators::BroadcastAckError;
use volley::{Data, Socket};
use volley_redis::{PubSub, RedisAdapter, RedisOptions};
use volley_tokio::TokioRuntime;

mod common;
use common::{LIMIT, Redis};

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

async fn start(redis: &Redis, pub_sub: PubSub) -> Server {
    let rt = TokioRuntime::current();
    let mut options = RedisOptions::new(&redis.url());
    if pub_sub == PubSub::Sharded {
        require_redis_7();
        options = options.sharded();
    }
    assert_eq!(options.pub_sub, pub_sub);
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
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(volley_tokio::serve(listener, io.driver().clone()));
    timeout(LIMIT, adapter.subscribed())
        .await
        .expect("subscribed in time");
    Server { io, adapter, port }
}

/// A raw Socket.IO v5 client over WebSocket.
struct Client {
    ws: WebSocketStream<Compat<TcpStream>>,
    sid: String,
}

impl Client {
    async fn connect(port: u16) -> Client {
        let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let req = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        tcp.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            tcp.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let ws = WebSocketStream::from_raw_socket(tcp.compat(), Role::Client, None).await;
        let mut c = Client {
            ws,
            sid: String::new(),
        };
        let open = c.text().await;
        assert!(open.starts_with('0'), "{open}");
        c.send("40").await;
        let connected = c.text().await;
        let v: serde_json::Value =
            serde_json::from_str(connected.strip_prefix("40").unwrap()).unwrap();
        c.sid = v["sid"].as_str().unwrap().to_owned();
        c
    }

    async fn send(&mut self, text: &str) {
        self.ws.send(Message::Text(text.into())).await.unwrap();
    }

    /// The next text frame, answering pings.
    async fn text(&mut self) -> String {
        loop {
            match self.ws.next().await.expect("open").expect("frame") {
                Message::Text(t) if t.as_str() == "2" => self.send("3").await,
                Message::Text(t) => return t.to_string(),
                _ => {}
            }
        }
    }

    /// The next event as `[name, ...args]`.
    async fn event(&mut self) -> serde_json::Value {
        timeout(LIMIT, async {
            loop {
                let t = self.text().await;
                if let Some(body) = t.strip_prefix("42") {
                    return serde_json::from_str(body).unwrap();
                }
            }
        })
        .await
        .expect("an event in time")
    }

    /// Answers the next event that asks for an acknowledgement with `reply`; returns the
    /// event as `[name, ...args]`.
    async fn answer(&mut self, reply: &serde_json::Value) -> serde_json::Value {
        timeout(LIMIT, async {
            loop {
                let t = self.text().await;
                let Some(body) = t.strip_prefix("42") else {
                    continue;
                };
                let (id, args) = body.split_at(body.find('[').expect("an argument array"));
                assert!(!id.is_empty(), "the event asks for an acknowledgement: {t}");
                self.send(&format!("43{id}[{reply}]")).await;
                return serde_json::from_str(args).unwrap();
            }
        })
        .await
        .expect("an event with an acknowledgement id in time")
    }

    async fn call(&mut self, event: &str, arg: &str) {
        self.send(&format!("421[\"{event}\",\"{arg}\"]")).await;
        timeout(LIMIT, async {
            while !self.text().await.starts_with("431") {}
        })
        .await
        .expect("an ack in time");
    }
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
    cb.call("join", "other").await;
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
