//! Volley nodes in one process, each with its own RedisAdapter on a redis-server this test
//! starts, and raw Socket.IO clients over WebSocket.

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::Role;
use futures::StreamExt;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};
use volley::{Data, Socket};
use volley_redis::{RedisAdapter, RedisOptions};
use volley_tokio::TokioRuntime;

mod common;
use common::{LIMIT, Redis};

struct Server {
    io: volley::Io<TokioRuntime>,
    adapter: RedisAdapter,
    port: u16,
}

async fn server(redis: &Redis) -> Server {
    let rt = TokioRuntime::current();
    let mut options = RedisOptions::new(&redis.url());
    options.backoff = (Duration::from_millis(50), Duration::from_millis(500));
    options.connect_timeout = Duration::from_millis(500);
    let adapter = RedisAdapter::new(options, rt.clone());
    let io = volley::builder()
        .adapter(adapter.clone())
        .request_timeout(Duration::from_secs(2))
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
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_rooms_and_fetch_across_nodes() {
    let redis = Redis::start().await;
    let a = server(&redis).await;
    let b = server(&redis).await;
    let c = server(&redis).await;
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
    b.io.emit("marker", &2).unwrap();
    assert_eq!(ca.event().await, serde_json::json!(["marker", 2]));
    assert_eq!(cb.event().await, serde_json::json!(["marker", 2]));
    assert_eq!(
        cc.event().await,
        serde_json::json!(["marker", 2]),
        "vip-only went to C only"
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
    drop(redis);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_during_broadcasts() {
    let redis = Redis::start().await;
    let a = server(&redis).await;
    let b = server(&redis).await;
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
