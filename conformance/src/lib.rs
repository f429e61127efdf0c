//! Conformance suite: the official JavaScript clients (socket.io-client 4.x and 2.x, the
//! msgpack parser) and a real browser against Volley, on tokio and on smol (see README).
//!
//! This library holds the handlers of the test server (`conformance-server`), so that every
//! runtime serves the same application. The scenarios themselves are JavaScript files in
//! `tests/`, driven by `tests/run.rs`.
//!
//! # Events every scenario namespace answers
//!
//! | event | what the server does |
//! | --- | --- |
//! | `echo` | emits `echo` back to the sender with the same arguments (binary included) |
//! | `echo-ack` | acknowledges with the same arguments |
//! | `whoami` | acknowledges with `{nsp, id, auth, token}` (`token`: the v2 query's `token`) |
//! | `join` / `leave` | joins or leaves the room named by the first argument, then acknowledges it |
//! | `rooms` | acknowledges with the socket's rooms, sorted |
//! | `broadcast` | first argument `{to, except, event, self}`: emits `event` with the whole argument list to the sockets in `to` (all when empty) but those in `except`, leaving the sender out unless `self` is true; acknowledges `"sent"` once queued |
//! | `disconnect-me` | `socket.disconnect(false)`: the socket leaves the namespace (`41`) |
//! | `drop-transport` | `socket.disconnect(true)`: the socket leaves and the connection is closed |
//! | `ask` / `ask-short` | emits `question` to the sender with the same arguments, waits for its acknowledgement (10 s / 300 ms), and acknowledges `ask` with the answer, or with `{"ackError": …}` |
//! | `burst` | `{n, event, binaryEvery}`: emits `event` `n` times with the index (and, every `binaryEvery`, a binary attachment of `index % 256 + 1` bytes), then acknowledges `n` |
//! | `stream` | `{room, event, max}`: a thread of its own broadcasts `event` with 0, 1, 2, … to `room` (8 per millisecond at most) until `stream-stop` or `max`, then `<event>-end` with the count; acknowledges `"started"` |
//! | `stream-stop` | stops the socket's `stream` |
//! | `seq` | records its first argument (an integer) in the socket's log |
//! | `seq-report` | acknowledges with the log and clears it |
//!
//! `/admin` also answers `kick` (`{nsp, id, close}`): it disconnects another socket
//! (`disconnect(close)`) and acknowledges whether it found it.
//!
//! Namespaces: `/` (unless the chat application takes it), `/admin`, `/custom`, and
//! `/secure`, whose middleware refuses a connection with `unauthorized` and data
//! `{"code": 42}` unless the auth object's (or, for v2 clients, the query's) `token` is
//! `abc`. Every socket leaving `/`, `/custom` or `/secure` is reported to the sockets of
//! `/admin` as `left` with `{nsp, id, reason}`.
//!
//! The [`recovery`] module holds the application of the server with connection state
//! recovery on (`--app recovery`).

#![forbid(unsafe_code)]

pub mod recovery;

use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;
use volley::runtime::Runtime;
use volley::{ConnectCtx, ConnectError, Data, Io, Namespace, Next, Payload, Socket};

/// The namespaces whose departures are reported to `/admin`.
pub const REPORTED: [&str; 3] = ["/", "/custom", "/secure"];

/// How long `ask` waits for the client's answer.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `ask-short` waits for the client's answer.
pub const ASK_SHORT_TIMEOUT: Duration = Duration::from_millis(300);

/// The options of the `broadcast` command (its first argument).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BroadcastSpec {
    /// Target rooms (a union); every socket of the namespace when empty.
    pub to: Vec<String>,
    /// Rooms left out.
    pub except: Vec<String>,
    /// The event to emit.
    pub event: String,
    /// Whether the sender receives it too (a namespace-wide broadcast, not the socket's).
    #[serde(rename = "self")]
    pub include_self: bool,
}

/// The options of the `burst` command.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BurstSpec {
    /// How many events to emit.
    pub n: u32,
    /// Their name.
    pub event: String,
    /// Every how many events one carries a binary attachment (0: never).
    #[serde(default)]
    pub binary_every: u32,
}

/// The options of the `stream` command.
#[derive(Debug, Deserialize)]
pub struct StreamSpec {
    /// The room the events go to (as broadcasts).
    pub room: String,
    /// Their name; each carries its number, from 0.
    pub event: String,
    /// The most events sent before the stream stops by itself.
    pub max: u64,
}

/// Stops a socket's `stream` when set (`stream-stop`).
#[derive(Debug, Default, Clone)]
struct StreamStop(std::sync::Arc<std::sync::atomic::AtomicBool>);

/// The options of `/admin`'s `kick` command.
#[derive(Debug, Deserialize)]
pub struct KickSpec {
    /// The namespace of the socket.
    pub nsp: String,
    /// Its id.
    pub id: String,
    /// Whether to close its whole connection (`disconnect(true)`).
    #[serde(default)]
    pub close: bool,
}

/// The integers `seq` recorded for one socket, in arrival order.
#[derive(Debug, Default, Clone)]
struct SeqLog(Vec<u64>);

/// Registers the scenario handlers. With `root`, `/` gets them too; without, `/` is left
/// to the caller (the chat application).
pub fn install<R: Runtime>(io: &Io<R>, root: bool) {
    let admin = io.ns("/admin");
    install_common(&admin);

    if root {
        let ns = io.ns("/");
        install_common(&ns);
        report_departures(&ns, &admin);
    }

    let custom = io.ns("/custom");
    install_common(&custom);
    report_departures(&custom, &admin);

    let secure = io.ns("/secure");
    secure.use_connect(|ctx: ConnectCtx, next: Next| async move {
        let by_auth = ctx.auth().get("token").and_then(Value::as_str) == Some("abc");
        let by_query = ctx.handshake().query("token").as_deref() == Some("abc");
        if !(by_auth || by_query) {
            return Err(ConnectError::new("unauthorized").with_data(json!({ "code": 42 })));
        }
        next.run(ctx).await
    });
    install_common(&secure);
    report_departures(&secure, &admin);

    let mut kickable = vec![custom, secure];
    if root {
        kickable.push(io.ns("/"));
    }
    admin.on("kick", move |Data(spec): Data<KickSpec>| {
        let kickable = kickable.clone();
        async move {
            let Some(ns) = kickable
                .iter()
                .find(|ns| ns.name() == Some(spec.nsp.as_str()))
            else {
                return false;
            };
            let sockets = ns.all().fetch_sockets().await;
            match sockets.iter().find(|s| s.id().as_str() == spec.id) {
                Some(s) => {
                    s.disconnect(spec.close);
                    true
                }
                None => false,
            }
        }
    });
}

/// Tells `/admin` about every socket leaving `ns`.
fn report_departures(ns: &Namespace, admin: &Namespace) {
    let nsp = ns.name().unwrap_or("/").to_owned();
    let admin = admin.clone();
    ns.on_disconnect(move |s: Socket, reason| {
        let report = json!({ "nsp": nsp, "id": s.id().as_str(), "reason": reason.as_str() });
        let admin = admin.clone();
        async move {
            let _ = admin.emit("left", &report);
        }
    });
}

/// The handlers every scenario namespace has (see the crate documentation).
fn install_common(ns: &Namespace) {
    ns.on("echo", |s: Socket, args: Payload| async move {
        s.emit_payload("echo", args);
    });
    ns.on("echo-ack", |args: Payload| async move { args });
    ns.on("whoami", |s: Socket| async move {
        json!({
            "nsp": s.ns(),
            "id": s.id().as_str(),
            "auth": s.handshake().auth(),
            "token": s.handshake().query("token"),
        })
    });
    ns.on("join", |s: Socket, Data(room): Data<String>| async move {
        s.join(room.as_str());
        room
    });
    ns.on("leave", |s: Socket, Data(room): Data<String>| async move {
        s.leave(room.as_str());
        room
    });
    ns.on("rooms", |s: Socket| async move {
        let mut rooms: Vec<String> = s.rooms().await.iter().map(|r| r.to_string()).collect();
        rooms.sort();
        rooms
    });

    let all = ns.all();
    ns.on("broadcast", move |s: Socket, args: Payload| {
        let all = all.clone();
        async move {
            let spec: BroadcastSpec = args
                .args()
                .first()
                .cloned()
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| format!("bad broadcast options: {e}"))?
                .unwrap_or_default();
            let mut op = if spec.include_self {
                all
            } else {
                s.broadcast()
            };
            for room in spec.to {
                op = op.to(room);
            }
            for room in spec.except {
                op = op.except(room);
            }
            op.emit_payload(&spec.event, args);
            Ok::<_, String>("sent")
        }
    });

    ns.on(
        "disconnect-me",
        |s: Socket| async move { s.disconnect(false) },
    );
    ns.on(
        "drop-transport",
        |s: Socket| async move { s.disconnect(true) },
    );
    ns.on("ask", |s: Socket, args: Payload| ask(s, args, ASK_TIMEOUT));
    ns.on("ask-short", |s: Socket, args: Payload| {
        ask(s, args, ASK_SHORT_TIMEOUT)
    });

    ns.on(
        "burst",
        |s: Socket, Data(spec): Data<BurstSpec>| async move {
            for i in 0..spec.n {
                let mut payload = Payload::of(&i).map_err(|e| e.to_string())?;
                if spec.binary_every > 0 && i % spec.binary_every == 0 {
                    payload = payload.bin(vec![(i % 256) as u8; (i % 256) as usize + 1]);
                }
                s.emit_payload(&spec.event, payload);
            }
            Ok::<_, String>(spec.n)
        },
    );

    // Broadcasts numbered events to a room from a thread of its own (not a runtime task),
    // until `stream-stop` or `max`; then `<event>-end` with the count, to the same room.
    let streams = ns.all();
    ns.on("stream", move |s: Socket, Data(spec): Data<StreamSpec>| {
        let op = streams.clone().to(spec.room.as_str());
        async move {
            let stop = StreamStop::default();
            s.data().insert(stop.clone());
            std::thread::spawn(move || {
                let mut n = 0;
                while n < spec.max && !stop.0.load(std::sync::atomic::Ordering::Acquire) {
                    let _ = op.emit(&spec.event, &n);
                    n += 1;
                    if n % 8 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                let _ = op.emit(&format!("{}-end", spec.event), &n);
            });
            "started"
        }
    });
    ns.on("stream-stop", |s: Socket| async move {
        if let Some(stop) = s.data().get::<StreamStop>() {
            stop.0.store(true, std::sync::atomic::Ordering::Release);
        }
    });

    ns.on("seq", |s: Socket, args: Payload| async move {
        let Some(n) = args.args().first().and_then(Value::as_u64) else {
            return Err("seq takes an integer".to_owned());
        };
        if s.data().with(|log: &mut SeqLog| log.0.push(n)).is_none() {
            s.data().insert(SeqLog(vec![n]));
        }
        Ok(())
    });
    ns.on("seq-report", |s: Socket| async move {
        s.data().remove::<SeqLog>().unwrap_or_default().0
    });
}

/// Emits `question` to `s` with `args`, and returns the client's answer (or the failure as
/// `{"ackError": …}`) as the acknowledgement of `ask`.
async fn ask(s: Socket, args: Payload, timeout: Duration) -> Payload {
    match s.ack_payload("question", args, Some(timeout)).await {
        Ok(answer) => answer,
        Err(e) => Payload::of(&json!({ "ackError": e.to_string() })).unwrap_or_default(),
    }
}
