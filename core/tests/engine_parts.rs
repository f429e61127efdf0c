//! The engine's parts driven by hand, as a runtime that runs each session on its own task
//! would: an `Endpoint` sorts requests and opens sessions, each `Session` is fed its own
//! inputs and drained after each. No `Engine` here, except in the last test, which checks
//! that the parts and the composition say the same things for the same script.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use volley_core::engine::{
    ApiMisuse, Body, CloseReason, Config, ConnRole, Endpoint, Engine, Event, Message, Output,
    OverflowPolicy, Protocol, QueueBounds, Route, SendError, Session, TransportKind, WsMessage,
};
use volley_core::http::{Limits, RequestHead, parse_head};
use volley_core::{Bytes, ConnId, Sid, Utf8Bytes};

const PING_INTERVAL: Duration = Duration::from_millis(300);
const PING_TIMEOUT: Duration = Duration::from_millis(200);

fn config() -> Config {
    Config {
        ping_interval: PING_INTERVAL,
        ping_timeout: PING_TIMEOUT,
        allow_eio3: true,
        ..Config::default()
    }
}

fn head(text: &str) -> RequestHead {
    let (head, used) = parse_head(text.as_bytes(), &Limits::default())
        .expect("a valid head")
        .expect("a complete head");
    assert_eq!(used, text.len());
    head
}

fn get(query: &str) -> RequestHead {
    head(&format!(
        "GET /engine.io/?{query} HTTP/1.1\r\nHost: x\r\n\r\n"
    ))
}

fn post(query: &str, len: usize) -> RequestHead {
    head(&format!(
        "POST /engine.io/?{query} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {len}\r\n\r\n"
    ))
}

fn ws(query: &str) -> RequestHead {
    head(&format!(
        "GET /engine.io/?{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ))
}

fn text(t: &str) -> WsMessage {
    WsMessage::Text(Utf8Bytes::from(t))
}

/// What a session said since the last drain, events first as the contract asks.
struct Drained {
    events: Vec<Event>,
    outputs: Vec<Output>,
}

fn drain(session: &mut Session) -> Drained {
    let mut events = Vec::new();
    while let Some(e) = session.poll_event() {
        events.push(e);
    }
    let mut outputs = Vec::new();
    while let Some(o) = session.poll_output() {
        outputs.push(o);
    }
    Drained { events, outputs }
}

/// The body text of a response to `conn`, or the text of a WebSocket message on it.
fn said(output: &Output) -> (ConnId, String) {
    match output {
        Output::Response { conn, response } => (
            *conn,
            format!(
                "{} {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            ),
        ),
        Output::Send { conn, message } => match message {
            WsMessage::Text(t) => (*conn, format!("ws {t}")),
            WsMessage::Binary(b) => (*conn, format!("ws binary {:?}", &b[..])),
        },
        Output::ReadBody { conn, limit } => (*conn, format!("read {limit}")),
        Output::Close { conn } => (*conn, "close".to_owned()),
    }
}

fn said_all(outputs: &[Output]) -> Vec<(ConnId, String)> {
    outputs.iter().map(said).collect()
}

/// A handshake through the endpoint; the new session, drained.
fn open(
    endpoint: &mut Endpoint,
    conn: ConnId,
    head: RequestHead,
    now: Instant,
) -> (Session, Drained) {
    let Route::Handshake(handshake) = endpoint.route(&head) else {
        panic!("not a handshake");
    };
    let mut session = endpoint
        .handshake(conn, head, handshake, now, |_| false)
        .expect("a session");
    let drained = drain(&mut session);
    (session, drained)
}

/// A request routed by the endpoint to `session`, whose id it must name.
fn request(
    endpoint: &Endpoint,
    session: &mut Session,
    conn: ConnId,
    head: RequestHead,
    now: Instant,
) -> Drained {
    let Route::Session(req) = endpoint.route(&head) else {
        panic!("not a session request");
    };
    assert_eq!(req.sid(), session.sid());
    session
        .handle_request(conn, &req, &head, now)
        .expect("a free connection");
    drain(session)
}

fn sid_query(sid: Sid, eio: u8, transport: &str) -> String {
    format!("EIO={eio}&transport={transport}&sid={sid}")
}

#[test]
fn polling_handshake_poll_and_post() {
    let now = Instant::now();
    let mut endpoint = Endpoint::new(config(), [1; 32]);
    let (mut s, d) = open(
        &mut endpoint,
        ConnId(1),
        get("EIO=4&transport=polling"),
        now,
    );
    let sid = s.sid();
    assert!(matches!(
        d.events.as_slice(),
        [Event::Open { sid: o, protocol: Protocol::V4, transport: TransportKind::Polling, .. }] if *o == sid
    ));
    let (conn, body) = said(&d.outputs[0]);
    assert_eq!(d.outputs.len(), 1);
    assert_eq!(conn, ConnId(1));
    assert!(
        body.starts_with(&format!(
            "200 0{{\"sid\":\"{sid}\",\"upgrades\":[\"websocket\"]"
        )),
        "{body}"
    );
    assert_eq!(s.poll_timeout(), Some(now + PING_INTERVAL));
    assert_eq!(s.connections().count(), 0);
    assert!(!s.is_writable());

    let q = sid_query(sid, 4, "polling");
    let d = request(&endpoint, &mut s, ConnId(2), get(&q), now);
    assert!(d.outputs.is_empty(), "the poll is parked");
    assert_eq!(
        s.connections().collect::<Vec<_>>(),
        [(ConnId(2), ConnRole::Poll)]
    );
    assert!(s.is_writable());

    s.send(Message::Text("hi".into()), now).unwrap();
    let d = drain(&mut s);
    assert_eq!(said_all(&d.outputs), [(ConnId(2), "200 4hi".to_owned())]);
    assert_eq!(s.connections().count(), 0);

    let d = request(&endpoint, &mut s, ConnId(3), post(&q, 6), now);
    assert_eq!(
        said_all(&d.outputs),
        [(ConnId(3), "read 1000000".to_owned())]
    );
    assert_eq!(s.role_of(ConnId(3)), Some(ConnRole::Body));
    s.handle_body(
        ConnId(3),
        Body::Complete(Bytes::from_static(b"4hello")),
        now,
    )
    .unwrap();
    let d = drain(&mut s);
    assert!(matches!(
        d.events.as_slice(),
        [Event::Message { message: Message::Text(t), .. }] if t.as_str() == "hello"
    ));
    assert_eq!(said_all(&d.outputs), [(ConnId(3), "200 ok".to_owned())]);
    assert_eq!(
        s.handle_body(ConnId(3), Body::Complete(Bytes::new()), now),
        Err(ApiMisuse::UnexpectedBody(ConnId(3)))
    );
    // A request the session cannot take is refused as the engine refuses it.
    let d = request(
        &endpoint,
        &mut s,
        ConnId(4),
        get(&sid_query(sid, 3, "polling")),
        now,
    );
    assert_eq!(
        said_all(&d.outputs),
        [(
            ConnId(4),
            r#"400 {"code":3,"message":"Bad request"}"#.to_owned()
        )]
    );
}

#[test]
fn endpoint_refusals_need_no_session() {
    let endpoint = Endpoint::new(config(), [1; 32]);
    let answer = |head: RequestHead| match endpoint.route(&head) {
        Route::Respond(r) => format!("{} {}", r.status, String::from_utf8_lossy(&r.body)),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        answer(get("EIO=4&transport=carrier-pigeon")),
        r#"400 {"code":0,"message":"Transport unknown"}"#
    );
    assert_eq!(
        answer(get("EIO=5&transport=polling")),
        r#"400 {"code":5,"message":"Unsupported protocol version"}"#
    );
    assert_eq!(
        answer(post("EIO=4&transport=polling", 0)),
        r#"400 {"code":2,"message":"Bad handshake method"}"#
    );
    assert_eq!(
        answer(head("GET /elsewhere/ HTTP/1.1\r\nHost: x\r\n\r\n")),
        "404 Not Found"
    );
    // An id that is well formed is for the caller to look up.
    let Route::Session(req) = endpoint.route(&get("EIO=4&transport=polling&sid=abc")) else {
        panic!("a session request");
    };
    let r = req.unknown_sid();
    assert_eq!(
        (r.status, &r.body[..]),
        (400, &br#"{"code":1,"message":"Session ID unknown"}"#[..])
    );
}

#[test]
fn websocket_handshake_and_flow_control() {
    let now = Instant::now();
    let mut endpoint = Endpoint::new(config(), [2; 32]);
    let (mut s, d) = open(
        &mut endpoint,
        ConnId(1),
        ws("EIO=4&transport=websocket"),
        now,
    );
    let said = said_all(&d.outputs);
    assert_eq!(said.len(), 2);
    assert!(said[0].1.starts_with("101"), "{said:?}");
    assert!(
        said[1]
            .1
            .starts_with(&format!("ws 0{{\"sid\":\"{}\",\"upgrades\":[]", s.sid())),
        "{said:?}"
    );
    assert_eq!(s.transport(), TransportKind::WebSocket);
    assert_eq!(
        s.connections().collect::<Vec<_>>(),
        [(ConnId(1), ConnRole::WebSocket)]
    );
    // The open packet is not written yet: what is sent now waits.
    assert!(!s.is_writable());
    s.send(Message::Text("x".into()), now).unwrap();
    assert_eq!(s.queued(), 1);
    assert!(drain(&mut s).outputs.is_empty());
    s.handle_ws_drained(ConnId(1), now);
    assert_eq!(
        said_all(&drain(&mut s).outputs),
        [(ConnId(1), "ws 4x".to_owned())]
    );
    s.handle_ws_message(ConnId(1), text("4hey"), now).unwrap();
    assert!(matches!(
        drain(&mut s).events.as_slice(),
        [Event::Message { message: Message::Text(t), .. }] if t.as_str() == "hey"
    ));
    assert_eq!(
        s.handle_ws_message(ConnId(9), text("4"), now),
        Err(ApiMisuse::NotWebSocket(ConnId(9)))
    );
}

#[test]
fn upgrade_with_probe_and_upgrade_packet() {
    let now = Instant::now();
    let mut endpoint = Endpoint::new(config(), [3; 32]);
    let (mut s, _) = open(
        &mut endpoint,
        ConnId(1),
        get("EIO=4&transport=polling"),
        now,
    );
    let sid = s.sid();
    request(
        &endpoint,
        &mut s,
        ConnId(2),
        get(&sid_query(sid, 4, "polling")),
        now,
    );
    let d = request(
        &endpoint,
        &mut s,
        ConnId(3),
        ws(&sid_query(sid, 4, "websocket")),
        now,
    );
    assert!(said(&d.outputs[0]).1.starts_with("101"));
    assert_eq!(s.role_of(ConnId(3)), Some(ConnRole::Probe));
    // The probe's own deadline comes before the ping.
    let upgrade_timeout = Config::default().upgrade_timeout;
    assert_eq!(
        s.poll_timeout(),
        Some(now + PING_INTERVAL.min(upgrade_timeout))
    );

    s.handle_ws_message(ConnId(3), text("2probe"), now).unwrap();
    assert_eq!(
        said_all(&drain(&mut s).outputs),
        [
            (ConnId(3), "ws 3probe".to_owned()),
            (ConnId(2), "200 6".to_owned())
        ]
    );
    // While the upgrade is in progress, polls get a noop at once and sends wait.
    let d = request(
        &endpoint,
        &mut s,
        ConnId(4),
        get(&sid_query(sid, 4, "polling")),
        now,
    );
    assert_eq!(said_all(&d.outputs), [(ConnId(4), "200 6".to_owned())]);
    s.send(Message::Text("m".into()), now).unwrap();
    assert!(!s.is_writable());

    s.handle_ws_message(ConnId(3), text("5"), now).unwrap();
    let d = drain(&mut s);
    assert!(matches!(d.events.as_slice(), [Event::Upgrade { sid: u }] if *u == sid));
    assert_eq!(said_all(&d.outputs), [(ConnId(3), "ws 4m".to_owned())]);
    assert_eq!(s.transport(), TransportKind::WebSocket);
    assert_eq!(
        s.connections().collect::<Vec<_>>(),
        [(ConnId(3), ConnRole::WebSocket)]
    );
    // Polling is over for this session.
    let d = request(
        &endpoint,
        &mut s,
        ConnId(5),
        get(&sid_query(sid, 4, "polling")),
        now,
    );
    assert_eq!(
        said_all(&d.outputs),
        [(
            ConnId(5),
            r#"400 {"code":3,"message":"Bad request"}"#.to_owned()
        )]
    );
}

#[test]
fn v4_heartbeat_times_out_on_a_simulated_clock() {
    let start = Instant::now();
    let mut endpoint = Endpoint::new(config(), [4; 32]);
    let (mut s, _) = open(
        &mut endpoint,
        ConnId(1),
        ws("EIO=4&transport=websocket"),
        start,
    );
    s.handle_ws_drained(ConnId(1), start);
    // Early calls do nothing.
    s.handle_timeout(start + PING_INTERVAL / 2);
    assert!(drain(&mut s).outputs.is_empty());

    let ping_at = s.poll_timeout().unwrap();
    assert_eq!(ping_at, start + PING_INTERVAL);
    s.handle_timeout(ping_at);
    assert_eq!(
        said_all(&drain(&mut s).outputs),
        [(ConnId(1), "ws 2".to_owned())]
    );
    s.handle_ws_drained(ConnId(1), ping_at);
    // A pong starts the next cycle.
    let pong_at = ping_at + Duration::from_millis(50);
    s.handle_ws_message(ConnId(1), text("3"), pong_at).unwrap();
    assert_eq!(s.poll_timeout(), Some(pong_at + PING_INTERVAL));

    let ping_at = s.poll_timeout().unwrap();
    s.handle_timeout(ping_at);
    drain(&mut s);
    assert_eq!(s.poll_timeout(), Some(ping_at + PING_TIMEOUT));
    s.handle_timeout(ping_at + PING_TIMEOUT);
    let d = drain(&mut s);
    assert!(matches!(
        d.events.as_slice(),
        [Event::Close {
            reason: CloseReason::PingTimeout,
            ..
        }]
    ));
    assert_eq!(said_all(&d.outputs), [(ConnId(1), "close".to_owned())]);
    assert!(s.is_ended());
    assert_eq!(s.poll_timeout(), None);
    assert_eq!(s.connections().count(), 0);
    assert_eq!(
        s.send(Message::Text("late".into()), ping_at),
        Err(SendError::UnknownSession(s.sid()))
    );
}

#[test]
fn v3_client_pings_keep_the_session() {
    let start = Instant::now();
    let mut endpoint = Endpoint::new(config(), [5; 32]);
    let (mut s, _) = open(
        &mut endpoint,
        ConnId(1),
        get("EIO=3&transport=polling&b64=1"),
        start,
    );
    let q = sid_query(s.sid(), 3, "polling");
    assert_eq!(s.poll_timeout(), Some(start + PING_INTERVAL + PING_TIMEOUT));
    let t = start + Duration::from_millis(400);
    request(&endpoint, &mut s, ConnId(2), post(&q, 3), t);
    s.handle_body(ConnId(2), Body::Complete(Bytes::from_static(b"1:2")), t)
        .unwrap();
    drain(&mut s);
    assert_eq!(s.poll_timeout(), Some(t + PING_INTERVAL + PING_TIMEOUT));
    // The pong waits for a poll.
    let d = request(&endpoint, &mut s, ConnId(3), get(&q), t);
    assert_eq!(said_all(&d.outputs), [(ConnId(3), "200 1:3".to_owned())]);
    // No ping: a parked poll learns of the end.
    request(&endpoint, &mut s, ConnId(4), get(&q), t);
    let deadline = s.poll_timeout().unwrap();
    s.handle_timeout(deadline);
    let d = drain(&mut s);
    assert_eq!(said_all(&d.outputs), [(ConnId(4), "200 1:1".to_owned())]);
    assert!(matches!(
        d.events.as_slice(),
        [Event::Close {
            reason: CloseReason::PingTimeout,
            ..
        }]
    ));
}

fn overflow(policy: OverflowPolicy) -> Session {
    let now = Instant::now();
    let config = Config {
        max_buffered_packets: 2,
        overflow: policy,
        ..config()
    };
    let mut endpoint = Endpoint::new(config, [6; 32]);
    let (mut s, _) = open(
        &mut endpoint,
        ConnId(1),
        get("EIO=4&transport=polling"),
        now,
    );
    let sid = s.sid();
    for n in 0..2 {
        s.send(Message::Text(n.to_string().into()), now).unwrap();
    }
    assert_eq!(
        s.send(Message::Text("2".into()), now),
        Err(SendError::BufferFull(sid))
    );
    s
}

#[test]
fn overflow_closes_under_the_close_policy() {
    let mut s = overflow(OverflowPolicy::Close);
    assert!(s.is_ended());
    assert!(matches!(
        drain(&mut s).events.as_slice(),
        [Event::Close {
            reason: CloseReason::SlowClient,
            ..
        }]
    ));
}

#[test]
fn overflow_is_refused_under_the_reject_policy() {
    let mut s = overflow(OverflowPolicy::Reject);
    assert!(!s.is_ended());
    assert_eq!(s.queued(), 2);
    assert!(drain(&mut s).events.is_empty());
}

/// The rule of a queue's bounds, shared by a session's queue and the queues in front of it:
/// full once it holds either bound, so the message that crosses the byte bound is taken.
#[test]
fn queue_bounds_refuse_once_either_is_reached() {
    let bounds = Config {
        max_buffered_packets: 3,
        max_buffered_bytes: 100,
        ..config()
    }
    .queue_bounds();
    assert!(!bounds.refuses(0, 0));
    assert!(!bounds.refuses(2, 99), "under both");
    assert!(bounds.refuses(3, 0), "the packet bound");
    assert!(bounds.refuses(0, 100), "the byte bound");
    assert!(
        bounds.refuses(1, 5_000),
        "past it, after a big message was taken"
    );
    let no_bytes = QueueBounds {
        packets: 10,
        bytes: 0,
    };
    assert!(
        !no_bytes.refuses(0, 0),
        "a zero byte bound still takes one message"
    );
    assert!(no_bytes.refuses(0, 1));
}

/// A message refused by a queue in front of the session's (a driver's mailbox) applies the
/// same policy: closed as a slow client under `Close`, untouched under `Reject`.
#[test]
fn a_refusal_before_the_queue_applies_the_policy() {
    let now = Instant::now();
    for policy in [OverflowPolicy::Close, OverflowPolicy::Reject] {
        let mut endpoint = Endpoint::new(
            Config {
                overflow: policy,
                ..config()
            },
            [7; 32],
        );
        let (mut s, _) = open(
            &mut endpoint,
            ConnId(1),
            ws("EIO=4&transport=websocket"),
            now,
        );
        s.overflowed(now);
        let drained = drain(&mut s);
        match policy {
            OverflowPolicy::Close => {
                assert!(s.is_ended());
                assert!(matches!(
                    drained.events.as_slice(),
                    [Event::Close {
                        reason: CloseReason::SlowClient,
                        ..
                    }]
                ));
                assert!(
                    drained
                        .outputs
                        .iter()
                        .any(|o| matches!(o, Output::Close { conn: ConnId(1) })),
                    "{:?}",
                    said_all(&drained.outputs)
                );
                // Once ended, a second refusal changes nothing.
                s.overflowed(now);
                assert!(drain(&mut s).events.is_empty());
            }
            OverflowPolicy::Reject => {
                assert!(!s.is_ended());
                assert!(drained.events.is_empty());
                s.send(Message::Text("still open".into()), now).unwrap();
            }
        }
    }
}

#[test]
fn close_by_the_client() {
    let now = Instant::now();
    let mut endpoint = Endpoint::new(config(), [7; 32]);
    // Over polling: the parked poll gets a noop, the POST its ok.
    let (mut s, _) = open(
        &mut endpoint,
        ConnId(1),
        get("EIO=4&transport=polling"),
        now,
    );
    let q = sid_query(s.sid(), 4, "polling");
    request(&endpoint, &mut s, ConnId(2), get(&q), now);
    request(&endpoint, &mut s, ConnId(3), post(&q, 1), now);
    s.handle_body(ConnId(3), Body::Complete(Bytes::from_static(b"1")), now)
        .unwrap();
    let d = drain(&mut s);
    assert_eq!(
        said_all(&d.outputs),
        [
            (ConnId(2), "200 6".to_owned()),
            (ConnId(3), "200 ok".to_owned())
        ]
    );
    assert!(matches!(
        d.events.as_slice(),
        [Event::Close {
            reason: CloseReason::TransportClose,
            ..
        }]
    ));
    // Over WebSocket.
    let (mut s, _) = open(
        &mut endpoint,
        ConnId(4),
        ws("EIO=4&transport=websocket"),
        now,
    );
    s.handle_ws_message(ConnId(4), text("1"), now).unwrap();
    let d = drain(&mut s);
    assert_eq!(said_all(&d.outputs), [(ConnId(4), "close".to_owned())]);
    assert!(s.is_ended());
    // A connection the peer dropped.
    let (mut s, _) = open(
        &mut endpoint,
        ConnId(5),
        ws("EIO=4&transport=websocket"),
        now,
    );
    s.handle_conn_closed(ConnId(5), true, now);
    let d = drain(&mut s);
    assert!(d.outputs.is_empty(), "nothing to close: it is gone");
    assert!(matches!(
        d.events.as_slice(),
        [Event::Close {
            reason: CloseReason::TransportError,
            ..
        }]
    ));
}

#[test]
fn close_by_the_server_delivers_the_queue_first() {
    let now = Instant::now();
    let mut endpoint = Endpoint::new(config(), [8; 32]);
    let (mut s, _) = open(
        &mut endpoint,
        ConnId(1),
        get("EIO=4&transport=polling"),
        now,
    );
    let q = sid_query(s.sid(), 4, "polling");
    s.send(Message::Text("a".into()), now).unwrap();
    s.close(now);
    assert!(s.is_closing() && !s.is_ended());
    assert_eq!(
        s.send(Message::Text("b".into()), now),
        Err(SendError::UnknownSession(s.sid()))
    );
    let close_timeout = Config::default().close_timeout;
    assert_eq!(
        s.poll_timeout(),
        Some(now + PING_INTERVAL.min(close_timeout))
    );
    let d = request(&endpoint, &mut s, ConnId(2), get(&q), now);
    assert_eq!(said_all(&d.outputs), [(ConnId(2), "200 4a".to_owned())]);
    let d = request(&endpoint, &mut s, ConnId(3), get(&q), now);
    assert_eq!(
        said_all(&d.outputs),
        [(ConnId(3), "200 6\u{1e}1".to_owned())]
    );
    assert!(matches!(
        d.events.as_slice(),
        [Event::Close {
            reason: CloseReason::ForcedClose,
            ..
        }]
    ));
    // Ended: a request for it is answered as for an unknown session.
    let d = request(&endpoint, &mut s, ConnId(4), get(&q), now);
    assert_eq!(
        said_all(&d.outputs),
        [(
            ConnId(4),
            r#"400 {"code":1,"message":"Session ID unknown"}"#.to_owned()
        )]
    );
}

#[test]
fn a_body_in_flight_when_the_session_ends_is_still_answered() {
    let now = Instant::now();
    let mut endpoint = Endpoint::new(config(), [9; 32]);
    let (mut s, _) = open(
        &mut endpoint,
        ConnId(1),
        get("EIO=4&transport=polling"),
        now,
    );
    let q = sid_query(s.sid(), 4, "polling");
    request(&endpoint, &mut s, ConnId(2), post(&q, 2), now);
    s.close(now);
    s.handle_timeout(now + Config::default().close_timeout);
    assert!(s.is_ended());
    assert_eq!(
        s.connections().collect::<Vec<_>>(),
        [(ConnId(2), ConnRole::Body)]
    );
    s.handle_body(ConnId(2), Body::Complete(Bytes::from_static(b"4x")), now)
        .unwrap();
    let d = drain(&mut s);
    assert_eq!(
        said_all(&d.outputs),
        [(
            ConnId(2),
            r#"400 {"code":1,"message":"Session ID unknown"}"#.to_owned()
        )]
    );
    assert_eq!(s.connections().count(), 0);
}

#[test]
fn each_deadline_moves_forward() {
    let mut now = Instant::now();
    let mut endpoint = Endpoint::new(config(), [10; 32]);
    let (mut s, _) = open(
        &mut endpoint,
        ConnId(1),
        ws("EIO=4&transport=websocket"),
        now,
    );
    s.handle_ws_drained(ConnId(1), now);
    for _ in 0..20 {
        let next = s.poll_timeout().expect("a live session has a deadline");
        assert!(next > now, "the deadline did not move forward");
        now = next;
        s.handle_timeout(now);
        let d = drain(&mut s);
        assert_eq!(said_all(&d.outputs), [(ConnId(1), "ws 2".to_owned())]);
        s.handle_ws_drained(ConnId(1), now);
        assert!(s.poll_timeout().unwrap() > now);
        s.handle_ws_message(ConnId(1), text("3"), now).unwrap();
    }
    assert!(!s.is_ended());
}

/// A copy of the configuration routes every request as the endpoint that holds it: a
/// runtime that keeps sessions on tasks of their own routes their requests without the
/// endpoint.
#[test]
fn a_copy_of_the_configuration_routes_as_the_endpoint() {
    let endpoint = Endpoint::new(config(), [11; 32]);
    let copy = endpoint.config().clone();
    let heads = [
        get("EIO=4&transport=polling"),
        get("EIO=3&transport=polling&j=1"),
        get("EIO=4&transport=polling&sid=abc"),
        post("EIO=4&transport=polling&sid=abc", 3),
        ws("EIO=4&transport=websocket&sid=abc"),
        ws("EIO=4&transport=polling&sid=abc"),
        get("EIO=4&transport=carrier-pigeon&sid=abc"),
        get("EIO=9&transport=polling"),
        head("DELETE /engine.io/?EIO=4&transport=polling&sid=abc HTTP/1.1\r\nHost: x\r\n\r\n"),
        head("GET /elsewhere/ HTTP/1.1\r\nHost: x\r\n\r\n"),
    ];
    for h in heads {
        assert_eq!(
            format!("{:?}", copy.route(&h)),
            format!("{:?}", endpoint.route(&h)),
            "{}",
            h.target()
        );
    }
}

/// The engine names the session its latest request opened, for that request's connection
/// only, and only until the next request.
#[test]
fn the_engine_names_the_session_a_handshake_opened() {
    let now = Instant::now();
    let mut engine = Engine::new(config(), [12; 32]);
    engine
        .handle_request(ConnId(1), get("EIO=4&transport=polling"), now)
        .unwrap();
    let sid = engine
        .opened_on(ConnId(1))
        .expect("the session just opened");
    assert!(engine.contains(sid));
    assert_eq!(engine.opened_on(ConnId(2)), None);
    while engine.poll_output().is_some() {}
    // A request that opens nothing.
    engine
        .handle_request(ConnId(1), get("EIO=4&transport=carrier-pigeon"), now)
        .unwrap();
    assert_eq!(engine.opened_on(ConnId(1)), None);
    // A refused handshake opens nothing either.
    engine
        .handle_request(ConnId(3), get("EIO=9&transport=polling"), now)
        .unwrap();
    assert_eq!(engine.opened_on(ConnId(3)), None);
    // Detached, it is no longer the engine's to name.
    engine
        .handle_request(ConnId(4), get("EIO=4&transport=polling"), now)
        .unwrap();
    let other = engine.opened_on(ConnId(4)).expect("a second session");
    assert_ne!(other, sid);
    assert!(engine.detach(other).is_some());
    assert_eq!(engine.opened_on(ConnId(4)), None);
}

/// A session its runtime can no longer run ends at once, as after a transport error, its
/// parked poll answered with the close packet; a second call changes nothing.
#[test]
fn an_abandoned_session_ends_at_once() {
    let now = Instant::now();
    let mut endpoint = Endpoint::new(config(), [13; 32]);
    let (mut s, _) = open(
        &mut endpoint,
        ConnId(1),
        get("EIO=4&transport=polling"),
        now,
    );
    let sid = s.sid();
    let parked = request(
        &endpoint,
        &mut s,
        ConnId(2),
        get(&sid_query(sid, 4, "polling")),
        now,
    );
    assert!(parked.outputs.is_empty(), "the poll is parked");
    s.abandon(now);
    assert!(s.is_ended());
    let d = drain(&mut s);
    assert!(
        matches!(
            d.events.as_slice(),
            [Event::Close {
                reason: CloseReason::TransportError,
                ..
            }]
        ),
        "{:?}",
        d.events
    );
    // The parked poll gets the close packet, and nothing else goes out.
    assert_eq!(said_all(&d.outputs), [(ConnId(2), "200 1".to_owned())]);
    s.abandon(now);
    let again = drain(&mut s);
    assert!(again.events.is_empty() && again.outputs.is_empty());
}

// ---- the parts against the composition ----

/// Endpoint and sessions kept by hand, as a runtime would: sessions in a slab (an ended one
/// stays while it still holds a connection), indexes by id and by connection.
struct Parts {
    endpoint: Endpoint,
    slab: Vec<Option<Session>>,
    by_sid: HashMap<Sid, usize>,
    by_conn: HashMap<ConnId, usize>,
    outputs: VecDeque<Output>,
    events: VecDeque<Event>,
}

impl Parts {
    fn new(config: Config, seed: [u8; 32]) -> Self {
        Parts {
            endpoint: Endpoint::new(config, seed),
            slab: Vec::new(),
            by_sid: HashMap::new(),
            by_conn: HashMap::new(),
            outputs: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Calls `f` on session `k`, then drains it and brings the indexes up to date.
    fn with<R>(&mut self, k: usize, f: impl FnOnce(&mut Session) -> R) -> R {
        let s = self.slab[k].as_mut().expect("a kept session");
        let r = f(s);
        while let Some(e) = s.poll_event() {
            self.events.push_back(e);
        }
        while let Some(o) = s.poll_output() {
            self.outputs.push_back(o);
        }
        self.by_conn
            .retain(|c, i| *i != k || s.role_of(*c).is_some());
        for (c, _) in s.connections() {
            self.by_conn.insert(c, k);
        }
        if s.is_ended() {
            self.by_sid.remove(&s.sid());
            if s.connections().count() == 0 {
                self.slab[k] = None;
            }
        }
        r
    }

    fn handle_request(&mut self, conn: ConnId, head: RequestHead, now: Instant) {
        assert!(!self.by_conn.contains_key(&conn));
        match self.endpoint.route(&head) {
            Route::Respond(response) => self.outputs.push_back(Output::Response { conn, response }),
            Route::Handshake(h) => {
                let by_sid = &self.by_sid;
                match self
                    .endpoint
                    .handshake(conn, head, h, now, |sid| by_sid.contains_key(&sid))
                {
                    Ok(session) => {
                        let k = self.slab.len();
                        self.by_sid.insert(session.sid(), k);
                        self.slab.push(Some(session));
                        self.with(k, |_| ());
                    }
                    Err(response) => self.outputs.push_back(Output::Response { conn, response }),
                }
            }
            Route::Session(req) => match self.by_sid.get(&req.sid()) {
                Some(&k) => self
                    .with(k, |s| s.handle_request(conn, &req, &head, now))
                    .unwrap(),
                None => self.outputs.push_back(Output::Response {
                    conn,
                    response: req.unknown_sid(),
                }),
            },
        }
    }

    fn conn(&mut self, conn: ConnId, f: impl FnOnce(&mut Session)) {
        if let Some(&k) = self.by_conn.get(&conn) {
            self.with(k, f);
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        let mut due: Vec<(Instant, Sid, usize)> = self
            .by_sid
            .iter()
            .filter_map(|(sid, &k)| {
                let t = self.slab[k].as_ref()?.poll_timeout()?;
                (t <= now).then_some((t, *sid, k))
            })
            .collect();
        due.sort();
        for (_, _, k) in due {
            self.with(k, |s| s.handle_timeout(now));
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.by_sid
            .values()
            .filter_map(|&k| self.slab[k].as_ref()?.poll_timeout())
            .min()
    }
}

enum Step {
    Request(u64, String, Option<&'static str>),
    Ws(u64, &'static str),
    Drained(u64),
    Closed(u64, bool),
    Advance(u64),
    Send(usize, &'static str),
    Close(usize),
}

#[test]
fn the_parts_and_the_engine_say_the_same() {
    use Step::*;
    let ws_head = |q: &str| {
        format!(
            "GET /engine.io/?{q} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
    };
    let get = |q: &str| format!("GET /engine.io/?{q} HTTP/1.1\r\nHost: x\r\n\r\n");
    let post = |q: &str, n: usize| {
        format!("POST /engine.io/?{q} HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n")
    };
    // `{0}` and `{1}` stand for the ids of the first and second session.
    let steps = vec![
        Request(1, get("EIO=4&transport=polling"), None),
        Request(2, ws_head("EIO=4&transport=websocket"), None),
        Drained(2),
        Request(3, get("EIO=4&transport=polling&sid={0}"), None),
        Send(0, "to zero"),
        Send(1, "to one"),
        Request(4, get("EIO=4&transport=polling&sid={0}"), None),
        Request(
            5,
            post("EIO=4&transport=polling&sid={0}", 6),
            Some("4hello"),
        ),
        Ws(2, "4from one"),
        Request(6, ws_head("EIO=4&transport=websocket&sid={0}"), None),
        Ws(6, "2probe"),
        Send(0, "during the upgrade"),
        Ws(6, "5"),
        Drained(6),
        Drained(2),
        Advance(300),
        Drained(2),
        Drained(6),
        Ws(6, "3"),
        Request(7, get("EIO=4&transport=polling&sid=nobody"), None),
        Request(8, get("EIO=4&transport=polling&sid={1}"), None),
        Advance(250),
        Send(0, "still here"),
        Close(0),
        Request(9, get("EIO=3&transport=polling"), None),
        Request(10, post("EIO=3&transport=polling&sid={2}", 3), Some("1:2")),
        Closed(10, false),
        Advance(1000),
    ];
    let now0 = Instant::now();
    let mut engine = Engine::new(config(), [11; 32]);
    let mut parts = Parts::new(config(), [11; 32]);
    let mut now = now0;
    let mut sids: Vec<Sid> = Vec::new();
    let message = |t: &str| Message::Text(Utf8Bytes::from(t));
    for (i, step) in steps.iter().enumerate() {
        match step {
            Request(c, text, body) => {
                let mut text = text.clone();
                for (n, sid) in sids.iter().enumerate() {
                    text = text.replace(&format!("{{{n}}}"), sid.as_str());
                }
                let conn = ConnId(*c);
                engine.handle_request(conn, head(&text), now).unwrap();
                parts.handle_request(conn, head(&text), now);
                if let Some(body) = body {
                    let body = Body::Complete(Bytes::copy_from_slice(body.as_bytes()));
                    engine.handle_body(conn, body.clone(), now).unwrap();
                    parts.conn(conn, |s| s.handle_body(conn, body, now).unwrap());
                }
            }
            Ws(c, t) => {
                let conn = ConnId(*c);
                engine.handle_ws_message(conn, text(t), now).unwrap();
                parts.conn(conn, |s| s.handle_ws_message(conn, text(t), now).unwrap());
            }
            Drained(c) => {
                let conn = ConnId(*c);
                engine.handle_ws_drained(conn, now);
                parts.conn(conn, |s| s.handle_ws_drained(conn, now));
            }
            Closed(c, error) => {
                let conn = ConnId(*c);
                engine.handle_conn_closed(conn, *error, now);
                parts.conn(conn, |s| s.handle_conn_closed(conn, *error, now));
                parts.by_conn.remove(&conn);
            }
            Advance(ms) => {
                let until = now + Duration::from_millis(*ms);
                while let Some(t) = engine.poll_timeout().filter(|t| *t <= until) {
                    now = t;
                    engine.handle_timeout(now);
                    parts.handle_timeout(now);
                }
                now = until;
            }
            Send(n, t) => {
                let a = engine.send(sids[*n], message(t), now);
                let b = match parts.by_sid.get(&sids[*n]) {
                    Some(&k) => parts.with(k, |s| s.send(message(t), now)),
                    None => Err(SendError::UnknownSession(sids[*n])),
                };
                assert_eq!(a, b, "step {i}");
            }
            Close(n) => {
                engine.close(sids[*n], now);
                if let Some(&k) = parts.by_sid.get(&sids[*n]) {
                    parts.with(k, |s| s.close(now));
                }
            }
        }
        let mut from_engine = Vec::new();
        while let Some(e) = engine.poll_event() {
            if let Event::Open { sid, .. } = &e {
                sids.push(*sid);
            }
            from_engine.push(format!("{e:?}"));
        }
        let from_parts: Vec<String> = parts.events.drain(..).map(|e| format!("{e:?}")).collect();
        assert_eq!(from_engine, from_parts, "events of step {i}");
        let mut outputs = Vec::new();
        while let Some(o) = engine.poll_output() {
            outputs.push(o);
        }
        let from_parts: Vec<Output> = parts.outputs.drain(..).collect();
        assert_eq!(outputs, from_parts, "outputs of step {i}");
        assert_eq!(
            engine.poll_timeout(),
            parts.poll_timeout(),
            "deadline after step {i}"
        );
        assert_eq!(
            engine.session_count(),
            parts.by_sid.len(),
            "sessions after step {i}"
        );
        assert_eq!(
            engine.connection_count(),
            parts.by_conn.len(),
            "connections after step {i}"
        );
    }
    assert_eq!(sids.len(), 3, "three sessions opened");
    assert_eq!(engine.session_count(), 0, "every session ended");
    assert_eq!(engine.timer_count(), 0);
}
