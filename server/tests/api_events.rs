//! Event handlers through the test client: extractors, return values as acknowledgements,
//! errors, `emit_result`, ordering.

mod common;

use common::{Log, setup, setup_with};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::time::Duration;
use volley::testing::TestClient;
use volley::{AckSender, Bin, Data, EventName, Extension, Json, Payload, Socket, State, TryData};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Msg {
    room: String,
    text: String,
}

#[test]
fn data_extracts_a_single_argument_a_tuple_and_a_struct() {
    let (rt, io) = setup();
    io.ns("/")
        .on(
            "single",
            |Data(s): Data<String>| async move { s.to_uppercase() },
        )
        .on("pair", |Data((a, b)): Data<(i64, String)>| async move {
            format!("{b}{a}")
        })
        .on("obj", |Data(m): Data<Msg>| async move {
            Json(Msg {
                room: m.room,
                text: format!("{}!", m.text),
            })
        })
        .on("vec", |Data(v): Data<Vec<i64>>| async move {
            v.iter().sum::<i64>()
        });
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let r: String = c.emit_with_ack("single", "abc").await.unwrap();
        assert_eq!(r, "ABC");
        let p = Payload::new().arg(&7).unwrap().arg("x").unwrap();
        let r = c.ack_payload("pair", p).await.unwrap();
        assert_eq!(r.args(), [json!("x7")]);
        let m = Msg {
            room: "r".into(),
            text: "hi".into(),
        };
        let r: Msg = c.emit_with_ack("obj", &m).await.unwrap();
        assert_eq!(r.text, "hi!");
        // One array argument, or several numbers: both read as a Vec.
        let r: i64 = c.emit_with_ack("vec", &[1, 2, 3]).await.unwrap();
        assert_eq!(r, 6);
        let p = Payload::new().arg(&4).unwrap().arg(&5).unwrap();
        let r = c.ack_payload("vec", p).await.unwrap();
        assert_eq!(r.args(), [json!(9)]);
    });
}

/// The handler's last extractor may take the arguments rather than copy them: every
/// extractor still sees them, whichever place the `Payload` takes.
#[test]
fn the_arguments_reach_every_extractor_in_any_order() {
    let (rt, io) = setup();
    io.ns("/")
        .on(
            "payload-last",
            |Data(n): Data<i64>, p: Payload| async move { json!([n, p.args()[0]]) },
        )
        .on(
            "payload-first",
            |p: Payload, Data(n): Data<i64>| async move { json!([p.args()[0], n]) },
        )
        .on("twice", |a: Payload, b: Payload| async move {
            json!([a.args()[0], b.args()[0]])
        })
        .on(
            "then-name",
            |p: Payload, EventName(name): EventName| async move { json!([p.args()[0], name]) },
        );
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        for event in ["payload-last", "payload-first", "twice"] {
            let r: serde_json::Value = c.emit_with_ack(event, &5).await.unwrap();
            assert_eq!(r, json!([5, 5]), "{event}");
        }
        let r: serde_json::Value = c.emit_with_ack("then-name", &5).await.unwrap();
        assert_eq!(r, json!([5, "then-name"]));
    });
}

#[test]
fn try_data_runs_the_handler_with_the_error() {
    let (rt, io) = setup();
    let errors = Log::new();
    let e = errors.clone();
    io.ns("/")
        .on("n", |TryData(r): TryData<i64>| async move {
            match r {
                Ok(n) => format!("ok {n}"),
                Err(_) => "bad".to_owned(),
            }
        })
        .on_error(move |_s: Socket, m: String| {
            let e = e.clone();
            async move { e.push(m) }
        });
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let r: String = c.emit_with_ack("n", &5).await.unwrap();
        assert_eq!(r, "ok 5");
        let r: String = c.emit_with_ack("n", "five").await.unwrap();
        assert_eq!(r, "bad");
    });
    assert!(errors.entries().is_empty());
}

#[test]
fn extraction_failure_reaches_on_error_and_the_handler_does_not_run() {
    let (rt, io) = setup();
    let log = Log::new();
    let (l1, l2) = (log.clone(), log.clone());
    io.ns("/")
        .on("n", move |Data(n): Data<i64>| {
            let l = l1.clone();
            async move {
                l.push(format!("ran {n}"));
                n
            }
        })
        .on_error(move |_s: Socket, m: String| {
            let l = l2.clone();
            async move { l.push(format!("error: {m}")) }
        });
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let fut = c.ack_future("n", Payload::of("not a number").unwrap());
        assert!(rt.timeout(Duration::from_secs(5), fut).await.is_none());
        let n: i64 = c.emit_with_ack("n", &3).await.unwrap();
        assert_eq!(n, 3);
    });
    let entries = log.entries();
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert!(
        entries[0].starts_with("error: invalid event data"),
        "{entries:?}"
    );
    assert_eq!(entries[1], "ran 3");
}

#[test]
fn bin_sees_the_attachments_and_binary_replies_reach_the_client() {
    let (rt, io) = setup();
    io.ns("/")
        .on(
            "upload",
            |Data((name, _placeholder)): Data<(String, Value)>, Bin(bins): Bin| async move {
                let sizes: Vec<usize> = bins.iter().map(|b| b.len()).collect();
                Json(json!({ "name": name, "sizes": sizes }))
            },
        )
        .on("download", |Bin(bins): Bin| async move {
            let mut reversed: Vec<u8> = bins[0].to_vec();
            reversed.reverse();
            Payload::new().arg("file").unwrap().bin(reversed)
        });
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let p = Payload::new()
            .arg("a.bin")
            .unwrap()
            .bin(vec![1u8, 2, 3])
            .bin(vec![4u8; 10]);
        // A tuple of two does not read three arguments: the extractor fails, no ack.
        let r = rt
            .timeout(Duration::from_secs(5), c.ack_future("upload", p))
            .await;
        assert!(r.is_none());
        let p = Payload::new().arg("a.bin").unwrap().bin(vec![1u8, 2, 3]);
        let r = c.ack_payload("upload", p).await.unwrap();
        assert_eq!(r.args(), [json!({"name": "a.bin", "sizes": [3]})]);
        let p = Payload::new().bin(vec![1u8, 2, 3]);
        let r = c.ack_payload("download", p).await.unwrap();
        assert_eq!(r.attachments(), [bytes::Bytes::from_static(&[3, 2, 1])]);
        assert_eq!(r.args()[0], json!("file"));
        assert_eq!(r.args()[1], json!({"_placeholder": true, "num": 0}));
    });
}

#[derive(Debug, Clone, PartialEq)]
struct Config {
    greeting: String,
}

#[derive(Debug, Clone, PartialEq)]
struct User {
    name: String,
}

#[test]
fn state_extension_and_event_name() {
    let (rt, io) = setup_with(volley::builder().state(Config {
        greeting: "hello".into(),
    }));
    io.ns("/")
        .use_connect(|ctx, next| async move {
            let name = ctx.auth()["name"].as_str().unwrap_or("anon").to_owned();
            ctx.data().insert(User { name });
            next.run(ctx).await
        })
        .on(
            "greet",
            |State(c): State<Config>, Extension(u): Extension<User>| async move {
                format!("{} {}", c.greeting, u.name)
            },
        )
        .on("a", |EventName(n): EventName| async move { n })
        .on("b", |EventName(n): EventName| async move { n })
        .on(
            "optional",
            |missing: Option<Extension<Config>>, present: Option<Extension<User>>| async move {
                (missing.is_some(), present.is_some())
            },
        )
        .on("missing", |Extension(c): Extension<Config>| async move {
            c.greeting
        });
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", Some(json!({"name": "ann"})))
            .await
            .unwrap();
        let r: String = c.emit_with_ack("greet", &()).await.unwrap();
        assert_eq!(r, "hello ann");
        let r: String = c.emit_with_ack("a", &()).await.unwrap();
        assert_eq!(r, "a");
        let r: String = c.emit_with_ack("b", &()).await.unwrap();
        assert_eq!(r, "b");
        let r = c.ack_payload("optional", Payload::new()).await.unwrap();
        assert_eq!(r.args(), [json!(false), json!(true)]);
        // No socket data of that type: the handler does not run.
        let r = rt
            .timeout(
                Duration::from_secs(5),
                c.ack_future("missing", Payload::new()),
            )
            .await;
        assert!(r.is_none());
    });
}

#[test]
fn return_values_become_the_ack() {
    let (rt, io) = setup();
    io.ns("/")
        .on("int", || async { 42u8 })
        .on("float", || async { 1.5f64 })
        .on("str", || async { "static" })
        .on("string", || async { String::from("owned") })
        .on("bool", || async { true })
        .on("none", || async { Option::<i32>::None })
        .on("json", || async { Json(json!({"a": [1, 2]})) })
        .on("tuple", || async { (1, "two", json!({"three": 3})) })
        .on("vec", || async { vec![1, 2] })
        .on("ok", || async { Ok::<_, String>(7) })
        .on("unit", || async {});
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let mut ask = async |event: &str| c.ack_payload(event, Payload::new()).await.unwrap();
        assert_eq!(ask("int").await.args(), [json!(42)]);
        assert_eq!(ask("float").await.args(), [json!(1.5)]);
        assert_eq!(ask("str").await.args(), [json!("static")]);
        assert_eq!(ask("string").await.args(), [json!("owned")]);
        assert_eq!(ask("bool").await.args(), [json!(true)]);
        assert_eq!(ask("none").await.args(), [Value::Null]);
        assert_eq!(ask("json").await.args(), [json!({"a": [1, 2]})]);
        assert_eq!(
            ask("tuple").await.args(),
            [json!(1), json!("two"), json!({"three": 3})]
        );
        assert_eq!(ask("vec").await.args(), [json!([1, 2])]);
        assert_eq!(ask("ok").await.args(), [json!(7)]);
        // `()` acknowledges nothing.
        let r = rt
            .timeout(Duration::from_secs(5), c.ack_future("unit", Payload::new()))
            .await;
        assert!(r.is_none());
    });
}

#[test]
fn an_err_result_reaches_on_error_and_sends_no_ack() {
    let (rt, io) = setup();
    let log = Log::new();
    let l = log.clone();
    io.ns("/")
        .on("fail", |Data(n): Data<i64>| async move {
            if n < 0 {
                Err(format!("negative: {n}"))
            } else {
                Ok(n * 2)
            }
        })
        .on_error(move |s: Socket, m: String| {
            let l = l.clone();
            async move { l.push(format!("{} {m}", s.ns())) }
        });
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let fut = c.ack_future("fail", Payload::of(&-1).unwrap());
        assert!(rt.timeout(Duration::from_secs(5), fut).await.is_none());
        let r: i64 = c.emit_with_ack("fail", &4).await.unwrap();
        assert_eq!(r, 8);
    });
    assert_eq!(log.entries(), ["/ negative: -1"]);
}

#[test]
fn ack_sender_answers_explicitly_and_suppresses_the_return_value() {
    let (rt, io) = setup();
    io.ns("/")
        .on("explicit", |ack: AckSender| async move {
            assert!(ack.requested());
            ack.send("explicit").unwrap();
            "implicit"
        })
        .on("dropped", |ack: AckSender| async move {
            drop(ack);
            "implicit"
        })
        .on("several", |ack: AckSender| async move {
            ack.send_payload(Payload::new().arg(&1).unwrap().arg(&2).unwrap());
        })
        .on("unasked", |s: Socket, ack: AckSender| async move {
            let asked = ack.requested();
            ack.send("nobody listens").unwrap();
            s.emit("asked", &asked).unwrap();
        });
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let r: String = c.emit_with_ack("explicit", &()).await.unwrap();
        assert_eq!(r, "explicit");
        // Taking the sender and not using it: no acknowledgement at all.
        let fut = c.ack_future("dropped", Payload::new());
        assert!(rt.timeout(Duration::from_secs(5), fut).await.is_none());
        let r = c.ack_payload("several", Payload::new()).await.unwrap();
        assert_eq!(r.args(), [json!(1), json!(2)]);
        c.emit("unasked", &());
        let ev = c.recv().await.unwrap();
        assert_eq!(
            (ev.event.as_str(), ev.data::<bool>().unwrap()),
            ("asked", false)
        );
    });
}

#[test]
fn emit_result_always_emits_the_return_value_instead_of_acknowledging() {
    let (rt, io) = setup();
    io.ns("/")
        .on("sum", |Data((a, b)): Data<(i64, i64)>| async move { a + b })
        .emit_result_always("sum-result")
        .on("pair", || async { ("x", 1) })
        .emit_result_always("pair-result");
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let p = Payload::new().arg(&2).unwrap().arg(&3).unwrap();
        let ack = c.ack_future("sum", p);
        let ev = c.recv().await.unwrap();
        assert_eq!(ev.event, "sum-result");
        assert_eq!(ev.data::<i64>().unwrap(), 5);
        assert_eq!(ev.ack, None);
        assert!(rt.timeout(Duration::from_secs(5), ack).await.is_none());
        c.emit("pair", &());
        let ev = c.recv().await.unwrap();
        assert_eq!(ev.event, "pair-result");
        assert_eq!(ev.payload.args(), [json!("x"), json!(1)]);
        assert!(c.try_recv().is_none());
    });
}

/// Midway's `@WSEmit`: its documented test sends with an ack and gets the result back as the
/// ack; a plain emit gets it as the named event.
#[test]
fn emit_result_acknowledges_when_asked_and_emits_otherwise() {
    let (rt, io) = setup();
    io.ns("/")
        .on(
            "myEvent",
            |Data((a, b, c)): Data<(i64, i64, i64)>| async move { a + b + c },
        )
        .emit_result("myEventResult");
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let sum: i64 = c.send_with_ack("myEvent", &(1, 2, 3)).await.unwrap();
        assert_eq!(sum, 6);
        assert!(c.try_recv().is_none(), "no event besides the ack");
        c.emit("myEvent", &(4, 5, 6));
        let ev = c.recv().await.unwrap();
        assert_eq!(
            (ev.event.as_str(), ev.data::<i64>().unwrap()),
            ("myEventResult", 15)
        );
    });
}

/// Midway's `@WSBroadCast`: the result goes to the other sockets (of the rooms, when named),
/// not back to the sender.
#[test]
fn broadcast_result_reaches_the_others_and_not_the_sender() {
    let (rt, io) = setup();
    io.ns("/")
        .on("join", |s: Socket, Data(room): Data<String>| async move {
            s.join(room);
            true
        })
        .on("say", |Data(text): Data<String>| async move { text })
        .broadcast_result("said", Vec::<String>::new())
        .on("whisper", |Data(text): Data<String>| async move { text })
        .broadcast_result("whispered", ["quiet"]);
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let mut b = TestClient::connect(&io, "/", None).await.unwrap();
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        assert!(c.send_with_ack::<_, bool>("join", &"quiet").await.unwrap());
        a.emit("say", &"hello");
        for other in [&mut b, &mut c] {
            let ev = other.recv().await.unwrap();
            assert_eq!(
                (ev.event.as_str(), ev.data::<String>().unwrap()),
                ("said", "hello".to_owned())
            );
        }
        a.emit("whisper", &"psst");
        let ev = c.recv().await.unwrap();
        assert_eq!(
            (ev.event.as_str(), ev.data::<String>().unwrap()),
            ("whispered", "psst".to_owned())
        );
        // A round trip on each, so anything misrouted would have arrived by now.
        for client in [&mut a, &mut b] {
            assert!(
                client
                    .send_with_ack::<_, bool>("join", &"elsewhere")
                    .await
                    .unwrap()
            );
            assert!(
                client.try_recv().is_none(),
                "nothing for the sender or outside the room"
            );
        }
    });
}

#[test]
fn a_burst_of_a_thousand_emits_is_echoed_in_order() {
    let (rt, io) = setup();
    io.ns("/")
        .on("echo", |s: Socket, Data(n): Data<u32>| async move {
            s.emit("echo", &n).unwrap();
        });
    io.ns("/")
        .on("echo-ack", |Data(n): Data<u32>| async move { n });
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        for n in 0..1000u32 {
            c.emit("echo", &n);
        }
        for n in 0..1000u32 {
            let ev = c.recv().await.unwrap();
            assert_eq!(ev.data::<u32>().unwrap(), n);
        }
        let futs: Vec<_> = (0..1000u32)
            .map(|n| c.ack_future("echo-ack", Payload::of(&n).unwrap()))
            .collect();
        let answers = futures::future::join_all(futs).await;
        for (n, a) in answers.into_iter().enumerate() {
            assert_eq!(a.unwrap().args(), [json!(n)]);
        }
    });
}

#[test]
fn no_arguments_read_as_unit_or_none() {
    let (rt, io) = setup();
    io.ns("/")
        .on("unit", |Data(()): Data<()>| async move { "unit" })
        .on("opt", |Data(o): Data<Option<i64>>| async move {
            o.unwrap_or(-1)
        })
        .on("empty", |Data(v): Data<Vec<i64>>| async move { v.len() });
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let r = c.ack_payload("unit", Payload::new()).await.unwrap();
        assert_eq!(r.args(), [json!("unit")]);
        let r = c.ack_payload("opt", Payload::new()).await.unwrap();
        assert_eq!(r.args(), [json!(-1)]);
        let r: i64 = c.emit_with_ack("opt", &5).await.unwrap();
        assert_eq!(r, 5);
        let r = c.ack_payload("empty", Payload::new()).await.unwrap();
        assert_eq!(r.args(), [json!(0)]);
    });
}

#[test]
fn the_burst_is_echoed_in_order_with_handlers_started_on_their_sockets_tasks() {
    let (rt, io) = setup_with(volley::builder().inline_handlers(false));
    io.ns("/")
        .on("echo", |s: Socket, Data(n): Data<u32>| async move {
            s.emit("echo", &n).unwrap();
        });
    io.ns("/")
        .on("echo-ack", |Data(n): Data<u32>| async move { n });
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        for n in 0..200u32 {
            c.emit("echo", &n);
        }
        for n in 0..200u32 {
            let ev = c.recv().await.unwrap();
            assert_eq!(ev.data::<u32>().unwrap(), n);
        }
        let r: u32 = c.emit_with_ack("echo-ack", &7).await.unwrap();
        assert_eq!(r, 7);
    });
}

#[test]
fn a_handler_that_waits_on_the_machine_and_one_that_does_not_keep_their_order() {
    let (rt, io) = setup();
    let log = Log::new();
    let (l1, l2) = (log.clone(), log.clone());
    let server = io.clone();
    // `socket_count` is a call the machine answers: the handler cannot finish where it
    // started, and moves to its socket's task.
    io.ns("/")
        .on("count", move |s: Socket| {
            let (server, log) = (server.clone(), l1.clone());
            async move {
                s.emit("before", &()).unwrap();
                log.push("count started");
                let n = server.socket_count().await;
                log.push("count done");
                n
            }
        })
        .on("now", move |s: Socket| {
            let log = l2.clone();
            async move {
                log.push("now");
                s.emit("now", &()).unwrap();
                "now"
            }
        });
    rt.block_on(async {
        let mut c = TestClient::connect(&io, "/", None).await.unwrap();
        let count = c.ack_future("count", Payload::new());
        let now = c.ack_future("now", Payload::new());
        assert_eq!(count.await.unwrap().args(), [json!(1)]);
        assert_eq!(now.await.unwrap().args(), [json!("now")]);
        assert_eq!(c.recv().await.unwrap().event, "before");
        assert_eq!(c.recv().await.unwrap().event, "now");
        // Started in arrival order (the second may run beside the first once it waits).
        let entries = log.entries();
        assert_eq!(entries[0], "count started");
        assert_eq!(entries.len(), 3);
        // Then, once nothing runs for the socket, handlers that finish at once.
        for n in 0..50u32 {
            let r: String = c.emit_with_ack("now", &n).await.unwrap();
            assert_eq!(r, "now");
            assert_eq!(c.recv().await.unwrap().event, "now");
        }
    });
}

#[test]
fn a_panicking_handler_disconnects_its_socket_but_not_the_server() {
    let (rt, io) = setup();
    io.ns("/").on("boom", |Data(n): Data<u32>| async move {
        if n == 1 {
            panic!("handler panic on purpose");
        }
        n
    });
    rt.block_on(async {
        let mut a = TestClient::connect(&io, "/", None).await.unwrap();
        let mut b = TestClient::connect(&io, "/", None).await.unwrap();
        let r: u32 = a.emit_with_ack("boom", &5).await.unwrap();
        assert_eq!(r, 5);
        a.emit("boom", &1);
        let r: u32 = b.emit_with_ack("boom", &6).await.unwrap();
        assert_eq!(r, 6);
        // More in tests/api_panics.rs.
        assert!(a.recv().await.is_none());
        assert_eq!(io.socket_count().await, 1);
    });
}
