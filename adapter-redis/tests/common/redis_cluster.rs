//! A Redis Cluster of three masters and three replicas on free ports of 127.0.0.1, created
//! with `redis-cli --cluster create`.

use super::{LIMIT, Redis, TempDir, free_port, raw_conn};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::{sleep, timeout};

/// The cluster's node timeout: how long a master may be silent before it counts as failed.
pub const NODE_TIMEOUT_MS: u64 = 1000;

/// Six redis-server processes forming one cluster; killed on drop.
pub struct RedisCluster {
    /// The servers, by port.
    pub nodes: HashMap<u16, Redis>,
    _dir: TempDir,
}

impl RedisCluster {
    /// Starts six servers and makes them a cluster of three masters with a replica each;
    /// returns once every node reports `cluster_state:ok` and knows the six.
    pub async fn start() -> RedisCluster {
        let dir = TempDir::new("cluster");
        let mut nodes = HashMap::new();
        for _ in 0..6 {
            let port = free_port().await;
            // The bus port would be port + 10 000, which may be taken or out of range.
            let bus = free_port().await;
            let args: Vec<String> = [
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                &bus.to_string(),
                // A replica syncs at once (the default waits 5 s for more replicas), so that
                // it may take over as soon as the cluster is up.
                "--repl-diskless-sync-delay",
                "0",
                "--cluster-config-file",
                &dir.file(&format!("nodes-{port}.conf")),
                "--cluster-node-timeout",
                &NODE_TIMEOUT_MS.to_string(),
                "--dir",
                &dir.file(""),
            ]
            .map(str::to_owned)
            .to_vec();
            nodes.insert(port, Redis::start_with(port, &args).await);
        }
        let addrs: Vec<String> = nodes.keys().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = tokio::process::Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .output();
        let out = timeout(LIMIT, out)
            .await
            .expect("redis-cli --cluster create in time")
            .expect("redis-cli runs (Debian package redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes, _dir: dir };
        cluster.await_ok(6).await;
        // Every replica in sync with its master.
        timeout(Duration::from_secs(30), async {
            'again: loop {
                for port in cluster.nodes.keys() {
                    let mut conn = raw_conn(&format!("redis://127.0.0.1:{port}")).await;
                    let info: String = redis::cmd("INFO")
                        .arg("replication")
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                    if info.contains("role:slave") && !info.contains("master_link_status:up") {
                        sleep(Duration::from_millis(50)).await;
                        continue 'again;
                    }
                }
                return;
            }
        })
        .await
        .expect("the replicas in sync in time");
        cluster
    }

    /// Waits until every live node says `cluster_state:ok` and knows `known` nodes.
    pub async fn await_ok(&self, known: usize) {
        timeout(Duration::from_secs(30), async {
            'again: loop {
                for port in self.nodes.keys() {
                    let info = cluster_info(*port).await;
                    if !info.contains("cluster_state:ok")
                        || !info.contains(&format!("cluster_known_nodes:{known}"))
                    {
                        sleep(Duration::from_millis(50)).await;
                        continue 'again;
                    }
                }
                return;
            }
        })
        .await
        .expect("the cluster is ok in time");
    }

    /// `redis://127.0.0.1:<port>` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .keys()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// The port of the master that owns `key`'s slot, asked of a live node.
    pub async fn master_of(&self, key: &str) -> u16 {
        self.master_of_at(*self.nodes.keys().next().unwrap(), key)
            .await
    }

    /// The port of the master that owns `key`'s slot, as the node at `port` sees it.
    pub async fn master_of_at(&self, port: u16, key: &str) -> u16 {
        let mut conn = raw_conn(&format!("redis://127.0.0.1:{port}")).await;
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn)
            .await
            .unwrap();
        for range in slots {
            let redis::Value::Array(items) = range else {
                continue;
            };
            let (Some(redis::Value::Int(from)), Some(redis::Value::Int(to))) =
                (items.first(), items.get(1))
            else {
                continue;
            };
            if (*from..=*to).contains(&i64::from(slot)) {
                if let Some(redis::Value::Array(master)) = items.get(2) {
                    if let Some(redis::Value::Int(p)) = master.get(1) {
                        return u16::try_from(*p).unwrap();
                    }
                }
            }
        }
        panic!("no master owns slot {slot} of {key}");
    }

    /// The ports of the masters, sorted.
    pub async fn masters(&self) -> Vec<u16> {
        let mut masters = Vec::new();
        for port in self.nodes.keys() {
            let mut conn = raw_conn(&format!("redis://127.0.0.1:{port}")).await;
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut conn)
                .await
                .unwrap();
            if info.contains("role:master") {
                masters.push(*port);
            }
        }
        masters.sort();
        masters
    }

    /// `PUBSUB SHARDNUMSUB channel` asked of the node at `port`.
    pub async fn shard_numsub(&self, port: u16, channel: &str) -> usize {
        self.pubsub_count(port, "SHARDNUMSUB", channel).await
    }

    /// `PUBSUB NUMSUB channel` asked of the node at `port`: the classic subscribers
    /// connected to that node.
    pub async fn numsub(&self, port: u16, channel: &str) -> usize {
        self.pubsub_count(port, "NUMSUB", channel).await
    }

    async fn pubsub_count(&self, port: u16, subcommand: &str, channel: &str) -> usize {
        let mut conn = raw_conn(&format!("redis://127.0.0.1:{port}")).await;
        let counts: Vec<(String, usize)> = redis::cmd("PUBSUB")
            .arg(subcommand)
            .arg(channel)
            .query_async(&mut conn)
            .await
            .unwrap();
        counts.into_iter().next().map_or(0, |(_, n)| n)
    }
}

/// `CLUSTER INFO` of the node at `port`.
pub async fn cluster_info(port: u16) -> String {
    let mut conn = raw_conn(&format!("redis://127.0.0.1:{port}")).await;
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut conn)
        .await
        .unwrap()
}
