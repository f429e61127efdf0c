//! The driver's metrics: transports, packets, bytes and Engine.IO refusals, seen where
//! inputs and outputs pass through the machine's task (see [`crate::metrics`]).

use std::collections::HashSet;

use metrics::{counter, gauge};
use volley_core::ConnId;
use volley_core::engine::{Body, Output, WsMessage};
use volley_core::http::Response;

use super::actor::Input;
use crate::metrics::{
    BYTES_RECEIVED, BYTES_SENT, CONNECTIONS, PACKETS_RECEIVED, PACKETS_SENT, SLOW_CONNECTIONS,
    add_labelled, refused,
};

/// What the driver's task sees of connections: transports, packets, bytes, refusals.
#[derive(Debug, Default)]
pub(crate) struct DriverMetrics {
    /// Connections that became WebSockets (a `101` went out) and have not ended.
    websockets: HashSet<ConnId>,
    /// The gauges as last set, so that they are set only when they change.
    last: Option<(usize, usize)>,
    /// WebSocket packets and bytes received and sent since the last [`flush`], counted here
    /// and handed to the recorder once per turn of the machine's task rather than once per
    /// message.
    ///
    /// [`flush`]: DriverMetrics::flush
    ws: WsCounts,
}

/// WebSocket traffic not yet handed to the recorder.
/// WebSocket packets and bytes, counted as they pass and reported in one batch.
#[derive(Debug, Default)]
pub(crate) struct WsCounts {
    packets_in: u64,
    bytes_in: u64,
    packets_out: u64,
    bytes_out: u64,
}

impl WsCounts {
    /// A message read.
    pub(crate) fn received(&mut self, message: &WsMessage) {
        self.packets_in += 1;
        self.bytes_in += message.len() as u64;
    }

    /// An output for the connection (only frames count).
    pub(crate) fn sent(&mut self, output: &Output) {
        if let Output::Send { message, .. } = output {
            self.sent_len(message.len());
        }
    }

    /// A message of `len` bytes sent past the session's step.
    pub(crate) fn sent_len(&mut self, len: usize) {
        self.packets_out += 1;
        self.bytes_out += len as u64;
    }

    /// Reports what was counted since the last report.
    pub(crate) fn report(&mut self) {
        let ws = std::mem::take(self);
        if ws.packets_in > 0 {
            add_labelled(PACKETS_RECEIVED, "transport", "websocket", ws.packets_in);
            add_labelled(BYTES_RECEIVED, "transport", "websocket", ws.bytes_in);
        }
        if ws.packets_out > 0 {
            add_labelled(PACKETS_SENT, "transport", "websocket", ws.packets_out);
            add_labelled(BYTES_SENT, "transport", "websocket", ws.bytes_out);
        }
    }
}

impl DriverMetrics {
    /// An input from a connection task.
    pub(crate) fn input(&mut self, input: &Input) {
        let (ws, body) = match input {
            Input::WsMessage { message, .. } => (Some(message), None),
            Input::Body { body, .. } => (None, Some(body)),
            Input::Closed { conn, .. } => {
                self.websockets.remove(conn);
                (None, None)
            }
            _ => (None, None),
        };
        if let Some(m) = ws {
            self.ws.received(m);
        }
        if let Input::WsMessages { messages, .. } = input {
            messages.iter().for_each(|m| self.ws.received(m));
        }
        if let Some(body) = body {
            self.body(body);
        }
    }

    /// A polling body reaches the machine (as an input, or sent with its request).
    pub(crate) fn body(&mut self, body: &Body) {
        if let Body::Complete(b) = body {
            add_labelled(PACKETS_RECEIVED, "transport", "polling", payload_packets(b));
            add_labelled(BYTES_RECEIVED, "transport", "polling", b.len() as u64);
        }
    }

    /// An output is routed to its connection.
    pub(crate) fn output(&mut self, output: &Output) {
        match output {
            Output::Send { .. } => self.ws.sent(output),
            Output::Response { conn, response } => match response.status {
                101 => {
                    self.websockets.insert(*conn);
                }
                200 if !response.body.is_empty() && content_type(response) != Some("text/html") => {
                    let packets = payload_packets(&response.body);
                    add_labelled(PACKETS_SENT, "transport", "polling", packets);
                    let bytes = response.body.len() as u64;
                    add_labelled(BYTES_SENT, "transport", "polling", bytes);
                }
                400 | 403 => {
                    if let Some(code) = refusal_code(response) {
                        refused(code);
                    }
                }
                _ => {}
            },
            Output::ReadBody { .. } | Output::Close { .. } => {}
        }
    }

    /// The driver evicted a connection.
    pub(crate) fn closed(&mut self, conn: ConnId) {
        self.websockets.remove(&conn);
    }

    /// The driver dropped a connection that stopped taking its outputs.
    pub(crate) fn slow_connection(&mut self) {
        counter!(SLOW_CONNECTIONS).increment(1);
    }

    /// Hands the WebSocket traffic counted since the last call to the recorder.
    pub(crate) fn flush(&mut self) {
        self.ws.report();
    }

    /// Sets the connection gauges from the machine's session count (when it has one);
    /// `elsewhere`: WebSockets opened outside this task (by sessions run in slots).
    pub(crate) fn gauges(&mut self, sessions: Option<usize>, elsewhere: usize) {
        let Some(sessions) = sessions else {
            return;
        };
        let ws = (self.websockets.len() + elsewhere).min(sessions);
        let now = (sessions - ws, ws);
        if self.last != Some(now) {
            self.last = Some(now);
            gauge!(CONNECTIONS, "transport" => "polling").set(now.0 as f64);
            gauge!(CONNECTIONS, "transport" => "websocket").set(now.1 as f64);
        }
    }
}

fn content_type(response: &Response) -> Option<&str> {
    response
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| v.as_str())
}

/// Packets in a polling body: v4 separates them with `\x1e`.
fn payload_packets(body: &[u8]) -> u64 {
    if body.is_empty() {
        return 0;
    }
    1 + body.iter().filter(|&&b| b == 0x1e).count() as u64
}

/// The Engine.IO error code of a refusal: `{"code":N,...}` for polling, the message for a
/// WebSocket handshake.
fn refusal_code(response: &Response) -> Option<&'static str> {
    const CODES: [&str; 6] = ["0", "1", "2", "3", "4", "5"];
    const MESSAGES: [&str; 6] = [
        "Transport unknown",
        "Session ID unknown",
        "Bad handshake method",
        "Bad request",
        "Forbidden",
        "Unsupported protocol version",
    ];
    let body = response.body.as_ref();
    if let Some(rest) = body.strip_prefix(b"{\"code\":".as_slice()) {
        let digit = *rest.first()?;
        return CODES.get(usize::from(digit.checked_sub(b'0')?)).copied();
    }
    MESSAGES
        .iter()
        .position(|m| m.as_bytes() == body)
        .map(|i| CODES[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_codes_from_both_forms() {
        use volley_core::engine::ErrorCode;
        for (code, want) in [
            (ErrorCode::TransportUnknown, "0"),
            (ErrorCode::UnknownSid, "1"),
            (ErrorCode::BadHandshakeMethod, "2"),
            (ErrorCode::BadRequest, "3"),
            (ErrorCode::Forbidden, "4"),
            (ErrorCode::UnsupportedProtocolVersion, "5"),
        ] {
            assert_eq!(refusal_code(&code.response()), Some(want));
            assert_eq!(refusal_code(&code.ws_response()), Some(want));
        }
        assert_eq!(refusal_code(&Response::new(400).body("nope")), None);
    }

    #[test]
    fn polling_packets_are_counted_by_separator() {
        assert_eq!(payload_packets(b""), 0);
        assert_eq!(payload_packets(b"4hello"), 1);
        assert_eq!(payload_packets(b"4a\x1e4b\x1e2"), 3);
    }
}
