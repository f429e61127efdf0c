//! Acknowledgements both ways: answering a client's, and awaiting the client's answers to the
//! server's.

use crate::payload::{EncodeError, Payload};
use crate::socket::Socket;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use volley_core::SocketId;
use volley_core::socketio::AckToken;

/// Answers one client acknowledgement request. Sending consumes it: an ack is answered at
/// most once. When the client asked for none, sending does nothing.
#[derive(Debug)]
pub struct AckSender {
    socket: Socket,
    token: Option<AckToken>,
}

impl AckSender {
    pub(crate) fn new(socket: Socket, token: Option<AckToken>) -> Self {
        AckSender { socket, token }
    }

    /// Whether the client asked for an acknowledgement.
    pub fn requested(&self) -> bool {
        self.token.is_some()
    }

    /// Acknowledges with one argument.
    pub fn send<T: Serialize + ?Sized>(self, data: &T) -> Result<(), EncodeError> {
        self.send_payload(Payload::of(data)?);
        Ok(())
    }

    /// Acknowledges with a whole argument list.
    pub fn send_payload(self, payload: Payload) {
        if let Some(token) = self.token {
            self.socket.send_ack(token, payload);
        }
    }
}

/// Why an acknowledgement did not come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckError {
    /// The timeout passed first.
    Timeout,
    /// The socket disconnected first.
    Disconnected,
    /// The socket was not connected when the event was to be sent, or its queue was full.
    NotSent(String),
    /// The server stopped.
    Stopped,
    /// The answer did not deserialize into the requested type.
    Decode(String),
    /// The event's data could not be encoded.
    Encode(String),
}

impl fmt::Display for AckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AckError::Timeout => f.write_str("operation has timed out"),
            AckError::Disconnected => f.write_str("socket has been disconnected"),
            AckError::NotSent(e) => write!(f, "not sent: {e}"),
            AckError::Stopped => f.write_str("the server has stopped"),
            AckError::Decode(e) => write!(f, "invalid acknowledgement: {e}"),
            AckError::Encode(e) => write!(f, "cannot encode: {e}"),
        }
    }
}

impl std::error::Error for AckError {}

/// One socket's answer to a broadcast with acknowledgement.
#[derive(Debug, Clone, PartialEq)]
pub struct AckResponse {
    /// The socket that answered.
    pub socket: SocketId,
    /// Its answer.
    pub payload: Payload,
}

impl AckResponse {
    /// The answer deserialized (see [`Payload::deserialize`]).
    pub fn data<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        self.payload.deserialize()
    }
}

/// A broadcast's acknowledgements did not all come: `responses` holds those that did.
#[derive(Debug, Clone, PartialEq)]
pub struct PartialAcks {
    /// The answers received in time.
    pub responses: Vec<AckResponse>,
    /// How many sockets did not answer (timed out or disconnected).
    pub missing: usize,
}

impl fmt::Display for PartialAcks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "operation has timed out: {} answered, {} did not",
            self.responses.len(),
            self.missing
        )
    }
}

impl std::error::Error for PartialAcks {}
