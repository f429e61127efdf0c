//! What the Redis tests share: a redis-server of the test's own on a free port of
//! 127.0.0.1, serving a Volley node there, and a raw Socket.IO [`Client`].

#![allow(dead_code)]

mod client;
pub mod node;
pub mod redis_cluster;

#[allow(unused_imports)] // Not every test binary uses it.
pub use client::Client;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::time::timeout;

/// How long a redis-server may take to start.
pub const LIMIT: Duration = Duration::from_secs(20);

/// Installs redis-server, redis-sentinel and redis-cli when missing; panics when that is
/// impossible. The tests of one binary run side by side: one of them installs, the others
/// wait for it.
pub fn ensure_redis_server() {
    static INSTALLED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut installed = INSTALLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !*installed {
        install_redis_server();
        *installed = true;
    }
}

fn install_redis_server() {
    let runs = |program: &str| {
        std::process::Command::new(program)
            .arg("--version")
            .output()
            .is_ok()
    };
    if ["redis-server", "redis-sentinel", "redis-cli"]
        .iter()
        .all(|p| runs(p))
    {
        return;
    }
    let ok = std::process::Command::new("sh")
        .args([
            "-c",
            "apt-get update && apt-get install -y redis-server redis-sentinel redis-tools",
        ])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "redis-server, redis-sentinel or redis-cli is missing and could not be installed \
         with apt-get"
    );
}

/// What redis-server logs once it listens.
const SERVER_READY: &str = "Ready to accept connections";

/// redis-server's arguments: listening on `port` of 127.0.0.1, its files in `dir`, no
/// persistence, then `extra`.
fn server_args(dir: &TempDir, port: u16, extra: &[String]) -> Vec<String> {
    let mut args: Vec<String> = [
        "--dir",
        &dir.file(""),
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(extra.iter().cloned());
    args
}

/// A running redis-server, killed on drop.
pub struct Redis {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    /// Its working directory, removed on drop.
    _dir: Option<TempDir>,
}

impl Redis {
    /// Starts one on `port`.
    pub async fn start_on(port: u16) -> Redis {
        Redis::start_with(port, &[]).await
    }

    /// Starts one on `port` with `extra` options (`--name value`, as redis-server takes them;
    /// a later option overrides an earlier one, so `--port 0` turns plain TCP off).
    pub async fn start_with(port: u16, extra: &[String]) -> Redis {
        // Its files (a replica's copy of the master's data) in a directory of its own.
        let dir = TempDir::new("server");
        let args = server_args(&dir, port, extra);
        let mut redis = Redis::spawn("redis-server", &args, port).await;
        redis._dir = Some(dir);
        redis
    }

    /// Runs redis-server with `args`, until it says it is ready; `port` is where it listens.
    pub async fn spawn(program: &str, args: &[String], port: u16) -> Redis {
        Redis::spawn_until(program, args, port, SERVER_READY).await
    }

    /// Runs `program` (redis-server or redis-sentinel) with `args`, until it logs a line
    /// containing `ready`; `port` is where it listens.
    pub async fn spawn_until(program: &str, args: &[String], port: u16, ready: &str) -> Redis {
        match Redis::try_spawn_until(program, args, port, ready).await {
            Ok(redis) => redis,
            Err(log) => panic!("{program} exited before it was ready: {log:#?}"),
        }
    }

    /// [`spawn_until`](Redis::spawn_until), handing back the log of a server that exited
    /// before it was ready.
    async fn try_spawn_until(
        program: &str,
        args: &[String],
        port: u16,
        ready: &str,
    ) -> Result<Redis, Vec<String>> {
        ensure_redis_server();
        let mut child = Command::new(program)
            .args(args)
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{program} starts: {e}"));
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut log = Vec::new();
        let ready = timeout(LIMIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains(ready) {
                    return true;
                }
                log.push(line);
            }
            false
        })
        .await
        .unwrap_or_else(|_| panic!("{program} ready in time"));
        if !ready {
            return Err(log);
        }
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Redis {
            child,
            port,
            _dir: None,
        })
    }

    /// Starts one on a free port. A port found free can be taken by another socket before
    /// the server binds it (the tests run side by side, and a client's connection takes an
    /// ephemeral port too): the server is then started again on another, a few times.
    pub async fn start() -> Redis {
        const ATTEMPTS: usize = 5;
        let mut taken = Vec::new();
        for _ in 0..ATTEMPTS {
            let port = free_port().await;
            let dir = TempDir::new("server");
            let args = server_args(&dir, port, &[]);
            match Redis::try_spawn_until("redis-server", &args, port, SERVER_READY).await {
                Ok(mut redis) => {
                    redis._dir = Some(dir);
                    return redis;
                }
                Err(log) if log.iter().any(|l| l.contains("Address already in use")) => {
                    taken.push(port);
                }
                Err(log) => panic!("redis-server exited before it was ready: {log:#?}"),
            }
        }
        panic!("redis-server found each of the ports {taken:?} taken before it could bind it");
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it; returns its port, to start another on.
    pub async fn stop(mut self) -> u16 {
        self.child.kill().await.unwrap();
        self.port
    }

    /// Kills it (SIGKILL) without waiting for it to go.
    pub fn kill(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A port of 127.0.0.1 that was free a moment ago, for a server a test starts.
///
/// Taken below the kernel's range of ephemeral ports (`ip_local_port_range`), at random:
/// a port the kernel hands out for port 0 is also what the next client connection may take
/// as its own, before the server binds it. Falls back to such a port when none below is
/// free after a few tries.
pub async fn free_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = 10_000u16;
    if ephemeral_low > low + 1_000 {
        let span = u64::from(ephemeral_low - low);
        for attempt in 0..64u64 {
            // Random enough for tests run side by side: a hash of the time and the attempt.
            let mut hasher = std::hash::BuildHasher::build_hasher(
                &std::collections::hash_map::RandomState::new(),
            );
            std::hash::Hash::hash(&(std::time::Instant::now(), attempt), &mut hasher);
            let port = low + (std::hash::Hasher::finish(&hasher) % span) as u16;
            if TcpListener::bind(("127.0.0.1", port)).await.is_ok() {
                return port;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A directory of its own under the system's temporary directory, for files a test writes
/// (certificates, Sentinel and cluster configurations); removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty one named after `what`.
    pub fn new(what: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "volley-redis-{what}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// `name` inside it, as a string.
    pub fn file(&self, name: &str) -> String {
        self.0.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A plain connection to the Redis at `url`.
pub async fn raw_conn(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    timeout(LIMIT, client.get_multiplexed_async_connection())
        .await
        .expect("connected in time")
        .expect("connected")
}

/// Serves `io` on a free port of 127.0.0.1; returns the port.
pub async fn serve(io: &volley::Io<volley_tokio::TokioRuntime>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(volley_tokio::serve(listener, io.driver().clone()));
    port
}

/// A Volley node on Redis, serving on a free port of 127.0.0.1.
pub struct Joinable {
    pub io: volley::Io<volley_tokio::TokioRuntime>,
    pub adapter: volley_redis::RedisAdapter,
    pub port: u16,
}

/// A node with `options` whose sockets answer `join` (joining the room named by the
/// argument); returned once its adapter is subscribed.
pub async fn joinable_node(options: volley_redis::RedisOptions) -> Joinable {
    let rt = volley_tokio::TokioRuntime::current();
    let adapter = volley_redis::RedisAdapter::new(options, rt.clone());
    let io = volley::builder()
        .adapter(adapter.clone())
        .request_timeout(Duration::from_secs(2))
        .build(rt);
    io.ns("/").on(
        "join",
        |s: volley::Socket, volley::Data(room): volley::Data<String>| async move {
            s.join(room.as_str());
            true
        },
    );
    let port = serve(&io).await;
    timeout(LIMIT, adapter.subscribed())
        .await
        .expect("subscribed in time");
    Joinable { io, adapter, port }
}

/// `tests/node`: the Node scripts and their packages.
pub fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}
