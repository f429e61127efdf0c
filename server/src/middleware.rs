//! Middleware: connection middleware in onion style, and packet middleware.

use crate::extensions::Extensions;
use crate::handler::BoxFuture;
use crate::handshake::Handshake;
use crate::node::Ctl;
use crate::payload::Payload;
use crate::registry::NsHandlers;
use crate::socket::Socket;
use serde::de::DeserializeOwned;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use volley_core::socketio::{ConnectId, DisconnectReason};

/// A refused connection: the client receives CONNECT_ERROR with `message` and `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    /// The message (`err.message` on the client).
    pub message: String,
    /// Extra data (`err.data` on the client).
    pub data: Option<serde_json::Value>,
}

impl ConnectError {
    /// A refusal with a message.
    pub fn new(message: impl Into<String>) -> Self {
        ConnectError {
            message: message.into(),
            data: None,
        }
    }

    /// Adds data.
    pub fn with_data(mut self, data: serde_json::Value) -> Self {
        self.data = Some(data);
        self
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConnectError {}

impl From<&str> for ConnectError {
    fn from(s: &str) -> Self {
        ConnectError::new(s)
    }
}

impl From<String> for ConnectError {
    fn from(s: String) -> Self {
        ConnectError::new(s)
    }
}

/// What connection middleware sees: the handshake, and data that becomes the socket's
/// `data()` once it is accepted.
#[derive(Clone)]
pub struct ConnectCtx {
    pub(crate) handshake: Handshake,
    pub(crate) data: Extensions,
    pub(crate) request: ConnectId,
    pub(crate) socket: Arc<std::sync::OnceLock<Socket>>,
    pub(crate) state: Extensions,
}

impl fmt::Debug for ConnectCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectCtx")
            .field("namespace", &self.handshake.namespace())
            .field("accepted", &self.socket.get().is_some())
            .finish()
    }
}

impl ConnectCtx {
    /// The handshake.
    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    /// The auth object the client sent (`{}` when none).
    pub fn auth(&self) -> &serde_json::Value {
        self.handshake.auth()
    }

    /// The auth object, deserialized.
    pub fn auth_as<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        self.handshake.auth_as()
    }

    /// Data for the socket to be: what is inserted here is the socket's `data()`.
    pub fn data(&self) -> &Extensions {
        &self.data
    }

    /// Server-wide state.
    pub fn state<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.state.get()
    }

    /// The socket, once the innermost `next` accepted it (so: in code after `next`).
    pub fn socket(&self) -> Option<&Socket> {
        self.socket.get()
    }
}

pub(crate) type ConnectMw =
    Arc<dyn Fn(ConnectCtx, Next) -> BoxFuture<Result<(), ConnectError>> + Send + Sync>;

/// The rest of the middleware chain. `run` passes the connection on; past the last
/// middleware it accepts the socket, runs the `connection` handlers and completes when the
/// socket disconnects, so code after `next.run(ctx).await` runs at disconnect.
pub struct Next {
    pub(crate) chain: Arc<[ConnectMw]>,
    pub(crate) index: usize,
    pub(crate) ns: Arc<NsHandlers>,
    pub(crate) ctl: Arc<Ctl>,
    /// How commands reach the session of the connect request.
    pub(crate) route: crate::node::Route,
    pub(crate) accepted: Arc<AtomicBool>,
}

impl fmt::Debug for Next {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Next")
            .field(
                "remaining",
                &(self.chain.len() - self.index.min(self.chain.len())),
            )
            .finish()
    }
}

impl Next {
    /// Runs the rest of the chain; resolves when the socket disconnects (or with the error of
    /// a middleware further in).
    pub async fn run(self, ctx: ConnectCtx) -> Result<(), ConnectError> {
        if let Some(mw) = self.chain.get(self.index).cloned() {
            let next = Next {
                chain: self.chain.clone(),
                index: self.index + 1,
                ns: self.ns.clone(),
                ctl: self.ctl.clone(),
                route: self.route.clone(),
                accepted: self.accepted.clone(),
            };
            return mw(ctx, next).await;
        }
        let (tx, rx) = futures::channel::oneshot::channel::<DisconnectReason>();
        let ns = self.ns.clone();
        let data = ctx.data.clone();
        let handshake = ctx.handshake.clone();
        let request = ctx.request;
        let (reply, accepted) = futures::channel::oneshot::channel();
        self.ctl
            .send(
                &self.route,
                crate::node::Command::Accept {
                    request,
                    handshake,
                    data,
                    ns,
                    life: tx,
                    tx: reply,
                },
            )
            .map_err(|_| ConnectError::new("server stopped"))?;
        let accepted = accepted
            .await
            .map_err(|_| ConnectError::new("server stopped"))?;
        let socket = accepted.map_err(|e| ConnectError::new(e.to_string()))?;
        self.accepted.store(true, Ordering::SeqCst);
        let _ = ctx.socket.set(socket);
        // The socket's life: resolves at disconnect (or when the server stops).
        let _ = rx.await;
        Ok(())
    }
}

/// An incoming event as packet middleware sees it, free to rewrite.
#[derive(Debug, Clone)]
pub struct IncomingEvent {
    /// The event name.
    pub name: String,
    /// The arguments.
    pub payload: Payload,
}

/// What packet middleware decides.
#[derive(Debug)]
pub enum PacketFlow {
    /// Go on with this (possibly rewritten) event.
    Continue(IncomingEvent),
    /// Drop the event silently.
    Drop,
    /// Refuse the event: the socket's `error` handlers see the message.
    Reject(String),
}

pub(crate) type PacketMw =
    Arc<dyn Fn(Socket, IncomingEvent) -> BoxFuture<PacketFlow> + Send + Sync>;
