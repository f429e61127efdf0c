//! A packet the server cannot queue for a socket (its session's queue is full) is reported
//! through `Io::on_error` as `ServerError::Overflow`, never dropped silently: for a single
//! socket's emit and for a broadcast's copy. Under `OverflowPolicy::Reject` the socket stays.

mod common;

use common::{SETTLE, setup_with};
use std::sync::{Arc, Mutex};
use volley::runtime::Runtime;
use volley::testing::{ConnectOptions, TestClient, TransportKind};
use volley::{ServerError, Socket};
use volley_core::engine::OverflowPolicy;

/// Handlers that emit `count` events at once to the sender (`burst`) or to everyone
/// (`burst-all`), in one turn of the machine.
fn install(io: &volley::Io<volley::testing::TestRuntime>, count: u32) {
    let all = io.ns("/").all();
    io.ns("/")
        .on("burst", move |s: Socket| async move {
            for n in 0..count {
                let _ = s.emit("n", &n);
            }
        })
        .on("burst-all", move || {
            let all = all.clone();
            async move {
                for n in 0..count {
                    let _ = all.emit("n", &n);
                }
            }
        });
}

/// The sockets `io` reported refusals for, in order.
fn refusals(io: &volley::Io<volley::testing::TestRuntime>) -> Refusals {
    let seen: Refusals = Arc::default();
    let s = seen.clone();
    io.on_error(move |error: &ServerError| match error {
        ServerError::Overflow(o) => s
            .lock()
            .unwrap()
            .push((o.socket.to_string(), o.namespace.clone())),
        other => panic!("unexpected error {other:?}"),
    });
    seen
}

type Refusals = Arc<Mutex<Vec<(String, String)>>>;

/// A server whose queues hold at most four packets (`Reject`), with the burst handlers and
/// its refusals recorded. Over polling the queue fills: a parked GET takes the first packet,
/// the next wait for the next GET.
fn server() -> (
    volley::testing::TestRuntime,
    volley::Io<volley::testing::TestRuntime>,
    Refusals,
) {
    let builder = volley::builder().max_buffered_packets(4, OverflowPolicy::Reject);
    let (rt, io) = setup_with(builder);
    install(&io, 20);
    let seen = refusals(&io);
    (rt, io, seen)
}

/// A long-polling client of `/`, and its socket id.
async fn polling_client(io: &volley::Io<volley::testing::TestRuntime>) -> (TestClient, String) {
    let options = ConnectOptions::new().transport(TransportKind::Polling);
    let c = TestClient::connect_with(io, "/", options).await.unwrap();
    let id = c.id().to_string();
    (c, id)
}

#[test]
fn emits_refused_by_a_full_queue_are_reported_and_the_socket_stays_under_reject() {
    let (rt, io, seen) = server();
    rt.block_on(async {
        let (mut c, id) = polling_client(&io).await;
        c.emit("burst", &());
        let first = c.recv().await.unwrap();
        assert_eq!(first.data::<u32>().unwrap(), 0);
        // What was queued arrives, in order; the rest was refused and reported.
        let mut got = vec![0];
        while let Some(ev) = c.try_recv() {
            got.push(ev.data::<u32>().unwrap());
        }
        rt.sleep(SETTLE).await;
        while let Some(ev) = c.try_recv() {
            got.push(ev.data::<u32>().unwrap());
        }
        assert!(got.windows(2).all(|w| w[0] < w[1]), "{got:?}");
        let refused = seen.lock().unwrap().clone();
        assert_eq!(got.len() + refused.len(), 20, "{got:?} {refused:?}");
        assert!(!refused.is_empty());
        assert!(refused.iter().all(|r| *r == (id.clone(), "/".to_owned())));
        // The socket is still there and served.
        assert_eq!(io.socket_count().await, 1);
        c.emit("burst", &());
        assert_eq!(c.recv().await.unwrap().data::<u32>().unwrap(), 0);
    });
}

#[test]
fn a_broadcast_copy_refused_by_a_full_queue_is_reported() {
    let (rt, io, seen) = server();
    rt.block_on(async {
        let (mut c, id) = polling_client(&io).await;
        c.emit("burst-all", &());
        let _ = c.recv().await.unwrap();
        rt.sleep(SETTLE).await;
        let refused = seen.lock().unwrap().clone();
        assert!(!refused.is_empty());
        assert!(refused.iter().all(|r| *r == (id.clone(), "/".to_owned())));
    });
}

/// `Socket::emit_checked` tells its caller: `Ok` for each packet queued, `Full` for each
/// refused (also reported to `on_error`), and the queued ones arrive in order.
#[test]
fn emit_checked_tells_the_caller_which_packets_were_refused() {
    let builder = volley::builder().max_buffered_packets(4, OverflowPolicy::Reject);
    let (rt, io) = setup_with(builder);
    let seen = refusals(&io);
    let outcomes: Arc<Mutex<Vec<Result<(), String>>>> = Arc::default();
    let record = outcomes.clone();
    let kept: Arc<Mutex<Option<Socket>>> = Arc::default();
    let keep = kept.clone();
    io.ns("/").on("burst", move |s: Socket| {
        let record = record.clone();
        *keep.lock().unwrap() = Some(s.clone());
        async move {
            let sends: Vec<_> = (0..20u32).map(|n| s.emit_checked("n", &n)).collect();
            for sent in sends {
                let outcome = sent.await.map_err(|e| e.to_string());
                record.lock().unwrap().push(outcome);
            }
        }
    });
    rt.block_on(async {
        let (mut c, _) = polling_client(&io).await;
        c.emit("burst", &());
        let mut got = vec![c.recv().await.unwrap().data::<u32>().unwrap()];
        rt.sleep(SETTLE).await;
        while let Some(ev) = c.try_recv() {
            got.push(ev.data::<u32>().unwrap());
        }
        let outcomes = outcomes.lock().unwrap().clone();
        assert_eq!(outcomes.len(), 20);
        let queued: Vec<u32> = (0..20u32)
            .filter(|n| outcomes[*n as usize].is_ok())
            .collect();
        assert_eq!(
            got, queued,
            "exactly the packets said queued arrived, in order"
        );
        let refused = outcomes.iter().filter(|o| o.is_err()).count();
        assert!(refused > 0, "{outcomes:?}");
        assert!(
            outcomes
                .iter()
                .filter_map(|o| o.as_ref().err())
                .all(|e| e == "the socket's outgoing queue is full")
        );
        assert_eq!(
            seen.lock().unwrap().len(),
            refused,
            "and reported to on_error"
        );
        // A socket that is gone is told so.
        c.disconnect();
        rt.sleep(SETTLE).await;
        let socket = kept.lock().unwrap().clone().unwrap();
        let after = socket.emit_checked("n", &1).await;
        assert!(
            matches!(after, Err(volley::EmitError::Disconnected)),
            "{after:?}"
        );
    });
}

/// `BroadcastOperator::emit_checked` tells its caller, for each broadcast, how many sockets
/// of this node took it and which refused it (their queue full), and each client receives
/// exactly the broadcasts not refused for it, in order.
#[test]
fn a_checked_broadcast_tells_the_caller_which_sockets_refused() {
    let builder = volley::builder().max_buffered_packets(4, OverflowPolicy::Reject);
    let (rt, io) = setup_with(builder);
    let seen = refusals(&io);
    let reports: Arc<Mutex<Vec<volley::Broadcasted>>> = Arc::default();
    let record = reports.clone();
    let all = io.ns("/").all();
    io.ns("/").on("burst-checked", move || {
        let (all, record) = (all.clone(), record.clone());
        async move {
            let sends: Vec<_> = (0..20u32).map(|n| all.emit_checked("n", &n)).collect();
            for sent in sends {
                let report = sent.await.expect("queued or refused");
                record.lock().unwrap().push(report);
            }
        }
    });
    rt.block_on(async {
        let (slow, slow_id) = polling_client(&io).await;
        let fast = TestClient::connect(&io, "/", None).await.unwrap();
        let fast_id = fast.id().to_string();
        fast.emit("burst-checked", &());
        while reports.lock().unwrap().len() < 20 {
            rt.sleep(SETTLE).await;
        }
        let reports = reports.lock().unwrap().clone();
        assert!(reports.iter().all(|r| !r.deferred));
        let mut refusals = 0;
        for r in &reports {
            assert_eq!(
                r.queued + r.refused.len(),
                2,
                "each socket took it or refused it"
            );
            refusals += r.refused.len();
        }
        assert!(refusals > 0, "{reports:?}");
        for (mut client, id) in [(slow, slow_id), (fast, fast_id)] {
            let expected: Vec<u32> = (0..20u32)
                .filter(|n| {
                    let refused = &reports[*n as usize].refused;
                    !refused.iter().any(|s| s.to_string() == id)
                })
                .collect();
            let mut got = Vec::new();
            while got.len() < expected.len() {
                got.push(client.recv().await.unwrap().data::<u32>().unwrap());
            }
            rt.sleep(SETTLE).await;
            assert!(client.try_recv().is_none(), "nothing refused arrives");
            assert_eq!(got, expected, "what was said queued arrived, in order");
        }
        assert_eq!(
            seen.lock().unwrap().len(),
            refusals,
            "and each refusal reached on_error"
        );
    });
}
