//! Sentinel and Redis Cluster, against processes this test starts on free ports: a master,
//! a replica and three Sentinels; a cluster of three masters with a replica each. A master is
//! killed while one Volley node broadcasts to another, its replica is promoted, and the nodes
//! follow by themselves. The delivery gap and losses are measured and printed.

use futures::FutureExt;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::time::{sleep, timeout};
use volley_redis::{PubSub, RedisOptions};

mod common;
use common::redis_cluster::RedisCluster;
use common::{Client, LIMIT, Redis, TempDir, free_port, raw_conn};

/// The longest a failover test may wait for the cluster to settle or fail over.
const SETTLE: Duration = Duration::from_secs(30);

type Node = common::Joinable;

async fn node(mut options: RedisOptions) -> Node {
    options.backoff = (Duration::from_millis(50), Duration::from_millis(250));
    options.connect_timeout = Duration::from_millis(500);
    common::joinable_node(options).await
}

/// Broadcasts `["n", i]` from `from` every `every` while a client of `to` records what
/// arrives. `fail` kills a server; `settled` completes once another has taken over (a
/// promoted replica, or the node the receiving node subscribes on now).
/// Then waits until `to` is subscribed and a broadcast sent after the takeover arrives,
/// goes on for 1.5 s, and reports the receiving node's subscription changes, the delivery
/// gaps and the losses. Asserts that nothing sent after the first broadcast delivered after
/// the takeover was lost, duplicated or reordered.
async fn measure_failover(
    what: &str,
    from: &Node,
    to: &Node,
    every: Duration,
    fail: impl std::future::Future<Output = ()>,
    settled: impl std::future::Future<Output = ()>,
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
    // Every change of the receiving node's subscription state, for the report.
    let changes: Arc<Mutex<Vec<(bool, Instant)>>> = Arc::default();
    let watcher = {
        let (adapter, changes, stop) = (to.adapter.clone(), changes.clone(), stop.clone());
        tokio::spawn(async move {
            let mut was = true;
            while !stop.load(Ordering::SeqCst) {
                let now = adapter.subscribed().now_or_never().is_some();
                if now != was {
                    changes.lock().unwrap().push((now, Instant::now()));
                    was = now;
                }
                sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let killed_at = Instant::now();
    fail.await;
    timeout(SETTLE, settled).await.expect("taken over in time");
    let settled_at = Instant::now();
    let sent_at_settlement = sent.lock().unwrap().len();
    // Delivery resumes: a broadcast sent after the takeover arrives.
    timeout(SETTLE, async {
        loop {
            let last = received.lock().unwrap().last().map(|(i, _)| *i);
            if last.is_some_and(|i| i >= sent_at_settlement) {
                return;
            }
            sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("delivery resumed after the takeover");
    timeout(LIMIT, to.adapter.subscribed()).await.unwrap();
    sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let total = emitter.await.unwrap();
    from.io.emit("end", &0).unwrap();
    let ended = timeout(Duration::from_secs(3), receiver).await.is_ok();
    watcher.await.unwrap();

    let sent = sent.lock().unwrap().clone();
    let received = received.lock().unwrap().clone();
    let since = |t: Instant| t.saturating_duration_since(killed_at);
    let changes: Vec<String> = changes
        .lock()
        .unwrap()
        .iter()
        .map(|(on, t)| format!("{} at {:?}", if *on { "up" } else { "down" }, since(*t)))
        .collect();
    let gaps: Vec<String> = received
        .windows(2)
        .filter(|w| w[1].1 - w[0].1 > every * 5)
        .map(|w| {
            format!(
                "#{}..#{} ({:?}..{:?})",
                w[0].0,
                w[1].0,
                since(w[0].1),
                since(w[1].1)
            )
        })
        .collect();
    let order: Vec<usize> = received.iter().map(|(i, _)| *i).collect();
    let lost: Vec<usize> = (0..total).filter(|i| !order.contains(i)).collect();
    // The first delivery of a broadcast sent after the takeover.
    let resumed = order
        .iter()
        .copied()
        .find(|i| *i >= sent_at_settlement)
        .unwrap();
    let (gap, before, after) = received
        .windows(2)
        .map(|w| (w[1].1 - w[0].1, w[0].0, w[1].0))
        .max()
        .unwrap();
    let lost_after: Vec<usize> = lost.iter().copied().filter(|i| *i > resumed).collect();
    eprintln!(
        "{what}: {total} broadcasts every {every:?}, server killed at #{}; taken over \
         {:?} after the kill (#{sent_at_settlement}); first broadcast sent after that \
         delivered {:?} after the kill (#{resumed}); longest delivery gap {gap:?} (#{before} \
         to #{after}); lost {} in all, {} after #{resumed}; receiving node's subscription: \
         {changes:?}; gaps over {:?}: {gaps:?}; end marker arrived: {ended}",
        sent.iter().filter(|t| **t < killed_at).count(),
        since(settled_at),
        since(received.iter().find(|(i, _)| *i == resumed).unwrap().1),
        lost.len(),
        lost_after.len(),
        every * 5,
    );
    let disorder: Vec<(usize, usize)> = order
        .windows(2)
        .filter(|w| w[0] >= w[1])
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(disorder.is_empty(), "in order, no duplicates: {disorder:?}");
    assert!(ended, "the end marker arrived");
    assert!(
        lost_after.is_empty(),
        "lost after delivery resumed at #{resumed}: {lost_after:?}"
    );
}

/// `INFO replication` of the server at `url` has `needle`. A connection the server refuses
/// or drops while answering counts as "not yet": a Sentinel promoting a replica kills the
/// replica's client connections as part of the switch, which a poll in that moment sees as
/// a broken pipe or a failed connect. Callers that wait for a state do so under a time
/// limit.
async fn replication_has(url: &str, needle: &str) -> bool {
    let client = redis::Client::open(url).unwrap();
    let mut conn = match timeout(LIMIT, client.get_multiplexed_async_connection()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            eprintln!("connecting to {url}: {e}");
            return false;
        }
        Err(_) => {
            eprintln!("connecting to {url}: timed out");
            return false;
        }
    };
    let info: Result<String, _> = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut conn)
        .await;
    match info {
        Ok(info) => info.contains(needle),
        Err(e) => {
            eprintln!("INFO replication of {url}: {e}");
            false
        }
    }
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

    let replica_url = replica.url();
    measure_failover(
        "sentinel",
        &a,
        &b,
        Duration::from_millis(20),
        async {
            master.kill();
        },
        async {
            while !replication_has(&replica_url, "role:master").await {
                sleep(Duration::from_millis(20)).await;
            }
        },
    )
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

// ---- Redis Cluster ----

/// `socket.io#/#<room>#`: a room's channel in `/`.
fn room_channel(room: &str) -> String {
    format!("socket.io#/#{room}#")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_routes_each_channel_to_its_master() {
    let cluster = RedisCluster::start().await;
    let masters = cluster.masters().await;
    assert_eq!(masters.len(), 3);
    let urls = cluster.urls();
    // Each through one node only: the others are found from it.
    let a = node(RedisOptions::cluster(&[urls[0].as_str()])).await;
    let b = node(RedisOptions::cluster(&[urls[1].as_str()])).await;
    for n in [&a, &b] {
        let count = timeout(LIMIT, n.adapter.refresh_server_count())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(count, 2);
    }

    // A room whose channel lives on each master.
    let mut rooms: Vec<(String, u16)> = Vec::new();
    for i in 0.. {
        let room = format!("room-{i}");
        let master = cluster.master_of(&room_channel(&room)).await;
        if !rooms.iter().any(|(_, m)| *m == master) {
            rooms.push((room, master));
        }
        if rooms.len() == 3 {
            break;
        }
    }
    let mut cb = Client::connect(b.port).await;
    for (room, _) in &rooms {
        cb.call("join", &[json!(room)]).await;
    }
    timeout(LIMIT, b.adapter.subscribed()).await.unwrap();
    // Each room's channel is subscribed at its own master, once (by B).
    for (room, master) in &rooms {
        assert_eq!(
            cluster.shard_numsub(*master, &room_channel(room)).await,
            1,
            "{room} on {master}"
        );
    }
    // The namespace channel at its master: both nodes.
    let nsp_master = cluster.master_of("socket.io#/#").await;
    assert_eq!(cluster.shard_numsub(nsp_master, "socket.io#/#").await, 2);

    // Broadcasts to each room (published on the room's channel at its master), to all, and
    // requests across the cluster.
    for (i, (room, _)) in rooms.iter().enumerate() {
        a.io.to(room.as_str()).emit("room", &i).unwrap();
    }
    a.io.emit("all", &9).unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(cb.event().await);
    }
    // Different masters: no order between the rooms; all before "all" is not promised
    // either.
    got.sort_by_key(|v| v.to_string());
    assert_eq!(
        got,
        vec![
            json!(["all", 9]),
            json!(["room", 0]),
            json!(["room", 1]),
            json!(["room", 2])
        ]
    );
    let sockets = timeout(LIMIT, a.io.fetch_sockets()).await.unwrap();
    assert_eq!(sockets.len(), 1);
    assert_eq!(sockets[0].id().as_str(), cb.sid);
    let in_room = timeout(LIMIT, a.io.to(rooms[2].0.as_str()).fetch_sockets())
        .await
        .unwrap();
    assert_eq!(in_room.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_failover_under_broadcasts() {
    let mut cluster = RedisCluster::start().await;
    let urls = cluster.urls();
    let url_refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let a = node(RedisOptions::cluster(&url_refs)).await;
    let b = node(RedisOptions::cluster(&url_refs)).await;
    // Broadcasts to all go on the namespace channel: kill the master that owns it.
    let victim = cluster.master_of("socket.io#/#").await;
    let mut cb = Client::connect(b.port).await;
    cb.call("join", &[json!("red")]).await;
    timeout(LIMIT, b.adapter.subscribed()).await.unwrap();
    drop(cb);

    // Out of the cluster's map: the helpers then ask only the live nodes.
    let mut victim_server = cluster.nodes.remove(&victim).unwrap();
    let live = &cluster;
    measure_failover(
        "redis cluster",
        &a,
        &b,
        Duration::from_millis(20),
        async {
            victim_server.kill();
        },
        async {
            // Every live node names the new master of the namespace channel's slot.
            loop {
                let mut moved = true;
                for port in live.nodes.keys() {
                    moved &= live.master_of_at(*port, "socket.io#/#").await != victim;
                }
                if moved {
                    return;
                }
                sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;
    cluster.await_ok(6).await;
    let new_master = cluster.master_of("socket.io#/#").await;
    assert_ne!(new_master, victim, "the replica was promoted");
    assert_eq!(cluster.shard_numsub(new_master, "socket.io#/#").await, 2);
    let count = timeout(LIMIT, a.adapter.refresh_server_count())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count, 2);
}

/// Classic Pub/Sub on a Redis Cluster: published at the master of the channel's slot,
/// forwarded over the cluster bus to the node each subscriber is on; counted on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_classic_pub_sub() {
    let mut cluster = RedisCluster::start().await;
    let urls = cluster.urls();
    let url_refs: Vec<&str> = urls.iter().map(String::as_str).collect();
    let classic = || {
        let mut o = RedisOptions::cluster(&url_refs);
        o.pub_sub = PubSub::Classic;
        o
    };
    let a = node(classic()).await;
    let b = node(classic()).await;
    for n in [&a, &b] {
        let count = timeout(LIMIT, n.adapter.refresh_server_count())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(count, 2);
    }
    let mut cb = Client::connect(b.port).await;
    cb.call("join", &[json!("red")]).await;
    a.io.emit("all", &1).unwrap();
    a.io.to("red").emit("red", &2).unwrap();
    assert_eq!(cb.event().await, json!(["all", 1]));
    assert_eq!(cb.event().await, json!(["red", 2]));
    let sockets = timeout(LIMIT, a.io.fetch_sockets()).await.unwrap();
    assert_eq!(sockets.len(), 1);
    drop(cb);

    // The node the receiving node's subscriber is connected to killed: the node subscribes
    // on another one.
    let own = format!("socket.io-response#/#{}#", b.io.node_id());
    let mut victim = None;
    for port in cluster.nodes.keys() {
        if cluster.numsub(*port, &own).await == 1 {
            victim = Some(*port);
        }
    }
    let victim = victim.expect("the node subscribed somewhere");
    let mut victim_server = cluster.nodes.remove(&victim).unwrap();
    let live = &cluster;
    let own = own.as_str();
    measure_failover(
        "redis cluster, classic",
        &a,
        &b,
        Duration::from_millis(20),
        async {
            victim_server.kill();
        },
        async {
            loop {
                for port in live.nodes.keys() {
                    if live.numsub(*port, own).await == 1 {
                        return;
                    }
                }
                sleep(Duration::from_millis(20)).await;
            }
        },
    )
    .await;
}
