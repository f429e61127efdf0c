//! Fuzz target `engine`. Invariant: driving `engine::Engine` like a runtime (structured requests,
//! bodies, WebSocket messages, closed connections, clock jumps, send/close) never panics or
//! livelocks; outputs fit each connection's state; `ApiMisuse` exactly on misuse; the engine holds
//! exactly the busy connections; sessions match the events and each has one timer; responses and
//! sends decode; `poll_timeout` is after `now` once `handle_timeout(now)` ran; after closing every
//! connection and running out the clock, every count is zero.
//!
//! The check is `volley_fuzz_checks::engine` (fuzz/checks/src; its module documents every
//! invariant), shared with the corpus replay test `cargo test -p volley-fuzz-checks`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz_checks::engine(data));
