//! Failovers under load, against processes this test starts on free ports: a master, a
//! replica and three Sentinels; the master is killed while one Volley node broadcasts to
//! another, the Sentinels promote the replica, and the nodes follow by themselves. The
//! delivery gap and losses are measured and printed.

use futures::FutureExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::time::{sleep, timeout};
use volley_redis::{RedisAdapter, RedisOptions};
use volley_tokio::TokioRuntime;

mod common;
use common::{Client, LIMIT, Redis, TempDir, free_port, raw_conn, serve};

/// The longest a failover test may wait for the cluster to settle or fail over.
const SETTLE: Duration = Duration::from_secs(30);

struct Node {
    io: volley::Io<TokioRuntime>,
    adapter: RedisAdapter,
    port: u16,
}

async fn node(mut options: RedisOptions) -> Node {
    options.backoff = (Duration::from_millis(50), Duration::from_millis(250));
    options.connect_timeout = Duration::from_millis(500);
    let rt = TokioRuntime::current();
    let adapter = RedisAdapter::new(options, rt.clone());
    let io = volley::builder().adapter(adapter.clone()).build(rt);
    let port = serve(&io).await;
    timeout(LIMIT, adapter.subscribed())
        .await
        .expect("subscribed in time");
    Node { io, adapter, port }
}

/// Broadcasts `["n", i]` from `from` every `every` while a client of `to` records what
/// arrives; `fail` runs meanwhile (it kills a server). Measures when `to`'s adapter lost
/// and regained its subscriptions, the delivery gap and what was lost, prints them, and
/// asserts that every broadcast after the first one delivered after the outage arrived.
async fn measure_failover<F: std::future::Future<Output = ()>>(
    what: &str,
    from: &Node,
    to: &Node,
    every: Duration,
    fail: F,
) {
    let mut client = Client::connect(to.port).await;
    let sent: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let emitter = {
        let (io, sent, stop) = (from.io.clone(), sent.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                sent.lock().unwrap().push(Instant::now());
                io.emit("n", &i).unwrap();
                i += 1;
                sleep(every).await;
            }
            i
        })
    };
    let received: Arc<Mutex<Vec<(usize, Instant)>>> = Arc::default();
    let got = received.clone();
    let receiver = tokio::spawn(async move {
        loop {
            let ev = client.text().await;
            let Some(body) = ev.strip_prefix("42") else {
                continue;
            };
            let v: serde_json::Value = serde_json::from_str(body).unwrap();
            if v[0] == "end" {
                return;
            }
            let i = v[1].as_u64().unwrap() as usize;
            got.lock().unwrap().push((i, Instant::now()));
        }
    });
    // Some deliveries before the failure.
    timeout(LIMIT, async {
        while received.lock().unwrap().len() < 10 {
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("broadcasts flow before the failure");
    let killed_at = Instant::now();
    fail.await;
    // The receiving node notices, then subscribes again.
    let lost_at = timeout(SETTLE, async {
        while to.adapter.subscribed().now_or_never().is_some() {
            sleep(Duration::from_millis(5)).await;
        }
        Instant::now()
    })
    .await
    .expect("the receiving node noticed the failure");
    timeout(SETTLE, to.adapter.subscribed())
        .await
        .expect("subscribed again after the failover");
    let resubscribed_at = Instant::now();
    let sent_at_resubscription = sent.lock().unwrap().len();
    // Delivery resumes.
    timeout(SETTLE, async {
        loop {
            let last = received.lock().unwrap().last().map(|(_, t)| *t);
            if last.is_some_and(|t| t > resubscribed_at) {
                return;
            }
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("delivery resumed after the failover");
    sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let total = emitter.await.unwrap();
    from.io.emit("end", &0).unwrap();
    timeout(LIMIT, receiver)
        .await
        .expect("the end marker arrived")
        .unwrap();

    let sent = sent.lock().unwrap().clone();
    let received = received.lock().unwrap().clone();
    let order: Vec<usize> = received.iter().map(|(i, _)| *i).collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "in order, no duplicates"
    );
    // The gap: the longest wait between two deliveries.
    let (gap, before, after) = received
        .windows(2)
        .map(|w| (w[1].1 - w[0].1, w[0].0, w[1].0))
        .max()
        .unwrap();
    let lost: Vec<usize> = (0..total).filter(|i| !order.contains(i)).collect();
    let first_after = after;
    let lost_after_resume: Vec<usize> = lost.iter().copied().filter(|i| *i > first_after).collect();
    eprintln!(
        "{what}: {total} broadcasts every {every:?}; master killed, receiving node saw it \
         {:?} later and subscribed again {:?} after the kill; delivery gap {gap:?} \
         (#{before} to #{after}, #{after} sent {:?} after the kill); lost {} ({} sent before \
         the receiver resubscribed at #{sent_at_resubscription}); lost after delivery \
         resumed: {}",
        lost_at - killed_at,
        resubscribed_at - killed_at,
        sent[after] - killed_at,
        lost.len(),
        lost.iter().filter(|i| **i < sent_at_resubscription).count(),
        lost_after_resume.len(),
    );
    assert!(
        lost_after_resume.is_empty(),
        "lost after delivery resumed: {lost_after_resume:?}"
    );
    // Nothing sent after the receiver resubscribed is lost once the sender is back: the
    // sender's own reconnection is what the first delivery after the gap marks.
    assert!(
        lost.iter().all(|i| *i < first_after),
        "lost after #{first_after}: {lost:?}"
    );
}

/// `INFO replication` of the server at `url` has `needle`.
async fn replication_has(url: &str, needle: &str) -> bool {
    let mut conn = raw_conn(url).await;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await
        .unwrap();
    info.contains(needle)
}

/// `SENTINEL MASTER mymaster` of the Sentinel at `port`, as field → value.
async fn sentinel_master(port: u16) -> std::collections::HashMap<String, String> {
    let mut conn = raw_conn(&format!("redis://127.0.0.1:{port}")).await;
    let flat: Vec<String> = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg("mymaster")
        .query_async(&mut conn)
        .await
        .unwrap();
    flat.chunks(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_under_broadcasts() {
    let dir = TempDir::new("sentinel");
    let mut master = Redis::start().await;
    let replica_port = free_port().await;
    let replica = Redis::start_with(
        replica_port,
        &["--replicaof", "127.0.0.1", &master.port.to_string()].map(str::to_owned),
    )
    .await;
    timeout(SETTLE, async {
        while !replication_has(&master.url(), "connected_slaves:1").await
            || !replication_has(&replica.url(), "master_link_status:up").await
        {
            sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the replica in sync");

    let mut sentinels = Vec::new();
    for n in 0..3 {
        let port = free_port().await;
        let conf = dir.file(&format!("sentinel-{n}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor mymaster 127.0.0.1 {} 2\n\
                 sentinel down-after-milliseconds mymaster 1000\n\
                 sentinel failover-timeout mymaster 3000\n\
                 sentinel parallel-syncs mymaster 1\n",
                dir.0.display(),
                master.port
            ),
        )
        .unwrap();
        sentinels
            .push(Redis::spawn_until("redis-sentinel", &[conf], port, "+monitor master").await);
    }
    // Each Sentinel knows the replica and the two other Sentinels.
    let settle = Instant::now();
    timeout(SETTLE, async {
        loop {
            let mut ready = true;
            for s in &sentinels {
                let m = sentinel_master(s.port).await;
                ready &= m.get("num-slaves").map(String::as_str) == Some("1")
                    && m.get("num-other-sentinels").map(String::as_str) == Some("2");
            }
            if ready {
                return;
            }
            sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the Sentinels know each other and the replica");
    eprintln!("sentinel: settled in {:?}", settle.elapsed());

    let urls: Vec<String> = sentinels
        .iter()
        .map(|s| format!("redis://127.0.0.1:{}", s.port))
        .collect();
    let url_refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let a = node(RedisOptions::sentinel("mymaster", &url_refs)).await;
    let b = node(RedisOptions::sentinel("mymaster", &url_refs)).await;
    // Both found the master through the Sentinels.
    let mut on_master = raw_conn(&master.url()).await;
    let (_, subscribers): (String, usize) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("socket.io-request#/#")
        .query_async::<Vec<(String, usize)>>(&mut on_master)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(subscribers, 2);

    measure_failover("sentinel", &a, &b, Duration::from_millis(20), async {
        master.kill();
    })
    .await;

    // The replica is the master now, and both nodes are subscribed there.
    assert!(replication_has(&replica.url(), "role:master").await);
    let m = sentinel_master(sentinels[0].port).await;
    assert_eq!(m["port"], replica_port.to_string());
    let mut on_new = raw_conn(&replica.url()).await;
    let (_, subscribers): (String, usize) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg("socket.io-request#/#")
        .query_async::<Vec<(String, usize)>>(&mut on_new)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(subscribers, 2);
    let count = timeout(LIMIT, a.adapter.refresh_server_count())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count, 2);
}
