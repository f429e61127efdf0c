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
//! | `volley_forwarded_requests_total` | counter | `outcome` | requests for sessions of other nodes (see `driver::forward`): on the node that received them, `answered`, `upgraded` (a WebSocket relayed to the owner) or `unreachable` (the owner is gone: answered as an unknown session); on the owner, `served` |
//! | `volley_handler_delay_seconds` | histogram | | time from an event's receipt by the machine to the start of its handling (middleware, then handler) |
//!
//! Packets: a WebSocket message is one packet; a polling body counts its packets by the
//! v4 record separator (a v3 payload counts as one). Polling bytes are bodies only, without
//! HTTP heads.
//!
//! # Cost
//!
//! The `counter!`/`histogram!` macros look their series up in the recorder on every call
//! (build the key, hash it, take the registry's lock, clone the handle). The series this
//! module counts with a fixed set of labels are looked up once instead, and their handles
//! kept per thread, for the recorder in force there: a handle is registered again when that
//! recorder changes (another local recorder, or the global one installed) or a server is
//! built. Series labelled by namespace are looked up per call, with the label taken from the
//! namespace's shared name where there is one rather than copied. The driver's packet and
//! byte series (`driver/metrics.rs`) use the same handles; its gauges, set only when they
//! change, go through the macros.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use metrics::{Counter, Histogram, Key, Label, Level, Metadata, Recorder, counter, gauge};
use volley_core::cluster::{ClusterMessage, RequestKind};
use volley_core::engine::OverflowPolicy;
use volley_core::socketio::{DisconnectReason, Event};

/// Open Engine.IO sessions by transport (gauge; label `transport`).
pub const CONNECTIONS: &str = "volley_connections";
/// Connected sockets (gauge; label `namespace`).
pub const SOCKETS: &str = "volley_sockets";
/// Sockets accepted (counter; label `namespace`).
pub const CONNECTS: &str = "volley_connects_total";
/// Requests forwarded to the node owning their session, and served for other nodes
/// (counter; label `outcome`).
pub const FORWARDED: &str = "volley_forwarded_requests_total";
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

/// What the macros would pass as metadata.
const METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The values of `type` of the adapter series, in [`RequestKind`] order.
const REQUEST_KINDS: [&str; 4] = [
    "fetch_sockets",
    "all_rooms",
    "server_side_emit",
    "broadcast_ack",
];

/// Bumped when a server is built, so that the handles kept per thread are registered again
/// with the recorder in force then.
static EPOCH: AtomicU64 = AtomicU64::new(0);

/// A server is being built: the next call on each thread looks its handles up again.
pub(crate) fn server_built() {
    EPOCH.fetch_add(1, Ordering::Relaxed);
}

/// The handles of the series with fixed labels, each looked up on first use.
#[derive(Default)]
struct Handles {
    handler_delay: Option<Histogram>,
    /// Unlabelled counters, by name.
    plain: Vec<(&'static str, Counter)>,
    /// Counters with one label, by name and value (both static strings).
    labelled: Vec<(&'static str, &'static str, Counter)>,
}

impl Handles {
    fn plain(&mut self, recorder: &dyn Recorder, name: &'static str) -> &Counter {
        let i = match self.plain.iter().position(|(n, _)| *n == name) {
            Some(i) => i,
            None => {
                let c = recorder.register_counter(&Key::from_static_name(name), &METADATA);
                self.plain.push((name, c));
                self.plain.len() - 1
            }
        };
        &self.plain[i].1
    }

    fn labelled(
        &mut self,
        recorder: &dyn Recorder,
        name: &'static str,
        label: &'static str,
        value: &'static str,
    ) -> &Counter {
        let found = self
            .labelled
            .iter()
            .position(|(n, v, _)| *n == name && *v == value);
        let i = match found {
            Some(i) => i,
            None => {
                let key = Key::from_parts(name, vec![Label::from_static_parts(label, value)]);
                let c = recorder.register_counter(&key, &METADATA);
                self.labelled.push((name, value, c));
                self.labelled.len() - 1
            }
        };
        &self.labelled[i].2
    }
}

/// The handles of one thread, and the recorder and epoch they were registered for.
struct Cache {
    recorder: usize,
    epoch: u64,
    handles: Handles,
}

thread_local! {
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

/// Runs `f` with the recorder in force and this thread's handles for it; `None` when the
/// cache is in use further up the stack (a recorder that records metrics of its own), and
/// the caller then uses the macros.
fn with_handles<T>(f: impl FnOnce(&dyn Recorder, &mut Handles) -> T) -> Option<T> {
    metrics::with_recorder(|recorder| {
        // The recorder's address tells recorders apart; the epoch catches one dropped and
        // another put at the same address between two servers.
        let id = (recorder as *const dyn Recorder).cast::<()>() as usize;
        let epoch = EPOCH.load(Ordering::Relaxed);
        CACHE
            .try_with(|cache| {
                let mut cache = cache.try_borrow_mut().ok()?;
                if cache
                    .as_ref()
                    .is_some_and(|c| c.recorder != id || c.epoch != epoch)
                {
                    *cache = None;
                }
                let cache = cache.get_or_insert_with(|| Cache {
                    recorder: id,
                    epoch,
                    handles: Handles::default(),
                });
                Some(f(recorder, &mut cache.handles))
            })
            .ok()
            .flatten()
    })
}

/// Adds `n` to the unlabelled counter `name`.
fn add(name: &'static str, n: u64) {
    if with_handles(|r, h| h.plain(r, name).increment(n)).is_none() {
        counter!(name).increment(n);
    }
}

/// Adds `n` to counter `name` with `label` = `value`.
pub(crate) fn add_labelled(name: &'static str, label: &'static str, value: &'static str, n: u64) {
    if with_handles(|r, h| h.labelled(r, name, label, value).increment(n)).is_none() {
        counter!(name, label => value).increment(n);
    }
}

/// A request for another node's session ended with `outcome` (see the table).
pub(crate) fn forwarded(outcome: &'static str) {
    add_labelled(FORWARDED, "outcome", outcome, 1);
}

/// A refusal with `code` (see the table).
pub(crate) fn refused(code: &'static str) {
    add_labelled(REFUSALS, "code", code, 1);
    tracing::debug!(code, "refused");
}

/// Socket `socket` was accepted into `nsp`, which now has `count` sockets.
pub(crate) fn socket_connected(socket: volley_core::SocketId, nsp: &str, count: usize) {
    let label: Arc<str> = Arc::from(nsp);
    counter!(CONNECTS, "namespace" => label.clone()).increment(1);
    gauge!(SOCKETS, "namespace" => label).set(count as f64);
    tracing::debug!(%socket, nsp, "socket connected");
}

/// What a Socket.IO event means for the counters. `count` gives a namespace's sockets.
pub(crate) fn socket_event(event: &Event, count: impl Fn(&str) -> usize) {
    match event {
        Event::Ack { .. } => add(ACKS_ANSWERED, 1),
        Event::AckFailed { reason, .. } => {
            if matches!(reason, volley_core::socketio::AckFailure::Timeout) {
                add(ACKS_TIMED_OUT, 1);
            }
        }
        Event::Disconnect {
            socket,
            nsp,
            reason,
        } => {
            disconnected(*reason);
            gauge!(SOCKETS, "namespace" => nsp.clone()).set(count(nsp) as f64);
            tracing::debug!(%socket, %nsp, reason = reason.as_str(), "socket disconnected");
        }
        Event::Connect(_) | Event::Event { .. } | Event::Disconnecting { .. } => {}
    }
}

fn disconnected(reason: DisconnectReason) {
    add_labelled(DISCONNECTS, "reason", reason.as_str(), 1);
}

/// A CONNECT about to run its middleware: was recovery asked for, and did it find a session?
pub(crate) fn connect_requested(auth: &str, recovered: bool) {
    if auth.contains("\"pid\"") && volley_core::socketio::recovery_auth(auth).is_some() {
        add(RECOVERY_ATTEMPTS, 1);
        add(
            if recovered {
                RECOVERY_HITS
            } else {
                RECOVERY_MISSES
            },
            1,
        );
    }
}

/// A broadcast was delivered locally to `recipients` sockets (an error: to none).
pub(crate) fn broadcast<E>(recipients: &Result<usize, E>) {
    add(BROADCASTS, 1);
    if let Ok(n) = recipients {
        add(BROADCAST_RECIPIENTS, *n as u64);
    }
}

/// `n` sockets were asked for an acknowledgement.
pub(crate) fn acks_sent(n: usize) {
    add(ACKS_SENT, n as u64);
}

/// An emit met a full queue.
pub(crate) fn overflow(policy: OverflowPolicy) {
    let policy = match policy {
        OverflowPolicy::Reject => "reject",
        _ => "close",
    };
    add_labelled(OUTBOX_OVERFLOWS, "policy", policy, 1);
}

/// A message published to the other nodes: counted when it is a request.
pub(crate) fn cluster_published(message: &ClusterMessage) {
    let kind = match message {
        ClusterMessage::FetchSockets { .. } => RequestKind::FetchSockets,
        ClusterMessage::AllRooms { .. } => RequestKind::AllRooms,
        ClusterMessage::ServerSideEmit {
            request: Some(_), ..
        } => RequestKind::ServerSideEmit,
        ClusterMessage::Broadcast { ack: Some(_), .. } => RequestKind::BroadcastAck,
        _ => return,
    };
    add_labelled(ADAPTER_REQUESTS, "type", kind_name(kind), 1);
}

/// An answer to one of this node's requests.
pub(crate) fn cluster_answer(message: &ClusterMessage) {
    let kind = match message {
        ClusterMessage::FetchSocketsResponse { .. } => RequestKind::FetchSockets,
        ClusterMessage::AllRoomsResponse { .. } => RequestKind::AllRooms,
        ClusterMessage::ServerSideEmitResponse { .. } => RequestKind::ServerSideEmit,
        ClusterMessage::BroadcastClientCount { .. } | ClusterMessage::BroadcastAck { .. } => {
            RequestKind::BroadcastAck
        }
        _ => return,
    };
    add_labelled(ADAPTER_ANSWERS, "type", kind_name(kind), 1);
}

/// A request to the other nodes reached its timeout.
pub(crate) fn cluster_timeout(kind: RequestKind) {
    add_labelled(ADAPTER_TIMEOUTS, "type", kind_name(kind), 1);
}

fn kind_name(kind: RequestKind) -> &'static str {
    match kind {
        RequestKind::FetchSockets => REQUEST_KINDS[0],
        RequestKind::AllRooms => REQUEST_KINDS[1],
        RequestKind::ServerSideEmit => REQUEST_KINDS[2],
        RequestKind::BroadcastAck => REQUEST_KINDS[3],
    }
}

/// When an event was received: recorded into [`HANDLER_DELAY`] when its handling starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Received(Instant);

impl Received {
    pub(crate) fn now() -> Self {
        Received(Instant::now())
    }

    pub(crate) fn handling_starts(self) {
        let delay = self.0.elapsed().as_secs_f64();
        let recorded = with_handles(|r, h| {
            h.handler_delay
                .get_or_insert_with(|| {
                    r.register_histogram(&Key::from_static_name(HANDLER_DELAY), &METADATA)
                })
                .record(delay)
        });
        if recorded.is_none() {
            metrics::histogram!(HANDLER_DELAY).record(delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::{Gauge, KeyName, SharedString, Unit};
    use metrics_util::registry::{AtomicStorage, Registry};

    struct Rec(Registry<Key, AtomicStorage>);

    impl Rec {
        fn new() -> Self {
            Rec(Registry::atomic())
        }

        fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
            self.0
                .get_counter_handles()
                .into_iter()
                .find(|(k, _)| {
                    let have: Vec<(&str, &str)> =
                        k.labels().map(|l| (l.key(), l.value())).collect();
                    k.name() == name && have == labels
                })
                .map_or(0, |(_, c)| c.load(Ordering::SeqCst))
        }

        fn samples(&self, name: &str) -> usize {
            self.0
                .get_histogram_handles()
                .into_iter()
                .filter(|(k, _)| k.name() == name)
                .map(|(_, h)| h.data().len())
                .sum()
        }
    }

    impl Recorder for Rec {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            self.0
                .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            self.0
                .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            self.0
                .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
        }
    }

    fn record(n: usize) {
        acks_sent(n);
        overflow(OverflowPolicy::Reject);
        disconnected(DisconnectReason::PingTimeout);
        cluster_timeout(RequestKind::AllRooms);
        Received::now().handling_starts();
    }

    fn check(rec: &Rec, n: u64, times: u64) {
        assert_eq!(rec.counter(ACKS_SENT, &[]), n);
        assert_eq!(
            rec.counter(OUTBOX_OVERFLOWS, &[("policy", "reject")]),
            times
        );
        assert_eq!(
            rec.counter(DISCONNECTS, &[("reason", "ping timeout")]),
            times
        );
        assert_eq!(
            rec.counter(ADAPTER_TIMEOUTS, &[("type", "all_rooms")]),
            times
        );
        assert_eq!(rec.samples(HANDLER_DELAY), times as usize);
    }

    #[test]
    fn kept_handles_follow_the_recorder_in_force() {
        // A recorder per server built, even where each takes the place of the last.
        for round in 1..=3 {
            let rec = Rec::new();
            metrics::with_local_recorder(&rec, || {
                server_built();
                record(round);
                record(round);
            });
            check(&rec, 2 * round as u64, 2);
        }
        // Two recorders alive at once, in turn, with no server built between them.
        let (a, b) = (Rec::new(), Rec::new());
        metrics::with_local_recorder(&a, || record(1));
        metrics::with_local_recorder(&b, || record(2));
        metrics::with_local_recorder(&a, || record(3));
        check(&a, 4, 2);
        check(&b, 2, 1);
    }
}
