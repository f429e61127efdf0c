//! The spans and events Volley logs, captured with a test subscriber: the per-connection
//! `conn` span (id, peer, transport), the per-socket `socket` span its handlers run in (id,
//! namespace, session, transport), and the events for refusals and disconnects. Alone in its
//! test binary: a thread-local subscriber only sees every event when no other test registers
//! the same call sites from other threads meanwhile.

mod common;

use common::{SETTLE, setup};
use futures::{AsyncReadExt, AsyncWriteExt};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tracing::span;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};
use volley::runtime::Runtime as _;
use volley::testing::{ConnectOptions, TestClient, TransportKind, pipe};
use volley::{ConnectError, Socket};

type Fields = BTreeMap<String, String>;

/// One event: its message and fields, and the spans around it (innermost first), each with
/// its name and fields.
#[derive(Debug, Clone)]
struct Logged {
    level: tracing::Level,
    fields: Fields,
    spans: Vec<(String, Fields)>,
}

impl Logged {
    fn message(&self) -> &str {
        self.fields.get("message").map_or("", String::as_str)
    }

    fn span(&self, name: &str) -> Option<&Fields> {
        self.spans.iter().find(|(n, _)| n == name).map(|(_, f)| f)
    }
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Logged>>>);

impl Capture {
    fn events(&self) -> Vec<Logged> {
        self.0.lock().unwrap().clone()
    }

    fn find(&self, message: &str) -> Vec<Logged> {
        self.events()
            .into_iter()
            .filter(|e| e.message() == message)
            .collect()
    }
}

struct Visitor<'a>(&'a mut Fields);

impl tracing::field::Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        attrs.record(&mut Visitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(fields) = ext.get_mut::<Fields>() {
                values.record(&mut Visitor(fields));
            }
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::new();
        event.record(&mut Visitor(&mut fields));
        let spans = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .map(|s| {
                        let f = s.extensions().get::<Fields>().cloned().unwrap_or_default();
                        (s.name().to_owned(), f)
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.0.lock().unwrap().push(Logged {
            level: *event.metadata().level(),
            fields,
            spans,
        });
    }
}

#[test]
fn spans_and_events_carry_their_fields() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(Registry::default().with(capture.clone()));
    let (rt, io) = setup();
    io.use_connect(|ctx, next| async move {
        if ctx.auth()["token"] == json!("bad") {
            return Err(ConnectError::new("refused"));
        }
        next.run(ctx).await
    });
    io.ns("/chat").on("hello", |_s: Socket| async move {
        tracing::info!("in the handler");
    });
    rt.block_on(async {
        for transport in [TransportKind::WebSocket, TransportKind::Polling] {
            let options = ConnectOptions::new().transport(transport);
            let c = TestClient::connect_with(&io, "/chat", options).await.unwrap();
            c.emit("hello", &());
            rt.sleep(SETTLE).await;
            let logged = capture.find("in the handler");
            assert_eq!(logged.len(), 1, "{transport:?}: {logged:?}");
            let socket = logged[0].span("socket").expect("the socket span");
            assert_eq!(socket["id"], c.id().to_string());
            assert_eq!(socket["nsp"], "/chat");
            assert_eq!(Some(&socket["sid"]), c.sid().as_ref());
            assert_eq!(socket["transport"], format!("{transport:?}"));
            let id = c.id().to_string();
            let joined = capture.find("socket connected");
            assert_eq!(joined.len(), 1, "{joined:?}");
            assert_eq!((&joined[0].fields["socket"], &*joined[0].fields["nsp"]), (&id, "/chat"));
            c.close();
            rt.sleep(SETTLE).await;

            // The disconnect is logged with the socket, namespace and reason.
            let gone = capture.find("socket disconnected");
            let gone = gone.last().expect("a disconnect event");
            assert_eq!(gone.fields["socket"], id);
            assert_eq!(gone.fields["nsp"], "/chat");
            assert_eq!(gone.fields["reason"], "transport close");
            capture.0.lock().unwrap().clear();
        }

        // The WebSocket's connection span: id and transport.
        let c = TestClient::connect(&io, "/chat", None).await.unwrap();
        rt.sleep(SETTLE).await;
        let open = capture.find("websocket open");
        let conn = open[0].span("conn").expect("the conn span");
        assert!(conn["id"].parse::<u64>().is_ok(), "{conn:?}");
        assert_eq!(conn["transport"], "websocket");
        c.close();

        // A CONNECT the middleware refused.
        assert!(
            TestClient::connect(&io, "/chat", Some(json!({"token": "bad"})))
                .await
                .is_err()
        );
        rt.sleep(SETTLE).await;
        let refused = capture.find("refused");
        assert_eq!(refused.len(), 1, "{refused:?}");
        assert_eq!(refused[0].fields["code"], "connect_error");

        // An Engine.IO refusal: unknown transport, code 0.
        let (client, server) = pipe();
        let driver = io.driver().clone();
        rt.spawn(async move { driver.serve_connection(server, None).await });
        let mut client = client;
        client
            .write_all(b"GET /socket.io/?EIO=4&transport=pigeon HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = client.read_to_end(&mut answer).await;
        assert!(answer.starts_with(b"HTTP/1.1 400"));
        let refused = capture.find("refused");
        assert_eq!(refused.len(), 2, "{refused:?}");
        assert_eq!(refused[1].fields["code"], "0");
        assert_eq!(refused[1].level, tracing::Level::DEBUG);
    });
}
