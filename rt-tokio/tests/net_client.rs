//! The test client against a listening server over real TCP connections, WebSocket and
//! long-polling (Midway's `createSocketIOClient`).

use std::time::Duration;
use volley::testing::{ConnectOptions, TestClient, TransportKind};
use volley::{Data, Socket};
use volley_tokio::TokioRuntime;
use volley_tokio::testing::TcpConnector;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_client_drives_a_listening_server_over_both_transports() {
    let io = volley::builder().build(TokioRuntime::current());
    io.ns("/chat")
        .on("sum", |Data((a, b)): Data<(i64, i64)>| async move { a + b })
        .on("shout", |s: Socket, Data(text): Data<String>| async move {
            let _ = s.emit("shouted", &text.to_uppercase());
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(volley_tokio::serve(listener, io.driver().clone()));
    let run = async {
        for transport in [TransportKind::WebSocket, TransportKind::Polling] {
            let options = ConnectOptions::new().transport(transport);
            let mut c = TestClient::connect_over(
                TcpConnector::new(addr),
                &TokioRuntime::current(),
                "/chat",
                options,
            )
            .await
            .unwrap();
            let sum: i64 = c.send_with_ack("sum", &(20, 22)).await.unwrap();
            assert_eq!(sum, 42, "{transport:?}");
            c.emit("shout", &"hi");
            let got = c.recv().await.unwrap();
            assert_eq!(
                (got.event.as_str(), got.data::<String>().unwrap()),
                ("shouted", "HI".to_owned()),
                "{transport:?}"
            );
            assert_eq!(io.socket_count().await, 1);
            c.disconnect();
            drop(c);
            while io.socket_count().await != 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the scenario timed out");
    io.close().await;
    server.await.unwrap().unwrap();
}
