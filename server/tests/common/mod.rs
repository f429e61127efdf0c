//! Shared helpers for the API tests: a server on the test runtime, and a log to record what
//! handlers saw, in order.

#![allow(dead_code)]

pub mod raw;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use volley::Io;
use volley::testing::TestRuntime;

/// A runtime and a server built on it with a fixed seed.
pub fn setup() -> (TestRuntime, Io<TestRuntime>) {
    setup_with(volley::builder())
}

/// A runtime and a server built from `builder` (seeded, so runs repeat).
pub fn setup_with(builder: volley::Builder) -> (TestRuntime, Io<TestRuntime>) {
    let rt = TestRuntime::new();
    let io = builder.seed([7; 32]).build(rt.clone());
    (rt, io)
}

/// An ordered record of what happened, shared by handlers and the test.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&self, entry: impl Into<String>) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry.into());
    }

    pub fn entries(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Long enough for anything in flight to settle, short of any default timer.
pub const SETTLE: Duration = Duration::from_millis(100);
