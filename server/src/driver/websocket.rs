//! One connection's task, WebSocket half: after a `101`, frames in both directions.
//!
//! Two loops in the connection's task (no second task, so no second wake-up per message):
//! a reader that forwards each message to the machine, and a writer that performs the
//! machine's outputs. The writer feeds a whole batch of `Send`s before one flush, then reports
//! `handle_ws_drained`, which is the machine's flow control: it sends nothing more to this
//! connection until then, so the per-connection queue stays one batch deep.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::tungstenite::{self, Message};
use bytes::{Bytes, BytesMut};
use futures::future::{Either, select};
use futures::io::{AsyncRead, AsyncWrite};
use futures::{SinkExt, StreamExt};
use volley_core::engine::{Output, WsMessage};
use volley_core::{ConnId, Utf8Bytes};

use super::Env;
use super::actor::{Input, ToConn};
use super::conn::Link;
use super::io::{LINGER, or_timeout};
use crate::runtime::Runtime;

/// The read buffer tungstenite allocates per connection. Its default (128 KiB) suits a few
/// heavy sockets; many light ones are the common case here.
const READ_BUFFER: usize = 4 * 1024;
/// Bytes tungstenite gathers before writing to the socket; a flush writes the rest.
const WRITE_BUFFER: usize = 16 * 1024;

/// The WebSocket codec's settings for a machine accepting messages up to `max_message`.
pub(crate) fn config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// How the writer stopped.
enum WriteEnd {
    /// The machine closed the socket; a close frame was sent.
    Closed,
    /// It failed, timed out, or the machine's task dropped the connection.
    Failed,
}

/// Serves the WebSocket until either side ends it, then reports the end to the machine
/// (`error`: it failed rather than closed).
pub(crate) async fn run<R, S>(
    env: &Env<R>,
    conn: ConnId,
    stream: S,
    leftover: BytesMut,
    pending: VecDeque<Output>,
    link: Link,
) where
    R: Runtime,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = Some(env.ws_config);
    let ws = if leftover.is_empty() {
        WebSocketStream::from_raw_socket(stream, Role::Server, config).await
    } else {
        // Frames the client sent right behind its upgrade request.
        WebSocketStream::from_partially_read(stream, leftover.to_vec(), Role::Server, config).await
    };
    // The HTTP read buffer is not needed for the WebSocket's life: free it now, not when the
    // connection ends (it is most of an idle connection's memory otherwise).
    drop(leftover);
    tracing::Span::current().record("transport", "websocket");
    tracing::debug!("websocket open");
    let (mut sink, mut source) = ws.split();
    let Link {
        inputs,
        mut outputs,
    } = link;
    let closing = AtomicBool::new(false);

    let mut reader_inputs = inputs.clone();
    let reader = async {
        loop {
            let message = match source.next().await {
                Some(Ok(Message::Text(text))) => {
                    match Utf8Bytes::try_from_bytes(Bytes::from(text)) {
                        Ok(text) => WsMessage::Text(text),
                        Err(_) => continue, // tungstenite has validated it already
                    }
                }
                Some(Ok(Message::Binary(bytes))) => WsMessage::Binary(bytes),
                // Pings are answered by tungstenite; pongs and raw frames mean nothing here.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(_))) | None => return false,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "websocket read failed");
                    return true;
                }
            };
            if closing.load(Ordering::Acquire) {
                continue;
            }
            let input = Input::WsMessage { conn, message };
            if reader_inputs.send(input).await.is_err() {
                return true;
            }
        }
    };

    let mut writer_inputs = inputs.clone();
    let mut pending = pending;
    let writer = async {
        loop {
            if pending.is_empty() {
                match outputs.next().await {
                    Some(ToConn::Outputs(batch)) => pending.extend(batch),
                    Some(ToConn::NotOwned) => continue,
                    None => return WriteEnd::Failed,
                }
            }
            // Whatever else is already queued joins this flush.
            while let Ok(ToConn::Outputs(batch)) = outputs.try_recv() {
                pending.extend(batch);
            }
            let deadline = pin!(env.runtime.sleep(env.config.write_timeout));
            let batch = async {
                let mut sent = false;
                while let Some(output) = pending.pop_front() {
                    match output {
                        Output::Send { message, .. } => {
                            if let Some(message) = to_tungstenite(message) {
                                sink.feed(message).await?;
                                sent = true;
                            }
                        }
                        Output::Close { .. } => {
                            closing.store(true, Ordering::Release);
                            sink.send(Message::Close(None)).await?;
                            return Ok(None);
                        }
                        Output::Response { .. } | Output::ReadBody { .. } => {
                            tracing::debug!("HTTP output for a WebSocket dropped");
                        }
                    }
                }
                sink.flush().await?;
                Ok::<_, tungstenite::Error>(Some(sent))
            };
            match or_timeout(batch, deadline).await {
                Some(Ok(Some(true))) => {
                    let drained = Input::WsDrained { conn };
                    if writer_inputs.send(drained).await.is_err() {
                        return WriteEnd::Failed;
                    }
                }
                Some(Ok(Some(false))) => {}
                Some(Ok(None)) => return WriteEnd::Closed,
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "websocket write failed");
                    return WriteEnd::Failed;
                }
                None => {
                    tracing::debug!("websocket write timed out");
                    return WriteEnd::Failed;
                }
            }
        }
    };

    let mut inputs = inputs;
    let peer_closed = {
        let mut reader = pin!(reader);
        let mut writer = pin!(writer);
        // (error, the peer ended it, we sent a close frame and the reader still runs)
        let (error, peer_closed, we_closed) = match select(reader.as_mut(), writer.as_mut()).await {
            Either::Left((error, _)) => (error, !error, false),
            Either::Right((WriteEnd::Failed, _)) => (true, false, false),
            Either::Right((WriteEnd::Closed, _)) => (false, false, true),
        };
        tracing::debug!(error, peer_closed, "websocket ended");
        let _ = inputs.send(Input::Closed { conn, error }).await;
        if we_closed {
            // We sent a close frame: give the peer a moment to answer it, so the TCP close
            // that follows does not race its reply.
            let linger = pin!(env.runtime.sleep(LINGER));
            let _ = or_timeout(reader, linger).await;
        }
        peer_closed
    };
    if peer_closed {
        // tungstenite queued the answer to the peer's close frame; the next read flushes it
        // if it could not be written at once.
        let linger = pin!(env.runtime.sleep(LINGER));
        let _ = or_timeout(source.next(), linger).await;
    }
}

/// Our message as tungstenite's; both hold `Bytes`, so no copy (text is re-validated, the
/// only conversion tungstenite's safe API offers).
fn to_tungstenite(message: WsMessage) -> Option<Message> {
    match message {
        WsMessage::Text(text) => tungstenite::Utf8Bytes::try_from(text.into_bytes())
            .ok()
            .map(Message::Text),
        WsMessage::Binary(bytes) => Some(Message::Binary(bytes)),
    }
}
