//! What the Redis tests share: a redis-server of the test's own on a free port of
//! 127.0.0.1, serving a Volley node there, and a raw Socket.IO [`Client`].

#![allow(dead_code)]

mod client;

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

/// Installs redis-server when missing; panics when that is impossible.
pub fn ensure_redis_server() {
    let found = std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_ok();
    if found {
        return;
    }
    let ok = std::process::Command::new("sh")
        .args(["-c", "apt-get update && apt-get install -y redis-server"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "redis-server is missing and could not be installed with apt-get"
    );
}

/// A running redis-server, killed on drop.
pub struct Redis {
    child: Child,
    /// The port it listens on.
    pub port: u16,
}

impl Redis {
    /// Starts one on `port`.
    pub async fn start_on(port: u16) -> Redis {
        ensure_redis_server();
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        timeout(LIMIT, async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("Ready to accept connections") {
                    return;
                }
            }
            panic!("redis-server exited before it was ready");
        })
        .await
        .expect("redis-server ready in time");
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Redis { child, port }
    }

    /// Starts one on a free port.
    pub async fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Redis::start_on(port).await
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
}

/// Serves `io` on a free port of 127.0.0.1; returns the port.
pub async fn serve(io: &volley::Io<volley_tokio::TokioRuntime>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(volley_tokio::serve(listener, io.driver().clone()));
    port
}

/// `tests/node`: the Node scripts and their packages.
pub fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}
