//! The conformance suite as a cargo test: every scenario file of `tests/*.test.mjs` (the
//! official JavaScript clients, and headless Chromium for the chat page) against the
//! `conformance-server` binary, once on tokio and once on smol, and against a third target:
//! `conformance-event-loop`, volley-core's example server on a hand-written `mio` loop
//! (`core/examples/event_loop/`), with no async runtime and without the `volley` crate.
//!
//! What it needs and lacks, it installs: the npm packages of `package-lock.json` (`npm ci`,
//! when `node_modules` is missing or was installed from another lockfile) and Debian's
//! `chromium` (`apt-get`). It never skips: a missing tool that cannot be installed fails the
//! test with the reason.
//!
//! Each scenario file gets a fresh server on a free port (the server prints
//! `LISTENING <port>` first; the test waits for that line). A file's first lines may ask for
//! server options: `// @server FAST_PING=1 --app chat` (words with `=` are environment
//! variables, the others arguments). `SCENARIO=recovery` (comma-separated words) runs only
//! the files whose name contains one of the words. A file that needs an application only
//! the `volley` crate's server has says which targets it is for:
//! `// @targets tokio smol (why)` (without the line, a file is for every target). Servers
//! are killed when their guard drops; node is killed (with its process group) past
//! [`FILE_TIMEOUT`], and files not started within [`SUITE_TIMEOUT`] fail as not run.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// The most one scenario file may take (each of its tests also has its own, shorter, limit).
const FILE_TIMEOUT: Duration = Duration::from_secs(90);

/// The most all the scenario files of one target may take (the targets run in parallel).
const SUITE_TIMEOUT: Duration = Duration::from_secs(240);

/// The most a server may take to print its `LISTENING` line.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(30);

/// The most `npm ci` or the Chromium install may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(540);

/// Where Debian's Chromium lives.
const CHROMIUM: &str = "/usr/bin/chromium";

/// The lockfile copy that marks `node_modules` as installed from it.
const STAMP: &str = "node_modules/.volley-lockfile";

fn conformance_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn server_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_conformance-server"))
}

/// The third target's name: the event loop example.
const EVENT_LOOP: &str = "event-loop";

fn event_loop_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_conformance-event-loop"))
}

/// The cargo target folder (the server binary is `<target>/<profile>/conformance-server`).
fn target_dir() -> PathBuf {
    server_binary()
        .parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| conformance_dir().join("../target"))
}

/// What a child process printed, and how it ended.
struct Finished {
    status: Option<ExitStatus>,
    timed_out: bool,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Finished {
    fn ok(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    /// How many tests node ran (its `ℹ tests N` line), if it said.
    fn tests_run(&self) -> Option<u32> {
        self.stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix("ℹ tests "))
            .and_then(|n| n.trim().parse().ok())
    }

    fn describe(&self) -> String {
        let how = if self.timed_out {
            format!("killed after {:?} (time limit)", self.elapsed)
        } else {
            format!("{:?} after {:?}", self.status, self.elapsed)
        };
        format!(
            "{how}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout, self.stderr
        )
    }
}

/// Reads `r` to its end on a thread; the handle yields the text.
fn drain(mut r: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `cmd` in its own process group, killing the group past `limit`.
fn run_bounded(mut cmd: Command, limit: Duration) -> Result<Finished, String> {
    use std::os::unix::process::CommandExt;
    let what = format!("{cmd:?}");
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {what}: {e}"))?;
    let out = drain(child.stdout.take().expect("piped stdout"));
    let err = drain(child.stderr.take().expect("piped stderr"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let (status, timed_out) = match rx.recv_timeout(limit) {
        Ok(status) => (status.ok(), false),
        Err(_) => {
            // The whole group: `node --test` runs each file in a child process.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            (rx.recv().ok().and_then(Result::ok), true)
        }
    };
    let _ = waiter.join();
    Ok(Finished {
        status,
        timed_out,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        elapsed: started.elapsed(),
    })
}

/// Installs what the suite needs, once per test process.
fn setup() -> Result<(), String> {
    static SETUP: OnceLock<Result<(), String>> = OnceLock::new();
    SETUP
        .get_or_init(|| {
            ensure_node()?;
            ensure_npm_packages()?;
            ensure_chromium()
        })
        .clone()
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `apt-get update` then `apt-get install -y <packages>` (as root, or through `sudo -n`).
fn apt_install(packages: &[&str]) -> Result<(), String> {
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let apt = |args: &[&str]| {
        let mut cmd = if as_root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        let done = run_bounded(cmd, INSTALL_TIMEOUT)?;
        if done.ok() {
            Ok(())
        } else {
            Err(format!("apt-get {args:?} failed: {}", done.describe()))
        }
    };
    apt(&["update"])?;
    let mut args = vec!["install", "-y"];
    args.extend_from_slice(packages);
    apt(&args)
}

fn ensure_node() -> Result<(), String> {
    if have("node") && have("npm") {
        return Ok(());
    }
    eprintln!("conformance: node or npm missing, installing Debian's nodejs and npm");
    apt_install(&["nodejs", "npm"])
        .map_err(|e| format!("node and npm are required and could not be installed: {e}"))?;
    if have("node") && have("npm") {
        Ok(())
    } else {
        Err("node and npm still missing after apt-get install".to_owned())
    }
}

/// `npm ci` when `node_modules` is absent or was installed from another `package-lock.json`.
fn ensure_npm_packages() -> Result<(), String> {
    let dir = conformance_dir();
    let lock = std::fs::read(dir.join("package-lock.json"))
        .map_err(|e| format!("conformance/package-lock.json: {e}"))?;
    let stamp = dir.join(STAMP);
    if std::fs::read(&stamp).is_ok_and(|s| s == lock) {
        return Ok(());
    }
    eprintln!("conformance: node_modules missing or stale, running npm ci");
    let mut cmd = Command::new("npm");
    cmd.args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir);
    let done = run_bounded(cmd, INSTALL_TIMEOUT)?;
    if !done.ok() {
        return Err(format!("npm ci failed: {}", done.describe()));
    }
    std::fs::write(&stamp, &lock).map_err(|e| format!("{}: {e}", stamp.display()))
}

fn ensure_chromium() -> Result<(), String> {
    if Path::new(CHROMIUM).exists() {
        return Ok(());
    }
    eprintln!("conformance: {CHROMIUM} missing, installing Debian's chromium");
    apt_install(&["chromium"]).map_err(|e| {
        format!("the browser scenario needs Debian's chromium and it could not be installed: {e}")
    })?;
    if Path::new(CHROMIUM).exists() {
        Ok(())
    } else {
        Err(format!(
            "{CHROMIUM} still missing after apt-get install chromium"
        ))
    }
}

/// A running `conformance-server` (or event loop example), killed on drop.
struct Server {
    child: Child,
    /// Held open: the server exits when it closes (`--exit-with-stdin`), should this
    /// process die without running drops.
    _stdin: ChildStdin,
    port: u16,
    log: Arc<Mutex<String>>,
}

impl Server {
    fn start(runtime: &str, args: &[String], env: &[(String, String)]) -> Result<Server, String> {
        let mut cmd = match runtime {
            EVENT_LOOP => Command::new(event_loop_binary()),
            runtime => {
                let mut cmd = Command::new(server_binary());
                cmd.args(["--runtime", runtime]);
                cmd
            }
        };
        cmd.arg("--exit-with-stdin")
            .args(args)
            .env_remove("PORT")
            .env_remove("FAST_PING")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        let out_log = log.clone();
        thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next();
            let _ = tx.send(first.and_then(Result::ok));
            for line in lines.map_while(Result::ok) {
                let mut log = out_log.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stderr = child.stderr.take().expect("piped stderr");
        let err_log = log.clone();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = err_log.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut server = Server {
            child,
            _stdin: stdin,
            port: 0,
            log,
        };
        let line = match rx.recv_timeout(LISTEN_TIMEOUT) {
            Ok(Some(line)) => line,
            Ok(None) => {
                return Err(format!(
                    "the server ended before listening: {:?}\n{}",
                    server.child.try_wait(),
                    server.log()
                ));
            }
            Err(_) => return Err(format!("no LISTENING line within {LISTEN_TIMEOUT:?}")),
        };
        server.port = line
            .strip_prefix("LISTENING ")
            .and_then(|p| p.trim().parse().ok())
            .ok_or_else(|| format!("unexpected first line from the server: {line:?}"))?;
        Ok(server)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The scenario files, sorted; with `SCENARIO` set (e.g. `recovery` or `events,acks`), only
/// those whose name contains one of its comma-separated words.
fn scenario_files() -> Vec<PathBuf> {
    let filter = std::env::var("SCENARIO").unwrap_or_default();
    let words: Vec<&str> = filter
        .split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    let dir = conformance_dir().join("tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.ends_with(".test.mjs")
                    && (words.is_empty() || words.iter().any(|w| n.contains(w)))
            })
        })
        .collect();
    files.sort();
    files
}

/// The server options a scenario file asks for in its `// @server …` lines.
fn server_options(file: &Path) -> (Vec<String>, Vec<(String, String)>) {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let (mut args, mut env) = (Vec::new(), Vec::new());
    for line in text.lines().take_while(|l| l.starts_with("//")) {
        let Some(rest) = line.strip_prefix("// @server") else {
            continue;
        };
        for word in rest.split_whitespace() {
            match word.split_once('=') {
                Some((k, v)) => env.push((k.to_owned(), v.to_owned())),
                None => args.push(word.to_owned()),
            }
        }
    }
    (args, env)
}

/// The targets a scenario file is for (its `// @targets …` line), or `None`: every target.
fn file_targets(file: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .take_while(|l| l.starts_with("//"))
        .find_map(|l| l.strip_prefix("// @targets"))
        // Words up to a parenthesised reason.
        .map(|rest| {
            let names = rest.split('(').next().unwrap_or_default();
            names.split_whitespace().map(str::to_owned).collect()
        })
}

/// Runs one scenario file against a fresh server on `runtime`.
fn run_file(runtime: &str, file: &Path, limit: Duration) -> Result<Finished, String> {
    let (args, env) = server_options(file);
    let server = Server::start(runtime, &args, &env)?;
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("?");
    let screenshot = match runtime {
        "tokio" => "chat.png".to_owned(),
        other => format!("chat-{other}.png"),
    };
    let mut cmd = Command::new("node");
    cmd.args(["--test", "--test-reporter=spec"])
        .arg(file)
        .current_dir(conformance_dir())
        .env("SERVER_URL", server.url())
        .env("RUNTIME", runtime)
        .env("CHROMIUM_PATH", CHROMIUM)
        .env(
            "SCREENSHOT",
            target_dir().join("conformance").join(screenshot),
        )
        .env("NO_COLOR", "1")
        .env("FORCE_COLOR", "0");
    let mut done = run_bounded(cmd, limit)?;
    if done.ok() && done.tests_run().unwrap_or(0) == 0 {
        // A file that runs no test passes nothing: count it as a failure.
        done.status = None;
        done.stderr.push_str("\nnode ran no test in this file");
    }
    if !done.ok() {
        done.stderr.push_str(&format!(
            "\n--- server ({runtime}, {name}, {}) ---\n{}",
            server.url(),
            server.log()
        ));
    }
    drop(server);
    Ok(done)
}

/// Runs every scenario file on `runtime`; fails with the clients' own output.
fn run_runtime(runtime: &str) {
    if let Err(e) = setup() {
        panic!("conformance suite set-up failed (nothing was skipped): {e}");
    }
    let files = scenario_files();
    assert!(
        !files.is_empty(),
        "no scenario files in conformance/tests/ (or none matching SCENARIO)"
    );
    let (files, others): (Vec<PathBuf>, Vec<PathBuf>) = files
        .into_iter()
        .partition(|f| file_targets(f).is_none_or(|t| t.iter().any(|t| t == runtime)));
    if !others.is_empty() {
        let names: Vec<&str> = others
            .iter()
            .filter_map(|f| f.file_name().and_then(|n| n.to_str()))
            .collect();
        println!(
            "[{runtime}] not for this target (their @targets line): {}",
            names.join(", ")
        );
    }
    if files.is_empty() {
        // Only with SCENARIO naming files that declare other targets.
        println!("[{runtime}] none of the selected scenario files is for this target");
        return;
    }
    let mut failures = Vec::new();
    let started = Instant::now();
    for file in &files {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        let left = SUITE_TIMEOUT.saturating_sub(started.elapsed());
        if left.is_zero() {
            println!("[{runtime}] {name}: NOT RUN (suite time limit)");
            failures.push(format!(
                "== [{runtime}] {name}: not run, the suite's {SUITE_TIMEOUT:?} were used up"
            ));
            continue;
        }
        match run_file(runtime, file, left.min(FILE_TIMEOUT)) {
            Ok(done) => {
                let summary: Vec<&str> = done
                    .stdout
                    .lines()
                    .map(str::trim)
                    .filter(|l| {
                        l.starts_with("ℹ tests")
                            || l.starts_with("ℹ pass")
                            || l.starts_with("ℹ fail")
                            || l.starts_with("ℹ KNOWN BUG")
                            || l.starts_with("ℹ EXPECTED UNSUPPORTED")
                    })
                    .collect();
                println!(
                    "[{runtime}] {name}: {} in {:.1} s ({})",
                    if done.ok() { "ok" } else { "FAILED" },
                    done.elapsed.as_secs_f64(),
                    summary.join("; ")
                );
                if !done.ok() {
                    failures.push(format!("== [{runtime}] {name}: {}", done.describe()));
                }
            }
            Err(e) => {
                println!("[{runtime}] {name}: ERROR {e}");
                failures.push(format!("== [{runtime}] {name}: {e}"));
            }
        }
    }
    println!(
        "[{runtime}] {} scenario files in {:.1} s",
        files.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} scenario files failed on {runtime}:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

#[test]
fn official_clients_against_tokio() {
    run_runtime("tokio");
}

#[test]
fn official_clients_against_smol() {
    run_runtime("smol");
}

#[test]
fn official_clients_against_event_loop() {
    run_runtime(EVENT_LOOP);
}
