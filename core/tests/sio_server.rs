//! Every rule of Socket.IO §2 in `shared/protocol-notes.md`, in the in-memory harness, over
//! the `socketio::Server` machine: wire bytes as the notes and the official suite give them,
//! events as the application sees them, and nothing left behind.

mod sio_common;

use sio_common::{C, Frame, Kind, SioPair, config, show};
use std::time::Duration;
use volley_core::Bytes;
use volley_core::ids::SocketId;
use volley_core::socketio::{
    AckFailure, AckId, BroadcastOptions, DisconnectReason, Event, Room, Server, SioError,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn shown(p: &mut SioPair) -> Vec<String> {
    p.take_events().iter().map(show).collect()
}

fn rooms(names: &[&str]) -> Vec<Room> {
    names.iter().map(|n| Room::from(*n)).collect()
}

fn to(names: &[&str]) -> BroadcastOptions {
    BroadcastOptions {
        rooms: rooms(names),
        ..BroadcastOptions::default()
    }
}

fn connect_reply(socket: SocketId) -> String {
    format!("40{{\"sid\":\"{socket}\"}}")
}

/// One client on `/` (v4) over `kind`, connected; returns it and its socket.
fn joined(p: &mut SioPair, kind: Kind) -> (C, SocketId) {
    let c = p.open(4, kind);
    let s = p.join(c, "/", None);
    (c, s)
}

/// Takes the single event, which must be an `Event::Event`, and returns its ack token.
fn take_event(p: &mut SioPair) -> Event {
    let mut events = p.take_events();
    assert_eq!(
        events.len(),
        1,
        "{:?}",
        events.iter().map(show).collect::<Vec<_>>()
    );
    events.remove(0)
}

// ---- CONNECT ----

#[test]
fn connect_to_root_without_auth_replies_with_a_new_socket_id() {
    let mut p = SioPair::new();
    let c = p.open(4, Kind::Polling);
    p.send(c, "0");
    let (req, socket) = p.accepted.last().cloned().unwrap();
    assert_eq!(&*req.nsp, "/");
    assert_eq!(req.auth.as_str(), "{}");
    assert_eq!(req.query, None);
    assert_eq!(req.handshake.sid, p.sid(c));
    assert_ne!(socket.as_str(), p.sid(c).as_str());
    // The GET parked since the handshake carries the reply, alone: exactly `40{"sid":"…"}`.
    assert_eq!(p.last_poll(c), (200, connect_reply(socket)));
    assert_eq!(p.recv_text(c), [connect_reply(socket)]);
    assert_eq!(p.server.rooms_of(socket), [Room::from(socket)]);
    assert_eq!(p.server.session_of(socket), Some(p.sid(c)));
    assert_eq!(p.server.namespace_of(socket).map(|n| &**n), Some("/"));
    assert_eq!(p.server.socket_count(), 1);
    assert_eq!(p.server.namespace_socket_count("/"), 1);
    assert_eq!(
        p.server.timer_count(),
        0,
        "the connect timeout is cancelled"
    );
}

#[test]
fn connect_with_auth_hands_the_auth_object_over() {
    let mut p = SioPair::new();
    let c = p.open(4, Kind::Ws);
    p.send(c, r#"0{"token":"123"}"#);
    let (req, socket) = p.accepted.last().cloned().unwrap();
    assert_eq!(req.auth.as_str(), r#"{"token":"123"}"#);
    assert_eq!(p.recv_text(c), [connect_reply(socket)]);
}

#[test]
fn connect_to_a_declared_namespace() {
    let mut p = SioPair::new();
    p.server.add_namespace("/custom");
    let c = p.open(4, Kind::Ws);
    p.send(c, r#"0/custom,{"token":"abc"}"#);
    let (req, socket) = p.accepted.last().cloned().unwrap();
    assert_eq!(&*req.nsp, "/custom");
    assert_eq!(req.auth.as_str(), r#"{"token":"abc"}"#);
    assert_eq!(
        p.recv_text(c),
        [format!("40/custom,{{\"sid\":\"{socket}\"}}")]
    );
    assert_eq!(p.server.namespace_socket_count("/custom"), 1);
    assert_eq!(p.server.namespace_socket_count("/"), 0);
    // Without a comma, as the suite writes it, and without auth.
    let d = p.open(4, Kind::Ws);
    p.send(d, "0/custom");
    let (req, socket) = p.accepted.last().cloned().unwrap();
    assert_eq!(req.auth.as_str(), "{}");
    assert_eq!(
        p.recv_text(d),
        [format!("40/custom,{{\"sid\":\"{socket}\"}}")]
    );
}

#[test]
fn connect_to_an_unknown_namespace_is_refused_and_the_session_stays() {
    let mut p = SioPair::new();
    let c = p.open(4, Kind::Ws);
    p.send(c, "0/random");
    assert_eq!(
        p.recv_text(c),
        [r#"44/random,{"message":"Invalid namespace"}"#]
    );
    assert!(p.requests.is_empty(), "the application is not asked");
    assert!(p.server.engine().contains(p.sid(c)));
    assert!(!p.server.namespaces().any(|n| n == "/random"));
    // The connection may still join a namespace that exists.
    let s = p.join(c, "/", None);
    assert!(p.server.contains(s));
}

#[test]
fn a_refusal_carries_message_and_data() {
    let mut p = SioPair::new();
    p.auto_accept = false;
    let c = p.open(4, Kind::Ws);
    p.send(c, "0");
    let Some(Event::Connect(req)) = p.events.pop_front() else {
        panic!("a connect request");
    };
    assert_eq!(p.server.pending_connect_count(), 1);
    p.server
        .reject(req.id, "m", Some(r#"{"a":1}"#), p.now)
        .unwrap();
    p.drive();
    assert_eq!(p.recv_text(c), [r#"44{"message":"m","data":{"a":1}}"#]);
    assert_eq!(p.server.pending_connect_count(), 0);
    assert_eq!(p.server.socket_count(), 0);
    assert_eq!(
        p.server.reject(req.id, "again", None, p.now),
        Err(SioError::UnknownConnect(req.id))
    );
    assert_eq!(
        p.server.accept(req.id, p.now),
        Err(SioError::UnknownConnect(req.id))
    );
    // Refused without data: the message alone.
    p.send(c, "0");
    let Some(Event::Connect(req)) = p.events.pop_front() else {
        panic!("a second request");
    };
    p.server.reject(req.id, "no", None, p.now).unwrap();
    p.drive();
    assert_eq!(p.recv_text(c), [r#"44{"message":"no"}"#]);
    assert!(p.server.engine().contains(p.sid(c)));
}

#[test]
fn v4_protocol_clients_are_connected_to_root_and_use_query_strings() {
    let mut p = SioPair::new();
    p.server.add_namespace("/admin");
    p.server.add_namespace("/other");
    let c = p.open(3, Kind::Polling);
    // `/` is joined without asking; the reply has no payload.
    let root = p.socket_of(c, "/").expect("auto-connected");
    assert_eq!(root.as_str(), p.sid(c).as_str());
    assert_eq!(p.recv_text(c), ["40"]);
    assert_eq!(p.last_poll(c), (200, "2:40".to_owned()));
    // Credentials travel in the namespace.
    p.send(c, "0/admin?token=1234,");
    let (req, admin) = p.accepted.last().cloned().unwrap();
    assert_eq!(&*req.nsp, "/admin");
    assert_eq!(req.query.as_deref(), Some("token=1234"));
    assert_eq!(req.auth.as_str(), "{}");
    assert_eq!(admin.as_str(), format!("/admin#{}", p.sid(c)));
    assert_eq!(p.recv_text(c), ["40/admin,"]);
    assert_eq!(p.last_poll(c), (200, "9:40/admin,".to_owned()));
    // A refusal is a plain string.
    p.auto_accept = false;
    p.send(c, "0/other,");
    let Some(Event::Connect(req)) = p.events.pop_front() else {
        panic!("a request");
    };
    p.server
        .reject(req.id, "Not authorized", None, p.now)
        .unwrap();
    p.drive();
    assert_eq!(p.recv_text(c), [r#"44/other,"Not authorized""#]);
    // The reference sends `err.data || err.message` to these clients.
    p.send(c, "0/other,");
    let Some(Event::Connect(req)) = p.events.pop_front() else {
        panic!("a request");
    };
    p.server
        .reject(req.id, "ignored", Some(r#"{"code":7}"#), p.now)
        .unwrap();
    p.drive();
    assert_eq!(p.recv_text(c), [r#"44/other,{"code":7}"#]);
    // Events are as in v5.
    p.send(c, r#"2/admin,["hi",1]"#);
    assert_eq!(shown(&mut p), [format!("event {admin} hi [1]")]);
    p.server
        .emit(admin, "yo", "[2]", vec![], false, p.now)
        .unwrap();
    p.drive();
    assert_eq!(p.recv_text(c), [r#"42/admin,["yo",2]"#]);
}

#[test]
fn v4_protocol_over_websocket() {
    let mut p = SioPair::new();
    let c = p.open(3, Kind::Ws);
    let root = p.socket_of(c, "/").unwrap();
    assert_eq!(p.recv_text(c), ["40"]);
    p.send_bin(
        c,
        r#"51-["bin",{"_placeholder":true,"num":0}]"#,
        &[&[1, 2, 3]],
    );
    assert_eq!(
        shown(&mut p),
        [format!(
            r#"event {root} bin [{{"_placeholder":true,"num":0}}] +1"#
        )]
    );
    p.server
        .emit(
            root,
            "back",
            r#"[{"_placeholder":true,"num":0}]"#,
            vec![Bytes::from_static(&[9, 8])],
            false,
            p.now,
        )
        .unwrap();
    p.drive();
    assert_eq!(
        p.recv_text(c),
        [r#"451-["back",{"_placeholder":true,"num":0}]"#, "<bin 9,8>"]
    );
}

#[test]
fn the_connect_reply_precedes_what_the_application_sends() {
    let mut p = SioPair::new();
    p.auto_accept = false;
    let c = p.open(4, Kind::Ws);
    p.send(c, "0");
    let Some(Event::Connect(req)) = p.events.pop_front() else {
        panic!("a request");
    };
    let s = p.server.accept(req.id, p.now).unwrap();
    p.server
        .emit(s, "welcome", "[]", vec![], false, p.now)
        .unwrap();
    p.drive();
    assert_eq!(
        p.recv_text(c),
        [connect_reply(s), r#"42["welcome"]"#.to_owned()]
    );
}

// ---- connect timeout ----

#[test]
fn no_connect_within_the_timeout_closes_the_session() {
    let mut p = SioPair::new();
    let c = p.open(4, Kind::Polling);
    assert_eq!(p.server.timer_count(), 1);
    p.advance(ms(999));
    assert!(p.server.engine().contains(p.sid(c)), "pings keep it alive");
    p.advance(ms(1));
    assert!(p.client(c).closed);
    assert_eq!(p.last_poll(c), (200, "1".to_owned()));
    assert_eq!(p.server.client_count(), 0);
    assert_eq!(p.server.timer_count(), 0);
    assert!(p.take_events().is_empty());
    p.assert_empty();
}

#[test]
fn a_connect_in_time_cancels_the_timeout() {
    let mut p = SioPair::new();
    let c = p.open(4, Kind::Ws);
    p.advance(ms(500));
    let s = p.join(c, "/", None);
    assert_eq!(p.server.timer_count(), 0);
    p.advance(ms(3000));
    assert!(p.server.contains(s));
    assert!(!p.client(c).closed);
}

#[test]
fn a_refused_connect_leaves_the_timeout_armed() {
    let mut p = SioPair::new();
    p.auto_accept = false;
    let c = p.open(4, Kind::Ws);
    p.advance(ms(100));
    p.send(c, "0");
    let Some(Event::Connect(req)) = p.events.pop_front() else {
        panic!("a request");
    };
    p.server.reject(req.id, "no", None, p.now).unwrap();
    p.drive();
    p.advance(ms(899));
    assert!(!p.client(c).closed);
    p.advance(ms(1));
    assert!(p.client(c).closed);
    assert_eq!(p.recv_text(c), [r#"44{"message":"no"}"#, "1"]);
    p.assert_empty();
}

#[test]
fn an_unsettled_request_does_not_stop_the_timeout_and_dies_with_the_client() {
    let mut p = SioPair::new();
    p.auto_accept = false;
    // A v4-protocol client's implicit join of `/` is a request like any other.
    let c = p.open(3, Kind::Ws);
    let Some(Event::Connect(req)) = p.events.pop_front() else {
        panic!("the implicit request");
    };
    assert_eq!(p.server.pending_connect_count(), 1);
    p.advance(ms(1000));
    assert!(p.client(c).closed);
    assert_eq!(p.server.pending_connect_count(), 0);
    assert_eq!(
        p.server.accept(req.id, p.now),
        Err(SioError::UnknownConnect(req.id))
    );
    p.assert_empty();
}

#[test]
fn a_pending_request_is_dropped_when_its_client_leaves() {
    let mut p = SioPair::new();
    p.auto_accept = false;
    let c = p.open(4, Kind::Polling);
    p.send(c, "0");
    let Some(Event::Connect(req)) = p.events.pop_front() else {
        panic!("a request");
    };
    p.send_raw(c, "1");
    assert_eq!(p.server.pending_connect_count(), 0);
    assert_eq!(
        p.server.accept(req.id, p.now),
        Err(SioError::UnknownConnect(req.id))
    );
    assert!(p.take_events().is_empty());
    p.assert_empty();
}

// ---- events ----

#[test]
fn an_event_reaches_the_application_with_its_arguments_verbatim() {
    let mut p = SioPair::new();
    let (c, s) = joined(&mut p, Kind::Ws);
    p.send(c, r#"2["message",1,"2",{"3":[true]}]"#);
    let Event::Event {
        socket,
        nsp,
        name,
        args,
        attachments,
        ack,
    } = take_event(&mut p)
    else {
        panic!("an event");
    };
    assert_eq!(socket, s);
    assert_eq!(&*nsp, "/");
    assert_eq!(name, "message");
    assert_eq!(args.as_str(), r#"[1,"2",{"3":[true]}]"#);
    assert!(attachments.is_empty());
    assert!(ack.is_none());
    // Key order is preserved, whatever it is.
    p.send(c, r#"2["o",{"b":1,"a":2}]"#);
    assert_eq!(shown(&mut p), [format!(r#"event {s} o [{{"b":1,"a":2}}]"#)]);
    assert!(p.recv(c).is_empty(), "no reply");
}

#[test]
fn an_event_with_an_ack_id_is_answered_once() {
    let mut p = SioPair::new();
    let (c, s) = joined(&mut p, Kind::Polling);
    p.send(c, r#"2456["message-with-ack",1,"2",{"3":[false]}]"#);
    let Event::Event {
        ack: Some(token),
        args,
        ..
    } = take_event(&mut p)
    else {
        panic!("an event with an ack");
    };
    assert_eq!(token.socket(), s);
    assert_eq!(token.id(), 456);
    p.server.ack(token, args.as_str(), vec![], p.now).unwrap();
    p.drive();
    assert_eq!(
        p.last_poll(c),
        (200, r#"43456[1,"2",{"3":[false]}]"#.to_owned())
    );
    assert_eq!(p.recv_text(c), [r#"43456[1,"2",{"3":[false]}]"#]);
}

#[test]
fn a_binary_event_over_polling_and_the_binary_reply() {
    let mut p = SioPair::new();
    let c = p.open(4, Kind::Polling);
    // As in the suite: the GET comes after the emit, so it takes the whole packet.
    p.client_mut(c).auto_poll = false;
    let s = p.join(c, "/", None);
    let status = p.post_raw(
        c,
        Bytes::from_static(b"451-[\"message\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID"),
    );
    assert_eq!(status, 200);
    let Event::Event {
        socket,
        name,
        args,
        attachments,
        ..
    } = take_event(&mut p)
    else {
        panic!("an event");
    };
    assert_eq!((socket, name.as_str()), (s, "message"));
    assert_eq!(args.as_str(), r#"[{"_placeholder":true,"num":0}]"#);
    assert_eq!(attachments, [Bytes::from_static(&[1, 2, 3])]);
    p.server
        .emit(
            s,
            "message-back",
            args.as_str(),
            attachments.clone(),
            false,
            p.now,
        )
        .unwrap();
    p.drive();
    p.poll(c);
    assert_eq!(
        p.last_poll(c),
        (
            200,
            "451-[\"message-back\",{\"_placeholder\":true,\"num\":0}]\x1ebAQID".to_owned()
        )
    );
    // A GET parked when the packet is sent takes the header alone (as the reference's
    // packet-by-packet writes do); the attachment follows in the next one.
    p.poll(c);
    p.server
        .emit(s, "again", "[]", attachments, false, p.now)
        .unwrap();
    p.drive();
    assert_eq!(p.last_poll(c).1, "451-[\"again\"]");
    p.poll(c);
    assert_eq!(p.last_poll(c).1, "bAQID");
}

#[test]
fn a_binary_event_over_websocket_and_the_binary_reply() {
    let mut p = SioPair::new();
    let (c, s) = joined(&mut p, Kind::Ws);
    let header = r#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
    p.send(c, header);
    assert!(p.take_events().is_empty(), "waits for its attachments");
    p.send_eio(
        c,
        &[volley_core::engine::Packet::Message(
            volley_core::engine::Message::Binary(Bytes::from_static(&[1, 2, 3])),
        )],
    );
    assert!(p.take_events().is_empty());
    p.send_eio(
        c,
        &[volley_core::engine::Packet::Message(
            volley_core::engine::Message::Binary(Bytes::from_static(&[4, 5, 6])),
        )],
    );
    let Event::Event {
        args, attachments, ..
    } = take_event(&mut p)
    else {
        panic!("an event");
    };
    assert_eq!(
        attachments,
        [
            Bytes::from_static(&[1, 2, 3]),
            Bytes::from_static(&[4, 5, 6])
        ]
    );
    p.server
        .emit(s, "message-back", args.as_str(), attachments, false, p.now)
        .unwrap();
    p.drive();
    assert_eq!(
        p.recv(c),
        [
            Frame::Text(
                r#"452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
                    .to_owned()
            ),
            Frame::Binary(vec![1, 2, 3]),
            Frame::Binary(vec![4, 5, 6]),
        ]
    );
}

#[test]
fn a_binary_event_with_an_ack_gets_a_binary_ack() {
    let mut p = SioPair::new();
    let (c, _) = joined(&mut p, Kind::Ws);
    p.send_bin(
        c,
        r#"52-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        &[&[1, 2, 3], &[4, 5, 6]],
    );
    let Event::Event {
        ack: Some(token),
        args,
        attachments,
        ..
    } = take_event(&mut p)
    else {
        panic!("an event with an ack");
    };
    assert_eq!(token.id(), 789);
    p.server
        .ack(token, args.as_str(), attachments, p.now)
        .unwrap();
    p.drive();
    assert_eq!(
        p.recv_text(c),
        [
            r#"462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
            "<bin 1,2,3>",
            "<bin 4,5,6>"
        ]
    );
}

#[test]
fn events_in_a_namespace_carry_its_name() {
    let mut p = SioPair::new();
    p.server.add_namespace("/custom");
    let c = p.open(4, Kind::Ws);
    let root = p.join(c, "/", None);
    let custom = p.join(c, "/custom", None);
    assert_ne!(root, custom);
    p.send(c, r#"2/custom,["ev",1]"#);
    let Event::Event { socket, nsp, .. } = take_event(&mut p) else {
        panic!("an event");
    };
    assert_eq!((socket, &*nsp), (custom, "/custom"));
    p.server
        .emit(custom, "hello", r#"["world"]"#, vec![], false, p.now)
        .unwrap();
    p.server
        .emit(root, "hello", "[]", vec![], false, p.now)
        .unwrap();
    p.drive();
    assert_eq!(
        p.recv_text(c),
        [r#"42/custom,["hello","world"]"#, r#"42["hello"]"#]
    );
}

#[test]
fn attachments_namespace_and_ack_id_combined() {
    let mut p = SioPair::new();
    p.server.add_namespace("/admin");
    let c = p.open(4, Kind::Polling);
    p.client_mut(c).auto_poll = false;
    let admin = p.join(c, "/admin", None);
    p.send_bin(
        c,
        r#"52-/admin,789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        &[&[1], &[2]],
    );
    let Event::Event {
        socket,
        ack: Some(token),
        args,
        attachments,
        ..
    } = take_event(&mut p)
    else {
        panic!("an event with an ack");
    };
    assert_eq!((socket, token.id(), attachments.len()), (admin, 789, 2));
    p.server
        .ack(token, args.as_str(), attachments, p.now)
        .unwrap();
    p.drive();
    p.poll(c);
    assert_eq!(
        p.last_poll(c).1,
        "462-/admin,789[{\"_placeholder\":true,\"num\":0},{\"_placeholder\":true,\"num\":1}]\x1ebAQ==\x1ebAg=="
    );
}

// ---- server-to-client acks ----

#[test]
fn emit_with_ack_and_the_clients_answer() {
    let mut p = SioPair::new();
    let (c, s) = joined(&mut p, Kind::Ws);
    let id = p
        .server
        .emit_with_ack(s, "ev", "[1]", vec![], None, p.now)
        .unwrap();
    assert_eq!(id, AckId(0));
    p.drive();
    assert_eq!(p.recv_text(c), [r#"420["ev",1]"#]);
    assert_eq!(p.server.pending_ack_count(), 1);
    assert_eq!(p.server.timer_count(), 0, "no deadline without a timeout");
    p.send(c, r#"30["ok",{"x":[1]}]"#);
    assert_eq!(shown(&mut p), [format!(r#"ack {s} 0 ["ok",{{"x":[1]}}]"#)]);
    assert_eq!(p.server.pending_ack_count(), 0);
    // The next id follows.
    let id = p
        .server
        .emit_with_ack(s, "ev", "[]", vec![], None, p.now)
        .unwrap();
    assert_eq!(id, AckId(1));
}

#[test]
fn a_binary_ack_from_the_client() {
    let mut p = SioPair::new();
    let (c, s) = joined(&mut p, Kind::Polling);
    p.server
        .emit_with_ack(s, "file?", "[]", vec![], None, p.now)
        .unwrap();
    p.drive();
    p.send_bin(c, r#"61-0[{"_placeholder":true,"num":0}]"#, &[&[7, 7]]);
    let Event::Ack {
        socket,
        id,
        args,
        attachments,
    } = take_event(&mut p)
    else {
        panic!("an ack");
    };
    assert_eq!((socket, id), (s, AckId(0)));
    assert_eq!(args.as_str(), r#"[{"_placeholder":true,"num":0}]"#);
    assert_eq!(attachments, [Bytes::from_static(&[7, 7])]);
}

#[test]
fn an_unanswered_ack_times_out_and_a_late_answer_is_ignored() {
    let mut p = SioPair::new();
    let (c, s) = joined(&mut p, Kind::Ws);
    let id = p
        .server
        .emit_with_ack(s, "ev", "[]", vec![], Some(ms(500)), p.now)
        .unwrap();
    assert_eq!(p.server.timer_count(), 1);
    p.advance(ms(499));
    assert!(p.take_events().is_empty());
    p.advance(ms(1));
    assert_eq!(shown(&mut p), [format!("ack-failed {s} {} Timeout", id.0)]);
    assert_eq!(p.server.pending_ack_count(), 0);
    assert_eq!(p.server.timer_count(), 0);
    p.send(c, &format!("3{}[\"late\"]", id.0));
    assert!(p.take_events().is_empty());
    assert!(p.server.contains(s), "an unknown ack id is not an error");
}

#[test]
fn pending_acks_fail_when_the_socket_leaves() {
    let mut p = SioPair::new();
    let (c, s) = joined(&mut p, Kind::Ws);
    p.server
        .emit_with_ack(s, "a", "[]", vec![], Some(ms(500)), p.now)
        .unwrap();
    p.server
        .emit_with_ack(s, "b", "[]", vec![], None, p.now)
        .unwrap();
    p.send_raw(c, "1");
    assert_eq!(
        shown(&mut p),
        [
            format!("disconnecting {s} transport close [\"{s}\"]"),
            format!("ack-failed {s} 0 Disconnected"),
            format!("ack-failed {s} 1 Disconnected"),
            format!("disconnect {s} transport close"),
        ]
    );
    assert_eq!(p.server.timer_count(), 0);
    p.assert_empty();
}

#[test]
fn unknown_and_repeated_ack_ids_are_ignored() {
    let mut p = SioPair::new();
    let (c, s) = joined(&mut p, Kind::Ws);
    p.send(c, r#"399["x"]"#);
    assert!(p.take_events().is_empty());
    p.server
        .emit_with_ack(s, "ev", "[]", vec![], None, p.now)
        .unwrap();
    p.send(c, "30[1]");
    p.send(c, "30[2]");
    assert_eq!(shown(&mut p), [format!("ack {s} 0 [1]")]);
    assert!(p.server.contains(s));
}

#[test]
fn ack_ids_are_numbered_per_namespace() {
    let mut p = SioPair::new();
    p.server.add_namespace("/custom");
    let (a, sa) = joined(&mut p, Kind::Ws);
    let (b, sb) = joined(&mut p, Kind::Ws);
    let sc = p.join(b, "/custom", None);
    let now = p.now;
    assert_eq!(
        p.server.emit_with_ack(sa, "e", "[]", vec![], None, now),
        Ok(AckId(0))
    );
    assert_eq!(
        p.server.emit_with_ack(sb, "e", "[]", vec![], None, now),
        Ok(AckId(1))
    );
    assert_eq!(
        p.server.emit_with_ack(sc, "e", "[]", vec![], None, now),
        Ok(AckId(0))
    );
    p.drive();
    assert_eq!(p.recv_text(a), [r#"420["e"]"#]);
    assert_eq!(p.recv_text(b), [r#"421["e"]"#, r#"42/custom,0["e"]"#]);
    // An answer for the other namespace's id 0 does not settle this one.
    p.send(b, "3/custom,0[]");
    assert_eq!(shown(&mut p), [format!("ack {sc} 0 []")]);
    assert_eq!(p.server.pending_ack_count(), 2);
}

// ---- what closes the whole connection ----

#[test]
fn a_packet_for_a_namespace_not_joined_closes_the_connection_gracefully() {
    let mut p = SioPair::new();
    p.server.add_namespace("/custom");
    let c = p.open(4, Kind::Polling);
    p.client_mut(c).auto_poll = false;
    let s = p.join(c, "/", None);
    p.send(c, r#"2/custom,["x"]"#);
    assert_eq!(
        shown(&mut p),
        [
            format!("disconnecting {s} forced server close [\"{s}\"]"),
            format!("disconnect {s} forced server close"),
        ]
    );
    assert!(!p.server.contains(s));
    // The Socket.IO layer's close is graceful: the next GET gets noop + close.
    p.poll(c);
    assert_eq!(p.last_poll(c), (200, "6\x1e1".to_owned()));
    p.client_mut(c).closed = false;
    p.poll(c);
    assert_eq!(p.last_poll(c).0, 400);
    p.assert_empty();
}

#[test]
fn a_second_connect_to_a_joined_namespace_closes_the_connection() {
    let mut p = SioPair::new();
    let (c, s) = joined(&mut p, Kind::Ws);
    p.send(c, "0");
    assert!(p.client(c).closed);
    assert_eq!(p.recv_text(c), ["1"]);
    assert_eq!(
        shown(&mut p),
        [
            format!("disconnecting {s} forced server close [\"{s}\"]"),
            format!("disconnect {s} forced server close"),
        ]
    );
    p.assert_empty();
}

#[test]
fn a_connect_while_one_is_pending_closes_the_connection() {
    let mut p = SioPair::new();
    p.auto_accept = false;
    let c = p.open(4, Kind::Ws);
    p.send(c, "0");
    p.send(c, "0");
    assert!(p.client(c).closed);
    assert_eq!(p.server.pending_connect_count(), 0);
    p.assert_empty();
}

#[test]
fn a_disconnect_or_connect_error_for_no_socket_closes_the_connection() {
    for packet in ["1/custom,", r#"4{"message":"x"}"#, r#"3/custom,1[]"#] {
        let mut p = SioPair::new();
        p.server.add_namespace("/custom");
        let (c, s) = joined(&mut p, Kind::Ws);
        p.send(c, packet);
        assert!(p.client(c).closed, "{packet}");
        assert_eq!(
            shown(&mut p).last().map(String::as_str),
            Some(format!("disconnect {s} forced server close").as_str()),
            "{packet}"
        );
        p.assert_empty();
    }
}

#[test]
fn bad_packets_close_the_connection_with_parse_error() {
    for packet in [
        "abc",
        "2{}",
        r#"2abc["message-with-ack",1,"2",{"3":[false]}]"#,
        r#"2["connect"]"#,
        r#"51-["x",{"_placeholder":true,"num":1}]"#,
        "",
    ] {
        for kind in [Kind::Ws, Kind::Polling] {
            let mut p = SioPair::new();
            let (c, s) = joined(&mut p, kind);
            p.send(c, packet);
            assert_eq!(
                shown(&mut p),
                [
                    format!("disconnecting {s} parse error [\"{s}\"]"),
                    format!("disconnect {s} parse error"),
                ],
                "{packet:?} over {kind:?}"
            );
            assert!(p.client(c).closed, "{packet:?} over {kind:?}");
            assert_eq!(p.recv_text(c), ["1"], "{packet:?} over {kind:?}");
            p.assert_empty();
        }
    }
}

#[test]
fn an_attachment_nobody_announced_is_a_parse_error() {
    let mut p = SioPair::new();
    let (c, s) = joined(&mut p, Kind::Ws);
    p.send_eio(
        c,
        &[volley_core::engine::Packet::Message(
            volley_core::engine::Message::Binary(Bytes::from_static(&[1])),
        )],
    );
    assert_eq!(
        shown(&mut p).last().cloned(),
        Some(format!("disconnect {s} parse error"))
    );
    // Text while attachments are awaited is one too.
    let (c, s) = joined(&mut p, Kind::Ws);
    p.send(c, r#"51-["x",{"_placeholder":true,"num":0}]"#);
    p.send(c, r#"2["x"]"#);
    assert_eq!(
        shown(&mut p).last().cloned(),
        Some(format!("disconnect {s} parse error"))
    );
    p.assert_empty();
}

#[test]
fn a_bad_packet_over_polling_without_a_parked_get_closes_gracefully() {
    let mut p = SioPair::new();
    let c = p.open(4, Kind::Polling);
    p.client_mut(c).auto_poll = false;
    let s = p.join(c, "/", None);
    p.send(c, "2{}");
    assert!(!p.server.contains(s), "the socket leaves at once");
    assert_eq!(p.server.client_count(), 1, "until the engine finishes");
    // Anything more from the client is ignored meanwhile.
    p.send(c, r#"2["x"]"#);
    p.poll(c);
    assert_eq!(p.last_poll(c), (200, "6\x1e1".to_owned()));
    let events = shown(&mut p);
    assert_eq!(events.len(), 2, "{events:?}");
    p.assert_empty();
}

// ---- disconnect ----

#[test]
fn a_client_leaves_a_namespace_and_the_session_stays() {
    let mut p = SioPair::new();
    let (c, s) = joined(&mut p, Kind::Polling);
    p.server.join(s, Room::from("r")).unwrap();
    p.send(c, "1");
    let mut expected_rooms = [s.as_str().to_owned(), "r".to_owned()];
    expected_rooms.sort();
    assert_eq!(
        shown(&mut p),
        [
            format!("disconnecting {s} client namespace disconnect {expected_rooms:?}"),
            format!("disconnect {s} client namespace disconnect"),
        ]
    );
    assert!(p.recv(c).is_empty(), "no reply");
    assert_eq!(p.server.room_count("/"), 0);
    // Pings go on without any namespace joined, and the connect timeout is not re-armed.
    p.advance(ms(3000));
    assert!(p.server.engine().contains(p.sid(c)));
    assert_eq!(p.server.client_count(), 1);
    assert!(p.client(c).polls.iter().filter(|(_, b)| b == b"2").count() >= 9);
    // It may join again.
    let again = p.join(c, "/", None);
    assert_ne!(again, s);
}

#[test]
fn a_client_leaves_a_custom_namespace_with_or_without_comma() {
    for leave in ["1/custom,", "1/custom"] {
        let mut p = SioPair::new();
        p.server.add_namespace("/custom");
        let c = p.open(4, Kind::Ws);
        let root = p.join(c, "/", None);
        let custom = p.join(c, "/custom", None);
        p.send(c, leave);
        p.send(c, r#"2["message","message to main namespace"]"#);
        assert_eq!(
            shown(&mut p),
            [
                format!("disconnecting {custom} client namespace disconnect [\"{custom}\"]"),
                format!("disconnect {custom} client namespace disconnect"),
                format!(r#"event {root} message ["message to main namespace"]"#),
            ]
        );
        assert!(p.recv(c).is_empty());
    }
}

#[test]
fn the_server_removes_a_socket_from_its_namespace() {
    let mut p = SioPair::new();
    p.server.add_namespace("/custom");
    let c = p.open(4, Kind::Ws);
    let root = p.join(c, "/", None);
    let custom = p.join(c, "/custom", None);
    p.server.disconnect(custom, false, p.now).unwrap();
    p.drive();
    assert_eq!(p.recv_text(c), ["41/custom,"]);
    assert_eq!(
        shown(&mut p),
        [
            format!("disconnecting {custom} server namespace disconnect [\"{custom}\"]"),
            format!("disconnect {custom} server namespace disconnect"),
        ]
    );
    assert!(p.server.contains(root));
    assert_eq!(
        p.server.disconnect(custom, false, p.now),
        Err(SioError::UnknownSocket(custom))
    );
    p.server.disconnect(root, false, p.now).unwrap();
    p.drive();
    assert_eq!(p.recv_text(c), ["41"]);
    assert!(p.server.engine().contains(p.sid(c)));
}

#[test]
fn disconnect_with_close_tells_every_socket_then_closes() {
    let mut p = SioPair::new();
    p.server.add_namespace("/custom");
    let c = p.open(4, Kind::Ws);
    let root = p.join(c, "/", None);
    let custom = p.join(c, "/custom", None);
    let (other, other_socket) = joined(&mut p, Kind::Ws);
    p.server.disconnect(custom, true, p.now).unwrap();
    p.drive();
    // As the reference's `socket.disconnect(true)`: a DISCONNECT per namespace, then close.
    assert_eq!(p.recv_text(c), ["41", "41/custom,", "1"]);
    assert!(p.client(c).closed);
    assert_eq!(
        shown(&mut p),
        [
            format!("disconnecting {root} server namespace disconnect [\"{root}\"]"),
            format!("disconnect {root} server namespace disconnect"),
            format!("disconnecting {custom} server namespace disconnect [\"{custom}\"]"),
            format!("disconnect {custom} server namespace disconnect"),
        ]
    );
    assert!(p.server.contains(other_socket));
    assert!(!p.client(other).closed);
    assert_eq!(p.server.client_count(), 1);
}

#[test]
fn transport_endings_are_reported_with_their_reasons() {
    type Ending = fn(&mut SioPair, C);
    let cases: [(&str, Kind, Ending); 6] = [
        ("transport close", Kind::Ws, |p, c| {
            p.drop_transport(c, false)
        }),
        ("transport error", Kind::Ws, |p, c| {
            p.drop_transport(c, true)
        }),
        ("transport close", Kind::Ws, |p, c| p.send_raw(c, "1")),
        ("transport close", Kind::Polling, |p, c| p.send_raw(c, "1")),
        ("transport error", Kind::Polling, |p, c| {
            p.drop_transport(c, true)
        }),
        ("ping timeout", Kind::Polling, |p, c| {
            p.client_mut(c).auto_pong = false;
            p.advance(ms(500));
        }),
    ];
    for (reason, kind, end) in cases {
        let mut p = SioPair::new();
        p.server.add_namespace("/custom");
        let c = p.open(4, kind);
        let root = p.join(c, "/", None);
        let custom = p.join(c, "/custom", None);
        end(&mut p, c);
        assert_eq!(
            shown(&mut p),
            [
                format!("disconnecting {root} {reason} [\"{root}\"]"),
                format!("disconnect {root} {reason}"),
                format!("disconnecting {custom} {reason} [\"{custom}\"]"),
                format!("disconnect {custom} {reason}"),
            ],
            "{reason} over {kind:?}"
        );
        p.assert_empty();
    }
}

#[test]
fn close_all_says_server_shutting_down() {
    let mut p = SioPair::new();
    p.server.add_namespace("/custom");
    let (a, sa) = joined(&mut p, Kind::Ws);
    let sa2 = p.join(a, "/custom", None);
    let (b, sb) = joined(&mut p, Kind::Polling);
    let v3 = p.open(3, Kind::Ws);
    let s3 = p.socket_of(v3, "/").unwrap();
    p.recv(v3);
    let idle = p.open(4, Kind::Ws);
    p.server.close_all(p.now);
    p.drive();
    let mut events = shown(&mut p);
    events.sort();
    let mut expected = Vec::new();
    for s in [sa, sa2, sb, s3] {
        expected.push(format!("disconnect {s} server shutting down"));
        expected.push(format!("disconnecting {s} server shutting down [\"{s}\"]"));
    }
    expected.sort();
    assert_eq!(events, expected);
    for c in [a, b, v3, idle] {
        assert_eq!(p.recv_text(c), ["1"], "{c:?}");
    }
    p.assert_empty();
}

// ---- rooms and broadcasts ----

#[test]
fn rooms_join_and_leave() {
    let mut p = SioPair::new();
    let (_, s) = joined(&mut p, Kind::Ws);
    let (_, t) = joined(&mut p, Kind::Ws);
    assert_eq!(p.server.rooms_of(s), [Room::from(s)]);
    assert_eq!(p.server.room_count("/"), 2);
    p.server.join(s, Room::from("r")).unwrap();
    p.server.join(s, Room::from("r")).unwrap();
    p.server.join(t, Room::from("r")).unwrap();
    assert_eq!(p.server.room_count("/"), 3);
    assert_eq!(p.server.select("/", &to(&["r"])).len(), 2);
    p.server.leave(s, &Room::from("r")).unwrap();
    p.server.leave(s, &Room::from("never")).unwrap();
    assert_eq!(p.server.select("/", &to(&["r"])), [t]);
    p.server.leave(t, &Room::from("r")).unwrap();
    assert_eq!(p.server.room_count("/"), 2, "an empty room disappears");
    assert!(!p.server.rooms("/").contains(&Room::from("r")));
    let gone = SocketId::new("nobody").unwrap();
    assert_eq!(
        p.server.join(gone, Room::from("r")),
        Err(SioError::UnknownSocket(gone))
    );
}

/// Four sockets: a in r1, b in r1 and r2, c in r2, d in none.
fn four(p: &mut SioPair) -> [(C, SocketId); 4] {
    let all = [
        joined(p, Kind::Ws),
        joined(p, Kind::Polling),
        joined(p, Kind::Ws),
        joined(p, Kind::Polling),
    ];
    p.server.join(all[0].1, Room::from("r1")).unwrap();
    p.server.join(all[1].1, Room::from("r1")).unwrap();
    p.server.join(all[1].1, Room::from("r2")).unwrap();
    p.server.join(all[2].1, Room::from("r2")).unwrap();
    all
}

fn received(p: &mut SioPair, clients: &[(C, SocketId)]) -> Vec<usize> {
    clients.iter().map(|(c, _)| p.recv(*c).len()).collect()
}

#[test]
fn a_broadcast_reaches_everyone_once() {
    let mut p = SioPair::new();
    let all = four(&mut p);
    let n = p
        .server
        .broadcast(
            "/",
            &BroadcastOptions::default(),
            "news",
            "[1]",
            vec![],
            p.now,
        )
        .unwrap();
    p.drive();
    assert_eq!(n, 4);
    for (c, _) in all {
        assert_eq!(p.recv_text(c), [r#"42["news",1]"#]);
    }
}

#[test]
fn a_broadcast_to_rooms_is_their_union_without_duplicates() {
    let mut p = SioPair::new();
    let all = four(&mut p);
    let n = p
        .server
        .broadcast("/", &to(&["r1", "r2", "r1"]), "x", "[]", vec![], p.now)
        .unwrap();
    p.drive();
    assert_eq!(n, 3);
    assert_eq!(received(&mut p, &all), [1, 1, 1, 0]);
    // A socket's own room addresses it alone.
    let own = all[3].1;
    p.server
        .broadcast("/", &to(&[own.as_str()]), "x", "[]", vec![], p.now)
        .unwrap();
    p.drive();
    assert_eq!(received(&mut p, &all), [0, 0, 0, 1]);
}

#[test]
fn a_broadcast_skips_the_except_rooms() {
    let mut p = SioPair::new();
    let all = four(&mut p);
    let except = |rooms_in: &[&str], except: &[&str]| BroadcastOptions {
        rooms: rooms(rooms_in),
        except: rooms(except),
        ..BroadcastOptions::default()
    };
    p.server
        .broadcast("/", &except(&[], &["r1"]), "x", "[]", vec![], p.now)
        .unwrap();
    p.drive();
    assert_eq!(received(&mut p, &all), [0, 0, 1, 1]);
    p.server
        .broadcast("/", &except(&["r2"], &["r1"]), "x", "[]", vec![], p.now)
        .unwrap();
    p.drive();
    assert_eq!(received(&mut p, &all), [0, 0, 1, 0]);
    // `socket.broadcast`: everyone but the sender.
    let sender = all[1].1;
    p.server
        .broadcast(
            "/",
            &except(&[], &[sender.as_str()]),
            "x",
            "[]",
            vec![],
            p.now,
        )
        .unwrap();
    p.drive();
    assert_eq!(received(&mut p, &all), [1, 0, 1, 1]);
}

#[test]
fn a_volatile_broadcast_skips_sockets_that_cannot_take_it_now() {
    let mut p = SioPair::new();
    let (ws, _) = joined(&mut p, Kind::Ws);
    let (parked, _) = joined(&mut p, Kind::Polling);
    let idle = p.open(4, Kind::Polling);
    p.client_mut(idle).auto_poll = false;
    let idle_socket = p.join(idle, "/", None);
    assert!(!p.server.is_writable(idle_socket));
    let volatile = BroadcastOptions {
        volatile: true,
        ..BroadcastOptions::default()
    };
    let n = p
        .server
        .broadcast("/", &volatile, "tick", "[]", vec![], p.now)
        .unwrap();
    p.drive();
    assert_eq!(n, 2);
    assert_eq!(p.recv_text(ws), [r#"42["tick"]"#]);
    assert_eq!(p.recv_text(parked), [r#"42["tick"]"#]);
    assert_eq!(
        p.server
            .emit(idle_socket, "tick", "[]", vec![], true, p.now),
        Ok(false)
    );
    p.poll(idle);
    p.advance(ms(300));
    assert!(
        p.recv_text(idle).iter().all(|f| !f.contains("tick")),
        "dropped, not queued"
    );
    // A WebSocket whose writes are not drained is not writable either.
    p.auto_drain = false;
    p.server
        .emit(
            p.socket_of(ws, "/").unwrap(),
            "a",
            "[]",
            vec![],
            false,
            p.now,
        )
        .unwrap();
    p.drive();
    assert_eq!(p.recv_text(ws), [r#"42["a"]"#]);
    let n = p
        .server
        .broadcast(
            "/",
            &to(&[p.socket_of(ws, "/").unwrap().as_str()]).volatile(),
            "b",
            "[]",
            vec![],
            p.now,
        )
        .unwrap();
    assert_eq!(n, 0);
}

trait Volatile {
    fn volatile(self) -> Self;
}

impl Volatile for BroadcastOptions {
    fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }
}

#[test]
fn a_broadcast_is_encoded_once_for_every_client() {
    let mut p = SioPair::new();
    let a = joined(&mut p, Kind::Ws).0;
    let b = joined(&mut p, Kind::Polling).0;
    let v3 = p.open(3, Kind::Ws);
    p.recv(v3);
    p.server
        .broadcast(
            "/",
            &BroadcastOptions::default(),
            "photo",
            r#"[{"_placeholder":true,"num":0},"é\n"]"#,
            vec![Bytes::from_static(&[0xff, 0])],
            p.now,
        )
        .unwrap();
    p.drive();
    let expected = [
        Frame::Text(r#"451-["photo",{"_placeholder":true,"num":0},"é\n"]"#.to_owned()),
        Frame::Binary(vec![0xff, 0]),
    ];
    for c in [a, b, v3] {
        assert_eq!(p.recv(c), expected, "{c:?}");
    }
}

#[test]
fn a_broadcast_in_a_namespace_stays_in_it() {
    let mut p = SioPair::new();
    p.server.add_namespace("/custom");
    let (a, _) = joined(&mut p, Kind::Ws);
    let b = p.open(4, Kind::Ws);
    p.join(b, "/custom", None);
    let n = p
        .server
        .broadcast(
            "/custom",
            &BroadcastOptions::default(),
            "x",
            "[]",
            vec![],
            p.now,
        )
        .unwrap();
    p.drive();
    assert_eq!(n, 1);
    assert!(p.recv(a).is_empty());
    assert_eq!(p.recv_text(b), [r#"42/custom,["x"]"#]);
    assert_eq!(
        p.server.broadcast(
            "/nope",
            &BroadcastOptions::default(),
            "x",
            "[]",
            vec![],
            p.now
        ),
        Err(SioError::UnknownNamespace("/nope".to_owned()))
    );
}

#[test]
fn a_broadcast_with_ack_collects_answers_and_times_out_the_silent() {
    let mut p = SioPair::new();
    let all = four(&mut p);
    let (id, sent) = p
        .server
        .broadcast_with_ack(
            "/",
            &to(&["r1", "r2"]),
            "q",
            "[]",
            vec![],
            Some(ms(1000)),
            p.now,
        )
        .unwrap();
    p.drive();
    assert_eq!(sent.len(), 3);
    assert_eq!(p.server.pending_ack_count(), 3);
    for (c, _) in &all[..3] {
        assert_eq!(p.recv_text(*c), [format!("42{}[\"q\"]", id.0)]);
    }
    p.send(all[0].0, &format!("3{}[\"a\"]", id.0));
    p.send(all[2].0, &format!("3{}[\"c\"]", id.0));
    p.advance(ms(1000));
    let (sa, sb, sc) = (all[0].1, all[1].1, all[2].1);
    assert_eq!(
        shown(&mut p),
        [
            format!(r#"ack {sa} {} ["a"]"#, id.0),
            format!(r#"ack {sc} {} ["c"]"#, id.0),
            format!("ack-failed {sb} {} Timeout", id.0),
        ]
    );
    assert_eq!(p.server.pending_ack_count(), 0);
    assert_eq!(p.server.timer_count(), 0);
}

#[test]
fn sockets_join_leave_and_disconnect_by_selector() {
    let mut p = SioPair::new();
    let all = four(&mut p);
    let (sa, sb, sc, sd) = (all[0].1, all[1].1, all[2].1, all[3].1);
    p.server
        .sockets_join("/", &to(&["r2"]), &rooms(&["x", "y"]));
    assert_eq!(p.server.select("/", &to(&["x"])).len(), 2);
    let mut xy = p.server.select("/", &to(&["y"]));
    xy.sort();
    let mut expected = vec![sb, sc];
    expected.sort();
    assert_eq!(xy, expected);
    p.server.sockets_leave(
        "/",
        &BroadcastOptions {
            except: rooms(&["r1"]),
            ..BroadcastOptions::default()
        },
        &rooms(&["x"]),
    );
    assert_eq!(p.server.select("/", &to(&["x"])), [sb]);
    p.server
        .sockets_join("/", &BroadcastOptions::default(), &rooms(&["all"]));
    assert_eq!(p.server.select("/", &to(&["all"])).len(), 4);
    p.server.disconnect_sockets("/", &to(&["r1"]), false, p.now);
    p.drive();
    assert_eq!(p.recv_text(all[0].0), ["41"]);
    assert_eq!(p.recv_text(all[1].0), ["41"]);
    assert!(!p.server.contains(sa) && !p.server.contains(sb));
    assert!(p.server.engine().contains(p.sid(all[0].0)));
    p.server
        .disconnect_sockets("/", &BroadcastOptions::default(), true, p.now);
    p.drive();
    assert!(!p.server.contains(sc) && !p.server.contains(sd));
    assert_eq!(p.recv_text(all[2].0), ["41", "1"]);
    assert_eq!(
        p.server.engine().session_count(),
        2,
        "the first two stay open"
    );
}

// ---- dynamic namespaces ----

#[test]
fn a_dynamic_namespace_with_cleanup_lives_while_it_has_sockets() {
    let mut p = SioPair::new();
    p.server
        .add_dynamic_namespace(|n| n.starts_with("/dyn-"), true);
    let c = p.open(4, Kind::Ws);
    let s = p.join(c, "/dyn-1", None);
    assert!(p.server.namespaces().any(|n| n == "/dyn-1"));
    let d = joined(&mut p, Kind::Ws).0;
    let t = p.join(d, "/dyn-1", None);
    p.send(c, "1/dyn-1,");
    assert!(p.server.namespaces().any(|n| n == "/dyn-1"), "one is left");
    p.server.disconnect(t, false, p.now).unwrap();
    p.drive();
    assert!(!p.server.namespaces().any(|n| n == "/dyn-1"));
    assert!(!p.server.contains(s));
    // A name the matcher refuses is an invalid namespace.
    p.send(c, "0/other");
    assert_eq!(
        p.recv_text(c),
        [r#"44/other,{"message":"Invalid namespace"}"#]
    );
    // A refused request that leaves it empty removes it; so does a client leaving mid-request.
    p.take_events();
    p.auto_accept = false;
    p.send(c, "0/dyn-2,");
    assert!(
        p.server.namespaces().any(|n| n == "/dyn-2"),
        "created on the request"
    );
    let Some(Event::Connect(req)) = p.events.pop_front() else {
        panic!("a request");
    };
    p.server.reject(req.id, "no", None, p.now).unwrap();
    p.drive();
    assert!(!p.server.namespaces().any(|n| n == "/dyn-2"));
    p.send(c, "0/dyn-3,");
    assert!(p.server.namespaces().any(|n| n == "/dyn-3"));
    p.send_raw(c, "1");
    assert!(!p.server.namespaces().any(|n| n == "/dyn-3"));
    assert_eq!(p.server.pending_connect_count(), 0);
}

#[test]
fn a_dynamic_namespace_without_cleanup_stays() {
    let mut p = SioPair::new();
    p.server
        .add_dynamic_namespace(|n| n.starts_with("/keep-"), false);
    p.server
        .add_dynamic_namespace(|n| n.starts_with("/tmp-"), true);
    let c = p.open(4, Kind::Ws);
    let s = p.join(c, "/keep-1", None);
    p.server.disconnect(s, false, p.now).unwrap();
    p.drive();
    assert!(p.server.namespaces().any(|n| n == "/keep-1"));
    // Declaring a dynamic namespace makes it permanent.
    let t = p.join(c, "/tmp-1", None);
    p.server.add_namespace("/tmp-1");
    p.server.disconnect(t, false, p.now).unwrap();
    p.drive();
    assert!(p.server.namespaces().any(|n| n == "/tmp-1"));
}

// ---- upgrade ----

#[test]
fn sockets_survive_an_upgrade() {
    let mut p = SioPair::new();
    let (c, s) = joined(&mut p, Kind::Polling);
    p.upgrade(c);
    p.server
        .emit(s, "after", "[]", vec![], false, p.now)
        .unwrap();
    p.drive();
    assert_eq!(p.recv_text(c), [r#"42["after"]"#]);
    p.send(c, r#"2["up"]"#);
    assert_eq!(shown(&mut p), [format!("event {s} up []")]);
}

// ---- nothing leaks ----

#[test]
fn a_crowd_comes_and_goes_and_nothing_is_left() {
    let mut p = SioPair::with_server(Server::new(config(), [3; 32]));
    p.server.add_namespace("/chat");
    p.server.add_namespace("/admin");
    p.server
        .add_dynamic_namespace(|n| n.starts_with("/room-"), true);
    let mut everyone = Vec::new();
    for i in 0..24 {
        let (eio, kind) = match i % 4 {
            0 => (4, Kind::Polling),
            1 => (4, Kind::Ws),
            2 => (3, Kind::Polling),
            _ => (3, Kind::Ws),
        };
        let c = p.open(eio, kind);
        let mut sockets = Vec::new();
        if eio == 4 {
            sockets.push(p.join(c, "/", Some(r#"{"i":1}"#)));
        } else {
            sockets.push(p.socket_of(c, "/").unwrap());
        }
        if i % 2 == 0 {
            sockets.push(p.join(c, "/chat", None));
        }
        if i % 3 == 0 {
            sockets.push(p.join(c, "/admin", None));
        }
        sockets.push(p.join(c, &format!("/room-{}", i % 5), None));
        for (k, s) in sockets.iter().enumerate() {
            p.server
                .join(*s, Room::from(format!("g{}", (i + k) % 3)))
                .unwrap();
            p.server
                .emit_with_ack(*s, "a", "[]", vec![], Some(ms(5000)), p.now)
                .unwrap();
            p.server
                .emit_with_ack(*s, "b", "[]", vec![], None, p.now)
                .unwrap();
        }
        if i % 4 == 0 {
            p.upgrade(c);
        }
        everyone.push((c, sockets));
    }
    // A client that never joins, and one whose request is never settled.
    let lurker = p.open(4, Kind::Ws);
    p.auto_accept = false;
    let undecided = p.open(4, Kind::Polling);
    p.send(undecided, "0");
    p.auto_accept = true;
    p.server
        .broadcast_with_ack(
            "/chat",
            &to(&["g0", "g1"]),
            "poll",
            "[]",
            vec![],
            Some(ms(200)),
            p.now,
        )
        .unwrap();
    p.drive();
    p.advance(ms(250));
    assert!(p.server.socket_count() > 24);
    assert!(p.server.pending_ack_count() > 24);

    for (i, (c, sockets)) in everyone.iter().enumerate() {
        let c = *c;
        match i % 8 {
            0 => {
                let nsp = p.server.namespace_of(sockets[1]).unwrap().clone();
                if &*nsp == "/" {
                    p.send(c, "1");
                } else {
                    p.send(c, &format!("1{nsp},"));
                }
                p.send_raw(c, "1");
            }
            1 => {
                p.server.disconnect(sockets[0], false, p.now).unwrap();
                p.drive();
                p.drop_transport(c, false);
            }
            2 => {
                p.server.disconnect(sockets[0], true, p.now).unwrap();
                p.drive();
            }
            3 => p.drop_transport(c, true),
            4 => p.send(c, "2{}"),
            5 => p.client_mut(c).auto_pong = false,
            6 => p.send(c, "0/nowhere,"),
            _ => {}
        }
    }
    p.advance(ms(1000));
    p.server.close_all(p.now);
    p.drive();
    p.advance(ms(1000));
    assert!(p.client(lurker).closed);
    let events = p.take_events();
    let disconnects = events
        .iter()
        .filter(|e| matches!(e, Event::Disconnect { .. }))
        .count();
    let disconnecting = events
        .iter()
        .filter(|e| matches!(e, Event::Disconnecting { .. }))
        .count();
    let total: usize = everyone.iter().map(|(_, s)| s.len()).sum();
    assert_eq!((disconnects, disconnecting), (total, total));
    p.assert_empty();
    assert!(
        !p.server.namespaces().any(|n| n.starts_with("/room-")),
        "ephemeral namespaces are gone"
    );
    let reasons: std::collections::HashSet<DisconnectReason> = events
        .iter()
        .filter_map(|e| match e {
            Event::Disconnect { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert!(reasons.len() >= 6, "{reasons:?}");
    let failed = events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::AckFailed {
                    reason: AckFailure::Disconnected,
                    ..
                }
            )
        })
        .count();
    assert!(failed > 0);
}

// ---- slow clients ----

fn with_buffer(overflow: volley_core::engine::OverflowPolicy) -> SioPair {
    let mut cfg = config();
    cfg.engine.max_buffered_packets = 4;
    cfg.engine.overflow = overflow;
    SioPair::with_server(Server::new(cfg, [9; 32]))
}

#[test]
fn a_client_that_does_not_drain_is_closed_as_a_transport_error() {
    let mut p = with_buffer(volley_core::engine::OverflowPolicy::Close);
    let (c, s) = joined(&mut p, Kind::Ws);
    p.auto_drain = false;
    let mut results = Vec::new();
    for i in 0..8 {
        results.push(
            p.server
                .emit(s, "x", &format!("[{i}]"), vec![], false, p.now),
        );
        p.drive();
    }
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 5);
    assert_eq!(results[5], Err(SioError::BufferFull(s)));
    assert_eq!(results[6], Err(SioError::UnknownSocket(s)));
    assert_eq!(
        shown(&mut p),
        [
            format!("disconnecting {s} transport error [\"{s}\"]"),
            format!("disconnect {s} transport error"),
        ]
    );
    assert!(p.client(c).closed);
    p.assert_empty();
}

#[test]
fn with_the_reject_policy_a_full_queue_refuses_and_keeps_the_socket() {
    let mut p = with_buffer(volley_core::engine::OverflowPolicy::Reject);
    let (_, s) = joined(&mut p, Kind::Ws);
    let (_, t) = joined(&mut p, Kind::Ws);
    p.auto_drain = false;
    for _ in 0..5 {
        p.server.emit(s, "x", "[]", vec![], false, p.now).unwrap();
    }
    assert_eq!(
        p.server.emit(s, "x", "[]", vec![], false, p.now),
        Err(SioError::BufferFull(s))
    );
    assert_eq!(
        p.server.emit_with_ack(s, "x", "[]", vec![], None, p.now),
        Err(SioError::BufferFull(s))
    );
    assert_eq!(
        p.server.pending_ack_count(),
        0,
        "no ack awaited for what was not sent"
    );
    // A broadcast goes to whoever can take it, and asks acks only of them.
    let (_, sent) = p
        .server
        .broadcast_with_ack(
            "/",
            &BroadcastOptions::default(),
            "q",
            "[]",
            vec![],
            Some(ms(100)),
            p.now,
        )
        .unwrap();
    assert_eq!(sent, [t]);
    assert_eq!(p.server.pending_ack_count(), 1);
    assert!(p.server.contains(s));
    assert!(p.take_events().is_empty());
}

// ---- protocol 4 over polling, with binary ----

#[test]
fn v4_protocol_polling_carries_binary_both_ways() {
    for extra in ["", "&b64=1"] {
        let mut p = SioPair::new();
        let c = p.open_with(3, Kind::Polling, extra);
        let root = p.socket_of(c, "/").unwrap();
        p.recv(c);
        p.send_bin(c, r#"51-["up",{"_placeholder":true,"num":0}]"#, &[&[1, 2]]);
        assert_eq!(
            shown(&mut p),
            [format!(
                r#"event {root} up [{{"_placeholder":true,"num":0}}] +1"#
            )]
        );
        // Use up the parked GET, so that the next one takes the whole packet.
        p.client_mut(c).auto_poll = false;
        p.server
            .emit(root, "flush", "[]", vec![], false, p.now)
            .unwrap();
        p.drive();
        p.recv(c);
        p.server
            .emit(
                root,
                "down",
                r#"[{"_placeholder":true,"num":0}]"#,
                vec![Bytes::from_static(&[3, 4])],
                false,
                p.now,
            )
            .unwrap();
        p.drive();
        p.poll(c);
        assert_eq!(
            p.recv_text(c),
            [r#"451-["down",{"_placeholder":true,"num":0}]"#, "<bin 3,4>"],
            "{extra}"
        );
        let (_, body) = p.client(c).polls.last().cloned().unwrap();
        if extra.is_empty() {
            // XHR2: the binary framing, the attachment with its type byte.
            assert_eq!(body[0], 0, "a string entry first");
            assert!(body.ends_with(&[1, 3, 0xff, 4, 3, 4]), "{body:?}");
        } else {
            assert!(String::from_utf8(body).unwrap().ends_with("6:b4AwQ="));
        }
    }
}

#[test]
fn a_connection_joins_at_most_max_namespaces_and_stays_healthy_beyond() {
    let mut server_config = config();
    server_config.max_namespaces = 3;
    let mut p = SioPair::with_server(Server::new(server_config, [9; 32]));
    p.server
        .add_dynamic_namespace(|n| n.starts_with("/dyn-"), true);
    let c = p.open(4, Kind::Ws);
    let a = p.join(c, "/dyn-1", None);
    p.join(c, "/dyn-2", None);
    p.join(c, "/dyn-3", None);
    p.take_events();
    p.send(c, "0/dyn-4,");
    assert_eq!(
        p.recv_text(c),
        [r#"44/dyn-4,{"message":"Too many namespaces"}"#]
    );
    assert!(
        p.take_events().is_empty(),
        "no connect request reaches the application"
    );
    assert!(
        !p.server.namespaces().any(|n| n == "/dyn-4"),
        "nothing created"
    );
    // The connection goes on: its sockets still talk, and a freed place can be taken again.
    p.send(c, r#"2/dyn-1,["still",1]"#);
    assert!(matches!(&p.take_events()[..], [Event::Event { socket, .. }] if *socket == a));
    p.send(c, "1/dyn-1,");
    p.join(c, "/dyn-4", None);
    assert_eq!(p.server.socket_count(), 3);
}

#[test]
fn closing_a_connection_sends_no_disconnect_and_its_sockets_leave_with_forced_close() {
    let mut p = SioPair::new();
    p.server.add_namespace("/admin");
    let c = p.open(4, Kind::Ws);
    let a = p.join(c, "/", None);
    let b = p.join(c, "/admin", None);
    p.take_events();
    let sid = p.server.session_of(a).unwrap();
    assert!(p.server.close_connection(sid, p.now));
    p.drive();
    // The transport ends with the close packet only: no `41` for either namespace.
    assert_eq!(p.recv_text(c), ["1"]);
    let left: Vec<(SocketId, DisconnectReason)> = p
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Disconnect { socket, reason, .. } => Some((socket, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        left,
        [
            (a, DisconnectReason::ForcedClose),
            (b, DisconnectReason::ForcedClose)
        ]
    );
    assert!(!p.server.close_connection(sid, p.now), "gone already");
}
