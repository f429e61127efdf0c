//! Controllers (Midway's `@WSController` style) through the test client: methods as handlers
//! on one instance, `@WSEmit` and `@WSBroadCast` results, controller- and method-level
//! middleware, connection and disconnection hooks, and closures beside them.

mod common;

use common::{Log, SETTLE, setup};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use volley::controller::{Controller, Routes};
use volley::runtime::Runtime;
use volley::testing::TestClient;
use volley::{
    ConnectCtx, ConnectError, Data, DisconnectReason, IncomingEvent, Next, PacketFlow, Socket,
};

struct Chat {
    log: Log,
    messages: AtomicU64,
}

impl Chat {
    async fn hello(self: Arc<Self>, socket: Socket) {
        self.log.push("connection");
        let _ = socket.emit("welcome", &self.messages.load(Ordering::Relaxed));
    }

    async fn my_event(self: Arc<Self>, Data((a, b, c)): Data<(i64, i64, i64)>) -> i64 {
        self.messages.fetch_add(1, Ordering::Relaxed);
        a + b + c
    }

    async fn say(self: Arc<Self>, socket: Socket, Data(text): Data<String>) -> String {
        self.messages.fetch_add(1, Ordering::Relaxed);
        format!("{}: {text}", &socket.id().as_str()[..4])
    }

    async fn secret(self: Arc<Self>) -> &'static str {
        "opened"
    }

    async fn bye(self: Arc<Self>, _socket: Socket, reason: DisconnectReason) {
        self.log.push(format!("disconnect {}", reason.as_str()));
    }

    async fn gate(self: Arc<Self>, ctx: ConnectCtx, next: Next) -> Result<(), ConnectError> {
        if ctx.auth()["token"] != "letmein" {
            self.log.push("refused");
            return Err(ConnectError::new("no token"));
        }
        next.run(ctx).await
    }

    async fn count(self: Arc<Self>, _socket: Socket, event: IncomingEvent) -> PacketFlow {
        self.log.push(format!("packet {}", event.name));
        PacketFlow::Continue(event)
    }
}

impl Controller for Chat {
    const NAMESPACE: &'static str = "/chat";

    fn routes(routes: &mut Routes<Self>) {
        routes
            .use_connect(Self::gate)
            .use_packet(Self::count)
            .on_connection(Self::hello)
            .on_disconnection(Self::bye);
        routes
            .on("myEvent", Self::my_event)
            .emit_result("myEventResult");
        routes
            .on("say", Self::say)
            .broadcast_result("said", Vec::<String>::new());
        routes
            .on("secret", Self::secret)
            .with(|_s: Socket, e: IncomingEvent| async move {
                if e.payload.args().first() == Some(&json!("sesame")) {
                    PacketFlow::Continue(e)
                } else {
                    PacketFlow::Reject("wrong word".into())
                }
            });
        // A closure beside the methods, on the same namespace.
        routes.namespace().on("ping", || async { "pong" });
    }
}

fn auth() -> Option<serde_json::Value> {
    Some(json!({ "token": "letmein" }))
}

#[test]
fn a_controller_serves_its_namespace_with_midway_semantics() {
    let (rt, io) = setup();
    let log = Log::new();
    let ns = io.controller(Chat {
        log: log.clone(),
        messages: AtomicU64::new(0),
    });
    assert_eq!(ns.name(), Some("/chat"));
    rt.block_on(async {
        // Controller-level connection middleware.
        let refused = TestClient::connect(&io, "/chat", None).await;
        assert_eq!(
            refused.err().map(|e| e.message.clone()).as_deref(),
            Some("no token")
        );
        let mut a = TestClient::connect(&io, "/chat", auth()).await.unwrap();
        let welcome = a.recv().await.unwrap();
        assert_eq!(
            (welcome.event.as_str(), welcome.data::<u64>().unwrap()),
            ("welcome", 0)
        );
        // Midway's documented test: `sendWithAck('myEvent', 1, 2, 3)` on a `@WSEmit` method.
        let sum: i64 = a.send_with_ack("myEvent", &(1, 2, 3)).await.unwrap();
        assert_eq!(sum, 6);
        a.emit("myEvent", &(1, 1, 1));
        let ev = a.recv().await.unwrap();
        assert_eq!(
            (ev.event.as_str(), ev.data::<i64>().unwrap()),
            ("myEventResult", 3)
        );
        // `@WSBroadCast`: the others get it; the sender does not.
        let mut b = TestClient::connect(&io, "/chat", auth()).await.unwrap();
        assert_eq!(
            b.recv().await.unwrap().data::<u64>().unwrap(),
            2,
            "state on the instance"
        );
        a.emit("say", &"hi");
        let ev = b.recv().await.unwrap();
        assert_eq!(ev.event, "said");
        assert!(ev.data::<String>().unwrap().ends_with(": hi"));
        // Method-level middleware.
        let opened: String = a.send_with_ack("secret", &"sesame").await.unwrap();
        assert_eq!(opened, "opened");
        let pong: String = a.send_with_ack("ping", &()).await.unwrap();
        assert_eq!(pong, "pong");
        assert!(a.try_recv().is_none(), "nothing came back for `say`");
        b.disconnect();
        rt.sleep(SETTLE).await;
    });
    let entries = log.entries();
    assert_eq!(entries[0], "refused");
    assert_eq!(entries.iter().filter(|e| *e == "connection").count(), 2);
    assert!(entries.contains(&"packet secret".to_owned()), "{entries:?}");
    assert!(entries.contains(&"packet ping".to_owned()), "{entries:?}");
    assert_eq!(
        entries.last().map(String::as_str),
        Some("disconnect client namespace disconnect")
    );
}
