//! Per-session state: which transport carries the session, what waits to be sent, and the
//! heartbeat and upgrade deadlines. The rules that move it live in [`super::machine`].

use super::packet::{Packet, Protocol};
use crate::ids::ConnId;
use std::collections::VecDeque;
use std::time::Instant;

/// The transport a session currently uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// HTTP long-polling.
    Polling,
    /// WebSocket (from the handshake, or after an upgrade).
    WebSocket,
}

#[derive(Debug)]
pub(crate) enum Transport {
    Polling {
        /// The parked GET, if any.
        get: Option<ConnId>,
        /// The POST whose body is being read, if any.
        post: Option<ConnId>,
    },
    WebSocket {
        conn: ConnId,
        /// False from when frames are handed to the runtime until it reports them written.
        writable: bool,
    },
}

#[derive(Debug)]
pub(crate) struct Probe {
    pub conn: ConnId,
    /// `2probe` was answered: polls now get `6` until the upgrade completes or fails.
    pub probed: bool,
    pub deadline: Instant,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub protocol: Protocol,
    pub transport: Transport,
    pub probe: Option<Probe>,
    pub queue: VecDeque<Packet>,
    /// v3 polling without `b64`: binary may travel in the XHR2 framing.
    pub xhr2: bool,
    /// JSONP polling index (digits only).
    pub jsonp: Option<String>,
    /// A server-initiated close waits for a poll to carry the close packet until then.
    pub closing_until: Option<Instant>,
    /// v4: when the next ping is due.
    pub ping_at: Option<Instant>,
    /// v4: the pong deadline; v3: the deadline for the client's next ping.
    pub dead_at: Option<Instant>,
    /// v4: a packet other than pong already pushed `dead_at` back in this ping cycle.
    pub refreshed: bool,
    /// The deadline under which the session is filed in the engine's timer index.
    pub timer: Option<Instant>,
}

impl Session {
    pub fn new(protocol: Protocol, transport: Transport) -> Self {
        Session {
            protocol,
            transport,
            probe: None,
            queue: VecDeque::new(),
            xhr2: false,
            jsonp: None,
            closing_until: None,
            ping_at: None,
            dead_at: None,
            refreshed: false,
            timer: None,
        }
    }

    /// The earliest moment something is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.ping_at,
            self.dead_at,
            self.closing_until,
            self.probe.as_ref().map(|p| p.deadline),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn kind(&self) -> TransportKind {
        match self.transport {
            Transport::Polling { .. } => TransportKind::Polling,
            Transport::WebSocket { .. } => TransportKind::WebSocket,
        }
    }

    pub fn is_upgrading(&self) -> bool {
        self.probe.as_ref().is_some_and(|p| p.probed)
    }

    pub fn is_closing(&self) -> bool {
        self.closing_until.is_some()
    }

    /// Whether a packet sent now would go out at once (what `volatile` needs).
    pub fn is_writable(&self) -> bool {
        if self.is_closing() {
            return false;
        }
        match self.transport {
            Transport::Polling { get, .. } => get.is_some() && !self.is_upgrading(),
            Transport::WebSocket { writable, .. } => writable,
        }
    }
}
