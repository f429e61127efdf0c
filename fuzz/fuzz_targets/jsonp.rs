//! Fuzz target `jsonp`. Invariant: `jsonp::unwrap_post` gives text or
//! `InvalidJsonpBody`/`InvalidUtf8`; text it returns, written back as a canonical form body,
//! unwraps to itself; `jsonp::wrap` makes `___eio[<digits>](<JSON string of the text>);` with no
//! raw line terminator.
//!
//! The check is `volley_fuzz_checks::jsonp` (fuzz/checks/src; its module documents every
//! invariant), shared with the corpus replay test `cargo test -p volley-fuzz-checks`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz_checks::jsonp(data));
