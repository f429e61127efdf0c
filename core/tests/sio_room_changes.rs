//! Room creation and deletion records: what an adapter that subscribes per room (the sharded
//! Redis adapter's dynamic modes) follows.

mod sio_common;

use sio_common::{Kind, SioPair, config};
use std::sync::Arc;
use volley_core::socketio::{BroadcastOptions, RoomChange, Server};

/// Sorted, for the rooms a leaving socket leaves at once (in the index's order).
fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// `+room` / `-room`, private rooms as `+#id` / `-#id`, each with its namespace.
fn shown(changes: Vec<(Arc<str>, RoomChange)>) -> Vec<String> {
    changes
        .into_iter()
        .map(|(nsp, c)| {
            let sign = if c.created { '+' } else { '-' };
            let private = if c.private { "#" } else { "" };
            format!("{nsp} {sign}{private}{}", c.room)
        })
        .collect()
}

#[test]
fn rooms_are_reported_when_their_first_member_joins_and_their_last_leaves() {
    let mut server = Server::new(config(), [5; 32]);
    server.add_dynamic_namespace(|n| n.starts_with("/dyn-"), true);
    server.track_room_changes(true);
    let mut p = SioPair::with_server(server);
    p.auto_accept = true;

    let a = p.open(4, Kind::Ws);
    let sa = p.join(a, "/", None);
    let b = p.open(4, Kind::Ws);
    let sb = p.join(b, "/", None);
    assert_eq!(
        shown(p.server.take_room_changes()),
        vec![format!("/ +#{sa}"), format!("/ +#{sb}")]
    );
    assert!(p.server.take_room_changes().is_empty(), "taken once");

    p.server.join(sa, "game".into()).unwrap();
    p.server.join(sb, "game".into()).unwrap();
    p.server.join(sa, "game".into()).unwrap();
    assert_eq!(shown(p.server.take_room_changes()), vec!["/ +game"]);
    p.server.leave(sa, &"game".into()).unwrap();
    assert!(p.server.take_room_changes().is_empty(), "b is still in it");
    p.server.leave(sb, &"game".into()).unwrap();
    assert_eq!(shown(p.server.take_room_changes()), vec!["/ -game"]);

    // Joins made for a selection, and a socket leaving with its rooms.
    p.server
        .sockets_join("/", &BroadcastOptions::default(), &["all".into()]);
    assert_eq!(shown(p.server.take_room_changes()), vec!["/ +all"]);
    p.drop_transport(a, false);
    assert_eq!(
        shown(p.server.take_room_changes()),
        vec![format!("/ -#{sa}")]
    );
    p.drop_transport(b, false);
    assert_eq!(
        sorted(shown(p.server.take_room_changes())),
        sorted(vec!["/ -all".to_owned(), format!("/ -#{sb}")])
    );

    // A dynamic namespace removed with its last socket still reports its last rooms.
    let c = p.open(4, Kind::Ws);
    let sc = p.join(c, "/dyn-1", None);
    p.server.join(sc, "lobby".into()).unwrap();
    assert_eq!(
        shown(p.server.take_room_changes()),
        vec![format!("/dyn-1 +#{sc}"), "/dyn-1 +lobby".to_owned()]
    );
    p.drop_transport(c, false);
    assert!(!p.server.namespaces().any(|n| n == "/dyn-1"), "removed");
    assert_eq!(
        sorted(shown(p.server.take_room_changes())),
        sorted(vec!["/dyn-1 -lobby".to_owned(), format!("/dyn-1 -#{sc}")])
    );
}

#[test]
fn nothing_is_recorded_until_tracking_starts_and_then_existing_rooms_come_first() {
    let mut p = SioPair::new();
    p.auto_accept = true;
    let a = p.open(4, Kind::Ws);
    let sa = p.join(a, "/", None);
    p.server.join(sa, "early".into()).unwrap();
    assert!(p.server.take_room_changes().is_empty());
    p.server.track_room_changes(true);
    assert_eq!(
        sorted(shown(p.server.take_room_changes())),
        sorted(vec![format!("/ +#{sa}"), "/ +early".to_owned()])
    );
    p.server.track_room_changes(false);
    p.server.join(sa, "late".into()).unwrap();
    assert!(p.server.take_room_changes().is_empty());
}
