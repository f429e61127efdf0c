//! The invariants behind Volley's fuzz targets, in one place.
//!
//! Each public function takes the raw bytes of one fuzz input and panics when an invariant of
//! `volley-core` fails; it returns normally for every input the core handles correctly, valid
//! or not. The cargo-fuzz targets in `fuzz/fuzz_targets/` are one-line calls to these
//! functions, and `tests/replay.rs` feeds every file of `fuzz/corpus/<target>/` to the
//! function of the same name, so the corpus (seeds and every crash ever fixed) is checked by
//! a plain `cargo test` on stable.
//!
//! The common invariant, after h11's fuzzing notes: whatever a peer sends is either accepted
//! or rejected with the protocol's own error type, never a panic, a hang or unbounded state;
//! an incremental decoder fed the same bytes in any chunking agrees with the whole decode;
//! whatever decodes re-encodes to something that decodes to the same value. Each module
//! states what its target adds.
//!
//! The targets that drive the state machines ([`engine`], [`engine_split`], [`sio_server`])
//! read their input with [`arbitrary`]: a sequence of operations built from structured parts,
//! so that the fuzzer spends its time on protocol states rather than on HTTP syntax. With the
//! environment variable `VOLLEY_FUZZ_DEBUG` set, they print the operations an input decodes
//! to.

#![forbid(unsafe_code)]

mod driver;
mod eio;
mod engine;
mod engine_split;
mod http;
mod msgpack;
mod sio;
mod sio_server;
mod util;

pub use eio::{eio_packet, eio_payload, jsonp};
pub use engine::engine;
pub use engine_split::engine_split;
pub use http::http_head;
pub use msgpack::sio_msgpack;
pub use sio::sio_packet;
pub use sio_server::sio_server;

/// A check: the bytes of one fuzz input in, a panic out when an invariant fails.
pub type Check = fn(&[u8]);

/// Every target by name, as its corpus folder and its cargo-fuzz binary are named.
pub const TARGETS: &[(&str, Check)] = &[
    ("eio_packet", eio_packet),
    ("eio_payload", eio_payload),
    ("jsonp", jsonp),
    ("sio_packet", sio_packet),
    ("sio_msgpack", sio_msgpack),
    ("http_head", http_head),
    ("engine", engine),
    ("engine_split", engine_split),
    ("sio_server", sio_server),
];

/// The check for the target `name`, if there is one.
pub fn check(name: &str) -> Option<Check> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
}
