//! Fuzz target `sio_msgpack`. Invariant: one MessagePack message decodes to a packet or an
//! `SioDecodeError`, never a panic; a packet is valid and survives encode then decode.
//!
//! The check is `volley_fuzz_checks::sio_msgpack` (fuzz/checks/src/msgpack.rs), shared with
//! the corpus replay test `cargo test -p volley-fuzz-checks`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz_checks::sio_msgpack(data));
