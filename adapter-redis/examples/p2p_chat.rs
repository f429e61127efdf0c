//! egg-socket.io's peer-to-peer chat tutorial on a Volley cluster over Redis: run several
//! nodes, connect users to any of them.
//!
//! - A user connects with the query `room` and `userId` (the tutorial's
//!   `io("/", { query: { room, userId } })`); both are required, or the connection is refused.
//!   An admin also sends `auth: { token }` matching `ADMIN_TOKEN` (default `admin-secret`).
//! - Everyone in the room gets `online` when someone joins or leaves:
//!   `{ action: "join" | "leave", target: "participator", message, clients: [userId…] }`,
//!   the list kept across every node (`fetch_sockets` on the room).
//! - `exchange` `{ target, payload }` sends `payload` privately to user `target`, on whichever
//!   node they are: they get `exchange` `{ client: <sender's userId>, target, payload }`.
//!   The acknowledgement says how many of the target's sockets were online.
//! - `kick` `{ target }`, from an admin, disconnects user `target` on every node (they see
//!   "io server disconnect"); others asking get an `error` event back.
//!
//! Configuration from the environment: `REDIS_URL` (default `redis://127.0.0.1:6379`) and
//! `PORT` (default 3000; `0` picks a free port).
//!
//! ```sh
//! redis-server --port 6379 &
//! PORT=3001 cargo run -p volley-redis --example p2p_chat &
//! PORT=3002 cargo run -p volley-redis --example p2p_chat &
//! ```

use serde_json::{Value, json};
use std::time::Duration;
use volley::runtime::Runtime;
use volley::{ConnectCtx, ConnectError, Data, DisconnectReason, Io, Next, Socket};
use volley_redis::{RedisAdapter, RedisOptions};
use volley_tokio::TokioRuntime;

/// Who a socket is: kept as JSON in its data so that every node sees it in `fetch_sockets`.
fn profile(s: &Socket) -> Value {
    s.data().get::<Value>().unwrap_or_else(|| json!({}))
}

/// The private room of user `id` (each of their sockets, on any node, is in it).
fn user_room(id: &str) -> String {
    format!("user:{id}")
}

/// The user ids online in `room`, on every node, sorted.
async fn online<R: Runtime>(io: &Io<R>, room: &str) -> Vec<String> {
    let mut ids: Vec<String> = io
        .in_(room)
        .fetch_sockets()
        .await
        .iter()
        .filter_map(|r| r.data().get::<Value>())
        .filter_map(|v| v["userId"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Tells `room` who is online after `user` did `action`.
async fn announce<R: Runtime>(io: &Io<R>, room: &str, user: &str, action: &str) {
    let clients = online(io, room).await;
    let verb = if action == "join" { "joined" } else { "left" };
    let _ = io.to(room).emit(
        "online",
        &json!({
            "action": action,
            "target": "participator",
            "message": format!("User({user}) {verb}."),
            "clients": clients,
        }),
    );
}

/// The tutorial's handlers on `io`'s namespace `/`; admins prove themselves with
/// `admin_token`.
pub fn install<R: Runtime>(io: &Io<R>, admin_token: String) {
    let ns = io.ns("/");
    ns.use_connect(move |ctx: ConnectCtx, next: Next| {
        let admin_token = admin_token.clone();
        async move {
            let hs = ctx.handshake();
            let (Some(room), Some(user)) = (hs.query("room"), hs.query("userId")) else {
                return Err(ConnectError::new("room and userId are required"));
            };
            if room.is_empty() || user.is_empty() {
                return Err(ConnectError::new("room and userId are required"));
            }
            let admin = ctx.auth()["token"].as_str() == Some(admin_token.as_str());
            ctx.data()
                .insert(json!({ "room": room, "userId": user, "admin": admin }));
            next.run(ctx).await
        }
    });
    let join_io = io.clone();
    ns.on_connection(move |s: Socket| {
        let io = join_io.clone();
        async move {
            let p = profile(&s);
            let (room, user) = (
                p["room"].as_str().unwrap_or_default(),
                p["userId"].as_str().unwrap_or_default(),
            );
            s.join(room);
            s.join(user_room(user).as_str());
            announce(&io, room, user, "join").await;
        }
    });
    let leave_io = io.clone();
    ns.on_disconnect(move |s: Socket, _reason: DisconnectReason| {
        let io = leave_io.clone();
        async move {
            let p = profile(&s);
            let (room, user) = (
                p["room"].as_str().unwrap_or_default(),
                p["userId"].as_str().unwrap_or_default(),
            );
            announce(&io, room, user, "leave").await;
        }
    });
    let exchange_io = io.clone();
    ns.on("exchange", move |s: Socket, Data(msg): Data<Value>| {
        let io = exchange_io.clone();
        async move {
            let Some(target) = msg["target"].as_str().map(str::to_owned) else {
                return 0;
            };
            let from = profile(&s)["userId"].clone();
            let room = user_room(&target);
            let reached = io.in_(room.as_str()).fetch_sockets().await.len();
            let _ = io.to(room.as_str()).emit(
                "exchange",
                &json!({ "client": from, "target": target, "payload": msg["payload"] }),
            );
            reached
        }
    });
    let kick_io = io.clone();
    ns.on("kick", move |s: Socket, Data(msg): Data<Value>| {
        let io = kick_io.clone();
        async move {
            if profile(&s)["admin"] != json!(true) {
                let _ = s.emit("error", &json!({ "message": "only an admin can kick" }));
                return false;
            }
            let Some(target) = msg["target"].as_str() else {
                return false;
            };
            io.in_(user_room(target).as_str()).disconnect_sockets(true);
            true
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
    let admin_token = std::env::var("ADMIN_TOKEN").unwrap_or_else(|_| "admin-secret".to_owned());
    let rt = TokioRuntime::current();
    let adapter = RedisAdapter::new(RedisOptions::new(&redis_url), rt.clone());
    let io = volley::builder()
        .adapter(adapter.clone())
        .request_timeout(Duration::from_secs(3))
        .build(rt);
    install(&io, admin_token);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(volley_tokio::serve(listener, io.driver().clone()));
    println!(
        "p2p chat node {} on http://{addr}/, Redis at {redis_url}",
        io.node_id()
    );
    adapter.subscribed().await;
    server.await.map_err(std::io::Error::other)?
}
