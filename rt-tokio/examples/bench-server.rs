//! The benchmark server on tokio (see `examples/bench/app.rs` for the contract); port from
//! `PORT` (default 3001). With `VOLLEY_BENCH_METRICS=1` it installs a Prometheus recorder
//! first, so that every metric Volley publishes is recorded: the cost of metrics is the
//! difference between a run with and a run without it.

#[path = "../../examples/bench/app.rs"]
mod app;

use std::time::Duration;
use volley_tokio::TokioRuntime;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port = app::port(3001);
    if std::env::var("VOLLEY_BENCH_METRICS").is_ok_and(|v| v == "1") {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder();
        // The handle is the page's renderer; nobody scrapes it here.
        std::mem::forget(recorder.map_err(std::io::Error::other)?);
        println!("metrics recorder installed");
    }
    let io = volley::builder()
        .ping_interval(Duration::from_secs(25))
        .build(TokioRuntime::current());
    app::install(&io);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("bench-server on 127.0.0.1:{port} (tokio)");
    volley_tokio::serve(listener, io.driver().clone()).await
}
