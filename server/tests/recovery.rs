//! Connection state recovery through the API and the test client: a client whose transport
//! drops comes back within the window with its id, rooms and data, and receives every event
//! it missed exactly once, in order.

mod common;

use common::{Log, SETTLE, setup_with};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use volley::runtime::Runtime as _;
use volley::testing::{ConnectOptions, TestClient, TestRuntime};
use volley::{DisconnectReason, Io, Json, Socket};

const WINDOW: Duration = Duration::from_secs(60);

/// A server with recovery on; `connection` joins room "r" and sets data on fresh sockets
/// only, and logs `connection <recovered>`; "whoami" answers the socket's data; the
/// connection middleware counts its runs.
fn server(skip_middlewares: bool) -> (TestRuntime, Io<TestRuntime>, Log, Arc<AtomicUsize>) {
    let (rt, io) =
        setup_with(volley::builder().connection_state_recovery(WINDOW, skip_middlewares));
    let log = Log::new();
    let (l1, l2) = (log.clone(), log.clone());
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    io.use_connect(move |ctx, next| {
        r.fetch_add(1, Ordering::SeqCst);
        async move { next.run(ctx).await }
    });
    io.ns("/")
        .on_connection(move |s: Socket| {
            let l = l1.clone();
            async move {
                if !s.recovered() {
                    s.join("r");
                    s.data().insert(json!({ "user": "ann" }));
                }
                l.push(format!("connection {}", s.recovered()));
            }
        })
        .on_disconnect(move |_s: Socket, reason: DisconnectReason| {
            let l = l2.clone();
            async move { l.push(format!("disconnect {reason}")) }
        })
        .on("whoami", |s: Socket| async move {
            Json(s.data().get::<serde_json::Value>().unwrap_or_default())
        });
    (rt, io, log, runs)
}

/// Every event already received, as `name arg`.
async fn drain(rt: &TestRuntime, c: &mut TestClient) -> Vec<String> {
    rt.sleep(SETTLE).await;
    let mut out = Vec::new();
    while let Some(e) = c.try_recv() {
        out.push(format!("{} {}", e.event, e.payload.json()));
    }
    out
}

#[test]
fn a_dropped_client_recovers_its_socket_and_every_missed_event_in_order() {
    let (rt, io, log, runs) = server(true);
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let id = c.id();
        rt.sleep(SETTLE).await;
        for i in 0..3 {
            io.emit("tick", &i).unwrap();
        }
        // The offsets are taken off the arguments.
        assert_eq!(
            drain(&rt, &mut c).await,
            ["tick [0]", "tick [1]", "tick [2]"]
        );
        let state = c.recovery_state().expect("a pid");
        assert!(state.offset.is_some());
        c.close();
        rt.sleep(SETTLE).await;
        assert_eq!(
            log.take(),
            ["connection false", "disconnect transport close"]
        );

        // The server goes on while the client is away.
        for i in 3..6 {
            io.emit("tick", &i).unwrap();
        }
        io.to("r").emit("room", &6).unwrap();
        io.to("elsewhere").emit("other", &7).unwrap();
        io.except("r").emit("other", &8).unwrap();
        io.volatile().emit("volatile", &9).unwrap();
        rt.sleep(Duration::from_secs(5)).await;

        let mut c = TestClient::reconnect_with_recovery(&io, "/", &state, ConnectOptions::new())
            .await
            .unwrap();
        assert!(c.recovered());
        assert_eq!(c.id(), id);
        assert_eq!(
            drain(&rt, &mut c).await,
            ["tick [3]", "tick [4]", "tick [5]", "room [6]"]
        );
        assert_eq!(log.take(), ["connection true"]);
        // The middleware was skipped; rooms and data came back.
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        let data: serde_json::Value = c.emit_with_ack("whoami", &()).await.unwrap();
        assert_eq!(data, json!({ "user": "ann" }));
        io.to("r").emit("room", &10).unwrap();
        assert_eq!(drain(&rt, &mut c).await, ["room [10]"]);

        // Recovering again from the latest offset works the same way.
        let state = c.recovery_state().unwrap();
        c.close();
        rt.sleep(SETTLE).await;
        io.emit("tick", &11).unwrap();
        let mut c = TestClient::reconnect_with_recovery(&io, "/", &state, ConnectOptions::new())
            .await
            .unwrap();
        assert!(c.recovered());
        assert_eq!(drain(&rt, &mut c).await, ["tick [11]"]);
        // A volatile event has no offset: its own trailing string stays, the last offset too.
        let last = c.recovery_state().unwrap().offset;
        assert!(last.is_some() && last != state.offset);
        io.volatile().emit("v", "plain").unwrap();
        assert_eq!(drain(&rt, &mut c).await, [r#"v ["plain"]"#]);
        assert_eq!(c.recovery_state().unwrap().offset, last);
    });
}

#[test]
fn after_the_window_the_client_gets_a_fresh_session() {
    let (rt, io, log, runs) = server(true);
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let id = c.id();
        rt.sleep(SETTLE).await;
        io.emit("tick", &0).unwrap();
        assert_eq!(drain(&rt, &mut c).await, ["tick [0]"]);
        let state = c.recovery_state().unwrap();
        c.close();
        rt.sleep(WINDOW + Duration::from_secs(1)).await;
        let mut c = TestClient::reconnect_with_recovery(&io, "/", &state, ConnectOptions::new())
            .await
            .unwrap();
        assert!(!c.recovered());
        assert_ne!(c.id(), id);
        assert!(drain(&rt, &mut c).await.is_empty());
        assert_eq!(
            log.take(),
            [
                "connection false",
                "disconnect transport close",
                "connection false"
            ]
        );
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    });
}

#[test]
fn without_skip_middlewares_the_middleware_runs_on_recovery() {
    let (rt, io, log, runs) = server(false);
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let id = c.id();
        rt.sleep(SETTLE).await;
        io.emit("tick", &0).unwrap();
        assert_eq!(drain(&rt, &mut c).await, ["tick [0]"]);
        let state = c.recovery_state().unwrap();
        c.close();
        rt.sleep(SETTLE).await;
        io.emit("tick", &1).unwrap();
        let mut c = TestClient::reconnect_with_recovery(&io, "/", &state, ConnectOptions::new())
            .await
            .unwrap();
        assert!(c.recovered());
        assert_eq!(c.id(), id);
        assert_eq!(drain(&rt, &mut c).await, ["tick [1]"]);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        let data: serde_json::Value = c.emit_with_ack("whoami", &()).await.unwrap();
        assert_eq!(data, json!({ "user": "ann" }));
        assert_eq!(
            log.take(),
            [
                "connection false",
                "disconnect transport close",
                "connection true"
            ]
        );
    });
}

/// An application that keeps a socket's handle and emits through it while the client is
/// away loses nothing: those events are replayed on recovery, as with the reference, whose
/// `socket.emit` is kept as a broadcast to the socket's room.
#[test]
fn emits_through_the_handle_of_a_socket_away_are_replayed() {
    let (rt, io) = setup_with(volley::builder().connection_state_recovery(WINDOW, true));
    let handle: Arc<std::sync::Mutex<Option<Socket>>> = Arc::default();
    let h = handle.clone();
    io.ns("/").on_connection(move |s: Socket| {
        let h = h.clone();
        async move {
            if !s.recovered() {
                *h.lock().unwrap() = Some(s);
            }
        }
    });
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        rt.sleep(SETTLE).await;
        let s = handle.lock().unwrap().clone().expect("the socket's handle");
        s.emit("own", &0).unwrap();
        assert_eq!(drain(&rt, &mut c).await, ["own [0]"]);
        let state = c.recovery_state().unwrap();
        c.close();
        rt.sleep(SETTLE).await;
        assert!(!s.connected());
        s.emit("own", &1).unwrap();
        s.emit_volatile("lost", &2).unwrap();
        rt.sleep(SETTLE).await;
        let mut c = TestClient::reconnect_with_recovery(&io, "/", &state, ConnectOptions::new())
            .await
            .unwrap();
        assert!(c.recovered());
        assert_eq!(drain(&rt, &mut c).await, ["own [1]"]);
        // The old handle reaches the recovered socket, which has its id.
        s.emit("own", &3).unwrap();
        assert_eq!(drain(&rt, &mut c).await, ["own [3]"]);
    });
}

#[test]
fn without_recovery_nothing_changes_on_the_wire() {
    let (rt, io) = common::setup();
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        rt.sleep(SETTLE).await;
        io.emit("tick", &0).unwrap();
        assert_eq!(drain(&rt, &mut c).await, ["tick [0]"]);
        assert!(c.recovery_state().is_none());
    });
}
