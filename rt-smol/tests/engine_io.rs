//! The driver's loopback scenarios (`volley::driver::test_support`) on smol.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures::FutureExt;
use futures::future::{Either, select};
use smol::net::{TcpListener, TcpStream};
use volley::driver::ServerConfig;
use volley::driver::test_support::{self as scenario, Connector, Harness};
use volley_core::engine::{Config, OverflowPolicy};
use volley_smol::SmolRuntime;

struct Tcp(SocketAddr);

impl Connector for Tcp {
    type Stream = TcpStream;

    async fn connect(&self) -> io::Result<TcpStream> {
        TcpStream::connect(self.0).await
    }
}

async fn harness(config: ServerConfig) -> Harness<SmolRuntime, Tcp> {
    harness_with(config, scenario::engine_config()).await
}

async fn harness_with(config: ServerConfig, engine: Config) -> Harness<SmolRuntime, Tcp> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (driver, events) = scenario::echo_with(SmolRuntime::new(), config, engine);
    let (accepting, accepting_done) = volley_smol::serve(listener, driver.clone()).remote_handle();
    smol::spawn(accepting).detach();
    Harness {
        runtime: SmolRuntime::new(),
        connector: Tcp(addr),
        driver,
        events,
        accepting: accepting_done.boxed(),
    }
}

macro_rules! scenarios {
    ($($name:ident $(: $config:expr)?;)*) => {$(
        #[test]
        fn $name() {
            #[allow(unused_mut, unused_assignments)]
            let mut config = ServerConfig::new();
            $(config = $config;)?
            smol::block_on(async {
                let h = harness(config).await;
                let limit = std::pin::pin!(smol::Timer::after(Duration::from_secs(10)));
                match select(std::pin::pin!(scenario::$name(h)), limit).await {
                    Either::Left(((), _)) => {}
                    Either::Right(_) => panic!("scenario timed out"),
                }
            });
        }
    )*};
}

scenarios! {
    polling_echo;
    keep_alive;
    not_found;
    custom_fallback: scenario::health_config();
    payload_too_large;
    malformed_head;
    websocket_only;
    upgrade;
    disconnect_mid_poll;
    slow_loris: ServerConfig::new().head_timeout(scenario::slow_loris_timeout());
    idle_timeout: ServerConfig::new().idle_timeout(Duration::from_millis(100));
    connection_cap: ServerConfig::new().max_connections(1);
    cap_makes_room: scenario::cap_config();
    per_address_limit: scenario::per_address_config();
    forwarded_address_limit: scenario::forwarded_config();
    server_close;
    graceful_shutdown;
    cors_preflight: scenario::cors_config();
    forbidden: scenario::forbidden_config();
    cors_websocket_origin: scenario::cors_config();
    websocket_origin_unchecked;
    same_origin_only: scenario::same_origin_config();
    slow_reader;
    websocket_message_too_big;
    second_websocket;
    cors_origin_fn: scenario::cors_origin_fn_config();
    engine_hooks: scenario::hooks_config();
}

macro_rules! budget_scenarios {
    ($($name:ident: $overflow:expr;)*) => {$(
        #[test]
        fn $name() {
            smol::block_on(async {
                let engine = scenario::budget_engine_config($overflow);
                let h = harness_with(ServerConfig::new(), engine).await;
                let limit = std::pin::pin!(smol::Timer::after(Duration::from_secs(30)));
                match select(std::pin::pin!(scenario::$name(h)), limit).await {
                    Either::Left(((), _)) => {}
                    Either::Right(_) => panic!("scenario timed out"),
                }
            });
        }
    )*};
}

budget_scenarios! {
    byte_budget_close: OverflowPolicy::Close;
    byte_budget_reject: OverflowPolicy::Reject;
}
