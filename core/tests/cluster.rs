//! Request bookkeeping between nodes: counts, completion, partial results on timeout.

use std::time::{Duration, Instant};
use volley_core::cluster::{ClusterMessage, Expired, Progress, RequestKind, Requests};
use volley_core::{RequestId, SocketId};

fn id(s: &str) -> RequestId {
    RequestId::new(s).unwrap()
}

fn fetch_answer(r: &str) -> ClusterMessage {
    ClusterMessage::FetchSocketsResponse {
        request: id(r),
        sockets: vec![],
    }
}

#[test]
fn a_request_completes_when_every_other_node_answered() {
    let now = Instant::now();
    let mut reqs = Requests::new();
    assert!(!reqs.start(
        id("r1"),
        RequestKind::FetchSockets,
        2,
        now + Duration::from_secs(5)
    ));
    assert_eq!(reqs.on_answer(&fetch_answer("r1")), Progress::More);
    assert_eq!(reqs.on_answer(&fetch_answer("r1")), Progress::Complete);
    assert_eq!(reqs.on_answer(&fetch_answer("r1")), Progress::Unknown);
    assert!(reqs.is_empty());
    assert_eq!(reqs.poll_timeout(), None);
}

#[test]
fn no_other_node_means_nothing_to_wait_for() {
    let mut reqs = Requests::new();
    assert!(reqs.start(id("r"), RequestKind::AllRooms, 0, Instant::now()));
    assert!(reqs.is_empty());
}

#[test]
fn answers_of_the_wrong_kind_or_request_are_ignored() {
    let now = Instant::now();
    let mut reqs = Requests::new();
    reqs.start(
        id("a"),
        RequestKind::FetchSockets,
        1,
        now + Duration::from_secs(1),
    );
    let wrong_kind = ClusterMessage::AllRoomsResponse {
        request: id("a"),
        rooms: vec![],
    };
    assert_eq!(reqs.on_answer(&wrong_kind), Progress::Unknown);
    assert_eq!(reqs.on_answer(&fetch_answer("b")), Progress::Unknown);
    let not_an_answer = ClusterMessage::SocketsJoin {
        nsp: "/".into(),
        opts: Default::default(),
        rooms: vec![],
    };
    assert_eq!(reqs.on_answer(&not_an_answer), Progress::Unknown);
    assert_eq!(reqs.len(), 1);
}

#[test]
fn a_broadcast_waits_for_counts_then_for_that_many_acks() {
    let now = Instant::now();
    let mut reqs = Requests::new();
    reqs.start(
        id("b"),
        RequestKind::BroadcastAck,
        2,
        now + Duration::from_secs(1),
    );
    let count = |n| ClusterMessage::BroadcastClientCount {
        request: id("b"),
        count: n,
    };
    let ack = ClusterMessage::BroadcastAck {
        request: id("b"),
        socket: SocketId::new("s1").unwrap(),
        args: "[1]".into(),
        attachments: vec![],
    };
    assert_eq!(reqs.on_answer(&count(2)), Progress::More);
    assert_eq!(reqs.on_answer(&ack), Progress::More);
    // An ack may overtake the other node's count.
    assert_eq!(reqs.on_answer(&ack), Progress::More);
    assert_eq!(reqs.on_answer(&count(1)), Progress::More);
    assert_eq!(reqs.on_answer(&ack), Progress::Complete);
}

#[test]
fn a_node_with_no_sockets_completes_a_broadcast_by_its_count() {
    let now = Instant::now();
    let mut reqs = Requests::new();
    reqs.start(
        id("b"),
        RequestKind::BroadcastAck,
        1,
        now + Duration::from_secs(1),
    );
    let zero = ClusterMessage::BroadcastClientCount {
        request: id("b"),
        count: 0,
    };
    assert_eq!(reqs.on_answer(&zero), Progress::Complete);
}

#[test]
fn a_silent_node_ends_the_request_at_its_deadline_with_partial_results() {
    let now = Instant::now();
    let mut reqs = Requests::new();
    reqs.start(
        id("x"),
        RequestKind::ServerSideEmit,
        3,
        now + Duration::from_secs(2),
    );
    reqs.start(
        id("y"),
        RequestKind::AllRooms,
        1,
        now + Duration::from_secs(5),
    );
    let answer = ClusterMessage::ServerSideEmitResponse {
        request: id("x"),
        args: "[]".into(),
        attachments: vec![],
    };
    assert_eq!(reqs.on_answer(&answer), Progress::More);
    assert_eq!(reqs.poll_timeout(), Some(now + Duration::from_secs(2)));
    assert!(reqs.handle_timeout(now + Duration::from_secs(1)).is_empty());
    assert_eq!(
        reqs.handle_timeout(now + Duration::from_secs(2)),
        [(id("x"), RequestKind::ServerSideEmit)]
    );
    assert_eq!(
        reqs.on_answer(&answer),
        Progress::Unknown,
        "late answers are ignored"
    );
    assert_eq!(reqs.poll_timeout(), Some(now + Duration::from_secs(5)));
    reqs.cancel(id("y"));
    assert!(reqs.is_empty());
    assert_eq!(reqs.poll_timeout(), None);
}

fn count(r: &str, n: usize) -> ClusterMessage {
    ClusterMessage::BroadcastClientCount {
        request: id(r),
        count: n,
    }
}

fn ack(r: &str) -> ClusterMessage {
    ClusterMessage::BroadcastAck {
        request: id(r),
        socket: SocketId::new("s").unwrap(),
        args: "[]".into(),
        attachments: vec![],
    }
}

#[test]
fn an_ack_that_overtakes_every_count_is_still_counted() {
    let now = Instant::now();
    let mut reqs = Requests::new();
    reqs.start(
        id("b"),
        RequestKind::BroadcastAck,
        2,
        now + Duration::from_secs(1),
    );
    // Node 1's ack arrives before node 1's (and node 2's) count.
    assert_eq!(reqs.on_answer(&ack("b")), Progress::More);
    assert_eq!(reqs.on_answer(&count("b", 0)), Progress::More);
    assert_eq!(reqs.on_answer(&count("b", 1)), Progress::Complete);
    assert!(reqs.is_empty());
}

#[test]
fn an_expired_request_tells_what_was_missing() {
    let now = Instant::now();
    let mut reqs = Requests::new();
    reqs.start(
        id("b"),
        RequestKind::BroadcastAck,
        3,
        now + Duration::from_secs(1),
    );
    reqs.start(
        id("f"),
        RequestKind::FetchSockets,
        2,
        now + Duration::from_secs(1),
    );
    assert_eq!(reqs.on_answer(&count("b", 3)), Progress::More);
    assert_eq!(reqs.on_answer(&ack("b")), Progress::More);
    assert_eq!(reqs.on_answer(&fetch_answer("f")), Progress::More);
    let mut expired = reqs.expire(now + Duration::from_secs(1));
    expired.sort_by_key(|e| e.id);
    assert_eq!(
        expired,
        [
            Expired {
                id: id("b"),
                kind: RequestKind::BroadcastAck,
                nodes_left: 2,
                acks_left: 2,
            },
            Expired {
                id: id("f"),
                kind: RequestKind::FetchSockets,
                nodes_left: 1,
                acks_left: 0,
            },
        ]
    );
    assert!(reqs.is_empty());
    assert_eq!(reqs.poll_timeout(), None);
}

#[test]
fn restarting_a_pending_id_replaces_its_deadline() {
    let now = Instant::now();
    let mut reqs = Requests::new();
    reqs.start(
        id("r"),
        RequestKind::AllRooms,
        1,
        now + Duration::from_secs(1),
    );
    reqs.start(
        id("r"),
        RequestKind::AllRooms,
        1,
        now + Duration::from_secs(3),
    );
    assert_eq!(reqs.poll_timeout(), Some(now + Duration::from_secs(3)));
    assert!(reqs.handle_timeout(now + Duration::from_secs(2)).is_empty());
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs.handle_timeout(now + Duration::from_secs(3)),
        [(id("r"), RequestKind::AllRooms)]
    );
}

#[test]
fn a_cancelled_request_ignores_its_answers() {
    let now = Instant::now();
    let mut reqs = Requests::new();
    reqs.start(
        id("f"),
        RequestKind::FetchSockets,
        1,
        now + Duration::from_secs(1),
    );
    reqs.cancel(id("f"));
    assert_eq!(reqs.on_answer(&fetch_answer("f")), Progress::Unknown);
    assert!(reqs.handle_timeout(now + Duration::from_secs(1)).is_empty());
}
