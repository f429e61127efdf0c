//! The benchmark server on smol (see `examples/bench/app.rs` for the contract); port from
//! `PORT` (default 3001). `VOLLEY_BENCH_MAX_CONNECTIONS=N` sets the driver's connection cap
//! (default 10 000, `ServerConfig::max_connections`) for runs that hold more sockets
//! (`bench/idle_many.sh`); the per-address limit stays off, its default.
//!
//! Its tasks run on one smol executor with a thread per core (`available_parallelism`, or
//! `SMOL_THREADS` when set), as the tokio bench server's runtime has a worker per core;
//! smol's global executor would use one thread unless `SMOL_THREADS` says otherwise.

#[path = "../../examples/bench/app.rs"]
mod app;

use std::sync::Arc;
use std::time::Duration;
use volley::driver::ServerConfig;
use volley_smol::SmolRuntime;

fn main() -> std::io::Result<()> {
    let port = app::port(3001);
    let mut config = ServerConfig::new();
    if let Some(max) = max_connections()? {
        config = config.max_connections(max);
        println!("max_connections {max}");
    }
    let executor = Arc::new(smol::Executor::new());
    let threads = threads();
    for _ in 1..threads {
        let executor = executor.clone();
        std::thread::spawn(move || smol::block_on(executor.run(smol::future::pending::<()>())));
    }
    let runtime = SmolRuntime::with_executor(executor.clone());
    smol::block_on(executor.run(async {
        let io = volley::builder()
            .ping_interval(Duration::from_secs(25))
            .server_config(config)
            .build(runtime);
        app::install(&io);
        let listener = smol::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("bench-server on 127.0.0.1:{port} (smol, {threads} threads)");
        volley_smol::serve(listener, io.driver().clone()).await
    }))
}

/// Executor threads: `SMOL_THREADS`, or one per core.
fn threads() -> usize {
    std::env::var("SMOL_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
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
