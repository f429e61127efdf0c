//! The benchmark server on tokio (see `examples/bench/app.rs` for the contract); port from
//! `PORT` (default 3001). With `VOLLEY_BENCH_METRICS=1` it installs a Prometheus recorder
//! first, so that every metric Volley publishes is recorded: the cost of metrics is the
//! difference between a run with and a run without it.
//!
//! `VOLLEY_BENCH_MAX_CONNECTIONS=N` raises (or lowers) the driver's connection cap, whose
//! default is 10 000 (`ServerConfig::max_connections`), for runs that hold more sockets
//! (`bench/idle_many.sh`). The per-address limit stays off, its default, so clients spread
//! over several 127.0.0.x addresses are not limited by it either.

#[path = "../../examples/bench/app.rs"]
mod app;

use std::time::Duration;
use volley::driver::ServerConfig;
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
    let mut config = ServerConfig::new();
    if let Some(max) = max_connections()? {
        config = config.max_connections(max);
        println!("max_connections {max}");
    }
    let io = volley::builder()
        .ping_interval(Duration::from_secs(25))
        .server_config(config)
        .build(TokioRuntime::current());
    app::install(&io);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("bench-server on 127.0.0.1:{port} (tokio)");
    volley_tokio::serve(listener, io.driver().clone()).await
}

/// `VOLLEY_BENCH_MAX_CONNECTIONS`, when set.
fn max_connections() -> std::io::Result<Option<usize>> {
    match std::env::var("VOLLEY_BENCH_MAX_CONNECTIONS") {
        Ok(v) => v.parse().map(Some).map_err(|_| {
            std::io::Error::other(format!("VOLLEY_BENCH_MAX_CONNECTIONS={v}: not a count"))
        }),
        Err(_) => Ok(None),
    }
}
