//! The chat example on tokio: the page at `/`, Socket.IO at `/socket.io/`, on 127.0.0.1 and
//! the port in `PORT` (default 3000). In memory, no Redis. Volley's metrics are served at
//! `/metrics` in Prometheus text (`metrics-exporter-prometheus`, through the fallback).

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
    // The recorder is installed before the server is built; its handle renders the page.
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder();
    let prometheus = prometheus.map_err(std::io::Error::other)?;
    let site = app::site();
    let fallback = move |head: &volley_core::http::RequestHead| match head.path() {
        "/metrics" => volley_core::http::Response::new(200)
            .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            .body(prometheus.render()),
        _ => site(head),
    };
    let io = volley::builder()
        .ping_interval(Duration::from_secs(25))
        .server_config(ServerConfig::new().fallback(fallback))
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
