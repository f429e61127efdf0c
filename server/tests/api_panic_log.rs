//! A contained panic is logged at error level with `tracing`, with the socket, the event and
//! the panic's message. Alone in its test binary: a thread-local subscriber only sees every
//! event when no other test registers the same call sites from other threads meanwhile.

mod common;

use common::setup;
use std::sync::{Arc, Mutex};
use volley::testing::TestClient;
use volley::{Data, Socket};

/// Records the events logged at error level, as `field=value` lines.
#[derive(Clone, Default)]
struct ErrorLog(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl tracing::Subscriber for ErrorLog {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::ERROR {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn a_caught_panic_is_logged_at_error_level() {
    let errors = ErrorLog::default();
    let _logging = tracing::subscriber::set_default(errors.clone());
    let (rt, io) = setup();
    io.ns("/")
        .on("boom", |_s: Socket, Data(n): Data<u32>| async move {
            if n == 1 {
                panic!("logged panic");
            }
        });
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        a.emit("boom", &1);
        assert!(a.recv().await.is_none());
        let logged = errors.0.lock().unwrap().clone();
        assert_eq!(logged.len(), 1, "{logged:?}");
        for part in [
            &format!("socket=Some(SocketId({}))", a.id()),
            "namespace=/",
            "event=boom",
            "place=\"event handler\"",
            "panic=logged panic",
        ] {
            assert!(logged[0].contains(part), "{part} not in {}", logged[0]);
        }
    });
}
