//! The bench application (`examples/bench/app.rs`) on a Redis adapter with
//! `forward_sessions`: one node of the cluster `bench/forwarding.sh` measures, where any node
//! takes any request.
//!
//! Configuration from the environment: `REDIS_URL` (default `redis://127.0.0.1:6379`) and
//! `PORT` (default 3001). The node listens on 127.0.0.1.

#[path = "../../examples/bench/app.rs"]
mod app;

use std::time::Duration;
use volley_redis::{RedisAdapter, RedisOptions};
use volley_tokio::TokioRuntime;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = app::port(3001);
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let runtime = TokioRuntime::current();
    let adapter = RedisAdapter::new(RedisOptions::new(&url).forward_sessions(), runtime.clone());
    let io = volley::builder()
        .ping_interval(Duration::from_secs(25))
        .adapter(adapter)
        .build(runtime);
    app::install(&io);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("bench-node on 127.0.0.1:{port}, node {}", io.node_id());
    volley_tokio::serve(listener, io.driver().clone()).await
}
