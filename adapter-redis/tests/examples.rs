//! The Redis examples on two Volley nodes sharing a redis-server this test starts, driven by
//! official socket.io-client sockets (`tests/node/interop-clients.mjs`): the `cluster` chat,
//! and egg-socket.io's peer-to-peer chat tutorial (`p2p_chat`).

use serde_json::{Value, json};
use std::time::Duration;
use volley_redis::{RedisAdapter, RedisOptions};
use volley_tokio::TokioRuntime;

mod common;
use common::node::Clients;
use common::{Redis, serve};

#[allow(dead_code)]
#[path = "../examples/cluster.rs"]
mod cluster;

#[allow(dead_code)]
#[path = "../examples/p2p_chat.rs"]
mod p2p_chat;

/// A Volley node on `redis` with `install`'s handlers; returns the port it serves on.
async fn node(redis: &Redis, install: impl FnOnce(&volley::Io<TokioRuntime>)) -> u16 {
    let rt = TokioRuntime::current();
    let adapter = RedisAdapter::new(RedisOptions::new(&redis.url()), rt.clone());
    let io = volley::builder()
        .adapter(adapter.clone())
        .request_timeout(Duration::from_secs(3))
        .build(rt);
    install(&io);
    let port = serve(&io).await;
    tokio::time::timeout(Duration::from_secs(10), adapter.subscribed())
        .await
        .expect("subscribed to Redis in time");
    // Keep the node alive for the test's life.
    std::mem::forget(io);
    port
}

/// Connects client `name` to `port` with `query` and `auth`; its socket id, or the refusal.
async fn connect(
    clients: &mut Clients,
    name: &str,
    port: u16,
    query: Value,
    auth: Value,
) -> Result<String, String> {
    let args = json!({
        "name": name,
        "url": format!("http://127.0.0.1:{port}"),
        "query": query,
        "auth": auth,
    });
    let connected = clients.script.try_call("connect", args).await?;
    let id = connected["id"].as_str().expect("a socket id").to_owned();
    clients.ids.insert(name.to_owned(), id.clone());
    Ok(id)
}

async fn emit(clients: &mut Clients, name: &str, event: &str, args: Value) {
    clients
        .script
        .call(
            "emit",
            json!({ "client": name, "event": event, "args": args }),
        )
        .await;
}

async fn ask(clients: &mut Clients, name: &str, event: &str, args: Value) -> Value {
    clients
        .script
        .call(
            "emitWithAck",
            json!({ "client": name, "event": event, "args": args }),
        )
        .await
}

/// The next `online` event of `name`: its action and the clients it lists.
async fn online(clients: &mut Clients, name: &str) -> (String, Vec<String>) {
    let ev = clients.event(name).await;
    assert_eq!(ev[0], "online", "{name}: {ev}");
    let list = ev[1]["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    (ev[1]["action"].as_str().unwrap().to_owned(), list)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_p2p_chat_tutorial_works_across_two_nodes() {
    let redis = Redis::start().await;
    let token = "t0p".to_owned();
    let a = node(&redis, |io| p2p_chat::install(io, token.clone())).await;
    let b = node(&redis, |io| p2p_chat::install(io, token.clone())).await;
    let mut c = Clients::start().await;

    // Room and user id are required.
    let refused = connect(&mut c, "nobody", a, json!({ "room": "r1" }), json!({})).await;
    assert!(
        refused
            .unwrap_err()
            .contains("room and userId are required"),
        "a user without id is refused"
    );

    connect(
        &mut c,
        "ann",
        a,
        json!({ "room": "r1", "userId": "ann" }),
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(
        online(&mut c, "ann").await,
        ("join".to_owned(), vec!["ann".to_owned()])
    );
    connect(
        &mut c,
        "bob",
        b,
        json!({ "room": "r1", "userId": "bob" }),
        json!({}),
    )
    .await
    .unwrap();
    // The online list spans both nodes, and reaches the room on both.
    let both = vec!["ann".to_owned(), "bob".to_owned()];
    assert_eq!(
        online(&mut c, "ann").await,
        ("join".to_owned(), both.clone())
    );
    assert_eq!(
        online(&mut c, "bob").await,
        ("join".to_owned(), both.clone())
    );

    // A private message from node A to a user on node B.
    let reached = ask(
        &mut c,
        "ann",
        "exchange",
        json!([{ "target": "bob", "payload": { "msg": "hi bob" } }]),
    )
    .await;
    assert_eq!(reached, json!(1));
    assert_eq!(
        c.event("bob").await,
        json!(["exchange", { "client": "ann", "target": "bob", "payload": { "msg": "hi bob" } }])
    );

    // Only an admin kicks.
    let kicked = ask(&mut c, "bob", "kick", json!([{ "target": "ann" }])).await;
    assert_eq!(kicked, json!(false));
    assert_eq!(
        c.event("bob").await,
        json!(["error", { "message": "only an admin can kick" }])
    );
    // An admin in another room, on node B, kicks ann off node A.
    connect(
        &mut c,
        "carl",
        b,
        json!({ "room": "r2", "userId": "carl" }),
        json!({ "token": "t0p" }),
    )
    .await
    .unwrap();
    assert_eq!(
        online(&mut c, "carl").await,
        ("join".to_owned(), vec!["carl".to_owned()])
    );
    let kicked = ask(&mut c, "carl", "kick", json!([{ "target": "ann" }])).await;
    assert_eq!(kicked, json!(true));
    let gone = c.next("ann").await;
    assert_eq!(gone["report"], "disconnect", "{gone}");
    assert_eq!(gone["reason"], "io server disconnect");
    assert_eq!(
        online(&mut c, "bob").await,
        ("leave".to_owned(), vec!["bob".to_owned()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_example_chats_across_two_nodes() {
    let redis = Redis::start().await;
    let a = node(&redis, cluster::install).await;
    let b = node(&redis, cluster::install).await;
    let mut c = Clients::start().await;
    connect(&mut c, "ann", a, json!({}), json!({ "nick": "ann" }))
        .await
        .unwrap();
    connect(&mut c, "bob", b, json!({}), json!({ "nick": "bob" }))
        .await
        .unwrap();
    connect(&mut c, "cat", b, json!({}), json!({ "nick": "cat" }))
        .await
        .unwrap();
    assert_eq!(
        ask(&mut c, "bob", "join", json!(["den"])).await,
        json!("den")
    );
    assert_eq!(
        ask(&mut c, "ann", "join", json!(["den"])).await,
        json!("den")
    );
    // `who` lists the room across both nodes.
    assert_eq!(
        ask(&mut c, "ann", "who", json!([])).await,
        json!(["ann", "bob"])
    );
    emit(&mut c, "ann", "message", json!(["hello"])).await;
    assert_eq!(
        c.event("bob").await,
        json!(["message", { "nick": "ann", "text": "hello" }])
    );
    // cat stayed in the lobby: a lobby message reaches it and nobody in the den.
    assert_eq!(ask(&mut c, "cat", "who", json!([])).await, json!(["cat"]));
    let lobby = ask(&mut c, "ann", "join", json!(["lobby"])).await;
    assert_eq!(lobby, json!("lobby"));
    emit(&mut c, "ann", "message", json!(["in the lobby"])).await;
    assert_eq!(
        c.event("cat").await,
        json!(["message", { "nick": "ann", "text": "in the lobby" }])
    );
    emit(&mut c, "cat", "message", json!(["ping"])).await;
    assert_eq!(
        c.event("ann").await,
        json!(["message", { "nick": "cat", "text": "ping" }])
    );
}
