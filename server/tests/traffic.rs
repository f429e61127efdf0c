//! `Io::traffic` and `Io::polling_client_count`: sessions opened and closed, packets and bytes
//! in and out, counted by the machine as they pass it, over both transports.

mod common;

use common::{SETTLE, setup};
use volley::runtime::Runtime as _;
use volley::testing::{ConnectOptions, TestClient, TransportKind};
use volley::{Data, Socket, Traffic};

#[test]
fn sessions_packets_and_bytes_are_counted() {
    let (rt, io) = setup();
    io.ns("/")
        .on("note", |s: Socket, Data(text): Data<String>| async move {
            let _ = s.emit("n", &text.len());
        });
    rt.block_on(async {
        assert_eq!(io.traffic().await, Traffic::default());
        let ws = TestClient::connect(&io, "/", None).await.unwrap();
        let polling = ConnectOptions::new().transport(TransportKind::Polling);
        let mut poller = TestClient::connect_with(&io, "/", polling).await.unwrap();
        rt.sleep(SETTLE).await;
        let start = io.traffic().await;
        assert_eq!(start.sessions_opened, 2);
        assert_eq!(start.sessions_closed, 0);
        assert!(start.packets_received >= 2, "{start:?}");
        assert!(start.packets_sent >= 4, "{start:?}");
        assert_eq!(io.polling_client_count().await, 1);

        // One WebSocket message each way, of known length.
        ws.emit("note", &"hi");
        rt.sleep(SETTLE).await;
        let after = io.traffic().await;
        let received = br#"42["note","hi"]"#.len() as u64;
        let sent = br#"42["n",2]"#.len() as u64;
        assert_eq!(after.packets_received - start.packets_received, 1);
        assert_eq!(after.bytes_received - start.bytes_received, received);
        assert_eq!(after.packets_sent - start.packets_sent, 1);
        assert_eq!(after.bytes_sent - start.bytes_sent, sent);

        // Over polling, the bodies: at least the event in, and its answer out.
        poller.emit("note", &"hello");
        let _ = poller.recv().await.unwrap();
        let later = io.traffic().await;
        assert!(later.packets_received > after.packets_received, "{later:?}");
        assert!(later.bytes_received >= after.bytes_received + received + 3);
        assert!(later.bytes_sent >= after.bytes_sent + sent);

        ws.close();
        poller.close();
        rt.sleep(SETTLE).await;
        let end = io.traffic().await;
        assert_eq!(end.sessions_closed, 2);
        assert_eq!(io.polling_client_count().await, 0);
    });
}
