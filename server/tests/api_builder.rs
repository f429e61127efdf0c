//! Builder options as the client sees them on the wire: heartbeat, connect timeout, path,
//! payload limit, session ids and seeds.

mod common;

use common::{Log, SETTLE, setup_with};
use serde_json::json;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use volley::runtime::Runtime as _;
use volley::testing::{ConnectOptions, TestClient, TestRuntime};
use volley::{DisconnectReason, Socket};
use volley_core::Sid;
use volley_core::http::RequestHead;

#[test]
fn the_heartbeat_options_reach_the_client_and_pongs_keep_it_alive() {
    let builder = volley::builder()
        .ping_interval(Duration::from_secs(10))
        .ping_timeout(Duration::from_secs(5))
        .max_payload(5_000);
    let (rt, io) = setup_with(builder);
    let c = rt.block_on(TestClient::connect(&io, "/", None)).unwrap();
    let open = c.open_packet().expect("the handshake");
    assert_eq!(open["pingInterval"], json!(10_000));
    assert_eq!(open["pingTimeout"], json!(5_000));
    assert_eq!(open["maxPayload"], json!(5_000));
    assert_eq!(open["upgrades"], json!([]));
    assert_eq!(c.pings_received(), 0);
    rt.advance(Duration::from_millis(9_999));
    assert_eq!(c.pings_received(), 0);
    rt.advance(Duration::from_millis(1));
    assert_eq!(c.pings_received(), 1);
    // Many intervals later the client, which answers every ping, is still there.
    for n in 2..=50 {
        rt.advance(Duration::from_secs(10));
        assert_eq!(c.pings_received(), n);
    }
    assert_eq!(rt.block_on(io.socket_count()), 1);
    assert_eq!(c.disconnect_reason(), None);
}

#[test]
fn a_connection_that_joins_no_namespace_in_time_is_closed() {
    let builder = volley::builder().connect_timeout(Duration::from_secs(2));
    let (rt, io) = setup_with(builder);
    let rt2 = rt.clone();
    io.ns("/slow").use_connect(move |ctx, next| {
        let rt = rt2.clone();
        async move {
            // Longer than the connect timeout.
            rt.sleep(Duration::from_secs(5)).await;
            next.run(ctx).await
        }
    });
    rt.block_on(async {
        let start = rt.elapsed();
        let err = TestClient::connect(&io, "/slow", None).await.unwrap_err();
        assert_eq!(err.message, "transport close");
        assert_eq!(rt.elapsed() - start, Duration::from_secs(2));
        assert_eq!(io.client_count().await, 0);
        // A client that joins in time stays past the timeout.
        let _c = TestClient::connect(&io, "/", None).await.unwrap();
        rt.sleep(Duration::from_secs(10)).await;
        assert_eq!(io.socket_count().await, 1);
        assert_eq!(io.pending_ack_count().await, 0);
    });
}

#[test]
fn the_path_option_moves_the_endpoint() {
    let (rt, io) = setup_with(volley::builder().path("/custom"));
    assert_eq!(io.path(), "/custom/");
    rt.block_on(async {
        let err = TestClient::connect_with(&io, "/", ConnectOptions::new().path("/socket.io/"))
            .await
            .unwrap_err();
        assert!(err.message.starts_with("handshake failed"), "{err:?}");
        assert!(err.message.contains("404"), "{err:?}");
        let c = TestClient::connect(&io, "/", None).await.unwrap();
        assert_eq!(io.socket_count().await, 1);
        drop(c);
    });
}

#[test]
fn a_message_over_max_payload_closes_the_connection() {
    let (rt, io) = setup_with(volley::builder().max_payload(1_000));
    let log = Log::new();
    let l = log.clone();
    io.ns("/")
        .on("echo", |volley::Data(s): volley::Data<String>| async move {
            s.len()
        })
        .on_disconnect(move |_s: Socket, r: DisconnectReason| {
            let l = l.clone();
            async move { l.push(r.as_str()) }
        });
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let n: usize = c.emit_with_ack("echo", &"x".repeat(900)).await.unwrap();
        assert_eq!(n, 900);
        let r = c
            .emit_with_ack::<_, usize>("echo", &"x".repeat(2_000))
            .await;
        assert!(r.is_err(), "{r:?}");
        assert!(c.recv().await.is_none());
        rt.sleep(SETTLE).await;
        assert_eq!(io.client_count().await, 0);
    });
    // As the reference reports a WebSocket message over `maxPayload`.
    assert_eq!(log.entries(), ["transport error"]);
}

#[test]
fn a_custom_id_generator_names_the_sessions() {
    let rt = TestRuntime::new();
    let counter = AtomicU32::new(0);
    let io = volley::builder()
        .id_generator(move |head: &RequestHead| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let tag = head.query_param("tag").map(|t| t.into_owned());
            Sid::new(&format!("custom-{n}-{}", tag.unwrap_or_default())).unwrap()
        })
        .build(rt.clone());
    rt.block_on(async {
        let a = TestClient::connect(&io, "/", None).await.unwrap();
        let b = TestClient::connect_with(&io, "/", ConnectOptions::new().query("tag", "b"))
            .await
            .unwrap();
        assert_eq!(a.sid().as_deref(), Some("custom-0-"));
        assert_eq!(b.sid().as_deref(), Some("custom-1-b"));
        // Socket ids are not session ids.
        assert_ne!(a.id().to_string(), "custom-0-");
    });
}

/// The session and socket ids of three clients of a server seeded with `seed`.
fn ids_with_seed(seed: [u8; 32]) -> Vec<(String, String)> {
    let rt = TestRuntime::new();
    let io = volley::builder().seed(seed).build(rt.clone());
    io.ns("/chat");
    rt.block_on(async {
        let mut out = Vec::new();
        for nsp in ["/", "/chat", "/"] {
            let c = TestClient::connect(&io, nsp, None).await.unwrap();
            out.push((c.sid().unwrap(), c.id().to_string()));
        }
        out
    })
}

#[test]
fn a_seed_makes_ids_repeat() {
    let one = ids_with_seed([1; 32]);
    assert_eq!(one, ids_with_seed([1; 32]));
    let other = ids_with_seed([2; 32]);
    assert_ne!(one, other);
    for (sid, id) in &one {
        assert_ne!(sid, id);
    }
    let distinct: std::collections::BTreeSet<_> = one.iter().flat_map(|(a, b)| [a, b]).collect();
    assert_eq!(distinct.len(), 6);
    // Without a seed, ids come from the system's entropy.
    let rt = TestRuntime::new();
    let a = volley::builder().build(rt.clone());
    let b = volley::builder().build(rt.clone());
    let (ca, cb) = rt.block_on(async {
        (
            TestClient::connect(&a, "/", None).await.unwrap(),
            TestClient::connect(&b, "/", None).await.unwrap(),
        )
    });
    assert_ne!(ca.sid(), cb.sid());
}

#[test]
fn engine_and_namespace_limits_reach_the_machine_config() {
    let builder = volley::builder()
        .close_timeout(Duration::from_millis(1_500))
        .max_packets_per_poll(3)
        .max_namespaces(5);
    let config = builder.sio_config();
    assert_eq!(config.engine.close_timeout, Duration::from_millis(1_500));
    assert_eq!(config.engine.max_packets_per_poll, 3);
    assert_eq!(config.max_namespaces, 5);
    let defaults = volley::builder();
    assert_eq!(defaults.sio_config().max_namespaces, 64);
    assert_eq!(defaults.sio_config().engine.max_packets_per_poll, 16);
}
