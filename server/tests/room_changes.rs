//! The adapter hook for room creation and deletion (`Adapter::tracks_rooms`,
//! `Adapter::room_changed`): what an adapter that subscribes per room (the sharded Redis
//! adapter's dynamic modes) is told, in order.

mod common;

use common::{Log, SETTLE};
use std::sync::Arc;
use volley::adapter::{Adapter, Inbox};
use volley::runtime::Runtime as _;
use volley::testing::{TestClient, TestRuntime};
use volley::{Data, Io, Socket};
use volley_core::NodeId;
use volley_core::cluster::ClusterMessage;
use volley_core::socketio::RoomChange;

/// A single node that records every room change it is told about as `<nsp> +room` /
/// `<nsp> -room`, private rooms as `+#room` / `-#room`.
struct Recorder {
    tracks: bool,
    log: Log,
}

impl Adapter for Recorder {
    fn start(&self, _node: NodeId, _inbox: Inbox) {}

    fn publish(&self, _to: Option<NodeId>, _message: ClusterMessage) {}

    fn server_count(&self) -> usize {
        1
    }

    fn tracks_rooms(&self) -> bool {
        self.tracks
    }

    fn room_changed(&self, nsp: &str, change: &RoomChange) {
        let sign = if change.created { '+' } else { '-' };
        let private = if change.private { "#" } else { "" };
        self.log
            .push(format!("{nsp} {sign}{private}{}", change.room.as_str()));
    }
}

fn server(rt: &TestRuntime, tracks: bool) -> (Io<TestRuntime>, Log) {
    let log = Log::new();
    let adapter = Recorder {
        tracks,
        log: log.clone(),
    };
    let io = volley::builder()
        .seed([3; 32])
        .adapter(adapter)
        .build(rt.clone());
    for nsp in ["/", "/chat"] {
        let ns = io.ns(nsp);
        ns.on("join", |s: Socket, Data(room): Data<String>| async move {
            s.join(room.as_str());
            true
        });
        ns.on("leave", |s: Socket, Data(room): Data<String>| async move {
            s.leave(room.as_str());
            true
        });
    }
    (io, log)
}

async fn call(c: &mut TestClient, event: &str, room: &str) {
    let done: bool = c.emit_with_ack(event, room).await.expect("acknowledged");
    assert!(done);
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn joins_leaves_and_disconnections_are_reported_in_order() {
    let rt = TestRuntime::new();
    let (io, log) = server(&rt, true);
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let id_a = a.id().to_string();
        // A socket's own room comes first, flagged private; it is the only change so far.
        assert_eq!(log.take(), [format!("/ +#{id_a}")]);

        call(&mut a, "join", "game").await;
        call(&mut a, "join", "lobby").await;
        // Joining a room it is in already changes nothing.
        call(&mut a, "join", "game").await;
        // By the acknowledgement, the adapter has been told.
        assert_eq!(log.take(), ["/ +game", "/ +lobby"]);

        // A second member neither creates the room nor, leaving, deletes it.
        let mut b = TestClient::connect(&io, "/", None).await.unwrap();
        let id_b = b.id().to_string();
        call(&mut b, "join", "game").await;
        call(&mut b, "leave", "game").await;
        assert_eq!(log.take(), [format!("/ +#{id_b}")]);

        call(&mut a, "leave", "lobby").await;
        call(&mut a, "leave", "lobby").await;
        assert_eq!(log.take(), ["/ -lobby"]);

        // Rooms are per namespace.
        let mut c = TestClient::connect(&io, "/chat", None).await.unwrap();
        let id_c = c.id().to_string();
        call(&mut c, "join", "game").await;
        assert_eq!(
            log.take(),
            [format!("/chat +#{id_c}"), "/chat +game".to_owned()]
        );

        // A socket that goes takes its rooms with it (at once, in the index's order).
        a.disconnect();
        rt.sleep(SETTLE).await;
        assert_eq!(
            sorted(log.take()),
            sorted(vec![format!("/ -#{id_a}"), "/ -game".to_owned()])
        );
        c.disconnect();
        b.disconnect();
        rt.sleep(SETTLE).await;
        assert_eq!(
            sorted(log.take()),
            sorted(vec![
                format!("/chat -#{id_c}"),
                "/chat -game".to_owned(),
                format!("/ -#{id_b}"),
            ])
        );
    });
    // Every room that was created was deleted: nothing leaks.
    assert!(log.take().is_empty());
}

#[test]
fn server_side_joins_and_every_create_has_its_delete() {
    let rt = TestRuntime::new();
    let (io, log) = server(&rt, true);
    let all = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    rt.block_on(async {
        let a = TestClient::connect(&io, "/", None).await.unwrap();
        let b = TestClient::connect(&io, "/", None).await.unwrap();
        io.all().sockets_join(["everyone"]);
        io.to(a.id()).sockets_leave(["everyone"]);
        io.in_("everyone").sockets_join(["b-only"]);
        rt.sleep(SETTLE).await;
        let got = log.take();
        all.lock().unwrap().extend(got.iter().cloned());
        let public: Vec<&str> = got
            .iter()
            .map(String::as_str)
            .filter(|e| !e.contains('#'))
            .collect();
        assert_eq!(public, ["/ +everyone", "/ +b-only"]);
        io.disconnect_sockets(true);
        rt.sleep(SETTLE).await;
        all.lock().unwrap().extend(log.take());
        drop((a, b));
    });
    // Each room is created once and deleted once, creation first.
    let all = all.lock().unwrap().clone();
    let mut rooms: Vec<String> = all.iter().map(|e| e[3..].to_owned()).collect();
    rooms.sort();
    rooms.dedup();
    assert_eq!(rooms.len(), 4, "{all:?}");
    for room in rooms {
        let events: Vec<&String> = all.iter().filter(|e| e[3..] == room).collect();
        assert_eq!(events.len(), 2, "{room}: {all:?}");
        assert!(events[0].starts_with("/ +"), "{all:?}");
        assert!(events[1].starts_with("/ -"), "{all:?}");
    }
}

#[test]
fn an_adapter_that_does_not_track_rooms_is_not_told() {
    let rt = TestRuntime::new();
    let (io, log) = server(&rt, false);
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        call(&mut a, "join", "game").await;
        a.disconnect();
        rt.sleep(SETTLE).await;
    });
    assert!(log.entries().is_empty(), "{:?}", log.entries());
}
