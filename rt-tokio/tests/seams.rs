//! The seams that moving sessions onto their connections' tasks (issue #13) makes concurrent,
//! on a real tokio runtime with two worker threads and real TCP connections on 127.0.0.1:
//! broadcasts racing room changes made from other threads, a long-polling session upgraded
//! while broadcasts keep coming, emits to one socket from many threads, and the bounds of a
//! session's outgoing queue and of its mailbox under both overflow policies over a real
//! WebSocket.
//!
//! A session opened over WebSocket runs on its connection's task; a long-polling session
//! on the machine's task until it is upgraded. Every wait is for a condition and bounded by
//! a timeout that fails the test by name.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use futures::StreamExt;
use tokio::net::TcpStream;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};
use volley::driver::test_support::{Client, HttpResponse};
use volley::testing::{ConnectOptions, TestClient, TransportKind};
use volley::{Data, DisconnectReason, EmitError, Io, Room, Socket};
use volley_core::SocketId;
use volley_core::engine::OverflowPolicy;
use volley_tokio::TokioRuntime;
use volley_tokio::testing::TcpConnector;

/// Every test ends within this.
const TEST_LIMIT: Duration = Duration::from_secs(10);

/// Runs `fut`, failing the test with `what` if it takes longer than `limit`.
async fn within<T>(limit: Duration, what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {limit:?}: {what}"),
    }
}

/// A server listening on 127.0.0.1 (port chosen by the system), with each socket of `/`
/// handed to the test as it connects, and the reasons sockets left.
struct Server {
    io: Io<TokioRuntime>,
    addr: SocketAddr,
    connected: mpsc::UnboundedReceiver<Socket>,
    disconnected: mpsc::UnboundedReceiver<(SocketId, DisconnectReason)>,
    accepting: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    async fn start(builder: volley::Builder) -> Server {
        let io = builder.build(TokioRuntime::current());
        let (tx, connected) = mpsc::unbounded_channel();
        let (gone, disconnected) = mpsc::unbounded_channel();
        let main = io.ns("/");
        main.on_connection(move |s: Socket| {
            let _ = tx.send(s);
            async {}
        })
        .on_disconnect(move |s: Socket, reason: DisconnectReason| {
            let _ = gone.send((s.id(), reason));
            async {}
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepting = tokio::spawn(volley_tokio::serve(listener, io.driver().clone()));
        Server {
            io,
            addr,
            connected,
            disconnected,
            accepting,
        }
    }

    /// The server's handle on the next socket that connected.
    async fn next_socket(&mut self) -> Socket {
        within(
            Duration::from_secs(5),
            "a socket's connection handler",
            self.connected.recv(),
        )
        .await
        .expect("the server is running")
    }

    /// A test client of `/` over a WebSocket, and the server's handle on its socket.
    async fn client(&mut self) -> (TestClient, Socket) {
        let options = ConnectOptions::new().transport(TransportKind::WebSocket);
        let runtime = TokioRuntime::current();
        let connect =
            TestClient::connect_over(TcpConnector::new(self.addr), &runtime, "/", options);
        let client = within(Duration::from_secs(5), "a client's connect", connect)
            .await
            .expect("connected");
        let socket = self.next_socket().await;
        assert_eq!(
            socket.id(),
            client.id(),
            "sockets connect one at a time here"
        );
        (client, socket)
    }

    /// A raw HTTP/1.1 connection to the server.
    async fn http(&self) -> Client<Compat<TcpStream>> {
        let stream = TcpStream::connect(self.addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        Client::new(stream.compat())
    }

    /// A WebSocket for `target`, the upgrade request written by hand.
    async fn websocket(&self, target: &str) -> WebSocketStream<Compat<TcpStream>> {
        let mut client = self.http().await;
        let headers = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                       Sec-WebSocket-Version: 13\r\n";
        let response = client
            .request("GET", target, headers, b"")
            .await
            .expect("upgrade response");
        assert_eq!(response.status, 101, "{response:?}");
        client.into_websocket().await
    }

    /// Closes the server and waits for its accept loop to end.
    async fn stop(self) {
        within(Duration::from_secs(5), "the server's close", async {
            self.io.close().await;
            self.accepting.await.unwrap().unwrap();
        })
        .await;
    }
}

/// Runs `f` on an OS thread of its own; its result comes through the receiver, which fails
/// if `f` panicked. The thread is never joined, so a thread that hangs fails the test's
/// timeout instead of holding the runtime's shutdown.
fn thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::sync::oneshot::Receiver<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx
}

/// Queues large enough that no test but the overflow one meets their bound: these tests are
/// about order and membership, not about slow clients.
fn roomy() -> volley::Builder {
    volley::builder()
        .max_buffered_packets(1 << 20, OverflowPolicy::Close)
        .max_buffered_bytes(256 << 20)
}

/// The event name and arguments of a text Socket.IO EVENT packet of `/` (`2[...]`, without
/// the Engine.IO `4`), or `None` for any other packet.
fn event(packet: &str) -> Option<(String, Vec<serde_json::Value>)> {
    let args = packet.strip_prefix('2')?;
    let mut args: Vec<serde_json::Value> = serde_json::from_str(args).ok()?;
    let name = args.remove(0).as_str()?.to_owned();
    Some((name, args))
}

// 1. Broadcasts racing joins and leaves.

const CLIENTS: usize = 40;
const BROADCASTS: u64 = 300;
/// Churn threads, each moving its own share of the churning sockets.
const CHURNERS: usize = 4;
/// A churn thread stops after this many rounds even if the broadcasts are not done.
const MAX_ROUNDS: usize = 100_000;

/// Moves each socket of `part` into room `r` and out again, round after round, until `done`
/// (ending out of it), with `Socket::join`/`leave` or, `by_operator`, with
/// `io.in_(id).sockets_join`/`sockets_leave`. After each move it reads the sockets' rooms
/// back: no other thread moves them, so they must show this thread's last move. Reports on
/// `started` after its first join and leave. Returns the rounds made.
fn churn(
    rt: Handle,
    io: Io<TokioRuntime>,
    part: Vec<Socket>,
    by_operator: bool,
    started: mpsc::UnboundedSender<()>,
    done: Arc<AtomicBool>,
) -> usize {
    let r = Room::from("r");
    let mut rounds = 0;
    loop {
        let join = rounds % 2 == 0;
        for s in &part {
            match (by_operator, join) {
                (false, true) => s.join("r"),
                (false, false) => s.leave("r"),
                (true, true) => io.in_(s.id()).sockets_join(["r"]),
                (true, false) => io.in_(s.id()).sockets_leave(["r"]),
            }
        }
        for s in &part {
            let rooms = rt.block_on(s.rooms());
            assert_eq!(
                rooms.contains(&r),
                join,
                "socket {} after {} in round {rounds}: {rooms:?}",
                s.id(),
                if join { "a join" } else { "a leave" },
            );
        }
        rounds += 1;
        if rounds == 2 {
            let _ = started.send(());
        }
        if !join && (done.load(Ordering::SeqCst) || rounds >= MAX_ROUNDS) {
            return rounds;
        }
    }
}

/// Half the sockets are in room `r` throughout; the other half are moved in and out of it
/// from four OS threads (two through `Socket`, two through the broadcast operator) while a
/// task broadcasts 300 numbered events to `r`. Each client gets each number at most once and
/// in increasing order, the stable ones get all of them, and the room ends up holding
/// exactly the stable sockets (every churn thread's last move was a leave).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_racing_joins_and_leaves() {
    let mut server = Server::start(roomy()).await;
    let io = server.io.clone();
    within(TEST_LIMIT, "the scenario", async {
        let mut clients = Vec::new();
        let mut sockets = Vec::new();
        for _ in 0..CLIENTS {
            let (client, socket) = server.client().await;
            clients.push(client);
            sockets.push(socket);
        }
        let (stable, moving) = sockets.split_at(CLIENTS / 2);
        for s in stable {
            s.join("r");
        }
        for s in stable {
            assert!(s.rooms().await.contains(&Room::from("r")), "{}", s.id());
        }
        let (started, mut churning) = mpsc::unbounded_channel();
        let done = Arc::new(AtomicBool::new(false));
        let churners: Vec<_> = moving
            .chunks(moving.len() / CHURNERS)
            .enumerate()
            .map(|(i, part)| {
                let (rt, io, part) = (Handle::current(), io.clone(), part.to_vec());
                let (started, done) = (started.clone(), done.clone());
                thread(move || churn(rt, io, part, i % 2 == 1, started, done))
            })
            .collect();
        // Only the threads hold it now: one that fails before reporting ends the wait.
        drop(started);
        for _ in 0..CHURNERS {
            churning.recv().await.expect("a churn thread failed");
        }
        let sender = {
            let io = io.clone();
            tokio::spawn(async move {
                for n in 0..BROADCASTS {
                    io.to("r").emit("n", &n).unwrap();
                    // A round trip now and then spreads the broadcasts over the churn.
                    if n % 2 == 1 {
                        let _ = io.socket_count().await;
                    }
                }
                io.emit("end", &()).unwrap();
            })
        };
        sender.await.unwrap();
        done.store(true, Ordering::SeqCst);
        let mut rounds = Vec::new();
        for t in churners {
            rounds.push(t.await.expect("a churn thread failed"));
        }
        assert!(
            rounds.iter().all(|r| *r < MAX_ROUNDS),
            "the broadcasts did not end while the threads churned: {rounds:?}"
        );

        let in_room: HashSet<SocketId> = io
            .in_("r")
            .fetch_sockets()
            .await
            .iter()
            .map(|s| s.id())
            .collect();
        let expected: HashSet<SocketId> = stable.iter().map(Socket::id).collect();
        assert_eq!(in_room, expected, "the room after the churn");

        let mut churned = 0u64;
        for (i, client) in clients.iter_mut().enumerate() {
            let mut got = Vec::new();
            within(Duration::from_secs(5), "the end marker", async {
                loop {
                    let ev = client.recv().await.expect("still connected");
                    match ev.event.as_str() {
                        "n" => got.push(ev.data::<u64>().unwrap()),
                        "end" => break,
                        other => panic!("client {i}: unexpected event {other}"),
                    }
                }
            })
            .await;
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "client {i}: a number twice or out of order: {got:?}"
            );
            if i < CLIENTS / 2 {
                assert_eq!(
                    got,
                    (0..BROADCASTS).collect::<Vec<_>>(),
                    "client {i} was in the room throughout"
                );
            } else {
                churned += got.len() as u64;
            }
        }
        // Otherwise the churn did not overlap the broadcasts and proved nothing.
        let most = BROADCASTS * (CLIENTS / 2) as u64;
        assert!(
            0 < churned && churned < most,
            "churning clients got {churned} of {most} possible"
        );
    })
    .await;
    server.stop().await;
}

// 2. A long-polling session upgraded while broadcasts keep coming.

const UPGRADING: usize = 8;
/// The broadcaster stops after this many events even if not every client upgraded.
const MAX_EVENTS: u64 = 200_000;

/// What one upgrading client saw.
struct Upgraded {
    /// The socket id from the CONNECT answer.
    id: String,
    /// The numbers received, over polling then over the WebSocket.
    got: Vec<u64>,
    /// How many came over polling.
    over_polling: usize,
    /// Every number from this one on was broadcast after the socket had joined `/`.
    bound: u64,
    /// The WebSocket, kept open until the server was asked about the upgrade.
    ws: Option<WebSocketStream<Compat<TcpStream>>>,
}

/// The Engine.IO packets of a long-polling answer.
fn packets(body: &str) -> Vec<String> {
    body.split('\x1e').map(str::to_owned).collect()
}

/// Reads one Engine.IO packet of `/` into `seen`: numbers, the CONNECT answer (the socket id,
/// and the broadcast count at that time), and whether it was the end marker. Pings and noops
/// pass; anything else fails the test.
fn take(packet: &str, client: &mut Upgraded, sent: &AtomicU64, pings: &mut usize) -> bool {
    if packet == "2" {
        *pings += 1;
        return false;
    }
    if packet == "6" {
        return false;
    }
    let sio = packet
        .strip_prefix('4')
        .unwrap_or_else(|| panic!("{packet:?}"));
    if let Some(answer) = sio.strip_prefix('0') {
        let answer: serde_json::Value = serde_json::from_str(answer).unwrap();
        client.id = answer["sid"].as_str().expect("a socket id").to_owned();
        // Broadcasts numbered from here on started after this socket had joined.
        client.bound = sent.load(Ordering::SeqCst) + 1;
        return false;
    }
    match event(sio) {
        Some((name, args)) if name == "n" => {
            client.got.push(args[0].as_u64().expect("a number"));
            false
        }
        Some((name, _)) if name == "end" => true,
        _ => panic!("unexpected packet {packet:?}"),
    }
}

/// Opens the WebSocket of session `sid` and probes it (`2probe`, `3probe`) while a poll is
/// parked on `poll`, as the official client does before it upgrades: the WebSocket, and the
/// answer to the parked poll.
async fn probe(
    server: &Server,
    poll: &mut Client<Compat<TcpStream>>,
    sid: &str,
) -> (WebSocketStream<Compat<TcpStream>>, HttpResponse) {
    let polling = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let mut ws = server
        .websocket(&format!("/socket.io/?EIO=4&transport=websocket&sid={sid}"))
        .await;
    let (parked, ()) = tokio::join!(poll.get(&polling), async {
        ws.send(Message::text("2probe")).await.unwrap();
        let answer = ws.next().await.expect("a probe answer").unwrap();
        assert_eq!(answer, Message::text("3probe"));
    });
    (ws, parked.unwrap())
}

/// A session opened over long-polling by hand: a connection for its polls, one for its
/// POSTs, its id, and its polling target.
async fn polling_session(
    server: &Server,
) -> (
    Client<Compat<TcpStream>>,
    Client<Compat<TcpStream>>,
    String,
    String,
) {
    let base = "/socket.io/?EIO=4&transport=polling";
    let mut poll = server.http().await;
    let post = server.http().await;
    let open = poll.get(base).await.unwrap();
    assert_eq!(open.status, 200, "{open:?}");
    let open: serde_json::Value =
        serde_json::from_str(open.text().strip_prefix('0').expect("an open packet")).unwrap();
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    let sid = open["sid"].as_str().unwrap().to_owned();
    let polling = format!("{base}&sid={sid}");
    (poll, post, sid, polling)
}

/// A client that connects over long-polling, gets at least one broadcast that way, then
/// upgrades as the official client does (probe with a poll parked, `5` once that poll
/// returned) and reads over the WebSocket until the end marker. Counts itself in `upgraded`
/// at its first number over the WebSocket.
async fn upgrading_client(server: &Server, sent: &AtomicU64, upgraded: &AtomicUsize) -> Upgraded {
    let (mut poll, mut post, sid, polling) = polling_session(server).await;
    let sent_ok = post.post(&polling, b"40").await.unwrap();
    assert_eq!(sent_ok.text(), "ok");

    let mut client = Upgraded {
        id: String::new(),
        got: Vec::new(),
        over_polling: 0,
        bound: 0,
        ws: None,
    };
    let mut pings = 0;
    while client.id.is_empty() || client.got.is_empty() {
        let answer = poll.get(&polling).await.unwrap();
        assert_eq!(answer.status, 200, "{answer:?}");
        for p in packets(answer.text()) {
            assert!(!take(&p, &mut client, sent, &mut pings), "end too early");
        }
        for _ in 0..std::mem::take(&mut pings) {
            post.post(&polling, b"3").await.unwrap();
        }
    }

    // The probe, with a poll parked meanwhile; the server may answer it with data or a noop.
    let (mut ws, parked) = probe(server, &mut poll, &sid).await;
    assert_eq!(parked.status, 200, "{parked:?}");
    for p in packets(parked.text()) {
        assert!(!take(&p, &mut client, sent, &mut pings), "end too early");
    }
    client.over_polling = client.got.len();
    ws.send(Message::text("5")).await.unwrap();

    loop {
        let message = ws.next().await.expect("the end marker").unwrap();
        let text = message.to_text().expect("text frames only");
        let before = client.got.len();
        if take(text, &mut client, sent, &mut pings) {
            break;
        }
        if before == client.over_polling && client.got.len() > before {
            upgraded.fetch_add(1, Ordering::SeqCst);
        }
        if std::mem::take(&mut pings) > 0 {
            ws.send(Message::text("3")).await.unwrap();
        }
    }
    // Polling is over for this session.
    let refused = poll.get(&polling).await.unwrap();
    assert_eq!(refused.status, 400, "{refused:?}");
    client.ws = Some(ws);
    client
}

/// Eight clients connect over long-polling and upgrade to WebSocket while another thread
/// broadcasts numbered events to `/` the whole time: each client gets every number from some
/// point no later than its joining up to the last one, contiguous, in order, once, part of
/// them over polling and part over the WebSocket; and the server says each upgraded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_upgrade_under_broadcast() {
    let mut server = Server::start(roomy()).await;
    let io = server.io.clone();
    let sent = Arc::new(AtomicU64::new(0));
    let upgraded = Arc::new(AtomicUsize::new(0));
    let broadcaster = {
        let (io, sent, upgraded) = (io.clone(), sent.clone(), upgraded.clone());
        let rt = Handle::current();
        thread(move || {
            let mut n = 0;
            while upgraded.load(Ordering::SeqCst) < UPGRADING && n < MAX_EVENTS {
                io.emit("n", &n).unwrap();
                n += 1;
                sent.store(n, Ordering::SeqCst);
                // One round trip per event keeps the pace at what the server handles.
                rt.block_on(io.socket_count());
            }
            io.emit("end", &()).unwrap();
            n
        })
    };
    let (results, total) = within(TEST_LIMIT, "the scenario", async {
        let clients = (0..UPGRADING).map(|_| upgrading_client(&server, &sent, &upgraded));
        let results = futures::future::join_all(clients).await;
        (results, broadcaster.await.expect("the broadcaster failed"))
    })
    .await;
    assert!(total < MAX_EVENTS, "not every client upgraded in time");

    let mut sockets = HashMap::new();
    for _ in 0..UPGRADING {
        let s = server.next_socket().await;
        sockets.insert(s.id().to_string(), s);
    }
    for (i, c) in results.iter().enumerate() {
        let first = c.got[0];
        assert!(
            c.got.windows(2).all(|w| w[1] == w[0] + 1),
            "client {i}: a number lost, twice or out of order: {:?}",
            c.got
        );
        assert!(
            first <= c.bound,
            "client {i} missed numbers broadcast after it joined: first {first}, bound {}",
            c.bound
        );
        assert_eq!(c.got.last(), Some(&(total - 1)), "client {i}: the last one");
        assert!(
            0 < c.over_polling && c.over_polling < c.got.len(),
            "client {i}: {} of {} over polling",
            c.over_polling,
            c.got.len()
        );
        let socket = sockets.get(&c.id).expect("the client's socket");
        let did = within(
            Duration::from_secs(2),
            "upgraded()",
            socket.conn().upgraded(),
        );
        assert!(did.await, "client {i}: the server saw no upgrade");
        assert_eq!(socket.conn().transport().await, Some("websocket"));
    }
    // Gone before the close, which would otherwise linger for their close frames.
    drop(results);
    server.stop().await;
}

/// Connects a client to `/` over long-polling and upgrades it to WebSocket as the official
/// client does; returns its WebSocket, over which it is connected. With `admit`, the
/// connect is still waiting for the connection middleware at the upgrade: `admit` lets it
/// through once the upgrade packet is sent, and the CONNECT answer comes over the WebSocket.
async fn upgraded_client(
    server: &Server,
    admit: Option<tokio::sync::watch::Sender<bool>>,
) -> WebSocketStream<Compat<TcpStream>> {
    let (mut poll, mut post, sid, polling) = polling_session(server).await;
    assert_eq!(post.post(&polling, b"40").await.unwrap().text(), "ok");
    if admit.is_none() {
        let connected = poll.get(&polling).await.unwrap();
        assert!(connected.text().starts_with("40{"), "{connected:?}");
    }
    let (mut ws, parked) = probe(server, &mut poll, &sid).await;
    assert_eq!(parked.text(), "6");
    ws.send(Message::text("5")).await.unwrap();
    if let Some(admit) = admit {
        admit.send(true).unwrap();
        let connected = ws.next().await.expect("the CONNECT answer").unwrap();
        assert!(
            connected.to_text().unwrap().starts_with("40{"),
            "{connected:?}"
        );
    }
    ws
}

/// Sends `echo` with acknowledgement `id` over `ws` and waits for its answer.
async fn echo_over(ws: &mut WebSocketStream<Compat<TcpStream>>, id: u32) {
    ws.send(Message::text(format!("42{id}[\"echo\",{id}]")))
        .await
        .unwrap();
    loop {
        let message = ws.next().await.expect("an answer").unwrap();
        let text = message.to_text().expect("text frames only");
        if text == "2" {
            ws.send(Message::text("3")).await.unwrap();
            continue;
        }
        assert_eq!(text, format!("43{id}[{id}]"));
        return;
    }
}

/// How the client under test reaches its WebSocket.
#[derive(Clone, Copy, PartialEq)]
enum Way {
    /// Long-polling, then an upgrade.
    Upgrade,
    /// The same, its connect still in the connection middleware at the upgrade.
    UpgradeConnectPending,
    /// A 2.x client (Engine.IO 3, Socket.IO protocol 4) straight over WebSocket: the
    /// server connects it to `/` without being asked.
    WebSocketV4,
}

/// A 2.x client over WebSocket, connected to `/`.
async fn websocket_v4_client(server: &Server) -> WebSocketStream<Compat<TcpStream>> {
    let mut ws = server
        .websocket("/socket.io/?EIO=3&transport=websocket")
        .await;
    let open = ws.next().await.expect("an open packet").unwrap();
    assert!(open.to_text().unwrap().starts_with("0{"), "{open:?}");
    let connected = ws.next().await.expect("the CONNECT").unwrap();
    assert_eq!(connected, Message::text("40"));
    ws
}

/// Brings a client to its WebSocket `way`, then checks that its events are answered while
/// the machine's task is held up by a handler of a session still on it.
async fn session_runs_on_its_websockets_task(way: Way) {
    let pending_connect = way == Way::UpgradeConnectPending;
    let server = Server::start(roomy().allow_eio3(true)).await;
    let (mut entered, release) = holding_handler(&server);
    let (admit, admitted) = tokio::sync::watch::channel(!pending_connect);
    server.io.use_connect(move |ctx, next| {
        let mut admitted = admitted.clone();
        async move {
            let _ = admitted.wait_for(|open| *open).await;
            next.run(ctx).await
        }
    });
    server
        .io
        .ns("/")
        .on("echo", |Data(n): Data<u32>| async move { n });
    let mut ws = match way {
        Way::WebSocketV4 => websocket_v4_client(&server).await,
        _ => {
            let upgrade = upgraded_client(&server, pending_connect.then_some(admit));
            within(Duration::from_secs(5), "the upgrade", upgrade).await
        }
    };
    // Answered once the session moved (the connection reads nothing while it asks).
    let first = echo_over(&mut ws, 1);
    within(Duration::from_secs(5), "an echo after the upgrade", first).await;

    hold_the_machine(&server, &mut entered).await;
    let second = echo_over(&mut ws, 2);
    within(
        Duration::from_secs(5),
        "an echo while the machine's task is held",
        second,
    )
    .await;
    release.send(()).unwrap();
    drop(ws);
    server.stop().await;
}

/// Registers a `hold` handler on `/`. Started inline on the task that runs its session (the
/// machine's task, for a JSONP long-polling session), it keeps that task's thread until the
/// test sends on the returned sender (the worker hands its other tasks on meanwhile), at
/// most for the test's limit: a failing test ends rather than hangs. The receiver learns
/// when it started.
fn holding_handler(server: &Server) -> (mpsc::UnboundedReceiver<()>, std::sync::mpsc::Sender<()>) {
    let (entered_tx, entered) = mpsc::unbounded_channel();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = Arc::new(std::sync::Mutex::new(held));
    server.io.ns("/").on("hold", move |_s: Socket| {
        let (entered_tx, held) = (entered_tx.clone(), held.clone());
        async move {
            let _ = entered_tx.send(());
            tokio::task::block_in_place(|| {
                let _ = held.lock().unwrap().recv_timeout(TEST_LIMIT);
            });
        }
    });
    (entered, release)
}

/// The payload of a JSONP answer, `___eio[0]("<payload>");`.
fn jsonp_payload(answer: &HttpResponse) -> String {
    let text = answer.text();
    let literal = text
        .strip_prefix("___eio[0](")
        .and_then(|t| t.strip_suffix(");"))
        .unwrap_or_else(|| panic!("a JSONP answer: {text}"));
    serde_json::from_str(literal).expect("a string literal")
}

/// A JSONP long-polling client of `/` (a session the machine's task keeps: sessions over
/// XHR long-polling and WebSocket run elsewhere) sends `hold` (see [`holding_handler`]):
/// once this returns, the machine's task is held by a handler, with nothing cast to it.
async fn hold_the_machine(server: &Server, entered: &mut mpsc::UnboundedReceiver<()>) {
    let base = "/socket.io/?EIO=4&transport=polling&j=0";
    let mut polling = server.http().await;
    let open = jsonp_payload(&polling.get(base).await.unwrap());
    let open: serde_json::Value =
        serde_json::from_str(open.strip_prefix('0').expect("an open packet")).unwrap();
    let target = format!("{base}&sid={}", open["sid"].as_str().unwrap());
    assert_eq!(polling.post(&target, b"d=40").await.unwrap().text(), "ok");
    let connected = jsonp_payload(&polling.get(&target).await.unwrap());
    assert!(connected.starts_with("40{"), "{connected}");
    let hold = polling
        .post(&target, b"d=42%5B%22hold%22%5D")
        .await
        .unwrap();
    assert_eq!(hold.text(), "ok");
    within(
        Duration::from_secs(5),
        "the holding handler",
        entered.recv(),
    )
    .await;
}

/// Once upgraded, a long-polling session runs on its WebSocket's task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_session_no_longer_needs_the_machines_task() {
    session_runs_on_its_websockets_task(Way::Upgrade).await;
}

/// A session whose connect was still in the middleware at the upgrade moves once the
/// connect is settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_session_moves_once_its_connect_is_settled() {
    session_runs_on_its_websockets_task(Way::UpgradeConnectPending).await;
}

/// A 2.x client's session over WebSocket moves once its implicit connect to `/` is settled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protocol_4_session_moves_once_connected() {
    session_runs_on_its_websockets_task(Way::WebSocketV4).await;
}

/// An emit from another task reaches a session run on its WebSocket's task straight through
/// the session's mailbox while nothing cast to the machine's task is pending: it is queued
/// and delivered while the machine's task is held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_emit_from_another_task_does_not_need_the_machines_task() {
    let mut server = Server::start(roomy()).await;
    let (mut entered, release) = holding_handler(&server);
    within(TEST_LIMIT, "the scenario", async {
        let (mut ws, socket) = silent_client(&mut server).await;
        hold_the_machine(&server, &mut entered).await;
        let emitted = within(
            Duration::from_secs(5),
            "an emit while the machine's task is held",
            socket.emit_checked("n", &1),
        )
        .await;
        assert!(emitted.is_ok(), "{emitted:?}");
        let packet = within(
            Duration::from_secs(5),
            "the emit's packet",
            next_packet(&mut ws),
        )
        .await
        .expect("a packet");
        let (name, args) = event(&packet).unwrap_or_else(|| panic!("{packet}"));
        assert_eq!((name.as_str(), args), ("n", vec![serde_json::json!(1)]));
        release.send(()).unwrap();
    })
    .await;
    server.stop().await;
}

/// A long-polling session runs in a slot of its own: while the machine's task is held, its
/// requests are still answered (its connect, an event with an acknowledgement, a parked
/// poll answered by an emit from another task), and it upgrades to a WebSocket, which then
/// carries its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_session_needs_no_machine_to_poll_or_upgrade() {
    let mut server = Server::start(roomy()).await;
    let (mut entered, release) = holding_handler(&server);
    server
        .io
        .ns("/")
        .on("echo", |Data(n): Data<u32>| async move { n });
    within(TEST_LIMIT, "the scenario", async {
        let (mut poll, mut post, sid, polling) = polling_session(&server).await;
        hold_the_machine(&server, &mut entered).await;

        // Its connect.
        let held = Duration::from_secs(5);
        let sent = within(held, "a POST", post.post(&polling, b"40")).await;
        assert_eq!(sent.unwrap().text(), "ok");
        let connected = within(held, "the CONNECT answer", poll.get(&polling)).await;
        let connected = connected.unwrap();
        let connected: serde_json::Value = serde_json::from_str(
            connected
                .text()
                .strip_prefix("40")
                .expect("a CONNECT answer"),
        )
        .unwrap();
        // The holding client's socket connected first.
        let mut socket = server.next_socket().await;
        if Some(socket.id().to_string().as_str()) != connected["sid"].as_str() {
            socket = server.next_socket().await;
        }
        assert_eq!(
            Some(socket.id().to_string().as_str()),
            connected["sid"].as_str()
        );
        // An event with an acknowledgement.
        let sent = within(held, "a POST", post.post(&polling, b"421[\"echo\",7]")).await;
        assert_eq!(sent.unwrap().text(), "ok");
        let acked = within(held, "the acknowledgement", poll.get(&polling)).await;
        assert_eq!(acked.unwrap().text(), "431[7]");
        // A parked poll, answered by an emit from this task.
        let (answer, emitted) = within(held, "a poll answered by an emit", async {
            tokio::join!(poll.get(&polling), socket.emit_checked("n", &1))
        })
        .await;
        assert!(emitted.is_ok(), "{emitted:?}");
        assert_eq!(answer.unwrap().text(), "42[\"n\",1]");

        // The upgrade: the session goes to the WebSocket's task.
        let (mut ws, parked) = within(held, "the probe", probe(&server, &mut poll, &sid)).await;
        assert_eq!(parked.status, 200, "{parked:?}");
        ws.send(Message::text("5")).await.unwrap();
        within(held, "an echo over the WebSocket", echo_over(&mut ws, 8)).await;
        release.send(()).unwrap();
        // The machine's task answers for a session that moved on, as the session would.
        let refused = within(held, "a poll after the upgrade", poll.get(&polling)).await;
        assert_eq!(refused.unwrap().status, 400);
    })
    .await;
    server.stop().await;
}

/// An adapter that follows the rooms as they are created, as the sharded Redis adapter's
/// dynamic modes do to subscribe per room; it records each room it is told was created,
/// private ones as `#room`.
struct RoomLog(Arc<std::sync::Mutex<Vec<String>>>);

impl volley::adapter::Adapter for RoomLog {
    fn start(&self, _node: volley_core::NodeId, _inbox: volley::adapter::Inbox) {}

    fn publish(
        &self,
        _to: Option<volley_core::NodeId>,
        _message: volley_core::cluster::ClusterMessage,
    ) {
    }

    fn server_count(&self) -> usize {
        1
    }

    fn tracks_rooms(&self) -> bool {
        true
    }

    fn room_changed(&self, _nsp: &str, change: &volley_core::socketio::RoomChange) {
        if change.created {
            let private = if change.private { "#" } else { "" };
            let room = format!("{private}{}", change.room.as_str());
            self.0.lock().unwrap().push(room);
        }
    }
}

/// A socket that connects over a session run on its WebSocket's task has its own room
/// reported to the adapter before its client gets the CONNECT answer, while the machine's
/// task is held: a node that subscribes per room hears of it before anything can be sent
/// to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connects_room_reaches_the_adapter_before_its_answer() {
    let rooms = Arc::new(std::sync::Mutex::new(Vec::new()));
    let server = Server::start(roomy().adapter(RoomLog(rooms.clone()))).await;
    let (mut entered, release) = holding_handler(&server);
    within(TEST_LIMIT, "the scenario", async {
        let mut ws = opened_websocket(&server).await;
        hold_the_machine(&server, &mut entered).await;
        ws.send(Message::text("40")).await.unwrap();
        let answer = within(
            Duration::from_secs(5),
            "the CONNECT answer while the machine's task is held",
            next_packet(&mut ws),
        )
        .await
        .expect("a CONNECT answer");
        let answer: serde_json::Value =
            serde_json::from_str(answer.strip_prefix('0').expect("a CONNECT answer")).unwrap();
        let own = format!("#{}", answer["sid"].as_str().expect("a socket id"));
        let known = rooms.lock().unwrap().clone();
        assert!(known.contains(&own), "{own} not in {known:?}");
        release.send(()).unwrap();
    })
    .await;
    server.stop().await;
}

// 3. Emits to one socket from many threads.

const EMITTERS: usize = 4;
const PER_EMITTER: u64 = 500;

/// Reads `client`'s events until it has `expected` of them, then one more that must be the
/// end marker; checks that each (event, thread) pair's numbers come in order, each once.
async fn per_sender(client: &mut TestClient, expected: usize) -> HashMap<(String, u64), u64> {
    let mut next: HashMap<(String, u64), u64> = HashMap::new();
    for _ in 0..expected {
        let ev = client.recv().await.expect("still connected");
        assert_ne!(ev.event, "end", "the end marker overtook an emit: {next:?}");
        let (thread, seq): (u64, u64) = ev.data().unwrap();
        let slot = next.entry((ev.event.clone(), thread)).or_default();
        assert_eq!(seq, *slot, "{} from thread {thread}", ev.event);
        *slot += 1;
    }
    let last = client.recv().await.expect("the end marker");
    assert_eq!(last.event, "end", "more than was emitted: {last:?}");
    next
}

/// Four OS threads emit 500 numbered events each to one socket through cloned `Socket`
/// handles (alternating `emit` and `emit_checked`), and four more 500 each to a room of two
/// sockets: each client sees every thread's numbers in order, none lost, none twice, and the
/// socket outside the direct emits gets none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emits_from_many_threads_keep_per_sender_order() {
    let mut server = Server::start(roomy()).await;
    let io = server.io.clone();
    within(TEST_LIMIT, "the scenario", async {
        let (mut target, socket) = server.client().await;
        let (mut other, other_socket) = server.client().await;
        socket.join("x");
        other_socket.join("x");
        for s in [&socket, &other_socket] {
            assert!(s.rooms().await.contains(&Room::from("x")));
        }
        let gate = Arc::new(Barrier::new(2 * EMITTERS));
        let mut threads = Vec::new();
        for t in 0..EMITTERS as u64 {
            let (socket, start) = (socket.clone(), gate.clone());
            let rt = Handle::current();
            threads.push(thread(move || {
                start.wait();
                let mut checked = Vec::new();
                for seq in 0..PER_EMITTER {
                    if seq % 2 == 0 {
                        socket.emit("d", &(t, seq)).unwrap();
                    } else {
                        checked.push(socket.emit_checked("d", &(t, seq)));
                    }
                }
                for (i, outcome) in checked.into_iter().enumerate() {
                    let outcome = rt.block_on(outcome);
                    assert!(outcome.is_ok(), "thread {t}, emit {i}: {outcome:?}");
                }
            }));
            let (io, start) = (io.clone(), gate.clone());
            threads.push(thread(move || {
                start.wait();
                for seq in 0..PER_EMITTER {
                    io.to("x").emit("r", &(t, seq)).unwrap();
                }
            }));
        }
        for t in threads {
            t.await.expect("an emitting thread failed");
        }
        // Made after every emit returned, so it comes after all of them.
        io.emit("end", &()).unwrap();

        let each = EMITTERS * PER_EMITTER as usize;
        let seen = per_sender(&mut target, 2 * each).await;
        assert_eq!(seen.len(), 2 * EMITTERS, "{seen:?}");
        assert!(seen.values().all(|n| *n == PER_EMITTER), "{seen:?}");
        let seen = per_sender(&mut other, each).await;
        assert_eq!(seen.len(), EMITTERS, "{seen:?}");
        assert!(
            seen.iter().all(|((e, _), n)| e == "r" && *n == PER_EMITTER),
            "{seen:?}"
        );
    })
    .await;
    server.stop().await;
}

/// Broadcasts and emits of one caller reach a socket in call order, whichever task the
/// caller runs on: a handler started inline on the socket's own connection task (whose
/// emits go straight into its session's mailbox while it has sent the node nothing), the
/// same handler after an `.await`, and a task of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_broadcasts_and_emits_keep_their_order() {
    let mut server = Server::start(roomy()).await;
    let io = server.io.clone();
    let main = io.ns("/");
    let io2 = io.clone();
    main.on("go", move |s: Socket| {
        let io = io2.clone();
        async move {
            // Inline: an emit, a broadcast, an emit.
            s.emit("e", &0).unwrap();
            io.emit("b", &1).unwrap();
            s.emit("e", &2).unwrap();
            tokio::task::yield_now().await;
            // After an await, on the socket's task.
            io.to(s.id()).emit("b", &3).unwrap();
            s.emit("e", &4).unwrap();
            let (io, s) = (io.clone(), s.clone());
            tokio::spawn(async move {
                for n in 5..25 {
                    if n % 2 == 1 {
                        io.emit("b", &n).unwrap();
                    } else {
                        s.emit("e", &n).unwrap();
                    }
                }
            });
        }
    });
    within(TEST_LIMIT, "the scenario", async {
        let (mut client, _socket) = server.client().await;
        client.emit("go", &());
        let mut got = Vec::new();
        while got.len() < 25 {
            let ev = client.recv().await.expect("connected");
            let n: u64 = ev.data().unwrap();
            let want = if n % 2 == 0 { "e" } else { "b" };
            assert_eq!(ev.event, want, "{n}");
            got.push(n);
        }
        assert_eq!(got, (0..25).collect::<Vec<_>>(), "in call order");
    })
    .await;
    server.stop().await;
}

// 4. The outgoing queue's bound under both policies, over a WebSocket that stops reading.

/// Size of the flood's messages: sixteen of them are the 1 MiB default byte bound.
const BIG: usize = 64 * 1024;
/// The flood gives up after this many (64 MiB): far more than the session's bound, the
/// connection's budget and the kernel's socket buffers hold together.
const MAX_FLOOD: u64 = 1024;

/// A protocol 5 session opened over a WebSocket driven by hand, its open packet read.
async fn opened_websocket(server: &Server) -> WebSocketStream<Compat<TcpStream>> {
    let mut ws = server
        .websocket("/socket.io/?EIO=4&transport=websocket")
        .await;
    let open = ws.next().await.expect("an open packet").unwrap();
    assert!(open.to_text().unwrap().starts_with("0{"), "{open:?}");
    ws
}

/// A socket of `/` over a WebSocket driven by hand, so that the test decides when it reads;
/// the server's handle on it.
async fn silent_client(server: &mut Server) -> (WebSocketStream<Compat<TcpStream>>, Socket) {
    let mut ws = opened_websocket(server).await;
    ws.send(Message::text("40")).await.unwrap();
    let answer = ws.next().await.expect("a CONNECT answer").unwrap();
    let answer = answer.to_text().unwrap();
    let answer: serde_json::Value =
        serde_json::from_str(answer.strip_prefix("40").expect("a CONNECT answer")).unwrap();
    let socket = server.next_socket().await;
    assert_eq!(
        answer["sid"].as_str(),
        Some(socket.id().to_string().as_str())
    );
    (ws, socket)
}

/// Emits numbered `BIG` events to `socket` with `emit_checked`, one after the other, until
/// one is refused; returns how many were accepted and the refusal.
async fn flood(socket: &Socket) -> (u64, EmitError) {
    let filler = "x".repeat(BIG);
    for n in 0..MAX_FLOOD {
        if let Err(e) = socket.emit_checked("big", &(n, &filler)).await {
            return (n, e);
        }
    }
    panic!("{MAX_FLOOD} messages of {BIG} bytes queued for a client that does not read");
}

/// The next Socket.IO packet on `ws` (pings answered), as text without the Engine.IO `4`;
/// `None` once the connection ends.
async fn next_packet(ws: &mut WebSocketStream<Compat<TcpStream>>) -> Option<String> {
    loop {
        let message = match ws.next().await {
            Some(Ok(m)) => m,
            None | Some(Err(_)) => return None,
        };
        match message {
            Message::Text(t) if t.as_str() == "2" => {
                let _ = ws.send(Message::text("3")).await;
            }
            Message::Text(t) => {
                let t = t.as_str();
                return Some(
                    t.strip_prefix('4')
                        .unwrap_or_else(|| panic!("{t:?}"))
                        .into(),
                );
            }
            Message::Close(_) => return None,
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The number of a flood event.
fn flood_number(packet: &str) -> u64 {
    let (name, args) = event(packet).unwrap_or_else(|| panic!("{packet:.40}"));
    assert_eq!(name, "big");
    args[0][0].as_u64().expect("a number")
}

/// Under `OverflowPolicy::Reject` a client that stops reading while the server emits large
/// messages to it: `emit_checked` is refused with `Full` after a bounded number, the socket
/// stays connected, and once the client reads again it gets exactly the accepted messages,
/// in order, then what is emitted afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_bound_under_reject() {
    let builder = volley::builder().max_buffered_packets(4096, OverflowPolicy::Reject);
    let mut server = Server::start(builder).await;
    let io = server.io.clone();
    within(TEST_LIMIT, "the scenario", async {
        let (mut ws, socket) = silent_client(&mut server).await;
        let (accepted, refusal) = flood(&socket).await;
        assert!(matches!(refusal, EmitError::Full), "{refusal:?}");
        assert!(accepted > 0);
        assert!(socket.connected(), "the socket was dropped under Reject");
        assert_eq!(io.socket_count().await, 1);
        for n in 0..accepted {
            let packet = next_packet(&mut ws).await.expect("an accepted message");
            assert_eq!(flood_number(&packet), n, "accepted messages in order");
        }
        socket.emit_checked("after", &()).await.unwrap();
        let after = next_packet(&mut ws).await.expect("the next emit");
        let name = event(&after).map(|(name, _)| name);
        assert_eq!(
            name.as_deref(),
            Some("after"),
            "nothing past the accepted ones"
        );
        assert!(server.disconnected.try_recv().is_err(), "a socket left");
    })
    .await;
    server.stop().await;
}

/// Under `OverflowPolicy::Close` the same flood closes the session: the refused
/// `emit_checked` says `Full`, the socket leaves with "transport error" (a slow client, as
/// documented), later emits say `Disconnected`, and what the client still reads is a prefix
/// of the accepted messages, in order, before its connection ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_bound_under_close() {
    let builder = volley::builder().max_buffered_packets(4096, OverflowPolicy::Close);
    let mut server = Server::start(builder).await;
    within(TEST_LIMIT, "the scenario", async {
        let (mut ws, socket) = silent_client(&mut server).await;
        let (accepted, refusal) = flood(&socket).await;
        assert!(matches!(refusal, EmitError::Full), "{refusal:?}");
        let (id, reason) = within(
            Duration::from_secs(5),
            "the disconnect",
            server.disconnected.recv(),
        )
        .await
        .unwrap();
        assert_eq!(id, socket.id());
        assert_eq!(reason, DisconnectReason::TransportError);
        assert_eq!(reason.as_str(), "transport error");
        assert!(!socket.connected());
        let later = socket.emit_checked("after", &()).await;
        assert!(matches!(later, Err(EmitError::Disconnected)), "{later:?}");
        let started = Instant::now();
        let mut got = Vec::new();
        while let Some(packet) = next_packet(&mut ws).await {
            got.push(flood_number(&packet));
        }
        assert!(
            got.iter().copied().eq(0..got.len() as u64),
            "not a prefix in order: {got:?}"
        );
        assert!(got.len() as u64 <= accepted, "{} > {accepted}", got.len());
        assert!(started.elapsed() < Duration::from_secs(5));
    })
    .await;
    server.stop().await;
}

/// The packets a session's mailbox may hold in the mailbox tests.
const MAILBOX_BOUND: u64 = 8;

/// A silent client of namespace `/hold` whose session's own task is held by one of its
/// handlers (started inline, it keeps the task's thread until `release` is sent or the
/// test's limit passes) while the test emits `MAILBOX_BOUND` + 1 numbered events to it from
/// another task: the mailbox takes the first `MAILBOX_BOUND` and refuses the last, whose
/// `emit_checked` resolves at once. `/hold` has no connection handler, so no job of the
/// socket's is under way when the handler is called, and it starts inline. Returns the
/// client, the server's handle on its socket (from the handler), the refusal, the accepted
/// emits' futures and `release`.
async fn hold_and_fill_mailbox(
    server: &Server,
) -> (
    WebSocketStream<Compat<TcpStream>>,
    Socket,
    EmitError,
    Vec<tokio::task::JoinHandle<Result<(), EmitError>>>,
    std::sync::mpsc::Sender<()>,
) {
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let held = Arc::new(std::sync::Mutex::new(held));
    server.io.ns("/hold").on("hold", move |s: Socket| {
        let (entered_tx, held) = (entered_tx.clone(), held.clone());
        async move {
            let _ = entered_tx.send(s);
            tokio::task::block_in_place(|| {
                let _ = held.lock().unwrap().recv_timeout(TEST_LIMIT);
            });
        }
    });
    let mut ws = opened_websocket(server).await;
    ws.send(Message::text("40/hold,")).await.unwrap();
    let answer = ws.next().await.expect("a CONNECT answer").unwrap();
    assert!(
        answer.to_text().unwrap().starts_with("40/hold,{"),
        "{answer:?}"
    );
    ws.send(Message::text("42/hold,[\"hold\"]")).await.unwrap();
    let socket = within(
        Duration::from_secs(5),
        "the holding handler",
        entered.recv(),
    )
    .await
    .unwrap();
    let accepted: Vec<_> = (0..MAILBOX_BOUND)
        .map(|n| tokio::spawn(socket.emit_checked("n", &n)))
        .collect();
    let refusal = within(
        Duration::from_secs(5),
        "the refusal, while the session's task is held",
        socket.emit_checked("n", &MAILBOX_BOUND),
    )
    .await
    .expect_err("refused by the full mailbox");
    for emit in &accepted {
        assert!(
            !emit.is_finished(),
            "applied while the session's task is held"
        );
    }
    (ws, socket, refusal, accepted, release)
}

/// The number of an `n` event of `/hold`.
fn n_number(packet: &str) -> u64 {
    let packet = packet
        .strip_prefix("2/hold,")
        .unwrap_or_else(|| panic!("{packet:.40}"));
    let (name, args) = event(&format!("2{packet}")).unwrap_or_else(|| panic!("{packet:.40}"));
    assert_eq!(name, "n");
    args[0].as_u64().expect("a number")
}

/// Under `OverflowPolicy::Reject`, a session whose own task is busy takes at most its bound
/// of packets from other tasks into its mailbox: the next emit is refused at once with
/// `Full` and reported to the `on_error` hooks, and once the task runs again the client
/// gets exactly the accepted ones, in order, and stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_bound_under_reject() {
    let builder =
        volley::builder().max_buffered_packets(MAILBOX_BOUND as usize, OverflowPolicy::Reject);
    let server = Server::start(builder).await;
    let overflows = Arc::new(AtomicUsize::new(0));
    let counted = overflows.clone();
    server.io.on_error(move |error| {
        if matches!(error, volley::ServerError::Overflow(_)) {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    within(TEST_LIMIT, "the scenario", async {
        let (mut ws, socket, refusal, accepted, release) = hold_and_fill_mailbox(&server).await;
        assert!(matches!(refusal, EmitError::Full), "{refusal:?}");
        assert_eq!(overflows.load(Ordering::SeqCst), 1);
        // A broadcast's copy is refused the same way, and its report says so.
        let report = within(
            Duration::from_secs(5),
            "a checked broadcast's report, while the session's task is held",
            server
                .io
                .of("/hold")
                .local()
                .emit_checked("n", &MAILBOX_BOUND),
        )
        .await
        .expect("a report");
        assert_eq!(report.queued, 0, "{report:?}");
        assert_eq!(report.refused, [socket.id()], "{report:?}");
        assert_eq!(overflows.load(Ordering::SeqCst), 2);
        release.send(()).unwrap();
        for emit in accepted {
            let queued = emit.await.unwrap();
            assert!(queued.is_ok(), "{queued:?}");
        }
        for n in 0..MAILBOX_BOUND {
            let packet = next_packet(&mut ws).await.expect("an accepted emit");
            assert_eq!(n_number(&packet), n, "accepted emits in order");
        }
        assert!(socket.connected(), "the socket was dropped under Reject");
        socket.emit_checked("n", &100).await.unwrap();
        let after = next_packet(&mut ws).await.expect("the next emit");
        assert_eq!(n_number(&after), 100, "nothing past the accepted ones");
    })
    .await;
    server.stop().await;
}

/// Under `OverflowPolicy::Close` the same refusal closes the session once its task runs
/// again: the refused emit says `Full` and the socket leaves with "transport error".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_bound_under_close() {
    let builder =
        volley::builder().max_buffered_packets(MAILBOX_BOUND as usize, OverflowPolicy::Close);
    let server = Server::start(builder).await;
    let (gone, mut disconnected) = mpsc::unbounded_channel();
    server
        .io
        .ns("/hold")
        .on_disconnect(move |s: Socket, reason: DisconnectReason| {
            let _ = gone.send((s.id(), reason));
            async {}
        });
    within(TEST_LIMIT, "the scenario", async {
        let (_ws, socket, refusal, _accepted, release) = hold_and_fill_mailbox(&server).await;
        assert!(matches!(refusal, EmitError::Full), "{refusal:?}");
        assert!(
            socket.connected(),
            "closed by the session's own task, once it runs"
        );
        release.send(()).unwrap();
        let (id, reason) = within(
            Duration::from_secs(5),
            "the disconnect",
            disconnected.recv(),
        )
        .await
        .unwrap();
        assert_eq!(id, socket.id());
        assert_eq!(reason, DisconnectReason::TransportError);
        let later = socket.emit_checked("n", &100).await;
        assert!(matches!(later, Err(EmitError::Disconnected)), "{later:?}");
    })
    .await;
    server.stop().await;
}
