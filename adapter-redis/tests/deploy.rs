//! The ways a deployment reaches one Redis, each against a redis-server this test starts on
//! a free port: a password, an ACL user with only the rights the adapters need, `db` and the
//! key prefix keeping two clusters apart, TLS with a CA the test makes, and the sharded
//! subscriber's batched resubscription after a reconnection.

use serde_json::json;
use std::time::{Duration, Instant};
use tokio::time::timeout;
use volley_redis::streams::{StreamsAdapter, StreamsOptions};
use volley_redis::{PubSub, RedisAdapter, RedisOptions, SubscriptionMode};
use volley_tokio::TokioRuntime;

mod common;
use common::{Client, LIMIT, Redis, TempDir, free_port, joinable_node, raw_conn, serve};

/// The password of Redis's `default` user in these tests.
const ADMIN: &str = "admin-secret";

type Server = common::Joinable;

/// Quick reconnections and a short connect timeout, as a test wants them.
fn quick(mut options: RedisOptions) -> RedisOptions {
    options.backoff = (Duration::from_millis(50), Duration::from_millis(500));
    options.connect_timeout = Duration::from_millis(500);
    options
}

/// A node with `options` whose sockets answer `join`; waits until it is subscribed.
async fn node(options: RedisOptions) -> Server {
    node_with(quick(options)).await
}

/// [`node`] with `options` as they are.
async fn node_with(options: RedisOptions) -> Server {
    joinable_node(options).await
}

async fn count(adapter: &RedisAdapter) -> usize {
    timeout(LIMIT, adapter.refresh_server_count())
        .await
        .expect("counted in time")
        .expect("counted")
}

/// An admin connection (the `default` user, with [`ADMIN`]).
async fn admin(redis: &Redis) -> redis::aio::MultiplexedConnection {
    raw_conn(&format!("redis://:{ADMIN}@127.0.0.1:{}", redis.port)).await
}

/// `ACL LOG` as text, one line per denial: what an ACL user was refused.
async fn acl_denials(conn: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let log: Vec<redis::Value> = redis::cmd("ACL")
        .arg("LOG")
        .query_async(conn)
        .await
        .unwrap();
    log.iter().map(|entry| format!("{entry:?}")).collect()
}

/// The rights of the ACL user of the Pub/Sub adapters (classic and sharded): no keys, the
/// channels under the key prefix `socket.io`, and these commands. docs/deployment.md lists
/// the same. `PSUBSCRIBE` patterns must be granted literally (a granted `socket.io*` does
/// not cover the pattern `socket.io#*`), so the classic adapter's three patterns are named.
const PUBSUB_RIGHTS: &[&str] = &[
    "resetkeys",
    "resetchannels",
    "&socket.io#*",
    "&socket.io-request#*",
    "&socket.io-response#*",
    "-@all",
    "+ping",
    "+subscribe",
    "+psubscribe",
    "+publish",
    "+ssubscribe",
    "+sunsubscribe",
    "+spublish",
    "+pubsub|numsub",
    "+pubsub|shardnumsub",
];

/// The rights of the ACL user of the Streams adapter: its stream and session keys, the
/// channels under the key prefix, and these commands.
const STREAMS_RIGHTS: &[&str] = &[
    "resetkeys",
    "~socket.io",
    "~sio:session:*",
    "resetchannels",
    "&socket.io#*",
    "-@all",
    "+ping",
    "+subscribe",
    "+psubscribe",
    "+publish",
    "+pubsub|numsub",
    "+xadd",
    "+xread",
    "+xrange",
    "+xrevrange",
    "+get",
    "+set",
    "+del",
    "+multi",
    "+exec",
];

async fn set_user(conn: &mut redis::aio::MultiplexedConnection, name: &str, rights: &[&str]) {
    let mut cmd = redis::cmd("ACL");
    cmd.arg("SETUSER")
        .arg(name)
        .arg("reset")
        .arg("on")
        .arg(format!(">{name}-secret"));
    for r in rights {
        cmd.arg(*r);
    }
    let () = cmd.query_async(conn).await.unwrap();
}

/// Two nodes as `user`: counted, a broadcast and a room broadcast cross, `fetch_sockets`
/// sees both.
async fn two_nodes_work(url: &str, user: &str, sharded: bool) {
    let options = || {
        let o = RedisOptions::new(url)
            .username(user)
            .password(&format!("{user}-secret"));
        if sharded { o.sharded() } else { o }
    };
    let a = node(options()).await;
    let b = node(options()).await;
    assert_eq!(count(&a.adapter).await, 2);
    assert_eq!(count(&b.adapter).await, 2);
    let mut ca = Client::connect(a.port).await;
    let mut cb = Client::connect(b.port).await;
    a.io.emit("hello", &1).unwrap();
    assert_eq!(cb.event().await, json!(["hello", 1]));
    assert_eq!(ca.event().await, json!(["hello", 1]));
    cb.call("join", &[json!("red")]).await;
    timeout(LIMIT, b.adapter.subscribed()).await.unwrap();
    a.io.to("red").emit("red", &2).unwrap();
    assert_eq!(cb.event().await, json!(["red", 2]));
    let sockets = timeout(LIMIT, a.io.fetch_sockets()).await.unwrap();
    assert_eq!(sockets.len(), 2, "both nodes answered fetch_sockets");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_acl_users_with_the_least_rights() {
    let redis = Redis::start_with(
        free_port().await,
        &["--requirepass".to_owned(), ADMIN.to_owned()],
    )
    .await;
    let mut adm = admin(&redis).await;
    set_user(&mut adm, "volley", PUBSUB_RIGHTS).await;
    set_user(&mut adm, "volley-streams", STREAMS_RIGHTS).await;
    let url = format!("redis://127.0.0.1:{}", redis.port);

    // The `default` user's password only.
    {
        let options = || {
            RedisOptions::new(&url)
                .password(ADMIN)
                .key("socket.io-admin")
        };
        let a = node(options()).await;
        let b = node(options()).await;
        assert_eq!(count(&a.adapter).await, 2);
        let mut cb = Client::connect(b.port).await;
        a.io.emit("hello", &0).unwrap();
        assert_eq!(cb.event().await, json!(["hello", 0]));
        a.adapter.stop();
        b.adapter.stop();
    }

    // The ACL user, classic and sharded (dynamic: room channels too).
    // (Classic and sharded Pub/Sub are apart in Redis: the classic nodes of the first call
    // are not counted by the sharded ones.)
    two_nodes_work(&url, "volley", false).await;
    two_nodes_work(&url, "volley", true).await;

    // The Streams adapter's user: broadcasts, a request, a session kept and recovered on
    // the other node.
    {
        let streams_node = |url: String| async move {
            let rt = TokioRuntime::current();
            let mut options = StreamsOptions::new(&url);
            options.redis =
                quick(options.redis.username("volley-streams")).password("volley-streams-secret");
            options.block = Duration::from_millis(500);
            let adapter = StreamsAdapter::new(options, rt.clone());
            let io = volley::builder()
                .adapter(adapter.clone())
                .request_timeout(Duration::from_secs(2))
                .connection_state_recovery(Duration::from_secs(30), true)
                .build(rt);
            let port = serve(&io).await;
            timeout(LIMIT, adapter.ready())
                .await
                .expect("ready in time");
            (io, adapter, port)
        };
        let (ia, sa, pa) = streams_node(url.clone()).await;
        let (_ib, sb, pb) = streams_node(url.clone()).await;
        assert_eq!(
            timeout(LIMIT, sa.refresh_server_count())
                .await
                .unwrap()
                .unwrap(),
            2
        );
        let mut watch = Client::connect(pb).await;
        let cl = Client::connect(pa).await;
        ia.emit("s", &1).unwrap();
        let seen = watch.event().await;
        assert_eq!(seen[0], "s");
        let offset = seen[2].as_str().expect("an offset").to_owned();
        let pid = cl.pid.clone().expect("a pid");
        let auth = cl.recovery(&offset);
        cl.drop_connection().await;
        let mut conn = admin(&redis).await;
        timeout(LIMIT, async {
            loop {
                let n: i64 = redis::cmd("EXISTS")
                    .arg(format!("sio:session:{pid}"))
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                if n == 1 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("session kept");
        ia.emit("s", &2).unwrap();
        assert_eq!(watch.event().await[1], 2);
        let mut back = Client::connect_with(pb, Some(auth)).await;
        assert_eq!(back.pid.as_deref(), Some(pid.as_str()), "recovered");
        assert_eq!(back.event().await[1], 2, "the missed broadcast replayed");
        let sockets = timeout(LIMIT, ia.fetch_sockets()).await.unwrap();
        assert_eq!(sockets.len(), 2);
        sa.stop();
        sb.stop();
    }

    // Nothing the adapters did was refused.
    let denials = acl_denials(&mut adm).await;
    assert!(denials.is_empty(), "ACL denials: {denials:#?}");

    // A user without the classic adapter's answer pattern: the refused PSUBSCRIBE keeps
    // the node from counting as subscribed (it retries and logs), rather than passing
    // unseen.
    let lacking: Vec<&str> = PUBSUB_RIGHTS
        .iter()
        .copied()
        .filter(|r| *r != "&socket.io-response#*")
        .collect();
    set_user(&mut adm, "lacking", &lacking).await;
    let partial = RedisAdapter::new(
        quick(
            RedisOptions::new(&url)
                .username("lacking")
                .password("lacking-secret"),
        ),
        TokioRuntime::current(),
    );
    let io = volley::builder()
        .adapter(partial.clone())
        .build(TokioRuntime::current());
    let _port = serve(&io).await;
    assert!(
        timeout(Duration::from_secs(1), partial.subscribed())
            .await
            .is_err(),
        "not subscribed without the rights"
    );
    let denials = acl_denials(&mut adm).await;
    assert!(
        denials.iter().any(|d| d.contains("socket.io-response#*")),
        "{denials:#?}"
    );
    partial.stop();

    // A wrong password, an unknown user: a clear error within the connect timeout.
    for (user, password) in [
        (None, "wrong"),
        (Some("volley"), "wrong"),
        (Some("nobody"), "x"),
    ] {
        let mut options = quick(RedisOptions::new(&url).password(password));
        if let Some(u) = user {
            options = options.username(u);
        }
        let adapter = RedisAdapter::new(options, TokioRuntime::current());
        let started = Instant::now();
        let err = timeout(LIMIT, adapter.refresh_server_count())
            .await
            .expect("no hang")
            .expect_err("refused");
        let took = started.elapsed();
        eprintln!("auth: user {user:?}, wrong password: {err} (after {took:?})");
        assert_eq!(err.kind(), redis::ErrorKind::AuthenticationFailed, "{err}");
        assert!(took < Duration::from_secs(1), "{took:?}");
    }
    // A node with a wrong password serves its own clients and never counts as subscribed.
    let lone = RedisAdapter::new(
        quick(RedisOptions::new(&url).password("wrong")),
        TokioRuntime::current(),
    );
    let io = volley::builder()
        .adapter(lone.clone())
        .build(TokioRuntime::current());
    let port = serve(&io).await;
    let mut cl = Client::connect(port).await;
    io.emit("local", &1).unwrap();
    assert_eq!(cl.event().await, json!(["local", 1]));
    assert!(
        timeout(Duration::from_millis(500), lone.subscribed())
            .await
            .is_err(),
        "not subscribed with a wrong password"
    );
    assert_eq!(io.server_count(), 1);
    lone.stop();
}

/// Two pairs of nodes of `pub_sub` on one Redis, each pair with its own key prefix (and
/// `db`): each pair counts 2, and a broadcast in one pair never reaches the other.
async fn pairs_stay_apart(pub_sub: PubSub) {
    let redis = Redis::start().await;
    let options = |key: &str, db: i64| {
        let o = RedisOptions::new(&redis.url()).key(key).db(db);
        match pub_sub {
            PubSub::Sharded => o.sharded_mode(SubscriptionMode::Dynamic),
            _ => o,
        }
    };
    let x1 = node(options("app-x", 1)).await;
    let x2 = node(options("app-x", 1)).await;
    let y1 = node(options("app-y", 2)).await;
    let y2 = node(options("app-y", 2)).await;
    for n in [&x1, &x2, &y1, &y2] {
        assert_eq!(count(&n.adapter).await, 2);
    }
    let mut cx = Client::connect(x2.port).await;
    let mut cy = Client::connect(y2.port).await;
    // Same room name in both clusters.
    cx.call("join", &[json!("red")]).await;
    cy.call("join", &[json!("red")]).await;
    timeout(LIMIT, x2.adapter.subscribed()).await.unwrap();
    timeout(LIMIT, y2.adapter.subscribed()).await.unwrap();
    x1.io.emit("x-all", &1).unwrap();
    x1.io.to("red").emit("x-red", &2).unwrap();
    y1.io.emit("y-all", &3).unwrap();
    y1.io.to("red").emit("y-red", &4).unwrap();
    assert_eq!(cx.event().await, json!(["x-all", 1]));
    assert_eq!(cx.event().await, json!(["x-red", 2]));
    assert_eq!(cy.event().await, json!(["y-all", 3]));
    assert_eq!(cy.event().await, json!(["y-red", 4]));
    // Markers: whatever crossed over would have come before them.
    x1.io.emit("x-mark", &5).unwrap();
    y1.io.emit("y-mark", &6).unwrap();
    assert_eq!(cx.event().await, json!(["x-mark", 5]));
    assert_eq!(cy.event().await, json!(["y-mark", 6]));
    let xs = timeout(LIMIT, x1.io.fetch_sockets()).await.unwrap();
    assert_eq!(xs.len(), 1);
    assert_eq!(xs[0].id().as_str(), cx.sid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_prefix_keeps_two_clusters_apart() {
    pairs_stay_apart(PubSub::Classic).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_key_prefix_keeps_two_clusters_apart() {
    pairs_stay_apart(PubSub::Sharded).await;
}

/// Pub/Sub ignores the database: two clusters differing only by `db` are one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_alone_does_not_separate_pub_sub() {
    let redis = Redis::start().await;
    let a = node(RedisOptions::new(&redis.url()).db(1)).await;
    let b = node(RedisOptions::new(&redis.url()).db(2)).await;
    assert_eq!(count(&a.adapter).await, 2);
    let mut cb = Client::connect(b.port).await;
    a.io.emit("crossed", &1).unwrap();
    assert_eq!(cb.event().await, json!(["crossed", 1]));
}

/// The Streams adapter: the same stream name in two databases, and two key prefixes, are
/// two clusters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_db_and_prefix_keep_two_clusters_apart() {
    let redis = Redis::start().await;
    let streams_node = |key: &'static str, db: i64| {
        let url = redis.url();
        async move {
            let rt = TokioRuntime::current();
            let mut options = StreamsOptions::new(&url);
            options.redis = quick(options.redis.key(key).db(db));
            options.block = Duration::from_millis(500);
            let adapter = StreamsAdapter::new(options, rt.clone());
            let io = volley::builder().adapter(adapter.clone()).build(rt);
            let port = serve(&io).await;
            timeout(LIMIT, adapter.ready())
                .await
                .expect("ready in time");
            (io, adapter, port)
        }
    };
    let (x1, ax, _) = streams_node("app-x", 1).await;
    let (_x2, _, px) = streams_node("app-x", 1).await;
    let (y1, ay, _) = streams_node("app-y", 2).await;
    let (_y2, _, py) = streams_node("app-y", 2).await;
    for a in [&ax, &ay] {
        let n = timeout(LIMIT, a.refresh_server_count())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, 2);
    }
    let mut cx = Client::connect(px).await;
    let mut cy = Client::connect(py).await;
    x1.emit("x", &1).unwrap();
    y1.emit("y", &2).unwrap();
    x1.emit("x-mark", &3).unwrap();
    y1.emit("y-mark", &4).unwrap();
    assert_eq!(cx.event().await[0], "x");
    assert_eq!(cx.event().await[0], "x-mark");
    assert_eq!(cy.event().await[0], "y");
    assert_eq!(cy.event().await[0], "y-mark");
    // One stream per database.
    for db in [1, 2] {
        let mut conn = raw_conn(&format!("{}/{db}", redis.url())).await;
        let len: usize = redis::cmd("XLEN")
            .arg("socket.io")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(len, 2, "db {db}");
    }
}

/// `cmdstat_<command>`'s `calls` in `INFO commandstats`.
async fn calls(conn: &mut redis::aio::MultiplexedConnection, command: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_resubscribed_in_one_batch() {
    const ROOMS: usize = 60;
    let redis = Redis::start().await;
    let a = node(RedisOptions::new(&redis.url()).sharded()).await;
    let b = node(RedisOptions::new(&redis.url()).sharded()).await;
    let mut cb = Client::connect(b.port).await;
    for i in 0..ROOMS {
        cb.call("join", &[json!(format!("room-{i}"))]).await;
    }
    timeout(LIMIT, b.adapter.subscribed()).await.unwrap();

    let port = redis.stop().await;
    let redis = Redis::start_on(port).await;
    let mut conn = raw_conn(&redis.url()).await;
    // B is back once every room channel has its subscriber again.
    let started = Instant::now();
    timeout(LIMIT, async {
        loop {
            let mut cmd = redis::cmd("PUBSUB");
            cmd.arg("SHARDNUMSUB");
            for i in 0..ROOMS {
                cmd.arg(format!("socket.io#/#room-{i}#"));
            }
            let counts: Vec<(String, usize)> = cmd.query_async(&mut conn).await.unwrap();
            if counts.iter().all(|(_, n)| *n == 1) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("every room subscribed again in time");
    timeout(LIMIT, b.adapter.subscribed()).await.unwrap();
    timeout(LIMIT, a.adapter.subscribed()).await.unwrap();
    // Each node sent one SSUBSCRIBE: its namespace and answer channels, and B its rooms.
    let ssubscribes = calls(&mut conn, "ssubscribe").await;
    eprintln!(
        "resubscription: {ROOMS} rooms + 2 channels per node in {ssubscribes} SSUBSCRIBE \
         commands for 2 nodes, all subscribed {:?} after the restart",
        started.elapsed()
    );
    assert_eq!(ssubscribes, 2);
    // And they work.
    a.io.to("room-7").emit("r", &7).unwrap();
    let resumed = timeout(LIMIT, async {
        loop {
            if let Ok(ev) = timeout(Duration::from_millis(200), cb.event()).await {
                return ev;
            }
            a.io.to("room-7").emit("r", &7).unwrap();
        }
    })
    .await
    .unwrap();
    assert_eq!(resumed, json!(["r", 7]));
}

// ---- TLS ----

/// Runs openssl with `args` in `dir`; panics when it fails.
fn openssl(dir: &TempDir, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(&dir.0)
        .output()
        .expect("openssl runs (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `name` (`<name>.crt`, `<name>.key`) in `dir`.
fn make_ca(dir: &TempDir, name: &str) {
    let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &key,
            "-out",
            &crt,
        ],
    );
}

/// `server.crt` / `server.key` for 127.0.0.1 and localhost, signed by CA `ca`.
fn make_server_cert(dir: &TempDir, ca: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.0.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "server.crt",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca() {
    let dir = TempDir::new("tls");
    make_ca(&dir, "ca");
    make_ca(&dir, "other-ca");
    make_server_cert(&dir, "ca");
    let port = free_port().await;
    let redis = Redis::start_with(
        port,
        &[
            "--port",
            "0",
            "--tls-port",
            &port.to_string(),
            "--tls-cert-file",
            &dir.file("server.crt"),
            "--tls-key-file",
            &dir.file("server.key"),
            "--tls-ca-cert-file",
            &dir.file("ca.crt"),
            "--tls-auth-clients",
            "no",
        ]
        .map(str::to_owned),
    )
    .await;
    let url = format!("rediss://127.0.0.1:{}", redis.port);
    let ca = std::fs::read(dir.file("ca.crt")).unwrap();

    // Classic and sharded nodes over TLS. The handshake is slow in a debug build on a busy
    // machine (ring's RSA): the default connect timeout, 2 s, instead of the tests' 500 ms.
    let tls = |o: RedisOptions| RedisOptions {
        connect_timeout: Duration::from_secs(2),
        ..o
    };
    for sharded in [false, true] {
        let options = || {
            let o = RedisOptions::new(&url).tls_root_cert(&ca);
            if sharded { o.sharded() } else { o }
        };
        let a = node_with(tls(quick(options()))).await;
        let b = node_with(tls(quick(options()))).await;
        assert_eq!(count(&a.adapter).await, 2);
        let mut cb = Client::connect(b.port).await;
        cb.call("join", &[json!("red")]).await;
        timeout(LIMIT, b.adapter.subscribed()).await.unwrap();
        a.io.emit("tls", &1).unwrap();
        a.io.to("red").emit("tls-red", &2).unwrap();
        assert_eq!(cb.event().await, json!(["tls", 1]));
        assert_eq!(cb.event().await, json!(["tls-red", 2]));
        a.adapter.stop();
        b.adapter.stop();
    }

    // A certificate from another CA, the system's roots, plain TCP to a TLS port: a clear
    // error within the connect timeout.
    let other = std::fs::read(dir.file("other-ca.crt")).unwrap();
    let plain = format!("redis://127.0.0.1:{}", redis.port);
    let cases = [
        ("another CA", RedisOptions::new(&url).tls_root_cert(&other)),
        ("system roots", RedisOptions::new(&url)),
        ("no TLS", RedisOptions::new(&plain)),
    ];
    for (what, options) in cases {
        let adapter = RedisAdapter::new(tls(quick(options)), TokioRuntime::current());
        let started = Instant::now();
        let err = timeout(LIMIT, adapter.refresh_server_count())
            .await
            .expect("no hang")
            .expect_err("refused");
        let took = started.elapsed();
        eprintln!("tls: {what}: {err} (after {took:?})");
        // Refused, not timed out.
        assert!(took < Duration::from_secs(2), "{what}: {took:?}");
        assert!(!err.to_string().contains("timed out"), "{what}: {err}");
        if what != "no TLS" {
            let text = err.to_string();
            assert!(text.contains("certificate"), "{what}: {text}");
        }
    }
}
