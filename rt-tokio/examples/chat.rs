//! The chat example on tokio: the page at `/`, Socket.IO at `/socket.io/`, on 127.0.0.1 and
//! the port in `PORT` (default 3000). In memory, no Redis.

#[path = "../../examples/chat/app.rs"]
mod app;

use std::time::Duration;
use volley::driver::ServerConfig;
use volley_tokio::TokioRuntime;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let io = volley::builder()
        .ping_interval(Duration::from_secs(25))
        .server_config(ServerConfig::new().fallback(app::site()))
        .build(TokioRuntime::current());
    app::install(&io);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("chat on http://127.0.0.1:{port}/ (tokio)");
    let server = tokio::spawn(volley_tokio::serve(listener, io.driver().clone()));
    tokio::signal::ctrl_c().await?;
    println!("shutting down");
    io.close().await;
    server.await.map_err(std::io::Error::other)?
}
