//! volley-tokio's `tower` feature over real loopback: Volley mounted in an axum router next
//! to an ordinary route, and `Driver::serve_request`, which the service is built on.
//!
//! Nothing waits on time to synchronise: clients wait for bytes, server-side effects are
//! observed through the event log or the machine's counts; timeouts only bound a hang.

use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, stream};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};
use volley::driver::test_support::{self as scenario, Client, Connector, Harness};
use volley::driver::{Machine, ServerConfig};
use volley::{Data, Json, Socket};
use volley_core::Sid;
use volley_core::engine::{CloseReason, Event};
use volley_core::http::RequestHead;
use volley_tokio::TokioRuntime;
use volley_tokio::tower::VolleyService;

struct Tcp(SocketAddr);

impl Connector for Tcp {
    type Stream = Compat<TcpStream>;

    async fn connect(&self) -> io::Result<Self::Stream> {
        Ok(TcpStream::connect(self.0).await?.compat())
    }
}

/// An axum app with an ordinary route at `/` and Volley at `path` (with its trailing slash)
/// and below it.
fn app<M: Machine>(volley: VolleyService<M>, path: &str) -> Router {
    Router::new()
        .route("/", get(|| async { "an ordinary route" }))
        .route_service(path, volley.clone())
        .route_service(&format!("{path}{{*rest}}"), volley)
}

/// Serves `router` on a loopback port (with the peer address in each request's extensions);
/// the future completes when the server stops.
async fn serve(router: Router) -> (SocketAddr, BoxFuture<'static, io::Result<()>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let make = router.into_make_service_with_connect_info::<SocketAddr>();
    let (serving, done) = axum::serve(listener, make).into_future().remote_handle();
    tokio::spawn(serving);
    (addr, done.boxed())
}

fn connect_info(ext: &axum::http::Extensions) -> Option<SocketAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|info| info.0)
}

/// The driver's echo engine behind axum, at `/engine.io/`.
async fn harness(config: ServerConfig) -> Harness<TokioRuntime, Tcp> {
    let (driver, events) = scenario::echo(TokioRuntime::current(), config);
    let volley = VolleyService::new(driver.clone()).peer_addr(connect_info);
    let (addr, accepting) = serve(app(volley, "/engine.io/")).await;
    Harness {
        runtime: TokioRuntime::current(),
        connector: Tcp(addr),
        driver,
        events,
        accepting,
    }
}

async fn bounded<T>(test: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), test)
        .await
        .expect("test timed out")
}

// The driver's loopback scenarios, through axum: each passes as it does on a raw listener.
macro_rules! scenarios {
    ($($name:ident $(: $config:expr)?;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            #[allow(unused_mut, unused_assignments)]
            let mut config = ServerConfig::new();
            $(config = $config;)?
            let h = harness(config).await;
            bounded(scenario::$name(h)).await;
        }
    )*};
}

scenarios! {
    polling_echo;
    keep_alive;
    payload_too_large;
    websocket_only;
    upgrade;
    server_close;
    cors_preflight: scenario::cors_config();
    forbidden: scenario::forbidden_config();
    cors_websocket_origin: scenario::cors_config();
    websocket_origin_unchecked;
    same_origin_only: scenario::same_origin_config();
}

/// `disconnect_mid_poll`, once the poll is parked: a client that sends a poll and closes at
/// once may be gone before hyper first polls the service's future, and then the poll never
/// reaches the machine (the session ends by its heartbeat instead).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_leaving_under_a_parked_poll_closes_its_session() {
    let mut h = harness(ServerConfig::new()).await;
    bounded(async {
        let mut client = h.client().await;
        let sid = h.handshake(&mut client).await;
        let mut poller = h.client().await;
        let head = format!("GET {POLLING}&sid={sid} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        poller.send_raw(head.as_bytes()).await.unwrap();
        let handle = h.driver.handle();
        while handle.call(|e, _| e.connection_count()).await.unwrap() == 0 {}
        drop(poller);
        assert_eq!(h.events.closed(sid).await, CloseReason::TransportError);
        let counts = handle.call(|e, _| (e.session_count(), e.connection_count()));
        assert_eq!(counts.await.unwrap(), (0, 0));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ordinary_route_still_answers_next_to_volley() {
    let h = harness(ServerConfig::new()).await;
    bounded(async {
        let mut client = h.client().await;
        let page = client.get("/").await.unwrap();
        assert_eq!((page.status, page.text()), (200, "an ordinary route"));
        // Same connection: the engine, then the router's own 404, then the route again.
        let sid = h.handshake(&mut client).await;
        assert!(!sid.as_str().is_empty());
        assert_eq!(client.get("/elsewhere").await.unwrap().status, 404);
        assert_eq!(client.get("/").await.unwrap().status, 200);
        // Under the mount point but not the engine's: the driver's fallback.
        let other = client.get("/engine.iox").await.unwrap();
        assert_eq!(other.status, 404);
    })
    .await;
}

const SIO_POLLING: &str = "/socket.io/?EIO=4&transport=polling";

/// A Socket.IO server with an echo event (acknowledged with its argument) and `whoami`
/// (acknowledged with the address the handshake recorded), mounted at `/socket.io/`.
async fn socketio() -> (volley::Io<TokioRuntime>, SocketAddr) {
    let io = volley::builder().build(TokioRuntime::current());
    io.ns("/")
        .on(
            "echo",
            |Data(value): Data<Value>| async move { Json(value) },
        )
        .on("whoami", |socket: Socket| async move {
            let peer = socket.handshake().peer_addr();
            peer.map(|addr| addr.to_string()).unwrap_or_default()
        });
    let volley = VolleyService::from(&io).peer_addr(connect_info);
    let (addr, serving) = serve(app(volley, "/socket.io/")).await;
    // Dropping the handle would stop the server; it runs until the test ends.
    tokio::spawn(serving);
    (io, addr)
}

/// The sid inside an open packet `0{"sid":"…",…}`.
fn open_sid(packet: &str) -> String {
    let open: Value = serde_json::from_str(packet.strip_prefix('0').expect("open packet"))
        .expect("open packet JSON");
    open["sid"].as_str().expect("sid").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_round_trip_over_polling() {
    let (_io, addr) = socketio().await;
    bounded(async {
        let mut client = Client::new(TcpStream::connect(addr).await.unwrap().compat());
        let open = client.get(SIO_POLLING).await.unwrap();
        assert_eq!(open.status, 200, "{open:?}");
        let sid = open_sid(open.text());
        let session = format!("{SIO_POLLING}&sid={sid}");
        assert_eq!(client.post(&session, b"40").await.unwrap().text(), "ok");
        let connected = client.get(&session).await.unwrap();
        assert!(connected.text().starts_with("40{\"sid\":"), "{connected:?}");
        let event = br#"421["echo",{"a":[1,"x"]}]"#;
        assert_eq!(client.post(&session, event).await.unwrap().text(), "ok");
        let ack = client.get(&session).await.unwrap();
        assert_eq!(ack.text(), r#"431[{"a":[1,"x"]}]"#);
    })
    .await;
}

/// A WebSocket client for `target` on `addr` (the upgrade done by hand), and its address.
async fn websocket(
    addr: SocketAddr,
    target: &str,
) -> (WebSocketStream<Compat<TcpStream>>, SocketAddr) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    let mut client = Client::new(stream.compat());
    let response = client
        .request(
            "GET",
            target,
            "Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
            b"",
        )
        .await
        .unwrap();
    assert_eq!(response.status, 101, "upgrade refused: {response:?}");
    assert_eq!(
        response.header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    (client.into_websocket().await, local)
}

async fn next_text(ws: &mut WebSocketStream<Compat<TcpStream>>) -> String {
    match ws.next().await.expect("message").expect("frame") {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("not text: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_round_trip_over_websocket_then_server_close() {
    let (io, addr) = socketio().await;
    bounded(async {
        let (mut ws, local) = websocket(addr, "/socket.io/?EIO=4&transport=websocket").await;
        assert!(next_text(&mut ws).await.starts_with("0{"));
        ws.send(Message::text("40")).await.unwrap();
        assert!(next_text(&mut ws).await.starts_with("40{\"sid\":"));
        ws.send(Message::text(r#"421["echo",{"a":[1,"x"]}]"#))
            .await
            .unwrap();
        assert_eq!(next_text(&mut ws).await, r#"431[{"a":[1,"x"]}]"#);
        ws.send(Message::text(r#"422["whoami"]"#)).await.unwrap();
        assert_eq!(next_text(&mut ws).await, format!(r#"432["{local}"]"#));

        // Closing the server closes the session (Engine.IO `1`) and the WebSocket, which the
        // shutdown waits for (it counts as one of the driver's connections).
        assert_eq!(io.driver().connection_count(), 1);
        let closing = tokio::spawn(async move { io.close().await });
        assert_eq!(next_text(&mut ws).await, "1");
        assert!(matches!(ws.next().await, Some(Ok(Message::Close(_)))));
        assert!(ws.next().await.is_none());
        closing.await.unwrap();
    })
    .await;
}

// `Driver::serve_request` itself, without a host.

fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> RequestHead {
    let headers = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
        .collect();
    RequestHead::from_parts(method, target, headers).unwrap()
}

fn no_body() -> stream::Empty<io::Result<Bytes>> {
    stream::empty()
}

const POLLING: &str = "/engine.io/?EIO=4&transport=polling";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_poll_closes_its_session() {
    let (driver, mut events) = scenario::echo(TokioRuntime::current(), ServerConfig::new());
    bounded(async {
        let peer: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let served = driver
            .serve_request(request("GET", POLLING, &[]), no_body(), Some(peer))
            .await;
        assert_eq!(served.response.status, 200);
        assert!(served.upgrade.is_none());
        let sid = Sid::new(&open_sid(
            std::str::from_utf8(&served.response.body).unwrap(),
        ))
        .unwrap();
        match events.next().await {
            Event::Open { sid: s, .. } => assert_eq!(s, sid),
            other => panic!("{other:?}"),
        }
        let poll = format!("{POLLING}&sid={sid}");
        let parked = {
            let driver = driver.clone();
            tokio::spawn(async move {
                driver
                    .serve_request(request("GET", &poll, &[]), no_body(), None)
                    .await
            })
        };
        // Until the machine holds the poll.
        let handle = driver.handle();
        while handle.call(|e, _| e.connection_count()).await.unwrap() == 0 {}
        assert!(!parked.is_finished());
        parked.abort();
        assert!(parked.await.unwrap_err().is_cancelled());
        assert_eq!(events.closed(sid).await, CloseReason::TransportError);
        let counts = handle.call(|e, _| (e.session_count(), e.connection_count()));
        assert_eq!(counts.await.unwrap(), (0, 0));
        assert_eq!(driver.connection_count(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_never_run_closes_its_session() {
    let (driver, mut events) = scenario::echo(TokioRuntime::current(), ServerConfig::new());
    bounded(async {
        let head = request(
            "GET",
            "/engine.io/?EIO=4&transport=websocket",
            &[
                ("Host", "localhost"),
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13"),
            ],
        );
        let served = driver.serve_request(head, no_body(), None).await;
        assert_eq!(served.response.status, 101);
        assert!(served.upgrade.is_some());
        assert_eq!(driver.connection_count(), 1);
        let sid = match events.next().await {
            Event::Open { sid, .. } => sid,
            other => panic!("{other:?}"),
        };
        drop(served);
        assert_eq!(events.closed(sid).await, CloseReason::TransportError);
        assert_eq!(driver.connection_count(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_read_up_to_the_limit_and_the_config_screens_requests() {
    let config = scenario::forbidden_config();
    let (driver, mut events) = scenario::echo(TokioRuntime::current(), config);
    bounded(async {
        let token = [("X-Token", "ok")];
        let refused = driver
            .serve_request(request("GET", POLLING, &[]), no_body(), None)
            .await;
        assert_eq!(refused.response.status, 403);
        let missing = driver
            .serve_request(request("GET", "/elsewhere", &[]), no_body(), None)
            .await;
        assert_eq!(missing.response.status, 404);
        let open = driver
            .serve_request(request("GET", POLLING, &token), no_body(), None)
            .await;
        let sid = open_sid(std::str::from_utf8(&open.response.body).unwrap());
        let session = format!("{POLLING}&sid={sid}");

        // A body in pieces, as a host decodes a chunked one.
        let chunked = [("X-Token", "ok"), ("Transfer-Encoding", "chunked")];
        let pieces = ["4hel", "", "lo"].map(|p| Ok(Bytes::from_static(p.as_bytes())));
        let posted = driver
            .serve_request(
                request("POST", &session, &chunked),
                stream::iter(pieces),
                None,
            )
            .await;
        assert_eq!(posted.response.body.as_ref(), b"ok");
        assert!(!posted.response.close);
        let polled = driver
            .serve_request(request("GET", &session, &token), no_body(), None)
            .await;
        assert_eq!(polled.response.body.as_ref(), b"4hello");

        // Over the limit (10 000 bytes): 413, and the unread rest means closing.
        let big = (0..3).map(|_| Ok(Bytes::from(vec![b'4'; 4_000])));
        let too_large = driver
            .serve_request(request("POST", &session, &chunked), stream::iter(big), None)
            .await;
        assert_eq!(too_large.response.status, 413);
        assert!(too_large.response.close);

        // A body that fails mid-way fails the connection, as on a stream: the session
        // closes.
        let broken = [
            Ok(Bytes::from_static(b"4x")),
            Err(io::ErrorKind::ConnectionReset.into()),
        ];
        let failed = driver
            .serve_request(
                request("POST", &session, &chunked),
                stream::iter(broken),
                None,
            )
            .await;
        assert!(failed.response.close);
        let sid = Sid::new(&sid).unwrap();
        assert_eq!(events.closed(sid).await, CloseReason::TransportError);
    })
    .await;
}

/// Several endpoints on one port, as Node attaches several servers to one `http.Server`: two
/// Socket.IO servers at different paths and a bare Engine.IO endpoint, each mounted in one
/// axum router, each reached over polling and WebSocket by the test client over real TCP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_endpoints_share_one_port() {
    use volley::testing::{ConnectOptions, TestClient, TransportKind};
    use volley_tokio::testing::TcpConnector;
    let chat = volley::builder().build(TokioRuntime::current());
    chat.ns("/").on("who", || async { "chat" });
    let admin = volley::builder()
        .path("/admin-io")
        .build(TokioRuntime::current());
    admin.ns("/").on("who", || async { "admin" });
    let (engine, _events) = scenario::echo(TokioRuntime::current(), ServerConfig::new());
    let router = Router::new()
        .route_service("/socket.io/", VolleyService::from(&chat))
        .route_service("/socket.io/{*rest}", VolleyService::from(&chat))
        .route_service("/admin-io/", VolleyService::from(&admin))
        .route_service("/admin-io/{*rest}", VolleyService::from(&admin))
        .route_service("/engine.io/", VolleyService::new(engine.clone()))
        .route_service("/engine.io/{*rest}", VolleyService::new(engine));
    let (addr, serving) = serve(router).await;
    tokio::spawn(serving);
    bounded(async {
        for transport in [TransportKind::Polling, TransportKind::WebSocket] {
            for (path, name) in [("/socket.io/", "chat"), ("/admin-io/", "admin")] {
                let options = ConnectOptions::new().transport(transport).path(path);
                let mut client = TestClient::connect_over(
                    TcpConnector::new(addr),
                    &TokioRuntime::current(),
                    "/",
                    options,
                )
                .await
                .unwrap();
                let who: String = client.emit_with_ack("who", &()).await.unwrap();
                assert_eq!(who, name, "{path} over {transport:?}");
            }
        }
        // The bare Engine.IO endpoint beside them, on the same connection as a Socket.IO poll.
        let mut raw = Client::new(TcpStream::connect(addr).await.unwrap().compat());
        let open = raw
            .get("/engine.io/?EIO=4&transport=polling")
            .await
            .unwrap();
        assert_eq!(open.status, 200);
        assert!(open.text().starts_with("0{\"sid\""), "{open:?}");
        let sio = raw.get(SIO_POLLING).await.unwrap();
        assert!(sio.text().starts_with("0{\"sid\""), "{sio:?}");
    })
    .await;
    assert_eq!(chat.socket_count().await, 0);
}

/// Two Socket.IO servers of one relaying in-memory cluster, each mounted in its own axum app:
/// a session opened on the first is served through the second, over polling and over a
/// WebSocket upgrade.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_another_nodes_session_are_forwarded_through_the_mount() {
    let cluster = volley::adapter::MemoryCluster::with_relay();
    let mut addrs = Vec::new();
    let mut servers = Vec::new();
    for seed in [1u8, 2] {
        let io = volley::builder()
            .seed([seed; 32])
            .adapter(cluster.adapter())
            .build(TokioRuntime::current());
        io.ns("/").on(
            "echo",
            |Data(value): Data<Value>| async move { Json(value) },
        );
        let volley = VolleyService::from(&io).peer_addr(connect_info);
        let (addr, serving) = serve(app(volley, "/socket.io/")).await;
        tokio::spawn(serving);
        addrs.push(addr);
        servers.push(io);
    }
    bounded(async {
        let mut first = Client::new(TcpStream::connect(addrs[0]).await.unwrap().compat());
        let sid = open_sid(first.get(SIO_POLLING).await.unwrap().text());
        let session = format!("{SIO_POLLING}&sid={sid}");
        let mut second = Client::new(TcpStream::connect(addrs[1]).await.unwrap().compat());
        assert_eq!(second.post(&session, b"40").await.unwrap().text(), "ok");
        let connected = second.get(&session).await.unwrap();
        assert!(connected.text().starts_with("40{\"sid\":"), "{connected:?}");
        let event = br#"421["echo",{"a":[1,"x"]}]"#;
        assert_eq!(second.post(&session, event).await.unwrap().text(), "ok");
        assert_eq!(
            second.get(&session).await.unwrap().text(),
            r#"431[{"a":[1,"x"]}]"#
        );
        assert_eq!(servers[0].socket_count().await, 1);
        assert_eq!(servers[1].socket_count().await, 0);
        // The upgrade, through the second server too.
        let target = format!("/socket.io/?EIO=4&transport=websocket&sid={sid}");
        let (mut ws, _) = websocket(addrs[1], &target).await;
        ws.send(Message::text("2probe")).await.unwrap();
        assert_eq!(next_text(&mut ws).await, "3probe");
        ws.send(Message::text("5")).await.unwrap();
        ws.send(Message::text(r#"422["echo","over the relay"]"#))
            .await
            .unwrap();
        assert_eq!(next_text(&mut ws).await, r#"432["over the relay"]"#);
    })
    .await;
}
