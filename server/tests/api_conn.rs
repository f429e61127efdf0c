//! `socket.conn()`: the Engine.IO connection under a socket (transport, upgrade, address,
//! closing it whole).

mod common;

use async_tungstenite::tungstenite::Message;
use common::raw::{self, open_sid};
use common::{Log, SETTLE, setup};
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use volley::runtime::Runtime as _;
use volley::testing::TestClient;
use volley::{DisconnectReason, Socket};

/// Keeps the last socket that connected.
fn keep_sockets(
    io: &volley::Io<volley::testing::TestRuntime>,
    nsp: &str,
) -> Arc<Mutex<Vec<Socket>>> {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let k = kept.clone();
    io.ns(nsp).on_connection(move |s: Socket| {
        let k = k.clone();
        async move { k.lock().unwrap().push(s) }
    });
    kept
}

#[test]
fn a_polling_connection_reports_its_transport_and_its_upgrade() {
    let (rt, io) = setup();
    let kept = keep_sockets(&io, "/");
    let peer = "192.0.2.7:5000".parse().unwrap();
    rt.block_on(async {
        let mut c = raw::connect(&io, Some(peer));
        let open = c
            .request("GET", "/socket.io/?EIO=4&transport=polling", &[], b"")
            .await;
        let sid = open_sid(&open.text());
        let target = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        assert_eq!(c.request("POST", &target, &[], b"40").await.text(), "ok");
        let connected = c.request("GET", &target, &[], b"").await.text();
        assert!(connected.starts_with("40{"), "{connected}");
        rt.sleep(SETTLE).await;
        let socket = kept.lock().unwrap()[0].clone();
        let conn = socket.conn();
        assert_eq!(conn.id().await.as_deref(), Some(sid.as_str()));
        assert_eq!(conn.transport().await, Some("polling"));
        assert_eq!(conn.remote_address(), Some(peer.ip()));
        assert_eq!(conn.address(false).as_deref(), Some("192.0.2.7"));
        let upgraded = conn.upgraded();
        // Probe: the transport stays polling until the client sends `5`.
        let mut ws = raw::connect(&io, Some(peer))
            .websocket(&format!("/socket.io/?EIO=4&transport=websocket&sid={sid}"))
            .await;
        ws.send(Message::text("2probe")).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("3probe"));
        assert_eq!(conn.transport().await, Some("polling"));
        ws.send(Message::text("5")).await.unwrap();
        assert!(upgraded.await, "the upgrade is reported");
        assert_eq!(conn.transport().await, Some("websocket"));
        // Already upgraded: at once.
        assert!(conn.upgraded().await);
    });
}

#[test]
fn a_websocket_connection_is_upgraded_at_once_and_a_closed_one_never() {
    let (rt, io) = setup();
    let kept = keep_sockets(&io, "/");
    rt.block_on(async {
        let client = TestClient::connect(&io, "/", None).await.unwrap();
        let socket = kept.lock().unwrap()[0].clone();
        assert_eq!(socket.conn().transport().await, Some("websocket"));
        assert!(socket.conn().upgraded().await);
        // No address recorded by the in-memory driver call.
        assert_eq!(socket.conn().remote_address(), None);
        client.close();
        rt.sleep(SETTLE).await;
        assert_eq!(socket.conn().transport().await, None);
        assert_eq!(socket.conn().id().await, None);
        assert!(!socket.conn().upgraded().await);
    });
}

#[test]
fn an_upgrade_waiter_learns_when_the_connection_closes_first() {
    let (rt, io) = setup();
    let kept = keep_sockets(&io, "/");
    rt.block_on(async {
        let mut c = raw::connect(&io, None);
        let open = c
            .request("GET", "/socket.io/?EIO=4&transport=polling", &[], b"")
            .await;
        let sid = open_sid(&open.text());
        let target = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        c.request("POST", &target, &[], b"40").await;
        c.request("GET", &target, &[], b"").await;
        rt.sleep(SETTLE).await;
        let socket = kept.lock().unwrap()[0].clone();
        let upgraded = socket.conn().upgraded();
        // The client closes its session.
        assert_eq!(c.request("POST", &target, &[], b"1").await.text(), "ok");
        assert!(!upgraded.await);
    });
}

#[test]
fn closing_the_connection_removes_the_sockets_of_every_namespace() {
    let (rt, io) = setup();
    let kept = keep_sockets(&io, "/");
    keep_sockets(&io, "/admin");
    let log = Log::new();
    for nsp in ["/", "/admin"] {
        let l = log.clone();
        io.ns(nsp)
            .on_disconnect(move |s: Socket, r: DisconnectReason| {
                let l = l.clone();
                async move { l.push(format!("{} {r}", s.ns())) }
            })
            .on("close", |s: Socket| async move { s.conn().close() });
    }
    rt.block_on(async {
        let mut main = TestClient::connect(&io, "/", None).await.unwrap();
        let mut admin = main.join("/admin", None).await.unwrap();
        let socket = kept.lock().unwrap()[0].clone();
        admin.emit("close", &());
        assert!(main.recv().await.is_none());
        assert!(admin.recv().await.is_none());
        rt.sleep(SETTLE).await;
        assert!(!socket.connected());
        // No Socket.IO DISCONNECT: the client sees its transport close (and would reconnect).
        assert_eq!(main.disconnect_reason().as_deref(), Some("transport close"));
        assert_eq!(
            admin.disconnect_reason().as_deref(),
            Some("transport close")
        );
    });
    let mut entries = log.entries();
    entries.sort();
    assert_eq!(entries, ["/ forced close", "/admin forced close"]);
}
