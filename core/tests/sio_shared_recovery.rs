//! Connection state recovery kept by the caller (`Server::set_shared_recovery`, a cluster
//! adapter's stream): offsets given to `broadcast_at`, sessions taken out with
//! `take_session`, recoveries completed with `restore_connect` and replayed by the machine's
//! rules (namespace, rooms, except, volatile, acknowledgement).

mod sio_common;

use sio_common::{C, Kind, SioPair, config};
use std::time::Duration;
use volley_core::cluster::ClusterMessage;
use volley_core::ids::RequestId;
use volley_core::socketio::{
    BroadcastOptions, Recovery, RestoreOutcome, Room, Server, StoredMessage, recovery_auth,
};

fn pair(skip_middlewares: bool) -> SioPair {
    let mut server = Server::new(config(), [9; 32]);
    server.set_connection_state_recovery(Some(Recovery {
        max_disconnection_duration: Duration::from_secs(10),
        skip_middlewares,
    }));
    server.set_shared_recovery(true);
    assert!(server.is_recovery_shared());
    SioPair::with_server(server)
}

fn connect(p: &mut SioPair, auth: &str) -> (C, serde_json::Value, Vec<String>) {
    let c = p.open(4, Kind::Ws);
    p.send(c, &format!("0{auth}"));
    let frames = p.recv_text(c);
    let reply = frames
        .iter()
        .find_map(|f| f.strip_prefix("40"))
        .unwrap_or_else(|| panic!("no CONNECT reply in {frames:?}"));
    let reply = serde_json::from_str(reply).unwrap();
    (c, reply, frames)
}

fn opts(rooms: &[&str], except: &[&str], volatile: bool) -> BroadcastOptions {
    BroadcastOptions {
        rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
        except: except.iter().map(|r| Room::from(*r)).collect(),
        volatile,
        ..BroadcastOptions::default()
    }
}

fn stored(offset: &str, nsp: &str, o: BroadcastOptions, ack: bool) -> StoredMessage {
    StoredMessage {
        offset: offset.to_owned(),
        message: ClusterMessage::Broadcast {
            nsp: nsp.to_owned(),
            opts: o,
            event: "e".to_owned(),
            args: format!("[\"{offset}\"]"),
            attachments: Vec::new(),
            ack: ack.then(|| RequestId::new("req").unwrap()),
            timeout: None,
        },
    }
}

#[test]
fn offsets_come_from_the_caller_and_nothing_is_kept_here() {
    let mut p = pair(true);
    let (c, reply, _) = connect(&mut p, "");
    assert!(reply["pid"].is_string());
    let now = p.now;
    p.server
        .broadcast_at(
            "/",
            &opts(&[], &[], false),
            "a",
            "[1]",
            Vec::new(),
            Some("7-1"),
            now,
        )
        .unwrap();
    // Written before the next, so that the volatile one finds the transport free.
    p.drive();
    p.server
        .broadcast_at(
            "/",
            &opts(&[], &[], true),
            "v",
            "[2]",
            Vec::new(),
            Some("7-2"),
            now,
        )
        .unwrap();
    // Written before the next, so that the volatile one finds the transport free.
    p.drive();
    p.server
        .broadcast_at(
            "/",
            &opts(&[], &[], false),
            "n",
            "[3]",
            Vec::new(),
            None,
            now,
        )
        .unwrap();
    p.drive();
    let frames = p.recv_text(c);
    assert_eq!(
        frames,
        vec![
            r#"42["a",1,"7-1"]"#.to_owned(),
            r#"42["v",2]"#.to_owned(),
            r#"42["n",3]"#.to_owned()
        ]
    );
    assert_eq!(p.server.recovery_packet_count(), 0);
}

#[test]
fn a_session_is_taken_out_and_restored_with_what_its_rooms_missed() {
    let mut p = pair(true);
    let (c, reply, _) = connect(&mut p, "");
    let socket = p.socket_of(c, "/").unwrap();
    p.server.join(socket, Room::from("r")).unwrap();
    p.drop_transport(c, false);
    p.drive();
    let session = p
        .server
        .take_session(socket)
        .expect("a session left behind");
    assert_eq!(session.pid, reply["pid"].as_str().unwrap());
    assert_eq!(session.nsp.as_deref(), Some("/"));
    assert!(session.rooms.contains(&Room::from("r")));
    assert!(p.server.take_session(socket).is_none(), "taken once");
    assert_eq!(p.server.recovery_session_count(), 0);

    let auth = format!(r#"{{"pid":"{}","offset":"1-0"}}"#, session.pid);
    assert_eq!(
        recovery_auth(&auth),
        Some((session.pid.clone(), "1-0".to_owned()))
    );
    let c2 = p.open(4, Kind::Ws);
    p.auto_accept = false;
    p.send(c2, &format!("0{auth}"));
    let req = p.requests.last().unwrap().clone();
    assert!(
        !req.recovered && req.accepted.is_none(),
        "the caller recovers"
    );
    let missed = vec![
        stored("2-0", "/", opts(&["r"], &[], false), false),
        stored("3-0", "/", opts(&["other"], &[], false), false),
        stored("4-0", "/", opts(&[], &[], true), false),
        stored("5-0", "/", opts(&[], &[], false), true),
        stored("6-0", "/chat", opts(&[], &[], false), false),
        stored("7-0", "/", opts(&[], &["r"], false), false),
        stored("8-0", "/", opts(&[], &[], false), false),
    ];
    let now = p.now;
    let outcome = p
        .server
        .restore_connect(req.id, session, missed, now)
        .unwrap();
    assert_eq!(outcome, RestoreOutcome::Accepted(socket));
    p.drive();
    let frames = p.recv_text(c2);
    assert_eq!(
        frames[0],
        format!(
            r#"40{{"sid":"{socket}","pid":"{}"}}"#,
            reply["pid"].as_str().unwrap()
        )
    );
    assert_eq!(
        &frames[1..],
        &[
            r#"42["e","2-0","2-0"]"#.to_owned(),
            r#"42["e","8-0","8-0"]"#.to_owned()
        ]
    );
    assert!(p.server.rooms_of(socket).contains(&Room::from("r")));
}

#[test]
fn a_session_that_does_not_fit_is_refused() {
    let mut p = pair(false);
    let (c, _, _) = connect(&mut p, "");
    let socket = p.socket_of(c, "/").unwrap();
    p.drop_transport(c, false);
    p.drive();
    let mut session = p.server.take_session(socket).unwrap();
    session.nsp = Some("/chat".to_owned());
    p.auto_accept = false;
    let c2 = p.open(4, Kind::Ws);
    p.send(c2, r#"0{"pid":"x","offset":"1-0"}"#);
    let id = p.requests.last().unwrap().id;
    let now = p.now;
    let outcome = p
        .server
        .restore_connect(id, session.clone(), Vec::new(), now)
        .unwrap();
    assert_eq!(outcome, RestoreOutcome::Refused, "another namespace");
    session.nsp = None;
    let outcome = p
        .server
        .restore_connect(id, session, Vec::new(), now)
        .unwrap();
    assert_eq!(
        outcome,
        RestoreOutcome::Restored,
        "middleware runs before the socket is back"
    );
    assert!(p.server.is_recovering(id));
    assert_eq!(p.server.accept(id, now).unwrap(), socket);
}
