//! Fuzz target `engine_split`. Invariant: the same structured input (as for `engine`) driven
//! through an `engine::Engine` and through an `engine::Endpoint` with a hand-kept table of
//! `engine::Session`s gives identical call results, outputs, events, deadlines and counts
//! after every step, and neither panics.
//!
//! The check is `volley_fuzz_checks::engine_split` (fuzz/checks/src; its module documents the
//! invariant), shared with the corpus replay test `cargo test -p volley-fuzz-checks`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz_checks::engine_split(data));
