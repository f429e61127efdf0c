//! Connection state recovery (Socket.IO 4.6), in memory, over the `socketio::Server` machine
//! in the harness: private ids, offsets, sessions kept for the window, replay, purge.

mod sio_common;

use sio_common::{C, Kind, SioPair, config, show};
use std::time::Duration;
use volley_core::Bytes;
use volley_core::ids::SocketId;
use volley_core::socketio::{BroadcastOptions, Event, Recovery, Room, Server};

const WINDOW: Duration = Duration::from_secs(10);

fn pair(skip_middlewares: bool) -> SioPair {
    let mut server = Server::new(config(), [7; 32]);
    server.set_connection_state_recovery(Some(Recovery {
        max_disconnection_duration: WINDOW,
        skip_middlewares,
    }));
    SioPair::with_server(server)
}

/// Opens a WebSocket client, sends CONNECT for `/` with `auth`, returns the client and the
/// CONNECT reply as JSON.
fn connect(p: &mut SioPair, auth: &str) -> (C, serde_json::Value) {
    let c = p.open(4, Kind::Ws);
    p.send(c, &format!("0{auth}"));
    let frames = p.recv_text(c);
    let reply = frames
        .iter()
        .find_map(|f| f.strip_prefix("40"))
        .unwrap_or_else(|| panic!("no CONNECT reply in {frames:?}"));
    let reply: serde_json::Value = serde_json::from_str(reply).unwrap();
    (c, reply)
}

fn field(v: &serde_json::Value, name: &str) -> String {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("{name} in {v}"))
        .to_owned()
}

/// The arguments of the EVENT frames a client received, name first.
fn events(p: &mut SioPair, c: C) -> Vec<Vec<serde_json::Value>> {
    p.recv_text(c)
        .iter()
        .filter_map(|f| f.strip_prefix("42"))
        .map(|j| serde_json::from_str(j).unwrap())
        .collect()
}

fn broadcast(p: &mut SioPair, opts: &BroadcastOptions, name: &str) {
    p.server
        .broadcast("/", opts, name, "[1]", Vec::new(), p.now)
        .unwrap();
    p.drive();
}

fn to(room: &str) -> BroadcastOptions {
    BroadcastOptions {
        rooms: vec![Room::from(room)],
        ..BroadcastOptions::default()
    }
}

fn except(room: &str) -> BroadcastOptions {
    BroadcastOptions {
        except: vec![Room::from(room)],
        ..BroadcastOptions::default()
    }
}

fn last_connect(p: &SioPair) -> &volley_core::socketio::ConnectRequest {
    p.requests.last().expect("a connect request")
}

#[test]
fn connect_reply_carries_pid_and_events_carry_offsets() {
    let mut p = pair(true);
    let (c, reply) = connect(&mut p, "");
    let sid = field(&reply, "sid");
    let pid = field(&reply, "pid");
    assert_ne!(sid, pid);
    let socket = SocketId::new(&sid).unwrap();
    assert!(!last_connect(&p).recovered);

    broadcast(&mut p, &BroadcastOptions::default(), "a");
    p.server
        .emit(socket, "b", "[2]", Vec::new(), false, p.now)
        .unwrap();
    p.drive();
    let got = events(&mut p, c);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0][..2], [serde_json::json!("a"), serde_json::json!(1)]);
    assert_eq!(got[1][..2], [serde_json::json!("b"), serde_json::json!(2)]);
    let (o1, o2) = (got[0][2].as_str().unwrap(), got[1][2].as_str().unwrap());
    assert!(o1 < o2, "offsets increase: {o1} {o2}");
    assert_eq!(p.server.recovery_packet_count(), 2);

    // Volatile, and with ack: no offset, not kept.
    let volatile = BroadcastOptions {
        volatile: true,
        ..BroadcastOptions::default()
    };
    broadcast(&mut p, &volatile, "v");
    p.server
        .emit_with_ack(socket, "k", "[3]", Vec::new(), None, p.now)
        .unwrap();
    p.drive();
    assert_eq!(
        p.recv_text(c),
        [r#"42["v",1]"#.to_owned(), r#"420["k",3]"#.to_owned()]
    );
    assert_eq!(p.server.recovery_packet_count(), 2);

    // Binary events carry the offset after their placeholders.
    p.server
        .broadcast(
            "/",
            &BroadcastOptions::default(),
            "bin",
            r#"[{"_placeholder":true,"num":0}]"#,
            vec![Bytes::from_static(&[1, 2])],
            p.now,
        )
        .unwrap();
    p.drive();
    let frames = p.recv_text(c);
    assert!(
        frames[0].starts_with(r#"451-["bin",{"_placeholder":true,"num":0},""#),
        "{frames:?}"
    );
    assert_eq!(p.server.recovery_packet_count(), 3);
}

#[test]
fn recovery_restores_id_rooms_and_replays_exactly_the_missed_packets() {
    let mut p = pair(true);
    let (c, reply) = connect(&mut p, "");
    let (sid, pid) = (field(&reply, "sid"), field(&reply, "pid"));
    let socket = SocketId::new(&sid).unwrap();
    let (other, other_reply) = connect(&mut p, "");
    let other_socket = SocketId::new(&field(&other_reply, "sid")).unwrap();
    p.server.join(socket, Room::from("r")).unwrap();

    broadcast(&mut p, &BroadcastOptions::default(), "m1");
    let got = events(&mut p, c);
    let offset = got[0].last().unwrap().as_str().unwrap().to_owned();

    // Sent while the client's transport is going away: never read.
    broadcast(&mut p, &BroadcastOptions::default(), "m2");
    p.drop_transport(c, true);
    assert_eq!(p.server.recovery_session_count(), 1);
    assert!(!p.server.contains(socket));

    broadcast(&mut p, &BroadcastOptions::default(), "m3");
    broadcast(&mut p, &to("r"), "m4");
    broadcast(&mut p, &to("x"), "m5");
    broadcast(&mut p, &except("r"), "m6");
    p.server
        .emit(other_socket, "m7", "[1]", Vec::new(), false, p.now)
        .unwrap();
    broadcast(&mut p, &to(&sid), "m8");
    p.advance(Duration::from_secs(3));
    let _ = events(&mut p, other);

    let auth = serde_json::json!({ "pid": pid, "offset": offset }).to_string();
    let c2 = p.open(4, Kind::Ws);
    p.send(c2, &format!("0{auth}"));
    let req = last_connect(&p).clone();
    assert!(req.recovered);
    assert_eq!(req.accepted, Some(socket));
    let frames = p.recv_text(c2);
    assert_eq!(
        frames[0],
        format!(r#"40{{"sid":"{sid}","pid":"{pid}"}}"#),
        "{frames:?}"
    );
    let names: Vec<String> = frames[1..]
        .iter()
        .map(|f| {
            let v: Vec<serde_json::Value> =
                serde_json::from_str(f.strip_prefix("42").unwrap()).unwrap();
            v[0].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(names, ["m2", "m3", "m4", "m8"]);
    assert!(p.server.contains(socket));
    let mut rooms = p.server.rooms_of(socket);
    rooms.sort();
    let mut expected = vec![Room::from("r"), Room::from(sid.as_str())];
    expected.sort();
    assert_eq!(rooms, expected);
    assert_eq!(p.server.recovery_session_count(), 0);
    // The application was told, once.
    assert_eq!(
        p.take_events()
            .iter()
            .map(show)
            .filter(|e| e.starts_with("connect"))
            .count(),
        1
    );

    // The same session cannot be recovered twice.
    p.drop_transport(c2, false);
    assert_eq!(p.server.recovery_session_count(), 1);
    let (_, again) = connect(&mut p, &auth);
    assert!(last_connect(&p).recovered);
    assert_eq!(field(&again, "sid"), sid);
    let (_, third) = connect(&mut p, &auth);
    assert!(!last_connect(&p).recovered);
    assert_ne!(field(&third, "sid"), sid);
}

#[test]
fn without_skip_middlewares_the_application_settles_a_recovered_connect() {
    let mut p = pair(false);
    let (c, reply) = connect(&mut p, "");
    let (sid, pid) = (field(&reply, "sid"), field(&reply, "pid"));
    let socket = SocketId::new(&sid).unwrap();
    broadcast(&mut p, &BroadcastOptions::default(), "m1");
    let offset = events(&mut p, c)[0][2].as_str().unwrap().to_owned();
    p.drop_transport(c, false);
    broadcast(&mut p, &BroadcastOptions::default(), "m2");
    assert!(p.server.set_session_data(socket, r#"{"n":1}"#.into()));

    p.take_events();
    p.auto_accept = false;
    let c2 = p.open(4, Kind::Ws);
    let auth = serde_json::json!({ "pid": pid, "offset": offset });
    p.send(c2, &format!("0{auth}"));
    let Some(Event::Connect(req)) = p.events.pop_front() else {
        panic!("a connect request");
    };
    assert!(req.recovered && req.accepted.is_none());
    assert!(p.server.is_recovering(req.id));
    assert_eq!(req.session_data.as_deref(), Some(r#"{"n":1}"#));
    assert_eq!(p.server.accept(req.id, p.now), Ok(socket));
    p.drive();
    let frames = p.recv_text(c2);
    assert_eq!(frames[0], format!(r#"40{{"sid":"{sid}","pid":"{pid}"}}"#));
    assert!(frames[1].starts_with(r#"42["m2",1,""#), "{frames:?}");
    assert_eq!(frames.len(), 2);
}

#[test]
fn packets_sent_while_a_recovered_connect_waits_for_the_application_are_replayed_too() {
    let mut p = pair(false);
    let (c, reply) = connect(&mut p, "");
    let pid = field(&reply, "pid");
    broadcast(&mut p, &BroadcastOptions::default(), "m1");
    let offset = events(&mut p, c)[0][2].as_str().unwrap().to_owned();
    p.drop_transport(c, false);
    broadcast(&mut p, &BroadcastOptions::default(), "m2");

    p.take_events();
    p.auto_accept = false;
    let c2 = p.open(4, Kind::Ws);
    let auth = serde_json::json!({ "pid": pid, "offset": offset });
    p.send(c2, &format!("0{auth}"));
    let Some(Event::Connect(req)) = p.events.pop_front() else {
        panic!("a connect request");
    };
    // The middleware is still running: more is sent, to all and to a room the socket is not
    // in (which it must not get).
    broadcast(&mut p, &BroadcastOptions::default(), "m3");
    broadcast(&mut p, &to("elsewhere"), "x");
    broadcast(&mut p, &BroadcastOptions::default(), "m4");
    p.server.accept(req.id, p.now).unwrap();
    p.drive();
    let names: Vec<String> = events(&mut p, c2)
        .iter()
        .map(|e| e[0].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["m2", "m3", "m4"]);
    // After the socket opened, broadcasts reach it directly, once.
    broadcast(&mut p, &BroadcastOptions::default(), "m5");
    assert_eq!(events(&mut p, c2).len(), 1);
}

/// As the reference, which sends a single emit as a broadcast to the socket's room (kept
/// whether or not the socket is connected), an emit to a socket that left a session is
/// replayed when it comes back: an application streaming to a socket handle loses nothing.
#[test]
fn an_emit_to_a_socket_away_is_kept_for_its_return() {
    let mut p = pair(true);
    let (c, reply) = connect(&mut p, "");
    let (sid, pid) = (field(&reply, "sid"), field(&reply, "pid"));
    let socket = SocketId::new(&sid).unwrap();
    p.server
        .emit(socket, "m1", "[1]", Vec::new(), false, p.now)
        .unwrap();
    p.drive();
    let offset = events(&mut p, c)[0][2].as_str().unwrap().to_owned();
    p.drop_transport(c, false);
    assert_eq!(p.server.recovery_session_count(), 1);

    // Not sent (the socket is gone), but kept for the session; a volatile one is not.
    assert!(
        p.server
            .emit(socket, "m2", "[2]", Vec::new(), false, p.now)
            .is_err()
    );
    assert!(
        p.server
            .emit(socket, "v", "[3]", Vec::new(), true, p.now)
            .is_err()
    );
    broadcast(&mut p, &BroadcastOptions::default(), "m3");
    assert_eq!(p.server.recovery_packet_count(), 3);
    // A socket that left no session keeps nothing.
    let (gone, gone_reply) = connect(&mut p, "");
    let gone_socket = SocketId::new(&field(&gone_reply, "sid")).unwrap();
    p.send(gone, "1");
    assert_eq!(p.server.recovery_session_count(), 1);
    assert!(
        p.server
            .emit(gone_socket, "m4", "[4]", Vec::new(), false, p.now)
            .is_err()
    );
    assert_eq!(p.server.recovery_packet_count(), 3);

    let auth = serde_json::json!({ "pid": pid, "offset": offset });
    let c2 = p.open(4, Kind::Ws);
    p.send(c2, &format!("0{auth}"));
    assert!(last_connect(&p).recovered);
    let frames = p.recv_text(c2);
    assert_eq!(
        frames[0],
        format!(r#"40{{"sid":"{sid}","pid":"{pid}"}}"#),
        "{frames:?}"
    );
    assert_eq!(frames.len(), 3, "{frames:?}");
    assert!(frames[1].starts_with(r#"42["m2",2,""#), "{frames:?}");
    assert!(frames[2].starts_with(r#"42["m3",1,""#), "{frames:?}");
}

#[test]
fn after_the_window_a_fresh_session_and_nothing_kept() {
    let mut p = pair(true);
    let (c, reply) = connect(&mut p, "");
    let (sid, pid) = (field(&reply, "sid"), field(&reply, "pid"));
    broadcast(&mut p, &BroadcastOptions::default(), "m1");
    let offset = events(&mut p, c)[0][2].as_str().unwrap().to_owned();
    p.drop_transport(c, false);
    broadcast(&mut p, &BroadcastOptions::default(), "m2");
    assert_eq!(p.server.recovery_session_count(), 1);
    assert_eq!(p.server.recovery_packet_count(), 2);

    p.advance(WINDOW + Duration::from_secs(1));
    assert_eq!(p.server.recovery_session_count(), 0);
    assert_eq!(p.server.recovery_packet_count(), 0);
    assert_eq!(p.server.timer_count(), 0);

    let auth = serde_json::json!({ "pid": pid, "offset": offset }).to_string();
    let (c2, fresh) = connect(&mut p, &auth);
    assert!(!last_connect(&p).recovered);
    assert_ne!(field(&fresh, "sid"), sid);
    assert_ne!(field(&fresh, "pid"), pid);
    assert!(events(&mut p, c2).is_empty());
}

#[test]
fn an_unknown_offset_or_pid_is_a_fresh_session() {
    let mut p = pair(true);
    let (c, reply) = connect(&mut p, "");
    let (sid, pid) = (field(&reply, "sid"), field(&reply, "pid"));
    broadcast(&mut p, &BroadcastOptions::default(), "m1");
    let offset = events(&mut p, c)[0][2].as_str().unwrap().to_owned();
    p.drop_transport(c, false);
    for auth in [
        serde_json::json!({ "pid": pid }),
        serde_json::json!({ "pid": pid, "offset": "nope" }),
        serde_json::json!({ "pid": "other", "offset": offset }),
        serde_json::json!({ "pid": pid, "offset": 7 }),
    ] {
        let (_, fresh) = connect(&mut p, &auth.to_string());
        assert!(!last_connect(&p).recovered, "{auth}");
        assert_ne!(field(&fresh, "sid"), sid, "{auth}");
    }
    // The session is still there for the right pair.
    assert_eq!(p.server.recovery_session_count(), 1);
}

#[test]
fn parse_errors_and_client_disconnects_leave_no_session() {
    let mut p = pair(true);
    let (c, _) = connect(&mut p, "");
    p.send(c, "abc");
    assert_eq!(p.server.recovery_session_count(), 0);
    let (c, _) = connect(&mut p, "");
    p.send(c, "1");
    assert_eq!(p.server.recovery_session_count(), 0);
    // A transport close is recoverable.
    let (c, _) = connect(&mut p, "");
    p.drop_transport(c, false);
    assert_eq!(p.server.recovery_session_count(), 1);
}

#[test]
fn sessions_and_packets_are_purged_and_memory_is_bounded() {
    let mut p = pair(true);
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(connect(&mut p, "").0);
    }
    for i in 0..20 {
        broadcast(&mut p, &BroadcastOptions::default(), &format!("e{i}"));
        p.advance(Duration::from_secs(1));
    }
    // Packets older than the window are gone while the sockets stay connected.
    assert!(
        p.server.recovery_packet_count() <= 11,
        "{}",
        p.server.recovery_packet_count()
    );
    for c in clients {
        p.drop_transport(c, false);
    }
    assert_eq!(p.server.recovery_session_count(), 5);
    p.advance(WINDOW + Duration::from_secs(1));
    assert_eq!(p.server.recovery_session_count(), 0);
    assert_eq!(p.server.recovery_packet_count(), 0);
    p.advance(Duration::from_secs(5));
    p.assert_empty();
}
