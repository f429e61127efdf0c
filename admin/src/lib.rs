//! The server side of the Socket.IO Admin UI (`@socket.io/admin-ui` 0.5.x) for Volley.
//!
//! [`instrument`] does what the reference's `instrument(io, options)` does: it declares the
//! admin namespace (default `/admin`), guards it with basic authentication (a bcrypt hash, as
//! the reference takes) or, only when asked, none, and then speaks the dashboard's protocol:
//!
//! | direction | event | payload |
//! | --- | --- | --- |
//! | server → UI | `session` | the session id issued after a password login (the UI reconnects with it as `auth.sessionId`) |
//! | server → UI | `config` | `{ supportedFeatures }`: the commands `EMIT`, `JOIN`, `LEAVE`, `DISCONNECT`, `MJOIN`, `MLEAVE`, `MDISCONNECT` (none when read-only), then `AGGREGATED_EVENTS` always and `ALL_EVENTS` in development mode (the dashboard tells the modes apart by it) |
//! | server → UI | `server_stats` | every `stats_interval` (2 s): `{ serverId, hostname, pid, uptime, clientsCount, pollingClientsCount, aggregatedEvents, namespaces }`; broadcast through the adapter, so each node of a cluster reports to every dashboard. `aggregatedEvents` is this node's traffic since its previous report ([`Io::traffic`]): `{ timestamp, type, count }` for `rawConnection` and `rawDisconnection` (Engine.IO sessions), `packetsIn`, `packetsOut`, `bytesIn` and `bytesOut`, which the dashboard's charts add up (without the close reason the reference gives `rawDisconnection` as `subType`; the stats sent to a dashboard as it connects carry none) |
//! | server → UI | `all_sockets` | on connect (development mode): every socket of every namespace, on every node |
//! | server → UI | `socket_connected` | `socket, date` (development mode) |
//! | server → UI | `socket_updated` | `{ id, nsp, transport: "websocket" }` when a socket that opened over polling upgrades, `{ id, nsp, data }` when its data changes (see below) (development mode) |
//! | server → UI | `socket_disconnected` | `nsp, id, reason, date` (development mode) |
//! | server → UI | `room_joined`, `room_left` | `nsp, room, id, date` for every join and leave on this node ([`Io::on_room_membership`]), but the join of a socket's own room, which `socket_connected` lists; a socket's reports are held until its `socket_connected` went out (development mode) |
//! | server → UI | `event_received`, `event_sent` | `nsp, id, [event, ...args], date` for the events of every namespace but the admin one (development mode) |
//! | UI → server | `emit` | `nsp, filter, event, ...args`: emit to the namespace, or to room `filter` in it |
//! | UI → server | `join`, `leave` | `nsp, room, filter`: make the sockets (of room `filter`) join or leave `room` |
//! | UI → server | `_disconnect` | `nsp, close, filter`: disconnect the sockets (of room `filter`) |
//!
//! Dates are JSON dates (`2026-12-05T23:40:00.123Z`), as the reference's `new Date()`
//! arguments arrive. In production mode ([`Mode::Production`]) the per-socket events and
//! `all_sockets` are not sent: the dashboard shows the servers, their counts and the charts,
//! as the reference's.
//!
//! A socket's `data` is the `serde_json::Value` stored in its [`Socket::data`] (`{}` when
//! there is none), as for the sockets of other nodes. Where the reference wraps
//! `socket.data` in a proxy that reports every property set, Volley watches the data map
//! ([`Extensions::watch`](volley::Extensions::watch)): storing that `Value`
//! (`socket.data().insert(json!(...))`), changing it in place (`data().with::<Value, _>`) or
//! removing it sends `socket_updated` with the new data, once the socket was announced
//! (what its connection middleware stored is in `socket_connected`). The transport shown
//! for a socket of another node is the one it opened its session with.
//!
//! ```rust,ignore
//! volley_admin::instrument(&io, volley_admin::Options::basic("admin", BCRYPT_HASH))?;
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use volley::runtime::Runtime;
use volley::{ConnectError, DisconnectReason, Io, Namespace, Payload, Socket, SocketId};

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
    /// Every socket and its events (the reference's default): one admin emit per connect,
    /// disconnect, room change and event in or out.
    Development,
    /// Server stats and their charts only: no socket list and no per-socket reports.
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

/// The commands, announced unless read-only.
const COMMANDS: [&str; 7] = [
    "EMIT",
    "JOIN",
    "LEAVE",
    "DISCONNECT",
    "MJOIN",
    "MLEAVE",
    "MDISCONNECT",
];

/// The features of `options`, as the reference announces them: the commands unless
/// read-only, `AGGREGATED_EVENTS` (the charts of `server_stats`) always, and `ALL_EVENTS` (the
/// per-socket events) in development mode. The dashboard takes a list with
/// `AGGREGATED_EVENTS` and without `ALL_EVENTS` for a server in production mode.
fn features(options: &Options) -> Vec<&'static str> {
    let mut features = if options.readonly {
        Vec::new()
    } else {
        COMMANDS.to_vec()
    };
    features.push("AGGREGATED_EVENTS");
    if options.mode == Mode::Development {
        features.push("ALL_EVENTS");
    }
    features
}

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
    /// Sockets of this node that opened over polling and upgraded to WebSocket since.
    upgraded: Mutex<HashSet<String>>,
    /// The traffic totals at the last `server_stats`, for the next one's `aggregatedEvents`.
    traffic: Mutex<Option<volley::Traffic>>,
    /// Which sockets the dashboards were told of, and the room reports held back for the
    /// others until they are.
    announced: Mutex<Announced>,
}

/// The connection handlers of a socket can join rooms before the connection middleware that
/// announces the socket sees it accepted (they run on the socket's task, the middleware on
/// its own), while the dashboard files a `room_joined` under a socket it knows only.
/// So a socket's room reports wait for its `socket_connected`.
#[derive(Default)]
struct Announced {
    sockets: HashSet<SocketId>,
    held: HashMap<SocketId, Vec<(&'static str, Vec<Value>)>>,
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

    fn lock_announced(&self) -> std::sync::MutexGuard<'_, Announced> {
        self.announced
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `socket_connected` for `socket`, then the room reports held for it, under the
    /// lock that orders them with the ones still coming.
    fn announce(&self, socket: &Socket) {
        let mut announced = self.lock_announced();
        self.tell(
            "socket_connected",
            &[serialize_socket(socket), now_date().into()],
        );
        announced.sockets.insert(socket.id());
        for (event, args) in announced.held.remove(&socket.id()).unwrap_or_default() {
            self.tell(event, &args);
        }
    }

    /// Sends a room report of `socket`, or holds it until the socket is announced. The leave
    /// of its own room is its last: the socket is forgotten then.
    fn room_report(&self, socket: SocketId, event: &'static str, args: Vec<Value>, last: bool) {
        let mut announced = self.lock_announced();
        if announced.sockets.contains(&socket) {
            self.tell(event, &args);
        } else if !last {
            announced
                .held
                .entry(socket)
                .or_default()
                .push((event, args));
        }
        if last {
            announced.sockets.remove(&socket);
            announced.held.remove(&socket);
        }
    }

    fn lock_upgraded(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.upgraded.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `event` with `args` to every dashboard.
    fn tell(&self, event: &str, args: &[Value]) {
        let mut payload = Payload::new();
        for a in args {
            match payload.arg(a) {
                Ok(p) => payload = p,
                Err(_) => return,
            }
        }
        self.admin_ns().all().emit_payload(event, payload);
    }

    fn namespace_names(&self) -> Vec<String> {
        let mut names = vec!["/".to_owned()];
        names.extend(self.lock_namespaces().iter().filter(|n| *n != "/").cloned());
        names
    }

    /// The traffic since the last call as the reference's `aggregatedEvents`: one entry per
    /// kind that moved, stamped with the current second (the dashboard bins them by 10 s).
    async fn aggregated_events(&self) -> Vec<Value> {
        let now = self.io.traffic().await;
        let before = self
            .traffic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(now);
        let Some(before) = before else {
            return Vec::new();
        };
        let ms = millis(SystemTime::now());
        let timestamp = ms - ms % 1000;
        [
            ("rawConnection", now.sessions_opened, before.sessions_opened),
            (
                "rawDisconnection",
                now.sessions_closed,
                before.sessions_closed,
            ),
            ("packetsIn", now.packets_received, before.packets_received),
            ("packetsOut", now.packets_sent, before.packets_sent),
            ("bytesIn", now.bytes_received, before.bytes_received),
            ("bytesOut", now.bytes_sent, before.bytes_sent),
        ]
        .into_iter()
        .filter_map(|(kind, now, before)| {
            let count = now.wrapping_sub(before);
            (count > 0).then(|| json!({ "timestamp": timestamp, "type": kind, "count": count }))
        })
        .collect()
    }

    async fn stats(&self, aggregated_events: Vec<Value>) -> Value {
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
            "pollingClientsCount": self.io.polling_client_count().await,
            "aggregatedEvents": aggregated_events,
            "namespaces": namespaces,
        })
    }

    async fn all_sockets(&self) -> Vec<Value> {
        let mut all = Vec::new();
        for name in self.namespace_names() {
            for s in self.io.of(&name).fetch_sockets().await {
                let id = s.id().to_string();
                let rooms = s.rooms().iter().map(|r| r.to_string()).collect();
                let upgraded = s.is_local() && self.lock_upgraded().contains(&id);
                let data = data_json(s.data());
                all.push(serialize(&id, s.ns(), s.handshake(), data, rooms, upgraded));
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

/// `t` as JavaScript's `Date.prototype.toJSON` writes it (`2026-12-05T23:40:00.123Z`), the
/// form the reference's `new Date()` arguments reach the dashboard in.
fn iso_date(t: SystemTime) -> String {
    let ms = millis(t);
    let (secs, ms) = (ms / 1000, ms % 1000);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (proleptic Gregorian), by 400-year eras.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

fn now_date() -> String {
    iso_date(SystemTime::now())
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

/// A socket's data as the dashboard shows it: the `serde_json::Value` stored in its data (as
/// for the sockets of other nodes), `{}` when there is none.
fn data_json(data: &volley::Extensions) -> Value {
    data.get::<Value>().unwrap_or_else(|| json!({}))
}

fn serialize(
    id: &str,
    nsp: &str,
    h: &volley::Handshake,
    data: Value,
    rooms: Vec<String>,
    upgraded: bool,
) -> Value {
    let (handshake, client_id, transport) = handshake_json(h, id);
    let transport = if upgraded {
        "websocket".to_owned()
    } else {
        transport
    };
    json!({
        "id": id,
        "clientId": client_id,
        "transport": transport,
        "nsp": nsp,
        "data": data,
        "handshake": handshake,
        "rooms": rooms,
    })
}

fn serialize_socket(s: &Socket) -> Value {
    let id = s.id().to_string();
    let data = data_json(s.data());
    serialize(&id, s.ns(), s.handshake(), data, vec![id.clone()], false)
}

/// Reports the events sockets of namespace `nsp` receive and are sent (`event_received`,
/// `event_sent`: `nsp, id, [event, ...args], date`), as the reference does in development mode
/// for every namespace but its own.
fn watch_events<R: Runtime>(admin: &Arc<Admin<R>>, nsp: &str) {
    let ns = admin.io.of(nsp);
    let a = admin.clone();
    ns.on_any(move |s: Socket, event: String, payload: Payload| {
        let admin = a.clone();
        async move {
            admin.tell(
                "event_received",
                &[
                    s.ns().into(),
                    s.id().to_string().into(),
                    event_args(&event, &payload),
                    now_date().into(),
                ],
            );
        }
    });
    let a = admin.clone();
    ns.on_any_outgoing(move |s: &Socket, event: &str, payload: &Payload| {
        a.tell(
            "event_sent",
            &[
                s.ns().into(),
                s.id().to_string().into(),
                event_args(event, payload),
                now_date().into(),
            ],
        );
    });
}

/// `[event, ...args]`; binary arguments show as their placeholders.
fn event_args(event: &str, payload: &Payload) -> Value {
    let mut args = vec![Value::from(event)];
    args.extend(payload.args().iter().cloned());
    Value::Array(args)
}

/// `socket_updated` with the socket's data when the `serde_json::Value` in it is stored,
/// changed in place (`with`) or removed: what the dashboard shows as the data, and what the
/// reference reports when a property of `socket.data` is set.
fn watch_data<R: Runtime>(admin: &Arc<Admin<R>>, socket: &Socket) {
    let (id, nsp) = (socket.id().to_string(), socket.ns().to_owned());
    let a = admin.clone();
    socket.data().watch(move |data, type_id| {
        if type_id == std::any::TypeId::of::<Value>() {
            a.tell(
                "socket_updated",
                &[json!({ "id": id, "nsp": nsp, "data": data_json(data) })],
            );
        }
    });
}

/// For a socket that opened over polling: `socket_updated` with its new transport when it
/// upgrades to WebSocket (the reference's `socket.conn.on("upgrade")`).
fn watch_upgrade<R: Runtime>(admin: &Arc<Admin<R>>, socket: &Socket) {
    if socket.handshake().query("transport").as_deref() != Some("polling") {
        return;
    }
    let upgraded = socket.conn().upgraded();
    let socket = socket.clone();
    let a = admin.clone();
    admin.io.driver().runtime().spawn(async move {
        if upgraded.await && socket.connected() {
            let (id, nsp) = (socket.id().to_string(), socket.ns().to_owned());
            a.lock_upgraded().insert(id.clone());
            a.tell(
                "socket_updated",
                &[json!({ "id": id, "nsp": nsp, "transport": "websocket" })],
            );
        }
    });
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
        upgraded: Mutex::new(HashSet::new()),
        traffic: Mutex::new(None),
        announced: Mutex::new(Announced::default()),
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
                            let id = s.id().to_string();
                            admin.lock_upgraded().remove(&id);
                            // Reports held for a socket that leaves unannounced. (An
                            // announced one is forgotten at the leave of its own room.)
                            admin.lock_announced().held.remove(&s.id());
                            admin.tell(
                                "socket_disconnected",
                                &[
                                    s.ns().into(),
                                    id.into(),
                                    reason.as_str().into(),
                                    now_date().into(),
                                ],
                            );
                        }
                    });
                if nsp != admin.options.namespace_name {
                    watch_events(&admin, &nsp);
                }
            }
            // The dashboards' own sockets are announced by their connection handler, before
            // what it sends them (see below); the others as soon as they are accepted.
            let development =
                admin.options.mode == Mode::Development && nsp != admin.options.namespace_name;
            let watched = ctx.clone();
            let mut announced = false;
            let mut run = std::pin::pin!(next.run(ctx));
            std::future::poll_fn(|cx| {
                let poll = run.as_mut().poll(cx);
                if !announced {
                    if let Some(socket) = watched.socket() {
                        announced = true;
                        if development {
                            admin.announce(socket);
                            watch_upgrade(&admin, socket);
                            watch_data(&admin, socket);
                        }
                    }
                }
                poll
            })
            .await
        }
    });

    if options.mode == Mode::Development {
        let a = admin.clone();
        io.on_room_membership(move |nsp, change| {
            let own = change.room.as_str() == change.socket.as_str();
            // A socket's own room: the dashboard learns it from `socket_connected` (the
            // reference reports its join before that, when the dashboard only logs it). Its
            // leave is reported, as the dashboard drops a room on `room_left` only.
            if change.joined && own {
                return;
            }
            let event = if change.joined {
                "room_joined"
            } else {
                "room_left"
            };
            let args = vec![
                nsp.into(),
                change.room.as_str().into(),
                change.socket.to_string().into(),
                now_date().into(),
            ];
            a.room_report(change.socket, event, args, !change.joined && own);
        });
    }

    let a = admin.clone();
    ns.on_connection(move |socket: Socket| {
        let admin = a.clone();
        async move {
            if admin.options.mode == Mode::Development {
                // Announced from here, so that a dashboard hears of its own socket before
                // its session, config, stats and the list of sockets.
                admin.announce(&socket);
                watch_upgrade(&admin, &socket);
                watch_data(&admin, &socket);
            }
            if let Some(Issued(id)) = socket.data().get::<Issued>() {
                let _ = socket.emit("session", &id);
            }
            let _ = socket.emit(
                "config",
                &json!({ "supportedFeatures": features(&admin.options) }),
            );
            let _ = socket.emit("server_stats", &admin.stats(Vec::new()).await);
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
            let aggregated = admin.aggregated_events().await;
            let stats = admin.stats(aggregated).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_written_as_javascript_does() {
        for (ms, want) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_123, "2000-02-29T00:00:00.123Z"),
            (1_796_514_123_456, "2026-12-05T23:42:03.456Z"),
            (4_102_444_799_999, "2099-12-31T23:59:59.999Z"),
        ] {
            assert_eq!(iso_date(UNIX_EPOCH + Duration::from_millis(ms)), want);
        }
    }
}
