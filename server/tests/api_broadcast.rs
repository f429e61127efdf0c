//! Broadcast operators on the server and on namespaces, aggregated acknowledgements,
//! fetching and moving sockets, dynamic namespaces.

mod common;

use common::{SETTLE, setup};
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;
use volley::runtime::Runtime as _;
use volley::testing::{TestClient, TestRuntime};
use volley::{BroadcastAckError, DisconnectReason, Io, Socket, SocketId};

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

/// Four clients of `nsp`: a in r1, b in r2, c in r1 and r2, d in none.
async fn four(io: &Io<TestRuntime>, nsp: &str) -> [TestClient; 4] {
    let a = TestClient::connect(io, nsp, None).await.unwrap();
    let b = TestClient::connect(io, nsp, None).await.unwrap();
    let c = TestClient::connect(io, nsp, None).await.unwrap();
    let d = TestClient::connect(io, nsp, None).await.unwrap();
    let ns = io.ns(nsp);
    ns.to(a.id()).to(c.id()).sockets_join(["r1"]);
    ns.to(b.id()).to(c.id()).sockets_join(["r2"]);
    [a, b, c, d]
}

fn ids(clients: &[&TestClient]) -> BTreeSet<SocketId> {
    clients.iter().map(|c| c.id()).collect()
}

#[test]
fn room_selection_on_the_server() {
    let (rt, io) = setup();
    rt.block_on(async {
        let [mut a, mut b, mut c, mut d] = four(&io, "/").await;
        let mut all = [&mut a, &mut b, &mut c, &mut d];
        io.to("r1").to("r2").emit("union", &()).unwrap();
        io.in_("r1").emit("in", &()).unwrap();
        io.except("r2").emit("except", &()).unwrap();
        io.to("r1").except("r2").emit("to-except", &()).unwrap();
        io.local().emit("local", &()).unwrap();
        io.compress(false).emit("compress", &()).unwrap();
        io.emit("all", &()).unwrap();
        io.all().to("nobody").emit("nobody", &()).unwrap();
        let got = received(&rt, &mut all).await;
        let expect = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            got[0],
            expect(&[
                "union",
                "in",
                "except",
                "to-except",
                "local",
                "compress",
                "all"
            ])
        );
        assert_eq!(got[1], expect(&["union", "local", "compress", "all"]));
        assert_eq!(got[2], expect(&["union", "in", "local", "compress", "all"]));
        assert_eq!(got[3], expect(&["except", "local", "compress", "all"]));
    });
}

#[test]
fn namespace_operators_stay_in_their_namespace() {
    let (rt, io) = setup();
    let chat = io.ns("/chat");
    rt.block_on(async {
        let [mut a, mut b, mut c, mut d] = four(&io, "/chat").await;
        let mut main = TestClient::connect(&io, "/", None).await.unwrap();
        io.sockets_join(["r1"]);
        chat.to("r1").emit("r1", &()).unwrap();
        chat.except("r1").emit("not-r1", &()).unwrap();
        chat.in_("r2")
            .local()
            .compress(true)
            .emit("r2", &())
            .unwrap();
        chat.emit("all", &()).unwrap();
        io.to("r1").emit("main-r1", &()).unwrap();
        let got = received(&rt, &mut [&mut a, &mut b, &mut c, &mut d, &mut main]).await;
        assert_eq!(got[0], ["r1", "all"]);
        assert_eq!(got[1], ["not-r1", "r2", "all"]);
        assert_eq!(got[2], ["r1", "r2", "all"]);
        assert_eq!(got[3], ["not-r1", "all"]);
        assert_eq!(got[4], ["main-r1"]);
        assert_eq!(chat.socket_count().await, 4);
        assert_eq!(io.ns("/").socket_count().await, 1);
        assert_eq!(io.socket_count().await, 5);
        assert_eq!(io.client_count().await, 5);
        assert_eq!(chat.name(), Some("/chat"));
    });
}

#[test]
fn volatile_emits_reach_writable_sockets_and_skip_busy_ones() {
    let (rt, io) = setup();
    let mut c = rt.block_on(TestClient::connect(&io, "/", None)).unwrap();
    rt.run_until_idle();
    // The first emit occupies the transport until it is written; the second, in the same
    // turn of the machine, finds it busy and is dropped; an ordinary emit waits its turn.
    io.volatile().emit("v1", &1).unwrap();
    io.volatile().emit("v2", &2).unwrap();
    io.emit("kept", &3).unwrap();
    rt.run_until_idle();
    io.volatile().emit("v3", &4).unwrap();
    rt.run_until_idle();
    let mut got = Vec::new();
    while let Some(ev) = c.try_recv() {
        got.push(ev.event);
    }
    assert_eq!(got, ["v1", "kept", "v3"]);
}

#[test]
fn fetch_sockets_reports_ids_handshake_rooms_and_data() {
    let (rt, io) = setup();
    io.ns("/").use_connect(|ctx, next| async move {
        let name = ctx.auth()["name"].as_str().unwrap_or_default().to_owned();
        ctx.data().insert(name);
        next.run(ctx).await
    });
    rt.block_on(async {
        let a = TestClient::connect(&io, "/", Some(json!({"name": "a"})))
            .await
            .unwrap();
        let b = TestClient::connect(&io, "/", Some(json!({"name": "b"})))
            .await
            .unwrap();
        io.to(a.id()).sockets_join(["x", "y"]);
        let all = io.fetch_sockets().await;
        assert_eq!(
            all.iter().map(|s| s.id()).collect::<BTreeSet<_>>(),
            ids(&[&a, &b])
        );
        let in_x = io.in_("x").fetch_sockets().await;
        assert_eq!(in_x.len(), 1);
        let s = &in_x[0];
        assert_eq!(s.id(), a.id());
        assert_eq!(s.handshake().auth(), &json!({"name": "a"}));
        assert_eq!(s.data().get::<String>().as_deref(), Some("a"));
        let rooms: BTreeSet<String> = s.rooms().iter().map(|r| r.to_string()).collect();
        let expected: BTreeSet<String> = ["x".to_owned(), "y".to_owned(), a.id().to_string()]
            .into_iter()
            .collect();
        assert_eq!(rooms, expected);
        // The fetched socket acts.
        s.leave("y");
        s.emit("direct", &1).unwrap();
        let again = io.in_("y").fetch_sockets().await;
        assert!(again.is_empty());
        assert!(
            io.except("x")
                .fetch_sockets()
                .await
                .iter()
                .all(|s| s.id() == b.id())
        );
    });
}

#[test]
fn sockets_join_leave_and_disconnect_sockets() {
    let (rt, io) = setup();
    let reasons = common::Log::new();
    let r2 = reasons.clone();
    io.ns("/")
        .on_disconnect(move |s: Socket, r: DisconnectReason| {
            let l = r2.clone();
            async move { l.push(format!("{} {r}", s.id())) }
        });
    rt.block_on(async {
        let [mut a, mut b, mut c, mut d] = four(&io, "/").await;
        io.to("r1").sockets_join(["both"]);
        io.to("r2").sockets_join(["both"]);
        assert_eq!(io.in_("both").fetch_sockets().await.len(), 3, "a, b and c");
        io.in_("r2").sockets_leave(["both"]);
        let left: Vec<SocketId> = io
            .in_("both")
            .fetch_sockets()
            .await
            .iter()
            .map(|s| s.id())
            .collect();
        assert_eq!(left, [a.id()]);
        io.sockets_leave(["r1", "r2", "both"]);
        assert!(io.in_("r1").fetch_sockets().await.is_empty());
        // Back in rooms, then disconnected by room.
        io.to(a.id()).to(b.id()).sockets_join(["gone"]);
        io.in_("gone").disconnect_sockets(false);
        assert!(a.recv().await.is_none());
        assert!(b.recv().await.is_none());
        assert_eq!(io.socket_count().await, 2);
        assert_eq!(io.client_count().await, 4, "connections stay open");
        io.to(c.id()).disconnect_sockets(true);
        assert!(c.recv().await.is_none());
        rt.sleep(SETTLE).await;
        assert_eq!(io.client_count().await, 3);
        io.disconnect_sockets(false);
        assert!(d.recv().await.is_none());
        assert_eq!(io.socket_count().await, 0);
    });
    assert_eq!(reasons.entries().len(), 4);
    assert!(
        reasons
            .entries()
            .iter()
            .all(|e| e.ends_with("server namespace disconnect"))
    );
}

#[test]
fn aggregated_acks_wait_for_everyone_or_the_timeout() {
    let (rt, io) = setup();
    rt.block_on(async {
        let [mut a, mut b, mut c, mut d] = four(&io, "/").await;
        // Everyone answers.
        let asked = io
            .timeout(Duration::from_secs(5))
            .emit_with_ack("q", &"all?");
        let answer = async {
            for (n, cl) in [&mut a, &mut b, &mut c, &mut d].into_iter().enumerate() {
                let ev = cl.recv().await.unwrap();
                assert_eq!(ev.data::<String>().unwrap(), "all?");
                cl.ack(ev.ack.unwrap(), &n);
            }
        };
        let (r, ()) = futures::future::join(asked, answer).await;
        let mut answers: Vec<(SocketId, usize)> = r
            .unwrap()
            .iter()
            .map(|r| (r.socket, r.data::<usize>().unwrap()))
            .collect();
        answers.sort_by_key(|(_, n)| *n);
        assert_eq!(
            answers,
            [(a.id(), 0), (b.id(), 1), (c.id(), 2), (d.id(), 3)]
        );

        // One never answers: the others' answers come back after the timeout.
        let start = rt.elapsed();
        let asked = io
            .timeout(Duration::from_secs(5))
            .emit_with_ack("q", &"again");
        let answer = async {
            for cl in [&mut a, &mut b, &mut c] {
                let ev = cl.recv().await.unwrap();
                cl.ack(ev.ack.unwrap(), "yes");
            }
            assert!(d.recv().await.unwrap().ack.is_some());
        };
        let (r, ()) = futures::future::join(asked, answer).await;
        assert_eq!(rt.elapsed() - start, Duration::from_secs(5));
        let Err(BroadcastAckError::Partial(partial)) = r else {
            panic!("expected a partial result, got {r:?}");
        };
        assert_eq!(partial.missing, 1);
        let answered: BTreeSet<SocketId> = partial.responses.iter().map(|r| r.socket).collect();
        assert_eq!(answered, ids(&[&a, &b, &c]));

        // A room, on a namespace; and nobody to ask.
        let asked = io.ns("/").to("r2").timeout(Duration::from_secs(5));
        let asked = asked.emit_with_ack("room", &());
        let answer = async {
            for cl in [&mut b, &mut c] {
                let ev = cl.recv().await.unwrap();
                cl.ack(ev.ack.unwrap(), &true);
            }
        };
        let (r, ()) = futures::future::join(asked, answer).await;
        assert_eq!(r.unwrap().len(), 2);
        let none = io.to("nobody").emit_with_ack("q", &()).await.unwrap();
        assert!(none.is_empty());

        // No timeout: a socket that leaves counts as missing.
        let asked = io.to("r1").emit_with_ack("q", &());
        let answer = async {
            let ev = a.recv().await.unwrap();
            a.ack(ev.ack.unwrap(), &1);
            c.recv().await.unwrap();
            c.disconnect();
        };
        let (r, ()) = futures::future::join(asked, answer).await;
        let Err(BroadcastAckError::Partial(partial)) = r else {
            panic!("expected a partial result, got {r:?}");
        };
        assert_eq!((partial.responses.len(), partial.missing), (1, 1));
        assert_eq!(io.pending_ack_count().await, 0);
    });
}

#[test]
fn server_side_emit_has_no_other_node_to_reach() {
    let (rt, io) = setup();
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        io.server_side_emit("hello", &1).unwrap();
        io.ns("/")
            .server_side_emit("hello", &json!({"a": 1}))
            .unwrap();
        let got = received(&rt, &mut [&mut a]).await;
        assert!(got[0].is_empty());
    });
}

#[test]
fn dynamic_namespaces_share_handlers_and_refuse_what_they_do_not_match() {
    let (rt, io) = setup();
    let family = io.dynamic_ns(|name| name.starts_with("/room-"), true);
    family
        .use_connect(|ctx, next| async move {
            let nsp = ctx.handshake().namespace().to_owned();
            ctx.data().insert(nsp);
            next.run(ctx).await
        })
        .on("where", |s: Socket| async move {
            (s.ns().to_owned(), s.data().get::<String>())
        });
    rt.block_on(async {
        let mut one = TestClient::connect(&io, "/room-1", None).await.unwrap();
        let mut two = TestClient::connect(&io, "/room-2", None).await.unwrap();
        let mut main = TestClient::connect(&io, "/", None).await.unwrap();
        let r = one
            .ack_payload("where", volley::Payload::new())
            .await
            .unwrap();
        assert_eq!(r.args(), [json!("/room-1"), json!("/room-1")]);
        let r = two
            .ack_payload("where", volley::Payload::new())
            .await
            .unwrap();
        assert_eq!(r.args(), [json!("/room-2"), json!("/room-2")]);
        let err = TestClient::connect(&io, "/other", None).await.unwrap_err();
        assert_eq!(err.message, "Invalid namespace");
        assert_eq!(err.data, None);

        // The family broadcasts to every child, not to `/`.
        assert_eq!(family.name(), None);
        assert_eq!(family.socket_count().await, 2);
        family.emit("family", &()).unwrap();
        family.to(one.id()).emit("one", &()).unwrap();
        assert_eq!(family.fetch_sockets().await.len(), 2);
        let got = received(&rt, &mut [&mut one, &mut two, &mut main]).await;
        assert_eq!(got[0], ["family", "one"]);
        assert_eq!(got[1], ["family"]);
        assert!(got[2].is_empty());
        let asked = family
            .timeout(Duration::from_secs(1))
            .emit_with_ack("q", &());
        let answer = async {
            for cl in [&mut one, &mut two] {
                let ev = cl.recv().await.unwrap();
                cl.ack(ev.ack.unwrap(), cl.nsp());
            }
        };
        let (r, ()) = futures::future::join(asked, answer).await;
        assert_eq!(r.unwrap().len(), 2);

        // A child by name: the family's child, handlers included (not a new, empty
        // namespace that would take the name over).
        let child = io.ns("/room-2");
        assert_eq!(child.socket_count().await, 1);
        child.emit("child", &()).unwrap();
        assert_eq!(two.recv().await.unwrap().event, "child");
        let mut three = TestClient::connect(&io, "/room-2", None).await.unwrap();
        let r = three
            .ack_payload("where", volley::Payload::new())
            .await
            .unwrap();
        assert_eq!(r.args(), [json!("/room-2"), json!("/room-2")]);
        three.disconnect();

        // With cleanup, an emptied child goes away; it comes back on the next connect.
        let namespaces = || async {
            io.driver()
                .handle()
                .call(|node, _| node.sio().namespace_names())
                .await
                .unwrap()
        };
        assert!(namespaces().await.contains(&"/room-1".to_owned()));
        one.disconnect();
        rt.sleep(SETTLE).await;
        assert!(!namespaces().await.contains(&"/room-1".to_owned()));
        assert_eq!(family.socket_count().await, 1);
        let mut again = TestClient::connect(&io, "/room-1", None).await.unwrap();
        let r = again
            .ack_payload("where", volley::Payload::new())
            .await
            .unwrap();
        assert_eq!(r.args()[0], json!("/room-1"));
    });
}
