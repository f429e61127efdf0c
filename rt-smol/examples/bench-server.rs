//! The benchmark server on smol (see `examples/bench/app.rs` for the contract); port from
//! `PORT` (default 3001). `VOLLEY_BENCH_MAX_CONNECTIONS=N` sets the driver's connection cap
//! (default 10 000, `ServerConfig::max_connections`) for runs that hold more sockets
//! (`bench/idle_many.sh`); the per-address limit stays off, its default.

#[path = "../../examples/bench/app.rs"]
mod app;

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
    smol::block_on(async {
        let io = volley::builder()
            .ping_interval(Duration::from_secs(25))
            .server_config(config)
            .build(SmolRuntime::new());
        app::install(&io);
        let listener = smol::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("bench-server on 127.0.0.1:{port} (smol)");
        volley_smol::serve(listener, io.driver().clone()).await
    })
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
