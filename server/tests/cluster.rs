//! Several servers joined by a `MemoryCluster` on one test runtime: every operation reaches
//! the sockets of every node, requests gather the other nodes' answers, and a node that
//! stays silent ends a request at its timeout with what came.

mod common;

use common::{Log, SETTLE};
use futures::future::join;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};
use volley::adapter::{Adapter, Inbox, MemoryAdapter, MemoryCluster};
use volley::namespace::ServerSideEmitError;
use volley::runtime::Runtime as _;
use volley::testing::{ConnectOptions, TestClient, TestRuntime};
use volley::{BroadcastAckError, Io, Payload, Room, Socket, SocketId};
use volley_core::NodeId;
use volley_core::cluster::ClusterMessage;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A server of `cluster` with its own seed; its sockets keep their auth object as data.
fn server(rt: &TestRuntime, n: u8, adapter: impl Adapter) -> Io<TestRuntime> {
    let io = volley::builder()
        .seed([n; 32])
        .adapter(adapter)
        .request_timeout(REQUEST_TIMEOUT)
        .build(rt.clone());
    io.ns("/").use_connect(|ctx, next| async move {
        let auth = ctx.auth().clone();
        if auth.is_object() && auth.as_object().is_some_and(|o| !o.is_empty()) {
            ctx.data().insert(auth);
        }
        next.run(ctx).await
    });
    io
}

/// `n` servers of one in-memory cluster.
fn cluster(n: u8) -> (TestRuntime, MemoryCluster, Vec<Io<TestRuntime>>) {
    let rt = TestRuntime::new();
    let cluster = MemoryCluster::new();
    let servers = (1..=n).map(|i| server(&rt, i, cluster.adapter())).collect();
    (rt, cluster, servers)
}

/// Events each client has received by now, by name.
async fn received(rt: &TestRuntime, clients: &mut [&mut TestClient]) -> Vec<Vec<String>> {
    rt.sleep(SETTLE).await;
    clients
        .iter_mut()
        .map(|c| {
            let mut names = Vec::new();
            while let Some(ev) = c.try_recv() {
                names.push(ev.event);
            }
            names
        })
        .collect()
}

/// Nothing left waiting on any server: requests, their collectors, acknowledgements.
async fn assert_settled(servers: &[&Io<TestRuntime>]) {
    for io in servers {
        assert_eq!(io.pending_request_count().await, 0, "requests left");
        assert_eq!(io.pending_ack_count().await, 0, "acknowledgements left");
    }
}

fn ids(sockets: &[volley::RemoteSocket]) -> BTreeSet<SocketId> {
    sockets.iter().map(|s| s.id()).collect()
}

fn names(rooms: &[Room]) -> BTreeSet<String> {
    rooms.iter().map(|r| r.to_string()).collect()
}

/// An adapter that joins the cluster and receives, but never says anything: a node whose
/// answers are lost.
struct Mute(MemoryAdapter);

impl Adapter for Mute {
    fn start(&self, node: NodeId, inbox: Inbox) {
        self.0.start(node, inbox);
    }

    fn publish(&self, _to: Option<NodeId>, _message: ClusterMessage) {}

    fn server_count(&self) -> usize {
        self.0.server_count()
    }
}

#[test]
fn nodes_have_distinct_url_safe_ids_and_count_each_other() {
    let (rt, cluster, servers) = cluster(3);
    let [a, b, c] = [&servers[0], &servers[1], &servers[2]];
    let ids: BTreeSet<NodeId> = servers.iter().map(|io| io.node_id()).collect();
    assert_eq!(ids.len(), 3);
    for id in &ids {
        assert_eq!(id.as_str().len(), 16);
        assert!(
            id.as_str()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
    assert_eq!(
        (a.server_count(), b.server_count(), c.server_count()),
        (3, 3, 3)
    );
    // A node on its own.
    let alone = volley::builder().seed([9; 32]).build(rt.clone());
    assert_eq!(alone.server_count(), 1);
    // A node that joins later is counted from then on.
    let d = server(&rt, 4, cluster.adapter());
    assert_eq!((a.server_count(), d.server_count()), (4, 4));
}

#[test]
fn broadcasts_reach_every_node_by_room_and_local_stays_here() {
    let (rt, _cluster, servers) = cluster(3);
    let [a, b, c] = [&servers[0], &servers[1], &servers[2]];
    a.ns("/").on("shout", |s: Socket| async move {
        s.broadcast().emit("shouted", &()).unwrap();
    });
    rt.block_on(async {
        let mut ca = TestClient::connect(a, "/", None).await.unwrap();
        let mut cb = TestClient::connect(b, "/", None).await.unwrap();
        let mut cc = TestClient::connect(c, "/", None).await.unwrap();
        b.to(cb.id()).local().sockets_join(["r"]);
        c.to(cc.id()).local().sockets_join(["s"]);
        a.emit("all", &1).unwrap();
        a.to("r").emit("r", &()).unwrap();
        a.to("r").to("s").emit("r-or-s", &()).unwrap();
        a.except("r").emit("not-r", &()).unwrap();
        a.to(cc.id()).emit("to-c", &()).unwrap();
        a.local().emit("local", &()).unwrap();
        b.local().emit("b-local", &()).unwrap();
        c.compress(true).emit("from-c", &()).unwrap();
        // What one node sends arrives in order; different nodes' messages interleave.
        let from_a = ["all", "r", "r-or-s", "not-r", "to-c", "local"];
        let mut got = received(&rt, &mut [&mut ca, &mut cb, &mut cc]).await;
        for g in &mut got {
            let in_order: Vec<&str> = from_a
                .iter()
                .copied()
                .filter(|e| g.iter().any(|x| x == e))
                .collect();
            let arrived: Vec<&str> = g
                .iter()
                .map(String::as_str)
                .filter(|e| from_a.contains(e))
                .collect();
            assert_eq!(arrived, in_order);
            g.sort();
        }
        assert_eq!(got[0], ["all", "from-c", "local", "not-r"]);
        assert_eq!(got[1], ["all", "b-local", "from-c", "r", "r-or-s"]);
        assert_eq!(got[2], ["all", "from-c", "not-r", "r-or-s", "to-c"]);

        // A socket's broadcast reaches the others, on every node, but not itself.
        ca.emit("shout", &());
        let got = received(&rt, &mut [&mut ca, &mut cb, &mut cc]).await;
        assert_eq!(got, [vec![], vec!["shouted"], vec!["shouted"]]);

        // Arguments and binary attachments travel as they are.
        a.to("r").emit_payload(
            "bin",
            Payload::of(&json!({"k": 1})).unwrap().bin(vec![7u8, 8]),
        );
        let ev = cb.recv().await.unwrap();
        assert_eq!(ev.event, "bin");
        assert_eq!(ev.payload.args()[0], json!({"k": 1}));
        assert_eq!(ev.payload.attachments(), [vec![7u8, 8]]);
    });
}

#[test]
fn namespaces_stay_apart_across_nodes() {
    let (rt, _cluster, servers) = cluster(2);
    let [a, b] = [&servers[0], &servers[1]];
    a.ns("/chat");
    b.ns("/chat");
    rt.block_on(async {
        let mut chat_b = TestClient::connect(b, "/chat", None).await.unwrap();
        let mut main_b = TestClient::connect(b, "/", None).await.unwrap();
        a.ns("/chat").emit("chat", &()).unwrap();
        a.emit("main", &()).unwrap();
        // A namespace the sending node lacks is still served where it exists.
        b.ns("/only-b");
        let mut only_b = TestClient::connect(b, "/only-b", None).await.unwrap();
        a.ns("/only-b").emit("only", &()).unwrap();
        let got = received(&rt, &mut [&mut chat_b, &mut main_b, &mut only_b]).await;
        assert_eq!(got, [vec!["chat"], vec!["main"], vec!["only"]]);
    });
}

#[test]
fn sockets_join_and_leave_move_sockets_of_other_nodes() {
    let (rt, _cluster, servers) = cluster(3);
    let [a, b, c] = [&servers[0], &servers[1], &servers[2]];
    rt.block_on(async {
        let mut ca = TestClient::connect(a, "/", None).await.unwrap();
        let mut cb = TestClient::connect(b, "/", None).await.unwrap();
        let mut cc = TestClient::connect(c, "/", None).await.unwrap();
        a.in_(cb.id()).sockets_join(["vip"]);
        a.to("vip").emit("vip", &()).unwrap();
        // Everyone but a joins "crowd", from the node of neither (messages of different
        // nodes are not ordered with each other: let the join land first).
        c.except(ca.id()).sockets_join(["crowd"]);
        rt.sleep(SETTLE).await;
        a.to("crowd").emit("crowd", &()).unwrap();
        let got = received(&rt, &mut [&mut ca, &mut cb, &mut cc]).await;
        assert_eq!(got, [vec![], vec!["vip", "crowd"], vec!["crowd"]]);
        let vip = b.in_("vip").local().fetch_sockets().await;
        assert_eq!(ids(&vip), [cb.id()].into());

        a.sockets_leave(["crowd"]);
        a.local().sockets_join(["mine"]);
        a.to("crowd").emit("crowd", &()).unwrap();
        a.to("mine").emit("mine", &()).unwrap();
        let got = received(&rt, &mut [&mut ca, &mut cb, &mut cc]).await;
        assert_eq!(got, [vec!["mine"], vec![], vec![]]);
        assert_settled(&[a, b, c]).await;
    });
}

#[test]
fn fetch_sockets_lists_every_node_with_rooms_handshake_and_data() {
    let (rt, _cluster, servers) = cluster(3);
    let [a, b, c] = [&servers[0], &servers[1], &servers[2]];
    rt.block_on(async {
        let ca = TestClient::connect(a, "/", Some(json!({"name": "a"})))
            .await
            .unwrap();
        let options = ConnectOptions::new()
            .auth(json!({"name": "b", "n": 2}))
            .query("k", "v w")
            .header("x-test", "yes")
            .header("origin", "https://example.com");
        let cb = TestClient::connect_with(b, "/", options).await.unwrap();
        let cc = TestClient::connect(c, "/", None).await.unwrap();
        b.to(cb.id()).local().sockets_join(["x", "y"]);
        a.to(ca.id()).local().sockets_join(["x"]);

        let all = a.fetch_sockets().await;
        assert_eq!(ids(&all), [ca.id(), cb.id(), cc.id()].into());
        let local: Vec<_> = all.iter().filter(|s| s.is_local()).collect();
        assert_eq!(local.len(), 1);
        assert_eq!(local[0].id(), ca.id());
        assert!(local[0].socket().is_some());
        assert_eq!(local[0].node(), None);

        let in_x = a.in_("x").fetch_sockets().await;
        assert_eq!(ids(&in_x), [ca.id(), cb.id()].into());
        let sb = in_x.iter().find(|s| s.id() == cb.id()).unwrap();
        assert!(!sb.is_local());
        assert!(sb.socket().is_none());
        assert_eq!(sb.node(), Some(b.node_id()));
        assert_eq!(sb.ns(), "/");
        assert_eq!(
            names(sb.rooms()),
            ["x".to_owned(), "y".to_owned(), cb.id().to_string()].into()
        );
        assert_eq!(sb.data().get::<Value>(), Some(json!({"name": "b", "n": 2})));
        let hs = sb.handshake();
        assert_eq!(hs.auth(), &json!({"name": "b", "n": 2}));
        assert_eq!(hs.header("x-test"), Some("yes"));
        assert_eq!(hs.header("X-Test"), Some("yes"));
        assert_eq!(hs.query("k").as_deref(), Some("v w"));
        assert_eq!(hs.query("EIO").as_deref(), Some("4"));
        assert!(hs.url().starts_with("/socket.io/?"));
        assert_eq!(hs.namespace(), "/");
        assert_eq!(
            hs.address(false),
            None,
            "the test client has no peer address"
        );
        let age = SystemTime::now()
            .duration_since(hs.issued_at())
            .unwrap_or_default();
        assert!(age < Duration::from_secs(60), "issued {age:?} ago");
        // The same socket as its own node sees it.
        let own = b.in_("x").local().fetch_sockets().await;
        let own_hs = own[0].handshake();
        assert_eq!(
            own_hs
                .issued_at()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis(),
            hs.issued_at()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
        assert_eq!(own_hs.url(), hs.url());
        // No data stored: nothing to see.
        let sc = all.iter().find(|s| s.id() == cc.id()).unwrap();
        assert_eq!(sc.data().get::<Value>(), None);
        assert_eq!(sc.handshake().auth(), &json!({}));

        // Except, and local only.
        assert_eq!(ids(&a.except("x").fetch_sockets().await), [cc.id()].into());
        assert_eq!(ids(&a.local().fetch_sockets().await), [ca.id()].into());
        assert_eq!(ids(&c.in_("y").fetch_sockets().await), [cb.id()].into());
        assert!(a.in_("nowhere").fetch_sockets().await.is_empty());
        assert!(a.ns("/none").fetch_sockets().await.is_empty());
        assert_settled(&[a, b, c]).await;
    });
}

#[test]
fn a_socket_of_another_node_acts_through_its_node() {
    let (rt, _cluster, servers) = cluster(2);
    let [a, b] = [&servers[0], &servers[1]];
    let reasons = Log::new();
    let log = reasons.clone();
    b.ns("/").on_disconnect(move |s: Socket, r| {
        let log = log.clone();
        async move { log.push(format!("{} {r}", s.id())) }
    });
    rt.block_on(async {
        let mut cb = TestClient::connect(b, "/", None).await.unwrap();
        let mut other = TestClient::connect(b, "/", None).await.unwrap();
        let remote = a
            .fetch_sockets()
            .await
            .into_iter()
            .find(|s| s.id() == cb.id())
            .unwrap();
        remote.emit("direct", &"hi").unwrap();
        remote.emit_payload("bin", Payload::new().bin(vec![1u8]));
        let ev = cb.recv().await.unwrap();
        assert_eq!(
            (ev.event.as_str(), ev.data::<String>().unwrap()),
            ("direct", "hi".into())
        );
        let ev = cb.recv().await.unwrap();
        assert_eq!(ev.payload.attachments(), [vec![1u8]]);

        remote.join("club");
        a.to("club").emit("club", &()).unwrap();
        assert_eq!(cb.recv().await.unwrap().event, "club");
        let rooms = b.in_("club").local().fetch_sockets().await;
        assert_eq!(ids(&rooms), [cb.id()].into());
        remote.leave("club");
        a.to("club").emit("club", &()).unwrap();
        rt.sleep(SETTLE).await;
        assert!(b.in_("club").local().fetch_sockets().await.is_empty());

        remote.disconnect(false);
        assert!(cb.recv().await.is_none(), "no more events, then the end");
        assert_eq!(
            cb.disconnect_reason().as_deref(),
            Some("io server disconnect")
        );
        rt.sleep(SETTLE).await;
        assert_eq!(b.socket_count().await, 1);
        assert_eq!(b.client_count().await, 2, "the connection stays open");
        assert!(other.try_recv().is_none(), "only that socket was addressed");

        // Closing the whole connection, from the other node.
        let remote = a.fetch_sockets().await.pop().unwrap();
        assert_eq!(remote.id(), other.id());
        remote.disconnect(true);
        assert!(other.recv().await.is_none());
        rt.sleep(SETTLE).await;
        assert_eq!(b.client_count().await, 1);
        assert_settled(&[a, b]).await;
    });
    assert_eq!(reasons.entries().len(), 2);
    assert!(reasons.entries()[0].ends_with("server namespace disconnect"));
}

#[test]
fn disconnect_sockets_reaches_every_node() {
    let (rt, _cluster, servers) = cluster(3);
    let [a, b, c] = [&servers[0], &servers[1], &servers[2]];
    rt.block_on(async {
        let mut ca = TestClient::connect(a, "/", None).await.unwrap();
        let mut cb = TestClient::connect(b, "/", None).await.unwrap();
        let mut cc = TestClient::connect(c, "/", None).await.unwrap();
        b.to(cb.id()).local().sockets_join(["gone"]);
        a.in_("gone").disconnect_sockets(false);
        assert!(cb.recv().await.is_none());
        rt.sleep(SETTLE).await;
        assert_eq!(b.socket_count().await, 0);
        assert_eq!(c.socket_count().await, 1);
        // Local only: the other nodes keep theirs.
        c.local().disconnect_sockets(false);
        assert!(cc.recv().await.is_none());
        rt.sleep(SETTLE).await;
        assert_eq!(a.socket_count().await, 1);
        let mut cb2 = TestClient::connect(b, "/", None).await.unwrap();
        c.disconnect_sockets(true);
        assert!(ca.recv().await.is_none());
        assert!(cb2.recv().await.is_none());
        rt.sleep(SETTLE).await;
        assert_eq!(a.client_count().await, 0);
        assert_eq!(
            b.client_count().await,
            1,
            "cb's connection stays (namespace left)"
        );
        assert_settled(&[a, b, c]).await;
    });
}

#[test]
fn acknowledged_broadcasts_gather_answers_from_every_node() {
    let (rt, _cluster, servers) = cluster(3);
    let [a, b, c] = [&servers[0], &servers[1], &servers[2]];
    rt.block_on(async {
        let mut ca = TestClient::connect(a, "/", None).await.unwrap();
        let mut cb = TestClient::connect(b, "/", None).await.unwrap();
        let mut cb2 = TestClient::connect(b, "/", None).await.unwrap();
        let mut cc = TestClient::connect(c, "/", None).await.unwrap();

        // Everyone answers, one of them with binary data.
        let asked = a
            .timeout(Duration::from_secs(5))
            .emit_with_ack("q", &"all?");
        let answer = async {
            for (n, cl) in [&mut ca, &mut cb, &mut cb2].into_iter().enumerate() {
                let ev = cl.recv().await.unwrap();
                assert_eq!(ev.data::<String>().unwrap(), "all?");
                cl.ack(ev.ack.unwrap(), &n);
            }
            let ev = cc.recv().await.unwrap();
            cc.ack_with(ev.ack.unwrap(), Payload::of(&3).unwrap().bin(vec![9u8]));
        };
        let start = rt.elapsed();
        let (r, ()) = join(asked, answer).await;
        assert!(
            rt.elapsed() - start < Duration::from_secs(1),
            "no timeout waited"
        );
        let mut answers: Vec<(SocketId, usize)> = r
            .as_ref()
            .unwrap()
            .iter()
            .map(|r| (r.socket, r.payload.args()[0].as_u64().unwrap() as usize))
            .collect();
        answers.sort_by_key(|(_, n)| *n);
        assert_eq!(
            answers,
            [(ca.id(), 0), (cb.id(), 1), (cb2.id(), 2), (cc.id(), 3)]
        );
        let binary = r
            .unwrap()
            .into_iter()
            .find(|r| r.socket == cc.id())
            .unwrap();
        assert_eq!(binary.payload.attachments(), [vec![9u8]]);

        // A room that only another node has; no local socket asked.
        b.to(cb2.id()).local().sockets_join(["r"]);
        let asked = a
            .to("r")
            .timeout(Duration::from_secs(5))
            .emit_with_ack("q", &());
        let answer = async {
            let ev = cb2.recv().await.unwrap();
            cb2.ack(ev.ack.unwrap(), "r!");
        };
        let (r, ()) = join(asked, answer).await;
        let r = r.unwrap();
        assert_eq!((r.len(), r[0].socket), (1, cb2.id()));
        assert_eq!(r[0].data::<String>().unwrap(), "r!");

        // Nobody anywhere.
        let start = rt.elapsed();
        let none = a.to("nobody").emit_with_ack("q", &()).await.unwrap();
        assert!(none.is_empty());
        assert_eq!(rt.elapsed(), start, "every node reported zero at once");

        // Local only: the other nodes are not asked.
        let asked = a
            .local()
            .timeout(Duration::from_secs(5))
            .emit_with_ack("l", &());
        let answer = async {
            let ev = ca.recv().await.unwrap();
            ca.ack(ev.ack.unwrap(), &0);
        };
        let (r, ()) = join(asked, answer).await;
        assert_eq!(r.unwrap().len(), 1);
        let got = received(&rt, &mut [&mut cb, &mut cb2, &mut cc]).await;
        assert!(got.iter().all(|g| g.is_empty()));

        // A socket on another node that never answers: partial at the timeout.
        let start = rt.elapsed();
        let asked = a
            .timeout(Duration::from_secs(3))
            .emit_with_ack("q", &"again");
        let answer = async {
            for cl in [&mut ca, &mut cb, &mut cb2] {
                let ev = cl.recv().await.unwrap();
                cl.ack(ev.ack.unwrap(), "yes");
            }
            assert!(cc.recv().await.unwrap().ack.is_some());
        };
        let (r, ()) = join(asked, answer).await;
        assert_eq!(rt.elapsed() - start, Duration::from_secs(3));
        let Err(BroadcastAckError::Partial(partial)) = r else {
            panic!("expected a partial result, got {r:?}");
        };
        assert_eq!(partial.missing, 1);
        let answered: BTreeSet<SocketId> = partial.responses.iter().map(|r| r.socket).collect();
        assert_eq!(answered, [ca.id(), cb.id(), cb2.id()].into());

        // A socket on another node that leaves before answering: the same.
        let asked = a
            .to(cc.id())
            .timeout(Duration::from_secs(3))
            .emit_with_ack("q", &());
        let answer = async {
            cc.recv().await.unwrap();
            cc.disconnect();
        };
        let (r, ()) = join(asked, answer).await;
        let Err(BroadcastAckError::Partial(partial)) = r else {
            panic!("expected a partial result, got {r:?}");
        };
        assert_eq!((partial.responses.len(), partial.missing), (0, 1));
        assert_settled(&[a, b, c]).await;
    });
}

#[test]
fn a_silent_node_ends_requests_at_the_timeout_with_what_came() {
    let rt = TestRuntime::new();
    let cluster = MemoryCluster::new();
    let a = server(&rt, 1, cluster.adapter());
    let b = server(&rt, 2, cluster.adapter());
    let c = server(&rt, 3, Mute(cluster.adapter()));
    for (name, io) in [("b", &b), ("c", &c)] {
        io.ns("/")
            .on_server_event("who", move |_p: Payload| async move { name });
    }
    rt.block_on(async {
        let mut ca = TestClient::connect(&a, "/", None).await.unwrap();
        let mut cb = TestClient::connect(&b, "/", None).await.unwrap();
        let mut cc = TestClient::connect(&c, "/", None).await.unwrap();
        assert_eq!(a.server_count(), 3);

        let start = rt.elapsed();
        let all = a.fetch_sockets().await;
        assert_eq!(rt.elapsed() - start, REQUEST_TIMEOUT);
        assert_eq!(ids(&all), [ca.id(), cb.id()].into());

        // The operator's timeout bounds the wait instead.
        let start = rt.elapsed();
        let all = a.timeout(Duration::from_millis(500)).fetch_sockets().await;
        assert_eq!(rt.elapsed() - start, Duration::from_millis(500));
        assert_eq!(all.len(), 2);

        let start = rt.elapsed();
        let rooms = a.all_rooms().await;
        assert_eq!(rt.elapsed() - start, REQUEST_TIMEOUT);
        assert_eq!(
            names(&rooms),
            [ca.id().to_string(), cb.id().to_string()].into()
        );

        let r = a.server_side_emit_with_ack("who", &()).await;
        let Err(ServerSideEmitError::Timeout { responses, missing }) = r else {
            panic!("expected a timeout, got {r:?}");
        };
        assert_eq!(missing, 1);
        assert_eq!(responses.len(), 1);
        assert_eq!(responses[0].deserialize::<String>().unwrap(), "b");

        // An acknowledged broadcast without a timeout of its own waits for the other nodes
        // until the request timeout; c's socket got the event and answered in vain.
        let start = rt.elapsed();
        let asked = a.all().emit_with_ack("q", &());
        let answer = async {
            for cl in [&mut ca, &mut cb, &mut cc] {
                let ev = cl.recv().await.unwrap();
                cl.ack(ev.ack.unwrap(), &1);
            }
        };
        let (r, ()) = join(asked, answer).await;
        assert_eq!(rt.elapsed() - start, REQUEST_TIMEOUT);
        let Err(BroadcastAckError::Partial(partial)) = r else {
            panic!("expected a partial result, got {r:?}");
        };
        assert_eq!(partial.responses.len(), 2);
        assert_eq!(partial.missing, 1, "the node that never reported its count");
        assert_settled(&[&a, &b, &c]).await;
    });
}

#[test]
fn a_node_that_left_is_not_waited_for() {
    let rt = TestRuntime::new();
    let cluster = MemoryCluster::new();
    let a = server(&rt, 1, cluster.adapter());
    let b = server(&rt, 2, cluster.adapter());
    let left = cluster.adapter();
    let c = server(&rt, 3, left.clone());
    rt.block_on(async {
        let ca = TestClient::connect(&a, "/", None).await.unwrap();
        let cb = TestClient::connect(&b, "/", None).await.unwrap();
        let mut cc = TestClient::connect(&c, "/", None).await.unwrap();
        left.leave();
        assert_eq!((a.server_count(), b.server_count()), (2, 2));
        let start = rt.elapsed();
        let all = a.fetch_sockets().await;
        assert_eq!(rt.elapsed(), start);
        assert_eq!(ids(&all), [ca.id(), cb.id()].into());
        a.emit("after", &()).unwrap();
        let got = received(&rt, &mut [&mut cc]).await;
        assert!(got[0].is_empty(), "a node that left hears nothing");
        assert_settled(&[&a, &b, &c]).await;
    });
}

#[test]
fn server_side_emits_reach_the_other_nodes_handlers_only() {
    let (rt, _cluster, servers) = cluster(3);
    let [a, b, c] = [&servers[0], &servers[1], &servers[2]];
    let log = Log::new();
    for (name, io) in [("a", a), ("b", b), ("c", c)] {
        let l = log.clone();
        io.ns("/").on_server_event("hello", move |p: Payload| {
            let l = l.clone();
            async move {
                l.push(format!("{name} {}", p.json()));
                format!("hi from {name}")
            }
        });
        let l = log.clone();
        io.ns("/").on_server_event("quiet", move |p: Payload| {
            let l = l.clone();
            async move { l.push(format!("{name} quiet {}", p.json())) }
        });
        io.ns("/")
            .on_server_event("fails", |_p: Payload| async { Err::<(), _>("no") });
    }
    let chat_log = Log::new();
    let l = chat_log.clone();
    b.ns("/chat").on_server_event("hello", move |p: Payload| {
        let l = l.clone();
        async move { l.push(p.json()) }
    });
    rt.block_on(async {
        a.server_side_emit("hello", &json!({"x": 1})).unwrap();
        rt.sleep(SETTLE).await;
        let mut seen = log.take();
        seen.sort();
        assert_eq!(seen, [r#"b [{"x":1}]"#, r#"c [{"x":1}]"#]);

        let mut answers: Vec<String> = a
            .server_side_emit_with_ack("hello", &2)
            .await
            .unwrap()
            .iter()
            .map(|p| p.deserialize().unwrap())
            .collect();
        answers.sort();
        assert_eq!(answers, ["hi from b", "hi from c"]);
        log.take();

        // A handler with nothing to say answers with no arguments.
        let answers = c.server_side_emit_with_ack("quiet", &()).await.unwrap();
        assert_eq!(answers.len(), 2);
        assert!(answers.iter().all(|p| p.args().is_empty()));
        let mut seen = log.take();
        seen.sort();
        assert_eq!(seen, ["a quiet [null]", "b quiet [null]"]);

        // A handler that fails does not answer.
        let start = rt.elapsed();
        let r = a.server_side_emit_with_ack("fails", &()).await;
        assert_eq!(rt.elapsed() - start, REQUEST_TIMEOUT);
        assert_eq!(
            r,
            Err(ServerSideEmitError::Timeout {
                responses: vec![],
                missing: 2
            })
        );

        // Per namespace; a node without a handler does not answer either.
        a.ns("/chat").server_side_emit("hello", &"chat").unwrap();
        rt.sleep(SETTLE).await;
        assert_eq!(chat_log.take(), [r#"["chat"]"#]);
        let r = a.ns("/chat").server_side_emit_with_ack("hello", &()).await;
        let Err(ServerSideEmitError::Timeout { responses, missing }) = r else {
            panic!("expected a timeout, got {r:?}");
        };
        assert_eq!((responses.len(), missing), (1, 1));
        assert!(
            log.entries().is_empty(),
            "the main namespace's handlers never ran"
        );
        assert_settled(&[a, b, c]).await;
    });
}

#[test]
fn a_single_node_has_no_one_to_ask() {
    let rt = TestRuntime::new();
    let io = volley::builder()
        .seed([5; 32])
        .request_timeout(REQUEST_TIMEOUT)
        .build(rt.clone());
    io.ns("/")
        .on_server_event("hello", |_p: Payload| async { "me" });
    rt.block_on(async {
        let c = TestClient::connect(&io, "/", None).await.unwrap();
        let start = rt.elapsed();
        assert_eq!(io.server_side_emit_with_ack("hello", &()).await, Ok(vec![]));
        assert_eq!(ids(&io.fetch_sockets().await), [c.id()].into());
        assert_eq!(names(&io.all_rooms().await), [c.id().to_string()].into());
        assert_eq!(rt.elapsed(), start);
        assert_eq!(io.server_count(), 1);
        assert_settled(&[&io]).await;
    });
}

#[test]
fn all_rooms_unites_every_nodes_rooms() {
    let (rt, _cluster, servers) = cluster(3);
    let [a, b, c] = [&servers[0], &servers[1], &servers[2]];
    a.ns("/chat");
    b.ns("/chat");
    rt.block_on(async {
        let ca = TestClient::connect(a, "/", None).await.unwrap();
        let cb = TestClient::connect(b, "/", None).await.unwrap();
        let cc = TestClient::connect(c, "/", None).await.unwrap();
        let chat = TestClient::connect(b, "/chat", None).await.unwrap();
        a.to(ca.id()).sockets_join(["ra", "shared"]);
        b.to(cb.id()).sockets_join(["rb", "shared"]);
        b.ns("/chat").sockets_join(["talk"]);
        let expected: BTreeSet<String> = [
            ca.id().to_string(),
            cb.id().to_string(),
            cc.id().to_string(),
            "ra".into(),
            "rb".into(),
            "shared".into(),
        ]
        .into();
        let rooms = c.all_rooms().await;
        assert_eq!(names(&rooms), expected);
        assert_eq!(rooms.len(), expected.len(), "each room once");
        assert_eq!(
            names(&a.ns("/chat").all_rooms().await),
            [chat.id().to_string(), "talk".into()].into()
        );
        assert!(a.ns("/nowhere").all_rooms().await.is_empty());
        assert_settled(&[a, b, c]).await;
    });
}
