//! Connection middleware (onion order, refusals, auth, socket data, handshake) and packet
//! middleware (global, namespace, per event; rewrite, drop, reject).

mod common;

use common::{Log, setup};
use serde::Deserialize;
use serde_json::json;
use std::time::Duration;
use volley::runtime::Runtime as _;
use volley::testing::{ConnectOptions, TestClient};
use volley::{
    ConnectError, Data, DisconnectReason, EventName, Extension, IncomingEvent, PacketFlow, Payload,
    Socket,
};

#[test]
fn connection_middleware_runs_global_first_and_unwinds_like_an_onion_at_disconnect() {
    let (rt, io) = setup();
    let log = Log::new();
    let (l1, l2, l3, l4) = (log.clone(), log.clone(), log.clone(), log.clone());
    io.use_connect(move |ctx, next| {
        let l = l1.clone();
        async move {
            l.push("global in");
            let r = next.run(ctx).await;
            l.push("global out");
            r
        }
    });
    let chat = io.ns("/chat");
    chat.use_connect(move |ctx, next| {
        let l = l2.clone();
        async move {
            l.push("ns1 in");
            let r = next.run(ctx).await;
            l.push("ns1 out");
            r
        }
    })
    .use_connect(move |ctx, next| {
        let l = l3.clone();
        async move {
            l.push("ns2 in");
            assert!(ctx.socket().is_none());
            let r = next.run(ctx.clone()).await;
            // After `next`, the socket that was accepted (now gone).
            let s = ctx.socket().expect("accepted");
            l.push(format!("ns2 out connected={}", s.connected()));
            r
        }
    })
    .on_connection(move |_s: Socket| {
        let l = l4.clone();
        async move { l.push("connection") }
    });
    let l5 = log.clone();
    chat.on_disconnect(move |_s: Socket, r: DisconnectReason| {
        let l = l5.clone();
        async move { l.push(format!("disconnect {r}")) }
    });
    rt.block_on(async {
        let c = TestClient::connect(&io, "/chat", None).await.unwrap();
        assert_eq!(io.ns("/chat").socket_count().await, 1);
        assert_eq!(
            log.take(),
            ["global in", "ns1 in", "ns2 in", "connection"],
            "middleware order, then the connection handler"
        );
        c.disconnect();
        rt.sleep(common::SETTLE).await;
    });
    let entries = log.take();
    // The after-code runs innermost first; the disconnect handler runs beside it.
    let outs: Vec<&String> = entries.iter().filter(|e| e.contains("out")).collect();
    assert_eq!(
        outs,
        ["ns2 out connected=false", "ns1 out", "global out"],
        "{entries:?}"
    );
    assert!(entries.contains(&"disconnect client namespace disconnect".to_owned()));
}

#[test]
fn a_refusal_reaches_the_client_with_message_and_data_and_stops_the_chain() {
    let (rt, io) = setup();
    let log = Log::new();
    let (l1, l2) = (log.clone(), log.clone());
    io.use_connect(move |ctx, next| {
        let l = l1.clone();
        async move {
            l.push("global");
            if ctx.auth()["token"] != json!("secret") {
                return Err(ConnectError::new("not authorized").with_data(json!({"code": 401})));
            }
            next.run(ctx).await
        }
    });
    io.ns("/").use_connect(move |ctx, next| {
        let l = l2.clone();
        async move {
            l.push("ns");
            next.run(ctx).await
        }
    });
    rt.block_on(async {
        let err = TestClient::connect(&io, "/", Some(json!({"token": "nope"})))
            .await
            .unwrap_err();
        assert_eq!(err.message, "not authorized");
        assert_eq!(err.data, Some(json!({"code": 401})));
        assert_eq!(log.take(), ["global"]);
        // A refusal without data, and one from a string.
        let ok = TestClient::connect(&io, "/", Some(json!({"token": "secret"}))).await;
        assert!(ok.is_ok());
        assert_eq!(log.take(), ["global", "ns"]);
        assert_eq!(io.socket_count().await, 1);
    });
}

#[test]
fn refusals_from_strings_and_a_chain_that_never_calls_next() {
    let (rt, io) = setup();
    io.ns("/a")
        .use_connect(|_ctx, _next| async move { Err("plain".into()) });
    io.ns("/b").use_connect(|_ctx, _next| async move { Ok(()) });
    rt.block_on(async {
        let err = TestClient::connect(&io, "/a", None).await.unwrap_err();
        assert_eq!(err, ConnectError::new("plain"));
        let err = TestClient::connect(&io, "/b", None).await.unwrap_err();
        assert_eq!(err.message, "connection refused");
        assert_eq!(io.socket_count().await, 0);
    });
}

#[derive(Debug, Deserialize)]
struct Auth {
    token: String,
    user: String,
}

#[derive(Debug, Clone, PartialEq)]
struct User(String);

#[test]
fn auth_and_socket_data_from_middleware_are_visible_to_handlers() {
    let (rt, io) = setup();
    io.ns("/")
        .use_connect(|ctx, next| async move {
            let auth: Auth = ctx
                .auth_as()
                .map_err(|e| ConnectError::new(format!("bad auth: {e}")))?;
            if auth.token != "t" {
                return Err(ConnectError::new("bad token"));
            }
            ctx.data().insert(User(auth.user));
            next.run(ctx).await
        })
        .on(
            "whoami",
            |s: Socket, Extension(u): Extension<User>| async move {
                let from_data = s.data().get::<User>().map(|u| u.0);
                (u.0, from_data, s.handshake().auth().clone())
            },
        );
    rt.block_on(async {
        let err = TestClient::connect(&io, "/", None).await.unwrap_err();
        assert!(err.message.starts_with("bad auth"), "{err:?}");
        let err = TestClient::connect(&io, "/", Some(json!({"token": "x", "user": "u"})))
            .await
            .unwrap_err();
        assert_eq!(err.message, "bad token");
        let auth = json!({"token": "t", "user": "bob"});
        let mut c = TestClient::connect(&io, "/", Some(auth.clone()))
            .await
            .unwrap();
        let r = c.ack_payload("whoami", Payload::new()).await.unwrap();
        assert_eq!(r.args(), [json!("bob"), json!("bob"), auth]);
    });
}

#[test]
fn the_handshake_carries_headers_query_and_url() {
    let (rt, io) = setup();
    let seen = Log::new();
    let s2 = seen.clone();
    io.ns("/").use_connect(move |ctx, next| {
        let s = s2.clone();
        async move {
            let h = ctx.handshake();
            s.push(format!("header {:?}", h.header("x-token")));
            s.push(format!("query {:?}", h.query("room")));
            s.push(format!("cookie {:?}", h.cookie("sid")));
            s.push(format!("url {}", h.url()));
            s.push(format!("ns {}", h.namespace()));
            next.run(ctx).await
        }
    });
    io.ns("/")
        .on("q", |s: Socket, Data(name): Data<String>| async move {
            s.handshake().query(&name)
        });
    rt.block_on(async {
        let options = ConnectOptions::new()
            .query("room", "a b&c")
            .query("lang", "fr")
            .header("X-Token", "abc")
            .header("Cookie", "theme=dark; sid=42");
        let mut c = TestClient::connect_with(&io, "/", options).await.unwrap();
        let r: Option<String> = c.emit_with_ack("q", "lang").await.unwrap();
        assert_eq!(r.as_deref(), Some("fr"));
        let r: Option<String> = c.emit_with_ack("q", "nope").await.unwrap();
        assert_eq!(r, None);
    });
    assert_eq!(
        seen.entries(),
        [
            "header Some(\"abc\")",
            "query Some(\"a b&c\")",
            "cookie Some(\"42\")",
            "url /socket.io/?EIO=4&transport=websocket&room=a%20b%26c&lang=fr",
            "ns /",
        ]
    );
}

#[test]
fn packet_middleware_runs_global_then_namespace_then_per_event() {
    let (rt, io) = setup();
    let log = Log::new();
    let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
    io.use_packet(move |_s, ev: IncomingEvent| {
        let l = l1.clone();
        async move {
            l.push(format!("global {}", ev.name));
            PacketFlow::Continue(ev)
        }
    });
    let ns = io.ns("/");
    ns.use_packet(move |_s, ev: IncomingEvent| {
        let l = l2.clone();
        async move {
            l.push(format!("ns {}", ev.name));
            PacketFlow::Continue(ev)
        }
    });
    ns.on("guarded", |Data(n): Data<i64>| async move { n })
        .with(move |_s, ev: IncomingEvent| {
            let l = l3.clone();
            async move {
                l.push(format!("event {}", ev.name));
                PacketFlow::Continue(ev)
            }
        });
    ns.on("plain", || async { "plain" });
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let r: i64 = c.emit_with_ack("guarded", &1).await.unwrap();
        assert_eq!(r, 1);
        let r: String = c.emit_with_ack("plain", &()).await.unwrap();
        assert_eq!(r, "plain");
    });
    assert_eq!(
        log.entries(),
        [
            "global guarded",
            "ns guarded",
            "event guarded",
            "global plain",
            "ns plain"
        ]
    );
}

#[test]
fn packet_middleware_rewrites_drops_and_rejects() {
    let (rt, io) = setup();
    let errors = Log::new();
    let e = errors.clone();
    let ns = io.ns("/");
    ns.use_packet(|_s, mut ev: IncomingEvent| async move {
        match ev.name.as_str() {
            "double" => {
                let n: i64 = ev.payload.deserialize().unwrap_or_default();
                ev.payload = Payload::of(&(n * 2)).unwrap();
                PacketFlow::Continue(ev)
            }
            "secret" => PacketFlow::Drop,
            "forbidden" => PacketFlow::Reject("forbidden event".into()),
            _ => PacketFlow::Continue(ev),
        }
    })
    .on_error(move |_s: Socket, m: String| {
        let e = e.clone();
        async move { e.push(m) }
    });
    ns.on("double", |Data(n): Data<i64>| async move { n });
    ns.on("secret", || async { "leaked" });
    ns.on("forbidden", || async { "leaked" });
    ns.on("limited", || async { "ok" })
        .with(|_s, _ev| async move { PacketFlow::Reject("too many".into()) });
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let r: i64 = c.emit_with_ack("double", &21).await.unwrap();
        assert_eq!(r, 42);
        for event in ["secret", "forbidden", "limited"] {
            let fut = c.ack_future(event, Payload::new());
            assert!(rt.timeout(Duration::from_secs(5), fut).await.is_none());
        }
    });
    assert_eq!(errors.entries(), ["forbidden event", "too many"]);
}

#[test]
fn packet_middleware_may_rename_an_event_to_another_route() {
    let (rt, io) = setup();
    let ns = io.ns("/");
    ns.use_packet(|_s, mut ev: IncomingEvent| async move {
        if ev.name == "old" {
            ev.name = "new".into();
        }
        PacketFlow::Continue(ev)
    });
    ns.on("old", || async { "old handler" });
    ns.on("new", |EventName(n): EventName| async move {
        format!("new handler ({n})")
    });
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let r: String = c.emit_with_ack("old", &()).await.unwrap();
        assert_eq!(r, "new handler (new)");
    });
}

#[derive(Debug, Clone, PartialEq)]
struct Secret(&'static str);

#[test]
fn connection_middleware_sees_the_server_state() {
    let (rt, io) = common::setup_with(volley::builder().state(Secret("s3")));
    assert_eq!(io.state().get::<Secret>(), Some(Secret("s3")));
    io.use_connect(|ctx, next| async move {
        match ctx.state::<Secret>() {
            Some(Secret(s)) if ctx.auth()["key"] == json!(s) => next.run(ctx).await,
            _ => Err(ConnectError::new("wrong key")),
        }
    });
    rt.block_on(async {
        assert!(TestClient::connect(&io, "/", None).await.is_err());
        let ok = TestClient::connect(&io, "/", Some(json!({"key": "s3"}))).await;
        assert!(ok.is_ok());
    });
}

#[test]
fn the_client_address_comes_from_the_proxy_header_only_when_trusted() {
    let (rt, io) = setup();
    io.ns("/").on("addr", |s: Socket| async move {
        (s.handshake().address(true), s.handshake().address(false))
    });
    rt.block_on(async {
        let opts = ConnectOptions::new().header("X-Forwarded-For", "203.0.113.7, 10.0.0.1");
        let mut c = TestClient::connect_with(&io, "/", opts).await.unwrap();
        let r = c.ack_payload("addr", Payload::new()).await.unwrap();
        // In memory there is no TCP peer.
        assert_eq!(r.args(), [json!("203.0.113.7"), json!(null)]);
    });
}
