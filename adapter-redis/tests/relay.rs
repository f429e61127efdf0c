//! The relay of both adapters ([`RedisOptions::forward_sessions`]) against a redis-server of
//! the test's own: frames reach the node they are sent to in order and byte-exact, a node
//! nobody started (or one that closed) is reported as not reached, and the relay is only
//! offered when the option is on.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use tokio::time::timeout;
use volley::adapter::{Adapter, Relay};
use volley_core::NodeId;
use volley_redis::streams::{StreamsAdapter, StreamsOptions};
use volley_redis::{RedisAdapter, RedisOptions};
use volley_tokio::TokioRuntime;

mod common;
use common::{LIMIT, Redis};

fn node(id: &str) -> NodeId {
    NodeId::new(id).unwrap()
}

/// An adapter on `url` with forwarding on.
fn adapter(url: &str) -> RedisAdapter {
    RedisAdapter::new(
        RedisOptions::new(url).forward_sessions(),
        TokioRuntime::current(),
    )
}

/// Starts the relay of `adapter` as node `id`; returns what it receives, once subscribed.
async fn start(adapter: &RedisAdapter, id: &str) -> UnboundedReceiver<Bytes> {
    let relay = adapter.redis_relay().expect("forwarding is on");
    let (tx, rx) = unbounded_channel();
    relay.start_with(node(id), move |frame| tx.send(frame).is_ok());
    timeout(LIMIT, relay.subscribed())
        .await
        .expect("subscribed in time");
    rx
}

/// Frame `i`: its number, then bytes running through every value from a different start
/// (frame 0 holds all 256 values in order, later frames wrap around).
fn frame(i: u32) -> Bytes {
    let mut f = i.to_be_bytes().to_vec();
    let len = 256 + (i as usize * 7) % 300;
    f.extend((0..len).map(|k| ((k + i as usize) % 256) as u8));
    Bytes::from(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_frames_arrive_in_order_and_byte_exact() {
    let redis = Redis::start().await;
    let (a, b) = (adapter(&redis.url()), adapter(&redis.url()));
    let _a_rx = start(&a, "node-a").await;
    let mut b_rx = start(&b, "node-b").await;
    let relay = a.relay().expect("forwarding is on");
    let frames: Vec<Bytes> = (0..1000).map(frame).collect();
    assert!(
        (0..=255u8).all(|v| frames[0][4..].contains(&v)),
        "every byte value is sent"
    );
    let mut last = None;
    for f in &frames {
        // Every future but the last is dropped unawaited: the frame goes all the same.
        last = Some(relay.send(node("node-b"), f.clone()));
    }
    let delivered = timeout(LIMIT, last.unwrap())
        .await
        .expect("answered in time");
    assert!(delivered, "node-b subscribes its channel");
    let mut got = Vec::new();
    while got.len() < frames.len() {
        match timeout(LIMIT, b_rx.recv()).await {
            Ok(Some(f)) => got.push(f),
            other => panic!("frame {} missing: {other:?}", got.len()),
        }
    }
    for (i, (sent, received)) in frames.iter().zip(&got).enumerate() {
        assert_eq!(sent, received, "frame {i} arrives as sent, in its place");
    }
    // Nothing more than what was sent.
    assert!(
        timeout(Duration::from_millis(200), b_rx.recv())
            .await
            .is_err(),
        "no frame twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_nobody_started_is_not_reached_a_started_one_is() {
    let redis = Redis::start().await;
    let (a, b) = (adapter(&redis.url()), adapter(&redis.url()));
    let _a_rx = start(&a, "node-a").await;
    let mut b_rx = start(&b, "node-b").await;
    let relay = a.relay().unwrap();
    let to_nobody = relay.send(node("node-c"), Bytes::from_static(b"lost"));
    assert!(
        !timeout(LIMIT, to_nobody).await.unwrap(),
        "no node is node-c"
    );
    let to_b = relay.send(node("node-b"), Bytes::from_static(b"hello"));
    assert!(timeout(LIMIT, to_b).await.unwrap(), "node-b is there");
    let got = timeout(LIMIT, b_rx.recv()).await.unwrap().unwrap();
    assert_eq!(&got[..], b"hello");
    // A node may send to itself too (its own channel is subscribed).
    let to_self = b.relay().unwrap().send(node("node-b"), Bytes::new());
    assert!(timeout(LIMIT, to_self).await.unwrap());
    let empty = timeout(LIMIT, b_rx.recv()).await.unwrap().unwrap();
    assert!(empty.is_empty(), "an empty frame arrives empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_node_is_no_longer_reached_and_sends_nothing() {
    let redis = Redis::start().await;
    let (a, b) = (adapter(&redis.url()), adapter(&redis.url()));
    let _a_rx = start(&a, "node-a").await;
    let _b_rx = start(&b, "node-b").await;
    let relay = a.relay().unwrap();
    assert!(
        timeout(LIMIT, relay.send(node("node-b"), Bytes::from_static(b"1")))
            .await
            .unwrap()
    );
    Adapter::close(&b);
    // The closed node's own sends fail at once.
    let from_b = b
        .relay()
        .unwrap()
        .send(node("node-a"), Bytes::from_static(b"2"));
    assert!(!timeout(LIMIT, from_b).await.unwrap(), "b is closed");
    // Its subscription goes with its connection, a moment later.
    let mut reached = true;
    for _ in 0..100 {
        reached = timeout(LIMIT, relay.send(node("node-b"), Bytes::from_static(b"3")))
            .await
            .unwrap();
        if !reached {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!reached, "node-b left its channel within 5 s of closing");
    // Node a goes on.
    let to_a = b_to_a_probe(&redis.url()).await;
    assert!(to_a, "node-a still receives");
}

/// Whether a third relay reaches node-a.
async fn b_to_a_probe(url: &str) -> bool {
    let c = adapter(url);
    let sent = c
        .relay()
        .unwrap()
        .send(node("node-a"), Bytes::from_static(b"probe"));
    timeout(LIMIT, sent).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_redis_means_not_delivered() {
    // Nothing listens there.
    let port = common::free_port().await;
    let mut options = RedisOptions::new(&format!("redis://127.0.0.1:{port}")).forward_sessions();
    options.connect_timeout = Duration::from_millis(500);
    let a = RedisAdapter::new(options, TokioRuntime::current());
    let relay = a.relay().unwrap();
    for _ in 0..3 {
        let sent = relay.send(node("node-b"), Bytes::from_static(b"x"));
        assert!(!timeout(LIMIT, sent).await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_is_offered_only_with_the_option() {
    let rt = TokioRuntime::current;
    let url = "redis://127.0.0.1:1";
    assert!(
        RedisAdapter::new(RedisOptions::new(url), rt())
            .relay()
            .is_none()
    );
    assert!(!RedisOptions::new(url).forward_sessions);
    let on = RedisAdapter::new(RedisOptions::new(url).forward_sessions(), rt());
    let (first, second) = (on.relay().unwrap(), on.relay().unwrap());
    let same = |r: &Arc<dyn Relay>| Arc::as_ptr(r).cast::<()>();
    assert_eq!(same(&first), same(&second), "one relay per adapter");
    assert_eq!(
        same(&first),
        Arc::as_ptr(&on.redis_relay().unwrap()).cast::<()>()
    );

    assert!(
        StreamsAdapter::new(StreamsOptions::new(url), rt())
            .relay()
            .is_none()
    );
    let on = StreamsAdapter::new(StreamsOptions::new(url).forward_sessions(), rt());
    let (first, second) = (on.relay().unwrap(), on.relay().unwrap());
    assert_eq!(same(&first), same(&second), "one relay per adapter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_adapter_relays_to_the_same_channels() {
    let redis = Redis::start().await;
    let streams = StreamsAdapter::new(
        StreamsOptions::new(&redis.url()).forward_sessions(),
        TokioRuntime::current(),
    );
    let (tx, mut s_rx) = unbounded_channel();
    let relay = streams.redis_relay().unwrap();
    relay.start_with(node("node-s"), move |f| tx.send(f).is_ok());
    timeout(LIMIT, relay.subscribed()).await.unwrap();
    let classic = adapter(&redis.url());
    let _c_rx = start(&classic, "node-c").await;
    let sent = classic.relay().unwrap().send(node("node-s"), frame(7));
    assert!(timeout(LIMIT, sent).await.unwrap());
    assert_eq!(
        timeout(LIMIT, s_rx.recv()).await.unwrap().unwrap(),
        frame(7)
    );
    Adapter::close(&streams);
    let after = streams.relay().unwrap().send(node("node-c"), frame(8));
    assert!(
        !timeout(LIMIT, after).await.unwrap(),
        "closed with the adapter"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_stopped_stops_the_relay() {
    let redis = Redis::start().await;
    let (a, b) = (adapter(&redis.url()), adapter(&redis.url()));
    let _a_rx = start(&a, "node-a").await;
    let b_rx = start(&b, "node-b").await;
    // The receiving server is gone: its first frame tells the relay.
    drop(b_rx);
    let relay = a.relay().unwrap();
    assert!(
        timeout(LIMIT, relay.send(node("node-b"), frame(1)))
            .await
            .unwrap(),
        "the channel was still subscribed"
    );
    let mut reached = true;
    for _ in 0..100 {
        reached = timeout(LIMIT, relay.send(node("node-b"), frame(2)))
            .await
            .unwrap();
        if !reached {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!reached, "node-b's relay left its channel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_frames_keep_their_order_across_pipelines() {
    let redis = Redis::start().await;
    let (a, b) = (adapter(&redis.url()), adapter(&redis.url()));
    let _a_rx = start(&a, "node-a").await;
    let mut b_rx = start(&b, "node-b").await;
    let relay = a.relay().unwrap();
    // 300 KiB each (a pipeline holds 1 MiB), and one of 3 MiB that goes alone.
    let big = |i: u32, len: usize| {
        let mut f = i.to_be_bytes().to_vec();
        f.extend((0..len).map(|k| (k.wrapping_mul(31) + i as usize) as u8));
        Bytes::from(f)
    };
    let frames: Vec<Bytes> = (0..20)
        .map(|i| big(i, if i == 9 { 3 << 20 } else { 300 << 10 }))
        .collect();
    let sends: Vec<_> = frames
        .iter()
        .map(|f| relay.send(node("node-b"), f.clone()))
        .collect();
    for (i, sent) in sends.into_iter().enumerate() {
        assert!(timeout(LIMIT, sent).await.unwrap(), "frame {i} delivered");
    }
    for (i, sent) in frames.iter().enumerate() {
        let got = timeout(LIMIT, b_rx.recv()).await.unwrap().unwrap();
        assert!(got == *sent, "frame {i} arrives whole and in its place");
    }
}

/// Starts the relays of `a` (node-a) and `b` (node-b) and checks that 200 frames from a
/// reach b in order, and that a node nobody started is not reached.
async fn exchange(a: &RedisAdapter, b: &RedisAdapter) {
    let _a_rx = start(a, "node-a").await;
    let mut b_rx = start(b, "node-b").await;
    let relay = a.relay().unwrap();
    let frames: Vec<Bytes> = (0..200).map(frame).collect();
    let mut last = None;
    for f in &frames {
        last = Some(relay.send(node("node-b"), f.clone()));
    }
    assert!(
        timeout(LIMIT, last.unwrap()).await.unwrap(),
        "node-b is there"
    );
    for (i, sent) in frames.iter().enumerate() {
        let got = timeout(LIMIT, b_rx.recv()).await.unwrap().unwrap();
        assert_eq!(&got, sent, "frame {i}");
    }
    let lost = relay.send(node("node-c"), frame(0));
    assert!(!timeout(LIMIT, lost).await.unwrap(), "no node is node-c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_cross_a_redis_cluster() {
    let cluster = common::redis_cluster::RedisCluster::start().await;
    let urls = cluster.urls();
    let url_refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    // The adapters speak sharded Pub/Sub here; the relay speaks classic Pub/Sub, which the
    // cluster carries between its nodes (the relays connect to different ones).
    let options = RedisOptions::cluster(&url_refs).forward_sessions();
    let a = RedisAdapter::new(options.clone(), TokioRuntime::current());
    let b = RedisAdapter::new(options, TokioRuntime::current());
    exchange(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_reach_the_master_a_sentinel_names() {
    let master = Redis::start().await;
    let dir = common::TempDir::new("relay-sentinel");
    let port = common::free_port().await;
    let conf = dir.file("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {} 1\n",
            dir.0.display(),
            master.port
        ),
    )
    .unwrap();
    let _sentinel = Redis::spawn_until("redis-sentinel", &[conf], port, "+monitor master").await;
    let sentinel_url = format!("redis://127.0.0.1:{port}");
    let options = RedisOptions::sentinel("mymaster", &[sentinel_url.as_str()]).forward_sessions();
    let a = RedisAdapter::new(options.clone(), TokioRuntime::current());
    let b = RedisAdapter::new(options, TokioRuntime::current());
    exchange(&a, &b).await;
    // The frames went through the master: node-b's channel is subscribed there.
    let mut conn = common::raw_conn(&master.url()).await;
    let (_, subscribers): (String, usize) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("socket.io-relay#node-b#")
        .query_async::<Vec<(String, usize)>>(&mut conn)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(subscribers, 1);
}

/// Sends `frame` to `to` until it is received, for at most 10 s; whether it was.
async fn reached_within(relay: &Arc<dyn Relay>, to: &str, frame: &Bytes) -> bool {
    for _ in 0..200 {
        if timeout(LIMIT, relay.send(node(to), frame.clone()))
            .await
            .unwrap()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_comes_back_with_redis() {
    let redis = Redis::start().await;
    let url = redis.url();
    let (a, b) = (adapter(&url), adapter(&url));
    let _a_rx = start(&a, "node-a").await;
    let mut b_rx = start(&b, "node-b").await;
    let relay = a.relay().unwrap();
    assert!(reached_within(&relay, "node-b", &frame(1)).await);
    assert_eq!(
        timeout(LIMIT, b_rx.recv()).await.unwrap().unwrap(),
        frame(1)
    );
    let port = redis.stop().await;
    // While Redis is away nothing is delivered, and sends say so.
    let during = relay.send(node("node-b"), frame(2));
    assert!(!timeout(LIMIT, during).await.unwrap());
    let _redis = Redis::start_on(port).await;
    // The publisher connects again and node-b's subscriber subscribes again.
    assert!(
        reached_within(&relay, "node-b", &frame(3)).await,
        "node-b reached again within 10 s of Redis coming back"
    );
    assert_eq!(
        timeout(LIMIT, b_rx.recv()).await.unwrap().unwrap(),
        frame(3)
    );
}
