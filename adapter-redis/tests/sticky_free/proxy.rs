//! A round-robin HTTP proxy with no affinity: every request of every client connection goes
//! to the next node in turn, over a fresh upstream connection; a WebSocket upgrade goes to
//! the next node too and, after its `101`, the bytes are carried both ways until either
//! side closes.
//!
//! The one exception, for Node socket.io nodes (which need affinity for their sessions): a
//! request whose `sid` has no `.` (a session a Volley node with forwarding would have named
//! `<node>.<id>`) goes to the node that issued that sid, learnt from the handshake's answer.
//! New handshakes go to any node in turn; requests for Volley sessions to any Volley node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request or response head accepted: 64 KiB.
const MAX_HEAD: usize = 64 * 1024;

/// One node behind the proxy.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    /// Its node id (Volley), or a name of the test's choosing (Node).
    pub node: String,
    /// Whether it is a Volley node, which serves any session.
    pub volley: bool,
    /// Taken out of the rotation.
    pub gone: bool,
}

/// What the proxy counted for one upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests sent to it (upgrades included).
    pub requests: usize,
    /// Requests for a session another node owns (their `sid` names another node).
    pub foreign: usize,
    /// WebSocket upgrades of an existing session that it answered with `101`, and of those
    /// the ones for a session another node owns.
    pub upgrades: usize,
    pub foreign_upgrades: usize,
}

#[derive(Default)]
struct State {
    upstreams: Vec<Upstream>,
    counts: Vec<Counts>,
    /// Sessions of Node nodes: sid -> upstream index.
    node_sessions: HashMap<String, usize>,
    /// Each upgrade of an existing session: (sid, upstream index).
    upgrades: Vec<(String, usize)>,
}

/// The proxy; it serves until the test's runtime ends.
#[derive(Clone)]
pub struct Proxy {
    pub port: u16,
    state: Arc<Mutex<State>>,
    next: Arc<AtomicUsize>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The `sid` query parameter of a request target.
fn sid_of(target: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix("sid="))
        .map(str::to_owned)
}

/// The node a Volley session id names.
fn owner_of(sid: &str) -> Option<&str> {
    sid.split_once('.').map(|(node, _)| node)
}

/// A parsed message head and where its body is.
struct Head {
    /// Bytes of the head, `\r\n\r\n` included.
    len: usize,
    /// The request target, or the response status as text.
    target: String,
    status: u16,
    content_length: usize,
    upgrade: bool,
}

/// Reads from `stream` into `buf` until `buf` holds a whole head; `None` at a clean end
/// before any byte of a head.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    request: bool,
) -> std::io::Result<Option<Head>> {
    loop {
        if let Some(head) = parse_head(buf, request)? {
            return Ok(Some(head));
        }
        if buf.len() > MAX_HEAD {
            return Err(std::io::Error::other("head too large"));
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::ErrorKind::UnexpectedEof.into())
            };
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse_head(buf: &[u8], request: bool) -> std::io::Result<Option<Head>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let bad = |e: httparse::Error| std::io::Error::other(format!("bad head: {e}"));
    let (len, target, status, fields): (usize, String, u16, &[httparse::Header]) = if request {
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf).map_err(bad)? {
            httparse::Status::Partial => return Ok(None),
            httparse::Status::Complete(len) => {
                let target = req.path.unwrap_or("/").to_owned();
                (len, target, 0, &*req.headers)
            }
        }
    } else {
        let mut res = httparse::Response::new(&mut headers);
        match res.parse(buf).map_err(bad)? {
            httparse::Status::Partial => return Ok(None),
            httparse::Status::Complete(len) => {
                let code = res.code.unwrap_or(0);
                (len, code.to_string(), code, &*res.headers)
            }
        }
    };
    let mut content_length = 0;
    let mut upgrade = false;
    for h in fields {
        if h.name.eq_ignore_ascii_case("content-length") {
            content_length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| std::io::Error::other("bad Content-Length"))?;
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(std::io::Error::other(
                "chunked bodies are not expected from Socket.IO clients or servers",
            ));
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = h.value.eq_ignore_ascii_case(b"websocket");
        }
    }
    Ok(Some(Head {
        len,
        target,
        status,
        content_length,
        upgrade,
    }))
}

/// Reads the rest of a message of `head` (already in `buf`) and takes it out of `buf`.
async fn take_message(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    head: &Head,
) -> std::io::Result<Vec<u8>> {
    let total = head.len + head.content_length;
    while buf.len() < total {
        let mut chunk = [0u8; 16384];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf.drain(..total).collect())
}

impl Proxy {
    /// Starts a proxy on a free port of 127.0.0.1 in front of `upstreams`.
    pub async fn start(upstreams: Vec<Upstream>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = State {
            counts: vec![Counts::default(); upstreams.len()],
            upstreams,
            ..State::default()
        };
        let proxy = Proxy {
            port,
            state: Arc::new(Mutex::new(state)),
            next: Arc::default(),
        };
        let me = proxy.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let _ = client.set_nodelay(true);
                let me = me.clone();
                tokio::spawn(async move {
                    if let Err(e) = me.serve(client).await {
                        // The client or a node went away mid-exchange: the client sees its
                        // connection end, as behind a real balancer.
                        let _ = e;
                    }
                });
            }
        });
        proxy
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Moves the rotation on by zero to two places, at random, as requests of other clients
    /// would: a client's requests come in the same order each time, so without other
    /// traffic its upgrade could keep landing where the last one did.
    pub fn skip(&self) {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        self.next
            .fetch_add((nanos / 1000 % 3) as usize, Ordering::Relaxed);
    }

    /// Takes the upstream of node `node` out of the rotation.
    pub fn remove(&self, node: &str) {
        let mut state = lock(&self.state);
        for u in state.upstreams.iter_mut().filter(|u| u.node == node) {
            u.gone = true;
        }
    }

    /// What was counted for each upstream, by node.
    pub fn counts(&self) -> Vec<(String, Counts)> {
        let state = lock(&self.state);
        state
            .upstreams
            .iter()
            .zip(&state.counts)
            .map(|(u, c)| (u.node.clone(), c.clone()))
            .collect()
    }

    /// The node that took the upgrade of session `sid`, if one did.
    pub fn upgraded_on(&self, sid: &str) -> Option<String> {
        let state = lock(&self.state);
        state
            .upgrades
            .iter()
            .find(|(s, _)| s == sid)
            .map(|(_, i)| state.upstreams[*i].node.clone())
    }

    /// The upstream for a request for `sid` (`None`: a handshake).
    fn pick(&self, sid: Option<&str>) -> std::io::Result<usize> {
        let state = lock(&self.state);
        if let Some(sid) = sid.filter(|s| !s.contains('.'))
            && let Some(&i) = state.node_sessions.get(sid)
        {
            return Ok(i);
        }
        let volley_only = sid.is_some();
        let candidates: Vec<usize> = (0..state.upstreams.len())
            .filter(|&i| !state.upstreams[i].gone && (!volley_only || state.upstreams[i].volley))
            .collect();
        if candidates.is_empty() {
            return Err(std::io::Error::other("no upstream left"));
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(candidates[n % candidates.len()])
    }

    async fn serve(&self, mut client: TcpStream) -> std::io::Result<()> {
        let mut buf = Vec::new();
        loop {
            let Some(head) = read_head(&mut client, &mut buf, true).await? else {
                return Ok(());
            };
            let request = take_message(&mut client, &mut buf, &head).await?;
            let sid = sid_of(&head.target);
            let i = self.pick(sid.as_deref())?;
            let (addr, node) = {
                let mut state = lock(&self.state);
                let u = state.upstreams[i].clone();
                let counts = &mut state.counts[i];
                counts.requests += 1;
                if let Some(owner) = sid.as_deref().and_then(owner_of)
                    && owner != u.node
                {
                    counts.foreign += 1;
                }
                (u.addr, u.node)
            };
            let mut upstream = TcpStream::connect(addr).await?;
            upstream.set_nodelay(true)?;
            upstream.write_all(&request).await?;
            let mut up_buf = Vec::new();
            let response_head = read_head(&mut upstream, &mut up_buf, false)
                .await?
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
            if head.upgrade && response_head.status == 101 {
                if let Some(sid) = &sid {
                    let mut state = lock(&self.state);
                    state.upgrades.push((sid.clone(), i));
                    let counts = &mut state.counts[i];
                    counts.upgrades += 1;
                    if owner_of(sid).is_some_and(|owner| owner != node) {
                        counts.foreign_upgrades += 1;
                    }
                }
                // The 101 and whatever followed it, then the client's early bytes, then a pipe.
                client.write_all(&up_buf).await?;
                upstream.write_all(&buf).await?;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                return Ok(());
            }
            let response = take_message(&mut upstream, &mut up_buf, &response_head).await?;
            if sid.is_none() && response_head.status == 200 {
                self.learn(i, &response[response_head.len..]);
            }
            client.write_all(&response).await?;
        }
    }

    /// Remembers the sid a Node upstream gave in a polling handshake's answer.
    fn learn(&self, i: usize, body: &[u8]) {
        let mut state = lock(&self.state);
        if state.upstreams[i].volley {
            return;
        }
        let text = String::from_utf8_lossy(body);
        // `0{"sid":"…",…}`: the open packet.
        if let Some(json) = text.strip_prefix('0')
            && let Ok(open) = serde_json::from_str::<serde_json::Value>(json)
            && let Some(sid) = open["sid"].as_str()
        {
            state.node_sessions.insert(sid.to_owned(), i);
        }
    }
}
