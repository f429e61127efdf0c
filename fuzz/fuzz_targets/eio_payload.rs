//! Fuzz target `eio_payload`. Invariant: one polling body, in each framing (v4, v3 string, v3
//! XHR2), decodes to packets or a `DecodeError`; `PayloadDecoder` fed byte by byte or in any
//! chunking gives the same result (and repeats its first error); decoded packets re-encode to a
//! body that decodes to the same packets.
//!
//! The check is `volley_fuzz_checks::eio_payload` (fuzz/checks/src; its module documents every
//! invariant), shared with the corpus replay test `cargo test -p volley-fuzz-checks`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| volley_fuzz_checks::eio_payload(data));
