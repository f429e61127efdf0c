//! What a socket carried when it connected.

use serde::de::DeserializeOwned;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use volley_core::http::{RequestHead, query_pairs};
use volley_core::socketio::{ConnectRequest, SioProtocol};

/// The handshake of a socket: the Engine.IO handshake request (headers, query, url) plus the
/// namespace connection's auth object.
#[derive(Debug, Clone)]
pub struct Handshake {
    pub(crate) request: RequestHead,
    pub(crate) auth: serde_json::Value,
    pub(crate) auth_text: Arc<str>,
    pub(crate) query: Option<String>,
    pub(crate) issued: Instant,
    pub(crate) protocol: SioProtocol,
    pub(crate) nsp: Arc<str>,
}

impl Handshake {
    pub(crate) fn from_request(req: &ConnectRequest) -> Self {
        let auth = serde_json::from_str(req.auth.as_str()).unwrap_or(serde_json::Value::Null);
        Handshake {
            request: req.handshake.request.clone(),
            auth,
            auth_text: Arc::from(req.auth.as_str()),
            query: req.query.as_ref().map(|q| q.to_string()),
            issued: req.handshake.issued,
            protocol: req.handshake.protocol,
            nsp: req.nsp.clone(),
        }
    }

    /// A request header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request.header(name)
    }

    /// All request headers.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.request.headers()
    }

    /// A query parameter of the handshake request, or (v4 clients) of the namespace's query.
    pub fn query(&self, name: &str) -> Option<String> {
        if let Some(v) = self.request.query_param(name) {
            return Some(v.into_owned());
        }
        let q = self.query.as_deref()?;
        query_pairs(q)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    /// The handshake request's target (path and query).
    pub fn url(&self) -> &str {
        self.request.target()
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
        self.request
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
        self.request.peer_addr()
    }

    /// When the handshake arrived.
    pub fn issued(&self) -> Instant {
        self.issued
    }

    /// The client's Socket.IO protocol.
    pub fn protocol(&self) -> SioProtocol {
        self.protocol
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.nsp
    }
}
