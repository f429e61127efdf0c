//! Fuzz target `eio_packet`. Invariant: one Engine.IO packet, as text (v3, v4) and as a binary
//! frame (v3, v4), decodes to a `Packet` or a `DecodeError`, never a panic; `from_ws` agrees with
//! `decode_text` / `decode_binary`; a decoded packet round-trips through its text and WebSocket
//! forms, and a text packet carrying data re-encodes to exactly its input.
//!
//! The check is `volley_fuzz_checks::eio_packet` (fuzz/checks/src; its module documents every
//! invariant), shared with the corpus replay test `cargo test -p volley-fuzz-checks`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz_checks::eio_packet(data));
