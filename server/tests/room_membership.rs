//! `Io::on_room_membership`: every join and leave of a room on this node, in order, with its
//! namespace: the own room on connect, joins and leaves by the socket and by operators, and
//! every room left on disconnect, the own room last; a panicking listener is contained.

mod common;

use common::{Log, SETTLE, setup};
use std::sync::{Arc, Mutex};
use volley::runtime::Runtime as _;
use volley::testing::TestClient;
use volley::{Data, PanicPlace, ServerError, Socket};

#[test]
fn joins_and_leaves_reach_the_listener_in_order() {
    let (rt, io) = setup();
    for nsp in ["/", "/chat"] {
        io.ns(nsp)
            .on("join", |s: Socket, Data(room): Data<String>| async move {
                s.join(room.as_str());
                true
            })
            .on("leave", |s: Socket, Data(room): Data<String>| async move {
                s.leave(room.as_str());
                true
            });
    }
    let log = Log::new();
    let l = log.clone();
    io.on_room_membership(move |nsp, change| {
        let sign = if change.joined { '+' } else { '-' };
        l.push(format!("{nsp} {}{sign}{}", change.socket, change.room));
    });
    rt.block_on(async {
        rt.sleep(SETTLE).await;
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let mut b = TestClient::connect(&io, "/chat", None).await.unwrap();
        let (ida, idb) = (a.id().to_string(), b.id().to_string());
        let _: bool = a.emit_with_ack("join", &"news").await.unwrap();
        // Joined already: no change, nothing reported.
        let _: bool = a.emit_with_ack("join", &"news").await.unwrap();
        let _: bool = b.emit_with_ack("join", &"lobby").await.unwrap();
        let _: bool = a.emit_with_ack("leave", &"nowhere").await.unwrap();
        io.of("/chat").in_("lobby").sockets_join(["vip"]);
        rt.sleep(SETTLE).await;
        assert_eq!(
            log.take(),
            [
                format!("/ {ida}+{ida}"),
                format!("/chat {idb}+{idb}"),
                format!("/ {ida}+news"),
                format!("/chat {idb}+lobby"),
                format!("/chat {idb}+vip"),
            ]
        );
        let _: bool = a.emit_with_ack("leave", &"news").await.unwrap();
        b.disconnect();
        rt.sleep(SETTLE).await;
        let left = log.take();
        // Every room of the socket that went, in room order, its own room last.
        assert_eq!(
            left,
            [
                format!("/ {ida}-news"),
                format!("/chat {idb}-lobby"),
                format!("/chat {idb}-vip"),
                format!("/chat {idb}-{idb}"),
            ]
        );
        a.disconnect();
    });
}

#[test]
fn a_panicking_listener_is_reported_and_the_socket_stays() {
    let (rt, io) = setup();
    io.ns("/")
        .on("join", |s: Socket, Data(room): Data<String>| async move {
            s.join(room.as_str());
            true
        });
    let reports = Arc::new(Mutex::new(Vec::new()));
    let r = reports.clone();
    io.on_error(move |error: &ServerError| {
        if let ServerError::Panic(p) = error {
            r.lock().unwrap().push(p.clone());
        }
    });
    let log = Log::new();
    let l = log.clone();
    io.on_room_membership(|_, change| {
        if change.room.as_str() == "boom" {
            panic!("listener fails");
        }
    })
    .on_room_membership(move |_, change| l.push(change.room.to_string()));
    rt.block_on(async {
        rt.sleep(SETTLE).await;
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let _: bool = a.emit_with_ack("join", &"boom").await.unwrap();
        let _: bool = a.emit_with_ack("join", &"after").await.unwrap();
        rt.sleep(SETTLE).await;
        let reports = reports.lock().unwrap().clone();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert_eq!(reports[0].place, PanicPlace::RoomMembership);
        assert_eq!(reports[0].event, "join-room");
        assert_eq!(reports[0].socket, None);
        // The other listener still heard every change.
        assert_eq!(
            log.take(),
            [a.id().to_string(), "boom".into(), "after".into()]
        );
        assert!(io.socket_count().await == 1);
    });
}
