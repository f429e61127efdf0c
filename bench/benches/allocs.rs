//! Heap allocations per echoed message, counted by a global allocator:
//! `cargo bench -p volley-bench --bench allocs` prints one table.
//!
//! The steps are those of the core on the message path, each run many times and divided:
//! the Engine.IO frame decoded, the Socket.IO event decoded, its name and arguments taken,
//! the echo built, encoded and framed; then the whole machine (`socketio::Server`) for an
//! echo, an ack, and a broadcast to 1 000 sockets.
// The counting allocator is the one piece of unsafe code in the crate: a `GlobalAlloc`
// that forwards to the system allocator.
#![allow(unsafe_code)]

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};

use common::{Harness, JSON_100, text};
use volley_core::engine::{Message, Packet, Protocol, WsMessage};
use volley_core::socketio::packet::{DEFAULT_MAX_ATTACHMENTS, Decoder};
use volley_core::socketio::{BroadcastOptions, Packet as SioPacket, SioProtocol};

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

/// The system allocator, counting allocations (a `realloc` counts as one) and bytes asked.
struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds exactly as it does for `System`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const ROUNDS: u64 = 10_000;

/// Allocations and bytes per call of `f`, over `ROUNDS` calls after one warm-up call.
fn per_call(f: impl FnMut()) -> (f64, f64) {
    per_calls(ROUNDS, f)
}

/// [`per_call`] over `rounds` calls.
fn per_calls(rounds: u64, mut f: impl FnMut()) -> (f64, f64) {
    f();
    let (a, b) = (
        ALLOCATIONS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    for _ in 0..rounds {
        f();
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - a;
    let bytes = BYTES.load(Ordering::Relaxed) - b;
    (
        allocations as f64 / rounds as f64,
        bytes as f64 / rounds as f64,
    )
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter this binary ignores.
    let frame = text(&format!(r#"42["echo",{JSON_100}]"#));
    let sio = text(&frame[1..]);
    let args = text(&format!("[{JSON_100}]"));
    let mut decoder = Decoder::new(SioProtocol::V5, DEFAULT_MAX_ATTACHMENTS);
    let decoded = decoder
        .decode_text(sio.clone())
        .expect("event")
        .expect("complete");
    let mut rows: Vec<(&str, (f64, f64))> = Vec::new();

    rows.push((
        "Engine.IO: text frame -> Packet (Packet::from_ws)",
        per_call(|| {
            black_box(Packet::from_ws(
                WsMessage::Text(frame.clone()),
                Protocol::V4,
            ))
            .expect("packet");
        }),
    ));
    rows.push((
        "Socket.IO: event text -> Packet (Decoder::decode_text)",
        per_call(|| {
            black_box(decoder.decode_text(sio.clone()))
                .expect("event")
                .expect("complete");
        }),
    ));
    rows.push((
        "Socket.IO: event_name().into_owned() + args()",
        per_call(|| {
            black_box(decoded.event_name().map(|n| n.into_owned()));
            black_box(decoded.args());
        }),
    ));
    rows.push((
        "Socket.IO: Packet::event(echo) + encode(V5)",
        per_call(|| {
            black_box(
                SioPacket::event("/", "echo", &args, None, Vec::new()).encode(SioProtocol::V5),
            );
        }),
    ));
    let encoded = SioPacket::event("/", "echo", &args, None, Vec::new())
        .encode(SioProtocol::V5)
        .0;
    rows.push((
        "Engine.IO: Message -> text frame (Packet::to_ws)",
        per_call(|| {
            black_box(Packet::Message(Message::Text(encoded.clone())).to_ws(Protocol::V4));
        }),
    ));
    rows.push((
        "codec path: decode event + encode echo (the five above)",
        per_call(|| {
            let packet =
                Packet::from_ws(WsMessage::Text(frame.clone()), Protocol::V4).expect("packet");
            let Packet::Message(Message::Text(text)) = packet else {
                panic!("a text message");
            };
            let event = decoder.decode_text(text).expect("event").expect("complete");
            let name = event.event_name().map(|n| n.into_owned()).expect("name");
            let args = event.args().expect("args");
            let (out, _) =
                SioPacket::event("/", &name, &args, None, Vec::new()).encode(SioProtocol::V5);
            black_box(Packet::Message(Message::Text(out)).to_ws(Protocol::V4));
        }),
    ));

    let mut h = Harness::new(1);
    let conn = h.sockets[0].0;
    rows.push((
        "machine: echo (handle_ws_message .. emit .. poll_output .. drained)",
        per_call(|| h.echo(conn, &frame)),
    ));
    let ack = text(&format!(r#"421["echo_ack",{JSON_100}]"#));
    rows.push((
        "machine: ack (handle_ws_message .. ack .. poll_output .. drained)",
        per_call(|| h.ack(conn, &ack)),
    ));

    let mut many = Harness::new(1000);
    let all = BroadcastOptions::default();
    let (allocations, bytes) = per_calls(200, || {
        many.server
            .broadcast("/", &all, "news", &args, Vec::new(), many.now)
            .expect("broadcast");
        many.drain();
    });
    rows.push((
        "machine: broadcast to 1 000 sockets + drain, per recipient",
        (allocations / 1000.0, bytes / 1000.0),
    ));

    println!("| step (100-byte JSON argument) | allocations / message | bytes / message |");
    println!("| --- | ---: | ---: |");
    for (name, (allocations, bytes)) in rows {
        println!("| {name} | {allocations:.2} | {bytes:.0} |");
    }
}
