//! A broadcast racing with joins and leaves on other threads (tokio, 2 worker threads): every
//! socket gets each broadcast at most once and in order, and a socket that was in the room
//! throughout gets every one.

use std::sync::{Arc, Mutex};
use std::time::Duration;
use volley::Socket;
use volley::testing::TestClient;
use volley_tokio::TokioRuntime;

const BROADCASTS: u64 = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasts_racing_joins_and_leaves_reach_each_socket_at_most_once() {
    let io = volley::builder().build(TokioRuntime::current());
    let sockets: Arc<Mutex<Vec<Socket>>> = Arc::default();
    let arrived = Arc::new(tokio::sync::Notify::new());
    let (kept, told) = (sockets.clone(), arrived.clone());
    io.ns("/").on_connection(move |s: Socket| {
        let (kept, told) = (kept.clone(), told.clone());
        async move {
            kept.lock().unwrap().push(s);
            told.notify_one();
        }
    });
    let run = async {
        let mut clients = Vec::new();
        for _ in 0..20 {
            clients.push(TestClient::connect(&io, "/", None).await.unwrap());
        }
        // A client has its CONNECT reply before the socket's `connection` handler has
        // necessarily run: wait for all twenty handles.
        while sockets.lock().unwrap().len() < 20 {
            arrived.notified().await;
        }
        let ids: Vec<_> = clients.iter().map(TestClient::id).collect();
        let by_id = |id| {
            sockets
                .lock()
                .unwrap()
                .iter()
                .find(|s: &&Socket| s.id() == id)
                .cloned()
                .unwrap()
        };
        // The first ten are members throughout; the other ten come and go on two tasks.
        for id in &ids[..10] {
            by_id(*id).join("room");
        }
        let movers: Vec<Socket> = ids[10..].iter().map(|id| by_id(*id)).collect();
        let churn = |part: Vec<Socket>| {
            tokio::spawn(async move {
                for round in 0..400 {
                    for s in &part {
                        if round % 2 == 0 {
                            s.join("room");
                        } else {
                            s.leave("room");
                        }
                    }
                    tokio::task::yield_now().await;
                }
            })
        };
        let a = churn(movers[..5].to_vec());
        let b = churn(movers[5..].to_vec());
        let io2 = io.clone();
        let sender = tokio::spawn(async move {
            for n in 0..BROADCASTS {
                io2.to("room").emit("b", &n).unwrap();
                if n % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            // A marker to everyone once every broadcast was made.
            io2.emit("end", &()).unwrap();
        });
        let (ra, rb, rs) = tokio::join!(a, b, sender);
        ra.unwrap();
        rb.unwrap();
        rs.unwrap();
        for (i, client) in clients.iter_mut().enumerate() {
            let mut got = Vec::new();
            loop {
                let ev = client.recv().await.expect("connected");
                match ev.event.as_str() {
                    "b" => got.push(ev.data::<u64>().unwrap()),
                    "end" => break,
                    other => panic!("unexpected {other}"),
                }
            }
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "client {i}: a broadcast twice or out of order: {got:?}"
            );
            if i < 10 {
                assert_eq!(
                    got.len() as u64,
                    BROADCASTS,
                    "client {i} was a member throughout"
                );
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the scenario timed out");
}
