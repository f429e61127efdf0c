//! What a socket carried when it connected.

use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use volley_core::Sid;
use volley_core::cluster::HandshakeInfo;
use volley_core::http::{RequestHead, query_pairs};
use volley_core::socketio::{ConnectRequest, Handshake as Connection, SioProtocol};

/// The auth text of a client that sent none, shared by every socket that has it.
static NO_AUTH: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("{}"));

/// `text` as shared text; the common `{}` without an allocation of its own.
fn auth_text(text: &str) -> Arc<str> {
    if text == "{}" {
        NO_AUTH.clone()
    } else {
        Arc::from(text)
    }
}

/// The handshake of a socket: the Engine.IO handshake request (headers, query, url) plus the
/// namespace connection's auth object.
///
/// The handshake of a socket of another node (from `fetch_sockets` on a cluster) is rebuilt
/// from what that node sent: the headers, url, query, auth, the client's IP address (as the
/// peer address, port 0) and the wall-clock time of the connection; its protocol reads as v5.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// The connection's handshake (request head, issue time, protocol), shared with the
    /// connection's state in the core and with the connection's other sockets.
    pub(crate) conn: Arc<Connection>,
    pub(crate) auth: serde_json::Value,
    pub(crate) auth_text: Arc<str>,
    /// Query parameters beyond the handshake request's (a v4 client's namespace query).
    pub(crate) query: Vec<(String, String)>,
    pub(crate) issued_at: SystemTime,
    pub(crate) nsp: Arc<str>,
}

impl Handshake {
    pub(crate) fn from_request(req: &ConnectRequest) -> Self {
        let auth = serde_json::from_str(req.auth.as_str()).unwrap_or(serde_json::Value::Null);
        Handshake {
            conn: req.handshake.clone(),
            auth,
            auth_text: auth_text(req.auth.as_str()),
            query: req
                .query
                .as_ref()
                .map(|q| {
                    query_pairs(q.as_str())
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect()
                })
                .unwrap_or_default(),
            issued_at: SystemTime::now(),
            nsp: req.nsp.clone(),
        }
    }

    /// The handshake as it travels to the other nodes of a cluster.
    pub(crate) fn to_info(&self) -> HandshakeInfo {
        let headers = self
            .conn
            .request
            .headers()
            .map(|(n, v)| {
                (
                    n.to_ascii_lowercase(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        let mut query: Vec<(String, String)> = query_pairs(self.conn.request.query())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        for (k, v) in &self.query {
            if !query.iter().any(|(q, _)| q == k) {
                query.push((k.clone(), v.clone()));
            }
        }
        HandshakeInfo {
            headers,
            issued: self
                .issued_at
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            address: self.address(false).unwrap_or_default(),
            xdomain: self.conn.request.header("origin").is_some(),
            secure: false,
            url: self.url().to_owned(),
            query,
            auth: self.auth_text.to_string(),
        }
    }

    /// The handshake of a socket of another node, from what that node sent; `now` is this
    /// node's clock, to place the issue time on it.
    pub(crate) fn from_info(info: &HandshakeInfo, nsp: Arc<str>, now: Instant) -> Self {
        let headers = |info: &HandshakeInfo| {
            info.headers
                .iter()
                .map(|(n, v)| (n.clone(), v.clone().into_bytes()))
                .collect::<Vec<_>>()
        };
        // A head that does not rebuild (a peer's odd header) keeps what it can.
        let mut request = RequestHead::from_parts("GET", &info.url, headers(info))
            .or_else(|_| RequestHead::from_parts("GET", &info.url, Vec::new()))
            .or_else(|_| RequestHead::from_parts("GET", "/", Vec::new()))
            .expect("a bare GET / head is valid");
        if let Ok(ip) = info.address.parse::<IpAddr>() {
            request = request.with_peer_addr(SocketAddr::new(ip, 0));
        }
        let issued_at = UNIX_EPOCH + Duration::from_millis(info.issued);
        let age = SystemTime::now()
            .duration_since(issued_at)
            .unwrap_or_default();
        let auth_text = auth_text(&info.auth);
        Handshake {
            conn: Arc::new(Connection {
                // The session is the other node's, and nothing reads it here.
                sid: Sid::new("remote").expect("a valid session id"),
                protocol: SioProtocol::V5,
                request,
                issued: now.checked_sub(age).unwrap_or(now),
            }),
            auth: serde_json::from_str(&auth_text).unwrap_or(serde_json::Value::Null),
            auth_text,
            query: info.query.clone(),
            issued_at,
            nsp,
        }
    }

    /// A request header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.conn.request.header(name)
    }

    /// All request headers.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.conn.request.headers()
    }

    /// A query parameter of the handshake request, or (v4 clients) of the namespace's query.
    pub fn query(&self, name: &str) -> Option<String> {
        if let Some(v) = self.conn.request.query_param(name) {
            return Some(v.into_owned());
        }
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// The handshake request's target (path and query).
    pub fn url(&self) -> &str {
        self.conn.request.target()
    }

    /// The auth object the client sent with the namespace connection (`{}` when none).
    pub fn auth(&self) -> &serde_json::Value {
        &self.auth
    }

    /// The auth object, deserialized.
    pub fn auth_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(&self.auth_text)
    }

    /// The cookies of the handshake request.
    pub fn cookies(&self) -> impl Iterator<Item = (&str, &str)> {
        self.conn
            .request
            .header("cookie")
            .into_iter()
            .flat_map(|h| h.split(';'))
            .filter_map(|c| {
                let (k, v) = c.split_once('=')?;
                Some((k.trim(), v.trim()))
            })
    }

    /// One cookie.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// The client's address: the first `X-Forwarded-For` entry when `trust_proxy` holds,
    /// else the TCP peer (when the runtime recorded it).
    pub fn address(&self, trust_proxy: bool) -> Option<String> {
        if trust_proxy {
            if let Some(first) = self
                .conn
                .request
                .header("x-forwarded-for")
                .and_then(|h| h.split(',').next())
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                return Some(first.to_owned());
            }
        }
        self.peer_addr().map(|a| a.ip().to_string())
    }

    /// The TCP peer of the handshake request, when the runtime recorded it.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.conn.request.peer_addr()
    }

    /// When the handshake arrived, on the server's clock (for a socket of another node: its
    /// wall-clock time placed on this node's clock).
    pub fn issued(&self) -> Instant {
        self.conn.issued
    }

    /// When the socket connected, as wall-clock time (what other nodes of a cluster see, in
    /// milliseconds since the Unix epoch).
    pub fn issued_at(&self) -> SystemTime {
        self.issued_at
    }

    /// The client's Socket.IO protocol.
    pub fn protocol(&self) -> SioProtocol {
        self.conn.protocol
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.nsp
    }
}
