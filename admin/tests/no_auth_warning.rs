//! `auth: false` is only `Options::no_auth()`, and it is logged at warn level. Alone in its
//! test binary: a thread-local subscriber only sees every event when no other test
//! registers the same call sites from other threads meanwhile.

use std::sync::{Arc, Mutex};
use volley::testing::TestRuntime;
use volley_admin::{Options, instrument};

/// Records the messages of events at warn level.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

impl tracing::Subscriber for Warnings {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut m = Message(String::new());
            event.record(&mut m);
            self.0.lock().unwrap().push(m.0);
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn disabled_authentication_is_logged_at_warn_level() {
    let warnings = Warnings::default();
    let _guard = tracing::subscriber::set_default(warnings.clone());
    let rt = TestRuntime::new();
    let io = volley::builder().build(rt.clone());
    instrument(&io, Options::basic("admin", &bcrypt::hash("x", 4).unwrap())).unwrap();
    assert!(warnings.0.lock().unwrap().is_empty());
    let io = volley::builder().build(rt.clone());
    instrument(&io, Options::no_auth()).unwrap();
    let logged = warnings.0.lock().unwrap().clone();
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(
        logged[0].contains("authentication is disabled"),
        "{logged:?}"
    );
}
