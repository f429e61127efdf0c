//! Every rule of Engine.IO §1 in `shared/protocol-notes.md`, in the in-memory harness.

mod common;

use common::{Pair, config, open_packet};
use std::time::Duration;
use volley_core::engine::{
    ApiMisuse, Body, CloseReason, Config, Engine, Event, Message, OverflowPolicy, SendError,
    TransportKind, WsMessage,
};
use volley_core::http::RequestHead;
use volley_core::{Bytes, ConnId, Sid, Utf8Bytes};

fn text(s: &str) -> Message {
    Message::Text(Utf8Bytes::from(s))
}

fn q(sid: Sid) -> String {
    format!("EIO=4&transport=polling&sid={sid}")
}

fn error_json(code: u8, message: &str) -> String {
    format!("{{\"code\":{code},\"message\":\"{message}\"}}")
}

// ---- handshake ----

#[test]
fn polling_handshake_sends_exactly_the_open_keys() {
    let mut p = Pair::new(config());
    let conn = p.get("EIO=4&transport=polling&t=abc");
    let r = p.response(conn).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.get_header("content-type"),
        Some("text/plain; charset=UTF-8")
    );
    let body = String::from_utf8(r.body.to_vec()).unwrap();
    let (sid, json) = open_packet(&body);
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "sid",
            "upgrades",
            "pingInterval",
            "pingTimeout",
            "maxPayload"
        ]
    );
    assert_eq!(json["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(json["pingInterval"], 300);
    assert_eq!(json["pingTimeout"], 200);
    assert_eq!(json["maxPayload"], 1_000_000);
    assert_eq!(
        sid.as_str().len(),
        20,
        "20 characters, as the reference's ids"
    );
    assert!(matches!(
        &p.events[..],
        [Event::Open { sid: s, transport: TransportKind::Polling, .. }] if *s == sid
    ));
    assert_eq!(p.engine.session_count(), 1);
}

#[test]
fn websocket_handshake_answers_101_then_the_open_packet() {
    let mut p = Pair::new(config());
    let conn = p.ws("EIO=4&transport=websocket");
    let r = p.response(conn).unwrap();
    assert_eq!(r.status, 101);
    assert_eq!(
        r.get_header("sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    let frames = p.ws_recv_text(conn);
    assert_eq!(frames.len(), 1);
    let (sid, json) = open_packet(&frames[0]);
    assert_eq!(json["upgrades"], serde_json::json!([]));
    assert_eq!(p.engine.transport(sid), Some(TransportKind::WebSocket));
}

#[test]
fn no_upgrades_offered_when_disabled() {
    let mut p = Pair::new(Config {
        allow_upgrades: false,
        ..config()
    });
    let (_, json) = p.open_polling(4);
    assert_eq!(json["upgrades"], serde_json::json!([]));
}

#[test]
fn session_ids_come_from_the_seed_and_a_custom_generator() {
    let mut a = Pair::new(config());
    let mut b = Pair::new(config());
    assert_eq!(a.open_polling(4).0, b.open_polling(4).0);
    assert_ne!(a.open_polling(4).0, a.open_polling(4).0);

    let mut n = 0;
    let generator = move |_: &RequestHead| {
        n += 1;
        Sid::new(&format!("user-{n}")).unwrap()
    };
    let mut p = Pair::new(config());
    p.engine = Engine::with_id_generator(config(), Box::new(generator));
    assert_eq!(p.open_polling(4).0.as_str(), "user-1");
    assert_eq!(p.open_polling(4).0.as_str(), "user-2");
}

#[test]
fn a_repeated_custom_id_is_refused() {
    let mut p = Pair::new(config());
    p.engine = Engine::with_id_generator(
        config(),
        Box::new(|_: &RequestHead| Sid::new("same").unwrap()),
    );
    p.open_polling(4);
    let conn = p.get("EIO=4&transport=polling");
    assert_eq!(p.body(conn), (400, error_json(3, "Bad request")));
    assert_eq!(p.engine.session_count(), 1);
}

// ---- refusals ----

#[test]
fn refusals_carry_the_reference_codes() {
    let mut p = Pair::new(Config {
        allow_eio3: false,
        ..config()
    });
    let cases = [
        ("EIO=4", 0, "Transport unknown"),
        ("EIO=4&transport=carrier-pigeon", 0, "Transport unknown"),
        ("EIO=4&transport=polling&sid=nope", 1, "Session ID unknown"),
        ("EIO=4&transport=polling&sid=%%%", 1, "Session ID unknown"),
        ("EIO=5&transport=polling", 5, "Unsupported protocol version"),
        ("transport=polling", 5, "Unsupported protocol version"),
        ("EIO=3&transport=polling", 5, "Unsupported protocol version"),
        ("EIO=4&transport=websocket", 3, "Bad request"),
    ];
    for (query, code, message) in cases {
        let conn = p.get(query);
        let r = p.response(conn).unwrap();
        assert_eq!(r.status, 400, "{query}");
        assert_eq!(r.get_header("content-type"), Some("application/json"));
        assert_eq!(
            String::from_utf8(r.body.to_vec()).unwrap(),
            error_json(code, message),
            "{query}"
        );
    }
    let conn = p.post("EIO=4&transport=polling", b"4hi");
    assert_eq!(p.body(conn), (400, error_json(2, "Bad handshake method")));
    assert_eq!(p.engine.session_count(), 0);
}

#[test]
fn a_refusal_is_recognised_from_its_response() {
    use volley_core::engine::ErrorCode;
    for code in ErrorCode::ALL {
        assert_eq!(ErrorCode::of_response(&code.response()), Some(code));
        assert_eq!(ErrorCode::of_response(&code.ws_response()), Some(code));
    }
    let other = volley_core::http::Response::new(400).body("Bad request!");
    assert_eq!(ErrorCode::of_response(&other), None);
    let ok = volley_core::http::Response::new(200).body("Bad request");
    assert_eq!(ErrorCode::of_response(&ok), None);
}

#[test]
fn websocket_refusals_are_plain_text() {
    let mut p = Pair::new(config());
    let conn = p.ws("EIO=9&transport=websocket");
    let r = p.response(conn).unwrap();
    assert_eq!(r.status, 400);
    assert!(r.close);
    assert_eq!(&r.body[..], b"Unsupported protocol version");
    let conn = p.ws("EIO=4&transport=websocket&sid=unknown");
    assert_eq!(p.body(conn), (400, "Session ID unknown".to_owned()));
    let conn = p.ws("EIO=4&transport=polling");
    assert_eq!(p.body(conn), (400, "Bad request".to_owned()));
}

#[test]
fn disabled_transports_are_unknown() {
    let mut p = Pair::new(Config {
        transports: volley_core::engine::Transports {
            polling: false,
            websocket: true,
        },
        ..config()
    });
    let conn = p.get("EIO=4&transport=polling");
    assert_eq!(p.body(conn), (400, error_json(0, "Transport unknown")));
    let conn = p.ws("EIO=4&transport=websocket");
    assert_eq!(p.response(conn).unwrap().status, 101);
}

#[test]
fn other_paths_are_not_the_engines() {
    let mut p = Pair::new(config());
    let conn = p.raw("GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n", b"");
    assert_eq!(p.body(conn).0, 404);
    let conn = p.raw(
        "GET /engine.io?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n",
        b"",
    );
    assert_eq!(p.body(conn).0, 200);
}

#[test]
fn other_methods_on_a_session_are_bad_requests() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    let conn = p.raw(
        &format!("PUT /engine.io/?{} HTTP/1.1\r\nHost: x\r\n\r\n", q(sid)),
        b"",
    );
    assert_eq!(p.body(conn), (400, error_json(3, "Bad request")));
    let conn = p.get("EIO=3&transport=polling&sid=".to_owned().as_str());
    assert_eq!(p.body(conn).0, 400);
    // A request for the session with another protocol version.
    let conn = p.get(&format!("EIO=3&transport=polling&sid={sid}"));
    assert_eq!(p.body(conn), (400, error_json(3, "Bad request")));
    assert!(p.engine.contains(sid));
}

// ---- long-polling ----

#[test]
fn a_poll_waits_for_data_then_takes_everything_queued() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    let get = p.get(&q(sid));
    assert!(p.response(get).is_none(), "parked");
    assert!(p.engine.is_writable(sid));
    p.engine.send(sid, text("hello"), p.now).unwrap();
    p.drive();
    assert_eq!(p.body(get), (200, "4hello".to_owned()));
    assert!(!p.engine.is_writable(sid));

    p.engine.send(sid, text("hello"), p.now).unwrap();
    p.engine
        .send(
            sid,
            Message::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            p.now,
        )
        .unwrap();
    p.engine.send(sid, text("world"), p.now).unwrap();
    let get = p.get(&q(sid));
    assert_eq!(
        p.body(get),
        (200, "4hello\x1ebAQIDBA==\x1e4world".to_owned())
    );
}

#[test]
fn a_poll_carries_at_most_the_configured_number_of_packets() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    for i in 0..40 {
        p.engine.send(sid, text(&i.to_string()), p.now).unwrap();
    }
    let mut got = vec![];
    for expected in [16, 16, 8] {
        let get = p.get(&q(sid));
        let (_, body) = p.body(get);
        let packets: Vec<String> = body.split('\x1e').map(str::to_owned).collect();
        assert_eq!(packets.len(), expected);
        got.extend(packets);
    }
    let want: Vec<String> = (0..40).map(|i| format!("4{i}")).collect();
    assert_eq!(got, want, "order kept across polls");
}

#[test]
fn posts_deliver_every_packet_in_order() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    p.events.clear();
    let mut body = Vec::new();
    for i in 0..100 {
        if i > 0 {
            body.push(0x1e);
        }
        body.extend_from_slice(format!("4m{i}").as_bytes());
    }
    body.extend_from_slice(b"\x1ebAQIDBA==");
    let post = p.post(&q(sid), &body);
    let r = p.response(post).unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
    assert_eq!(r.get_header("content-type"), Some("text/html"));
    let messages: Vec<Message> = p
        .events
        .iter()
        .map(|e| match e {
            Event::Message { message, .. } => message.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(messages.len(), 101);
    assert_eq!(messages[42], text("m42"));
    assert_eq!(
        messages[100],
        Message::Binary(Bytes::from_static(&[1, 2, 3, 4]))
    );
}

#[test]
fn a_second_concurrent_poll_closes_the_session() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    let first = p.get(&q(sid));
    let second = p.get(&q(sid));
    assert_eq!(p.body(second), (400, error_json(3, "Bad request")));
    assert_eq!(p.body(first), (200, "1".to_owned()));
    assert_eq!(p.close_reason(sid), Some("transport error"));
    let later = p.get(&q(sid));
    assert_eq!(p.body(later), (400, error_json(1, "Session ID unknown")));
    p.assert_empty();
}

#[test]
fn a_second_concurrent_post_closes_the_session() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    let head = |len: usize| {
        RequestHead::from_parts(
            "POST",
            &format!("/engine.io/?{}", q(sid)),
            vec![("Content-Length".to_owned(), len.to_string().into_bytes())],
        )
        .unwrap()
    };
    let first = p.new_conn();
    p.engine.handle_request(first, head(3), p.now).unwrap();
    p.drive();
    assert_eq!(p.pending_bodies.remove(&first), Some(1_000_000));
    let second = p.new_conn();
    p.engine.handle_request(second, head(3), p.now).unwrap();
    p.drive();
    assert_eq!(p.body(second), (400, error_json(3, "Bad request")));
    assert_eq!(p.close_reason(sid), Some("transport error"));
    // The first body still arrives; the session is gone by then.
    p.engine
        .handle_body(first, Body::Complete(Bytes::from_static(b"4hi")), p.now)
        .unwrap();
    p.drive();
    assert_eq!(p.body(first), (400, error_json(1, "Session ID unknown")));
    p.assert_empty();
}

#[test]
fn client_close_answers_the_pending_poll_with_noop() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    let get = p.get(&q(sid));
    let post = p.post(&q(sid), b"1");
    assert_eq!(p.body(post), (200, "ok".to_owned()));
    assert_eq!(p.body(get), (200, "6".to_owned()));
    assert_eq!(p.close_reason(sid), Some("transport close"));
    let later = p.get(&q(sid));
    assert_eq!(p.body(later), (400, error_json(1, "Session ID unknown")));
    p.assert_empty();
}

#[test]
fn an_invalid_packet_closes_the_session_and_the_poll_gets_close() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    let get = p.get(&q(sid));
    let post = p.post(&q(sid), b"abc");
    assert_eq!(p.body(post).0, 400);
    assert_eq!(p.body(get), (200, "1".to_owned()));
    assert_eq!(p.close_reason(sid), Some("parse error"));
    let later = p.get(&q(sid));
    assert_eq!(p.body(later).0, 400);
    p.assert_empty();
}

#[test]
fn packets_before_a_bad_one_are_not_delivered_partially_decoded() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    p.events.clear();
    let post = p.post(&q(sid), b"4fine\x1ezzz");
    assert_eq!(p.body(post).0, 400);
    assert!(
        !p.events.iter().any(|e| matches!(e, Event::Message { .. })),
        "a payload is decoded whole before anything is delivered"
    );
    assert_eq!(p.close_reason(sid), Some("parse error"));
}

#[test]
fn an_oversized_post_gets_413_and_closes_the_session() {
    // engine.io 6.6 closes the session ("payload too large", a transport error); older
    // versions kept it.
    let mut p = Pair::new(Config {
        max_payload: 10,
        ..config()
    });
    let (sid, json) = p.open_polling(4);
    assert_eq!(json["maxPayload"], 10);
    let get = p.get(&q(sid));
    // Refused from its Content-Length, before any of it is read.
    let post = p.post(&q(sid), b"4aaaaaaaaaaaaaaaaaaa");
    let r = p.response(post).unwrap();
    assert_eq!(r.status, 413);
    assert!(r.close, "the unread body makes the connection unusable");
    assert!(p.pending_bodies.is_empty());
    assert_eq!(
        p.body(get),
        (200, "1".to_owned()),
        "the parked poll gets close"
    );
    assert_eq!(p.close_reason(sid), Some("transport error"));
    let again = p.get(&q(sid));
    assert_eq!(p.body(again), (400, error_json(1, "Session ID unknown")));
    p.assert_empty();

    // A chunked body that turns out too large.
    let (sid, _) = p.open_polling(4);
    let conn = p.raw(
        &format!(
            "POST /engine.io/?{} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            q(sid)
        ),
        &[b'4'; 11],
    );
    assert_eq!(p.body(conn).0, 413);
    assert!(!p.engine.contains(sid));
    assert_eq!(p.close_reason(sid), Some("transport error"));
    p.assert_empty();
}

#[test]
fn octet_stream_posts_are_refused_in_v4() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    let post = p.post_with(&q(sid), "application/octet-stream", b"4hi");
    assert_eq!(p.body(post), (400, error_json(3, "Bad request")));
    assert_eq!(p.close_reason(sid), Some("transport error"));
    p.assert_empty();
}

#[test]
fn a_poll_that_drops_closes_the_session() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    let get = p.get(&q(sid));
    p.engine.handle_conn_closed(get, false, p.now);
    p.drive();
    assert_eq!(p.close_reason(sid), Some("transport error"));
    p.assert_empty();
}

// ---- heartbeat ----

#[test]
fn the_server_pings_and_a_pong_schedules_the_next() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    let get = p.get(&q(sid));
    p.advance(Duration::from_millis(299));
    assert!(p.response(get).is_none());
    p.advance(Duration::from_millis(1));
    assert_eq!(p.body(get), (200, "2".to_owned()));
    p.advance(Duration::from_millis(150));
    let pong = p.post(&q(sid), b"3");
    assert_eq!(p.body(pong).0, 200);
    let get = p.get(&q(sid));
    p.advance(Duration::from_millis(299));
    assert!(p.response(get).is_none());
    p.advance(Duration::from_millis(1));
    assert_eq!(p.body(get), (200, "2".to_owned()));
    assert!(p.engine.contains(sid));
}

#[test]
fn the_ping_timeout_counts_from_when_the_ping_is_queued() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    // No poll at all: the ping is queued at 300 ms and never delivered.
    p.advance(Duration::from_millis(499));
    assert!(p.engine.contains(sid));
    p.advance(Duration::from_millis(1));
    assert_eq!(p.elapsed(), Duration::from_millis(500));
    assert_eq!(p.close_reason(sid), Some("ping timeout"));
    let get = p.get(&q(sid));
    assert_eq!(p.body(get), (400, error_json(1, "Session ID unknown")));
    p.assert_empty();
}

#[test]
fn a_message_while_awaiting_pong_refreshes_the_timeout_once() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    p.advance(Duration::from_millis(450)); // ping queued at 300
    let post = p.post(&q(sid), b"4data");
    assert_eq!(p.body(post).0, 200);
    p.advance(Duration::from_millis(100)); // 550: past 500, refreshed to 650
    assert!(p.engine.contains(sid));
    let post = p.post(&q(sid), b"4more");
    assert_eq!(p.body(post).0, 200);
    p.advance(Duration::from_millis(100)); // 650: the second message did not refresh
    assert_eq!(p.close_reason(sid), Some("ping timeout"));
}

#[test]
fn a_ping_from_a_v4_client_is_an_error() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    let post = p.post(&q(sid), b"2");
    assert_eq!(p.body(post), (200, "ok".to_owned()));
    assert_eq!(p.close_reason(sid), Some("transport error"));
    let get = p.get(&q(sid));
    assert_eq!(p.body(get), (400, error_json(1, "Session ID unknown")));
}

#[test]
fn v3_clients_ping_and_the_server_answers() {
    let mut p = Pair::new(config());
    let (sid, json) = p.open_polling(3);
    assert_eq!(json["pingInterval"], 300);
    let v3 = format!("EIO=3&transport=polling&sid={sid}");
    for _ in 0..5 {
        p.advance(Duration::from_millis(400));
        let post = p.post(&v3, b"1:2");
        assert_eq!(p.body(post).0, 200);
        let get = p.get(&v3);
        assert_eq!(p.body(get), (200, "1:3".to_owned()));
    }
    assert!(p.engine.contains(sid));
    p.advance(Duration::from_millis(499));
    assert!(p.engine.contains(sid));
    p.advance(Duration::from_millis(1));
    assert_eq!(p.close_reason(sid), Some("ping timeout"));
    p.assert_empty();
}

#[test]
fn a_pong_from_a_v3_client_is_an_error() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(3);
    let post = p.post(&format!("EIO=3&transport=polling&sid={sid}"), b"1:3");
    assert_eq!(p.body(post).0, 200);
    assert_eq!(p.close_reason(sid), Some("transport error"));
}

// ---- upgrade ----

fn probe(p: &mut Pair, sid: Sid) -> ConnId {
    let ws = p.ws(&format!("EIO=4&transport=websocket&sid={sid}"));
    assert_eq!(p.response(ws).unwrap().status, 101);
    ws
}

#[test]
fn upgrade_probe_noop_and_switch() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    let get = p.get(&q(sid));
    let ws = probe(&mut p, sid);
    assert!(p.ws_recv(ws).is_empty(), "nothing before the probe");
    p.ws_text(ws, "2probe");
    assert_eq!(p.ws_recv_text(ws), ["3probe"]);
    assert_eq!(
        p.body(get),
        (200, "6".to_owned()),
        "the pending poll is released"
    );
    // Polls while upgrading are answered with noop at once.
    let again = p.get(&q(sid));
    assert_eq!(p.body(again), (200, "6".to_owned()));
    // Messages sent meanwhile wait for the new transport.
    p.engine.send(sid, text("buffered"), p.now).unwrap();
    p.drive();
    assert!(p.ws_recv(ws).is_empty());
    p.ws_text(ws, "5");
    assert!(
        p.events
            .iter()
            .any(|e| matches!(e, Event::Upgrade { sid: s } if *s == sid))
    );
    assert_eq!(p.ws_recv_text(ws), ["4buffered"]);
    assert_eq!(p.engine.transport(sid), Some(TransportKind::WebSocket));
    let late = p.get(&q(sid));
    assert_eq!(p.body(late), (400, error_json(3, "Bad request")));
    let post = p.post(&q(sid), b"4x");
    assert_eq!(p.body(post), (400, error_json(3, "Bad request")));
    // The session goes on over the WebSocket.
    p.ws_text(ws, "4over ws");
    assert!(
        p.events
            .iter()
            .any(|e| matches!(e, Event::Message { message, .. } if *message == text("over ws")))
    );
    p.engine.send(sid, text("back"), p.now).unwrap();
    p.drive();
    assert_eq!(p.ws_recv_text(ws), ["4back"]);
}

#[test]
fn probe_and_upgrade_sent_back_to_back() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    let ws = probe(&mut p, sid);
    p.ws_text(ws, "2probe");
    p.ws_text(ws, "5");
    assert_eq!(p.ws_recv_text(ws), ["3probe"]);
    let get = p.get(&q(sid));
    assert_eq!(p.body(get), (400, error_json(3, "Bad request")));
}

#[test]
fn an_upgrade_that_never_completes_times_out_and_polling_goes_on() {
    let mut p = Pair::new(Config {
        ping_interval: Duration::from_secs(25),
        ping_timeout: Duration::from_secs(20),
        ..config()
    });
    let (sid, _) = p.open_polling(4);
    let ws = probe(&mut p, sid);
    p.ws_text(ws, "2probe");
    p.advance(Duration::from_millis(9_999));
    assert!(!p.closed.contains(&ws));
    p.advance(Duration::from_millis(1));
    assert!(p.closed.contains(&ws), "probe closed after upgradeTimeout");
    let get = p.get(&q(sid));
    assert!(p.response(get).is_none(), "polling works again: parked");
    p.engine.send(sid, text("still here"), p.now).unwrap();
    p.drive();
    assert_eq!(p.body(get), (200, "4still here".to_owned()));
}

#[test]
fn a_bad_packet_on_the_probe_aborts_only_the_upgrade() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    let ws = probe(&mut p, sid);
    p.ws_text(ws, "4not a probe");
    assert!(p.closed.contains(&ws));
    assert!(p.engine.contains(sid));
    assert_eq!(p.engine.transport(sid), Some(TransportKind::Polling));
}

#[test]
fn one_websocket_per_session() {
    // A second WebSocket completes its handshake and is then closed, as the reference does
    // (a client sees a close rather than an HTTP error); the session goes on.
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    let first = probe(&mut p, sid);
    let second = p.ws(&format!("EIO=4&transport=websocket&sid={sid}"));
    assert_eq!(p.response(second).unwrap().status, 101);
    assert!(p.closed.contains(&second));
    assert!(!p.closed.contains(&first));
    p.ws_text(first, "2probe");
    assert_eq!(p.ws_recv_text(first), ["3probe"]);
    p.ws_text(first, "5");
    assert_eq!(p.engine.transport(sid), Some(TransportKind::WebSocket));

    let conn = p.ws("EIO=4&transport=websocket");
    let (ws_sid, _) = open_packet(&p.ws_recv_text(conn)[0]);
    let again = p.ws(&format!("EIO=4&transport=websocket&sid={ws_sid}"));
    assert_eq!(p.response(again).unwrap().status, 101);
    assert!(p.closed.contains(&again));
    assert!(p.ws_recv(again).is_empty());
    assert!(p.engine.contains(ws_sid));
    p.ws_text(conn, "4still");
    assert_eq!(p.events_of(ws_sid).len(), 2, "open and the message");
}

#[test]
fn a_probe_that_drops_leaves_polling_intact() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    let ws = probe(&mut p, sid);
    p.ws_text(ws, "2probe");
    p.engine.handle_conn_closed(ws, true, p.now);
    p.drive();
    let get = p.get(&q(sid));
    assert!(p.response(get).is_none(), "polls park again");
    assert!(p.engine.contains(sid));
}

// ---- websocket sessions ----

#[test]
fn websocket_session_messages_heartbeat_and_close() {
    let mut p = Pair::new(config());
    let ws = p.ws("EIO=4&transport=websocket");
    let (sid, _) = open_packet(&p.ws_recv_text(ws)[0]);
    p.ws_text(ws, "4hello");
    p.ws_binary(ws, &[1, 2, 3]);
    let got: Vec<_> = p
        .events_of(sid)
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        [
            text("hello"),
            Message::Binary(Bytes::from_static(&[1, 2, 3]))
        ]
    );
    p.engine
        .send(sid, Message::Binary(Bytes::from_static(&[9])), p.now)
        .unwrap();
    p.drive();
    assert_eq!(p.ws_recv(ws), [WsMessage::Binary(Bytes::from_static(&[9]))]);
    p.advance(Duration::from_millis(300));
    assert_eq!(p.ws_recv_text(ws), ["2"]);
    p.ws_text(ws, "3");
    p.ws_text(ws, "1");
    assert!(p.closed.contains(&ws));
    assert_eq!(p.close_reason(sid), Some("transport close"));
    p.assert_empty();
}

#[test]
fn websocket_drops_and_errors_have_their_reasons() {
    let mut p = Pair::new(config());
    let a = p.ws("EIO=4&transport=websocket");
    let (sa, _) = open_packet(&p.ws_recv_text(a)[0]);
    let b = p.ws("EIO=4&transport=websocket");
    let (sb, _) = open_packet(&p.ws_recv_text(b)[0]);
    let c = p.ws("EIO=4&transport=websocket");
    let (sc, _) = open_packet(&p.ws_recv_text(c)[0]);
    p.engine.handle_conn_closed(a, false, p.now);
    p.engine.handle_conn_closed(b, true, p.now);
    p.drive();
    p.ws_text(c, "9garbage");
    assert_eq!(p.close_reason(sa), Some("transport close"));
    assert_eq!(p.close_reason(sb), Some("transport error"));
    assert_eq!(p.close_reason(sc), Some("parse error"));
    assert!(p.closed.contains(&c));
    p.assert_empty();
}

#[test]
fn websocket_messages_over_max_payload_close_the_session() {
    let mut p = Pair::new(Config {
        max_payload: 8,
        ..config()
    });
    let ws = p.ws("EIO=4&transport=websocket");
    let (sid, _) = open_packet(&p.ws_recv_text(ws)[0]);
    p.ws_text(ws, "4short");
    assert!(p.engine.contains(sid));
    p.ws_text(ws, "4far too long");
    assert_eq!(p.close_reason(sid), Some("transport error"));
}

#[test]
fn a_websocket_sends_nothing_more_until_drained() {
    let mut p = Pair::new(config());
    p.auto_drain = false;
    let ws = p.ws("EIO=4&transport=websocket");
    let (sid, _) = open_packet(&p.ws_recv_text(ws)[0]);
    assert!(!p.engine.is_writable(sid));
    p.engine.send(sid, text("a"), p.now).unwrap();
    p.engine.send(sid, text("b"), p.now).unwrap();
    p.drive();
    assert!(p.ws_recv(ws).is_empty());
    assert_eq!(p.engine.queued(sid), 2);
    p.engine.handle_ws_drained(ws, p.now);
    p.drive();
    assert_eq!(p.ws_recv_text(ws), ["4a", "4b"]);
}

// ---- server close ----

#[test]
fn server_close_with_a_pending_poll() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    let get = p.get(&q(sid));
    p.engine.close(sid, p.now);
    p.drive();
    assert_eq!(p.body(get), (200, "1".to_owned()));
    assert_eq!(p.close_reason(sid), Some("forced close"));
    p.assert_empty();
}

#[test]
fn server_close_waits_for_the_next_poll() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    p.engine.close(sid, p.now);
    p.drive();
    assert!(!p.engine.contains(sid));
    assert_eq!(
        p.engine.send(sid, text("late"), p.now),
        Err(SendError::UnknownSession(sid))
    );
    let get = p.get(&q(sid));
    assert_eq!(p.body(get), (200, "6\x1e1".to_owned()));
    assert_eq!(p.close_reason(sid), Some("forced close"));
    p.assert_empty();

    // What was queued leaves on its own; the close follows in the next poll, since clients
    // act on a close packet before the packets batched with it.
    let (sid, _) = p.open_polling(4);
    p.engine.send(sid, text("last words"), p.now).unwrap();
    p.engine.close(sid, p.now);
    let get = p.get(&q(sid));
    assert_eq!(p.body(get), (200, "4last words".to_owned()));
    assert_eq!(p.close_reason(sid), None);
    let get = p.get(&q(sid));
    assert_eq!(p.body(get), (200, "6\x1e1".to_owned()));
    assert_eq!(p.close_reason(sid), Some("forced close"));
    p.assert_empty();
}

#[test]
fn server_close_with_a_pending_poll_and_a_queue_sends_the_queue_first() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    p.engine.send(sid, text("a"), p.now).unwrap();
    p.engine.send(sid, text("b"), p.now).unwrap();
    let get = p.get(&q(sid));
    assert_eq!(p.body(get), (200, "4a\x1e4b".to_owned()));
    p.engine.send(sid, text("c"), p.now).unwrap();
    let get = p.get(&q(sid));
    p.engine.close(sid, p.now);
    p.drive();
    assert_eq!(
        p.body(get),
        (200, "4c".to_owned()),
        "parked poll took the queue"
    );
    let get = p.get(&q(sid));
    p.engine.close(sid, p.now);
    p.drive();
    assert_eq!(p.body(get), (200, "6\x1e1".to_owned()));
    assert_eq!(p.close_reason(sid), Some("forced close"));
    p.assert_empty();
}

#[test]
fn a_server_close_during_an_answered_upgrade_ends_over_the_websocket() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    let ws = probe(&mut p, sid);
    p.ws_text(ws, "2probe");
    assert_eq!(p.ws_recv_text(ws), ["3probe"]);
    p.engine.send(sid, text("bye"), p.now).unwrap();
    p.engine.close(sid, p.now);
    p.drive();
    assert!(
        !p.closed.contains(&ws),
        "the probe stays open for the client's 5"
    );
    let paused = p.get(&q(sid));
    assert_eq!(p.body(paused), (200, "6".to_owned()));
    p.ws_text(ws, "5");
    assert_eq!(p.ws_recv_text(ws), ["4bye", "1"]);
    assert!(p.closed.contains(&ws));
    assert_eq!(p.close_reason(sid), Some("forced close"));
    p.assert_empty();
}

#[test]
fn a_server_close_during_an_upgrade_that_never_completes_still_ends() {
    let mut p = Pair::new(Config {
        ping_interval: Duration::from_secs(60),
        ..config()
    });
    let (sid, _) = p.open_polling(4);
    let ws = probe(&mut p, sid);
    p.ws_text(ws, "2probe");
    p.engine.close(sid, p.now);
    p.advance(Duration::from_secs(10));
    assert!(
        p.closed.contains(&ws),
        "probe closed at the upgrade timeout"
    );
    let get = p.get(&q(sid));
    assert_eq!(p.body(get), (200, "6\x1e1".to_owned()));
    assert_eq!(p.close_reason(sid), Some("forced close"));
    p.assert_empty();
}

#[test]
fn server_close_gives_up_after_the_close_timeout() {
    let mut p = Pair::new(Config {
        ping_interval: Duration::from_secs(60),
        ..config()
    });
    let (sid, _) = p.open_polling(4);
    p.engine.close(sid, p.now);
    p.advance(Duration::from_secs(29));
    assert_eq!(p.close_reason(sid), None);
    p.advance(Duration::from_secs(1));
    assert_eq!(p.close_reason(sid), Some("forced close"));
    p.assert_empty();
}

#[test]
fn server_close_over_websocket_flushes_then_closes() {
    let mut p = Pair::new(config());
    p.auto_drain = false;
    let ws = p.ws("EIO=4&transport=websocket");
    let (sid, _) = open_packet(&p.ws_recv_text(ws)[0]);
    p.engine.send(sid, text("bye"), p.now).unwrap();
    p.engine.close(sid, p.now);
    p.drive();
    assert_eq!(p.ws_recv_text(ws), ["4bye", "1"]);
    assert!(p.closed.contains(&ws));
    assert_eq!(p.close_reason(sid), Some("forced close"));
    p.assert_empty();
}

// ---- the outgoing bound ----

#[test]
fn a_client_that_never_polls_is_closed_when_its_queue_fills() {
    let mut p = Pair::new(Config {
        max_buffered_packets: 3,
        ..config()
    });
    let (sid, _) = p.open_polling(4);
    for _ in 0..3 {
        p.engine.send(sid, text("x"), p.now).unwrap();
    }
    assert_eq!(
        p.engine.send(sid, text("x"), p.now),
        Err(SendError::BufferFull(sid))
    );
    p.drive();
    assert_eq!(p.close_reason(sid), Some("transport error"));
    assert!(p.events.iter().any(|e| matches!(
        e,
        Event::Close {
            reason: CloseReason::SlowClient,
            ..
        }
    )));
    p.assert_empty();
}

#[test]
fn the_reject_policy_keeps_the_session() {
    let mut p = Pair::new(Config {
        max_buffered_packets: 2,
        overflow: OverflowPolicy::Reject,
        ..config()
    });
    let (sid, _) = p.open_polling(4);
    p.engine.send(sid, text("a"), p.now).unwrap();
    p.engine.send(sid, text("b"), p.now).unwrap();
    assert_eq!(
        p.engine.send(sid, text("c"), p.now),
        Err(SendError::BufferFull(sid))
    );
    assert!(p.engine.contains(sid));
    let get = p.get(&q(sid));
    assert_eq!(p.body(get), (200, "4a\x1e4b".to_owned()));
    p.engine.send(sid, text("c"), p.now).unwrap();
}

#[test]
fn the_queue_is_bounded_in_bytes_and_a_slow_client_is_closed() {
    let mut p = Pair::new(Config {
        max_buffered_bytes: 100,
        ..config()
    });
    p.auto_drain = false;
    let ws = p.ws("EIO=4&transport=websocket");
    let (sid, _) = open_packet(&p.ws_recv_text(ws)[0]);
    // The open packet is in flight: what is sent now waits in the queue.
    let forty = "y".repeat(40);
    p.engine.send(sid, text(&forty), p.now).unwrap();
    p.engine.send(sid, text(&forty), p.now).unwrap();
    // 80 < 100: the message crossing the budget is taken.
    p.engine.send(sid, text(&forty), p.now).unwrap();
    assert_eq!(p.engine.queued_bytes(sid), 120);
    // 120 >= 100: refused, and the session is closed as a slow client.
    assert_eq!(
        p.engine.send(sid, text("z"), p.now),
        Err(SendError::BufferFull(sid))
    );
    p.drive();
    assert!(p.events.iter().any(|e| matches!(
        e,
        Event::Close {
            reason: CloseReason::SlowClient,
            ..
        }
    )));
    assert!(p.closed.contains(&ws));
    assert_eq!(p.engine.queued_bytes(sid), 0);
    p.assert_empty();
}

#[test]
fn the_byte_bound_under_reject_keeps_the_session_and_frees_as_it_drains() {
    let mut p = Pair::new(Config {
        max_buffered_bytes: 100,
        max_packets_per_poll: 1,
        overflow: OverflowPolicy::Reject,
        ..config()
    });
    let (sid, _) = p.open_polling(4);
    let sixty = "z".repeat(60);
    p.engine.send(sid, text(&sixty), p.now).unwrap();
    p.engine
        .send(sid, Message::Binary(Bytes::from(vec![1u8; 50])), p.now)
        .unwrap();
    assert_eq!(p.engine.queued_bytes(sid), 110);
    assert_eq!(
        p.engine.send(sid, text("a"), p.now),
        Err(SendError::BufferFull(sid))
    );
    // Heartbeats are not counted and not refused.
    p.advance(Duration::from_millis(300));
    assert!(p.engine.contains(sid));
    assert_eq!(p.engine.queued_bytes(sid), 110);
    // One packet per poll: the first poll frees 60 bytes, and sends are taken again.
    let get = p.get(&q(sid));
    assert_eq!(p.body(get), (200, format!("4{sixty}")));
    assert_eq!(p.engine.queued_bytes(sid), 50);
    p.engine.send(sid, text(&sixty), p.now).unwrap();
    assert_eq!(p.engine.queued_bytes(sid), 110);
    assert!(p.engine.contains(sid));
}

#[test]
fn a_message_larger_than_the_byte_budget_is_taken_while_the_queue_is_under_it() {
    let mut p = Pair::new(Config {
        max_buffered_bytes: 10,
        overflow: OverflowPolicy::Reject,
        ..config()
    });
    let (sid, _) = p.open_polling(4);
    // A small header, then a large attachment: the packet is taken whole.
    p.engine.send(sid, text("h"), p.now).unwrap();
    let big = Bytes::from(vec![7u8; 50]);
    p.engine
        .send(sid, Message::Binary(big.clone()), p.now)
        .unwrap();
    assert_eq!(p.engine.queued_bytes(sid), 51);
    assert_eq!(
        p.engine.send(sid, text("s"), p.now),
        Err(SendError::BufferFull(sid))
    );
    let get = p.get(&q(sid));
    assert_eq!(p.response(get).unwrap().status, 200);
    assert_eq!(p.engine.queued_bytes(sid), 0);
    p.engine.send(sid, Message::Binary(big), p.now).unwrap();
}

#[test]
fn a_unit_of_messages_is_taken_or_refused_whole() {
    let mut p = Pair::new(Config {
        max_buffered_bytes: 10,
        overflow: OverflowPolicy::Reject,
        ..config()
    });
    let (sid, _) = p.open_polling(4);
    // A header and two attachments far over the budget: taken whole.
    let unit = || {
        [
            text("h"),
            Message::Binary(Bytes::from(vec![1u8; 40])),
            Message::Binary(Bytes::from(vec![2u8; 40])),
        ]
    };
    p.engine.send_all(sid, unit(), p.now).unwrap();
    assert_eq!(p.engine.queued(sid), 3);
    assert_eq!(p.engine.queued_bytes(sid), 81);
    // Refused whole: nothing of it is queued.
    assert_eq!(
        p.engine.send_all(sid, unit(), p.now),
        Err(SendError::BufferFull(sid))
    );
    assert_eq!(p.engine.queued(sid), 3);
}

// ---- v3 framing, JSONP ----

#[test]
fn v3_polling_frames_by_length_and_binary_by_xhr2_or_base64() {
    let mut p = Pair::new(config());
    let conn = p.get("EIO=3&transport=polling");
    let (_, body) = p.body(conn);
    let (len, packet) = body.split_once(':').unwrap();
    assert_eq!(len.parse::<usize>().unwrap(), packet.encode_utf16().count());
    let (sid, _) = open_packet(packet);

    p.engine.send(sid, text("€"), p.now).unwrap();
    let get = p.get(&format!("EIO=3&transport=polling&sid={sid}"));
    assert_eq!(p.body(get), (200, "2:4€".to_owned()));

    p.engine.send(sid, text("hello"), p.now).unwrap();
    p.engine
        .send(
            sid,
            Message::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            p.now,
        )
        .unwrap();
    let get = p.get(&format!("EIO=3&transport=polling&sid={sid}"));
    let r = p.response(get).unwrap();
    assert_eq!(
        r.get_header("content-type"),
        Some("application/octet-stream")
    );
    assert_eq!(
        &r.body[..],
        &[
            0, 6, 0xff, b'4', b'h', b'e', b'l', b'l', b'o', 1, 5, 0xff, 4, 1, 2, 3, 4
        ]
    );

    let conn = p.get("EIO=3&transport=polling&b64=1");
    let (_, body) = p.body(conn);
    let (sid, _) = open_packet(body.split_once(':').unwrap().1);
    p.engine
        .send(
            sid,
            Message::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            p.now,
        )
        .unwrap();
    let get = p.get(&format!("EIO=3&transport=polling&b64=1&sid={sid}"));
    assert_eq!(p.body(get), (200, "10:b4AQIDBA==".to_owned()));
}

#[test]
fn v3_binary_posts_and_websocket_frames_carry_the_type_byte() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(3);
    p.events.clear();
    let post = p.post_with(
        &format!("EIO=3&transport=polling&sid={sid}"),
        "application/octet-stream",
        &[
            0, 6, 0xff, b'4', b'h', b'e', b'l', b'l', b'o', 1, 5, 0xff, 4, 1, 2, 3, 4,
        ],
    );
    assert_eq!(p.body(post).0, 200);
    let got: Vec<_> = p
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Message { message, .. } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        got,
        [
            text("hello"),
            Message::Binary(Bytes::from_static(&[1, 2, 3, 4]))
        ]
    );

    let ws = p.ws("EIO=3&transport=websocket");
    let (sid, _) = open_packet(&p.ws_recv_text(ws)[0]);
    p.engine
        .send(sid, Message::Binary(Bytes::from_static(&[1, 2])), p.now)
        .unwrap();
    p.drive();
    assert_eq!(
        p.ws_recv(ws),
        [WsMessage::Binary(Bytes::from_static(&[4, 1, 2]))]
    );
    p.ws_binary(ws, &[4, 7, 7]);
    assert!(p.events.iter().any(|e| matches!(e, Event::Message { message, .. } if *message == Message::Binary(Bytes::from_static(&[7, 7])))));
}

#[test]
fn jsonp_polling_wraps_responses_and_reads_form_posts() {
    let mut p = Pair::new(config());
    let conn = p.get("EIO=4&transport=polling&j=3");
    let r = p.response(conn).unwrap();
    assert_eq!(
        r.get_header("content-type"),
        Some("text/javascript; charset=UTF-8")
    );
    let body = String::from_utf8(r.body.to_vec()).unwrap();
    let inner = body
        .strip_prefix("___eio[3](")
        .and_then(|b| b.strip_suffix(");"))
        .unwrap();
    let payload: String = serde_json::from_str(inner).unwrap();
    let (sid, _) = open_packet(&payload);
    p.events.clear();
    let post = p.post_with(
        &format!("EIO=4&transport=polling&j=3&sid={sid}"),
        "application/x-www-form-urlencoded",
        b"d=4hello%20world",
    );
    assert_eq!(p.body(post).0, 200);
    assert!(
        p.events.iter().any(
            |e| matches!(e, Event::Message { message, .. } if *message == text("hello world"))
        )
    );
}

// ---- misuse is the caller's error, not the peer's ----

#[test]
fn caller_misuse_is_a_typed_error() {
    let mut p = Pair::new(config());
    let (sid, _) = p.open_polling(4);
    let get = p.get(&q(sid));
    let head = RequestHead::from_parts("GET", &format!("/engine.io/?{}", q(sid)), vec![]).unwrap();
    assert_eq!(
        p.engine.handle_request(get, head, p.now),
        Err(ApiMisuse::ConnectionBusy(get))
    );
    assert_eq!(
        p.engine.handle_body(ConnId(999), Body::TooLarge, p.now),
        Err(ApiMisuse::UnexpectedBody(ConnId(999)))
    );
    assert_eq!(
        p.engine
            .handle_ws_message(get, WsMessage::Text(Utf8Bytes::from("4x")), p.now),
        Err(ApiMisuse::NotWebSocket(get))
    );
    p.engine.handle_conn_closed(ConnId(12345), false, p.now);
    assert!(p.engine.contains(sid));
}

// ---- lifecycle ----

#[test]
fn every_kind_of_client_leaves_nothing_behind() {
    let mut p = Pair::new(config());
    let mut sids = vec![];
    for i in 0..30 {
        match i % 6 {
            0 => {
                // Polls, then closes.
                let (sid, _) = p.open_polling(4);
                let get = p.get(&q(sid));
                let post = p.post(&q(sid), b"4hi\x1e1");
                assert_eq!(p.body(post).0, 200);
                assert_eq!(p.body(get).0, 200);
                sids.push(sid);
            }
            1 => {
                // Handshakes and disappears.
                sids.push(p.open_polling(4).0);
            }
            2 => {
                // Probes an upgrade it never completes, then stops polling.
                let (sid, _) = p.open_polling(4);
                let ws = probe(&mut p, sid);
                p.ws_text(ws, "2probe");
                sids.push(sid);
            }
            3 => {
                // Upgrades, then vanishes without closing the socket.
                let (sid, _) = p.open_polling(4);
                let ws = probe(&mut p, sid);
                p.ws_text(ws, "2probe");
                p.ws_text(ws, "5");
                sids.push(sid);
            }
            4 => {
                // A v3 client that pings once and stops.
                let (sid, _) = p.open_polling(3);
                let post = p.post(&format!("EIO=3&transport=polling&sid={sid}"), b"1:2");
                assert_eq!(p.body(post).0, 200);
                sids.push(sid);
            }
            _ => {
                // A WebSocket client that stays until the server closes it.
                let ws = p.ws("EIO=4&transport=websocket");
                let (sid, _) = open_packet(&p.ws_recv_text(ws)[0]);
                p.engine.close(sid, p.now);
                p.drive();
                sids.push(sid);
            }
        }
        p.advance(Duration::from_millis(37));
    }
    p.advance(Duration::from_secs(60));
    for sid in sids {
        assert!(p.close_reason(sid).is_some(), "{sid} closed");
    }
    p.assert_empty();
    let opens = p
        .events
        .iter()
        .filter(|e| matches!(e, Event::Open { .. }))
        .count();
    let closes = p
        .events
        .iter()
        .filter(|e| matches!(e, Event::Close { .. }))
        .count();
    assert_eq!((opens, closes), (30, 30));
}

#[test]
fn poll_timeout_always_moves_forward() {
    let mut p = Pair::new(Config {
        ping_interval: Duration::ZERO,
        ping_timeout: Duration::ZERO,
        ..config()
    });
    let (sid, _) = p.open_polling(4);
    let mut last = p.now;
    for _ in 0..10 {
        let Some(t) = p.engine.poll_timeout() else {
            break;
        };
        assert!(t > last || t > p.now, "deadline must advance");
        last = t;
        p.step();
    }
    assert_eq!(p.close_reason(sid), Some("ping timeout"));
}

#[test]
fn the_cookie_option_sets_the_session_cookie_on_the_handshake() {
    let mut p = Pair::new(Config {
        cookie: Some(volley_core::engine::Cookie::default()),
        ..config()
    });
    let conn = p.get("EIO=4&transport=polling");
    let r = p.response(conn).unwrap();
    let (sid, _) = open_packet(std::str::from_utf8(&r.body).unwrap());
    assert_eq!(
        r.get_header("set-cookie"),
        Some(format!("io={sid}; Path=/; HttpOnly; SameSite=Lax").as_str())
    );
    // Later polls carry no cookie.
    let get = p.get(&q(sid));
    p.engine.send(sid, text("x"), p.now).unwrap();
    p.drive();
    assert_eq!(p.response(get).unwrap().get_header("set-cookie"), None);

    let mut p = Pair::new(Config {
        cookie: Some(volley_core::engine::Cookie {
            name: "sticky".into(),
            path: None,
            http_only: false,
            same_site: None,
            secure: true,
            max_age: Some(60),
        }),
        ..config()
    });
    let ws = p.ws("EIO=4&transport=websocket");
    let r = p.response(ws).unwrap();
    let (sid, _) = open_packet(&p.ws_recv_text(ws)[0]);
    assert_eq!(
        r.get_header("set-cookie"),
        Some(format!("sticky={sid}; Secure; Max-Age=60").as_str())
    );
}

#[test]
fn without_the_cookie_option_no_cookie_is_set() {
    let mut p = Pair::new(config());
    let conn = p.get("EIO=4&transport=polling");
    assert_eq!(p.response(conn).unwrap().get_header("set-cookie"), None);
}
