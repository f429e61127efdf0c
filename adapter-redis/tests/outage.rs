//! Riding out a Redis outage: while Redis is away a node keeps its cross-node publications
//! (the outage buffer) and sends them in order once Redis and the other nodes are back, so a
//! receiver on another node gets every broadcast made during the outage, exactly once and in
//! order.

use std::time::{Duration, Instant};
use volley::testing::TestClient;
use volley_redis::{OutageBuffer, RedisAdapter, RedisOptions};
use volley_tokio::TokioRuntime;

mod common;
use common::Redis;

fn node(redis_url: &str, buffer: OutageBuffer) -> (volley::Io<TokioRuntime>, RedisAdapter) {
    let rt = TokioRuntime::current();
    let options = RedisOptions::new(redis_url).outage_buffer(buffer);
    let adapter = RedisAdapter::new(options, rt.clone());
    let io = volley::builder().adapter(adapter.clone()).build(rt);
    (io, adapter)
}

/// Broadcasts `tick` 20 times a second from node A while redis-server is killed for `outage`
/// and started again on the same port; returns what node B's client received and the
/// numbers sent before the kill, during the outage, and in all.
async fn run(buffer: OutageBuffer, outage: Duration) -> (Vec<u64>, u64, u64, u64) {
    let redis = Redis::start().await;
    let url = redis.url();
    let (a, a_adapter) = node(&url, buffer);
    let (b, b_adapter) = node(&url, buffer);
    for adapter in [&a_adapter, &b_adapter] {
        tokio::time::timeout(Duration::from_secs(10), adapter.subscribed())
            .await
            .expect("subscribed in time");
    }
    let mut client = TestClient::connect(&b, "/", None).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let reader = tokio::spawn(async move {
        while let Some(ev) = client.recv().await {
            if ev.event == "tick" {
                let _ = tx.send(ev.data::<u64>().unwrap());
            }
        }
    });
    let tick = Duration::from_millis(50);
    let mut n = 0u64;
    let send_for = async |d: Duration, n: &mut u64| {
        let until = Instant::now() + d;
        while Instant::now() < until {
            a.emit("tick", &*n).unwrap();
            *n += 1;
            tokio::time::sleep(tick).await;
        }
    };
    send_for(Duration::from_secs(1), &mut n).await;
    let before = n;
    let port = redis.stop().await;
    send_for(outage, &mut n).await;
    let during = n - before;
    let _redis = Redis::start_on(port).await;
    send_for(Duration::from_secs(2), &mut n).await;
    // What was kept, and what followed, arrives within the backoff and the resubscribe wait.
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while got.last() != Some(&(n - 1)) && Instant::now() < deadline {
        if let Ok(Some(v)) = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await {
            got.push(v);
        }
    }
    reader.abort();
    (got, before, during, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_made_during_a_redis_outage_arrive_once_and_in_order() {
    let (got, before, during, sent) = run(OutageBuffer::default(), Duration::from_secs(5)).await;
    assert!(during >= 80, "the outage lasted 5 s: {during} broadcasts");
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "in order and never twice: {got:?}"
    );
    // A broadcast Redis took just as it died may be lost with it; everything made after
    // that reached the other node.
    let lost: Vec<u64> = (0..sent).filter(|n| !got.contains(n)).collect();
    eprintln!(
        "outage of 5 s: {sent} broadcasts, {before} before it, {during} during it; lost {} ({lost:?})",
        lost.len()
    );
    assert!(
        lost.iter().all(|n| *n + 2 >= before && *n < before + 1),
        "only the broadcasts at the moment of the kill may be lost: {lost:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_buffer_an_outage_loses_what_it_spans() {
    let off = OutageBuffer {
        max_bytes: 0,
        ..OutageBuffer::default()
    };
    let (got, before, during, sent) = run(off, Duration::from_secs(2)).await;
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    let lost = (0..sent).filter(|n| !got.contains(n)).count() as u64;
    eprintln!("no buffer, outage of 2 s: {sent} sent, {during} during it, {lost} lost");
    assert!(
        lost >= during / 2,
        "most of the outage's broadcasts are lost: {lost} of {during}"
    );
    assert!(got.contains(&(before - 2)) && got.contains(&(sent - 1)));
}
