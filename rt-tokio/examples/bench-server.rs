//! The benchmark server on tokio (see `examples/bench/app.rs` for the contract); port from
//! `PORT` (default 3001).

#[path = "../../examples/bench/app.rs"]
mod app;

use std::time::Duration;
use volley_tokio::TokioRuntime;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = app::port(3001);
    let io = volley::builder()
        .ping_interval(Duration::from_secs(25))
        .build(TokioRuntime::current());
    app::install(&io);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("bench-server on 127.0.0.1:{port} (tokio)");
    volley_tokio::serve(listener, io.driver().clone()).await
}
