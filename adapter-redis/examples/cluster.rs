//! A chat node of a Volley cluster over Redis: run several, connect clients to any of them,
//! and what one client says reaches the clients of every node.
//!
//! Configuration from the environment: `REDIS_URL` (default `redis://127.0.0.1:6379`;
//! `rediss://` needs the `tls-tokio` feature) and `PORT` (default 3000; `0` picks a free
//! port). The node listens on 127.0.0.1 and prints its address.
//!
//! Two nodes and a broadcast crossing between them:
//!
//! ```sh
//! redis-server --port 6379 &
//! PORT=3001 cargo run -p volley-redis --example cluster &
//! PORT=3002 cargo run -p volley-redis --example cluster &
//! # One socket.io-client per node (the package is installed in adapter-redis/tests/node):
//! cd adapter-redis/tests/node && node --input-type=module -e '
//!   import { io } from "socket.io-client";
//!   const a = io("http://127.0.0.1:3001", { auth: { nick: "ann" } });
//!   const b = io("http://127.0.0.1:3002", { auth: { nick: "bob" } });
//!   b.on("message", (m) => { console.log("bob on :3002 got", m); process.exit(0); });
//!   b.emit("join", "lobby", () => a.emit("message", "hello from :3001"));'
//! ```
//!
//! Events: `message` (text; everyone else in the sender's room gets `{nick, text}`),
//! `join` (a room name; leaves the previous room, acknowledges with the room), `who`
//! (acknowledges with the nicknames in the sender's room, on every node). Node servers using
//! `@socket.io/redis-adapter` with the same Redis and key prefix join the same cluster.

use serde_json::{Value, json};
use std::time::Duration;
use volley::runtime::Runtime;
use volley::{ConnectCtx, Data, Io, Next, Socket};
use volley_redis::{RedisAdapter, RedisOptions};
use volley_tokio::TokioRuntime;

/// A socket's nickname and room, kept as a JSON value in its data so that the other nodes
/// see them in `fetch_sockets`.
fn profile(s: &Socket) -> Value {
    s.data().get::<Value>().unwrap_or_else(|| json!({}))
}

fn field(s: &Socket, name: &str, default: &str) -> String {
    profile(s)[name].as_str().unwrap_or(default).to_owned()
}

/// The chat's handlers on `io`'s namespace `/`.
pub fn install<R: Runtime>(io: &Io<R>) {
    let ns = io.ns("/");
    ns.use_connect(|ctx: ConnectCtx, next: Next| async move {
        let nick: String = ctx
            .auth()
            .get("nick")
            .and_then(Value::as_str)
            .unwrap_or("anonymous")
            .chars()
            .filter(|c| !c.is_control())
            .take(24)
            .collect();
        ctx.data().insert(json!({ "nick": nick, "room": "lobby" }));
        next.run(ctx).await
    });
    ns.on_connection(|s: Socket| async move {
        s.join("lobby");
    });
    ns.on(
        "message",
        |s: Socket, Data(text): Data<String>| async move {
            let room = field(&s, "room", "lobby");
            let nick = field(&s, "nick", "anonymous");
            // Everyone else in the room, on this node and on the others.
            let _ = s
                .to(room.as_str())
                .emit("message", &json!({ "nick": nick, "text": text }));
        },
    );
    ns.on("join", |s: Socket, Data(room): Data<String>| async move {
        let mut p = profile(&s);
        if let Some(old) = p["room"].as_str() {
            s.leave(old);
        }
        s.join(room.as_str());
        p["room"] = json!(room);
        s.data().insert(p);
        room
    });
    let who_io = io.clone();
    ns.on("who", move |s: Socket| {
        let io = who_io.clone();
        async move {
            let room = field(&s, "room", "lobby");
            let sockets = io.to(room.as_str()).fetch_sockets().await;
            let mut nicks: Vec<String> = sockets
                .iter()
                .filter_map(|r| r.data().get::<Value>())
                .filter_map(|v| v["nick"].as_str().map(str::to_owned))
                .collect();
            nicks.sort();
            nicks
        }
    });
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let redis_url =
        std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let port: u16 = match std::env::var("PORT") {
        Ok(p) => p
            .parse()
            .map_err(|_| std::io::Error::other(format!("PORT is not a port: {p:?}")))?,
        Err(_) => 3000,
    };

    let rt = TokioRuntime::current();
    let adapter = RedisAdapter::new(RedisOptions::new(&redis_url), rt.clone());
    let io = volley::builder()
        .adapter(adapter.clone())
        .request_timeout(Duration::from_secs(3))
        .build(rt);

    install(&io);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(volley_tokio::serve(listener, io.driver().clone()));
    println!(
        "cluster node {} on http://{addr}/ (Socket.IO at {}), Redis at {redis_url}",
        io.node_id(),
        io.path()
    );
    // Cluster delivery starts once subscribed; local delivery does not wait for it.
    adapter.subscribed().await;
    let servers = adapter
        .refresh_server_count()
        .await
        .map_err(std::io::Error::other)?;
    println!("subscribed to Redis; servers in the cluster: {servers}");
    server.await.map_err(std::io::Error::other)?
}
