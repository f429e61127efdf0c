//! Micro-benchmarks of `volley-core`: the codecs on the message path and broadcast
//! planning. `cargo bench -p volley-bench --bench core` (criterion; `-- <filter>` to pick).

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Harness, JSON_100, text};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use volley_core::engine::payload::{Framing, decode_payload, encode_payload};
use volley_core::engine::{Message, Packet, Protocol, WsMessage};
use volley_core::socketio::packet::{DEFAULT_MAX_ATTACHMENTS, Decoder};
use volley_core::socketio::{BroadcastOptions, Packet as SioPacket, Room, SioProtocol};

/// Engine.IO packets: decoding a received text frame, encoding one for a WebSocket or a
/// polling body.
fn engine_packet(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_packet");
    let frame = text(&format!(r#"42["echo",{JSON_100}]"#));
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("decode_text_v4", |b| {
        b.iter(|| Packet::decode_text(black_box(frame.clone()), Protocol::V4))
    });
    g.bench_function("from_ws_text_v4", |b| {
        b.iter(|| Packet::from_ws(black_box(WsMessage::Text(frame.clone())), Protocol::V4))
    });
    let binary = Bytes::from(vec![7u8; 100]);
    g.bench_function("from_ws_binary_v3", |b| {
        let mut v3 = vec![4u8];
        v3.extend_from_slice(&binary);
        let v3 = Bytes::from(v3);
        b.iter(|| Packet::from_ws(black_box(WsMessage::Binary(v3.clone())), Protocol::V3))
    });
    let packet = Packet::Message(Message::Text(text(&frame[1..])));
    g.bench_function("to_ws_v4", |b| {
        b.iter(|| black_box(&packet).to_ws(Protocol::V4))
    });
    g.bench_function("encode_text_v4", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            black_box(&packet).encode_text(Protocol::V4, &mut out);
            out.len()
        })
    });
    let bin_packet = Packet::Message(Message::Binary(binary));
    g.bench_function("encode_text_binary_base64", |b| {
        let mut out = Vec::with_capacity(256);
        b.iter(|| {
            out.clear();
            black_box(&bin_packet).encode_text(Protocol::V4, &mut out);
            out.len()
        })
    });
    g.finish();
}

/// Polling bodies of 16 echo events (the default `max_packets_per_poll`).
fn engine_payload(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_payload");
    let packets: Vec<Packet> = (0..16)
        .map(|_| Packet::Message(Message::Text(text(&format!(r#"2["echo",{JSON_100}]"#)))))
        .collect();
    for (name, protocol, framing) in [
        ("v4", Protocol::V4, Framing::V4),
        ("v3_string", Protocol::V3, Framing::V3String),
    ] {
        let body = encode_payload(&packets, protocol, false).body;
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(format!("decode_16_{name}"), |b| {
            b.iter(|| decode_payload(black_box(body.clone()), framing).expect("payload"))
        });
        g.bench_function(format!("encode_16_{name}"), |b| {
            b.iter(|| encode_payload(black_box(&packets), protocol, false))
        });
    }
    let mut binary = packets.clone();
    binary.push(Packet::Message(Message::Binary(Bytes::from(vec![
        1u8;
        100
    ]))));
    let body = encode_payload(&binary, Protocol::V3, true).body;
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("decode_16+1_v3_binary", |b| {
        b.iter(|| decode_payload(black_box(body.clone()), Framing::V3Binary).expect("payload"))
    });
    g.finish();
}

/// Socket.IO packets: an event with a 100-byte JSON argument, a binary event with one
/// attachment, and encoding the echo.
fn socketio_packet(c: &mut Criterion) {
    let mut g = c.benchmark_group("socketio_packet");
    let event = text(&format!(r#"2["echo",{JSON_100}]"#));
    g.throughput(Throughput::Bytes(event.len() as u64));
    let mut decoder = Decoder::new(SioProtocol::V5, DEFAULT_MAX_ATTACHMENTS);
    g.bench_function("decode_event_100B_json", |b| {
        b.iter(|| {
            decoder
                .decode_text(black_box(event.clone()))
                .expect("event")
        })
    });
    g.bench_function("decode_event_name_and_args", |b| {
        b.iter(|| {
            let packet = decoder
                .decode_text(black_box(event.clone()))
                .expect("event")
                .expect("complete");
            let name = packet.event_name().map(|n| n.into_owned());
            (name, packet.args())
        })
    });
    let header = text(r#"51-["upload",{"name":"a.bin","data":{"_placeholder":true,"num":0}}]"#);
    let attachment = Bytes::from(vec![9u8; 1024]);
    g.bench_function("decode_binary_event_1KiB", |b| {
        b.iter(|| {
            assert!(
                decoder
                    .decode_text(black_box(header.clone()))
                    .expect("header")
                    .is_none()
            );
            decoder
                .decode_binary(black_box(attachment.clone()))
                .expect("attachment")
                .expect("complete")
        })
    });
    let args = format!("[{JSON_100}]");
    g.bench_function("encode_event_100B_json", |b| {
        b.iter(|| {
            SioPacket::event("/", "echo", black_box(&args), None, Vec::new())
                .encode(SioProtocol::V5)
        })
    });
    g.finish();
}

/// Broadcast planning with 10 000 sockets in `/`, all of them in room `all` and every
/// second one in room `half`.
fn broadcast(c: &mut Criterion) {
    let mut g = c.benchmark_group("broadcast_10k");
    g.sample_size(20).measurement_time(Duration::from_secs(4));
    let started = Instant::now();
    let mut h = Harness::new(10_000);
    let sockets: Vec<_> = h.sockets.iter().map(|(_, s)| *s).collect();
    for (i, s) in sockets.iter().enumerate() {
        h.server.join(*s, Room::new("all")).expect("join");
        if i % 2 == 0 {
            h.server.join(*s, Room::new("half")).expect("join");
        }
    }
    eprintln!("built 10k sockets in {:?}", started.elapsed());
    let everyone = BroadcastOptions::default();
    let room = BroadcastOptions {
        rooms: vec![Room::new("all")],
        ..BroadcastOptions::default()
    };
    let except = BroadcastOptions {
        except: vec![Room::new("half")],
        ..BroadcastOptions::default()
    };
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("select_namespace", |b| {
        b.iter(|| h.server.select("/", black_box(&everyone)).len())
    });
    g.bench_function("select_room", |b| {
        b.iter(|| h.server.select("/", black_box(&room)).len())
    });
    g.bench_function("select_except_half", |b| {
        b.iter(|| h.server.select("/", black_box(&except)).len())
    });
    let args = format!("[{JSON_100}]");
    // `broadcast` alone (select, encode once, queue per session); the outputs are drained
    // outside the timed part, as the driver does after the call.
    g.bench_function("broadcast_room", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                let sent = h
                    .server
                    .broadcast("/", &room, "news", black_box(&args), Vec::new(), h.now)
                    .expect("broadcast");
                spent += t.elapsed();
                assert_eq!(sent, 10_000);
                h.drain();
            }
            spent
        })
    });
    g.bench_function("broadcast_room_and_drain", |b| {
        b.iter(|| {
            h.server
                .broadcast("/", &room, "news", black_box(&args), Vec::new(), h.now)
                .expect("broadcast");
            h.drain()
        })
    });
    g.finish();
    assert_eq!(h.server.socket_count(), 10_000, "no socket was dropped");
}

/// The whole machine per message: an echo and an ack with a 100-byte JSON argument.
fn machine(c: &mut Criterion) {
    let mut g = c.benchmark_group("machine");
    let mut h = Harness::new(1);
    let conn = h.sockets[0].0;
    let echo = text(&format!(r#"42["echo",{JSON_100}]"#));
    let ack = text(&format!(r#"421["echo_ack",{JSON_100}]"#));
    g.throughput(Throughput::Elements(1));
    g.bench_function("echo_100B_json", |b| b.iter(|| h.echo(conn, &echo)));
    g.bench_function("ack_100B_json", |b| b.iter(|| h.ack(conn, &ack)));
    g.bench_function("build_1k_sockets", |b| {
        b.iter_batched(|| (), |()| Harness::new(1000), BatchSize::PerIteration)
    });
    g.finish();
}

/// The group lives in a private module: `criterion_group!` writes a `pub fn`.
mod group {
    use super::*;

    criterion_group!(
        benches,
        engine_packet,
        engine_payload,
        socketio_packet,
        broadcast,
        machine
    );
}

criterion_main!(group::benches);
