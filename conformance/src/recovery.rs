//! The connection state recovery application (`conformance-server --app recovery`).
//!
//! Recovery changes every event the server sends without acknowledgement (an offset becomes
//! its last argument), so it runs on a server of its own: `--app recovery` builds the server
//! with [`options`] (a [`WINDOW`] of 3 s, `skip_middlewares` on, as the reference's default)
//! and installs the usual scenario namespaces (see the crate documentation; departures from
//! `/` are reported to `/admin` as `left`) plus what [`install`] adds on `/`.
//! `tests/recovery.test.mjs` asks for it with `// @server --app recovery`.
//!
//! A client names itself with the auth object's `client` string; the server counts, per
//! name, the runs of `/`'s connection middleware and of its `connection` handler, which
//! makes "the middleware was skipped" and "the connection handler ran again" observable.
//!
//! | on `/` | what the server does |
//! | --- | --- |
//! | middleware | counts a run for the auth's `client` |
//! | `connection` | counts a connection for the auth's `client`; on a fresh (not recovered) socket stores `{"client", "firstId"}` as its data; then emits `welcome` with `{id, recovered, offered, connections, middlewareRuns, windowMs}` (`offered`: the auth carried a `pid` and an `offset` string) |
//! | `data` | acknowledges with the socket's data (`null` when none) |
//! | `stream` | `{key, room, everyMs, afterReturn, max, binaryEvery}`: acknowledges `"started"`, then every `everyMs` emits tick `n` (`{stream: key, n}`) three ways: `room-tick` to `room`, `all-tick` to every socket of `/`, and `own-tick` through the requesting socket's handle (with a 3-byte attachment of `n % 256` every `binaryEvery`); it stops after `afterReturn` ticks sent while the socket was back from an absence, or after `max` ticks, and then emits `stream-end` with `{stream: key, count, away}` (`away`: ticks sent while the socket was not connected) through the same handle |
//!
//! Another variant of this application (another parser, say) is one more option on the
//! server's command line: the handlers here do not depend on the wire format.

use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use volley::runtime::Runtime;
use volley::{Builder, ConnectCtx, Data, Io, Namespace, Next, Payload, Socket};

/// How long a disconnected socket's session, and every event sent with an offset, is kept.
pub const WINDOW: Duration = Duration::from_secs(3);

/// The options of the `stream` command.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamSpec {
    /// The stream's name, sent in every tick (clients ignore other streams' `all-tick`).
    pub key: String,
    /// The room `room-tick` goes to.
    pub room: String,
    /// The pause between two ticks, in milliseconds.
    pub every_ms: u64,
    /// How many ticks to send once the socket is back from an absence.
    pub after_return: u32,
    /// The most ticks to send.
    pub max: u32,
    /// Every how many ticks `own-tick` carries an attachment (0: never).
    #[serde(default)]
    pub binary_every: u32,
}

/// What the server counted for one client name.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    middleware_runs: u64,
    connections: u64,
}

/// The application's shared state.
#[derive(Default)]
struct State {
    /// Per client name.
    counts: HashMap<String, Counts>,
    /// Connected sockets of `/` by id, as a count: a recovered socket's `connection` may run
    /// before the `disconnect` handler of its previous incarnation.
    present: HashMap<String, i64>,
}

type Shared = Arc<Mutex<State>>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// The client name in an auth object (empty when absent).
fn client_name(auth: &Value) -> String {
    auth.get("client")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// `builder` with connection state recovery on: a [`WINDOW`] and the middleware skipped on a
/// recovered connect.
pub fn options(builder: Builder) -> Builder {
    builder.connection_state_recovery(WINDOW, true)
}

/// Adds the recovery handlers to `/` (the scenario handlers are [`crate::install`]'s).
/// `rt` runs the streams.
pub fn install<R: Runtime>(io: &Io<R>, rt: R) {
    let state = Shared::default();
    let ns = io.ns("/");

    let st = state.clone();
    ns.use_connect(move |ctx: ConnectCtx, next: Next| {
        let name = client_name(ctx.auth());
        lock(&st).counts.entry(name).or_default().middleware_runs += 1;
        async move { next.run(ctx).await }
    });

    let st = state.clone();
    ns.on_connection(move |s: Socket| {
        let st = st.clone();
        async move {
            let auth = s.handshake().auth();
            let name = client_name(auth);
            let offered = ["pid", "offset"]
                .iter()
                .all(|k| auth.get(k).is_some_and(Value::is_string));
            let counts = {
                let mut st = lock(&st);
                *st.present.entry(s.id().as_str().to_owned()).or_default() += 1;
                let counts = st.counts.entry(name.clone()).or_default();
                counts.connections += 1;
                *counts
            };
            if !s.recovered() {
                s.data()
                    .insert(json!({ "client": name, "firstId": s.id().as_str() }));
            }
            let _ = s.emit(
                "welcome",
                &json!({
                    "id": s.id().as_str(),
                    "recovered": s.recovered(),
                    "offered": offered,
                    "connections": counts.connections,
                    "middlewareRuns": counts.middleware_runs,
                    "windowMs": WINDOW.as_millis() as u64,
                }),
            );
        }
    });

    let st = state.clone();
    ns.on_disconnect(move |s: Socket, _reason| {
        let st = st.clone();
        async move {
            let mut st = lock(&st);
            let id = s.id().as_str().to_owned();
            let left = st.present.get(&id).copied().unwrap_or_default() - 1;
            if left == 0 {
                st.present.remove(&id);
            } else {
                st.present.insert(id, left);
            }
        }
    });

    ns.on("data", |s: Socket| async move {
        s.data().get::<Value>().unwrap_or(Value::Null)
    });

    let all = ns.clone();
    ns.on("stream", move |s: Socket, Data(spec): Data<StreamSpec>| {
        let (rt, ns, st) = (rt.clone(), all.clone(), state.clone());
        async move {
            rt.spawn(stream(rt.clone(), ns, s, spec, st));
            "started"
        }
    });
}

/// The `stream` command's ticks (see the module documentation).
async fn stream<R: Runtime>(rt: R, ns: Namespace, s: Socket, spec: StreamSpec, state: Shared) {
    let id = s.id().as_str().to_owned();
    let (mut n, mut away, mut back) = (0u32, 0u32, 0u32);
    while n < spec.max && back < spec.after_return {
        let tick = json!({ "stream": spec.key, "n": n });
        let _ = ns.to(spec.room.as_str()).emit("room-tick", &tick);
        let _ = ns.emit("all-tick", &tick);
        let Ok(mut own) = Payload::of(&tick) else {
            return;
        };
        if spec.binary_every > 0 && n % spec.binary_every == 0 {
            own = own.bin(vec![(n % 256) as u8; 3]);
        }
        // Through the handle the stream started with, whatever became of the connection.
        s.emit_payload("own-tick", own);
        if lock(&state).present.contains_key(&id) {
            if away > 0 {
                back += 1;
            }
        } else {
            away += 1;
        }
        n += 1;
        rt.sleep(Duration::from_millis(spec.every_ms)).await;
    }
    let _ = s.emit(
        "stream-end",
        &json!({ "stream": spec.key, "count": n, "away": away }),
    );
}
