//! Fuzz target `sio_packet`. Invariant: a sequence of Engine.IO messages through one Socket.IO
//! `Decoder` gives packets, "waiting for attachments" or `SioDecodeError`, never a panic, with
//! `is_waiting` and `buffered_bytes` consistent; packets carry exactly the announced attachments;
//! event names/args agree with the payload; a packet re-encodes and decodes to the same packet.
//!
//! The check is `volley_fuzz_checks::sio_packet` (fuzz/checks/src; its module documents every
//! invariant), shared with the corpus replay test `cargo test -p volley-fuzz-checks`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz_checks::sio_packet(data));
