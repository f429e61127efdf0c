//! A Volley node of a Redis cluster that forwards requests for other nodes' sessions
//! ([`RedisOptions::forward_sessions`]), run as a process of its own by
//! `tests/sticky_free` behind a round-robin proxy.
//!
//! ```sh
//! forwarding-node --redis redis://127.0.0.1:6379 [--port 0] [--mode classic|streams]
//!                 [--recovery on|off] [--stream NAME] [--ping-ms N] [--log LEVEL]
//! ```
//!
//! `--port 0` (the default) picks a free port of 127.0.0.1. `--mode` picks the classic
//! Pub/Sub adapter (default) or the Streams adapter; `--recovery on` turns connection state
//! recovery on (a window of 60 s, middleware skipped). `--ping-ms` sets both the ping interval
//! and the ping timeout (default: the builder's); `--log` the most verbose level logged to
//! stderr (default `warn`). Once the adapter and its relay are
//! subscribed it prints one line, `listening <port> <node id>`, and serves until killed.
//!
//! Namespace `/`:
//! - at connect, emits `hello` with the client's auth and this node's id;
//! - `echo`: emits `echo` back with the same arguments (binary included);
//! - `ack`: acknowledges with its arguments;
//! - `blobs` (n, size): emits `blob` n times, with {i} and `size` bytes of value i % 256,
//!   then acknowledges with n;
//! - `join` (room): joins the room, acknowledges with the room;
//! - `to-room` (room, event, data): broadcasts `event` with `data` to the room from this
//!   node, acknowledges with this node's id;
//! - `broadcast-all`: every node of the cluster broadcasts `from-node` with its id (this one
//!   directly, the others on a server-side event), acknowledges with this node's id;
//! - `server-ack` (args): emits `ask` with the same arguments to the client, waits for its
//!   acknowledgement and emits `answer` with what the client answered;
//! - `disconnect-me` (close, optional): disconnects the socket from the server's side,
//!   closing the underlying connection with `true`;
//! - `sockets`: acknowledges with the ids of every socket of the cluster, sorted;
//! - `node`: acknowledges with this node's id and whether the socket was recovered.
//!
//! Every socket that leaves is reported to the room `watchers` as `left` with its id and
//! reason, from the node that owned it.

use serde_json::{Value, json};
use std::time::Duration;
use volley::{Data, DisconnectReason, Io, Payload, Socket};
use volley_redis::streams::{StreamsAdapter, StreamsOptions};
use volley_redis::{RedisAdapter, RedisOptions};
use volley_tokio::TokioRuntime;

struct Args {
    port: u16,
    redis: String,
    streams: bool,
    recovery: bool,
    stream: String,
    ping: Option<Duration>,
    log: tracing::Level,
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "forwarding-node: {problem}\nusage: forwarding-node --redis URL [--port P] \
         [--mode classic|streams] [--recovery on|off] [--stream NAME] [--ping-ms N] \
         [--log LEVEL]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut args = Args {
        port: 0,
        redis: String::new(),
        streams: false,
        recovery: false,
        stream: "socket.io".to_owned(),
        ping: None,
        log: tracing::Level::WARN,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--port" => args.port = value.parse().unwrap_or_else(|_| usage("bad --port")),
            "--redis" => args.redis = value,
            "--mode" => {
                args.streams = match value.as_str() {
                    "classic" => false,
                    "streams" => true,
                    _ => usage("--mode is classic or streams"),
                }
            }
            "--recovery" => {
                args.recovery = match value.as_str() {
                    "on" => true,
                    "off" => false,
                    _ => usage("--recovery is on or off"),
                }
            }
            "--stream" => args.stream = value,
            "--ping-ms" => {
                let ms: u64 = value.parse().unwrap_or_else(|_| usage("bad --ping-ms"));
                args.ping = Some(Duration::from_millis(ms));
            }
            "--log" => args.log = value.parse().unwrap_or_else(|_| usage("bad --log")),
            _ => usage(&format!("unknown option {flag}")),
        }
    }
    if args.redis.is_empty() {
        usage("--redis is required");
    }
    args
}

/// The handlers listed in the module documentation.
fn install(io: &Io<TokioRuntime>) {
    let ns = io.ns("/");
    let me = io.node_id().to_string();

    let hello_node = me.clone();
    ns.on_connection(move |s: Socket| {
        let node = hello_node.clone();
        async move {
            let auth = s.handshake().auth().clone();
            if let Ok(args) = Payload::new().arg(&auth).and_then(|p| p.arg(&node)) {
                s.emit_payload("hello", args);
            }
        }
    });
    let left_io = io.clone();
    ns.on_disconnect(move |s: Socket, reason: DisconnectReason| {
        let io = left_io.clone();
        async move {
            let _ = io.to("watchers").emit(
                "left",
                &json!({ "id": s.id().to_string(), "reason": reason.as_str() }),
            );
        }
    });
    ns.on("echo", |s: Socket, payload: Payload| async move {
        s.emit_payload("echo", payload);
    });
    ns.on("ack", |payload: Payload| async move { payload });
    ns.on(
        "blobs",
        |s: Socket, Data((n, size)): Data<(usize, usize)>| async move {
            for i in 0..n {
                if let Ok(args) = Payload::new().arg(&json!({ "i": i })) {
                    s.emit_payload("blob", args.bin(vec![(i % 256) as u8; size]));
                }
            }
            n
        },
    );
    ns.on("join", |s: Socket, Data(room): Data<String>| async move {
        s.join(room.as_str());
        room
    });
    let room_io = io.clone();
    let room_node = me.clone();
    ns.on(
        "to-room",
        move |Data((room, event, data)): Data<(String, String, Value)>| {
            let io = room_io.clone();
            let node = room_node.clone();
            async move {
                let _ = io.to(room.as_str()).emit(&event, &data);
                node
            }
        },
    );
    // Every node answers the server-side event by broadcasting from itself.
    let all_io = io.clone();
    let all_node = me.clone();
    ns.on_server_event("broadcast-all", move |_payload: Payload| {
        let io = all_io.clone();
        let node = all_node.clone();
        async move {
            let _ = io.emit("from-node", &node);
        }
    });
    let ask_io = io.clone();
    let ask_node = me.clone();
    ns.on("broadcast-all", move || {
        let io = ask_io.clone();
        let node = ask_node.clone();
        async move {
            let _ = io.ns("/").server_side_emit("broadcast-all", &node);
            let _ = io.emit("from-node", &node);
            node
        }
    });
    ns.on("server-ack", |s: Socket, payload: Payload| async move {
        match s
            .ack_payload("ask", payload, Some(Duration::from_secs(10)))
            .await
        {
            Ok(answer) => s.emit_payload("answer", answer),
            Err(e) => {
                let _ = s.emit("answer-error", &e.to_string());
            }
        }
    });
    ns.on("disconnect-me", |s: Socket, payload: Payload| async move {
        let close = payload.args().first().and_then(Value::as_bool) == Some(true);
        s.disconnect(close);
    });
    let list_io = io.clone();
    ns.on("sockets", move || {
        let io = list_io.clone();
        async move {
            let mut ids: Vec<String> = io
                .fetch_sockets()
                .await
                .iter()
                .map(|s| s.id().to_string())
                .collect();
            ids.sort();
            ids
        }
    });
    let node_of = me;
    ns.on("node", move |s: Socket| {
        let node = node_of.clone();
        async move { json!({ "node": node, "recovered": s.recovered() }) }
    });
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = parse_args();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(args.log)
        .init();
    let rt = TokioRuntime::current();
    let mut builder = volley::builder().request_timeout(Duration::from_secs(3));
    if let Some(ping) = args.ping {
        builder = builder.ping_interval(ping).ping_timeout(ping);
    }
    if args.recovery {
        builder = builder.connection_state_recovery(Duration::from_secs(60), true);
    }
    let (io, relay) = if args.streams {
        let options = StreamsOptions::new(&args.redis)
            .stream_name(&args.stream)
            .forward_sessions();
        let adapter = StreamsAdapter::new(options, rt.clone());
        let io = builder.adapter(adapter.clone()).build(rt);
        adapter.ready().await;
        (io, adapter.redis_relay())
    } else {
        let adapter = RedisAdapter::new(
            RedisOptions::new(&args.redis).forward_sessions(),
            rt.clone(),
        );
        let io = builder.adapter(adapter.clone()).build(rt);
        adapter.subscribed().await;
        (io, adapter.redis_relay())
    };
    let relay = relay.ok_or_else(|| std::io::Error::other("forwarding is on: a relay"))?;
    relay.subscribed().await;
    install(&io);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    let port = listener.local_addr()?.port();
    let server = tokio::spawn(volley_tokio::serve(listener, io.driver().clone()));
    println!("listening {port} {}", io.node_id());
    server.await.map_err(std::io::Error::other)?
}
