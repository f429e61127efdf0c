//! Node.js beside the Redis tests: the pinned packages of `tests/node`, its scripts driven by
//! JSON lines, and official socket.io-client sockets.

#![allow(dead_code)]

use super::{LIMIT, node_dir};
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

/// The most `npm ci` may take.
const NPM_LIMIT: Duration = Duration::from_secs(300);

// ---- Node and its packages ----

/// Checks for Node (panics when it is missing or too old) and installs the pinned packages
/// when `node_modules` is missing or older than the lockfile. Once per test binary.
pub fn ensure_node() {
    static READY: Mutex<bool> = Mutex::new(false);
    // A panic here poisons the lock: every later test fails too, as it should.
    let mut ready = READY.lock().expect("Node.js set-up failed in another test");
    if *ready {
        return;
    }
    let version = std::process::Command::new("node")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "Node.js is required for the Redis interop tests and `node` cannot run ({e}); \
                 install Node.js 20 or later and npm"
            )
        });
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    assert!(
        major >= 20,
        "the Redis interop tests need Node.js 20 or later, found {version:?}"
    );

    let dir = node_dir();
    let installed = dir.join("node_modules/.package-lock.json");
    let lock_time = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let stale = match (
        lock_time(&installed),
        lock_time(&dir.join("package-lock.json")),
    ) {
        (Some(installed), Some(lock)) => lock > installed,
        _ => true,
    };
    if stale {
        eprintln!("interop: node_modules missing or stale, running npm ci in {dir:?}");
        let mut npm = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .spawn()
            .unwrap_or_else(|e| panic!("npm is required to install the interop packages: {e}"));
        let deadline = Instant::now() + NPM_LIMIT;
        let status = loop {
            if let Some(status) = npm.try_wait().expect("npm ci runs") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = npm.kill();
                let _ = npm.wait();
                panic!("npm ci took longer than {NPM_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(status.success(), "npm ci failed: {status}");
    }
    *ready = true;
}

/// Who waits for the answer to which command: the answer, or the script's error.
type Waiting = HashMap<u64, oneshot::Sender<Result<Value, String>>>;

/// A script of `tests/node`, run with `node`, driven by JSON lines.
pub struct NodeScript {
    script: &'static str,
    stdin: ChildStdin,
    waiting: Arc<Mutex<Waiting>>,
    reports: mpsc::UnboundedReceiver<Value>,
    next_id: u64,
    /// Its `ready` report.
    pub ready: Value,
    // Killed on drop (and its stdin closes, which ends it anyway).
    _child: Child,
}

impl NodeScript {
    pub async fn start(script: &'static str, args: &[&str]) -> NodeScript {
        ensure_node();
        let dir = node_dir();
        let mut child = Command::new("node")
            .arg(dir.join(script))
            .args(args)
            .current_dir(&dir)
            .env("VOLLEY_INTEROP_LIFETIME_MS", "150000")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node {script}: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let waiting: Arc<Mutex<Waiting>> = Arc::default();
        let (tx, reports) = mpsc::unbounded_channel();
        let answers = waiting.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    eprintln!("{script}: {line}");
                    continue;
                };
                match v.get("id").and_then(Value::as_u64) {
                    Some(id) => {
                        let answer = match v.get("error") {
                            Some(e) => Err(e.as_str().unwrap_or("?").to_owned()),
                            None => Ok(v["ok"].clone()),
                        };
                        let waiter = lock(&answers).remove(&id);
                        if let Some(w) = waiter {
                            let _ = w.send(answer);
                        }
                    }
                    None => {
                        let _ = tx.send(v);
                    }
                }
            }
            // The script ended: whoever waits for an answer learns it now.
            lock(&answers).clear();
        });
        let mut s = NodeScript {
            script,
            stdin,
            waiting,
            reports,
            next_id: 0,
            ready: Value::Null,
            _child: child,
        };
        let ready = s.report().await;
        assert_eq!(ready["report"], "ready", "{script}: {ready}");
        s.ready = ready;
        s
    }

    /// Runs `op`; its result, or the script's error.
    pub async fn try_call(&mut self, op: &str, args: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(id, tx);
        let mut line = json!({ "id": id, "op": op, "args": args }).to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("cannot write to the script: {e}"))?;
        self.stdin.flush().await.map_err(|e| e.to_string())?;
        match timeout(LIMIT, rx).await {
            Err(_) => Err(format!("no answer within {LIMIT:?}")),
            Ok(Err(_)) => Err("the script exited".to_owned()),
            Ok(Ok(answer)) => answer,
        }
    }

    /// Runs `op`; panics when it fails.
    pub async fn call(&mut self, op: &str, args: Value) -> Value {
        let script = self.script;
        self.try_call(op, args)
            .await
            .unwrap_or_else(|e| panic!("{script}: {op} failed: {e}"))
    }

    /// A report already received, if there is one (without waiting).
    pub fn try_report(&mut self) -> Option<Value> {
        self.reports.try_recv().ok()
    }

    /// The next report.
    pub async fn report(&mut self) -> Value {
        timeout(LIMIT, self.reports.recv())
            .await
            .unwrap_or_else(|_| panic!("{}: no report within {LIMIT:?}", self.script))
            .unwrap_or_else(|| panic!("{}: exited", self.script))
    }
}

pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// socket.io-client sockets (in one Node process), with what each received, in order.
pub struct Clients {
    pub script: NodeScript,
    inbox: HashMap<String, VecDeque<Value>>,
    pub ids: HashMap<String, String>,
}

impl Clients {
    pub async fn start() -> Clients {
        Clients {
            script: NodeScript::start("interop-clients.mjs", &[]).await,
            inbox: HashMap::new(),
            ids: HashMap::new(),
        }
    }

    /// Connects `name` to the server on `port`, with auth `{who, token}`, query `who` and
    /// header `x-client` naming it; returns its socket id.
    pub async fn connect(&mut self, name: &str, port: u16, websocket_only: bool) -> String {
        let mut args = json!({
            "name": name,
            "url": format!("http://127.0.0.1:{port}"),
            "auth": { "who": name, "token": format!("t-{name}") },
            "query": { "who": name },
            "headers": { "x-client": name },
        });
        if websocket_only {
            args["transports"] = json!(["websocket"]);
        }
        let connected = self.script.call("connect", args).await;
        let id = connected["id"].as_str().expect("a socket id").to_owned();
        self.ids.insert(name.to_owned(), id.clone());
        id
    }

    pub fn id(&self, name: &str) -> &str {
        &self.ids[name]
    }

    /// `name` asks its server to put it in `room`.
    pub async fn join(&mut self, name: &str, room: &str) {
        let ack = self
            .script
            .call(
                "emitWithAck",
                json!({ "client": name, "event": "join", "args": [room] }),
            )
            .await;
        assert_eq!(ack, json!(room), "{name} joined {room}");
    }

    /// The next report about `name` (an event or its disconnection).
    pub async fn next(&mut self, name: &str) -> Value {
        loop {
            if let Some(r) = self.inbox.get_mut(name).and_then(VecDeque::pop_front) {
                return r;
            }
            let r = self.script.report().await;
            let client = r["client"].as_str().unwrap_or_default().to_owned();
            self.inbox.entry(client).or_default().push_back(r);
        }
    }

    /// The next event `name` received, as `[event, ...args]`.
    pub async fn event(&mut self, name: &str) -> Value {
        let r = self.next(name).await;
        assert_eq!(r["report"], "event", "{name}: {r}");
        let mut ev = vec![r["name"].clone()];
        ev.extend(r["args"].as_array().cloned().unwrap_or_default());
        Value::Array(ev)
    }

    /// Asserts the next events of each of `names`.
    pub async fn expect(&mut self, names: &[&str], events: &[Value]) {
        for name in names {
            for want in events {
                assert_eq!(&self.event(name).await, want, "client {name}");
            }
        }
    }
}
