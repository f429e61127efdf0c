//! The admin namespace through the test kit, speaking the dashboard's protocol: login with
//! a bcrypt-checked password and then with the session id, config, stats, the socket list
//! and its updates, the commands with filters, read-only mode and production mode.

use serde_json::{Value, json};
use std::time::Duration;
use volley::Payload;
use volley::runtime::Runtime as _;
use volley::testing::{TestClient, TestRuntime};
use volley_admin::{InstrumentError, Mode, Options, instrument};

const SETTLE: Duration = Duration::from_millis(100);

fn server(options: Options) -> (TestRuntime, volley::Io<TestRuntime>) {
    let rt = TestRuntime::new();
    let io = volley::builder().seed([3; 32]).build(rt.clone());
    io.ns("/");
    instrument(&io, options).unwrap();
    (rt, io)
}

fn hashed() -> Options {
    // Cost 4, the lowest bcrypt allows: the check is the same, only faster.
    Options::basic("admin", &bcrypt::hash("s3cret", 4).unwrap())
}

/// Every event received so far, as (name, arguments).
async fn drain(rt: &TestRuntime, c: &mut TestClient) -> Vec<(String, Vec<Value>)> {
    rt.sleep(SETTLE).await;
    let mut out = Vec::new();
    while let Some(e) = c.try_recv() {
        out.push((e.event.clone(), e.payload.args().to_vec()));
    }
    out
}

fn find<'a>(events: &'a [(String, Vec<Value>)], name: &str) -> Vec<&'a Vec<Value>> {
    events
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, a)| a)
        .collect()
}

/// A date as JavaScript's `Date.toJSON` writes it, within a day of now.
fn assert_date(v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("not a date: {v:?}"));
    let b = s.as_bytes();
    assert_eq!(b.len(), 24, "{s}");
    for (i, c) in b.iter().enumerate() {
        let want = match i {
            4 | 7 => b'-',
            10 => b'T',
            13 | 16 => b':',
            19 => b'.',
            23 => b'Z',
            _ => {
                assert!(c.is_ascii_digit(), "{s}");
                continue;
            }
        };
        assert_eq!(*c, want, "{s}");
    }
    let year: u64 = s[..4].parse().unwrap();
    let now_year = 1970 + std::time::UNIX_EPOCH.elapsed().unwrap().as_secs() / 31_556_952;
    assert!(year.abs_diff(now_year) <= 1, "{s}");
}

fn command(c: &TestClient, name: &str, args: &[Value]) {
    let mut p = Payload::new();
    for a in args {
        p = p.arg(a).unwrap();
    }
    c.emit_payload(name, p);
}

#[test]
fn login_config_stats_and_the_socket_list() {
    let (rt, io) = server(Options {
        server_id: Some("node-a".to_owned()),
        ..hashed()
    });
    rt.block_on(async {
        let mut user = TestClient::connect(&io, "/", None).await.unwrap();
        let bad = json!({"username": "admin", "password": "wrong"});
        let err = TestClient::connect(&io, "/admin", Some(bad))
            .await
            .unwrap_err();
        assert!(
            format!("{err:?}").contains("invalid credentials"),
            "{err:?}"
        );
        assert!(TestClient::connect(&io, "/admin", None).await.is_err());

        let good = json!({"username": "admin", "password": "s3cret"});
        let mut ui = TestClient::connect(&io, "/admin", Some(good))
            .await
            .unwrap();
        let got = drain(&rt, &mut ui).await;
        let session = find(&got, "session");
        assert_eq!(session.len(), 1, "{got:?}");
        let session = session[0][0].as_str().unwrap().to_owned();
        assert_eq!(session.len(), 16);
        let config = &find(&got, "config")[0][0];
        assert_eq!(
            config["supportedFeatures"],
            json!([
                "EMIT",
                "JOIN",
                "LEAVE",
                "DISCONNECT",
                "MJOIN",
                "MLEAVE",
                "MDISCONNECT",
                "AGGREGATED_EVENTS",
                "ALL_EVENTS"
            ])
        );
        let stats = &find(&got, "server_stats")[0][0];
        assert_eq!(stats["serverId"], "node-a");
        assert_eq!(stats["pid"], std::process::id());
        assert_eq!(stats["clientsCount"], 2);
        let sockets = find(&got, "all_sockets")[0][0].as_array().unwrap().clone();
        let mine: Vec<_> = sockets
            .iter()
            .filter(|s| s["id"] == user.id().to_string())
            .collect();
        assert_eq!(mine.len(), 1, "{sockets:?}");
        assert_eq!(mine[0]["nsp"], "/");
        assert_eq!(mine[0]["transport"], "websocket");
        assert_eq!(mine[0]["rooms"], json!([user.id().to_string()]));

        // The session id logs in without the password.
        let again = TestClient::connect(&io, "/admin", Some(json!({"sessionId": session})))
            .await
            .unwrap();
        let unknown = json!({"sessionId": "0123456789abcdef"});
        assert!(
            TestClient::connect(&io, "/admin", Some(unknown))
                .await
                .is_err()
        );
        drop(again);

        // Stats come again every interval.
        rt.sleep(Duration::from_secs(2)).await;
        let got = drain(&rt, &mut ui).await;
        assert!(!find(&got, "server_stats").is_empty(), "{got:?}");

        // Connects and disconnects of other namespaces' sockets are reported.
        let other = TestClient::connect(&io, "/", None).await.unwrap();
        let got = drain(&rt, &mut ui).await;
        let connected = find(&got, "socket_connected");
        assert_eq!(connected.len(), 1, "{got:?}");
        assert_eq!(connected[0][0]["id"], other.id().to_string());
        assert_date(&connected[0][1]);
        let id = other.id().to_string();
        other.disconnect();
        let got = drain(&rt, &mut ui).await;
        let gone = find(&got, "socket_disconnected");
        assert_eq!(gone.len(), 1, "{got:?}");
        assert_eq!(
            gone[0][..3],
            [json!("/"), json!(id), json!("client namespace disconnect")]
        );
        assert_date(&gone[0][3]);
        let _ = user.try_recv();
    });
}

#[test]
fn commands_act_on_the_sockets_their_filter_selects() {
    let (rt, io) = server(hashed());
    io.ns("/").on_connection(|s: volley::Socket| async move {
        if s.handshake().auth()["vip"] == json!(true) {
            s.join("vip");
        }
    });
    rt.block_on(async {
        let mut plain = TestClient::connect(&io, "/", None).await.unwrap();
        let mut vip = TestClient::connect(&io, "/", Some(json!({"vip": true})))
            .await
            .unwrap();
        let good = json!({"username": "admin", "password": "s3cret"});
        let mut ui = TestClient::connect(&io, "/admin", Some(good))
            .await
            .unwrap();
        drain(&rt, &mut ui).await;

        command(
            &ui,
            "emit",
            &[json!("/"), json!("vip"), json!("hi"), json!(1), json!("x")],
        );
        assert_eq!(
            drain(&rt, &mut vip).await,
            [("hi".to_owned(), vec![json!(1), json!("x")])]
        );
        assert!(drain(&rt, &mut plain).await.is_empty());
        command(&ui, "emit", &[json!("/"), Value::Null, json!("all")]);
        assert_eq!(drain(&rt, &mut plain).await.len(), 1);
        assert_eq!(drain(&rt, &mut vip).await.len(), 1);

        // Join a room (everyone), then leave it (the vip room's sockets only).
        command(&ui, "join", &[json!("/"), json!("news")]);
        command(&ui, "leave", &[json!("/"), json!("news"), json!("vip")]);
        rt.sleep(SETTLE).await;
        io.to("news").emit("n", &1).unwrap();
        assert_eq!(drain(&rt, &mut plain).await.len(), 1);
        assert!(drain(&rt, &mut vip).await.is_empty());

        // Disconnect the vip room's sockets.
        command(
            &ui,
            "_disconnect",
            &[json!("/"), json!(false), json!("vip")],
        );
        rt.sleep(SETTLE).await;
        assert_eq!(
            vip.disconnect_reason().as_deref(),
            Some("io server disconnect")
        );
        assert_eq!(
            io.socket_count().await,
            2,
            "the plain socket and the UI remain"
        );
        // A namespace nobody used is not created by a command.
        command(&ui, "emit", &[json!("/nowhere"), Value::Null, json!("x")]);
        rt.sleep(SETTLE).await;
    });
}

#[test]
fn rooms_events_and_data_reach_the_dashboard() {
    let (rt, io) = server(Options::no_auth());
    io.ns("/")
        .on_connection(|s: volley::Socket| async move {
            s.data().insert(json!({"user": "ann"}));
            s.join("lobby");
        })
        .on(
            "join",
            |s: volley::Socket, volley::Data(room): volley::Data<String>| async move {
                s.join(room.as_str());
                true
            },
        )
        .on(
            "echo",
            |s: volley::Socket, volley::Data(n): volley::Data<i64>| async move {
                let _ = s.emit("echoed", &n);
            },
        );
    rt.block_on(async {
        let mut ui = TestClient::connect(&io, "/admin", None).await.unwrap();
        drain(&rt, &mut ui).await;
        let mut user = TestClient::connect(&io, "/", None).await.unwrap();
        let id = user.id().to_string();
        let got = drain(&rt, &mut ui).await;
        // The socket's own room is listed in `socket_connected`, not reported as a join; the
        // room its connection handler joins comes after it, so the dashboard can place it.
        // The connection handler ran before the middleware saw the socket accepted: the
        // data it stored is in `socket_connected`, the room it joined follows it.
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["socket_connected", "room_joined"], "{got:?}");
        assert_eq!(got[0].1[0]["data"], json!({"user": "ann"}));
        assert_eq!(got[1].1[..3], [json!("/"), json!("lobby"), json!(id)]);
        let _: bool = user.emit_with_ack("join", &"news").await.unwrap();
        let got = drain(&rt, &mut ui).await;
        let joined = find(&got, "room_joined");
        assert_eq!(joined.len(), 1, "{got:?}");
        assert_eq!(joined[0][..3], [json!("/"), json!("news"), json!(id)]);
        assert_date(&joined[0][3]);

        // A command's joins and leaves are reported as well.
        command(&ui, "join", &[json!("/"), json!("vip"), json!(id)]);
        command(&ui, "leave", &[json!("/"), json!("news"), json!(id)]);
        let got = drain(&rt, &mut ui).await;
        assert_eq!(find(&got, "room_joined")[0][1], json!("vip"), "{got:?}");
        assert_eq!(find(&got, "room_left")[0][1], json!("news"), "{got:?}");

        // Events in and out, as `[event, ...args]`.
        user.emit("echo", &7);
        let got = drain(&rt, &mut ui).await;
        let received = find(&got, "event_received");
        assert_eq!(received.len(), 1, "{got:?}");
        assert_eq!(
            received[0][..3],
            [json!("/"), json!(id), json!(["echo", 7])]
        );
        assert_date(&received[0][3]);
        let sent = find(&got, "event_sent");
        assert_eq!(sent.len(), 1, "{got:?}");
        assert_eq!(sent[0][..3], [json!("/"), json!(id), json!(["echoed", 7])]);
        let _ = drain(&rt, &mut user).await;

        // Data stored, changed in place, removed: each is reported with the data now.
        io.of("/").on(
            "rename",
            |s: volley::Socket, volley::Data(name): volley::Data<String>| async move {
                s.data().with(|v: &mut Value| v["user"] = json!(name));
                true
            },
        );
        let _: bool = user.emit_with_ack("rename", &"bob").await.unwrap();
        let got = drain(&rt, &mut ui).await;
        let updated = find(&got, "socket_updated");
        assert_eq!(
            updated,
            [&vec![
                json!({"id": id, "nsp": "/", "data": {"user": "bob"}})
            ]],
            "{got:?}"
        );
        let _ = drain(&rt, &mut user).await;

        // A new dashboard sees the data and rooms in the list.
        let mut late = TestClient::connect(&io, "/admin", None).await.unwrap();
        let got = drain(&rt, &mut late).await;
        let all = find(&got, "all_sockets")[0][0].as_array().unwrap().clone();
        let mine = all.iter().find(|s| s["id"] == json!(id)).unwrap();
        assert_eq!(mine["data"], json!({"user": "bob"}));
        let mut rooms: Vec<String> = serde_json::from_value(mine["rooms"].clone()).unwrap();
        rooms.sort();
        let mut want = vec![id.clone(), "lobby".to_owned(), "vip".to_owned()];
        want.sort();
        assert_eq!(rooms, want);

        // On disconnect every room is left, the own room included: the dashboard drops
        // rooms on `room_left` only.
        user.disconnect();
        let got = drain(&rt, &mut ui).await;
        let mut left: Vec<&Value> = find(&got, "room_left").iter().map(|a| &a[1]).collect();
        left.sort_by_key(|v| v.to_string());
        let mut want = [json!(id), json!("lobby"), json!("vip")];
        want.sort_by_key(|v| v.to_string());
        assert_eq!(left, want.iter().collect::<Vec<_>>(), "{got:?}");
        assert_eq!(find(&got, "socket_disconnected").len(), 1);
    });
}

/// The sum of the `aggregatedEvents` counts of type `kind` in `stats`.
fn aggregated(stats: &[&Vec<Value>], kind: &str) -> u64 {
    stats
        .iter()
        .flat_map(|args| args[0]["aggregatedEvents"].as_array().unwrap().iter())
        .filter(|e| e["type"] == kind)
        .map(|e| {
            let ts = e["timestamp"].as_u64().unwrap();
            assert_eq!(ts % 1000, 0, "{e}");
            e["count"].as_u64().unwrap()
        })
        .sum()
}

#[test]
fn the_charts_count_connections_packets_and_bytes() {
    let (rt, io) = server(Options {
        mode: Mode::Production,
        ..Options::no_auth()
    });
    io.ns("/").on(
        "echo",
        |s: volley::Socket, volley::Data(n): volley::Data<i64>| async move {
            let _ = s.emit("echoed", &n);
        },
    );
    rt.block_on(async {
        let mut ui = TestClient::connect(&io, "/admin", None).await.unwrap();
        let got = drain(&rt, &mut ui).await;
        // The stats a dashboard gets as it connects carry no events.
        assert_eq!(
            find(&got, "server_stats")[0][0]["aggregatedEvents"],
            json!([])
        );
        // Past the next report: what follows is in the one after.
        rt.sleep(Duration::from_secs(2)).await;
        drain(&rt, &mut ui).await;
        let before = io.traffic().await;

        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let b = TestClient::connect(&io, "/", None).await.unwrap();
        a.emit("echo", &1);
        a.emit("echo", &2);
        assert_eq!(drain(&rt, &mut a).await.len(), 2);
        b.close();
        rt.sleep(Duration::from_secs(2)).await;
        let got = drain(&rt, &mut ui).await;
        let after = io.traffic().await;
        let stats = find(&got, "server_stats");
        assert_eq!(stats.len(), 1, "{got:?}");
        assert_eq!(aggregated(&stats, "rawConnection"), 2);
        assert_eq!(aggregated(&stats, "rawDisconnection"), 1);
        // Nothing came in since the report: it counted all that did.
        assert_eq!(
            aggregated(&stats, "packetsIn"),
            after.packets_received - before.packets_received
        );
        assert_eq!(
            aggregated(&stats, "bytesIn"),
            after.bytes_received - before.bytes_received
        );
        // Two CONNECTs and two events at least, over WebSocket.
        assert!(aggregated(&stats, "packetsIn") >= 4, "{got:?}");
        // Two handshakes, two CONNECT answers, two echoes, and the stats to the UI.
        assert!(aggregated(&stats, "packetsOut") >= 6, "{got:?}");
        assert!(aggregated(&stats, "bytesOut") > aggregated(&stats, "bytesIn"));
        assert_eq!(stats[0][0]["pollingClientsCount"], 0);
    });
}

#[test]
fn read_only_and_production_modes() {
    let (rt, io) = server(Options {
        readonly: true,
        mode: Mode::Production,
        ..Options::no_auth()
    });
    rt.block_on(async {
        let mut user = TestClient::connect(&io, "/", None).await.unwrap();
        let mut ui = TestClient::connect(&io, "/admin", None).await.unwrap();
        let got = drain(&rt, &mut ui).await;
        // Read-only: no command; production: the charts only, which is how the dashboard
        // tells the modes apart.
        assert_eq!(
            find(&got, "config")[0][0]["supportedFeatures"],
            json!(["AGGREGATED_EVENTS"])
        );
        assert!(find(&got, "all_sockets").is_empty(), "{got:?}");
        assert!(find(&got, "session").is_empty());
        assert_eq!(find(&got, "server_stats").len(), 1);
        command(&ui, "emit", &[json!("/"), Value::Null, json!("hi")]);
        command(&ui, "_disconnect", &[json!("/"), json!(true)]);
        assert!(drain(&rt, &mut user).await.is_empty());
        assert_eq!(io.socket_count().await, 2);
        let late = TestClient::connect(&io, "/", None).await.unwrap();
        io.of("/").sockets_join(["news"]);
        late.emit("hi", &1);
        let got = drain(&rt, &mut ui).await;
        for event in [
            "socket_connected",
            "room_joined",
            "event_received",
            "event_sent",
        ] {
            assert!(find(&got, event).is_empty(), "{got:?}");
        }
    });
}

#[test]
fn a_password_that_is_no_bcrypt_hash_is_refused() {
    let rt = TestRuntime::new();
    let io = volley::builder().build(rt.clone());
    assert_eq!(
        instrument(&io, Options::basic("admin", "plain-text")),
        Err(InstrumentError::InvalidPasswordHash)
    );
}

#[test]
fn every_node_of_a_cluster_reports_to_every_dashboard() {
    let rt = TestRuntime::new();
    let cluster = volley::adapter::MemoryCluster::new();
    let node = |n: u8, id: &str| {
        let io = volley::builder()
            .seed([n; 32])
            .adapter(cluster.adapter())
            .build(rt.clone());
        io.ns("/");
        let options = Options {
            server_id: Some(id.to_owned()),
            ..Options::no_auth()
        };
        instrument(&io, options).unwrap();
        io
    };
    let a = node(1, "node-a");
    let b = node(2, "node-b");
    rt.block_on(async {
        let on_b = TestClient::connect(&b, "/", None).await.unwrap();
        let mut ui = TestClient::connect(&a, "/admin", None).await.unwrap();
        rt.sleep(Duration::from_secs(3)).await;
        let got = drain(&rt, &mut ui).await;
        let ids: std::collections::BTreeSet<String> = find(&got, "server_stats")
            .iter()
            .filter_map(|args| args[0]["serverId"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(ids, ["node-a".to_owned(), "node-b".to_owned()].into());
        // The socket list spans the cluster: the socket on b is listed by a.
        let all = &find(&got, "all_sockets")[0][0];
        let listed: Vec<&str> = all
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["id"].as_str())
            .collect();
        assert!(
            listed.contains(&on_b.id().to_string().as_str()),
            "{listed:?}"
        );
        // A command from a's dashboard reaches b's sockets.
        command(&ui, "_disconnect", &[json!("/"), json!(false)]);
        rt.sleep(SETTLE).await;
        assert_eq!(
            on_b.disconnect_reason().as_deref(),
            Some("io server disconnect")
        );
    });
}
