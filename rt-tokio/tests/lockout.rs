//! No lock-out at the connection cap: 10 500 silent sockets from one address against a cap
//! of 9 900, and a new client is still served at once (within 2 s, allowing for a loaded
//! machine), because the oldest connection that has not sent a request makes room for it.
//!
//! The cap sits a little under 10 000 because client and server sockets live in this one
//! process: twice the cap, plus slack, must fit under the descriptor limit (20 000 here).
#![cfg(unix)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use futures::FutureExt;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::compat::TokioAsyncReadCompatExt;
use volley::driver::ServerConfig;
use volley::driver::test_support::{self as scenario, Client};
use volley_tokio::TokioRuntime;

const CAP: usize = 9_900;
const SILENT: usize = 10_500;

/// Raises the soft limit on open descriptors to `needed`, or fails saying why it cannot.
fn raise_fd_limit(needed: u64) {
    let limit = getrlimit(Resource::Nofile);
    let current = limit.current.unwrap_or(u64::MAX);
    if current >= needed {
        return;
    }
    let maximum = limit.maximum.unwrap_or(u64::MAX);
    assert!(
        maximum >= needed,
        "this test holds {needed} descriptors open, but RLIMIT_NOFILE's hard limit is \
         {maximum}: raise it (`ulimit -Hn`, LimitNOFILE=) to run it"
    );
    let raised = Rlimit {
        current: Some(needed),
        maximum: limit.maximum,
    };
    if let Err(e) = setrlimit(Resource::Nofile, raised) {
        panic!("cannot raise the soft RLIMIT_NOFILE from {current} to {needed}: {e}");
    }
}

/// Waits for the server to close `socket` (end of stream, or a reset).
async fn closed_by_server(socket: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    loop {
        if socket.readable().await.is_err() {
            return true;
        }
        match socket.try_read(&mut byte) {
            Ok(0) => return true,
            Ok(_) => return false,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_from_one_address_do_not_lock_clients_out() {
    // Client and server side of every connection, the slack for the runtime and the
    // test harness.
    raise_fd_limit(2 * CAP as u64 + 128);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A head timeout far beyond the test, so that only making room closes silent sockets.
    let config = ServerConfig::new()
        .max_connections(CAP)
        .head_timeout(Duration::from_secs(600));
    let (driver, _events) = scenario::echo(TokioRuntime::current(), config);
    let (accepting, _done) = volley_tokio::serve(listener, driver.clone()).remote_handle();
    tokio::spawn(accepting);
    let started = Instant::now();
    let test = async {
        // Connected one after the other, so that accept order (the order the server admits
        // them in) is the order of `silent`.
        let mut silent = VecDeque::with_capacity(CAP + 1);
        for _ in 0..CAP {
            silent.push_back(TcpStream::connect(addr).await.expect("connect"));
        }
        // Each one past the cap closes the oldest silent one, which the client then drops
        // (keeping this process's descriptors at about twice the cap).
        for n in CAP..SILENT {
            silent.push_back(TcpStream::connect(addr).await.expect("connect"));
            let mut oldest = silent.pop_front().unwrap();
            let closed =
                tokio::time::timeout(Duration::from_secs(5), closed_by_server(&mut oldest));
            assert!(
                closed.await.unwrap_or(false),
                "socket {n}: the oldest silent connection was not closed to make room"
            );
        }
        assert!(
            driver.connection_count() <= CAP + 1,
            "{}",
            driver.connection_count()
        );
        // A real client now: its handshake is answered at once.
        let asked = Instant::now();
        let stream = TcpStream::connect(addr).await.unwrap().compat();
        let mut client = Client::new(stream);
        let response = client
            .get("/engine.io/?EIO=4&transport=polling")
            .await
            .unwrap();
        let waited = asked.elapsed();
        assert_eq!(response.status, 200, "{response:?}");
        assert!(response.text().starts_with("0{"), "{}", response.text());
        assert!(
            waited < Duration::from_secs(2),
            "the handshake took {waited:?}"
        );
        // And the oldest silent socket made room for it.
        let mut oldest = silent.pop_front().unwrap();
        assert!(closed_by_server(&mut oldest).await);
        silent.len()
    };
    let left = tokio::time::timeout(Duration::from_secs(50), test)
        .await
        .expect("the scenario must finish well under a minute");
    assert_eq!(left, CAP - 1);
    eprintln!(
        "{SILENT} silent sockets and a handshake in {:?}",
        started.elapsed()
    );
}
