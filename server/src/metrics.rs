//! Metrics, published through the [`metrics`] facade.
//!
//! Volley records what it does with the `metrics` crate's macros; the application installs
//! the recorder it wants (`metrics-exporter-prometheus`, a StatsD exporter, an OpenTelemetry
//! bridge...). Without a recorder every call is a no-op. The names below are the series
//! Volley publishes; `docs/observability.md` has the same table, with notes on each.
//!
//! | name | kind | labels | counts |
//! | --- | --- | --- | --- |
//! | `volley_connections` | gauge | `transport` | open Engine.IO sessions by their current transport (`polling`, `websocket`) |
//! | `volley_sockets` | gauge | `namespace` | connected sockets per namespace |
//! | `volley_connects_total` | counter | `namespace` | sockets accepted into a namespace |
//! | `volley_refusals_total` | counter | `code` | requests and connections refused: the Engine.IO error code (`0`..`5`), `connection_cap`, `per_address`, or `connect_error` (a namespace's middleware refused a CONNECT) |
//! | `volley_disconnects_total` | counter | `reason` | sockets that left, by Socket.IO reason (`transport close`, `ping timeout`...) |
//! | `volley_packets_received_total` | counter | `transport` | Engine.IO packets received |
//! | `volley_packets_sent_total` | counter | `transport` | Engine.IO packets sent |
//! | `volley_bytes_received_total` | counter | `transport` | bytes of WebSocket messages and polling bodies received |
//! | `volley_bytes_sent_total` | counter | `transport` | bytes of WebSocket messages and polling bodies sent |
//! | `volley_broadcasts_total` | counter | | broadcasts delivered on this node (one per namespace) |
//! | `volley_broadcast_recipients_total` | counter | | sockets of this node those broadcasts were queued for (the fan-out) |
//! | `volley_acks_sent_total` | counter | | acknowledgements the server asked sockets for |
//! | `volley_acks_answered_total` | counter | | acknowledgements that came back |
//! | `volley_acks_timed_out_total` | counter | | acknowledgements that did not come in time |
//! | `volley_outbox_overflows_total` | counter | `policy` | emits refused by a full outgoing queue, by overflow policy (`close`: the session was closed as a slow client; `reject`: the emit was refused) |
//! | `volley_slow_connections_total` | counter | | connections dropped by the driver because they stopped taking their outputs |
//! | `volley_recovery_attempts_total` | counter | | CONNECTs asking for connection state recovery |
//! | `volley_recovery_hits_total` | counter | | of those, sessions restored |
//! | `volley_recovery_misses_total` | counter | | of those, sessions not found (a fresh socket) |
//! | `volley_adapter_requests_total` | counter | `type` | requests to the other nodes (`fetch_sockets`, `all_rooms`, `server_side_emit`, `broadcast_ack`) |
//! | `volley_adapter_answers_total` | counter | `type` | answers from other nodes to this node's requests |
//! | `volley_adapter_timeouts_total` | counter | `type` | requests that reached their timeout before every node answered |
//! | `volley_handler_delay_seconds` | histogram | | time from an event's receipt by the machine to the start of its handling (middleware, then handler) |
//!
//! Packets: a WebSocket message is one packet; a polling body counts its packets by the
//! v4 record separator (a v3 payload counts as one). Polling bytes are bodies only, without
//! HTTP heads.

use std::time::Instant;

use metrics::{counter, gauge, histogram};
use volley_core::cluster::{ClusterMessage, RequestKind};
use volley_core::engine::OverflowPolicy;
use volley_core::socketio::{DisconnectReason, Event};

/// Open Engine.IO sessions by transport (gauge; label `transport`).
pub const CONNECTIONS: &str = "volley_connections";
/// Connected sockets (gauge; label `namespace`).
pub const SOCKETS: &str = "volley_sockets";
/// Sockets accepted (counter; label `namespace`).
pub const CONNECTS: &str = "volley_connects_total";
/// Refusals (counter; label `code`).
pub const REFUSALS: &str = "volley_refusals_total";
/// Sockets that left (counter; label `reason`).
pub const DISCONNECTS: &str = "volley_disconnects_total";
/// Engine.IO packets received (counter; label `transport`).
pub const PACKETS_RECEIVED: &str = "volley_packets_received_total";
/// Engine.IO packets sent (counter; label `transport`).
pub const PACKETS_SENT: &str = "volley_packets_sent_total";
/// Bytes received (counter; label `transport`).
pub const BYTES_RECEIVED: &str = "volley_bytes_received_total";
/// Bytes sent (counter; label `transport`).
pub const BYTES_SENT: &str = "volley_bytes_sent_total";
/// Broadcasts delivered on this node (counter).
pub const BROADCASTS: &str = "volley_broadcasts_total";
/// Sockets reached by broadcasts on this node (counter).
pub const BROADCAST_RECIPIENTS: &str = "volley_broadcast_recipients_total";
/// Acknowledgements asked for (counter).
pub const ACKS_SENT: &str = "volley_acks_sent_total";
/// Acknowledgements answered (counter).
pub const ACKS_ANSWERED: &str = "volley_acks_answered_total";
/// Acknowledgements timed out (counter).
pub const ACKS_TIMED_OUT: &str = "volley_acks_timed_out_total";
/// Emits refused by a full queue (counter; label `policy`).
pub const OUTBOX_OVERFLOWS: &str = "volley_outbox_overflows_total";
/// Connections dropped for not taking their outputs (counter).
pub const SLOW_CONNECTIONS: &str = "volley_slow_connections_total";
/// Recovery attempts (counter).
pub const RECOVERY_ATTEMPTS: &str = "volley_recovery_attempts_total";
/// Recovery attempts that restored a session (counter).
pub const RECOVERY_HITS: &str = "volley_recovery_hits_total";
/// Recovery attempts that found no session (counter).
pub const RECOVERY_MISSES: &str = "volley_recovery_misses_total";
/// Requests to other nodes (counter; label `type`).
pub const ADAPTER_REQUESTS: &str = "volley_adapter_requests_total";
/// Answers from other nodes (counter; label `type`).
pub const ADAPTER_ANSWERS: &str = "volley_adapter_answers_total";
/// Requests that timed out (counter; label `type`).
pub const ADAPTER_TIMEOUTS: &str = "volley_adapter_timeouts_total";
/// Time from an event's receipt to the start of its handling (histogram, seconds).
pub const HANDLER_DELAY: &str = "volley_handler_delay_seconds";

/// A refusal with `code` (see the table).
pub(crate) fn refused(code: &'static str) {
    counter!(REFUSALS, "code" => code).increment(1);
    tracing::debug!(code, "refused");
}

/// Socket `socket` was accepted into `nsp`, which now has `count` sockets.
pub(crate) fn socket_connected(socket: volley_core::SocketId, nsp: &str, count: usize) {
    counter!(CONNECTS, "namespace" => nsp.to_owned()).increment(1);
    gauge!(SOCKETS, "namespace" => nsp.to_owned()).set(count as f64);
    tracing::debug!(%socket, nsp, "socket connected");
}

/// What a Socket.IO event means for the counters. `count` gives a namespace's sockets.
pub(crate) fn socket_event(event: &Event, count: impl Fn(&str) -> usize) {
    match event {
        Event::Ack { .. } => counter!(ACKS_ANSWERED).increment(1),
        Event::AckFailed { reason, .. } => {
            if matches!(reason, volley_core::socketio::AckFailure::Timeout) {
                counter!(ACKS_TIMED_OUT).increment(1);
            }
        }
        Event::Disconnect {
            socket,
            nsp,
            reason,
        } => {
            disconnected(*reason);
            gauge!(SOCKETS, "namespace" => nsp.to_string()).set(count(nsp) as f64);
            tracing::debug!(%socket, %nsp, reason = reason.as_str(), "socket disconnected");
        }
        Event::Connect(_) | Event::Event { .. } | Event::Disconnecting { .. } => {}
    }
}

fn disconnected(reason: DisconnectReason) {
    counter!(DISCONNECTS, "reason" => reason.as_str()).increment(1);
}

/// A CONNECT about to run its middleware: was recovery asked for, and did it find a session?
pub(crate) fn connect_requested(auth: &str, recovered: bool) {
    if auth.contains("\"pid\"") && volley_core::socketio::recovery_auth(auth).is_some() {
        counter!(RECOVERY_ATTEMPTS).increment(1);
        if recovered {
            counter!(RECOVERY_HITS).increment(1);
        } else {
            counter!(RECOVERY_MISSES).increment(1);
        }
    }
}

/// A broadcast was delivered locally to `recipients` sockets (an error: to none).
pub(crate) fn broadcast<E>(recipients: &Result<usize, E>) {
    counter!(BROADCASTS).increment(1);
    if let Ok(n) = recipients {
        counter!(BROADCAST_RECIPIENTS).increment(*n as u64);
    }
}

/// `n` sockets were asked for an acknowledgement.
pub(crate) fn acks_sent(n: usize) {
    counter!(ACKS_SENT).increment(n as u64);
}

/// An emit met a full queue.
pub(crate) fn overflow(policy: OverflowPolicy) {
    let policy = match policy {
        OverflowPolicy::Reject => "reject",
        _ => "close",
    };
    counter!(OUTBOX_OVERFLOWS, "policy" => policy).increment(1);
}

/// A message published to the other nodes: counted when it is a request.
pub(crate) fn cluster_published(message: &ClusterMessage) {
    let kind = match message {
        ClusterMessage::FetchSockets { .. } => "fetch_sockets",
        ClusterMessage::AllRooms { .. } => "all_rooms",
        ClusterMessage::ServerSideEmit {
            request: Some(_), ..
        } => "server_side_emit",
        ClusterMessage::Broadcast { ack: Some(_), .. } => "broadcast_ack",
        _ => return,
    };
    counter!(ADAPTER_REQUESTS, "type" => kind).increment(1);
}

/// An answer to one of this node's requests.
pub(crate) fn cluster_answer(message: &ClusterMessage) {
    let kind = match message {
        ClusterMessage::FetchSocketsResponse { .. } => "fetch_sockets",
        ClusterMessage::AllRoomsResponse { .. } => "all_rooms",
        ClusterMessage::ServerSideEmitResponse { .. } => "server_side_emit",
        ClusterMessage::BroadcastClientCount { .. } | ClusterMessage::BroadcastAck { .. } => {
            "broadcast_ack"
        }
        _ => return,
    };
    counter!(ADAPTER_ANSWERS, "type" => kind).increment(1);
}

/// A request to the other nodes reached its timeout.
pub(crate) fn cluster_timeout(kind: RequestKind) {
    let kind = match kind {
        RequestKind::FetchSockets => "fetch_sockets",
        RequestKind::AllRooms => "all_rooms",
        RequestKind::ServerSideEmit => "server_side_emit",
        RequestKind::BroadcastAck => "broadcast_ack",
    };
    counter!(ADAPTER_TIMEOUTS, "type" => kind).increment(1);
}

/// When an event was received: recorded into [`HANDLER_DELAY`] when its handling starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received(Instant);

impl Received {
    pub(crate) fn now() -> Self {
        Received(Instant::now())
    }

    pub(crate) fn handling_starts(self) {
        histogram!(HANDLER_DELAY).record(self.0.elapsed().as_secs_f64());
    }
}
