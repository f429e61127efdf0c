//! A panic in application code is contained: reported through `Io::on_error` with the
//! socket, the event and the message, and the socket disconnected from the server's side
//! (`41`, `disconnect` handlers with "server namespace disconnect"), leaving nothing of it
//! behind; the server and the other sockets go on.

mod common;

use common::{Log, SETTLE, setup, setup_with};
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use volley::testing::{TestClient, TestRuntime};
use volley::{
    AckSender, Data, DisconnectReason, HandlerPanic, Io, PacketFlow, PanicPlace, ServerError,
    Socket,
};

/// The panics `io` reported, in order.
#[derive(Clone, Default)]
struct Reports(Arc<Mutex<Vec<HandlerPanic>>>);

impl Reports {
    fn watch(io: &Io<TestRuntime>) -> Self {
        let reports = Reports::default();
        let r = reports.clone();
        io.on_error(move |error: &ServerError| match error {
            ServerError::Panic(p) => r.0.lock().unwrap().push(p.clone()),
            other => panic!("unexpected error {other:?}"),
        });
        reports
    }

    fn all(&self) -> Vec<HandlerPanic> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The only report, checked against what is expected.
    fn single(&self, socket: Option<volley::SocketId>, event: &str, place: PanicPlace, msg: &str) {
        let all = self.all();
        assert_eq!(all.len(), 1, "{all:?}");
        let p = &all[0];
        assert_eq!(p.socket, socket);
        assert_eq!(p.namespace, "/");
        assert_eq!(p.event, event);
        assert_eq!(p.place, place);
        assert_eq!(p.message, msg);
    }
}

/// Records the disconnect reasons `io`'s `/` sockets leave with.
fn disconnects(io: &Io<TestRuntime>) -> Log {
    let log = Log::new();
    let l = log.clone();
    io.ns("/")
        .on_disconnect(move |s: Socket, reason: DisconnectReason| {
            let l = l.clone();
            async move { l.push(format!("{} {}", s.id(), reason.as_str())) }
        });
    log
}

/// After `victim`'s panic: it was told `41` and is gone, its `disconnect` handler ran with the
/// server's reason, a broadcast reaches `other` only, and `other` is still served.
async fn victim_is_gone(
    io: &Io<TestRuntime>,
    victim: &mut TestClient,
    other: &mut TestClient,
    left: &Log,
) {
    assert!(
        victim.recv().await.is_none(),
        "the victim is still receiving"
    );
    assert_eq!(
        victim.disconnect_reason().as_deref(),
        Some("io server disconnect")
    );
    assert_eq!(
        left.entries(),
        [format!("{} server namespace disconnect", victim.id())]
    );
    assert_eq!(io.socket_count().await, 1);
    io.emit("news", &1).unwrap();
    assert_eq!(other.recv().await.unwrap().event, "news");
    let echoed: u32 = other.emit_with_ack("ok", &7).await.unwrap();
    assert_eq!(echoed, 7);
}

/// Panics with `message`, as a function returning `()` (a handler ending in `panic!` would
/// return `!`).
fn boom(message: &str) {
    panic!("{message}");
}

fn ok_route(io: &Io<TestRuntime>) {
    io.ns("/").on("ok", |Data(n): Data<u32>| async move { n });
}

#[test]
fn a_panic_before_the_first_await_disconnects_the_socket() {
    let (rt, io) = setup();
    let reports = Reports::watch(&io);
    let left = disconnects(&io);
    ok_route(&io);
    io.ns("/").on("boom", |Data(n): Data<u32>| async move {
        if n == 1 {
            panic!("inline panic on purpose");
        }
        n
    });
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let mut b = TestClient::connect(&io, "/", None).await.unwrap();
        let r: u32 = a.emit_with_ack("boom", &5).await.unwrap();
        assert_eq!(r, 5);
        a.emit("boom", &1);
        victim_is_gone(&io, &mut a, &mut b, &left).await;
        reports.single(
            Some(a.id()),
            "boom",
            PanicPlace::Handler,
            "inline panic on purpose",
        );
    });
}

#[test]
fn a_panic_after_an_await_disconnects_the_socket() {
    let (rt, io) = setup();
    let reports = Reports::watch(&io);
    let left = disconnects(&io);
    ok_route(&io);
    io.ns("/").on("boom", |s: Socket| async move {
        // A round trip to the machine: the handler goes on on the socket's task.
        let rooms = s.rooms().await;
        boom(&format!("panic after an await, in {} rooms", rooms.len()));
    });
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let mut b = TestClient::connect(&io, "/", None).await.unwrap();
        a.emit("boom", &());
        victim_is_gone(&io, &mut a, &mut b, &left).await;
        reports.single(
            Some(a.id()),
            "boom",
            PanicPlace::Handler,
            "panic after an await, in 1 rooms",
        );
    });
}

#[test]
fn a_panic_on_the_sockets_task_from_the_start_disconnects_the_socket() {
    let (rt, io) = setup_with(volley::builder().inline_handlers(false));
    let reports = Reports::watch(&io);
    let left = disconnects(&io);
    ok_route(&io);
    io.ns("/").on("boom", |Data(s): Data<String>| async move {
        // A `String` payload, as `panic!` with arguments makes.
        if !s.is_empty() {
            std::panic::panic_any(s);
        }
    });
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let mut b = TestClient::connect(&io, "/", None).await.unwrap();
        a.emit("boom", "a String payload");
        victim_is_gone(&io, &mut a, &mut b, &left).await;
        reports.single(
            Some(a.id()),
            "boom",
            PanicPlace::Handler,
            "a String payload",
        );
    });
}

#[test]
fn a_panic_in_a_handler_asked_for_an_ack_fails_the_clients_ack() {
    let (rt, io) = setup();
    let reports = Reports::watch(&io);
    let left = disconnects(&io);
    ok_route(&io);
    io.ns("/").on("ask", |ack: AckSender| async move {
        assert!(ack.requested());
        boom("no answer for you");
    });
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let mut b = TestClient::connect(&io, "/", None).await.unwrap();
        let answer = a.emit_with_ack::<_, u32>("ask", &()).await;
        assert!(answer.is_err(), "{answer:?}");
        victim_is_gone(&io, &mut a, &mut b, &left).await;
        reports.single(
            Some(a.id()),
            "ask",
            PanicPlace::Handler,
            "no answer for you",
        );
    });
}

#[test]
fn a_panic_where_the_clients_acknowledgement_is_handled_disconnects_the_socket() {
    let (rt, io) = setup();
    let reports = Reports::watch(&io);
    let left = disconnects(&io);
    ok_route(&io);
    io.ns("/").on("start", |s: Socket| async move {
        let answer: u32 = s.emit_with_ack("question", &()).await.unwrap();
        boom(&format!("bad answer {answer}"));
    });
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let mut b = TestClient::connect(&io, "/", None).await.unwrap();
        a.emit("start", &());
        let question = a.recv().await.unwrap();
        assert_eq!(question.event, "question");
        a.ack(question.ack.expect("an ack is asked"), &42);
        victim_is_gone(&io, &mut a, &mut b, &left).await;
        reports.single(Some(a.id()), "start", PanicPlace::Handler, "bad answer 42");
    });
}

#[test]
fn a_panic_in_a_connection_handler_disconnects_the_socket() {
    let (rt, io) = setup();
    let reports = Reports::watch(&io);
    let left = disconnects(&io);
    ok_route(&io);
    let seen = Arc::new(Mutex::new(0u32));
    let s2 = seen.clone();
    io.ns("/").on_connection(move |_: Socket| {
        let seen = s2.clone();
        async move {
            let n = {
                let mut n = seen.lock().unwrap();
                *n += 1;
                *n
            };
            if n == 1 {
                panic!("connection handler panic");
            }
        }
    });
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let mut b = TestClient::connect(&io, "/", None).await.unwrap();
        victim_is_gone(&io, &mut a, &mut b, &left).await;
        reports.single(
            Some(a.id()),
            "connection",
            PanicPlace::Connection,
            "connection handler panic",
        );
    });
}

#[test]
fn a_panic_in_connection_middleware_refuses_the_connection() {
    let (rt, io) = setup();
    let reports = Reports::watch(&io);
    ok_route(&io);
    io.use_connect(|ctx, next| async move {
        if ctx.auth().get("boom").is_some() {
            panic!("middleware panic");
        }
        next.run(ctx).await
    });
    rt.block_on(async {
        let refused = TestClient::connect(&io, "/", Some(serde_json::json!({"boom": true})))
            .await
            .unwrap_err();
        assert_eq!(refused.message, "server error");
        reports.single(
            None,
            "connection",
            PanicPlace::ConnectMiddleware,
            "middleware panic",
        );
        let mut b = TestClient::connect(&io, "/", None).await.unwrap();
        let r: u32 = b.emit_with_ack("ok", &3).await.unwrap();
        assert_eq!(r, 3);
        assert_eq!(io.socket_count().await, 1);
    });
}

#[test]
fn a_panic_in_connection_middleware_after_accepting_disconnects_the_socket() {
    let (rt, io) = setup();
    let reports = Reports::watch(&io);
    let left = disconnects(&io);
    ok_route(&io);
    io.use_connect(|ctx, next| async move {
        if ctx.auth().get("boom").is_some() {
            // The innermost `next` resolves at disconnect; run the rest of the chain
            // beside the middleware instead, and panic once the socket is accepted.
            let accepted = ctx.clone();
            let mut chain = Box::pin(next.run(ctx));
            return futures::future::poll_fn(move |cx| {
                let poll = chain.as_mut().poll(cx);
                if accepted.socket().is_some() {
                    boom("panic with the socket accepted");
                }
                poll
            })
            .await;
        }
        next.run(ctx).await
    });
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", Some(serde_json::json!({"boom": true})))
            .await
            .unwrap();
        let mut b = TestClient::connect(&io, "/", None).await.unwrap();
        victim_is_gone(&io, &mut a, &mut b, &left).await;
        reports.single(
            Some(a.id()),
            "connection",
            PanicPlace::ConnectMiddleware,
            "panic with the socket accepted",
        );
    });
}

#[test]
fn a_panic_in_packet_middleware_disconnects_the_socket() {
    let (rt, io) = setup();
    let reports = Reports::watch(&io);
    let left = disconnects(&io);
    ok_route(&io);
    io.use_packet(|_s, ev| async move {
        if ev.name == "boom" {
            panic!("packet middleware panic");
        }
        PacketFlow::Continue(ev)
    });
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let mut b = TestClient::connect(&io, "/", None).await.unwrap();
        a.emit("boom", &());
        victim_is_gone(&io, &mut a, &mut b, &left).await;
        reports.single(
            Some(a.id()),
            "boom",
            PanicPlace::PacketMiddleware,
            "packet middleware panic",
        );
    });
}

#[test]
fn a_panic_in_an_any_handler_disconnects_the_socket() {
    let (rt, io) = setup();
    let reports = Reports::watch(&io);
    let left = disconnects(&io);
    ok_route(&io);
    io.ns("/")
        .on_any(|_s: Socket, name: String, _p| async move {
            if name == "boom" {
                panic!("any handler panic");
            }
        });
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let mut b = TestClient::connect(&io, "/", None).await.unwrap();
        a.emit("boom", &());
        victim_is_gone(&io, &mut a, &mut b, &left).await;
        reports.single(Some(a.id()), "boom", PanicPlace::Any, "any handler panic");
    });
}

#[test]
fn a_panic_in_an_outgoing_hook_disconnects_the_recipient_and_the_server_goes_on() {
    let (rt, io) = setup();
    let reports = Reports::watch(&io);
    let left = disconnects(&io);
    ok_route(&io);
    let victim = Arc::new(Mutex::new(None));
    let v = victim.clone();
    io.ns("/")
        .on_any_outgoing(move |s: &Socket, event: &str, _p| {
            if event == "trap" && Some(s.id()) == *v.lock().unwrap() {
                panic!("outgoing hook panic");
            }
        });
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let mut b = TestClient::connect(&io, "/", None).await.unwrap();
        *victim.lock().unwrap() = Some(a.id());
        io.emit("trap", &()).unwrap();
        assert_eq!(b.recv().await.unwrap().event, "trap");
        assert!(a.recv().await.is_some_and(|r| r.event == "trap"));
        victim_is_gone(&io, &mut a, &mut b, &left).await;
        reports.single(
            Some(a.id()),
            "trap",
            PanicPlace::Outgoing,
            "outgoing hook panic",
        );
    });
}

#[test]
fn a_panic_in_a_disconnect_handler_is_reported_and_the_server_goes_on() {
    let (rt, io) = setup();
    let reports = Reports::watch(&io);
    ok_route(&io);
    io.ns("/")
        .on_disconnect(|_s: Socket, _r: DisconnectReason| async move {
            boom("disconnect handler panic");
        });
    rt.block_on(async {
        let a = TestClient::connect(&io, "/", None).await.unwrap();
        let mut b = TestClient::connect(&io, "/", None).await.unwrap();
        let a_id = a.id();
        a.disconnect();
        let _ = rt.timeout(SETTLE, futures::future::pending::<()>()).await;
        reports.single(
            Some(a_id),
            "disconnect",
            PanicPlace::Disconnect,
            "disconnect handler panic",
        );
        assert_eq!(io.socket_count().await, 1);
        let r: u32 = b.emit_with_ack("ok", &9).await.unwrap();
        assert_eq!(r, 9);
    });
}

#[test]
fn a_panicking_error_hook_is_contained_too() {
    let (rt, io) = setup();
    io.on_error(|_| panic!("the error hook panics as well"));
    let reports = Reports::watch(&io);
    let left = disconnects(&io);
    ok_route(&io);
    io.ns("/").on("boom", |_s: Socket| async move {
        boom("first");
    });
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let mut b = TestClient::connect(&io, "/", None).await.unwrap();
        a.emit("boom", &());
        victim_is_gone(&io, &mut a, &mut b, &left).await;
        reports.single(Some(a.id()), "boom", PanicPlace::Handler, "first");
    });
}

#[test]
fn a_panic_in_a_server_side_event_handler_is_reported_and_the_node_goes_on() {
    let rt = TestRuntime::new();
    let cluster = volley::adapter::MemoryCluster::new();
    let a = volley::builder()
        .seed([1; 32])
        .adapter(cluster.adapter())
        .build(rt.clone());
    let b = volley::builder()
        .seed([2; 32])
        .adapter(cluster.adapter())
        .build(rt.clone());
    let reports = Reports::watch(&b);
    ok_route(&b);
    b.ns("/")
        .on_server_event("boom", |_p: volley::Payload| async move {
            boom("server-side event panic");
        });
    rt.block_on(async {
        let mut client = TestClient::connect(&b, "/", None).await.unwrap();
        a.server_side_emit("boom", &()).unwrap();
        let _ = rt.timeout(SETTLE, futures::future::pending::<()>()).await;
        reports.single(
            None,
            "boom",
            PanicPlace::ServerEvent,
            "server-side event panic",
        );
        let r: u32 = client.emit_with_ack("ok", &4).await.unwrap();
        assert_eq!(r, 4);
        assert!(client.try_recv().is_none());
    });
}
