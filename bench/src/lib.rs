//! Volley's benchmarks: what the load generator (`loadgen`) and the reference server
//! (`reference`) share, which is string framing only.
//!
//! Neither binary uses Volley's protocol code: the load generator is its own tiny Engine.IO
//! v4 / Socket.IO v5 client, and the reference server answers the benchmark contract
//! (`examples/bench/app.rs`) by string manipulation, so that it measures what a server with
//! no protocol machinery at all would do over the same WebSocket library.
//!
//! Every benchmark message carries its send time, so that a reply's round trip is measured
//! wherever and in whatever order it arrives: `42["echo",<µs>,"<pad>"]`,
//! `42<id>["echo_ack",<µs>,"<pad>"]`, `42["broadcast",<µs>,"<pad>"]`.

pub mod procfs;
pub mod reference;
pub mod wire;
