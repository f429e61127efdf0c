//! The Socket.IO parts driven on their own, as a runtime that gives each session its own task
//! would drive them: one `Client` machine per session, and the `Namespaces` index shared by
//! all of them.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use volley_core::engine::Message;
use volley_core::http::{Limits, parse_head};
use volley_core::ids::SocketId;
use volley_core::socketio::{
    BroadcastOptions, Client, ClientTimer, ConnectId, DisconnectReason, Handshake, Incoming,
    Namespaces, Parser, Room, SioProtocol, TimerOutcome,
};
use volley_core::{Bytes, Sid};

fn sid(n: u32) -> Sid {
    Sid::new(&format!("session{n:013}")).unwrap()
}

fn sock(n: u32) -> SocketId {
    SocketId::new(&format!("socket{n:014}")).unwrap()
}

fn client(protocol: SioProtocol, now: Instant) -> Client {
    let raw = b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: a\r\n\r\n";
    let (request, _) = parse_head(raw, &Limits::default()).unwrap().unwrap();
    let handshake = Arc::new(Handshake {
        sid: sid(1),
        protocol,
        request,
        issued: now,
    });
    Client::new(
        handshake,
        Parser::Default,
        10,
        now + Duration::from_secs(45),
    )
}

fn text(s: &str) -> Message {
    Message::Text(s.into())
}

#[test]
fn a_connect_is_asked_for_once_and_packets_need_a_joined_namespace() {
    let now = Instant::now();
    let mut c = client(SioProtocol::V5, now);
    assert_eq!(c.timer_count(), 1, "the connect timeout");
    let Incoming::Connect { nsp, auth, query } = c.receive(text(r#"0/admin,{"token":"t"}"#)) else {
        panic!("not a connect");
    };
    assert_eq!((&*nsp, &*auth, query), ("/admin", r#"{"token":"t"}"#, None));
    c.add_pending(nsp.clone(), ConnectId(7));
    // Asked for already: the reference closes the connection.
    assert!(matches!(c.receive(text("0/admin,")), Incoming::Violation));
    // An event for a namespace not joined.
    assert!(matches!(
        c.receive(text(r#"2/admin,["x"]"#)),
        Incoming::Violation
    ));
    c.settle(&nsp, ConnectId(7));
    c.add_socket(nsp, sock(1), None);
    assert_eq!(c.timer_count(), 0, "joined: no connect timeout");
    let Incoming::Event {
        socket,
        nsp,
        packet,
    } = c.receive(text(r#"2/admin,5["x",1]"#))
    else {
        panic!("not an event");
    };
    assert_eq!((socket, &*nsp, packet.id), (sock(1), "/admin", Some(5)));
    // No CONNECT payload for protocol 4: auth is always `{}`.
    let mut v4 = client(SioProtocol::V4, now);
    let Incoming::Connect { auth, .. } = v4.receive(text(r#"0/a,"#)) else {
        panic!("not a connect");
    };
    assert_eq!(&*auth, "{}");
}

#[test]
fn acks_are_settled_once_and_time_out_on_the_simulated_clock() {
    let now = Instant::now();
    let mut c = client(SioProtocol::V5, now);
    c.add_socket("/".into(), sock(1), None);
    c.expect_ack(sock(1), 3, Some(now + Duration::from_secs(2)));
    c.expect_ack(sock(1), 4, Some(now + Duration::from_secs(1)));
    c.expect_ack(sock(1), 5, None);
    assert_eq!((c.ack_count(), c.timer_count()), (3, 2));
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(1)));
    assert_eq!(
        c.first_timer(),
        Some((now + Duration::from_secs(1), ClientTimer::Ack(sock(1), 4)))
    );
    let Incoming::Ack {
        socket, id, args, ..
    } = c.receive(text(r#"33[42]"#))
    else {
        panic!("not an ack");
    };
    assert_eq!((socket, id, &*args), (sock(1), 3, "[42]"));
    // Answered already: ignored.
    assert!(matches!(c.receive(text(r#"33[42]"#)), Incoming::Nothing));
    assert_eq!(c.handle_timeout(now), None, "nothing due yet");
    let later = now + Duration::from_secs(1);
    assert_eq!(
        c.handle_timeout(later),
        Some(TimerOutcome::AckTimedOut(sock(1), 4))
    );
    assert_eq!(c.handle_timeout(later), None);
    assert_eq!(c.poll_timeout(), None, "ack 5 has no deadline");
    // A socket that leaves hands back what it still owed.
    let (pid, owed) = c.remove_socket(sock(1)).unwrap();
    assert_eq!((pid, owed), (None, vec![5]));
    assert_eq!((c.ack_count(), c.timer_count()), (0, 0));
}

#[test]
fn the_connect_timeout_closes_only_a_connection_without_sockets() {
    let now = Instant::now();
    let mut idle = client(SioProtocol::V5, now);
    let due = now + Duration::from_secs(45);
    assert_eq!(idle.handle_timeout(due), Some(TimerOutcome::ConnectTimeout));
    let mut closing = client(SioProtocol::V5, now);
    assert!(closing.set_closing(DisconnectReason::ParseError));
    assert!(!closing.set_closing(DisconnectReason::ForcedServerClose));
    assert!(
        matches!(closing.receive(text("40")), Incoming::Nothing),
        "ignored while closing"
    );
    assert_eq!(closing.release(), Vec::<ConnectId>::new());
    assert_eq!(closing.poll_timeout(), None);
}

#[test]
fn a_message_that_does_not_decode_is_a_parse_error_and_attachments_wait() {
    let now = Instant::now();
    let mut c = client(SioProtocol::V5, now);
    c.add_socket("/".into(), sock(1), None);
    assert!(matches!(c.receive(text("2abc")), Incoming::ParseError));
    let header = r#"51-["bin",{"_placeholder":true,"num":0}]"#;
    assert!(matches!(c.receive(text(header)), Incoming::Nothing));
    let Incoming::Event { packet, .. } = c.receive(Message::Binary(Bytes::from_static(&[1, 2])))
    else {
        panic!("not an event");
    };
    assert_eq!(packet.attachments, vec![Bytes::from_static(&[1, 2])]);
}

/// The index behind a lock, as sessions on several threads would share it: selections on
/// some threads while others join and leave rooms see every socket at most once, and every
/// socket that stayed in the room throughout.
#[test]
fn the_index_is_shared_by_threads_selecting_while_others_move_sockets() {
    let index = Arc::new(RwLock::new(Namespaces::new()));
    let nsp: Arc<str> = Arc::from("/");
    let room = Room::new("news");
    {
        let mut ns = index.write().unwrap();
        for n in 0..200 {
            ns.insert(sock(n), sid(n), &nsp, &[]);
            if n < 100 {
                ns.join(sock(n), room.clone());
            }
        }
    }
    let movers: Vec<_> = (0..2)
        .map(|t| {
            let index = index.clone();
            let room = room.clone();
            std::thread::spawn(move || {
                for round in 0..200u32 {
                    let n = 100 + (round * 2 + t) % 100;
                    let mut ns = index.write().unwrap();
                    if round % 2 == 0 {
                        ns.join(sock(n), room.clone());
                    } else {
                        ns.leave(sock(n), &room);
                    }
                }
            })
        })
        .collect();
    let opts = BroadcastOptions {
        rooms: vec![room.clone()],
        ..BroadcastOptions::default()
    };
    for _ in 0..200 {
        let picked = index.read().unwrap().select("/", &opts);
        let mut unique = picked.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), picked.len(), "a socket selected twice");
        for n in 0..100 {
            assert!(picked.contains(&sock(n)), "a member throughout was missed");
        }
    }
    for m in movers {
        m.join().unwrap();
    }
}
