//! The benchmark server on smol (see `examples/bench/app.rs` for the contract); port from
//! `PORT` (default 3001).

#[path = "../../examples/bench/app.rs"]
mod app;

use std::time::Duration;
use volley_smol::SmolRuntime;

fn main() -> std::io::Result<()> {
    let port = app::port(3001);
    smol::block_on(async {
        let io = volley::builder()
            .ping_interval(Duration::from_secs(25))
            .build(SmolRuntime::new());
        app::install(&io);
        let listener = smol::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("bench-server on 127.0.0.1:{port} (smol)");
        volley_smol::serve(listener, io.driver().clone()).await
    })
}
