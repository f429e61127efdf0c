//! HTTP compression of long-polling answers (`httpCompression`): gzip or deflate by
//! `Accept-Encoding`, over a threshold, and `compress(false)`.

mod common;

use common::raw::{self, Raw, open_sid};
use common::{SETTLE, setup, setup_with};
use flate2::read::{GzDecoder, ZlibDecoder};
use std::io::Read;
use std::sync::{Arc, Mutex};
use volley::Socket;
use volley::runtime::Runtime as _;
use volley::testing::TestRuntime;

/// A polling session joined to `/`: the client, the poll target, the server's socket.
async fn polling(
    io: &volley::Io<TestRuntime>,
    kept: &Arc<Mutex<Vec<Socket>>>,
) -> (Raw, String, Socket) {
    let mut c = raw::connect(io, None);
    let open = c
        .request("GET", "/socket.io/?EIO=4&transport=polling", &[], b"")
        .await;
    let sid = open_sid(&open.text());
    let target = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(c.request("POST", &target, &[], b"40").await.text(), "ok");
    let connected = c.request("GET", &target, &[], b"").await;
    assert!(connected.text().starts_with("40{"));
    let socket = kept.lock().unwrap().last().cloned().expect("connected");
    (c, target, socket)
}

fn keep(io: &volley::Io<TestRuntime>) -> Arc<Mutex<Vec<Socket>>> {
    let kept = Arc::new(Mutex::new(Vec::new()));
    let k = kept.clone();
    io.ns("/").on_connection(move |s: Socket| {
        let k = k.clone();
        async move { k.lock().unwrap().push(s) }
    });
    kept
}

fn gunzip(body: &[u8]) -> String {
    let mut out = String::new();
    GzDecoder::new(body).read_to_string(&mut out).expect("gzip");
    out
}

fn inflate(body: &[u8]) -> String {
    let mut out = String::new();
    ZlibDecoder::new(body)
        .read_to_string(&mut out)
        .expect("zlib");
    out
}

#[test]
fn a_large_poll_answer_is_compressed_as_the_client_prefers() {
    let (rt, io) = setup();
    let kept = keep(&io);
    let big = "x".repeat(2000);
    rt.block_on(async {
        let (mut c, target, socket) = polling(&io, &kept).await;
        // gzip.
        socket.emit("big", &big).unwrap();
        let r = c
            .request("GET", &target, &[("Accept-Encoding", "gzip, deflate")], b"")
            .await;
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert!(r.body.len() < 200, "compressed: {} bytes", r.body.len());
        assert_eq!(gunzip(&r.body), format!("42[\"big\",\"{big}\"]"));
        // deflate when preferred.
        socket.emit("big", &big).unwrap();
        let r = c
            .request(
                "GET",
                &target,
                &[("Accept-Encoding", "gzip;q=0.5, deflate")],
                b"",
            )
            .await;
        assert_eq!(r.header("content-encoding"), Some("deflate"));
        assert_eq!(inflate(&r.body), format!("42[\"big\",\"{big}\"]"));
        // No Accept-Encoding: as it is.
        socket.emit("big", &big).unwrap();
        let r = c.request("GET", &target, &[], b"").await;
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.text(), format!("42[\"big\",\"{big}\"]"));
        // Below the threshold: as it is.
        socket.emit("small", "hi").unwrap();
        let r = c
            .request("GET", &target, &[("Accept-Encoding", "gzip")], b"")
            .await;
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.text(), "42[\"small\",\"hi\"]");
    });
}

#[test]
fn compression_can_be_turned_off_or_given_another_threshold() {
    let big = "y".repeat(2000);
    for (threshold, expect) in [(None, None), (Some(10), Some("gzip"))] {
        let (rt, io) = setup_with(volley::builder().http_compression(threshold));
        let kept = keep(&io);
        rt.block_on(async {
            let (mut c, target, socket) = polling(&io, &kept).await;
            socket.emit("msg", "a little over ten").unwrap();
            let r = c
                .request("GET", &target, &[("Accept-Encoding", "gzip")], b"")
                .await;
            assert_eq!(r.header("content-encoding"), expect, "{threshold:?}");
            socket.emit("msg", &big).unwrap();
            let r = c
                .request("GET", &target, &[("Accept-Encoding", "gzip")], b"")
                .await;
            assert_eq!(r.header("content-encoding"), expect, "{threshold:?}");
        });
    }
}

#[test]
fn answers_to_posts_are_not_compressed() {
    let (rt, io) = setup();
    let kept = keep(&io);
    rt.block_on(async {
        let (mut c, target, _socket) = polling(&io, &kept).await;
        // A POST's "ok" and the handshake are not polls worth compressing.
        let big = format!("42[\"e\",\"{}\"]", "z".repeat(3000));
        let r = c
            .request(
                "POST",
                &target,
                &[("Accept-Encoding", "gzip")],
                big.as_bytes(),
            )
            .await;
        assert_eq!(r.text(), "ok");
        assert_eq!(r.header("content-encoding"), None);
        rt.sleep(SETTLE).await;
    });
}

#[test]
fn packets_sent_with_compress_false_keep_their_poll_answer_uncompressed() {
    let (rt, io) = setup();
    let kept = keep(&io);
    let big = "w".repeat(2000);
    let gzip = [("Accept-Encoding", "gzip")];
    rt.block_on(async {
        let (mut c, target, socket) = polling(&io, &kept).await;
        let packet = format!("42[\"big\",\"{big}\"]");
        // Only a compress(false) packet: as it is.
        socket.compress(false).emit("big", &big).unwrap();
        let r = c.request("GET", &target, &gzip, b"").await;
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.text(), packet);
        // The flag lasts for that answer only.
        socket.emit("big", &big).unwrap();
        let r = c.request("GET", &target, &gzip, b"").await;
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        // With a packet that allows compression in the same answer: compressed, as the
        // reference does when any packet of a payload allows it.
        socket.compress(false).emit("big", &big).unwrap();
        socket.compress(true).emit("big", &big).unwrap();
        rt.sleep(SETTLE).await;
        let r = c.request("GET", &target, &gzip, b"").await;
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(gunzip(&r.body), format!("{packet}\x1e{packet}"));
        // Broadcasts: io.compress(false) too.
        io.compress(false).emit("big", &big).unwrap();
        let r = c.request("GET", &target, &gzip, b"").await;
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.text(), packet);
        io.to(socket.id()).emit("big", &big).unwrap();
        let r = c.request("GET", &target, &gzip, b"").await;
        assert_eq!(r.header("content-encoding"), Some("gzip"));
    });
}

#[test]
fn a_parked_poll_answered_by_a_compress_false_packet_stays_uncompressed() {
    let (rt, io) = setup();
    let kept = keep(&io);
    let big = "v".repeat(2000);
    rt.block_on(async {
        let (mut c, target, socket) = polling(&io, &kept).await;
        let b = big.clone();
        let s = socket.clone();
        let r2 = rt.clone();
        rt.spawn(async move {
            r2.sleep(SETTLE).await;
            s.compress(false).emit("big", &b).unwrap();
        });
        // The GET parks, then the packet answers it.
        let r = c
            .request("GET", &target, &[("Accept-Encoding", "gzip")], b"")
            .await;
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.text(), format!("42[\"big\",\"{big}\"]"));
    });
}
