//! The socket handle: identity, handshake, rooms, emits, acknowledgements both ways,
//! broadcasts from a socket, disconnect.

mod common;

use common::{SETTLE, setup};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use volley::runtime::Runtime as _;
use volley::testing::{ConnectOptions, TestClient, TestRuntime, TransportKind};
use volley::{AckError, Data, Io, Room, Socket};

/// The live handle of the socket with id `id` in `/`.
async fn socket_of(io: &Io<TestRuntime>, id: volley::SocketId) -> Socket {
    io.all()
        .fetch_sockets()
        .await
        .into_iter()
        .find(|s| s.id() == id)
        .expect("connected")
        .socket()
        .cloned()
        .expect("a socket of this node")
}

fn sorted(rooms: Vec<Room>) -> Vec<String> {
    let mut v: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
    v.sort();
    v
}

#[test]
fn identity_handshake_and_rooms() {
    let (rt, io) = setup();
    io.ns("/")
        .on("join", |s: Socket, Data(room): Data<String>| async move {
            s.join(room.as_str());
            sorted(s.rooms().await)
        });
    io.ns("/")
        .on("leave", |s: Socket, Data(room): Data<String>| async move {
            s.leave(room.as_str());
            sorted(s.rooms().await)
        });
    rt.block_on(async {
        let opts = ConnectOptions::new()
            .auth(json!({"k": 1}))
            .header("User-Agent", "test-agent");
        let mut c = TestClient::connect_with(&io, "/", opts).await.unwrap();
        let s = socket_of(&io, c.id()).await;
        assert_eq!(s.id(), c.id());
        assert_ne!(Some(s.id().to_string()), c.sid(), "not the Engine.IO id");
        assert_eq!(s.ns(), "/");
        assert!(s.connected());
        assert_eq!(s.handshake().auth(), &json!({"k": 1}));
        assert_eq!(s.handshake().header("user-agent"), Some("test-agent"));
        assert_eq!(s.handshake().query("EIO").as_deref(), Some("4"));
        assert_eq!(s.handshake().namespace(), "/");
        assert!(s.handshake().issued() <= rt.now());
        let me = c.id().to_string();
        assert_eq!(sorted(s.rooms().await), std::slice::from_ref(&me));
        let r: Vec<String> = c.emit_with_ack("join", "x").await.unwrap();
        let mut expected = vec![me.clone(), "x".to_owned()];
        expected.sort();
        assert_eq!(r, expected);
        let r: Vec<String> = c.emit_with_ack("leave", "x").await.unwrap();
        assert_eq!(r, std::slice::from_ref(&me));
        // A room not joined: leaving it changes nothing.
        let r: Vec<String> = c.emit_with_ack("leave", "y").await.unwrap();
        assert_eq!(r, [me]);
        c.disconnect();
        rt.sleep(SETTLE).await;
        assert!(!s.connected());
        assert!(s.rooms().await.is_empty());
        // Every method is safe once the socket has left.
        s.join("late");
        s.emit("late", &1).unwrap();
        s.disconnect(false);
        let r = s.emit_with_ack::<_, i64>("late", &()).await;
        assert!(matches!(r, Err(AckError::NotSent(_))), "{r:?}");
    });
}

/// An acknowledgement awaited is counted wherever the session runs: on its WebSocket's task
/// as on the machine's (long-polling), the same.
#[test]
fn awaited_acknowledgements_are_counted_on_either_task() {
    let (rt, io) = setup();
    rt.block_on(async {
        let mut counts = Vec::new();
        for transport in [TransportKind::WebSocket, TransportKind::Polling] {
            let options = ConnectOptions::new().transport(transport);
            let mut c = TestClient::connect_with(&io, "/", options).await.unwrap();
            let s = socket_of(&io, c.id()).await;
            let asked = s.emit_with_ack::<_, i64>("question", &());
            let answer = async {
                // Counted by the step that sent the question, before it went out.
                let ev = c.recv().await.unwrap();
                counts.push(io.pending_ack_count().await);
                c.ack(ev.ack.expect("an ack id"), &7);
            };
            let (r, ()) = futures::future::join(asked, answer).await;
            assert_eq!(r, Ok(7), "{transport:?}");
            assert_eq!(io.pending_ack_count().await, 0, "{transport:?}");
            c.close();
        }
        assert!(counts[0] > 0, "{counts:?}");
        assert_eq!(counts[0], counts[1], "WebSocket, polling");
    });
}

#[test]
fn emit_with_ack_gets_the_client_answer() {
    let (rt, io) = setup();
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let s = socket_of(&io, c.id()).await;
        let asked = s.emit_with_ack::<_, (String, i64)>("question", &"what?");
        let answer = async {
            let ev = c.recv().await.unwrap();
            assert_eq!(ev.event, "question");
            assert_eq!(ev.data::<String>().unwrap(), "what?");
            let id = ev.ack.expect("an ack id");
            c.ack_with(
                id,
                volley::Payload::new().arg("yes").unwrap().arg(&42).unwrap(),
            );
        };
        let (r, ()) = futures::future::join(asked, answer).await;
        assert_eq!(r.unwrap(), ("yes".to_owned(), 42));
        // The answer does not fit the type asked for.
        let asked = s.emit_with_ack::<_, i64>("q2", &());
        let answer = async {
            let ev = c.recv().await.unwrap();
            c.ack(ev.ack.unwrap(), "not a number");
        };
        let (r, ()) = futures::future::join(asked, answer).await;
        assert!(matches!(r, Err(AckError::Decode(_))), "{r:?}");
        // A timed ack answered in time.
        let timed = s.timeout(Duration::from_secs(5));
        let asked = timed.emit_with_ack::<_, i64>("q3", &());
        let answer = async {
            let ev = c.recv().await.unwrap();
            c.ack(ev.ack.unwrap(), &3);
        };
        let (r, ()) = futures::future::join(asked, answer).await;
        assert_eq!(r, Ok(3));
        assert_eq!(io.pending_ack_count().await, 0);
    });
}

#[test]
fn a_timed_ack_fails_with_timeout_once_the_clock_passes_it() {
    let (rt, io) = setup();
    let mut c = rt.block_on(TestClient::connect(&io, "/", None)).unwrap();
    let s = rt.block_on(socket_of(&io, c.id()));
    let result = Arc::new(Mutex::new(None));
    let r = result.clone();
    rt.spawn(async move {
        let answer = s
            .timeout(Duration::from_secs(5))
            .emit_with_ack::<_, i64>("slow", &())
            .await;
        *r.lock().unwrap() = Some(answer);
    });
    rt.run_until_idle();
    let ev = c.try_recv().expect("sent");
    assert!(ev.ack.is_some());
    rt.advance(Duration::from_millis(4_900));
    assert_eq!(*result.lock().unwrap(), None);
    rt.advance(Duration::from_millis(200));
    assert_eq!(*result.lock().unwrap(), Some(Err(AckError::Timeout)));
    // A late answer is ignored.
    c.ack(ev.ack.unwrap(), &1);
    rt.advance(SETTLE);
    assert_eq!(rt.block_on(io.pending_ack_count()), 0);
}

#[test]
fn an_ack_without_timeout_fails_with_disconnected_when_the_socket_leaves() {
    let (rt, io) = setup();
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let s = socket_of(&io, c.id()).await;
        let asked = s.emit_with_ack::<_, i64>("never", &());
        let leave = async {
            let ev = c.recv().await.unwrap();
            assert!(ev.ack.is_some());
            c.disconnect();
        };
        let (r, ()) = futures::future::join(asked, leave).await;
        assert_eq!(r, Err(AckError::Disconnected));
        // The timed kind too, well before its timeout.
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let s = socket_of(&io, c.id()).await;
        let start = rt.elapsed();
        let timed = s.timeout(Duration::from_secs(3600));
        let asked = timed.emit_with_ack::<_, i64>("never", &());
        let leave = async {
            c.recv().await.unwrap();
            c.close();
        };
        let (r, ()) = futures::future::join(asked, leave).await;
        assert_eq!(r, Err(AckError::Disconnected));
        assert!(rt.elapsed() - start < Duration::from_secs(1));
        assert_eq!(io.pending_ack_count().await, 0);
    });
}

#[test]
fn broadcasts_from_a_socket_leave_the_sender_out() {
    let (rt, io) = setup();
    io.ns("/")
        .on("join", |s: Socket, Data(room): Data<String>| async move {
            s.join(room.as_str());
        })
        .on("to", |s: Socket, Data(room): Data<String>| async move {
            s.to(room.as_str()).emit("to", &s.id().to_string()).unwrap();
        })
        .on("except", |s: Socket, Data(room): Data<String>| async move {
            s.except(room.as_str()).emit("except", &()).unwrap();
        })
        .on("broadcast", |s: Socket| async move {
            s.broadcast().emit("broadcast", &()).unwrap();
        })
        .on("sync", || async { true });
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let mut b = TestClient::connect(&io, "/", None).await.unwrap();
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        a.emit("join", "r");
        b.emit("join", "r");
        // Joins are done once the events after them are answered.
        let _: bool = a.emit_with_ack("sync", &()).await.unwrap();
        let _: bool = b.emit_with_ack("sync", &()).await.unwrap();

        a.emit("to", "r");
        let ev = b.recv().await.unwrap();
        assert_eq!(ev.event, "to");
        assert_eq!(ev.data::<String>().unwrap(), a.id().to_string());
        a.emit("except", "r");
        assert_eq!(c.recv().await.unwrap().event, "except");
        c.emit("broadcast", &());
        assert_eq!(a.recv().await.unwrap().event, "broadcast");
        assert_eq!(b.recv().await.unwrap().event, "broadcast");
        rt.sleep(SETTLE).await;
        // Nobody got what was not meant for them, the sender least of all.
        assert!(a.try_recv().is_none());
        assert!(b.try_recv().is_none());
        assert!(c.try_recv().is_none());
    });
}

#[test]
fn binary_travels_both_ways_in_emits_and_acks() {
    let (rt, io) = setup();
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let s = socket_of(&io, c.id()).await;
        s.emit_payload(
            "file",
            volley::Payload::new()
                .arg("name")
                .unwrap()
                .bin(vec![9u8, 8]),
        );
        let ev = c.recv().await.unwrap();
        assert_eq!(ev.event, "file");
        assert_eq!(
            ev.payload.attachments(),
            [bytes::Bytes::from_static(&[9, 8])]
        );
        assert_eq!(ev.payload.args()[0], json!("name"));
        // Broadcast with an attachment, and an ack answered with one.
        io.to(c.id())
            .emit_payload("all", volley::Payload::new().bin(vec![1u8]));
        let ev = c.recv().await.unwrap();
        assert_eq!(ev.payload.attachments(), [bytes::Bytes::from_static(&[1])]);
        let asked = s.ack_payload("give", volley::Payload::new(), None);
        let answer = async {
            let ev = c.recv().await.unwrap();
            c.ack_with(
                ev.ack.unwrap(),
                volley::Payload::new().arg(&1).unwrap().bin(vec![7u8; 3]),
            );
        };
        let (r, ()) = futures::future::join(asked, answer).await;
        let r = r.unwrap();
        assert_eq!(r.attachments(), [bytes::Bytes::from_static(&[7, 7, 7])]);
        assert_eq!(r.args()[0], json!(1));
    });
}

#[test]
fn a_volatile_emit_from_a_socket_is_dropped_while_its_transport_is_busy() {
    let (rt, io) = setup();
    let mut c = rt.block_on(TestClient::connect(&io, "/", None)).unwrap();
    let s = rt.block_on(socket_of(&io, c.id()));
    rt.run_until_idle();
    s.emit_volatile("v1", &1).unwrap();
    s.emit_volatile("v2", &2).unwrap();
    s.emit("kept", &3).unwrap();
    rt.run_until_idle();
    s.emit_volatile("v3", &4).unwrap();
    rt.run_until_idle();
    let mut got = Vec::new();
    while let Some(ev) = c.try_recv() {
        got.push(ev.event);
    }
    assert_eq!(got, ["v1", "kept", "v3"]);
}

#[test]
fn an_ack_request_is_sent_when_made_not_when_awaited() {
    let (rt, io) = setup();
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let s = socket_of(&io, c.id()).await;
        let first = s.emit_with_ack::<_, i64>("first", &());
        let all = io
            .timeout(Duration::from_secs(1))
            .emit_with_ack("second", &());
        s.emit("third", &()).unwrap();
        let names: Vec<String> = [c.recv().await, c.recv().await, c.recv().await]
            .into_iter()
            .map(|e| e.unwrap().event)
            .collect();
        assert_eq!(names, ["first", "second", "third"]);
        // Neither future borrows what made it: they can be moved to a task.
        rt.spawn(async move {
            let _ = (first.await, all.await);
        });
    });
}

/// The JS client's multiplexing: several namespaces on one connection, each its own socket,
/// refused or left on its own.
#[test]
fn one_connection_joins_several_namespaces() {
    let (rt, io) = setup();
    io.ns("/")
        .on("where", |s: Socket| async move { s.ns().to_owned() });
    io.ns("/admin")
        .use_connect(|ctx: volley::ConnectCtx, next: volley::Next| async move {
            if ctx.auth()["token"] != "t" {
                return Err(volley::ConnectError::new("no"));
            }
            next.run(ctx).await
        })
        .on("where", |s: Socket| async move { s.ns().to_owned() });
    io.ns("/chat")
        .on("where", |s: Socket| async move { s.ns().to_owned() });
    rt.block_on(async {
        let mut root = TestClient::connect(&io, "/", None).await.unwrap();
        let refused = root.join("/admin", None).await;
        assert_eq!(refused.err().map(|e| e.message), Some("no".to_owned()));
        let mut admin = root
            .join("/admin", Some(json!({ "token": "t" })))
            .await
            .unwrap();
        let mut chat = root.join("/chat", None).await.unwrap();
        assert!(root.join("/chat", None).await.is_err(), "joined already");
        assert_eq!(root.sid(), admin.sid(), "one Engine.IO session");
        assert_ne!(root.id(), admin.id());
        for (client, nsp) in [
            (&mut root, "/"),
            (&mut admin, "/admin"),
            (&mut chat, "/chat"),
        ] {
            let got: String = client.emit_with_ack("where", &()).await.unwrap();
            assert_eq!(got, nsp);
        }
        assert_eq!(io.socket_count().await, 3);
        // Leaving one namespace keeps the others.
        chat.disconnect();
        let got: String = admin.emit_with_ack("where", &()).await.unwrap();
        assert_eq!(got, "/admin");
        assert_eq!(io.socket_count().await, 2);
        // Dropping one client keeps the connection while another is alive.
        drop(chat);
        drop(admin);
        let got: String = root.emit_with_ack("where", &()).await.unwrap();
        assert_eq!(got, "/");
    });
}

/// The test client speaks the server's parser: MessagePack, binary included.
#[test]
fn the_test_client_speaks_messagepack_with_a_msgpack_server() {
    let (rt, io) = common::setup_with(volley::builder().parser(volley::Parser::MsgPack));
    io.ns("/")
        .on("double", |Data(n): Data<i64>| async move { n * 2 })
        .on("bin", |volley::Bin(parts): volley::Bin| async move {
            volley::Payload::new().bin(parts.concat())
        });
    io.ns("/other");
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", Some(json!({ "k": 1 })))
            .await
            .unwrap();
        let doubled: i64 = c.emit_with_ack("double", &21).await.unwrap();
        assert_eq!(doubled, 42);
        let other = c.join("/other", None).await.unwrap();
        assert_eq!(other.nsp(), "/other");
        let p = volley::Payload::new().bin(vec![1u8, 2]).bin(vec![3u8]);
        let back = c.ack_payload("bin", p).await.unwrap();
        assert_eq!(back.attachments(), [bytes::Bytes::from_static(&[1, 2, 3])]);
    });
}

/// The namespace budget: a connection past `max_namespaces` is refused the next namespace
/// with a CONNECT_ERROR, and its other sockets go on.
#[test]
fn a_connection_past_its_namespace_budget_is_refused_and_goes_on() {
    let (rt, io) = common::setup_with(volley::builder().max_namespaces(2));
    let _dynamic = io.dynamic_ns(|n| n.starts_with("/room-"), true);
    io.ns("/").on("ping", || async { "pong" });
    rt.block_on(async {
        let mut root = TestClient::connect(&io, "/", None).await.unwrap();
        let first = root.join("/room-1", None).await.unwrap();
        let refused = root.join("/room-2", None).await.err().map(|e| e.message);
        assert_eq!(refused.as_deref(), Some("Too many namespaces"));
        let pong: String = root.emit_with_ack("ping", &()).await.unwrap();
        assert_eq!(pong, "pong");
        first.disconnect();
        drop(first);
        root.join("/room-2", None).await.unwrap();
    });
}

/// The test client over HTTP long-polling: the same calls as over a WebSocket.
#[test]
fn the_test_client_speaks_long_polling_too() {
    let (rt, io) = setup();
    io.ns("/")
        .on("sum", |Data((a, b)): Data<(i64, i64)>| async move { a + b })
        .on(
            "echo",
            |s: Socket, volley::Bin(parts): volley::Bin| async move {
                s.emit_payload("echoed", volley::Payload::new().bin(parts.concat()));
            },
        )
        .on("ask", |s: Socket| async move {
            let answer: Result<String, _> = s.emit_with_ack("question", &"?").await;
            let _ = s.emit("answered", &answer.unwrap_or_default());
        });
    rt.block_on(async {
        let options = ConnectOptions::new().transport(volley::testing::TransportKind::Polling);
        let mut c = TestClient::connect_with(&io, "/", options).await.unwrap();
        assert_eq!(
            c.open_packet().unwrap()["upgrades"],
            json!(["websocket"]),
            "a polling handshake"
        );
        let sum: i64 = c.emit_with_ack("sum", &(2, 40)).await.unwrap();
        assert_eq!(sum, 42);
        c.emit_payload("echo", volley::Payload::new().bin(vec![1u8, 2, 3]));
        let ev = c.recv().await.unwrap();
        assert_eq!(
            (ev.event.as_str(), ev.payload.attachments()),
            ("echoed", &[bytes::Bytes::from_static(&[1, 2, 3])][..])
        );
        c.emit("ask", &());
        let q = c.recv().await.unwrap();
        assert_eq!(q.event, "question");
        c.ack(q.ack.unwrap(), &"forty-two");
        let a = c.recv().await.unwrap();
        assert_eq!(
            (a.event.as_str(), a.data::<String>().unwrap()),
            ("answered", "forty-two".to_owned())
        );
        // The heartbeat goes on over polling.
        rt.sleep(Duration::from_secs(120)).await;
        assert!(c.pings_received() >= 4);
        let sum: i64 = c.emit_with_ack("sum", &(1, 1)).await.unwrap();
        assert_eq!(sum, 2);
        c.disconnect();
        rt.sleep(SETTLE).await;
        assert_eq!(io.socket_count().await, 0);
    });
}
