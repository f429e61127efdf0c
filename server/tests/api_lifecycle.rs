//! System events and the socket's life: connection, disconnecting, disconnect reasons,
//! on_any / on_any_outgoing, and nothing left behind.

mod common;

use common::{Log, SETTLE, setup, setup_with};
use serde_json::json;
use std::time::Duration;
use volley::runtime::Runtime as _;
use volley::testing::{ConnectOptions, TestClient, TestRuntime};
use volley::{Data, DisconnectReason, Io, Payload, Room, Socket};

/// Records every disconnect of namespace `nsp` as "<reason>".
fn record_disconnects(io: &Io<TestRuntime>, nsp: &str) -> Log {
    let log = Log::new();
    let l = log.clone();
    io.ns(nsp)
        .on_disconnect(move |_s: Socket, r: DisconnectReason| {
            let l = l.clone();
            async move { l.push(r.as_str()) }
        })
        .on("leave", |s: Socket, Data(close): Data<bool>| async move {
            s.disconnect(close);
        });
    log
}

#[test]
fn on_connection_completes_before_the_first_event_handler_starts() {
    let (rt, io) = setup();
    let log = Log::new();
    let (l1, l2, rt2) = (log.clone(), log.clone(), rt.clone());
    io.ns("/")
        .on_connection(move |s: Socket| {
            let (l, rt) = (l1.clone(), rt2.clone());
            async move {
                l.push("connection start");
                // Asynchronous set-up (a database lookup, say) before events may run.
                rt.sleep(Duration::from_secs(1)).await;
                s.data().insert(42u32);
                l.push("connection done");
            }
        })
        .on("first", move |s: Socket| {
            let l = l2.clone();
            async move {
                l.push(format!("event sees {:?}", s.data().get::<u32>()));
            }
        });
    rt.block_on(async {
        let c = TestClient::connect(&io, "/", None).await.unwrap();
        c.emit("first", &());
        rt.sleep(Duration::from_secs(2)).await;
    });
    assert_eq!(
        log.entries(),
        ["connection start", "connection done", "event sees Some(42)"]
    );
}

#[test]
fn on_disconnecting_sees_the_rooms_then_on_disconnect_the_reason() {
    let (rt, io) = setup();
    let log = Log::new();
    let (l1, l2) = (log.clone(), log.clone());
    io.ns("/")
        .on_connection(|s: Socket| async move {
            s.join("a");
            s.join("b");
        })
        .on_disconnecting(move |s: Socket, r: DisconnectReason, rooms: Vec<Room>| {
            let l = l1.clone();
            async move {
                let mut names: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
                names.sort();
                let mut expected = vec!["a".to_owned(), "b".to_owned(), s.id().to_string()];
                expected.sort();
                assert_eq!(names, expected);
                l.push(format!("disconnecting {r}"));
            }
        })
        .on_disconnect(move |s: Socket, r: DisconnectReason| {
            let l = l2.clone();
            async move {
                assert!(!s.connected());
                assert!(s.rooms().await.is_empty());
                l.push(format!("disconnect {r}"));
            }
        });
    rt.block_on(async {
        let c = TestClient::connect(&io, "/", None).await.unwrap();
        c.disconnect();
        rt.sleep(SETTLE).await;
        assert_eq!(
            c.disconnect_reason().as_deref(),
            Some("io client disconnect")
        );
    });
    assert_eq!(
        log.entries(),
        [
            "disconnecting client namespace disconnect",
            "disconnect client namespace disconnect"
        ]
    );
}

#[test]
fn a_server_namespace_disconnect_is_reported_on_both_sides() {
    let (rt, io) = setup();
    let log = record_disconnects(&io, "/");
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        c.emit("leave", &false);
        assert!(c.recv().await.is_none(), "the event stream ends");
        assert_eq!(
            c.disconnect_reason().as_deref(),
            Some("io server disconnect")
        );
        rt.sleep(SETTLE).await;
        // The connection itself stays open (pings continue) with no namespace joined.
        assert_eq!(io.client_count().await, 1);
        assert_eq!(io.socket_count().await, 0);
    });
    assert_eq!(log.entries(), ["server namespace disconnect"]);
}

#[test]
fn a_server_disconnect_with_close_ends_the_connection() {
    let (rt, io) = setup();
    let log = record_disconnects(&io, "/");
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        c.emit("leave", &true);
        assert!(c.recv().await.is_none());
        rt.sleep(SETTLE).await;
        assert_eq!(io.client_count().await, 0);
        assert_eq!(io.socket_count().await, 0);
        // The client was told of a server disconnect before the close.
        assert_eq!(
            c.disconnect_reason().as_deref(),
            Some("io server disconnect")
        );
    });
    // As the reference server does (`Client._disconnect` disconnects every socket, then
    // closes): the sockets leave with "server namespace disconnect".
    assert_eq!(log.entries(), ["server namespace disconnect"]);
}

#[test]
fn a_client_namespace_disconnect_and_a_transport_close() {
    let (rt, io) = setup();
    let log = record_disconnects(&io, "/");
    rt.block_on(async {
        let c = TestClient::connect(&io, "/", None).await.unwrap();
        c.disconnect();
        rt.sleep(SETTLE).await;
        assert_eq!(io.socket_count().await, 0);
        assert_eq!(io.client_count().await, 1);
        c.close();
        let c = TestClient::connect(&io, "/", None).await.unwrap();
        c.close();
        rt.sleep(SETTLE).await;
        assert_eq!(io.client_count().await, 0);
    });
    assert_eq!(
        log.entries(),
        ["client namespace disconnect", "transport close"]
    );
}

#[test]
fn a_client_that_stops_answering_pings_times_out() {
    let builder = volley::builder()
        .ping_interval(Duration::from_secs(2))
        .ping_timeout(Duration::from_secs(1));
    let (rt, io) = setup_with(builder);
    let log = record_disconnects(&io, "/");
    rt.block_on(async {
        let quiet = ConnectOptions::new().auto_pong(false);
        let mut c = TestClient::connect_with(&io, "/", quiet).await.unwrap();
        let start = rt.elapsed();
        assert!(c.recv().await.is_none());
        let took = rt.elapsed() - start;
        assert_eq!(
            took,
            Duration::from_secs(3),
            "one interval plus the timeout"
        );
        assert_eq!(c.pings_received(), 1);
        assert_eq!(c.disconnect_reason().as_deref(), Some("transport close"));
        // A client that answers at first and then stops.
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        rt.sleep(Duration::from_secs(9)).await;
        assert_eq!(c.pings_received(), 4);
        c.set_auto_pong(false);
        assert!(c.recv().await.is_none());
    });
    assert_eq!(log.entries(), ["ping timeout", "ping timeout"]);
}

#[test]
fn closing_the_server_disconnects_everyone_with_server_shutting_down() {
    let (rt, io) = setup();
    let log = record_disconnects(&io, "/");
    let chat = record_disconnects(&io, "/chat");
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let mut b = TestClient::connect(&io, "/chat", None).await.unwrap();
        io.close().await;
        assert!(a.recv().await.is_none());
        assert!(b.recv().await.is_none());
        assert_eq!(io.socket_count().await, 0);
        assert_eq!(io.client_count().await, 0);
        // No new connection after the shutdown.
        assert!(TestClient::connect(&io, "/", None).await.is_err());
    });
    assert_eq!(log.entries(), ["server shutting down"]);
    assert_eq!(chat.entries(), ["server shutting down"]);
}

#[test]
fn on_any_sees_every_event_and_on_any_outgoing_every_emit() {
    let (rt, io) = setup();
    let incoming = Log::new();
    let outgoing = Log::new();
    let (i, o) = (incoming.clone(), outgoing.clone());
    io.ns("/")
        .on_any(move |_s: Socket, name: String, p: Payload| {
            let i = i.clone();
            async move { i.push(format!("{name} {}", p.json())) }
        })
        .on_any_outgoing(move |_s: &Socket, name: &str, p: &Payload| {
            o.push(format!("{name} {}", p.json()));
        })
        .on("ping", |s: Socket, Data(n): Data<i64>| async move {
            s.emit("pong", &n).unwrap();
            s.emit_payload("two", Payload::new().arg(&1).unwrap().arg(&2).unwrap());
        });
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        c.emit("unhandled", &json!({"a": 1}));
        c.emit("ping", &5);
        assert_eq!(c.recv().await.unwrap().event, "pong");
        assert_eq!(c.recv().await.unwrap().event, "two");
    });
    assert_eq!(incoming.entries(), ["unhandled [{\"a\":1}]", "ping [5]"]);
    assert_eq!(outgoing.entries(), ["pong [5]", "two [1,2]"]);
}

#[test]
fn on_any_outgoing_sees_broadcasts_once_per_recipient() {
    let (rt, io) = setup();
    let outgoing = Log::new();
    let o = outgoing.clone();
    io.ns("/")
        .on_any_outgoing(move |s: &Socket, name: &str, p: &Payload| {
            let who = s
                .data()
                .with(|n: &mut String| n.clone())
                .unwrap_or_default();
            o.push(format!("{who} {name} {}", p.json()));
        })
        .on("name", |s: Socket, Data(n): Data<String>| async move {
            s.data().insert(n.clone());
            s.join(n.as_str());
            true
        });
    io.ns("/other")
        .on_any_outgoing(|_s: &Socket, name: &str, _p: &Payload| {
            panic!("a hook of another namespace saw {name}")
        });
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let mut b = TestClient::connect(&io, "/", None).await.unwrap();
        let _other = TestClient::connect(&io, "/other", None).await.unwrap();
        let named: bool = a.emit_with_ack("name", &"a").await.unwrap();
        assert!(named);
        let named: bool = b.emit_with_ack("name", &"b").await.unwrap();
        assert!(named);
        io.emit("all", &1).unwrap();
        io.to("b").emit("only-b", &2).unwrap();
        io.except("b").emit("not-b", &3).unwrap();
        assert_eq!(a.recv().await.unwrap().event, "all");
        assert_eq!(a.recv().await.unwrap().event, "not-b");
        assert_eq!(b.recv().await.unwrap().event, "all");
        assert_eq!(b.recv().await.unwrap().event, "only-b");
    });
    let mut got = outgoing.entries();
    got.sort();
    assert_eq!(
        got,
        ["a all [1]", "a not-b [3]", "b all [1]", "b only-b [2]"]
    );
}

#[test]
fn nothing_is_left_behind_once_every_client_has_gone() {
    let (rt, io) = setup();
    io.ns("/")
        .on_connection(|s: Socket| async move { s.join("room") })
        .on("ask", |s: Socket| async move {
            // An acknowledgement that will never come: it must fail at disconnect.
            let r = s.emit_with_ack::<_, i64>("question", &()).await;
            s.data().insert(format!("{r:?}"));
        });
    io.ns("/other");
    rt.block_on(async {
        let mut clients = Vec::new();
        for i in 0..5 {
            let nsp = if i % 2 == 0 { "/" } else { "/other" };
            clients.push(TestClient::connect(&io, nsp, None).await.unwrap());
        }
        clients[0].emit("ask", &());
        assert_eq!(clients[0].recv().await.unwrap().event, "question");
        let op = io.timeout(Duration::from_secs(60));
        let pending = op.emit_with_ack("all", &());
        let mut pending = Box::pin(pending);
        assert!(
            rt.timeout(SETTLE, &mut pending).await.is_none(),
            "nobody answered yet"
        );
        assert_eq!(io.socket_count().await, 5);
        assert_eq!(io.client_count().await, 5);
        assert!(io.pending_ack_count().await > 0);
        for (i, c) in clients.into_iter().enumerate() {
            if i % 2 == 0 {
                c.disconnect();
            }
            c.close();
        }
        let r = pending.await;
        assert!(r.is_err(), "{r:?}");
        rt.sleep(SETTLE).await;
        assert_eq!(io.socket_count().await, 0);
        assert_eq!(io.client_count().await, 0);
        assert_eq!(io.pending_ack_count().await, 0);
        assert_eq!(io.driver().connection_count(), 0);
        let handle = io.driver().handle();
        let tracked = handle.call(|node, _| node.tracked_socket_count()).await;
        assert_eq!(tracked.unwrap(), 0);
    });
}

#[test]
fn protocol_violations_close_the_connection_with_their_reason() {
    let (rt, io) = setup();
    let log = record_disconnects(&io, "/");
    rt.block_on(async {
        // Bytes that do not decode as a Socket.IO packet.
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        c.send_raw("4abc");
        assert!(c.recv().await.is_none());
        // An event for a namespace the client never joined.
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        c.send_raw("42/elsewhere,[\"x\"]");
        assert!(c.recv().await.is_none());
        rt.sleep(SETTLE).await;
        assert_eq!(io.client_count().await, 0);
    });
    assert_eq!(log.entries(), ["parse error", "forced server close"]);
}

/// `Io::close` ends every task the server started: connections, sockets' handler tasks
/// (a handler still waiting is dropped), and the machine's task.
#[test]
fn close_leaves_no_task_running() {
    let rt = volley::testing::TestRuntime::new();
    assert_eq!(rt.live_tasks(), 0);
    let io = volley::builder().seed([3; 32]).build(rt.clone());
    let started = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = started.clone();
    let sleeper = rt.clone();
    io.ns("/").on("wait", move || {
        let flag = flag.clone();
        let rt = sleeper.clone();
        async move {
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
            volley::runtime::Runtime::sleep(&rt, Duration::from_secs(24 * 3600)).await;
        }
    });
    rt.block_on(async {
        let a = TestClient::connect(&io, "/", None).await.unwrap();
        let polling = volley::testing::ConnectOptions::new()
            .transport(volley::testing::TransportKind::Polling);
        let b = TestClient::connect_with(&io, "/", polling).await.unwrap();
        a.emit("wait", &());
        b.emit("wait", &());
        rt.sleep(Duration::from_millis(50)).await;
        assert!(started.load(std::sync::atomic::Ordering::SeqCst));
        io.close().await;
        drop((a, b));
    });
    rt.run_until_idle();
    assert_eq!(rt.live_tasks(), 0, "tasks left after close");
    drop(io);
}
