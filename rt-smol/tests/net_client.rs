//! The test client against a listening server over real TCP connections on smol, WebSocket
//! and long-polling.

use std::time::Duration;
use volley::Data;
use volley::testing::{ConnectOptions, TestClient, TransportKind};
use volley_smol::SmolRuntime;
use volley_smol::testing::TcpConnector;

#[test]
fn the_test_client_drives_a_listening_server_over_both_transports_on_smol() {
    smol::block_on(async {
        let runtime = SmolRuntime::new();
        let io = volley::builder().build(runtime.clone());
        io.ns("/")
            .on("sum", |Data((a, b)): Data<(i64, i64)>| async move { a + b });
        let listener = smol::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = smol::spawn(volley_smol::serve(listener, io.driver().clone()));
        let run = async {
            for transport in [TransportKind::WebSocket, TransportKind::Polling] {
                let options = ConnectOptions::new().transport(transport);
                let mut c =
                    TestClient::connect_over(TcpConnector::new(addr), &runtime, "/", options)
                        .await
                        .unwrap();
                let sum: i64 = c.send_with_ack("sum", &(1, 2)).await.unwrap();
                assert_eq!(sum, 3, "{transport:?}");
            }
        };
        let timeout = async {
            smol::Timer::after(Duration::from_secs(20)).await;
            panic!("the scenario timed out");
        };
        futures_lite_or(run, timeout).await;
        io.close().await;
        drop(server);
    });
}

async fn futures_lite_or(
    a: impl std::future::Future<Output = ()>,
    b: impl std::future::Future<Output = ()>,
) {
    smol::future::or(a, b).await
}
