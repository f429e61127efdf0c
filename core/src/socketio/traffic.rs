//! What passed through a server since it started: Engine.IO sessions opened and closed,
//! packets and bytes in and out. Plain counters the server bumps as inputs and outputs pass
//! it; the Admin UI's charts are drawn from their differences over time.

use crate::engine::{Body, Output, WsMessage};

/// Running totals of a [`Server`](super::Server)'s traffic since it was created. Each only
/// grows (wrapping at `u64::MAX`, far beyond any server's life).
///
/// Packets: a WebSocket message is one Engine.IO packet; a long-polling body holds as many as
/// its v4 record separators say (a v3 payload counts as one). Bytes are those of WebSocket
/// messages and of polling bodies, without HTTP heads or frame headers; the POST
/// acknowledgement (`ok`) is not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Engine.IO sessions opened (handshakes accepted).
    pub sessions_opened: u64,
    /// Engine.IO sessions closed, for any reason.
    pub sessions_closed: u64,
    /// Engine.IO packets received.
    pub packets_received: u64,
    /// Engine.IO packets sent.
    pub packets_sent: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
}

/// Packets in a polling body: v4 separates them with `\x1e`.
fn payload_packets(body: &[u8]) -> u64 {
    if body.is_empty() {
        return 0;
    }
    1 + body.iter().filter(|&&b| b == 0x1e).count() as u64
}

fn ws_len(message: &WsMessage) -> usize {
    message.len()
}

impl Traffic {
    /// Counts a WebSocket message received.
    pub fn ws_received(&mut self, message: &WsMessage) {
        self.packets_received = self.packets_received.wrapping_add(1);
        self.bytes_received = self.bytes_received.wrapping_add(ws_len(message) as u64);
    }

    /// Counts a polling body received (its packets and bytes).
    pub fn body_received(&mut self, body: &Body) {
        if let Body::Complete(b) = body {
            self.packets_received = self.packets_received.wrapping_add(payload_packets(b));
            self.bytes_received = self.bytes_received.wrapping_add(b.len() as u64);
        }
    }

    /// Counts what an output sends: a WebSocket message, or a poll's answer (its packets
    /// and bytes).
    pub fn output(&mut self, output: &Output) {
        match output {
            Output::Send { message, .. } => {
                self.packets_sent = self.packets_sent.wrapping_add(1);
                self.bytes_sent = self.bytes_sent.wrapping_add(ws_len(message) as u64);
            }
            Output::Response { response, .. } if response.status == 200 => {
                let html = response.headers.iter().any(|(k, v)| {
                    k.eq_ignore_ascii_case("content-type") && v.starts_with("text/html")
                });
                if !html {
                    let body = &response.body;
                    self.packets_sent = self.packets_sent.wrapping_add(payload_packets(body));
                    self.bytes_sent = self.bytes_sent.wrapping_add(body.len() as u64);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polling_packets_are_counted_by_separator() {
        assert_eq!(payload_packets(b""), 0);
        assert_eq!(payload_packets(b"4hello"), 1);
        assert_eq!(payload_packets(b"4a\x1e4b\x1e2"), 3);
    }
}
