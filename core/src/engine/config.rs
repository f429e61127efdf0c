//! Engine.IO options.

use std::time::Duration;

/// Which transports the engine accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transports {
    /// HTTP long-polling.
    pub polling: bool,
    /// WebSocket.
    pub websocket: bool,
}

impl Default for Transports {
    fn default() -> Self {
        Transports {
            polling: true,
            websocket: true,
        }
    }
}

/// What happens when a client does not drain its outgoing queue and the queue reaches
/// [`Config::max_buffered_packets`] or [`Config::max_buffered_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// The session is closed (reason [`CloseReason::SlowClient`](super::CloseReason)) and the
    /// send that overflowed returns [`SendError::BufferFull`](super::SendError): one stalled
    /// client never holds unbounded memory, and the application learns why it left.
    #[default]
    Close,
    /// The send that overflowed returns [`SendError::BufferFull`](super::SendError) and the
    /// session stays open; the caller decides (retry later, drop, disconnect).
    Reject,
}

/// The cookie set on the handshake response (the reference server's `cookie` option), so a
/// load balancer can pin a client's requests to one node by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cookie {
    /// The cookie's name (`io`).
    pub name: String,
    /// Its `Path` (`/`); `None` leaves the attribute out.
    pub path: Option<String>,
    /// Whether it is `HttpOnly` (yes, as the reference sets it when a path is given).
    pub http_only: bool,
    /// Its `SameSite` value (`Lax`).
    pub same_site: Option<String>,
    /// Whether it is `Secure`.
    pub secure: bool,
    /// Its `Max-Age` in seconds; a session cookie when `None`.
    pub max_age: Option<u64>,
}

impl Default for Cookie {
    fn default() -> Self {
        Cookie {
            name: "io".to_owned(),
            path: Some("/".to_owned()),
            http_only: true,
            same_site: Some("Lax".to_owned()),
            secure: false,
            max_age: None,
        }
    }
}

impl Cookie {
    /// The `Set-Cookie` value for session `sid`. Attribute values are kept to the cookie
    /// grammar's safe characters, so a configuration cannot inject other attributes.
    pub fn header_value(&self, sid: &str) -> String {
        let safe = |v: &str| -> String {
            v.chars()
                .filter(|c| c.is_ascii_graphic() && !matches!(c, ';' | ',' | '"' | '\\'))
                .collect()
        };
        let mut out = format!("{}={}", safe(&self.name), sid);
        if let Some(path) = &self.path {
            out.push_str("; Path=");
            out.push_str(&safe(path));
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        if self.secure {
            out.push_str("; Secure");
        }
        if let Some(age) = self.max_age {
            out.push_str(&format!("; Max-Age={age}"));
        }
        if let Some(same_site) = &self.same_site {
            out.push_str("; SameSite=");
            out.push_str(&safe(same_site));
        }
        out
    }
}

/// Engine.IO options. `Default` gives the reference server's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Time between two server pings (v4), or the client's announced ping period (v3).
    pub ping_interval: Duration,
    /// How long a pong (v4) or the next client ping (v3, on top of the interval) may take.
    pub ping_timeout: Duration,
    /// How long a probed WebSocket may take to send the `upgrade` packet.
    pub upgrade_timeout: Duration,
    /// How long a server-initiated close waits for a poll to deliver the close packet.
    pub close_timeout: Duration,
    /// The largest polling body and WebSocket message accepted, in bytes (`maxPayload`).
    pub max_payload: usize,
    /// Accepted transports.
    pub transports: Transports,
    /// Whether polling sessions may upgrade to WebSocket.
    pub allow_upgrades: bool,
    /// Whether Engine.IO v3 clients (`EIO=3`) are accepted.
    pub allow_eio3: bool,
    /// The request path the engine answers, with a trailing slash (`/engine.io/`).
    pub path: String,
    /// Most packets queued for one session while its transport cannot take them.
    pub max_buffered_packets: usize,
    /// Message bytes queued for one session while its transport cannot take them, beyond
    /// which sends are refused (1 MiB). A message is counted by its data (text or binary
    /// bytes, before framing). A send is refused once the queue holds the budget or more; the
    /// message that crosses it is accepted, so one message of any size (or a Socket.IO packet
    /// with its attachments) can be sent to a client that keeps up, and the queue holds less
    /// than the budget plus one message. Heartbeats are not counted.
    pub max_buffered_bytes: usize,
    /// What happens when either bound is reached.
    pub overflow: OverflowPolicy,
    /// Most packets in one polling response; the rest wait for the next poll.
    pub max_packets_per_poll: usize,
    /// A cookie carrying the session id, set on the handshake response (off by default).
    pub cookie: Option<Cookie>,
}

/// The bounds of a queue of messages waiting for a client (a session's, or one in front of
/// it): [`Config::max_buffered_packets`] and [`Config::max_buffered_bytes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueBounds {
    /// Most messages waiting.
    pub packets: usize,
    /// Message bytes waiting (see [`Message::len`](super::Message::len)) beyond which the
    /// next message is refused.
    pub bytes: usize,
}

impl QueueBounds {
    /// Whether a queue holding `packets` messages of `bytes` bytes in all refuses the next:
    /// it is full once it holds either bound, so the message that crosses the byte bound is
    /// taken, whatever its size.
    pub fn refuses(&self, packets: usize, bytes: usize) -> bool {
        packets >= self.packets || bytes >= self.bytes.max(1)
    }
}

impl Config {
    /// The bounds of a session's queue.
    pub fn queue_bounds(&self) -> QueueBounds {
        QueueBounds {
            packets: self.max_buffered_packets,
            bytes: self.max_buffered_bytes,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            upgrade_timeout: Duration::from_millis(10_000),
            close_timeout: Duration::from_millis(30_000),
            max_payload: 1_000_000,
            transports: Transports::default(),
            allow_upgrades: true,
            allow_eio3: false,
            path: "/engine.io/".to_owned(),
            max_buffered_packets: 4096,
            max_buffered_bytes: 1024 * 1024,
            overflow: OverflowPolicy::Close,
            max_packets_per_poll: 16,
            cookie: None,
        }
    }
}

impl Config {
    /// Whether a request path belongs to the engine: anything under the configured path, as
    /// the reference server matches it, or the path itself without its trailing slash.
    pub fn matches_path(&self, path: &str) -> bool {
        let base = self.path.trim_end_matches('/');
        path == base
            || path
                .strip_prefix(base)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}
