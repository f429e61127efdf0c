//! The chat example on smol: the page at `/`, Socket.IO at `/socket.io/`, on 127.0.0.1 and the
//! port in `PORT` (default 3000). In memory, no Redis.

#[path = "../../examples/chat/app.rs"]
mod app;

use std::time::Duration;
use volley::driver::ServerConfig;
use volley_smol::SmolRuntime;

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    smol::block_on(async {
        let io = volley::builder()
            .ping_interval(Duration::from_secs(25))
            .server_config(ServerConfig::new().fallback(app::site()))
            .build(SmolRuntime::new());
        app::install(&io);
        let listener = smol::net::TcpListener::bind(("127.0.0.1", port)).await?;
        println!("chat on http://127.0.0.1:{port}/ (smol)");
        volley_smol::serve(listener, io.driver().clone()).await
    })
}
