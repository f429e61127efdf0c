//! Metrics through the test kit: a recorder local to each test sees the values after real
//! traffic (connects, refusals, events, acks, broadcasts, disconnects, recovery).

mod common;

use common::{SETTLE, setup_with};
use serde_json::json;
use std::time::Duration;
use support::TestRecorder;
use volley::adapter::{Adapter, Inbox, MemoryAdapter, MemoryCluster};
use volley::runtime::Runtime as _;
use volley::testing::{ConnectOptions, TestClient, TestRuntime, TransportKind};
use volley::{ConnectError, Data, Socket, metrics as m};
use volley_core::NodeId;
use volley_core::cluster::ClusterMessage;
use volley_core::engine::OverflowPolicy;

#[path = "support/recorder.rs"]
mod support;

#[test]
fn traffic_through_the_test_kit_is_counted() {
    let recorder = TestRecorder::default();
    let snap = recorder.clone();
    metrics::with_local_recorder(&recorder, || {
        let (rt, io) = setup_with(volley::builder());
        io.use_connect(|ctx, next| async move {
            if ctx.auth()["token"] == json!("bad") {
                return Err(ConnectError::new("refused"));
            }
            next.run(ctx).await
        });
        io.ns("/")
            .on("echo", |Data(s): Data<String>| async move { s })
            .on("ask", |s: Socket| async move {
                let answer: Result<String, _> = s
                    .timeout(Duration::from_millis(500))
                    .emit_with_ack("question", &1)
                    .await;
                answer.is_ok()
            });
        rt.block_on(async {
            let mut a = TestClient::connect(&io, "/", None).await.unwrap();
            let polling = ConnectOptions::new().transport(TransportKind::Polling);
            let mut b = TestClient::connect_with(&io, "/", polling).await.unwrap();
            assert!(
                TestClient::connect(&io, "/", Some(json!({"token": "bad"})))
                    .await
                    .is_err()
            );
            rt.sleep(SETTLE).await;
            assert_eq!(snap.value(m::CONNECTS, &[("namespace", "/")]), 2.0);
            assert_eq!(snap.value(m::SOCKETS, &[("namespace", "/")]), 2.0);
            assert_eq!(snap.value(m::REFUSALS, &[("code", "connect_error")]), 1.0);
            assert_eq!(
                snap.value(m::CONNECTIONS, &[("transport", "websocket")]),
                1.0
            );
            assert_eq!(snap.value(m::CONNECTIONS, &[("transport", "polling")]), 1.0);

            // Events in, answers out, and the delay before each handler.
            let r: String = a.emit_with_ack("echo", "hi").await.unwrap();
            assert_eq!(r, "hi");
            let r: String = b.emit_with_ack("echo", "ho").await.unwrap();
            assert_eq!(r, "ho");
            assert!(snap.value(m::HANDLER_DELAY, &[]) >= 2.0);
            for t in ["websocket", "polling"] {
                assert!(
                    snap.value(m::PACKETS_RECEIVED, &[("transport", t)]) >= 1.0,
                    "{t}"
                );
                assert!(
                    snap.value(m::PACKETS_SENT, &[("transport", t)]) >= 1.0,
                    "{t}"
                );
                assert!(
                    snap.value(m::BYTES_RECEIVED, &[("transport", t)]) >= 10.0,
                    "{t}"
                );
                assert!(
                    snap.value(m::BYTES_SENT, &[("transport", t)]) >= 10.0,
                    "{t}"
                );
            }

            // A server-side ack answered, then one left to time out.
            a.emit("ask", &());
            let q = a.recv().await.unwrap();
            assert_eq!(q.event, "question");
            a.ack(q.ack.unwrap(), "yes");
            b.emit("ask", &());
            let q = b.recv().await.unwrap();
            assert!(q.ack.is_some());
            rt.sleep(Duration::from_secs(1)).await;
            assert_eq!(snap.value(m::ACKS_SENT, &[]), 2.0);
            assert_eq!(snap.value(m::ACKS_ANSWERED, &[]), 1.0);
            assert_eq!(snap.value(m::ACKS_TIMED_OUT, &[]), 1.0);

            // A broadcast to both.
            io.emit("news", &"all").unwrap();
            rt.sleep(SETTLE).await;
            assert_eq!(snap.value(m::BROADCASTS, &[]), 1.0);
            assert_eq!(snap.value(m::BROADCAST_RECIPIENTS, &[]), 2.0);

            a.disconnect();
            rt.sleep(SETTLE).await;
            assert_eq!(
                snap.value(m::DISCONNECTS, &[("reason", "client namespace disconnect")]),
                1.0
            );
            assert_eq!(snap.value(m::SOCKETS, &[("namespace", "/")]), 1.0);
            // Leaving a namespace keeps the connection; closing it ends the session.
            a.close();
            b.close();
            rt.sleep(Duration::from_secs(60)).await;
            assert_eq!(snap.value(m::SOCKETS, &[("namespace", "/")]), 0.0);
            assert_eq!(snap.value(m::CONNECTIONS, &[("transport", "polling")]), 0.0);
            assert_eq!(
                snap.value(m::CONNECTIONS, &[("transport", "websocket")]),
                0.0
            );
        });
    });
}

#[test]
fn recovery_attempts_hits_and_misses_are_counted() {
    let recorder = TestRecorder::default();
    let snap = recorder.clone();
    metrics::with_local_recorder(&recorder, || {
        let (rt, io) =
            setup_with(volley::builder().connection_state_recovery(Duration::from_secs(60), false));
        io.ns("/");
        rt.block_on(async {
            let mut c = TestClient::connect(&io, "/", None).await.unwrap();
            io.emit("kept", &1).unwrap();
            assert_eq!(c.recv().await.unwrap().event, "kept");
            let state = c.recovery_state().unwrap();
            c.close();
            rt.sleep(SETTLE).await;
            let back = TestClient::reconnect_with_recovery(&io, "/", &state, ConnectOptions::new())
                .await
                .unwrap();
            assert!(back.recovered());
            // The session was taken by that restore: a second attempt misses.
            let again =
                TestClient::reconnect_with_recovery(&io, "/", &state, ConnectOptions::new())
                    .await
                    .unwrap();
            assert!(!again.recovered());
            rt.sleep(SETTLE).await;
            assert_eq!(snap.value(m::RECOVERY_ATTEMPTS, &[]), 2.0);
            assert_eq!(snap.value(m::RECOVERY_HITS, &[]), 1.0);
            assert_eq!(snap.value(m::RECOVERY_MISSES, &[]), 1.0);
        });
    });
}

/// An adapter that joins the cluster and receives, but never answers.
struct Mute(MemoryAdapter);

impl Adapter for Mute {
    fn start(&self, node: NodeId, inbox: Inbox) {
        self.0.start(node, inbox);
    }

    fn publish(&self, _to: Option<NodeId>, _message: ClusterMessage) {}

    fn server_count(&self) -> usize {
        self.0.server_count()
    }
}

#[test]
fn adapter_requests_answers_and_timeouts_are_counted_by_type() {
    let recorder = TestRecorder::default();
    let snap = recorder.clone();
    metrics::with_local_recorder(&recorder, || {
        let rt = TestRuntime::new();
        let cluster = MemoryCluster::new();
        let build = |n: u8, adapter: Box<dyn FnOnce(volley::Builder) -> volley::Builder>| {
            let io = adapter(volley::builder().seed([n; 32]))
                .request_timeout(Duration::from_secs(2))
                .build(rt.clone());
            io.ns("/");
            io
        };
        let (c1, c2, c3) = (cluster.adapter(), cluster.adapter(), cluster.adapter());
        let a = build(1, Box::new(move |b| b.adapter(c1)));
        let _b = build(2, Box::new(move |b| b.adapter(c2)));
        let _c = build(3, Box::new(move |b| b.adapter(Mute(c3))));
        rt.block_on(async {
            let _client = TestClient::connect(&a, "/", None).await.unwrap();
            assert_eq!(a.server_count(), 3);
            let all = a.fetch_sockets().await;
            assert_eq!(all.len(), 1);
            let rooms = a.all_rooms().await;
            assert!(!rooms.is_empty());
        });
        for kind in ["fetch_sockets", "all_rooms"] {
            assert_eq!(
                snap.value(m::ADAPTER_REQUESTS, &[("type", kind)]),
                1.0,
                "{kind}"
            );
            assert_eq!(
                snap.value(m::ADAPTER_ANSWERS, &[("type", kind)]),
                1.0,
                "{kind}"
            );
            assert_eq!(
                snap.value(m::ADAPTER_TIMEOUTS, &[("type", kind)]),
                1.0,
                "{kind}"
            );
        }
    });
}

#[test]
fn a_full_outgoing_queue_is_counted_by_policy() {
    let recorder = TestRecorder::default();
    let snap = recorder.clone();
    metrics::with_local_recorder(&recorder, || {
        let (rt, io) =
            setup_with(volley::builder().max_buffered_packets(2, OverflowPolicy::Reject));
        io.ns("/").on("flood", |s: Socket| async move {
            for i in 0..20 {
                s.emit("n", &i).unwrap();
            }
        });
        rt.block_on(async {
            // Polling: nothing drains the queue until the next poll.
            let polling = ConnectOptions::new().transport(TransportKind::Polling);
            let c = TestClient::connect_with(&io, "/", polling).await.unwrap();
            c.emit("flood", &());
            rt.sleep(SETTLE).await;
        });
        assert!(snap.value(m::OUTBOX_OVERFLOWS, &[("policy", "reject")]) >= 1.0);
        assert_eq!(snap.value(m::OUTBOX_OVERFLOWS, &[("policy", "close")]), 0.0);
    });
}
