//! The wire format against bytes built by hand from the reference adapter's formats, and
//! round trips.

use bytes::Bytes;
use std::time::Duration;
use volley_core::cluster::{ClusterMessage, HandshakeInfo, SocketInfo};
use volley_core::socketio::{BroadcastOptions, Room};
use volley_core::{NodeId, RequestId, SocketId};
use volley_redis::codec::{Codec, Decoded, js_date_string, unknown_node};
use volley_redis::sharded::{ShardedCodec, SubscriptionMode};

fn node(s: &str) -> NodeId {
    NodeId::new(s).unwrap()
}

fn req(s: &str) -> RequestId {
    RequestId::new(s).unwrap()
}

fn opts(rooms: &[&str], except: &[&str]) -> BroadcastOptions {
    BroadcastOptions {
        rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
        except: except.iter().map(|r| Room::from(*r)).collect(),
        ..BroadcastOptions::default()
    }
}

fn decode(codec: &Codec, me: &str, channel: &str, payload: &[u8]) -> (NodeId, ClusterMessage) {
    match codec.decode(node(me), channel, payload).unwrap() {
        Decoded::Message { from, message } => (from, message),
        Decoded::Ignored => panic!("ignored"),
    }
}

/// What `notepack.encode(["abc", {type: 2, data: ["hi", 1], nsp: "/"}, {rooms: [], except:
/// [], flags: {}}])` writes.
#[test]
fn broadcast_golden_bytes() {
    let msg = ClusterMessage::Broadcast {
        nsp: "/".into(),
        opts: opts(&[], &[]),
        event: "hi".into(),
        args: "[1]".into(),
        attachments: vec![],
        ack: None,
        timeout: None,
    };
    let out = Codec::default().encode(node("abc"), None, "", &msg);
    assert_eq!(out.channel, "socket.io#/#");
    let mut want = vec![0x93, 0xa3, b'a', b'b', b'c'];
    want.extend([0x83, 0xa4]);
    want.extend(b"type");
    want.push(0x02);
    want.push(0xa4);
    want.extend(b"data");
    want.extend([0x92, 0xa2, b'h', b'i', 0x01]);
    want.push(0xa3);
    want.extend(b"nsp");
    want.extend([0xa1, b'/']);
    want.push(0x83);
    want.push(0xa5);
    want.extend(b"rooms");
    want.push(0x90);
    want.push(0xa6);
    want.extend(b"except");
    want.push(0x90);
    want.push(0xa5);
    want.extend(b"flags");
    want.push(0x80);
    assert_eq!(out.payload, want);
    let (from, back) = decode(&Codec::default(), "me", &out.channel, &out.payload);
    assert_eq!(from, node("abc"));
    assert_eq!(back, msg);
}

#[test]
fn one_room_goes_to_the_room_channel_and_binary_is_bin() {
    let msg = ClusterMessage::Broadcast {
        nsp: "/chat".into(),
        opts: BroadcastOptions {
            volatile: true,
            ..opts(&["news"], &["x"])
        },
        event: "file".into(),
        args: r#"[{"_placeholder":true,"num":0},2.5,-3]"#.into(),
        attachments: vec![Bytes::from_static(b"\x01\x02")],
        ack: None,
        timeout: None,
    };
    let codec = Codec::new("pfx");
    let out = codec.encode(node("n1"), None, "", &msg);
    assert_eq!(out.channel, "pfx#/chat#news#");
    // bin8 of two bytes, float64 2.5, negative fixint -3.
    let p = &out.payload;
    assert!(p.windows(4).any(|w| w == [0xc4, 0x02, 0x01, 0x02]));
    assert!(
        p.windows(9)
            .any(|w| w == [0xcb, 0x40, 0x04, 0, 0, 0, 0, 0, 0])
    );
    assert!(p.contains(&0xfd));
    let (_, back) = decode(&codec, "me", &out.channel, p);
    assert_eq!(back, msg);
}

#[test]
fn own_messages_and_foreign_answers_are_ignored() {
    let codec = Codec::default();
    let msg = ClusterMessage::AllRooms {
        request: req("r1"),
        nsp: "/".into(),
    };
    let out = codec.encode(node("me"), None, "", &msg);
    assert_eq!(
        codec.decode(node("me"), &out.channel, &out.payload),
        Ok(Decoded::Ignored)
    );
    let answer = ClusterMessage::AllRoomsResponse {
        request: req("r1"),
        rooms: vec!["a".into()],
    };
    let out = codec.encode(node("x"), Some(node("other")), "/", &answer);
    assert_eq!(out.channel, "socket.io-response#/#other#");
    assert_eq!(
        codec.decode(node("me"), &out.channel, &out.payload),
        Ok(Decoded::Ignored)
    );
    let (_, back) = decode(&codec, "other", &out.channel, &out.payload);
    assert_eq!(back, answer);
}

/// Requests exactly as the reference writes them with `JSON.stringify`.
#[test]
fn reference_json_requests() {
    let codec = Codec::default();
    let ch = "socket.io-request#/#";
    let (from, m) = decode(
        &codec,
        "me",
        ch,
        br#"{"uid":"Ab12Cd","type":2,"opts":{"rooms":["a"],"except":[]},"rooms":["r1","r2"]}"#,
    );
    assert_eq!(from, node("Ab12Cd"));
    assert_eq!(
        m,
        ClusterMessage::SocketsJoin {
            nsp: "/".into(),
            opts: opts(&["a"], &[]),
            rooms: vec!["r1".into(), "r2".into()]
        }
    );
    let (_, m) = decode(
        &codec,
        "me",
        ch,
        br#"{"uid":"u","type":3,"opts":{"rooms":[],"except":["b"]},"rooms":["r"]}"#,
    );
    assert_eq!(
        m,
        ClusterMessage::SocketsLeave {
            nsp: "/".into(),
            opts: opts(&[], &["b"]),
            rooms: vec!["r".into()]
        }
    );
    let (_, m) = decode(
        &codec,
        "me",
        ch,
        br#"{"uid":"u","type":4,"opts":{"rooms":["a"],"except":[]},"close":true}"#,
    );
    assert_eq!(
        m,
        ClusterMessage::DisconnectSockets {
            nsp: "/".into(),
            opts: opts(&["a"], &[]),
            close: true
        }
    );
    let (_, m) = decode(
        &codec,
        "me",
        ch,
        br#"{"uid":"u","requestId":"q1","type":5,"opts":{"rooms":[],"except":[]}}"#,
    );
    assert_eq!(
        m,
        ClusterMessage::FetchSockets {
            request: req("q1"),
            nsp: "/".into(),
            opts: opts(&[], &[])
        }
    );
    let (_, m) = decode(
        &codec,
        "me",
        "socket.io-request#/admin#",
        br#"{"uid":"u","requestId":"q2","type":1}"#,
    );
    assert_eq!(
        m,
        ClusterMessage::AllRooms {
            request: req("q2"),
            nsp: "/admin".into()
        }
    );
    let (_, m) = decode(
        &codec,
        "me",
        ch,
        br#"{"uid":"u","requestId":"q3","type":6,"data":["hello",{"a":1}]}"#,
    );
    assert_eq!(
        m,
        ClusterMessage::ServerSideEmit {
            nsp: "/".into(),
            event: "hello".into(),
            args: r#"[{"a":1}]"#.into(),
            attachments: vec![],
            request: Some(req("q3"))
        }
    );
    // Legacy SOCKETS and unknown types are ignored.
    assert_eq!(
        codec.decode(
            node("me"),
            ch,
            br#"{"uid":"u","requestId":"q","type":0,"rooms":[]}"#
        ),
        Ok(Decoded::Ignored)
    );
    assert!(codec.decode(node("me"), ch, b"\xc1").is_err());
}

/// `@socket.io/redis-emitter`'s `socketsJoin`, `socketsLeave` and `disconnectSockets` send
/// no `uid`; the reference adapter applies them, and so does this codec.
#[test]
fn emitter_requests_without_uid() {
    let codec = Codec::default();
    let ch = "socket.io-request#/#";
    let (from, m) = decode(
        &codec,
        "me",
        ch,
        br#"{"type":2,"opts":{"rooms":["red"],"except":[]},"rooms":["green"]}"#,
    );
    assert_eq!(from, unknown_node());
    assert_eq!(
        m,
        ClusterMessage::SocketsJoin {
            nsp: "/".into(),
            opts: opts(&["red"], &[]),
            rooms: vec!["green".into()]
        }
    );
    let (_, m) = decode(
        &codec,
        "me",
        ch,
        br#"{"type":3,"opts":{"rooms":[],"except":[]},"rooms":["green"]}"#,
    );
    assert_eq!(
        m,
        ClusterMessage::SocketsLeave {
            nsp: "/".into(),
            opts: opts(&[], &[]),
            rooms: vec!["green".into()]
        }
    );
    let (_, m) = decode(
        &codec,
        "me",
        ch,
        br#"{"type":4,"opts":{"rooms":["x"],"except":[]},"close":false}"#,
    );
    assert_eq!(
        m,
        ClusterMessage::DisconnectSockets {
            nsp: "/".into(),
            opts: opts(&["x"], &[]),
            close: false
        }
    );
    // Not a request at all is still an error.
    assert!(codec.decode(node("me"), ch, b"[1,2]").is_err());
}

/// Volley's requests are the reference's JSON, key order included.
#[test]
fn encoded_requests_are_reference_json() {
    let codec = Codec::default();
    let me = node("Ab12Cd");
    let out = codec.encode(
        me,
        None,
        "",
        &ClusterMessage::FetchSockets {
            request: req("q1"),
            nsp: "/".into(),
            opts: opts(&["a"], &[]),
        },
    );
    assert_eq!(out.channel, "socket.io-request#/#");
    assert_eq!(
        std::str::from_utf8(&out.payload).unwrap(),
        r#"{"uid":"Ab12Cd","requestId":"q1","type":5,"opts":{"rooms":["a"],"except":[]}}"#
    );
    let out = codec.encode(
        me,
        None,
        "",
        &ClusterMessage::DisconnectSockets {
            nsp: "/".into(),
            opts: opts(&[], &[]),
            close: false,
        },
    );
    assert_eq!(
        std::str::from_utf8(&out.payload).unwrap(),
        r#"{"uid":"Ab12Cd","type":4,"opts":{"rooms":[],"except":[]},"close":false}"#
    );
    let out = codec.encode(
        me,
        None,
        "",
        &ClusterMessage::ServerSideEmit {
            nsp: "/".into(),
            event: "e".into(),
            args: "[1]".into(),
            attachments: vec![],
            request: None,
        },
    );
    assert_eq!(
        std::str::from_utf8(&out.payload).unwrap(),
        r#"{"uid":"Ab12Cd","type":6,"data":["e",1]}"#
    );
    let out = codec.encode(
        me,
        Some(node("zz")),
        "/",
        &ClusterMessage::BroadcastClientCount {
            request: req("q9"),
            count: 3,
        },
    );
    assert_eq!(out.channel, "socket.io-response#/#zz#");
    assert_eq!(
        std::str::from_utf8(&out.payload).unwrap(),
        r#"{"type":8,"requestId":"q9","clientCount":3,"uid":"Ab12Cd"}"#
    );
}

/// Answers as the reference writes them (no `uid`): JSON and MessagePack.
#[test]
fn reference_answers() {
    let codec = Codec::default();
    let ch = "socket.io-response#/#";
    let (from, m) = decode(&codec, "me", ch, br#"{"requestId":"q","rooms":["a","b"]}"#);
    assert_eq!(from, unknown_node());
    assert_eq!(
        m,
        ClusterMessage::AllRoomsResponse {
            request: req("q"),
            rooms: vec!["a".into(), "b".into()]
        }
    );
    let (_, m) = decode(
        &codec,
        "me",
        ch,
        br#"{"type":8,"requestId":"q","clientCount":2}"#,
    );
    assert_eq!(
        m,
        ClusterMessage::BroadcastClientCount {
            request: req("q"),
            count: 2
        }
    );
    let (_, m) = decode(
        &codec,
        "me",
        ch,
        br#"{"type":6,"requestId":"q","data":"pong"}"#,
    );
    assert_eq!(
        m,
        ClusterMessage::ServerSideEmitResponse {
            request: req("q"),
            args: r#"["pong"]"#.into(),
            attachments: vec![]
        }
    );
    // notepack.encode({type: 9, requestId: "q", packet: "ok"})
    let mut ack = vec![0x83, 0xa4];
    ack.extend(b"type");
    ack.push(0x09);
    ack.push(0xa9);
    ack.extend(b"requestId");
    ack.extend([0xa1, b'q', 0xa6]);
    ack.extend(b"packet");
    ack.extend([0xa2, b'o', b'k']);
    let (_, m) = decode(&codec, "me", ch, &ack);
    match m {
        ClusterMessage::BroadcastAck { request, args, .. } => {
            assert_eq!(request, req("q"));
            assert_eq!(args, r#"["ok"]"#);
        }
        other => panic!("{other:?}"),
    }
    let sockets = br#"{"requestId":"q","sockets":[{"id":"s1","handshake":{"headers":{"host":"x","accept":["a","b"]},"time":"t","address":"::1","xdomain":false,"secure":true,"issued":1700000000000,"url":"/socket.io/?EIO=4","query":{"EIO":"4"},"auth":{"token":"t"}},"rooms":["s1","r"],"data":{"n":1}}]}"#;
    let (_, m) = decode(&codec, "me", ch, sockets);
    let ClusterMessage::FetchSocketsResponse { sockets, .. } = m else {
        panic!()
    };
    assert_eq!(sockets[0].id, "s1");
    assert_eq!(sockets[0].rooms, vec!["s1", "r"]);
    assert_eq!(sockets[0].data, r#"{"n":1}"#);
    assert_eq!(
        sockets[0].handshake.headers,
        vec![
            ("host".into(), "x".into()),
            ("accept".into(), "a, b".into())
        ]
    );
    assert_eq!(sockets[0].handshake.issued, 1_700_000_000_000);
    assert!(sockets[0].handshake.secure);
    assert_eq!(sockets[0].handshake.auth, r#"{"token":"t"}"#);
}

fn all_messages() -> Vec<ClusterMessage> {
    let o = BroadcastOptions {
        compress: true,
        ..opts(&["a", "b"], &["c"])
    };
    vec![
        ClusterMessage::Broadcast {
            nsp: "/".into(),
            opts: o.clone(),
            event: "e".into(),
            args: r#"[1,"x",{"k":[true,null]},{"_placeholder":true,"num":0}]"#.into(),
            attachments: vec![Bytes::from_static(b"bin")],
            ack: None,
            timeout: None,
        },
        ClusterMessage::Broadcast {
            nsp: "/n".into(),
            opts: o.clone(),
            event: "e".into(),
            args: "[]".into(),
            attachments: vec![],
            ack: Some(req("r1")),
            timeout: Some(Duration::from_millis(1500)),
        },
        ClusterMessage::BroadcastClientCount {
            request: req("r1"),
            count: 4,
        },
        ClusterMessage::BroadcastAck {
            request: req("r1"),
            socket: SocketId::new("sock1").unwrap(),
            args: r#"[{"_placeholder":true,"num":0}]"#.into(),
            attachments: vec![Bytes::from_static(b"\x00")],
        },
        ClusterMessage::SocketsJoin {
            nsp: "/".into(),
            opts: opts(&["a"], &[]),
            rooms: vec!["x".into()],
        },
        ClusterMessage::SocketsLeave {
            nsp: "/".into(),
            opts: opts(&[], &["a"]),
            rooms: vec!["x".into()],
        },
        ClusterMessage::DisconnectSockets {
            nsp: "/".into(),
            opts: opts(&["a"], &[]),
            close: true,
        },
        ClusterMessage::FetchSockets {
            request: req("r2"),
            nsp: "/".into(),
            opts: opts(&["a"], &[]),
        },
        ClusterMessage::FetchSocketsResponse {
            request: req("r2"),
            sockets: vec![SocketInfo {
                id: "s".into(),
                rooms: vec!["s".into()],
                data: r#"{"a":1}"#.into(),
                handshake: HandshakeInfo {
                    headers: vec![("h".into(), "v".into())],
                    issued: 5,
                    address: "1.2.3.4".into(),
                    xdomain: true,
                    secure: false,
                    url: "/u".into(),
                    query: vec![("q".into(), "1".into())],
                    auth: "{}".into(),
                },
            }],
        },
        ClusterMessage::ServerSideEmit {
            nsp: "/".into(),
            event: "e".into(),
            args: "[1,2]".into(),
            attachments: vec![],
            request: Some(req("r3")),
        },
        ClusterMessage::ServerSideEmit {
            nsp: "/".into(),
            event: "e".into(),
            args: "[]".into(),
            attachments: vec![],
            request: None,
        },
        ClusterMessage::ServerSideEmitResponse {
            request: req("r3"),
            args: r#"[{"ok":true}]"#.into(),
            attachments: vec![],
        },
        ClusterMessage::AllRooms {
            request: req("r4"),
            nsp: "/".into(),
        },
        ClusterMessage::AllRoomsResponse {
            request: req("r4"),
            rooms: vec!["a".into()],
        },
    ]
}

#[test]
fn classic_round_trips() {
    let codec = Codec::default();
    for msg in all_messages() {
        let out = codec.encode(node("sender"), Some(node("me")), "/", &msg);
        let (from, back) = decode(&codec, "me", &out.channel, &out.payload);
        assert_eq!(from, node("sender"));
        assert_eq!(back, msg, "{}", out.channel);
    }
}

#[test]
fn sharded_round_trips_and_format() {
    let codec = ShardedCodec::default();
    for msg in all_messages() {
        let out = codec.encode(node("sender"), Some(node("me")), "/", &msg);
        let back = match codec.decode(node("me"), &out.payload).unwrap() {
            Decoded::Message { from, message } => {
                assert_eq!(from, node("sender"));
                message
            }
            Decoded::Ignored => panic!("ignored"),
        };
        assert_eq!(back, msg);
    }
    let out = codec.encode(
        node("u1"),
        None,
        "",
        &ClusterMessage::SocketsJoin {
            nsp: "/".into(),
            opts: opts(&["a"], &[]),
            rooms: vec!["r".into()],
        },
    );
    assert_eq!(out.channel, "socket.io#/#");
    assert_eq!(
        std::str::from_utf8(&out.payload).unwrap(),
        r#"{"uid":"u1","nsp":"/","type":4,"data":{"opts":{"rooms":["a"],"except":[],"flags":{}},"rooms":["r"]}}"#
    );
    let out = codec.encode(
        node("u1"),
        Some(node("u2")),
        "/",
        &ClusterMessage::BroadcastClientCount {
            request: req("q"),
            count: 1,
        },
    );
    assert_eq!(out.channel, "socket.io#/#u2#");
    assert_eq!(
        std::str::from_utf8(&out.payload).unwrap(),
        r#"{"uid":"u1","nsp":"/","type":11,"data":{"requestId":"q","clientCount":1}}"#
    );
    // Heartbeats of ClusterAdapterWithHeartbeat servers are ignored.
    assert_eq!(
        codec.decode(node("me"), br#"{"uid":"x","nsp":"/","type":2}"#),
        Ok(Decoded::Ignored)
    );
    // A broadcast with binary is MessagePack.
    let out = codec.encode(node("u1"), None, "", &all_messages()[0]);
    assert_ne!(out.payload[0], b'{');
}

/// The channel a sharded node in `mode` publishes a broadcast on (`computeChannel` of the
/// reference's `ShardedRedisAdapter`).
fn sharded_channel(mode: SubscriptionMode, nsp: &str, rooms: &[&str], ack: bool) -> String {
    let msg = ClusterMessage::Broadcast {
        nsp: nsp.into(),
        opts: opts(rooms, &["x"]),
        event: "e".into(),
        args: "[]".into(),
        attachments: vec![],
        ack: ack.then(|| req("q")),
        timeout: ack.then_some(Duration::from_secs(1)),
    };
    let codec = ShardedCodec::new("p").with_mode(mode);
    assert_eq!(codec.mode(), mode);
    codec.encode(node("u1"), None, "", &msg).channel
}

#[test]
fn sharded_channels_by_subscription_mode() {
    use SubscriptionMode::{Dynamic, DynamicPrivate, Static};
    let node_id = "abcdefghijklmnopqrst"; // 20 characters, as Node's socket ids
    let volley_id = "abcdefghijklmnopqrstuv"; // 22, as Volley's
    let v4_id = "/chat#abcdefghijklmnopqrst";
    assert_eq!(SubscriptionMode::default(), Dynamic);
    assert_eq!(
        [Static, Dynamic, DynamicPrivate].map(SubscriptionMode::as_str),
        ["static", "dynamic", "dynamic-private"]
    );
    // One room, no acknowledgement: the room's channel in the dynamic modes (even with an
    // exception), unless it looks like a socket id in "dynamic".
    assert_eq!(sharded_channel(Static, "/", &["news"], false), "p#/#");
    assert_eq!(sharded_channel(Dynamic, "/", &["news"], false), "p#/#news#");
    assert_eq!(
        sharded_channel(DynamicPrivate, "/c", &["news"], false),
        "p#/c#news#"
    );
    assert_eq!(sharded_channel(Dynamic, "/", &[node_id], false), "p#/#");
    assert_eq!(
        sharded_channel(Dynamic, "/chat", &[v4_id], false),
        "p#/chat#"
    );
    assert_eq!(
        sharded_channel(Dynamic, "/", &[volley_id], false),
        format!("p#/#{volley_id}#")
    );
    assert_eq!(
        sharded_channel(DynamicPrivate, "/", &[node_id], false),
        format!("p#/#{node_id}#")
    );
    // Acknowledged (every node must report its count), to no room or to two: the
    // namespace's channel.
    for mode in [Static, Dynamic, DynamicPrivate] {
        assert_eq!(sharded_channel(mode, "/", &["news"], true), "p#/#");
        assert_eq!(sharded_channel(mode, "/", &[], false), "p#/#");
        assert_eq!(sharded_channel(mode, "/", &["a", "b"], false), "p#/#");
    }
    // Other kinds never go to a room's channel.
    let join = ClusterMessage::SocketsJoin {
        nsp: "/".into(),
        opts: opts(&["news"], &[]),
        rooms: vec!["r".into()],
    };
    let codec = ShardedCodec::new("p").with_mode(DynamicPrivate);
    assert_eq!(codec.encode(node("u1"), None, "", &join).channel, "p#/#");

    // Which rooms a node subscribes: those whose channel a publisher may use.
    assert!(!Static.subscribes_room("news", false));
    assert!(Dynamic.subscribes_room("news", false));
    assert!(!Dynamic.subscribes_room(node_id, true));
    assert!(Dynamic.subscribes_room(volley_id, true));
    assert!(DynamicPrivate.subscribes_room(node_id, true));
}

#[test]
fn js_dates() {
    assert_eq!(
        js_date_string(0),
        "Thu Jan 01 1970 00:00:00 GMT+0000 (Coordinated Universal Time)"
    );
    assert_eq!(
        js_date_string(1_700_000_000_000),
        "Tue Nov 14 2023 22:13:20 GMT+0000 (Coordinated Universal Time)"
    );
}
