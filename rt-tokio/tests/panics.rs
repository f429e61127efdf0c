//! Contained panics on tokio's multi-threaded runtime: a handler panicking before or after
//! its first await, and connection middleware, are reported and their socket disconnected;
//! the server and its other clients go on.

use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use volley::runtime::Runtime;
use volley::testing::TestClient;
use volley::{Data, DisconnectReason, HandlerPanic, Io, PanicPlace, ServerError, Socket};
use volley_tokio::TokioRuntime;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panics_are_contained_on_tokio() {
    let io = volley::builder().build(TokioRuntime::current());
    tokio::time::timeout(Duration::from_secs(10), scenario(io))
        .await
        .expect("scenario timed out");
}

/// Panics with `message` (as a function returning `()`).
fn boom(message: &str) {
    panic!("{message}");
}

/// A server whose `boom` handler panics before its first await for `0` and after one for
/// any other number, whose connection middleware panics for a client with `{"boom": true}`,
/// and that records every report and disconnect.
fn server<R: Runtime>(
    io: &Io<R>,
) -> (
    mpsc::UnboundedReceiver<HandlerPanic>,
    mpsc::UnboundedReceiver<String>,
) {
    let (reports, reported) = mpsc::unbounded();
    io.on_error(move |error: &ServerError| {
        if let ServerError::Panic(p) = error {
            let _ = reports.unbounded_send(p.clone());
        }
    });
    io.use_connect(|ctx, next| async move {
        if ctx.auth().get("boom").is_some() {
            boom("middleware panic");
        }
        next.run(ctx).await
    });
    let (lefts, left) = mpsc::unbounded();
    io.ns("/")
        .on("boom", |s: Socket, Data(n): Data<u32>| async move {
            if n > 0 {
                let _ = s.rooms().await;
            }
            boom(&format!("boom {n}"));
        })
        .on("ok", |Data(n): Data<u32>| async move { n })
        .on_disconnect(move |s: Socket, reason: DisconnectReason| {
            let _ = lefts.unbounded_send(format!("{} {}", s.id(), reason.as_str()));
            async {}
        });
    (reported, left)
}

async fn scenario<R: Runtime>(io: Io<R>) {
    let (mut reported, mut left) = server(&io);
    let mut other = TestClient::connect(&io, "/", None).await.unwrap();
    for n in [0u32, 1] {
        let mut victim = TestClient::connect(&io, "/", None).await.unwrap();
        victim.emit("boom", &n);
        assert!(victim.recv().await.is_none());
        assert_eq!(
            victim.disconnect_reason().as_deref(),
            Some("io server disconnect")
        );
        let report = reported.next().await.unwrap();
        assert_eq!(report.socket, Some(victim.id()));
        assert_eq!(report.event, "boom");
        assert_eq!(report.place, PanicPlace::Handler);
        assert_eq!(report.message, format!("boom {n}"));
        assert_eq!(
            left.next().await.unwrap(),
            format!("{} server namespace disconnect", victim.id())
        );
        io.emit("news", &n).unwrap();
        assert_eq!(other.recv().await.unwrap().event, "news");
        let r: u32 = other.emit_with_ack("ok", &n).await.unwrap();
        assert_eq!(r, n);
    }
    let refused = TestClient::connect(&io, "/", Some(serde_json::json!({"boom": true})))
        .await
        .unwrap_err();
    assert_eq!(refused.message, "server error");
    let report = reported.next().await.unwrap();
    assert_eq!(
        (report.socket, report.place),
        (None, PanicPlace::ConnectMiddleware)
    );
    assert_eq!(io.socket_count().await, 1);
}
