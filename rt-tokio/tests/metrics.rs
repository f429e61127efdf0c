//! Metrics over real TCP on tokio's multi-threaded runtime: a global recorder (alone in its
//! test binary) sees connections by transport, packets and bytes, refusals by Engine.IO
//! code and disconnects after real clients came and went.

use std::io::{Read, Write};
use std::time::Duration;
use volley::testing::{ConnectOptions, TestClient, TransportKind};
use volley::{Data, metrics as m};
use volley_tokio::TokioRuntime;
use volley_tokio::testing::TcpConnector;

#[path = "../../server/tests/support/recorder.rs"]
mod support;

/// A raw HTTP request; the status line of the answer.
fn status_of(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listening_server_publishes_its_metrics() {
    let recorder = support::TestRecorder::default();
    metrics::set_global_recorder(recorder.clone()).unwrap();
    let io = volley::builder().build(TokioRuntime::current());
    io.ns("/")
        .on("sum", |Data((a, b)): Data<(i64, i64)>| async move { a + b });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(volley_tokio::serve(listener, io.driver().clone()));
    let run = async {
        let mut clients = Vec::new();
        for transport in [TransportKind::WebSocket, TransportKind::Polling] {
            let options = ConnectOptions::new().transport(transport);
            let mut c = TestClient::connect_over(
                TcpConnector::new(addr),
                &TokioRuntime::current(),
                "/",
                options,
            )
            .await
            .unwrap();
            let sum: i64 = c.send_with_ack("sum", &(20, 22)).await.unwrap();
            assert_eq!(sum, 42);
            clients.push(c);
        }
        assert_eq!(recorder.value(m::SOCKETS, &[("namespace", "/")]), 2.0);
        assert_eq!(recorder.value(m::CONNECTS, &[("namespace", "/")]), 2.0);
        for t in ["websocket", "polling"] {
            assert_eq!(
                recorder.value(m::CONNECTIONS, &[("transport", t)]),
                1.0,
                "{t}"
            );
            assert!(recorder.value(m::PACKETS_RECEIVED, &[("transport", t)]) >= 1.0);
            assert!(recorder.value(m::BYTES_SENT, &[("transport", t)]) >= 10.0);
        }
        assert!(!recorder.samples(m::HANDLER_DELAY).is_empty());

        // Engine.IO refusals, by code.
        let refused = tokio::task::spawn_blocking(move || {
            (
                status_of(addr, "/socket.io/?EIO=4&transport=carrier-pigeon"),
                status_of(addr, "/socket.io/?EIO=9&transport=polling"),
            )
        })
        .await
        .unwrap();
        assert!(refused.0.contains("400"), "{refused:?}");
        assert!(refused.1.contains("400"), "{refused:?}");
        assert_eq!(recorder.value(m::REFUSALS, &[("code", "0")]), 1.0);
        assert_eq!(recorder.value(m::REFUSALS, &[("code", "5")]), 1.0);

        for c in clients {
            c.close();
        }
        while io.socket_count().await != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(recorder.value(m::SOCKETS, &[("namespace", "/")]), 0.0);
        let gone = recorder.value(m::DISCONNECTS, &[("reason", "transport close")])
            + recorder.value(m::DISCONNECTS, &[("reason", "transport error")]);
        assert_eq!(gone, 2.0);
    };
    tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the scenario timed out");
    io.close().await;
    server.await.unwrap().unwrap();
}
