// The benchmark contract, shared by the tokio and smol `bench-server` examples: namespace `/`;
// `echo` emits `echo` with the same arguments back to the sender; `echo_ack` acknowledges
// with the same arguments; `broadcast` emits `broadcast` with the same arguments to every
// socket of `/`.

use volley::runtime::Runtime;
use volley::{Io, Payload, Socket};

/// Registers the benchmark handlers.
pub fn install<R: Runtime>(io: &Io<R>) {
    let ns = io.ns("/");
    ns.on("echo", |s: Socket, args: Payload| async move {
        s.emit_payload("echo", args);
    });
    ns.on("echo_ack", |args: Payload| async move { args });
    let all = ns.all();
    ns.on("broadcast", move |args: Payload| {
        let all = all.clone();
        async move { all.emit_payload("broadcast", args) }
    });
}

/// The port from `PORT`, else `default`.
pub fn port(default: u16) -> u16 {
    std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(default)
}
