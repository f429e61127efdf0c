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

/// The auth object of a client that sent none.
static EMPTY_AUTH: LazyLock<serde_json::Value> =
    LazyLock::new(|| serde_json::Value::Object(serde_json::Map::new()));

/// The auth object of `text` (`null` when it is not JSON), boxed; none for `{}`, the common
/// case, which reads as [`EMPTY_AUTH`].
fn auth_value(text: &str) -> Option<Box<serde_json::Value>> {
    (text != "{}").then(|| Box::new(serde_json::from_str(text).unwrap_or(serde_json::Value::Null)))
}

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
    /// The auth object, parsed; `None` for `{}` (most clients send no auth: 8 bytes rather
    /// than a `Value`'s 32 in every socket).
    pub(crate) auth: Option<Box<serde_json::Value>>,
    pub(crate) auth_text: Arc<str>,
    /// Query parameters beyond the handshake request's (a v4 client's namespace query).
    pub(crate) query: Box<[(String, String)]>,
    pub(crate) issued_at: SystemTime,
    pub(crate) nsp: Arc<str>,
}

impl Handshake {
    pub(crate) fn from_request(req: &ConnectRequest) -> Self {
        let auth = auth_value(req.auth.as_str());
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
        for (k, v) in self.query.iter() {
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
            auth: auth_value(&auth_text),
            auth_text,
            query: info.query.clone().into_boxed_slice(),
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
        self.auth.as_deref().unwrap_or(&EMPTY_AUTH)
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

#[cfg(test)]
mod tests {
    use super::*;
    use volley_core::Utf8Bytes;
    use volley_core::socketio::ConnectId;

    fn request(auth: &str, query: Option<&str>) -> ConnectRequest {
        let head = RequestHead::from_parts("GET", "/socket.io/?EIO=4&a=1", Vec::new())
            .expect("a valid head");
        ConnectRequest {
            id: ConnectId(1),
            nsp: Arc::from("/"),
            auth: Utf8Bytes::from(auth),
            query: query.map(Utf8Bytes::from),
            handshake: Arc::new(Connection {
                sid: Sid::new("s1").expect("a valid id"),
                protocol: SioProtocol::V5,
                request: head,
                issued: Instant::now(),
            }),
            recovered: false,
            session_data: None,
            accepted: None,
        }
    }

    #[test]
    fn auth_and_query_read_the_same_whether_kept_or_shared() {
        let none = Handshake::from_request(&request("{}", None));
        assert_eq!(none.auth(), &serde_json::json!({}));
        assert!(none.auth.is_none());
        assert_eq!(
            none.auth_as::<serde_json::Value>().ok(),
            Some(serde_json::json!({}))
        );
        assert_eq!(none.query("a").as_deref(), Some("1"));
        assert_eq!(none.query("b"), None);

        let some = Handshake::from_request(&request(r#"{"k":1}"#, Some("b=2")));
        assert_eq!(some.auth(), &serde_json::json!({"k": 1}));
        assert_eq!(some.query("b").as_deref(), Some("2"));
        assert_eq!(some.protocol(), SioProtocol::V5);
        assert_eq!(some.url(), "/socket.io/?EIO=4&a=1");

        let bad = Handshake::from_request(&request("not json", None));
        assert_eq!(bad.auth(), &serde_json::Value::Null);

        let info = some.to_info();
        let remote = Handshake::from_info(&info, Arc::from("/"), Instant::now());
        assert_eq!(remote.auth(), &serde_json::json!({"k": 1}));
        assert_eq!(remote.query("b").as_deref(), Some("2"));
        assert_eq!(remote.url(), some.url());
    }
}
