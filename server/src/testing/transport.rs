//! How the test client reaches a server: byte streams from a [`Connector`] (in memory, or
//! real TCP connections from a runtime crate), carrying a WebSocket or HTTP long-polling.
//!
//! Either transport is presented to the client as the same pair: a stream of Engine.IO
//! messages in their WebSocket form (`4…`, `2`, binary data) and a sender of the same, so the
//! Socket.IO side of the client does not know which one it speaks.

use crate::handler::BoxFuture;
use crate::runtime::Runtime;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::Message as Ws;
use async_tungstenite::tungstenite::protocol::Role;
use bytes::Bytes;
use futures::StreamExt;
use futures::channel::mpsc;
use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures::stream::BoxStream;
use volley_core::Utf8Bytes;
use volley_core::engine::payload::{Framing, decode_payload, encode_payload};
use volley_core::engine::{Packet, Protocol, WsMessage};

/// Opens byte streams to a server: one for a WebSocket, one per request in flight for
/// long-polling (a GET parked while a POST goes out).
pub trait Connector: Send + Sync + 'static {
    /// The stream type.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// A new connection to the server.
    fn connect(&self) -> BoxFuture<std::io::Result<Self::Stream>>;
}

/// Which transport the test client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransportKind {
    /// A WebSocket from the first request (the JS client's `transports: ["websocket"]`).
    #[default]
    WebSocket,
    /// HTTP long-polling only (`transports: ["polling"]`): a GET always parked, each message
    /// sent in a POST.
    Polling,
}

/// The client's side of a transport: what comes in, and the way out. A `Ws::Close` sent ends
/// the transport.
pub(crate) struct Wire {
    pub incoming: BoxStream<'static, Ws>,
    pub outgoing: mpsc::UnboundedSender<Ws>,
}

/// What the handshake request carries besides the transport's own parameters.
pub(crate) struct Request<'a> {
    pub path: &'a str,
    pub query: &'a [(String, String)],
    pub headers: &'a [(String, String)],
}

impl Request<'_> {
    fn target(&self, transport: &str, sid: Option<&str>) -> String {
        let mut target = format!("{}?EIO=4&transport={transport}", self.path);
        if let Some(sid) = sid {
            target.push_str("&sid=");
            target.push_str(sid);
        }
        for (k, v) in self.query {
            target.push('&');
            target.push_str(&encode_component(k));
            target.push('=');
            target.push_str(&encode_component(v));
        }
        target
    }

    fn extra_headers(&self) -> String {
        self.headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect()
    }
}

/// Percent-encodes a query component (RFC 3986 unreserved characters pass).
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Opens the transport `kind` through `connector`.
pub(crate) async fn open<C: Connector, R: Runtime>(
    connector: C,
    runtime: &R,
    kind: TransportKind,
    request: Request<'_>,
) -> std::io::Result<Wire> {
    match kind {
        TransportKind::WebSocket => websocket(connector, runtime, request).await,
        TransportKind::Polling => polling(connector, runtime, request).await,
    }
}

async fn websocket<C: Connector, R: Runtime>(
    connector: C,
    runtime: &R,
    request: Request<'_>,
) -> std::io::Result<Wire> {
    let mut stream = connector.connect().await?;
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n{}\r\n",
        request.target("websocket", None),
        request.extra_headers()
    );
    stream.write_all(head.as_bytes()).await?;
    let (status, _, leftover) = read_head(&mut stream).await?;
    if status != 101 {
        return Err(std::io::Error::other(format!(
            "handshake answered {status}"
        )));
    }
    let ws = WebSocketStream::from_partially_read(stream, leftover, Role::Client, None).await;
    let (mut sink, stream) = ws.split();
    let (outgoing, mut out_rx) = mpsc::unbounded::<Ws>();
    runtime.spawn(async move {
        while let Some(m) = out_rx.next().await {
            let close = matches!(m, Ws::Close(_));
            if sink.send(m).await.is_err() || close {
                return;
            }
        }
        let _ = sink.close(None).await;
    });
    let incoming = stream
        .take_while(|m| futures::future::ready(m.is_ok()))
        .filter_map(|m| futures::future::ready(m.ok()))
        .boxed();
    Ok(Wire { incoming, outgoing })
}

async fn polling<C: Connector, R: Runtime>(
    connector: C,
    runtime: &R,
    request: Request<'_>,
) -> std::io::Result<Wire> {
    let headers = request.extra_headers();
    // The handshake: its body is the open packet.
    let mut stream = connector.connect().await?;
    let target = request.target("polling", None);
    let (status, body) = exchange(&mut stream, "GET", &target, &headers, None).await?;
    if status != 200 {
        return Err(std::io::Error::other(format!(
            "handshake answered {status}"
        )));
    }
    let open = decode_payload(body, Framing::V4)
        .map_err(|_| std::io::Error::other("the handshake does not decode"))?;
    let Some(Packet::Open(json)) = open.first() else {
        return Err(std::io::Error::other("the handshake is not an open packet"));
    };
    let sid = serde_json::from_str::<serde_json::Value>(json)
        .ok()
        .and_then(|v| v["sid"].as_str().map(str::to_owned))
        .ok_or_else(|| std::io::Error::other("the handshake has no sid"))?;
    let target = request.target("polling", Some(&sid));
    let (in_tx, incoming) = mpsc::unbounded::<Ws>();
    let _ = in_tx.unbounded_send(to_ws(&Packet::Open(json.clone())));
    let connector = std::sync::Arc::new(connector);
    // The reader: a GET always parked, its packets handed on in order.
    let reader = {
        let connector = connector.clone();
        let target = target.clone();
        let headers = headers.clone();
        let mut stream = Some(stream);
        async move {
            loop {
                let mut conn = match stream.take() {
                    Some(s) => s,
                    None => match connector.connect().await {
                        Ok(s) => s,
                        Err(_) => return,
                    },
                };
                let Ok((200, body)) = exchange(&mut conn, "GET", &target, &headers, None).await
                else {
                    return;
                };
                stream = Some(conn);
                let Ok(packets) = decode_payload(body, Framing::V4) else {
                    return;
                };
                for packet in packets {
                    let close = matches!(packet, Packet::Close);
                    if !matches!(packet, Packet::Noop)
                        && in_tx.unbounded_send(to_ws(&packet)).is_err()
                    {
                        return;
                    }
                    if close {
                        return;
                    }
                }
            }
        }
    };
    runtime.spawn(reader);
    // The writer: what is waiting goes out in one POST.
    let (outgoing, mut out_rx) = mpsc::unbounded::<Ws>();
    runtime.spawn(async move {
        let mut conn: Option<C::Stream> = None;
        while let Some(first) = out_rx.next().await {
            let mut batch = vec![first];
            while let Ok(more) = out_rx.try_recv() {
                batch.push(more);
            }
            let close = batch.iter().any(|m| matches!(m, Ws::Close(_)));
            let packets: Vec<Packet> = batch
                .into_iter()
                .filter_map(|m| match m {
                    Ws::Close(_) => Some(Packet::Close),
                    m => from_ws(m),
                })
                .collect();
            let body = encode_payload(&packets, Protocol::V4, false).body;
            let mut stream = match conn.take() {
                Some(s) => s,
                None => match connector.connect().await {
                    Ok(s) => s,
                    Err(_) => return,
                },
            };
            match exchange(&mut stream, "POST", &target, &headers, Some(body)).await {
                Ok((200, _)) if !close => conn = Some(stream),
                _ => return,
            }
        }
    });
    Ok(Wire {
        incoming: incoming.boxed(),
        outgoing,
    })
}

/// An Engine.IO packet in the WebSocket form the client reads.
fn to_ws(packet: &Packet) -> Ws {
    match packet.clone().to_ws(Protocol::V4) {
        WsMessage::Text(t) => Ws::text(t.as_str().to_owned()),
        WsMessage::Binary(b) => Ws::Binary(b),
    }
}

/// A message the client writes, as the Engine.IO packet a POST carries.
fn from_ws(m: Ws) -> Option<Packet> {
    let message = match m {
        Ws::Text(t) => WsMessage::Text(Utf8Bytes::from(t.as_str())),
        Ws::Binary(b) => WsMessage::Binary(b),
        _ => return None,
    };
    Packet::from_ws(message, Protocol::V4).ok()
}

/// Writes one HTTP/1.1 request (kept alive) and reads its response: status and body.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    method: &str,
    target: &str,
    headers: &str,
    body: Option<Bytes>,
) -> std::io::Result<(u16, Bytes)> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: test\r\n{headers}");
    if let Some(body) = &body {
        head.push_str(&format!(
            "Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    if let Some(body) = &body {
        stream.write_all(body).await?;
    }
    stream.flush().await?;
    let (status, length, mut rest) = read_head(stream).await?;
    let length = length.unwrap_or(0);
    while rest.len() < length {
        let mut chunk = vec![0u8; (length - rest.len()).min(16 * 1024)];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        rest.extend_from_slice(&chunk[..n]);
    }
    rest.truncate(length);
    Ok((status, Bytes::from(rest)))
}

/// Reads a response head: the status, its `Content-Length`, and the bytes read past it.
async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> std::io::Result<(u16, Option<usize>, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())
            .flatten()
    });
    Ok((status, length, buf.split_off(end)))
}
