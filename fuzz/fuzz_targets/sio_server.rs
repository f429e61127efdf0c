//! Fuzz target `sio_server`. Invariant: the same as `engine` over `socketio::Server`, with
//! Socket.IO client packets and the application's commands (accept/reject, emit, ack, rooms,
//! broadcast, disconnect); sockets, pending acks and connect requests match the events; commands
//! fail exactly on what is gone; at the end clients, sockets, acks, requests, timers and cleaned-up
//! namespaces are all gone.
//!
//! The check is `volley_fuzz_checks::sio_server` (fuzz/checks/src; its module documents every
//! invariant), shared with the corpus replay test `cargo test -p volley-fuzz-checks`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz_checks::sio_server(data));
