//! Fuzz target `http_head`. Invariant: `parse_head` on every growing prefix decides as on the whole
//! input (default and small limits), errors are 4xx/5xx closing responses, an HTTP/1.1 head rebuilt
//! with `from_parts` is identical; `BodyDecoder` for each body kind reaches the same result and
//! leaves the same bytes whether fed whole, byte by byte or chunked.
//!
//! The check is `volley_fuzz_checks::http_head` (fuzz/checks/src; its module documents every
//! invariant), shared with the corpus replay test `cargo test -p volley-fuzz-checks`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz_checks::http_head(data));
