//! The official `socket.io-client` (4.8, pinned in `tests/node/package-lock.json`) speaking
//! the Admin UI protocol, as the dashboard does, to an instrumented Volley server on tokio
//! over TCP: a refused and an accepted password login, `session`, `config`, `server_stats`,
//! `all_sockets`, `socket_connected` followed by the `room_joined` of the room the socket's
//! connection handler joins, `join`/`leave` commands with their `room_joined`/`room_left`,
//! an `event_received`, a data change and a polling client's upgrade (`socket_updated`),
//! the charts' `aggregatedEvents`, a `_disconnect` command filtered on a socket's room with
//! its `socket_disconnected`, and a login with the session id.
//!
//! Node (20 or later) is required: without it this test fails. The pinned packages are
//! installed with `npm ci` when `node_modules` is missing or older than the lockfile.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use volley_admin::{Options, instrument};
use volley_tokio::TokioRuntime;

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// Checks for Node and installs the pinned packages when they are missing or stale.
fn ensure_node() {
    let version = Command::new("node")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("Node.js 20 or later is required for this test: {e}"));
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "Node.js 20 or later is required, found {version:?}"
    );
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
            .unwrap_or_else(|e| panic!("npm is required to install the test's packages: {e}"));
        assert!(status.success(), "npm ci failed: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_speaks_the_admin_protocol() {
    ensure_node();
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let io = volley::builder().build(TokioRuntime::current());
    io.ns("/")
        .on_connection(|s: volley::Socket| async move { s.join("lobby") })
        .on(
            "rename",
            |s: volley::Socket, volley::Data(name): volley::Data<String>| async move {
                s.data().insert(json!({ "name": name }));
            },
        );
    let options = Options {
        server_id: Some("volley-1".to_owned()),
        ..Options::basic("admin", &hash)
    };
    instrument(&io, options).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(volley_tokio::serve(listener, io.driver().clone()));

    let script = node_dir().join("admin-client.mjs");
    let url = format!("http://{addr}");
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .args([url.as_str(), "admin", "s3cret"])
        .current_dir(node_dir())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the client script timed out")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    assert_eq!(seen["badLogin"], "invalid credentials");
    assert_eq!(seen["session"].as_str().map(str::len), Some(16));
    assert_eq!(
        seen["config"]["supportedFeatures"].as_array().map(Vec::len),
        Some(9)
    );
    assert_eq!(seen["stats"]["serverId"], "volley-1");
    assert_eq!(seen["stats"]["pid"], std::process::id());
    let user = seen["userId"].as_str().unwrap();
    let listed: Vec<&str> = seen["allSockets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(listed.contains(&user), "{listed:?}");
    assert_eq!(seen["connected"]["id"], seen["otherId"]);
    assert_eq!(seen["connected"]["nsp"], "/");
    let other = seen["otherId"].as_str().unwrap();
    assert_eq!(
        seen["disconnected"].as_array().unwrap()[..3],
        json!(["/", user, "server namespace disconnect"])
            .as_array()
            .unwrap()[..]
    );
    assert!(seen["disconnected"][3].is_string(), "{seen}");
    assert_eq!(
        seen["roomJoined"].as_array().unwrap()[..3],
        json!(["/", "team", other]).as_array().unwrap()[..]
    );
    assert!(seen["roomJoined"][3].is_string(), "{seen}");
    assert_eq!(
        seen["roomLeft"].as_array().unwrap()[..3],
        json!(["/", "team", other]).as_array().unwrap()[..]
    );
    assert_eq!(seen["eventReceived"][0], "/");
    assert_eq!(seen["eventReceived"][1], other);
    assert_eq!(seen["eventReceived"][2], json!(["hello", 1, "two"]));
    assert_eq!(
        seen["dataUpdated"],
        json!({"id": other, "nsp": "/", "data": {"name": "zoe"}})
    );
    // Opened over polling, then upgraded.
    // The dashboard hears of the socket before the room its connection handler joins.
    assert_eq!(
        seen["sequence"],
        json!([["socket_connected", other], ["room_joined", "lobby"]])
    );
    let upgrading = seen["upgradingId"].as_str().unwrap();
    assert_eq!(seen["pollingConnected"]["id"], upgrading);
    assert_eq!(seen["pollingConnected"]["transport"], "polling");
    assert_eq!(
        seen["updated"],
        json!({"id": upgrading, "nsp": "/", "transport": "websocket"})
    );
    assert_eq!(seen["userReason"], "io server disconnect");
    assert_eq!(seen["sessionLogin"], true);
    let events = seen["statsWithEvents"]["aggregatedEvents"]
        .as_array()
        .unwrap();
    let kinds: std::collections::BTreeSet<&str> =
        events.iter().filter_map(|e| e["type"].as_str()).collect();
    for kind in [
        "rawConnection",
        "packetsIn",
        "packetsOut",
        "bytesIn",
        "bytesOut",
    ] {
        assert!(kinds.contains(kind), "{events:?}");
    }
    for e in events {
        assert!(e["count"].as_u64().unwrap() > 0, "{e}");
        assert_eq!(e["timestamp"].as_u64().unwrap() % 1000, 0, "{e}");
    }

    io.close().await;
    server.abort();
}
