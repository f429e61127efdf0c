//! The server side of the Socket.IO Admin UI (`@socket.io/admin-ui` 0.5.x) for Volley.
//!
//! [`instrument`] does what the reference's `instrument(io, options)` does: it declares the
//! admin namespace (default `/admin`), guards it with basic authentication (a bcrypt hash, as
//! the reference takes) or, only when asked, none, and then speaks the dashboard's protocol:
//!
//! | direction | event | payload |
//! | --- | --- | --- |
//! | server → UI | `session` | the session id issued after a password login (the UI reconnects with it as `auth.sessionId`) |
//! | server → UI | `config` | `{ supportedFeatures }`: `EMIT`, `JOIN`, `LEAVE`, `DISCONNECT`, `MJOIN`, `MLEAVE`, `MDISCONNECT` (none when read-only) |
//! | server → UI | `server_stats` | every `stats_interval` (2 s): `{ serverId, hostname, pid, uptime, clientsCount, pollingClientsCount, aggregatedEvents, namespaces }`; broadcast through the adapter, so each node of a cluster reports to every dashboard |
//! | server → UI | `all_sockets` | on connect (development mode): every socket of every namespace, on every node |
//! | server → UI | `socket_connected` | a serialized socket (development mode) |
//! | server → UI | `socket_disconnected` | `nsp, id, reason` (development mode) |
//! | UI → server | `emit` | `nsp, filter, event, ...args`: emit to the namespace, or to room `filter` in it |
//! | UI → server | `join`, `leave` | `nsp, room, filter`: make the sockets (of room `filter`) join or leave `room` |
//! | UI → server | `_disconnect` | `nsp, close, filter`: disconnect the sockets (of room `filter`) |
//!
//! In production mode ([`Mode::Production`]) the per-socket events and `all_sockets` are not
//! sent: the dashboard shows the servers and their counts only, as the reference's.
//!
//! Not built yet: `socket_updated` (transport upgrades and data changes), `room_joined` /
//! `room_left`, and the `event_received`/`event_sent` aggregates; the transport shown is the
//! one the client opened its session with.
//!
//! ```rust,ignore
//! volley_admin::instrument(&io, volley_admin::Options::basic("admin", BCRYPT_HASH))?;
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use volley::runtime::Runtime;
use volley::{ConnectError, DisconnectReason, Io, Namespace, Payload, RemoteSocket, Socket};

/// How the dashboard logs in.
#[derive(Clone)]
pub enum Auth {
    /// No authentication: anyone reaching the admin namespace controls the server. Logged at
    /// warn level when instrumented.
    Disabled,
    /// The dashboard's username and password form, checked against a bcrypt hash (as
    /// produced by `bcrypt.hashSync(password, 10)` or [`bcrypt::hash`]). A successful login
    /// gets a session id, kept in memory, that later connections may present instead.
    Basic {
        /// The username.
        username: String,
        /// The bcrypt hash of the password.
        password_hash: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::Disabled => f.write_str("Disabled"),
            Auth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
        }
    }
}

/// What the dashboard receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every socket and its events (the reference's default).
    Development,
    /// Server stats only: no per-socket events, which cost one admin emit per connect.
    Production,
}

/// The options of [`instrument`], with the reference's defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// The admin namespace (default `/admin`).
    pub namespace_name: String,
    /// Authentication; there is no default, as in the reference: choose [`Options::basic`]
    /// or [`Options::no_auth`].
    pub auth: Auth,
    /// Refuse the commands (`emit`, `join`, `leave`, `_disconnect`) (default `false`).
    pub readonly: bool,
    /// This server's id in the dashboard (default: the host name).
    pub server_id: Option<String>,
    /// Development (default) or production.
    pub mode: Mode,
    /// How often `server_stats` is sent (default 2 s, the reference's).
    pub stats_interval: Duration,
}

impl Options {
    /// Basic authentication with `username` and a bcrypt `password_hash`.
    pub fn basic(username: &str, password_hash: &str) -> Self {
        Self::with_auth(Auth::Basic {
            username: username.to_owned(),
            password_hash: password_hash.to_owned(),
        })
    }

    /// No authentication (see [`Auth::Disabled`]).
    pub fn no_auth() -> Self {
        Self::with_auth(Auth::Disabled)
    }

    fn with_auth(auth: Auth) -> Self {
        Options {
            namespace_name: "/admin".to_owned(),
            auth,
            readonly: false,
            server_id: None,
            mode: Mode::Development,
            stats_interval: Duration::from_secs(2),
        }
    }
}

/// Why [`instrument`] refused its options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstrumentError {
    /// The password of [`Auth::Basic`] is not a bcrypt hash.
    InvalidPasswordHash,
}

impl fmt::Display for InstrumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstrumentError::InvalidPasswordHash => {
                f.write_str("the password must be a valid bcrypt hash")
            }
        }
    }
}

impl std::error::Error for InstrumentError {}

const FEATURES: [&str; 7] = [
    "EMIT",
    "JOIN",
    "LEAVE",
    "DISCONNECT",
    "MJOIN",
    "MLEAVE",
    "MDISCONNECT",
];

/// The session ids issued after password logins (the reference's `InMemoryStore`).
#[derive(Debug, Default, Clone)]
struct Sessions(Arc<Mutex<HashSet<String>>>);

impl Sessions {
    fn contains(&self, id: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(id)
    }

    fn issue(&self) -> String {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("the OS random source works");
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone());
        id
    }
}

/// A session id issued to this connection, to send once the socket is accepted.
#[derive(Debug, Clone)]
struct Issued(String);

/// Shared by the handlers of one instrumented server.
struct Admin<R: Runtime> {
    io: Io<R>,
    options: Options,
    started: Instant,
    /// The namespaces clients connected to (besides `/`), for `all_sockets`, stats and the
    /// commands (which never create a namespace).
    namespaces: Mutex<BTreeSet<String>>,
}

impl<R: Runtime> Admin<R> {
    fn admin_ns(&self) -> Namespace {
        self.io.of(&self.options.namespace_name)
    }

    fn known(&self, nsp: &str) -> bool {
        nsp == "/" || self.lock_namespaces().contains(nsp)
    }

    fn lock_namespaces(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.namespaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn namespace_names(&self) -> Vec<String> {
        let mut names = vec!["/".to_owned()];
        names.extend(self.lock_namespaces().iter().filter(|n| *n != "/").cloned());
        names
    }

    async fn stats(&self) -> Value {
        let mut namespaces = Vec::new();
        for name in self.namespace_names() {
            let count = self.io.of(&name).local().fetch_sockets().await.len();
            namespaces.push(json!({ "name": name, "socketsCount": count }));
        }
        json!({
            "serverId": self.options.server_id.clone().unwrap_or_else(hostname),
            "hostname": hostname(),
            "pid": std::process::id(),
            "uptime": self.started.elapsed().as_secs_f64(),
            "clientsCount": self.io.client_count().await,
            "pollingClientsCount": 0,
            "aggregatedEvents": [],
            "namespaces": namespaces,
        })
    }

    async fn all_sockets(&self) -> Vec<Value> {
        let mut all = Vec::new();
        for name in self.namespace_names() {
            for s in self.io.of(&name).fetch_sockets().await {
                all.push(serialize_remote(&s));
            }
        }
        all
    }

    /// Runs a dashboard command. Unknown namespaces and malformed arguments are ignored, as
    /// the reference's handlers would do nothing useful with them.
    fn command(&self, name: &str, args: &[Value]) {
        let Some(nsp) = args.first().and_then(Value::as_str) else {
            return;
        };
        if !self.known(nsp) {
            return;
        }
        let ns = self.io.of(nsp);
        match name {
            "emit" => {
                let filter = args
                    .get(1)
                    .and_then(Value::as_str)
                    .filter(|f| !f.is_empty());
                let Some(event) = args.get(2).and_then(Value::as_str) else {
                    return;
                };
                let mut payload = Payload::new();
                for a in args.iter().skip(3) {
                    match payload.arg(a) {
                        Ok(p) => payload = p,
                        Err(_) => return,
                    }
                }
                match filter {
                    Some(room) => ns.to(room.to_owned()).emit_payload(event, payload),
                    None => ns.all().emit_payload(event, payload),
                }
            }
            "join" | "leave" => {
                let Some(room) = args.get(1).and_then(Value::as_str) else {
                    return;
                };
                let op = match args
                    .get(2)
                    .and_then(Value::as_str)
                    .filter(|f| !f.is_empty())
                {
                    Some(filter) => ns.in_(filter.to_owned()),
                    None => ns.all(),
                };
                if name == "join" {
                    op.sockets_join([room.to_owned()]);
                } else {
                    op.sockets_leave([room.to_owned()]);
                }
            }
            "_disconnect" => {
                let close = args.get(1).and_then(Value::as_bool).unwrap_or(false);
                let op = match args
                    .get(2)
                    .and_then(Value::as_str)
                    .filter(|f| !f.is_empty())
                {
                    Some(filter) => ns.in_(filter.to_owned()),
                    None => ns.all(),
                };
                op.disconnect_sockets(close);
            }
            _ => {}
        }
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".to_owned())
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn handshake_json(h: &volley::Handshake, id: &str) -> (Value, Value, String) {
    let headers: serde_json::Map<String, Value> = h
        .headers()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase(),
                Value::from(String::from_utf8_lossy(v).into_owned()),
            )
        })
        .collect();
    let url = h.url().to_owned();
    let query: serde_json::Map<String, Value> = url
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), Value::from(v.to_owned()))
        })
        .collect();
    let transport = h.query("transport").unwrap_or_else(|| "polling".to_owned());
    let address = h
        .header("cf-connecting-ip")
        .map(str::to_owned)
        .or_else(|| h.address(true))
        .unwrap_or_default();
    let issued = millis(h.issued_at());
    let handshake = json!({
        "address": address,
        "headers": headers,
        "query": query,
        "issued": issued,
        "secure": false,
        "time": format!("{issued}"),
        "url": url,
        "xdomain": h.header("origin").is_some(),
    });
    // The reference shows the first 12 characters of the Engine.IO id, which the API does
    // not expose: the socket id's prefix stands in.
    let client_id: String = id.chars().take(12).collect();
    (handshake, Value::from(client_id), transport)
}

fn serialize(id: &str, nsp: &str, h: &volley::Handshake, rooms: Vec<String>) -> Value {
    let (handshake, client_id, transport) = handshake_json(h, id);
    json!({
        "id": id,
        "clientId": client_id,
        "transport": transport,
        "nsp": nsp,
        "data": {},
        "handshake": handshake,
        "rooms": rooms,
    })
}

fn serialize_remote(s: &RemoteSocket) -> Value {
    let rooms = s.rooms().iter().map(|r| r.to_string()).collect();
    serialize(&s.id().to_string(), s.ns(), s.handshake(), rooms)
}

fn serialize_socket(s: &Socket) -> Value {
    let id = s.id().to_string();
    serialize(&id, s.ns(), s.handshake(), vec![id.clone()])
}

/// Instruments `io` for the Admin UI: declares the admin namespace with its authentication,
/// reports every connect and disconnect of every namespace to it (development mode), answers
/// its commands (unless read-only) and sends `server_stats` every `stats_interval` until the
/// server stops.
pub fn instrument<R: Runtime>(io: &Io<R>, options: Options) -> Result<(), InstrumentError> {
    if let Auth::Basic { password_hash, .. } = &options.auth {
        if password_hash.parse::<bcrypt::HashParts>().is_err() {
            return Err(InstrumentError::InvalidPasswordHash);
        }
    }
    let admin = Arc::new(Admin {
        io: io.clone(),
        options: options.clone(),
        started: Instant::now(),
        namespaces: Mutex::new(BTreeSet::new()),
    });
    let ns = admin.admin_ns();

    match options.auth.clone() {
        Auth::Disabled => {
            tracing::warn!(
                namespace = %options.namespace_name,
                "admin UI authentication is disabled: anyone reaching the namespace controls the server"
            );
        }
        Auth::Basic {
            username,
            password_hash,
        } => {
            let sessions = Sessions::default();
            ns.use_connect(move |ctx, next| {
                let (sessions, username, hash) =
                    (sessions.clone(), username.clone(), password_hash.clone());
                async move {
                    let auth = ctx.auth();
                    if let Some(id) = auth.get("sessionId").and_then(Value::as_str) {
                        if sessions.contains(id) {
                            return next.run(ctx).await;
                        }
                    }
                    let user = auth.get("username").and_then(Value::as_str);
                    let password = auth.get("password").and_then(Value::as_str);
                    if let (Some(user), Some(password)) = (user, password) {
                        if user == username && bcrypt::verify(password, &hash).unwrap_or(false) {
                            ctx.data().insert(Issued(sessions.issue()));
                            return next.run(ctx).await;
                        }
                    }
                    tracing::debug!("admin UI: invalid credentials");
                    Err(ConnectError::new("invalid credentials"))
                }
            });
        }
    }

    // Every namespace's connects, seen from a global connection middleware that wraps the
    // rest of the chain: the socket exists once the innermost `next` accepted it. Its
    // disconnect, with the reason, from a `disconnect` handler on each namespace used.
    let a = admin.clone();
    io.use_connect(move |ctx, next| {
        let admin = a.clone();
        async move {
            let nsp = ctx.handshake().namespace().to_owned();
            let first = admin.lock_namespaces().insert(nsp.clone());
            if first && admin.options.mode == Mode::Development {
                // The namespace's `disconnect` handlers see the reason.
                let a = admin.clone();
                admin
                    .io
                    .of(&nsp)
                    .on_disconnect(move |s: Socket, reason: DisconnectReason| {
                        let admin = a.clone();
                        async move {
                            let args = Payload::new()
                                .arg(s.ns())
                                .and_then(|p| p.arg(&s.id().to_string()))
                                .and_then(|p| p.arg(reason.as_str()));
                            if let Ok(args) = args {
                                admin
                                    .admin_ns()
                                    .all()
                                    .emit_payload("socket_disconnected", args);
                            }
                        }
                    });
            }
            let development = admin.options.mode == Mode::Development;
            let watched = ctx.clone();
            let mut announced = false;
            let mut run = std::pin::pin!(next.run(ctx));
            std::future::poll_fn(|cx| {
                let poll = run.as_mut().poll(cx);
                if !announced {
                    if let Some(socket) = watched.socket() {
                        announced = true;
                        if development {
                            let _ = admin
                                .admin_ns()
                                .emit("socket_connected", &serialize_socket(socket));
                        }
                    }
                }
                poll
            })
            .await
        }
    });

    let a = admin.clone();
    ns.on_connection(move |socket: Socket| {
        let admin = a.clone();
        async move {
            if let Some(Issued(id)) = socket.data().get::<Issued>() {
                let _ = socket.emit("session", &id);
            }
            let features: &[&str] = if admin.options.readonly {
                &[]
            } else {
                &FEATURES
            };
            let _ = socket.emit("config", &json!({ "supportedFeatures": features }));
            let _ = socket.emit("server_stats", &admin.stats().await);
            if admin.options.mode == Mode::Development {
                let _ = socket.emit("all_sockets", &admin.all_sockets().await);
            }
        }
    });
    if !options.readonly {
        for command in ["emit", "join", "leave", "_disconnect"] {
            let a = admin.clone();
            ns.on(command, move |p: Payload| {
                let admin = a.clone();
                async move { admin.command(command, p.args()) }
            });
        }
    }

    let runtime = io.driver().runtime().clone();
    let a = admin.clone();
    runtime.clone().spawn(async move {
        let admin = a;
        loop {
            let stats = admin.stats().await;
            let _ = admin.admin_ns().emit("server_stats", &stats);
            let stop = admin.io.driver().stopping();
            let tick = runtime.sleep(admin.options.stats_interval);
            if let futures::future::Either::Left(_) =
                futures::future::select(std::pin::pin!(stop), std::pin::pin!(tick)).await
            {
                break;
            }
        }
    });
    Ok(())
}
