//! Node's listener API: several listeners per event, listeners and middleware added to one
//! socket (`socket.on`/`once`/`off`, `socket.use`), catch-all listeners with their prepended
//! and outgoing forms, and the `new_namespace` hook.

mod common;

use common::{Log, SETTLE, setup};
use serde_json::json;
use std::time::Duration;
use volley::runtime::Runtime as _;
use volley::testing::TestClient;
use volley::{Data, IncomingEvent, ListenerId, PacketFlow, Payload, Socket};

#[test]
fn every_listener_of_an_event_runs_in_registration_order() {
    let (rt, io) = setup();
    let log = Log::new();
    let (a, b, c) = (log.clone(), log.clone(), log.clone());
    io.ns("/")
        .on("greet", move |Data(n): Data<String>| {
            let a = a.clone();
            async move {
                a.push(format!("first {n}"));
                "from first"
            }
        })
        .on("greet", move |Data(n): Data<String>| {
            let b = b.clone();
            async move {
                b.push(format!("second {n}"));
                "from second"
            }
        })
        .on("other", move || {
            let c = c.clone();
            async move { c.push("other") }
        });
    rt.block_on(async {
        let mut client = TestClient::connect(&io, "/", None).await.unwrap();
        // The first reply acknowledges; the second's is dropped.
        let r: String = client.emit_with_ack("greet", "ann").await.unwrap();
        assert_eq!(r, "from first");
        rt.sleep(SETTLE).await;
        assert!(
            client.try_recv().is_none(),
            "nothing else reaches the client"
        );
    });
    assert_eq!(log.entries(), ["first ann", "second ann"]);
}

#[test]
fn the_first_listener_to_return_acknowledges_the_others_are_ignored() {
    let (rt, io) = setup();
    let log = Log::new();
    let (a, b) = (log.clone(), log.clone());
    let slow_rt = rt.clone();
    io.ns("/")
        .on("ask", move || {
            let (a, rt) = (a.clone(), slow_rt.clone());
            async move {
                rt.sleep(Duration::from_secs(1)).await;
                a.push("slow done");
                "slow"
            }
        })
        .on("ask", move || {
            let b = b.clone();
            async move {
                b.push("fast done");
                "fast"
            }
        });
    rt.block_on(async {
        let mut client = TestClient::connect(&io, "/", None).await.unwrap();
        let r: String = client.emit_with_ack("ask", &()).await.unwrap();
        assert_eq!(r, "fast");
        rt.sleep(Duration::from_secs(2)).await;
        assert!(client.try_recv().is_none(), "the slow reply is not sent");
    });
    assert_eq!(log.entries(), ["fast done", "slow done"]);
}

#[test]
fn route_refinements_apply_to_the_listener_they_were_chained_on() {
    let (rt, io) = setup();
    let log = Log::new();
    let (a, b, c) = (log.clone(), log.clone(), log.clone());
    io.ns("/")
        .on("msg", move |Data(n): Data<i64>| {
            let a = a.clone();
            async move {
                a.push("emitting listener");
                n + 1
            }
        })
        .emit_result("msg:result")
        .on("msg", move |Data(n): Data<i64>| {
            let b = b.clone();
            async move {
                b.push("guarded listener");
                n * 100
            }
        })
        .with(|_s, ev: IncomingEvent| async move {
            // Drops the event for this listener only.
            let n: i64 = ev.payload.deserialize().unwrap_or_default();
            if n > 10 {
                PacketFlow::Drop
            } else {
                PacketFlow::Continue(ev)
            }
        })
        .on("msg", move || {
            let c = c.clone();
            async move { c.push("plain listener") }
        });
    rt.block_on(async {
        let mut client = TestClient::connect(&io, "/", None).await.unwrap();
        // No ack asked: the first listener's result is emitted; the second's has nowhere to
        // go (its route acknowledges only).
        client.emit("msg", &50);
        let got = client.recv().await.unwrap();
        assert_eq!(got.event, "msg:result");
        assert_eq!(got.data::<i64>().unwrap(), 51);
        rt.sleep(SETTLE).await;
        assert_eq!(log.take(), ["emitting listener", "plain listener"]);
        // With an ack: the first listener acknowledges; the second runs (not dropped) and
        // its reply is ignored.
        let r: i64 = client.emit_with_ack("msg", &2).await.unwrap();
        assert_eq!(r, 3);
        rt.sleep(SETTLE).await;
        assert!(client.try_recv().is_none());
    });
    assert_eq!(
        log.entries(),
        ["emitting listener", "guarded listener", "plain listener"]
    );
}

#[test]
fn socket_listeners_added_in_a_connection_handler_serve_that_socket_only() {
    let (rt, io) = setup();
    let log = Log::new();
    let l = log.clone();
    let ns = io.ns("/");
    ns.on_connection(move |s: Socket| {
        let l = l.clone();
        async move {
            let vip = s.handshake().auth()["vip"].as_bool().unwrap_or(false);
            if !vip {
                return;
            }
            let l1 = l.clone();
            s.on("perk", move |s: Socket, Data(n): Data<i64>| {
                let l = l1.clone();
                async move {
                    l.push(format!("perk {n} for {}", s.id()));
                    n * 2
                }
            });
            let l2 = l.clone();
            s.once("welcome", move || {
                let l = l2.clone();
                async move {
                    l.push("welcome");
                    "hello"
                }
            });
            s.on("stop", |s: Socket| async move {
                s.off("perk");
                "stopped"
            });
        }
    });
    // A namespace listener of the same event runs before the socket's own.
    let l = log.clone();
    ns.on("perk", move || {
        let l = l.clone();
        async move { l.push("namespace perk") }
    });
    rt.block_on(async {
        let mut vip = TestClient::connect(&io, "/", Some(json!({ "vip": true })))
            .await
            .unwrap();
        let mut plain = TestClient::connect(&io, "/", None).await.unwrap();
        let r: i64 = vip.emit_with_ack("perk", &21).await.unwrap();
        assert_eq!(r, 42);
        assert_eq!(
            log.take(),
            [
                "namespace perk".to_owned(),
                format!("perk 21 for {}", vip.id())
            ]
        );
        // The other socket has the namespace's listener only.
        let fut = plain.ack_future("perk", Payload::of(&1).unwrap());
        assert!(rt.timeout(Duration::from_secs(1), fut).await.is_none());
        assert_eq!(log.take(), ["namespace perk"]);
        // `once`: the second occurrence finds no listener.
        let r: String = vip.emit_with_ack("welcome", &()).await.unwrap();
        assert_eq!(r, "hello");
        let fut = vip.ack_future("welcome", Payload::new());
        assert!(rt.timeout(Duration::from_secs(1), fut).await.is_none());
        assert_eq!(log.take(), ["welcome"]);
        // `off` from inside a listener: the socket's own listener is gone.
        let r: String = vip.emit_with_ack("stop", &()).await.unwrap();
        assert_eq!(r, "stopped");
        let fut = vip.ack_future("perk", Payload::of(&1).unwrap());
        assert!(rt.timeout(Duration::from_secs(1), fut).await.is_none());
        assert_eq!(log.take(), ["namespace perk"]);
    });
}

#[test]
fn socket_disconnect_listeners_get_the_reason_and_listeners_are_dropped_at_disconnect() {
    let (rt, io) = setup();
    let log = Log::new();
    let l = log.clone();
    let kept = std::sync::Arc::new(std::sync::Mutex::new(None::<Socket>));
    let k = kept.clone();
    io.ns("/")
        .on_disconnect({
            let l = log.clone();
            move |_s: Socket, r| {
                let l = l.clone();
                async move { l.push(format!("namespace disconnect {r}")) }
            }
        })
        .on_connection(move |s: Socket| {
            let (l, k) = (l.clone(), k.clone());
            async move {
                let l1 = l.clone();
                s.on("disconnecting", move |Data(reason): Data<String>| {
                    let l = l1.clone();
                    async move { l.push(format!("own disconnecting {reason}")) }
                });
                let l2 = l.clone();
                s.on(
                    "disconnect",
                    move |s: Socket, Data(reason): Data<String>| {
                        let l = l2.clone();
                        async move {
                            l.push(format!("own disconnect {reason} {}", s.connected()));
                        }
                    },
                );
                s.on("echo", |Data(v): Data<String>| async move { v });
                *k.lock().unwrap() = Some(s);
            }
        });
    rt.block_on(async {
        let mut client = TestClient::connect(&io, "/", None).await.unwrap();
        let r: String = client.emit_with_ack("echo", "x").await.unwrap();
        assert_eq!(r, "x");
        let socket = kept.lock().unwrap().clone().unwrap();
        assert_eq!(socket.listener_count("echo"), 1);
        client.disconnect();
        rt.sleep(SETTLE).await;
        assert_eq!(socket.listener_count("echo"), 0, "dropped at disconnect");
        // Nothing is registered on a socket that has left.
        socket.on("echo", || async {});
        assert_eq!(socket.listener_count("echo"), 0);
    });
    assert_eq!(
        log.entries(),
        [
            "own disconnecting client namespace disconnect",
            "namespace disconnect client namespace disconnect",
            "own disconnect client namespace disconnect false",
        ]
    );
}

#[test]
fn socket_packet_middleware_runs_after_the_namespace_and_can_reject() {
    let (rt, io) = setup();
    let log = Log::new();
    let errors = Log::new();
    let (l1, l2, e) = (log.clone(), log.clone(), errors.clone());
    let ns = io.ns("/");
    ns.use_packet(move |_s, ev: IncomingEvent| {
        let l = l1.clone();
        async move {
            l.push(format!("namespace {}", ev.name));
            PacketFlow::Continue(ev)
        }
    })
    .on_connection(move |s: Socket| {
        let l = l2.clone();
        async move {
            s.use_packet(move |_s, mut ev: IncomingEvent| {
                let l = l.clone();
                async move {
                    l.push(format!("socket {}", ev.name));
                    match ev.name.as_str() {
                        "blocked" => PacketFlow::Reject("not for this socket".into()),
                        "loud" => {
                            let t: String = ev.payload.deserialize().unwrap_or_default();
                            ev.payload = Payload::of(&t.to_uppercase()).unwrap();
                            PacketFlow::Continue(ev)
                        }
                        _ => PacketFlow::Continue(ev),
                    }
                }
            });
        }
    })
    .on_error(move |_s: Socket, m: String| {
        let e = e.clone();
        async move { e.push(m) }
    })
    .on("loud", |Data(t): Data<String>| async move { t })
    .on("blocked", || async { "leaked" });
    rt.block_on(async {
        let mut client = TestClient::connect(&io, "/", None).await.unwrap();
        let r: String = client.emit_with_ack("loud", "hi").await.unwrap();
        assert_eq!(r, "HI");
        let fut = client.ack_future("blocked", Payload::new());
        assert!(rt.timeout(Duration::from_secs(1), fut).await.is_none());
    });
    assert_eq!(
        log.entries(),
        [
            "namespace loud",
            "socket loud",
            "namespace blocked",
            "socket blocked"
        ]
    );
    assert_eq!(errors.entries(), ["not for this socket"]);
}

#[test]
fn catch_all_listeners_run_in_prepend_order_and_come_off() {
    let (rt, io) = setup();
    let log = Log::new();
    let ids = std::sync::Arc::new(std::sync::Mutex::new(Vec::<ListenerId>::new()));
    let ns = io.ns("/");
    let any = |name: &'static str, log: &Log| {
        let log = log.clone();
        move |_s: Socket, event: String, _p: Payload| {
            let log = log.clone();
            async move { log.push(format!("{name} {event}")) }
        }
    };
    ns.on_any(any("ns-any", &log))
        .prepend_any(any("ns-pre", &log));
    let (l, i) = (log.clone(), ids.clone());
    ns.on_connection(move |s: Socket| {
        let (l, i) = (l.clone(), i.clone());
        async move {
            let back = s.on_any(any("s-any", &l));
            let front = s.prepend_any(any("s-pre", &l));
            let first = s.prepend_any(any("s-first", &l));
            i.lock().unwrap().extend([back, front, first]);
        }
    });
    ns.on("off", move |s: Socket, Data(which): Data<String>| {
        let ids = ids.clone();
        async move {
            let ids = ids.lock().unwrap().clone();
            match which.as_str() {
                "one" => s.off_any(Some(ids[1])),
                "all" => s.off_any(None),
                _ => {}
            }
        }
    });
    let off_ns = ns.clone();
    ns.on("off-ns", move || {
        let ns = off_ns.clone();
        async move {
            ns.off_any();
        }
    });
    rt.block_on(async {
        let client = TestClient::connect(&io, "/", None).await.unwrap();
        client.emit("unhandled", &());
        rt.sleep(SETTLE).await;
        assert_eq!(
            log.take(),
            [
                "s-first unhandled",
                "s-pre unhandled",
                "ns-pre unhandled",
                "ns-any unhandled",
                "s-any unhandled"
            ]
        );
        client.emit("off", "one");
        rt.sleep(SETTLE).await;
        log.take();
        client.emit("x", &());
        rt.sleep(SETTLE).await;
        assert_eq!(log.take(), ["s-first x", "ns-pre x", "ns-any x", "s-any x"]);
        client.emit("off-ns", &());
        rt.sleep(SETTLE).await;
        log.take();
        client.emit("y", &());
        rt.sleep(SETTLE).await;
        assert_eq!(log.take(), ["s-first y", "s-any y"]);
        client.emit("off", "all");
        rt.sleep(SETTLE).await;
        log.take();
        client.emit("z", &());
        rt.sleep(SETTLE).await;
        assert!(log.take().is_empty());
    });
}

#[test]
fn outgoing_catch_all_listeners_per_socket_and_per_namespace() {
    let (rt, io) = setup();
    let log = Log::new();
    let ns = io.ns("/");
    let hook = |name: &'static str, log: &Log| {
        let log = log.clone();
        move |_s: &Socket, event: &str, _p: &Payload| log.push(format!("{name} {event}"))
    };
    ns.on_any_outgoing(hook("ns-out", &log))
        .prepend_any_outgoing(hook("ns-pre", &log));
    let l = log.clone();
    ns.on_connection(move |s: Socket| {
        let l = l.clone();
        async move {
            if s.handshake().auth()["watch"].as_bool() != Some(true) {
                return;
            }
            s.on_any_outgoing(hook("s-out", &l));
            s.prepend_any_outgoing(hook("s-pre", &l));
        }
    });
    ns.on("quiet", |s: Socket| async move {
        s.off_any_outgoing(None);
    });
    let off_ns = ns.clone();
    ns.on("quiet-ns", move || {
        let ns = off_ns.clone();
        async move {
            ns.off_any_outgoing();
        }
    });
    rt.block_on(async {
        let mut watched = TestClient::connect(&io, "/", Some(json!({ "watch": true })))
            .await
            .unwrap();
        let mut other = TestClient::connect(&io, "/", None).await.unwrap();
        io.emit("news", &1).unwrap();
        watched.recv().await.unwrap();
        other.recv().await.unwrap();
        let mut entries = log.take();
        // One broadcast, seen once per socket: the watched one's hooks in order.
        let watched_order: Vec<_> = entries
            .iter()
            .filter(|e| e.starts_with("s-"))
            .cloned()
            .collect();
        assert_eq!(watched_order, ["s-pre news", "s-out news"]);
        entries.sort();
        assert_eq!(
            entries,
            [
                "ns-out news",
                "ns-out news",
                "ns-pre news",
                "ns-pre news",
                "s-out news",
                "s-pre news"
            ]
        );
        watched.emit("quiet", &());
        rt.sleep(SETTLE).await;
        io.emit("news", &2).unwrap();
        watched.recv().await.unwrap();
        other.recv().await.unwrap();
        assert_eq!(
            log.take(),
            ["ns-pre news", "ns-out news", "ns-pre news", "ns-out news"]
        );
        watched.emit("quiet-ns", &());
        rt.sleep(SETTLE).await;
        io.emit("news", &3).unwrap();
        watched.recv().await.unwrap();
        assert!(log.take().is_empty());
    });
}

#[test]
fn new_namespace_hooks_see_declared_and_dynamic_namespaces_once() {
    let (rt, io) = setup();
    let log = Log::new();
    let l = log.clone();
    io.on_new_namespace(move |ns| {
        l.push(ns.name().unwrap_or("?").to_owned());
        if ns.name() == Some("/declared") {
            // The hook may register on the new namespace.
            ns.on("who", || async { "declared" });
        }
    });
    io.ns("/");
    let declared = io.ns("/declared");
    io.ns("/declared");
    assert_eq!(log.take(), ["/declared"]);
    let family = io.dynamic_ns(|name| name.starts_with("/room-"), false);
    family.on("where", |s: Socket| async move { s.ns().to_owned() });
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/declared", None).await.unwrap();
        let r: String = c.emit_with_ack("who", &()).await.unwrap();
        assert_eq!(r, "declared");
        let mut a = TestClient::connect(&io, "/room-1", None).await.unwrap();
        let r: String = a.emit_with_ack("where", &()).await.unwrap();
        assert_eq!(r, "/room-1");
        let _b = TestClient::connect(&io, "/room-1", None).await.unwrap();
        let _c = TestClient::connect(&io, "/room-2", None).await.unwrap();
    });
    assert_eq!(log.entries(), ["/room-1", "/room-2"]);
    drop(declared);
}

#[test]
fn a_dynamic_child_removed_once_empty_is_new_again() {
    let (rt, io) = setup();
    let log = Log::new();
    let l = log.clone();
    io.on_new_namespace(move |ns| l.push(ns.name().unwrap_or("?").to_owned()));
    io.dynamic_ns(|name| name.starts_with("/tmp-"), true);
    rt.block_on(async {
        let c = TestClient::connect(&io, "/tmp-1", None).await.unwrap();
        c.disconnect();
        rt.sleep(SETTLE).await;
        let _c = TestClient::connect(&io, "/tmp-1", None).await.unwrap();
    });
    assert_eq!(log.entries(), ["/tmp-1", "/tmp-1"]);
}
