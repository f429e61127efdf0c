//! Servers of one `MemoryCluster::with_relay()` on the test runtime, with every request of a
//! session sent to whichever server: polls, posts and the WebSocket upgrade reach the
//! session's owner through the relay, and a request for a session whose owner is gone gets
//! the unknown-session answer.

mod common;

use async_tungstenite::tungstenite::Message;
use common::raw::{self, open_sid};
use futures::StreamExt;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use volley::adapter::{MemoryAdapter, MemoryCluster};
use volley::runtime::Runtime as _;
use volley::testing::{ConnectOptions, Connector, PipeEnd, TestClient, TestRuntime, TransportKind};
use volley::{Data, Io, Payload, Socket};

const POLL: &str = "/socket.io/?EIO=4&transport=polling";

fn server(rt: &TestRuntime, n: u8, adapter: MemoryAdapter) -> Io<TestRuntime> {
    let io = volley::builder()
        .seed([n; 32])
        .adapter(adapter)
        .build(rt.clone());
    io.ns("/")
        .on("echo", |socket: Socket, payload: Payload| async move {
            socket.emit_payload("echoed", payload);
        });
    io.ns("/")
        .on("ack", |Data(value): Data<serde_json::Value>| async move {
            volley::Json(json!({ "got": value }))
        });
    io
}

/// Three servers of one relaying cluster, and their adapters.
fn cluster() -> (TestRuntime, Vec<Io<TestRuntime>>, Vec<MemoryAdapter>) {
    let rt = TestRuntime::new();
    let cluster = MemoryCluster::with_relay();
    let adapters: Vec<_> = (0..3).map(|_| cluster.adapter()).collect();
    let servers = adapters
        .iter()
        .enumerate()
        .map(|(i, a)| server(&rt, i as u8 + 1, a.clone()))
        .collect();
    (rt, servers, adapters)
}

/// A session opened on `servers[0]` with its socket connected, the CONNECT posted and its
/// answer polled through `servers[via]`: the session id.
async fn connected(servers: &[Io<TestRuntime>], via: usize) -> String {
    let sid = handshake(&servers[0]).await;
    let target = format!("{POLL}&sid={sid}");
    let posted = raw::connect(&servers[via], None)
        .request("POST", &target, &[], b"40")
        .await;
    assert_eq!((posted.status, posted.text()), (200, "ok".to_owned()));
    let answer = raw::connect(&servers[via], None)
        .request("GET", &target, &[], b"")
        .await;
    assert!(
        answer.text().starts_with("40{\"sid\":"),
        "{}",
        answer.text()
    );
    sid
}

/// A new session's id, from a handshake on `io`.
async fn handshake(io: &Io<TestRuntime>) -> String {
    let open = raw::connect(io, None).request("GET", POLL, &[], b"").await;
    open_sid(&open.text())
}

/// Session `sid` upgraded to a WebSocket through `io` (probe and upgrade done).
async fn upgraded(io: &Io<TestRuntime>, sid: &str) -> async_tungstenite::WebSocketStream<PipeEnd> {
    let target = format!("/socket.io/?EIO=4&transport=websocket&sid={sid}");
    let mut ws = raw::connect(io, None).websocket(&target).await;
    ws.send(Message::text("2probe")).await.unwrap();
    let probe = ws.next().await.unwrap().unwrap();
    assert_eq!(probe.into_text().unwrap().as_str(), "3probe");
    ws.send(Message::text("5")).await.unwrap();
    ws
}

/// Every new connection goes to the next server in turn.
#[derive(Clone)]
struct RoundRobin {
    servers: Arc<Vec<Io<TestRuntime>>>,
    next: Arc<AtomicUsize>,
}

impl Connector for RoundRobin {
    type Stream = PipeEnd;
    fn connect(&self) -> futures::future::BoxFuture<'static, std::io::Result<PipeEnd>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.servers.len();
        let (client, server) = volley::testing::pipe();
        let driver = self.servers[i].driver().clone();
        let runtime = driver.runtime().clone();
        volley::runtime::Runtime::spawn(&runtime, async move {
            driver.serve_connection(server, None).await
        });
        Box::pin(async move { Ok(client) })
    }
}

#[test]
fn session_ids_name_their_node_only_with_a_relay() {
    let (rt, servers, _) = cluster();
    rt.block_on(async {
        let mut prefixes = Vec::new();
        for io in &servers {
            let sid = handshake(io).await;
            let (node, rest) = sid.split_once('.').expect("a node prefix");
            assert_eq!(rest.len(), 20, "{sid}");
            prefixes.push(node.to_owned());
        }
        prefixes.dedup();
        assert_eq!(prefixes.len(), 3, "each server names itself: {prefixes:?}");
        let plain = volley::builder().seed([9; 32]).build(rt.clone());
        assert!(!handshake(&plain).await.contains('.'));
    });
}

#[test]
fn every_polling_request_may_land_on_another_node() {
    let (rt, servers, _) = cluster();
    rt.block_on(async {
        let sid = handshake(&servers[0]).await;
        let target = format!("{POLL}&sid={sid}");
        // The Socket.IO connect is posted to the second node, the answer polled on the third.
        let posted = raw::connect(&servers[1], None)
            .request("POST", &target, &[("Content-Type", "text/plain")], b"40")
            .await;
        assert_eq!((posted.status, posted.text()), (200, "ok".to_owned()));
        let mut poller = raw::connect(&servers[2], None);
        let connected = poller.request("GET", &target, &[], b"").await;
        assert_eq!(connected.status, 200);
        assert!(
            connected.text().starts_with("40{\"sid\":"),
            "{}",
            connected.text()
        );
        // An event posted through the third node; its echo parked-polled through the third
        // (kept alive), then through the first (the owner).
        let posted = raw::connect(&servers[2], None)
            .request("POST", &target, &[], br#"42["echo",{"n":1}]"#)
            .await;
        assert_eq!(posted.status, 200);
        let echoed = poller.request("GET", &target, &[], b"").await;
        assert_eq!(echoed.text(), r#"42["echoed",{"n":1}]"#);
        // Acks come back the same way, through a node that is neither.
        let posted = raw::connect(&servers[1], None)
            .request("POST", &target, &[], br#"427["ack","x"]"#)
            .await;
        assert_eq!(posted.status, 200);
        let acked = raw::connect(&servers[1], None)
            .request("GET", &target, &[], b"")
            .await;
        assert_eq!(acked.text(), r#"437[{"got":"x"}]"#);
        assert_eq!(servers[0].socket_count().await, 1);
        assert_eq!(servers[1].socket_count().await, 0);
    });
}

#[test]
fn the_test_client_over_a_round_robin_keeps_order_both_ways() {
    let (rt, servers, _) = cluster();
    rt.block_on(async {
        let connector = RoundRobin {
            servers: Arc::new(servers.clone()),
            next: Arc::default(),
        };
        let options = ConnectOptions::new().transport(TransportKind::Polling);
        let mut client = TestClient::connect_over(connector, &rt, "/", options)
            .await
            .expect("connected");
        for n in 0..200 {
            client.emit("echo", &json!({ "n": n }));
        }
        for n in 0..200 {
            let got = client.recv().await.expect("an echo");
            assert_eq!(got.event, "echoed");
            assert_eq!(
                got.data::<serde_json::Value>().unwrap(),
                json!({ "n": n }),
                "in order"
            );
        }
        let acked: serde_json::Value = client.emit_with_ack("ack", &json!(5)).await.expect("ack");
        assert_eq!(acked, json!({ "got": 5 }));
        // Broadcasts from every node reach it once.
        for io in &servers {
            io.emit("all", &json!("hi")).ok();
        }
        for _ in 0..3 {
            assert_eq!(client.recv().await.expect("a broadcast").event, "all");
        }
        client.disconnect();
        rt.sleep(common::SETTLE).await;
        let total: usize = futures::future::join_all(servers.iter().map(|io| io.socket_count()))
            .await
            .into_iter()
            .sum();
        assert_eq!(total, 0, "the disconnect reached the owner");
    });
}

#[test]
fn a_websocket_upgrade_on_another_node_carries_the_session() {
    let (rt, servers, _) = cluster();
    rt.block_on(async {
        let sid = connected(&servers, 0).await;
        let mut ws = upgraded(&servers[1], &sid).await;
        for n in 0..100 {
            let text = format!(r#"42["echo",{n}]"#);
            ws.send(Message::text(text)).await.unwrap();
        }
        for n in 0..100 {
            let got = ws.next().await.unwrap().unwrap();
            assert_eq!(
                got.into_text().unwrap().as_str(),
                format!(r#"42["echoed",{n}]"#)
            );
        }
        // Binary attachments cross the relay unchanged.
        ws.send(Message::text(
            r#"451-["echo",{"_placeholder":true,"num":0}]"#,
        ))
        .await
        .unwrap();
        ws.send(Message::binary(vec![0u8, 1, 2, 255]))
            .await
            .unwrap();
        let header = ws.next().await.unwrap().unwrap();
        assert_eq!(
            header.into_text().unwrap().as_str(),
            r#"451-["echoed",{"_placeholder":true,"num":0}]"#
        );
        let bin = ws.next().await.unwrap().unwrap();
        assert_eq!(bin.into_data().as_ref(), &[0u8, 1, 2, 255]);
        // The owner's server-side disconnect arrives through the relay.
        servers[0].disconnect_sockets(true);
        let mut closed = false;
        while let Some(Ok(message)) = ws.next().await {
            if let Message::Text(t) = &message {
                if t.as_str() == "41" || t.as_str() == "1" {
                    closed = true;
                }
            }
        }
        assert!(closed, "the disconnect reached the client");
        rt.sleep(common::SETTLE).await;
        assert_eq!(servers[0].socket_count().await, 0);
    });
}

#[test]
fn a_request_for_a_gone_owner_is_an_unknown_session() {
    let (rt, servers, adapters) = cluster();
    rt.block_on(async {
        let sid = handshake(&servers[0]).await;
        let target = format!("{POLL}&sid={sid}");
        let posted = raw::connect(&servers[1], None)
            .request("POST", &target, &[], b"40")
            .await;
        assert_eq!(posted.status, 200, "forwarded while the owner is there");
        adapters[0].leave();
        let polled = raw::connect(&servers[1], None)
            .request("GET", &target, &[], b"")
            .await;
        assert_eq!(polled.status, 400);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&polled.body).unwrap(),
            json!({ "code": 1, "message": "Session ID unknown" })
        );
        // A node id nobody has is the same.
        let nobody = "/socket.io/?EIO=4&transport=polling&sid=nobody.AAAAAAAAAAAAAAAAAAAA";
        let polled = raw::connect(&servers[1], None)
            .request("GET", nobody, &[], b"")
            .await;
        assert_eq!(polled.status, 400);
    });
}

#[test]
fn a_poll_whose_client_goes_closes_the_session_on_its_owner() {
    let (rt, servers, _) = cluster();
    rt.block_on(async {
        let sid = connected(&servers, 0).await;
        let target = format!("{POLL}&sid={sid}");
        assert_eq!(servers[0].socket_count().await, 1);
        // A poll parked through the second node, whose client then goes.
        let mut poller = raw::connect(&servers[1], None);
        poller.send_only("GET", &target).await;
        rt.sleep(common::SETTLE).await;
        drop(poller);
        rt.sleep(common::SETTLE).await;
        assert_eq!(servers[0].socket_count().await, 0, "the session closed");
    });
}

/// `Io::close` of every node ends every task they started, the relay's included: a relayed
/// WebSocket and a poll parked through another node are open when the nodes close.
#[test]
fn closing_the_nodes_leaves_no_task_running() {
    let (rt, servers, _) = cluster();
    rt.block_on(async {
        let sid = connected(&servers, 1).await;
        let ws = upgraded(&servers[2], &sid).await;
        // A second session, polling, with a poll parked through the third node.
        let other = format!("{POLL}&sid={}", handshake(&servers[0]).await);
        let mut parked = raw::connect(&servers[2], None);
        parked.send_only("GET", &other).await;
        rt.sleep(common::SETTLE).await;
        for io in &servers {
            io.close().await;
        }
        drop((ws, parked));
    });
    rt.run_until_idle();
    assert_eq!(rt.live_tasks(), 0, "tasks left after close");
}

/// A client that uploads more than a relay window (1 MiB) through a relayed WebSocket while
/// reading the echoes: whenever the owner's reader pushes back, the carrier waits for the
/// owner's credit instead of running the owner over its window, and every message comes
/// back whole and in order.
#[test]
fn a_large_upload_through_a_relayed_websocket_waits_for_credit() {
    let (rt, servers, _) = cluster();
    rt.block_on(async {
        let sid = connected(&servers, 0).await;
        let (mut tx, mut rx) = upgraded(&servers[1], &sid).await.split();
        let blob: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        // 3.6 MB each way.
        let messages = 12;
        let send = async {
            for n in 0..messages {
                let header = format!(r#"451-["echo",{n},{{"_placeholder":true,"num":0}}]"#);
                tx.send(Message::text(header)).await.unwrap();
                tx.send(Message::binary(blob.clone())).await.unwrap();
            }
        };
        let receive = async {
            for n in 0..messages {
                let header = rx.next().await.unwrap().unwrap();
                assert_eq!(
                    header.into_text().unwrap().as_str(),
                    format!(r#"451-["echoed",{n},{{"_placeholder":true,"num":0}}]"#)
                );
                let bin = rx.next().await.unwrap().unwrap();
                assert!(bin.into_data().as_ref() == blob.as_slice(), "message {n}");
            }
        };
        futures::future::join(send, receive).await;
    });
}

/// The node carrying a relayed WebSocket leaves the cluster: its owner ends the session
/// within a probe interval, not at its next ping.
#[test]
fn an_owner_learns_within_a_probe_that_the_carrier_is_gone() {
    let (rt, servers, adapters) = cluster();
    rt.block_on(async {
        let sid = connected(&servers, 0).await;
        let ws = upgraded(&servers[1], &sid).await;
        rt.sleep(common::SETTLE).await;
        assert_eq!(servers[0].socket_count().await, 1);
        adapters[1].leave();
        rt.sleep(Duration::from_secs(3)).await;
        assert_eq!(
            servers[0].socket_count().await,
            0,
            "the owner let the session go"
        );
        drop(ws);
    });
}

/// The owner leaves while a poll for its session is parked through another node: that node
/// answers it as for an unknown session within a probe interval.
#[test]
fn a_parked_poll_learns_within_a_probe_that_the_owner_is_gone() {
    let (rt, servers, adapters) = cluster();
    rt.block_on(async {
        let sid = connected(&servers, 0).await;
        let target = format!("{POLL}&sid={sid}");
        let mut poller = raw::connect(&servers[1], None);
        poller.send_only("GET", &target).await;
        rt.sleep(common::SETTLE).await;
        adapters[0].leave();
        let started = volley::runtime::Runtime::now(&rt);
        let answer = poller.response().await;
        let waited = volley::runtime::Runtime::now(&rt) - started;
        assert_eq!(answer.status, 400);
        assert!(
            waited <= Duration::from_secs(3),
            "answered after {waited:?}"
        );
    });
}
