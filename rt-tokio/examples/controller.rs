//! A namespace written as a Midway-style controller (`volley::controller`), on tokio: `/room`
//! on 127.0.0.1 and the port in `PORT` (default 3000).
//!
//! Try it with the official client:
//!
//! ```js
//! const socket = io("http://127.0.0.1:3000/room", { auth: { name: "ann" } });
//! socket.on("joined", (n) => console.log("members", n));
//! socket.on("said", (m) => console.log(m));
//! console.log(await socket.emitWithAck("count", 1, 2, 3)); // 6, as the ack
//! socket.emit("count", 4, 5, 6);                            // 15, as `countResult`
//! socket.emit("say", "hello");                              // `said` to the others
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use volley::controller::{Controller, Routes};
use volley::{ConnectCtx, ConnectError, Data, DisconnectReason, Next, Socket};
use volley_tokio::TokioRuntime;

#[derive(Default)]
struct Room {
    members: AtomicUsize,
}

#[derive(Clone)]
struct Name(String);

impl Room {
    /// Controller-level middleware: a name is required.
    async fn named(self: Arc<Self>, ctx: ConnectCtx, next: Next) -> Result<(), ConnectError> {
        let Some(name) = ctx.auth()["name"].as_str().map(str::to_owned) else {
            return Err(ConnectError::new("a name is required"));
        };
        ctx.data().insert(Name(name));
        next.run(ctx).await
    }

    async fn joined(self: Arc<Self>, socket: Socket) {
        let n = self.members.fetch_add(1, Ordering::Relaxed) + 1;
        let _ = socket.emit("joined", &n);
        let _ = socket.broadcast().emit("joined", &n);
    }

    async fn count(self: Arc<Self>, Data((a, b, c)): Data<(i64, i64, i64)>) -> i64 {
        a + b + c
    }

    async fn say(self: Arc<Self>, socket: Socket, Data(text): Data<String>) -> String {
        let name = socket.data().get::<Name>().map(|n| n.0).unwrap_or_default();
        format!("{name}: {text}")
    }

    async fn left(self: Arc<Self>, _socket: Socket, _reason: DisconnectReason) {
        self.members.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Controller for Room {
    const NAMESPACE: &'static str = "/room";

    fn routes(routes: &mut Routes<Self>) {
        routes
            .use_connect(Self::named)
            .on_connection(Self::joined)
            .on_disconnection(Self::left);
        routes.on("count", Self::count).emit_result("countResult");
        routes
            .on("say", Self::say)
            .broadcast_result("said", Vec::<String>::new());
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let io = volley::builder().build(TokioRuntime::current());
    io.controller(Room::default());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("controller example on 127.0.0.1:{port}, namespace /room");
    let server = tokio::spawn(volley_tokio::serve(listener, io.driver().clone()));
    tokio::signal::ctrl_c().await?;
    io.close().await;
    server.await.map_err(std::io::Error::other)?
}
