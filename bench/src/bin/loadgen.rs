//! The load generator: its own tiny Engine.IO v4 / Socket.IO v5 client over WebSocket
//! (async-tungstenite) and HTTP/1.1 long-polling (hand-written), driving any server that
//! implements the benchmark contract of `examples/bench/app.rs` on 127.0.0.1.
//!
//! ```text
//! loadgen <scenario> --port P [--target NAME] [--clients N] [--inflight K] [--size S]
//!         [--duration SECS] [--warmup SECS] [--window W] [--concurrency N]
//!         [--settle SECS] [--server-pid PID] [--cores LABEL] [--sources N]
//! ```
//!
//! Scenarios (each prints one JSON line on stdout, then exits):
//!
//! - `echo`: `--clients` WebSocket clients, each keeping `--inflight` `echo` events of
//!   `--size` padding bytes in flight; messages per second and round-trip percentiles.
//! - `ack`: the same with `echo_ack` and acknowledgements.
//! - `broadcast`: `--clients` receivers and one sender, which keeps at most `--window`
//!   broadcasts' worth of copies undelivered; deliveries per second, sender-to-receiver
//!   latency, and copies lost (sent × receivers − delivered, after a drain of up to 2 s).
//! - `connect`: `--clients` workers, each opening a WebSocket, reading the open packet,
//!   joining `/` (`40` → `40{"sid":…}`) and resetting the connection, in a loop; connects per
//!   second and their latency.
//! - `idle-memory`: `--clients` WebSocket clients joined to `/` and then idle; the server's
//!   resident memory (`VmRSS` of `--server-pid`) before and `--settle` seconds after, per
//!   connection.
//! - `idle-many`: the same at scale, for one of several load generator processes sharing one
//!   server (`bench/idle_many.sh` starts as many as the open-files limit needs): `--clients`
//!   WebSocket clients, bound round-robin to the source addresses 127.0.0.1 ..
//!   127.0.0.`--sources` so that more connections than one address's ephemeral ports fit,
//!   join `/` (`--concurrency` handshakes at once, at most 240 s in all). Reports the
//!   connections held, the failures, the time to connect them and the rate, with wall-clock
//!   stamps (`started_unix_ms`, `connected_unix_ms`) so that the parts of a run can be
//!   merged, and, with `--server-pid`, the server's RSS before and `--settle` seconds after.
//!   The line is printed while the connections are still held; they stay open for
//!   `--duration` more seconds (or until the process is killed), so that whoever merges the
//!   parts reads the server with every part connected.
//! - `polling`: `--clients` long-polling clients (one connection for GETs, one for POSTs),
//!   each keeping `--inflight` echoes in flight.
//!
//! Every run is bounded: connecting (at most `--concurrency` handshakes at once, 60 s at
//! most), `--warmup` unmeasured seconds, `--duration` measured seconds, then every client
//! stops by itself; a client still stuck 5 s later is abandoned. With `--server-pid`, the
//! server's CPU time over the measured window is reported too (`server_cpu_pct`, percent of
//! one core, and `server_cpu_us_per_msg`).

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tokio::{TokioAdapter, client_async_with_config};
use async_tungstenite::tungstenite::Message;
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use futures::{FutureExt, SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore};
use volley_bench::procfs;
use volley_bench::wire::{event, open_sid, pad, split_payload, stamp};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, Error>;
type Ws = WebSocketStream<TokioAdapter<TcpStream>>;

/// Messages handled before one flush when replies arrive faster than they are handled.
const READ_BATCH: usize = 64;
/// How long clients may take to stop after the measured window.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long connecting every client may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(60);
/// One handshake's limit (connect scenario).
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(5);
/// How long connecting every client of `idle-many` may take.
const MANY_CONNECT_LIMIT: Duration = Duration::from_secs(240);
/// Most source addresses: 127.0.0.1 .. 127.0.0.254.
const MAX_SOURCES: usize = 254;

static START: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Microseconds since the load generator started: the clock of every stamp.
fn now_us() -> u64 {
    u64::try_from(START.elapsed().as_micros()).unwrap_or(u64::MAX)
}

const USAGE: &str = "usage: loadgen <echo|ack|broadcast|connect|idle-memory|idle-many|churn|polling> \
--port P [--target NAME] [--clients N] [--inflight K] [--size S] [--duration SECS] \
[--warmup SECS] [--window W] [--concurrency N] [--settle SECS] [--server-pid PID] \
[--cores LABEL] [--cycles N] [--sources N] [--spread P,P..] [--also-pids PID,PID..] \
[--transport websocket|upgrade]";

#[derive(Debug, Clone)]
struct Opts {
    scenario: String,
    target: String,
    port: u16,
    clients: usize,
    inflight: usize,
    size: usize,
    duration: Duration,
    warmup: Duration,
    window: u64,
    concurrency: usize,
    settle: Duration,
    server_pid: Option<u32>,
    cores: String,
    /// Churn: how many times the clients connect, idle and leave.
    cycles: usize,
    /// Idle-many: client sockets are bound round-robin to 127.0.0.1 .. 127.0.0.`sources`.
    sources: usize,
    /// Polling: more ports of the same cluster. After the handshake on `port`, each request
    /// goes to the next of `port` and these in turn, as through a balancer without affinity.
    spread: Vec<u16>,
    /// More processes whose CPU time counts as the server's (the other nodes, Redis).
    also_pids: Vec<u32>,
    /// Echo, ack, broadcast: `upgrade` opens each client's session over long-polling and
    /// upgrades it to WebSocket, as the official client does by default (not for the
    /// reference, which speaks no long-polling); `websocket` (the default) opens it there.
    transport: String,
}

fn parse_opts() -> Res<Opts> {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().ok_or(USAGE)?;
    let default_clients = match scenario.as_str() {
        "echo" | "ack" => 100,
        "broadcast" => 1000,
        "connect" => 32,
        "idle-memory" | "churn" | "idle-many" => 10_000,
        "polling" => 50,
        "-h" | "--help" => {
            println!("{USAGE}");
            std::process::exit(0);
        }
        other => return Err(format!("unknown scenario {other}\n{USAGE}").into()),
    };
    let mut opts = Opts {
        scenario,
        target: "server".to_owned(),
        port: 0,
        clients: default_clients,
        inflight: 10,
        size: 100,
        duration: Duration::from_secs(4),
        warmup: Duration::from_secs(1),
        window: 8,
        concurrency: 100,
        settle: Duration::from_secs(2),
        server_pid: None,
        cores: "all".to_owned(),
        cycles: 20,
        sources: 1,
        spread: Vec::new(),
        also_pids: Vec::new(),
        transport: "websocket".to_owned(),
    };
    let secs = |v: &str| -> Res<Duration> { Ok(Duration::from_secs_f64(v.parse()?)) };
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--target" => opts.target = value,
            "--port" => opts.port = value.parse()?,
            "--clients" => opts.clients = value.parse()?,
            "--cycles" => opts.cycles = value.parse()?,
            "--inflight" => opts.inflight = value.parse()?,
            "--size" => opts.size = value.parse()?,
            "--duration" => opts.duration = secs(&value)?,
            "--warmup" => opts.warmup = secs(&value)?,
            "--window" => opts.window = value.parse()?,
            "--concurrency" => opts.concurrency = value.parse()?,
            "--settle" => opts.settle = secs(&value)?,
            "--server-pid" => opts.server_pid = Some(value.parse()?),
            "--cores" => opts.cores = value,
            "--sources" => opts.sources = value.parse()?,
            "--transport" => match value.as_str() {
                "websocket" | "upgrade" => opts.transport = value,
                other => return Err(format!("unknown transport {other}").into()),
            },
            "--spread" => {
                opts.spread = value.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            "--also-pids" => {
                opts.also_pids = value.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown flag {other}\n{USAGE}").into()),
        }
    }
    if opts.port == 0 {
        return Err(format!("--port is required\n{USAGE}").into());
    }
    if opts.clients == 0
        || opts.inflight == 0
        || opts.window == 0
        || opts.concurrency == 0
        || opts.sources == 0
    {
        return Err("counts must be at least 1".into());
    }
    if opts.sources > MAX_SOURCES {
        return Err(
            format!("--sources is at most {MAX_SOURCES} (127.0.0.1 .. 127.0.0.254)").into(),
        );
    }
    Ok(opts)
}

/// A one-shot signal many tasks wait for.
#[derive(Default)]
struct Latch {
    set: AtomicBool,
    notify: Notify,
}

impl Latch {
    fn fire(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }
}

/// What every client of a run shares.
struct Run {
    opts: Opts,
    pad: String,
    /// At most this many handshakes at once.
    connecting: Semaphore,
    ready: AtomicUsize,
    failed: AtomicUsize,
    /// Idle-many: connections the server closed after they joined.
    dropped: AtomicUsize,
    go: Latch,
    stop: Latch,
    /// Broadcast: the sender sent its last broadcast.
    sent_all: Latch,
    /// The measured window, in `now_us` time; set before `go` fires.
    window: Mutex<(u64, u64)>,
    /// Broadcast: copies delivered so far (all time), the count at which to wake the sender,
    /// and the sender's wake-up.
    delivered: AtomicU64,
    wake_at: AtomicU64,
    sender_wake: Notify,
    /// The first few errors, for stderr.
    errors: Mutex<Vec<String>>,
}

impl Run {
    fn new(opts: Opts) -> Arc<Run> {
        Arc::new(Run {
            pad: pad(opts.size),
            connecting: Semaphore::new(opts.concurrency),
            ready: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            dropped: AtomicUsize::new(0),
            go: Latch::default(),
            stop: Latch::default(),
            sent_all: Latch::default(),
            window: Mutex::new((u64::MAX, u64::MAX)),
            delivered: AtomicU64::new(0),
            wake_at: AtomicU64::new(u64::MAX),
            sender_wake: Notify::new(),
            errors: Mutex::new(Vec::new()),
            opts,
        })
    }

    fn window(&self) -> Window {
        let (start, end) = *self.window.lock().expect("window lock");
        Window { start, end }
    }

    fn note_error(&self, e: &Error) {
        let mut errors = self.errors.lock().expect("errors lock");
        if errors.len() < 5 {
            errors.push(e.to_string());
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    start: u64,
    end: u64,
}

impl Window {
    fn contains(self, t: u64) -> bool {
        self.start <= t && t < self.end
    }
}

/// One client's measurements.
struct Tally {
    hist: Histogram<u64>,
    /// Replies (or connects, deliveries) inside the measured window.
    count: u64,
    /// Replies received in all.
    total: u64,
    errors: u64,
    /// Polling: HTTP requests completed inside the measured window.
    requests: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            // 1 µs to 60 s at two significant digits: about 20 KB a client.
            hist: Histogram::new_with_bounds(1, 60_000_000, 2).expect("histogram bounds"),
            count: 0,
            total: 0,
            errors: 0,
            requests: 0,
        }
    }

    fn record(&mut self, window: Window, sent: u64, now: u64) {
        self.total += 1;
        if window.contains(now) {
            self.count += 1;
            self.hist.saturating_record(now.saturating_sub(sent).max(1));
        }
    }

    fn merge(&mut self, other: &Tally) {
        let _ = self.hist.add(&other.hist);
        self.count += other.count;
        self.total += other.total;
        self.errors += other.errors;
        self.requests += other.requests;
    }
}

/// A JSON object written by hand (numbers and plain strings only).
#[derive(Default)]
struct Line(String);

impl Line {
    fn field(&mut self, key: &str, value: impl std::fmt::Display, quoted: bool) -> &mut Self {
        self.0.push(if self.0.is_empty() { '{' } else { ',' });
        if quoted {
            let _ = write!(self.0, "\"{key}\":\"{value}\"");
        } else {
            let _ = write!(self.0, "\"{key}\":{value}");
        }
        self
    }

    fn str(&mut self, key: &str, value: &str) -> &mut Self {
        self.field(key, value.replace(['"', '\\'], "'"), true)
    }

    fn int(&mut self, key: &str, value: u64) -> &mut Self {
        self.field(key, value, false)
    }

    /// A value that is JSON already (an array).
    fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.field(key, json, false)
    }

    fn num(&mut self, key: &str, value: f64) -> &mut Self {
        if value.is_finite() {
            self.field(key, format!("{value:.1}"), false)
        } else {
            self.field(key, "null", false)
        }
    }

    fn finish(&mut self) -> String {
        self.0.push('}');
        std::mem::take(&mut self.0)
    }
}

#[tokio::main]
async fn main() {
    LazyLock::force(&START);
    let opts = match parse_opts() {
        Ok(opts) => opts,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let run = Run::new(opts);
    let result = match run.opts.scenario.as_str() {
        "echo" => echo(&run, false).await,
        "ack" => echo(&run, true).await,
        "broadcast" => broadcast(&run).await,
        "connect" => connect(&run).await,
        "idle-memory" => idle_memory(&run).await,
        "idle-many" => idle_many(&run).await,
        "churn" => churn(&run).await,
        "polling" => polling(&run).await,
        _ => unreachable!("checked by parse_opts"),
    };
    for e in run.errors.lock().expect("errors lock").iter() {
        eprintln!("loadgen {}: error: {e}", run.opts.scenario);
    }
    match result {
        // `idle-many` prints its line itself, before it lets go of its connections.
        Ok(line) if line.is_empty() => {}
        Ok(line) => println!("{line}"),
        Err(e) => {
            eprintln!("loadgen {}: {e}", run.opts.scenario);
            std::process::exit(1);
        }
    }
}

// ---- the shape of a measured run ----

/// CPU time of the server and of this process over the measured window, in ticks.
struct Cpu {
    server: Option<u64>,
    own: Option<u64>,
}

impl Cpu {
    fn read(run: &Run) -> Cpu {
        Cpu {
            server: run.opts.server_pid.and_then(|pid| {
                let mut ticks = procfs::cpu_ticks(pid)?;
                for &also in &run.opts.also_pids {
                    ticks += procfs::cpu_ticks(also)?;
                }
                Some(ticks)
            }),
            own: procfs::own_cpu_ticks(),
        }
    }
}

/// Waits until `expected` clients are connected (or failed), within `CONNECT_LIMIT`.
async fn wait_connected(run: &Run, expected: usize) -> Res<usize> {
    let deadline = Instant::now() + CONNECT_LIMIT;
    loop {
        let ready = run.ready.load(Ordering::SeqCst);
        if ready + run.failed.load(Ordering::SeqCst) >= expected {
            if ready == 0 {
                return Err("no client could connect".into());
            }
            return Ok(ready);
        }
        if Instant::now() > deadline {
            return Err(format!("only {ready} of {expected} clients connected in time").into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sets the window, fires `go`, sleeps through warm-up and the measured window, fires
/// `stop`; returns the CPU readings at the window's edges.
async fn measure(run: &Run) -> (Cpu, Cpu) {
    let go = now_us();
    let start = go + duration_us(run.opts.warmup);
    let end = start + duration_us(run.opts.duration);
    *run.window.lock().expect("window lock") = (start, end);
    run.go.fire();
    tokio::time::sleep(run.opts.warmup).await;
    let before = Cpu::read(run);
    tokio::time::sleep(run.opts.duration).await;
    let after = Cpu::read(run);
    (before, after)
}

fn duration_us(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Joins the clients, abandoning those that do not stop within `STOP_GRACE`.
async fn collect(handles: Vec<tokio::task::JoinHandle<Tally>>) -> (Tally, u64) {
    let mut all = Tally::new();
    let mut abandoned = 0;
    let deadline = tokio::time::Instant::now() + STOP_GRACE;
    for handle in handles {
        let abort = handle.abort_handle();
        match tokio::time::timeout_at(deadline, handle).await {
            Ok(Ok(tally)) => all.merge(&tally),
            _ => {
                abort.abort();
                abandoned += 1;
            }
        }
    }
    (all, abandoned)
}

/// The fields every scenario reports.
fn common(run: &Run, tally: &Tally, clients: usize, cpu: &(Cpu, Cpu)) -> Line {
    let o = &run.opts;
    let secs = o.duration.as_secs_f64();
    let mut line = Line::default();
    // Sessions opened over long-polling and upgraded are a scenario of their own.
    let scenario = match o.transport.as_str() {
        "upgrade" => format!("{}-upgraded", o.scenario),
        _ => o.scenario.clone(),
    };
    line.str("scenario", &scenario)
        .str("target", &o.target)
        .str("cores", &o.cores)
        .int("clients", clients as u64)
        .int("inflight", o.inflight as u64)
        .int("size", o.size as u64)
        .num("duration_s", secs)
        .int("msgs", tally.count)
        .num("msgs_per_s", tally.count as f64 / secs)
        .int("p50_us", tally.hist.value_at_quantile(0.50))
        .int("p99_us", tally.hist.value_at_quantile(0.99))
        .int("p999_us", tally.hist.value_at_quantile(0.999))
        .int("max_us", tally.hist.max())
        .int("errors", tally.errors);
    let (before, after) = cpu;
    if let (Some(a), Some(b)) = (before.server, after.server) {
        let ticks = b.saturating_sub(a) as f64;
        line.num(
            "server_cpu_pct",
            ticks / procfs::TICKS_PER_SECOND / secs * 100.0,
        );
        if tally.count > 0 {
            let us = ticks / procfs::TICKS_PER_SECOND * 1e6 / tally.count as f64;
            line.field("server_cpu_us_per_msg", format!("{us:.2}"), false);
        }
    }
    if let (Some(a), Some(b)) = (before.own, after.own) {
        let ticks = b.saturating_sub(a) as f64;
        line.num(
            "client_cpu_pct",
            ticks / procfs::TICKS_PER_SECOND / secs * 100.0,
        );
    }
    line
}

// ---- WebSocket client ----

fn ws_config() -> WebSocketConfig {
    // Small buffers: thousands of clients live in this one process.
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(16 * 1024)
}

/// Opens a WebSocket to the server, reads the open packet and joins `/`.
async fn open_ws(port: u16) -> Res<Ws> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    join_over(stream, port).await
}

/// The same from the local address `source` (port chosen by the kernel), so that each
/// source address has its own range of ephemeral ports.
async fn open_ws_from(source: Ipv4Addr, port: u16) -> Res<Ws> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let stream = socket
        .connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        .await?;
    join_over(stream, port).await
}

/// The WebSocket handshake, the open packet and `/` joined, over a connected stream.
async fn join_over(stream: TcpStream, port: u16) -> Res<Ws> {
    stream.set_nodelay(true)?;
    // Reset rather than close: no TIME_WAIT left behind, so thousands of runs of short
    // connections do not exhaust the ephemeral ports.
    stream.set_zero_linger()?;
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = client_async_with_config(url, stream, Some(ws_config())).await?;
    let open = next_text(&mut ws).await?;
    if !open.starts_with('0') {
        return Err(format!("expected an open packet, got {open}").into());
    }
    ws.send(Message::text("40")).await?;
    loop {
        let text = next_text(&mut ws).await?;
        if text.starts_with("40") {
            return Ok(ws);
        }
        if text.starts_with("44") {
            return Err(format!("connect refused: {text}").into());
        }
        if text == "2" {
            ws.send(Message::text("3")).await?;
        }
    }
}

/// A session opened over long-polling and joined to `/` there, then upgraded to WebSocket
/// (probe, then `5`): the WebSocket it runs over from then on.
async fn open_upgraded(port: u16) -> Res<Ws> {
    let (_get, _post, path) = polling_open(port).await?;
    let sid = path.rsplit("sid=").next().ok_or("no sid")?;
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    stream.set_zero_linger()?;
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket&sid={sid}");
    let (mut ws, _) = client_async_with_config(url, stream, Some(ws_config())).await?;
    ws.send(Message::text("2probe")).await?;
    loop {
        let text = next_text(&mut ws).await?;
        if text == "3probe" {
            break;
        }
    }
    ws.send(Message::text("5")).await?;
    Ok(ws)
}

async fn next_text(ws: &mut Ws) -> Res<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(_))) | None => return Err("closed by the server".into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

/// Connects under the concurrency bound and counts the client ready (or failed).
async fn join(run: &Run) -> Option<Ws> {
    let permit = run.connecting.acquire().await.ok()?;
    let ws = match run.opts.transport == "upgrade" && run.opts.target != "reference" {
        true => open_upgraded(run.opts.port).await,
        false => open_ws(run.opts.port).await,
    };
    drop(permit);
    match ws {
        Ok(ws) => {
            run.ready.fetch_add(1, Ordering::SeqCst);
            Some(ws)
        }
        Err(e) => {
            run.note_error(&e);
            run.failed.fetch_add(1, Ordering::SeqCst);
            None
        }
    }
}

/// Reads whatever the socket has, without waiting, up to a batch: `first` and then each
/// message already received, handed to `on_text`; then flushes once.
async fn each_ready<F>(ws: &mut Ws, first: Option<Res<Message>>, mut on_text: F) -> Res<()>
where
    F: FnMut(&str) -> Option<String>,
{
    let mut next = Some(first);
    let mut handled = 0;
    while let Some(message) = next {
        match message {
            Some(Ok(Message::Text(text))) => {
                if text.as_str() == "2" {
                    ws.feed(Message::text("3")).await?;
                } else if let Some(reply) = on_text(text.as_str()) {
                    ws.feed(Message::text(reply)).await?;
                }
            }
            Some(Ok(Message::Close(_))) | None => return Err("closed by the server".into()),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e),
        }
        handled += 1;
        next = if handled < READ_BATCH {
            ws.next()
                .now_or_never()
                .map(|m| m.map(|r| r.map_err(Error::from)))
        } else {
            None
        };
    }
    ws.flush().await?;
    Ok(())
}

async fn next_message(ws: &mut Ws) -> Option<Res<Message>> {
    ws.next().await.map(|r| r.map_err(Error::from))
}

// ---- echo and ack ----

async fn echo(run: &Arc<Run>, ack: bool) -> Res<String> {
    let handles: Vec<_> = (0..run.opts.clients)
        .map(|_| {
            let run = run.clone();
            tokio::spawn(async move {
                let mut tally = Tally::new();
                if let Err(e) = echo_client(&run, ack, &mut tally).await {
                    run.note_error(&e);
                    tally.errors += 1;
                }
                tally
            })
        })
        .collect();
    let clients = wait_connected(run, run.opts.clients).await?;
    let cpu = measure(run).await;
    run.stop.fire();
    let (tally, abandoned) = collect(handles).await;
    let mut line = common(run, &tally, clients, &cpu);
    Ok(line.int("abandoned", abandoned).finish())
}

async fn echo_client(run: &Run, ack: bool, tally: &mut Tally) -> Res<()> {
    let Some(mut ws) = join(run).await else {
        return Ok(());
    };
    let stopped = run.stop.wait();
    tokio::pin!(stopped);
    tokio::select! {
        _ = run.go.wait() => {}
        _ = &mut stopped => return Ok(()),
    }
    let window = run.window();
    let name = if ack { "echo_ack" } else { "echo" };
    let mut next_id = 0u64;
    let mut id = || {
        next_id += 1;
        ack.then_some(next_id)
    };
    for _ in 0..run.opts.inflight {
        ws.feed(Message::text(event(name, id(), now_us(), &run.pad)))
            .await?;
    }
    ws.flush().await?;
    loop {
        let first = tokio::select! {
            biased;
            _ = &mut stopped => return Ok(()),
            m = next_message(&mut ws) => m,
        };
        each_ready(&mut ws, first, |text| {
            let sent = stamp(text)?;
            let now = now_us();
            tally.record(window, sent, now);
            Some(event(name, id(), now, &run.pad))
        })
        .await?;
    }
}

// ---- broadcast ----

async fn broadcast(run: &Arc<Run>) -> Res<String> {
    let receivers: Vec<_> = (0..run.opts.clients)
        .map(|_| {
            let run = run.clone();
            tokio::spawn(async move {
                let mut tally = Tally::new();
                if let Err(e) = receiver(&run, &mut tally).await {
                    run.note_error(&e);
                    tally.errors += 1;
                }
                tally
            })
        })
        .collect();
    let clients = wait_connected(run, run.opts.clients).await?;
    let sender_ws = open_ws(run.opts.port).await?;
    let sent = Arc::new(AtomicU64::new(0));
    let sender = {
        let (run, sent) = (run.clone(), sent.clone());
        tokio::spawn(async move {
            let result = send_broadcasts(&run, sender_ws, clients as u64, &sent).await;
            run.sent_all.fire();
            result
        })
    };
    let cpu = measure(run).await;
    // The sender stops at the window's end; copies still on the way get up to 2 s.
    let _ = tokio::time::timeout(STOP_GRACE, run.sent_all.wait()).await;
    let expected = sent.load(Ordering::SeqCst) * clients as u64;
    let drain = Instant::now() + Duration::from_secs(2);
    while run.delivered.load(Ordering::SeqCst) < expected && Instant::now() < drain {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    run.stop.fire();
    let sender_error = match tokio::time::timeout(STOP_GRACE, sender).await {
        Ok(Ok(Ok(()))) => None,
        Ok(Ok(Err(e))) => Some(e.to_string()),
        _ => Some("the sender did not stop".to_owned()),
    };
    let (tally, abandoned) = collect(receivers).await;
    let delivered = run.delivered.load(Ordering::SeqCst);
    let mut line = common(run, &tally, clients, &cpu);
    line.int("abandoned", abandoned)
        .int("window", run.opts.window)
        .int("broadcasts", sent.load(Ordering::SeqCst))
        .int("delivered", delivered)
        .int("lost", expected.saturating_sub(delivered));
    if let Some(e) = sender_error {
        line.str("sender_error", &e);
    }
    Ok(line.finish())
}

async fn receiver(run: &Run, tally: &mut Tally) -> Res<()> {
    let Some(mut ws) = join(run).await else {
        return Ok(());
    };
    let stopped = run.stop.wait();
    tokio::pin!(stopped);
    tokio::select! {
        _ = run.go.wait() => {}
        _ = &mut stopped => return Ok(()),
    }
    let window = run.window();
    loop {
        let first = tokio::select! {
            biased;
            _ = &mut stopped => return Ok(()),
            m = next_message(&mut ws) => m,
        };
        each_ready(&mut ws, first, |text| {
            let sent = stamp(text)?;
            tally.record(window, sent, now_us());
            let delivered = run.delivered.fetch_add(1, Ordering::Relaxed) + 1;
            if delivered >= run.wake_at.load(Ordering::Relaxed) {
                run.sender_wake.notify_one();
            }
            None
        })
        .await?;
    }
}

/// Sends broadcasts until the window ends, keeping at most `window` broadcasts' worth of
/// copies undelivered across the `receivers`; drains its own copies.
async fn send_broadcasts(run: &Run, mut ws: Ws, receivers: u64, sent: &AtomicU64) -> Res<()> {
    run.go.wait().await;
    let end = run.window().end;
    let window = run.opts.window;
    let mut count = 0u64;
    while now_us() < end {
        // Broadcast `count - window` must be delivered everywhere (in aggregate) before
        // broadcast `count` goes.
        let needed = count.saturating_sub(window - 1) * receivers;
        if count < window || run.delivered.load(Ordering::Relaxed) >= needed {
            ws.feed(Message::text(event("broadcast", None, now_us(), &run.pad)))
                .await?;
            count += 1;
            sent.store(count, Ordering::SeqCst);
            if let Some(first) = ws.next().now_or_never() {
                each_ready(&mut ws, first.map(|r| r.map_err(Error::from)), |_| None).await?;
            } else {
                ws.flush().await?;
            }
            continue;
        }
        run.wake_at.store(needed, Ordering::SeqCst);
        if run.delivered.load(Ordering::SeqCst) >= needed {
            continue;
        }
        tokio::select! {
            _ = run.sender_wake.notified() => {}
            m = next_message(&mut ws) => each_ready(&mut ws, m, |_| None).await?,
            // Copies lost for good would hold the window shut: go on slowly.
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
        run.wake_at.store(u64::MAX, Ordering::SeqCst);
    }
    ws.flush().await?;
    run.sent_all.fire();
    // Keep reading our own copies until the receivers stop, so the server never sees a
    // sender that stopped reading.
    let stopped = run.stop.wait();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            _ = &mut stopped => return Ok(()),
            m = next_message(&mut ws) => each_ready(&mut ws, m, |_| None).await?,
        }
    }
}

// ---- connect ----

async fn connect(run: &Arc<Run>) -> Res<String> {
    let handles: Vec<_> = (0..run.opts.clients)
        .map(|_| {
            let run = run.clone();
            tokio::spawn(async move {
                let mut tally = Tally::new();
                run.go.wait().await;
                let window = run.window();
                while !run.stop.is_set() {
                    let start = now_us();
                    let opened = tokio::time::timeout(HANDSHAKE_LIMIT, open_ws(run.opts.port));
                    match opened.await {
                        Ok(Ok(ws)) => {
                            tally.record(window, start, now_us());
                            drop(ws);
                        }
                        Ok(Err(e)) => {
                            run.note_error(&e);
                            tally.errors += 1;
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        Err(_) => tally.errors += 1,
                    }
                }
                tally
            })
        })
        .collect();
    let cpu = measure(run).await;
    run.stop.fire();
    let (tally, abandoned) = collect(handles).await;
    let mut line = common(run, &tally, run.opts.clients, &cpu);
    Ok(line.int("abandoned", abandoned).finish())
}

// ---- idle memory ----

/// `--clients` WebSocket clients that join `/` and then only answer pings until `stop`.
fn idle_clients(run: &Arc<Run>) -> Vec<tokio::task::JoinHandle<Tally>> {
    (0..run.opts.clients)
        .map(|_| {
            let run = run.clone();
            tokio::spawn(async move {
                let mut tally = Tally::new();
                let Some(mut ws) = join(&run).await else {
                    tally.errors += 1;
                    return tally;
                };
                let stopped = run.stop.wait();
                tokio::pin!(stopped);
                loop {
                    let first = tokio::select! {
                        _ = &mut stopped => break,
                        m = next_message(&mut ws) => m,
                    };
                    if let Err(e) = each_ready(&mut ws, first, |_| None).await {
                        run.note_error(&e);
                        tally.errors += 1;
                        break;
                    }
                }
                tally
            })
        })
        .collect()
}

async fn idle_memory(run: &Arc<Run>) -> Res<String> {
    let pid = run
        .opts
        .server_pid
        .ok_or("idle-memory needs --server-pid")?;
    let before = procfs::rss_kib(pid).ok_or("cannot read the server's VmRSS")?;
    let started = Instant::now();
    let handles = idle_clients(run);
    let clients = wait_connected(run, run.opts.clients).await?;
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(run.opts.settle).await;
    let after = procfs::rss_kib(pid).ok_or("cannot read the server's VmRSS")?;
    tokio::time::sleep(run.opts.duration).await;
    let still = procfs::rss_kib(pid).unwrap_or(after);
    run.stop.fire();
    let (tally, abandoned) = collect(handles).await;
    let per_conn = (after.saturating_sub(before) * 1024) as f64 / clients as f64;
    let mut line = Line::default();
    line.str("scenario", &run.opts.scenario)
        .str("target", &run.opts.target)
        .str("cores", &run.opts.cores)
        .int("clients", clients as u64)
        .int("failed", run.failed.load(Ordering::SeqCst) as u64)
        .int("errors", tally.errors)
        .int("abandoned", abandoned)
        .num("connect_s", connect_secs)
        .num("connects_per_s", clients as f64 / connect_secs)
        .int("rss_before_kib", before)
        .int("rss_after_kib", after)
        .int("rss_held_kib", still)
        .num("bytes_per_conn", per_conn);
    Ok(line.finish())
}

// ---- many idle connections ----

/// Milliseconds since the Unix epoch: the clock shared by the processes of one run.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The source address of client `index`: 127.0.0.1 .. 127.0.0.`sources`, round-robin.
fn source_address(index: usize, sources: usize) -> Ipv4Addr {
    let host = u8::try_from(1 + index % sources).expect("at most 254 sources");
    Ipv4Addr::new(127, 0, 0, host)
}

/// Client `index` of `idle-many`: joins `/` from its source address, then answers pings
/// until `stop`; a connection the server closes counts as dropped.
async fn many_client(run: Arc<Run>, index: usize) {
    let opened = {
        let Ok(_permit) = run.connecting.acquire().await else {
            return;
        };
        let source = source_address(index, run.opts.sources);
        open_ws_from(source, run.opts.port).await
    };
    let mut ws = match opened {
        Ok(ws) => {
            run.ready.fetch_add(1, Ordering::SeqCst);
            ws
        }
        Err(e) => {
            run.note_error(&e);
            run.failed.fetch_add(1, Ordering::SeqCst);
            return;
        }
    };
    let stopped = run.stop.wait();
    tokio::pin!(stopped);
    loop {
        let first = tokio::select! {
            _ = &mut stopped => return,
            m = next_message(&mut ws) => m,
        };
        if let Err(e) = each_ready(&mut ws, first, |_| None).await {
            run.note_error(&e);
            run.dropped.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
}

async fn idle_many(run: &Arc<Run>) -> Res<String> {
    let o = &run.opts;
    let rss = |pid: Option<u32>| pid.and_then(procfs::rss_kib);
    let before = rss(o.server_pid);
    let started_unix = unix_ms();
    let started = Instant::now();
    let handles: Vec<_> = (0..o.clients)
        .map(|i| tokio::spawn(many_client(run.clone(), i)))
        .collect();
    let deadline = started + MANY_CONNECT_LIMIT;
    while run.ready.load(Ordering::SeqCst) + run.failed.load(Ordering::SeqCst) < o.clients
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let connected_unix = unix_ms();
    let connected = run.ready.load(Ordering::SeqCst);
    let failed = run.failed.load(Ordering::SeqCst);
    tokio::time::sleep(o.settle).await;
    let after = rss(o.server_pid);
    let dropped = run.dropped.load(Ordering::SeqCst);
    let held = connected.saturating_sub(dropped);
    let mut line = Line::default();
    line.str("scenario", &o.scenario)
        .str("target", &o.target)
        .int("clients", o.clients as u64)
        .int("held", held as u64)
        .int("failed", failed as u64)
        .int("dropped", dropped as u64)
        // Still connecting when the connect limit ran out.
        .int(
            "timed_out",
            o.clients.saturating_sub(connected + failed) as u64,
        )
        .int("sources", o.sources as u64)
        .int("concurrency", o.concurrency as u64)
        .num("connect_s", connect_secs)
        .num("connects_per_s", connected as f64 / connect_secs)
        .int("started_unix_ms", started_unix)
        .int("connected_unix_ms", connected_unix);
    if let (Some(before), Some(after)) = (before, after) {
        line.int("rss_before_kib", before)
            .int("rss_after_kib", after);
        if held > 0 {
            let per_conn = (after.saturating_sub(before) * 1024) as f64 / held as f64;
            line.num("bytes_per_conn", per_conn);
        }
    }
    if let Some(own) = procfs::rss_kib(std::process::id()) {
        line.int("loadgen_rss_kib", own);
    }
    {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", line.finish())?;
        stdout.flush()?;
    }
    tokio::time::sleep(o.duration).await;
    run.stop.fire();
    let grace = tokio::time::Instant::now() + STOP_GRACE;
    for handle in handles {
        let abort = handle.abort_handle();
        if tokio::time::timeout_at(grace, handle).await.is_err() {
            abort.abort();
        }
    }
    Ok(String::new())
}

// ---- churn ----

/// `--cycles` times: `--clients` WebSocket clients join `/`, idle for `--settle`, and leave;
/// the server's RSS is read with them connected and `--settle` after they left. What matters
/// is where the second reading settles over the cycles (memory given back, or kept).
async fn churn(run: &Arc<Run>) -> Res<String> {
    let pid = run.opts.server_pid.ok_or("churn needs --server-pid")?;
    let before = procfs::rss_kib(pid).ok_or("cannot read the server's VmRSS")?;
    let (mut open, mut closed) = (Vec::new(), Vec::new());
    let mut errors = 0;
    let started = Instant::now();
    for _ in 0..run.opts.cycles {
        let cycle = Run::new(run.opts.clone());
        let handles = idle_clients(&cycle);
        wait_connected(&cycle, cycle.opts.clients).await?;
        tokio::time::sleep(cycle.opts.settle).await;
        open.push(procfs::rss_kib(pid).unwrap_or(0));
        cycle.stop.fire();
        let (tally, _) = collect(handles).await;
        errors += tally.errors + cycle.failed.load(Ordering::SeqCst) as u64;
        tokio::time::sleep(cycle.opts.settle).await;
        closed.push(procfs::rss_kib(pid).unwrap_or(0));
    }
    let list = |v: &[u64]| {
        format!(
            "[{}]",
            v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
        )
    };
    let mut line = Line::default();
    line.str("scenario", &run.opts.scenario)
        .str("target", &run.opts.target)
        .int("clients", run.opts.clients as u64)
        .int("cycles", run.opts.cycles as u64)
        .int("errors", errors)
        .num("seconds", started.elapsed().as_secs_f64())
        .int("rss_before_kib", before)
        .raw("rss_open_kib", &list(&open))
        .raw("rss_closed_kib", &list(&closed))
        .int("rss_settled_kib", closed.last().copied().unwrap_or(before));
    Ok(line.finish())
}

// ---- long-polling ----

/// One keep-alive HTTP/1.1 connection.
struct Http {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Http {
    async fn connect(port: u16) -> Res<Http> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        stream.set_zero_linger()?;
        Ok(Http {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends a GET (`body` None) or a POST, returns the body of a `200`.
    async fn request(&mut self, path: &str, body: Option<&str>) -> Res<String> {
        let mut request = String::with_capacity(160 + body.map_or(0, str::len));
        match body {
            None => {
                let _ = write!(request, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
            }
            Some(body) => {
                let _ = write!(
                    request,
                    "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
        }
        self.stream.write_all(request.as_bytes()).await?;
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err("connection closed by the server".into());
            }
        };
        let head = std::str::from_utf8(&self.buf[..end])?;
        let status: u16 = head.get(9..12).ok_or("bad status line")?.parse()?;
        let length: usize = head
            .split("\r\n")
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        let total = end + 4 + length;
        while self.buf.len() < total {
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err("connection closed inside a body".into());
            }
        }
        let body = String::from_utf8(self.buf[end + 4..total].to_vec())?;
        self.buf.drain(..total);
        if status != 200 {
            return Err(format!("HTTP {status}: {body}").into());
        }
        Ok(body)
    }
}

async fn polling(run: &Arc<Run>) -> Res<String> {
    let handles: Vec<_> = (0..run.opts.clients)
        .map(|_| {
            let run = run.clone();
            tokio::spawn(async move {
                let mut tally = Tally::new();
                if let Err(e) = polling_client(&run, &mut tally).await {
                    run.note_error(&e);
                    tally.errors += 1;
                }
                tally
            })
        })
        .collect();
    let clients = wait_connected(run, run.opts.clients).await?;
    let cpu = measure(run).await;
    run.stop.fire();
    let (tally, abandoned) = collect(handles).await;
    let mut line = common(run, &tally, clients, &cpu);
    line.int("requests", tally.requests);
    Ok(line.int("abandoned", abandoned).finish())
}

/// Handshake, `40`, the connect reply; then the closed loop of POSTs and GETs.
async fn polling_open(port: u16) -> Res<(Http, Http, String)> {
    let mut get = Http::connect(port).await?;
    let open = get
        .request("/socket.io/?EIO=4&transport=polling", None)
        .await?;
    let sid = open_sid(&open).ok_or("no sid in the open packet")?;
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let mut post = Http::connect(port).await?;
    post.request(&path, Some("40")).await?;
    loop {
        let body = get.request(&path, None).await?;
        if split_payload(&body).any(|p| p.starts_with("40")) {
            return Ok((get, post, path));
        }
    }
}

async fn polling_client(run: &Run, tally: &mut Tally) -> Res<()> {
    let opened = {
        let _permit = run.connecting.acquire().await?;
        polling_open(run.opts.port).await
    };
    let (get, post, path) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            run.failed.fetch_add(1, Ordering::SeqCst);
            return Err(e);
        }
    };
    run.ready.fetch_add(1, Ordering::SeqCst);
    let stopped = run.stop.wait();
    tokio::pin!(stopped);
    tokio::select! {
        _ = run.go.wait() => {}
        _ = &mut stopped => return Ok(()),
    }
    let window = run.window();
    let mut out: Vec<String> = (0..run.opts.inflight)
        .map(|_| event("echo", None, now_us(), &run.pad))
        .collect();
    // Without affinity: a keep-alive connection per port for GETs and one for POSTs, and
    // each request on the next port in turn.
    let ports: Vec<u16> = std::iter::once(run.opts.port)
        .chain(run.opts.spread.iter().copied())
        .collect();
    let mut gets: Vec<Option<Http>> = ports.iter().map(|_| None).collect();
    let mut posts: Vec<Option<Http>> = ports.iter().map(|_| None).collect();
    gets[0] = Some(get);
    posts[0] = Some(post);
    let mut turn = 0usize;
    loop {
        let body = out.join("\x1e");
        out.clear();
        let (g, p) = (turn % ports.len(), (turn + 1) % ports.len());
        turn += 1;
        let mut get = match gets[g].take() {
            Some(http) => http,
            None => Http::connect(ports[g]).await?,
        };
        let mut post = match posts[p].take() {
            Some(http) => http,
            None => Http::connect(ports[p]).await?,
        };
        let requests = if body.is_empty() { 1 } else { 2 };
        let exchange = async {
            if body.is_empty() {
                get.request(&path, None).await
            } else {
                let (got, posted) =
                    tokio::join!(get.request(&path, None), post.request(&path, Some(&body)));
                posted?;
                got
            }
        };
        let received = tokio::select! {
            biased;
            _ = &mut stopped => return Ok(()),
            r = exchange => r?,
        };
        gets[g] = Some(get);
        posts[p] = Some(post);
        if window.contains(now_us()) {
            tally.requests += requests;
        }
        for packet in split_payload(&received) {
            if packet == "2" {
                out.push("3".to_owned());
            } else if packet == "1" {
                return Err("session closed by the server".into());
            } else if let Some(sent) = stamp(packet) {
                let now = now_us();
                tally.record(window, sent, now);
                out.push(event("echo", None, now, &run.pad));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_taken_round_robin_from_127_0_0_1() {
        let picked: Vec<_> = (0..7).map(|i| source_address(i, 3)).collect();
        let host = |h| Ipv4Addr::new(127, 0, 0, h);
        assert_eq!(
            picked,
            [
                host(1),
                host(2),
                host(3),
                host(1),
                host(2),
                host(3),
                host(1)
            ]
        );
        assert_eq!(source_address(253, MAX_SOURCES), host(254));
        assert_eq!(source_address(254, MAX_SOURCES), host(1));
        assert_eq!(source_address(5, 1), Ipv4Addr::LOCALHOST);
    }
}
