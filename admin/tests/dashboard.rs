//! The real Admin UI: the built dashboard of `@socket.io/admin-ui` 0.5.1 (its `ui/dist`
//! files, served by the server under test through the driver's fallback at `/admin-ui/`),
//! driven in headless Chromium (`/usr/bin/chromium`, or `CHROMIUM_PATH`) by playwright-core:
//! it logs in with the password, shows the server by its id, a socket the official client
//! connected and its room, and the socket's row button disconnects it; the server sees it
//! gone.
//!
//! Node (20 or later) and Chromium are required: without them this test fails. The pinned
//! packages of `tests/node/package-lock.json` are installed with `npm ci` when missing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use volley::driver::ServerConfig;
use volley_admin::{Options, instrument};
use volley_core::http::{RequestHead, Response};
use volley_tokio::TokioRuntime;

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

fn ensure_packages() {
    let dir = node_dir();
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let stale = match (
        modified(&dir.join("node_modules/.package-lock.json")),
        modified(&dir.join("package-lock.json")),
    ) {
        (Some(installed), Some(lock)) => lock > installed,
        _ => true,
    };
    if stale {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .unwrap_or_else(|e| panic!("Node.js and npm are required for this test: {e}"));
        assert!(status.success(), "npm ci failed: {status}");
    }
}

/// Serves the dashboard's files under `/admin-ui/`.
fn dashboard(head: &RequestHead) -> Response {
    let dist = node_dir().join("node_modules/@socket.io/admin-ui/ui/dist");
    let path = head.path().strip_prefix("/admin-ui").unwrap_or("");
    let file = match path {
        "" | "/" => "index.html",
        p => p.trim_start_matches('/'),
    };
    if file.split('/').any(|part| part == "..") {
        return Response::new(404);
    }
    let kind = match file.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "application/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        _ => "application/octet-stream",
    };
    match std::fs::read(dist.join(file)) {
        Ok(bytes) => Response::new(200).header("Content-Type", kind).body(bytes),
        Err(_) => Response::new(404),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_logs_in_lists_and_disconnects_a_socket() {
    ensure_packages();
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let io = volley::builder()
        .server_config(ServerConfig::new().fallback(dashboard))
        .build(TokioRuntime::current());
    io.ns("/")
        .on_connection(|s: volley::Socket| async move { s.join("lobby") });
    let options = Options {
        server_id: Some("volley-ui-test".to_owned()),
        ..Options::basic("admin", &hash)
    };
    instrument(&io, options).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(volley_tokio::serve(listener, io.driver().clone()));

    let base = format!("http://127.0.0.1:{}", addr.port());
    let run = tokio::process::Command::new("node")
        .arg(node_dir().join("dashboard.mjs"))
        .args([base.as_str(), "admin", "s3cret"])
        .current_dir(node_dir())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the browser script timed out")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(seen["serverShown"], true);
    assert_eq!(seen["roomShown"], true);
    assert_eq!(seen["socketListed"], true);
    assert_eq!(seen["userReason"], "io server disconnect");
    assert_eq!(seen["rowRemoved"], true);
    assert_eq!(seen["roomsRemoved"], true);
    assert_eq!(seen["pageErrors"], serde_json::json!([]));

    // The server's side: the user's socket is gone from `/`.
    let user = seen["userId"].as_str().unwrap();
    let left: Vec<String> = io
        .fetch_sockets()
        .await
        .iter()
        .map(|s| s.id().to_string())
        .collect();
    assert!(!left.iter().any(|id| id == user), "{left:?}");

    io.close().await;
    server.abort();
}
