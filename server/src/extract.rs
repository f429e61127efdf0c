//! Extractors: what a handler can ask for in its arguments.

use crate::ack::AckSender;
use crate::extensions::Extensions;
use crate::payload::Payload;
use crate::socket::Socket;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use std::fmt;
use volley_core::socketio::AckToken;

/// Everything known about one incoming event, from which extractors take their part.
pub struct EventCtx {
    pub(crate) socket: Socket,
    pub(crate) name: String,
    pub(crate) payload: Payload,
    pub(crate) ack: AckSlot,
    pub(crate) state: Extensions,
    /// The extractor running now is the handler's last: it may take what it would
    /// otherwise copy (see [`EventCtx::extract`]).
    pub(crate) last: bool,
}

/// The client's acknowledgement request, shared between the extractors and the code that
/// sends the handler's return value, so whichever comes first answers it.
/// Where an event's acknowledgement waits for the first listener that takes it; an event
/// without one shares nothing and allocates nothing.
#[derive(Clone, Default)]
pub(crate) struct AckSlot(Option<std::sync::Arc<std::sync::Mutex<Option<AckToken>>>>);

impl AckSlot {
    /// A slot holding `ack`.
    pub(crate) fn new(ack: Option<AckToken>) -> Self {
        AckSlot(ack.map(|ack| std::sync::Arc::new(std::sync::Mutex::new(Some(ack)))))
    }

    /// Whether the acknowledgement is still there.
    fn is_set(&self) -> bool {
        self.0.as_ref().is_some_and(|slot| {
            slot.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_some()
        })
    }
}

pub(crate) fn take_ack(slot: &AckSlot) -> Option<AckToken> {
    slot.0.as_ref().and_then(|slot| {
        slot.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    })
}

impl fmt::Debug for EventCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventCtx")
            .field("socket", &self.socket.id())
            .field("name", &self.name)
            .field("payload", &self.payload)
            .field("ack", &self.ack.is_set())
            .finish()
    }
}

impl EventCtx {
    /// The socket.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// The event name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The arguments.
    pub fn payload(&self) -> &Payload {
        &self.payload
    }

    /// Runs extractor `A`; `last`: no extractor of the handler runs after it, so the
    /// arguments may be moved out rather than copied.
    pub(crate) fn extract<A: FromEvent>(&mut self, last: bool) -> Result<A, ExtractError> {
        self.last = last;
        A::from_event(self)
    }
}

/// Why an extractor could not produce its value; the socket's `error` handlers see it.
#[derive(Debug)]
pub enum ExtractError {
    /// The arguments do not deserialize into the requested type.
    Data(serde_json::Error),
    /// No server state of the requested type was registered.
    MissingState(&'static str),
    /// The socket holds no data of the requested type.
    MissingExtension(&'static str),
}

impl fmt::Display for ExtractError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExtractError::Data(e) => write!(f, "invalid event data: {e}"),
            ExtractError::MissingState(t) => write!(f, "no server state of type {t}"),
            ExtractError::MissingExtension(t) => write!(f, "no socket data of type {t}"),
        }
    }
}

impl std::error::Error for ExtractError {}

/// Something a handler can take as an argument.
pub trait FromEvent: Sized {
    /// Takes the value from the event.
    fn from_event(ctx: &mut EventCtx) -> Result<Self, ExtractError>;
}

impl FromEvent for Socket {
    fn from_event(ctx: &mut EventCtx) -> Result<Self, ExtractError> {
        Ok(ctx.socket.clone())
    }
}

/// The arguments, deserialized: a single argument is read as `T`; several as a tuple or
/// `Vec`. When they do not fit, the handler does not run and `error` handlers are told.
#[derive(Debug, Clone, PartialEq)]
pub struct Data<T>(pub T);

impl<T: DeserializeOwned> FromEvent for Data<T> {
    fn from_event(ctx: &mut EventCtx) -> Result<Self, ExtractError> {
        ctx.payload
            .deserialize()
            .map(Data)
            .map_err(ExtractError::Data)
    }
}

/// The arguments, deserialized, or why they did not fit: the handler always runs.
#[derive(Debug)]
pub struct TryData<T>(pub Result<T, serde_json::Error>);

impl<T: DeserializeOwned> FromEvent for TryData<T> {
    fn from_event(ctx: &mut EventCtx) -> Result<Self, ExtractError> {
        Ok(TryData(ctx.payload.deserialize()))
    }
}

/// The binary attachments, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bin(pub Vec<Bytes>);

impl FromEvent for Bin {
    fn from_event(ctx: &mut EventCtx) -> Result<Self, ExtractError> {
        Ok(Bin(ctx.payload.attachments().to_vec()))
    }
}

/// The whole argument list (JSON values and attachments).
impl FromEvent for Payload {
    fn from_event(ctx: &mut EventCtx) -> Result<Self, ExtractError> {
        // The handler's last argument takes the payload: no other extractor needs it
        // after, and a copy would cost the text's shared buffer an allocation.
        match ctx.last {
            true => Ok(std::mem::take(&mut ctx.payload)),
            false => Ok(ctx.payload.clone()),
        }
    }
}

/// The event's name (useful in catch-all handlers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventName(pub String);

impl FromEvent for EventName {
    fn from_event(ctx: &mut EventCtx) -> Result<Self, ExtractError> {
        Ok(EventName(ctx.name.clone()))
    }
}

/// Answers the client's acknowledgement request explicitly. Taking it means the handler's
/// return value is not sent as the acknowledgement.
impl FromEvent for AckSender {
    fn from_event(ctx: &mut EventCtx) -> Result<Self, ExtractError> {
        Ok(AckSender::new(ctx.socket.clone(), take_ack(&ctx.ack)))
    }
}

/// Server-wide state registered with the builder's `state`.
#[derive(Debug, Clone)]
pub struct State<T>(pub T);

impl<T: Clone + Send + Sync + 'static> FromEvent for State<T> {
    fn from_event(ctx: &mut EventCtx) -> Result<Self, ExtractError> {
        ctx.state
            .get::<T>()
            .map(State)
            .ok_or(ExtractError::MissingState(std::any::type_name::<T>()))
    }
}

/// A clone of the socket's data of type `T` (see [`Socket::data`]).
#[derive(Debug, Clone)]
pub struct Extension<T>(pub T);

impl<T: Clone + Send + Sync + 'static> FromEvent for Extension<T> {
    fn from_event(ctx: &mut EventCtx) -> Result<Self, ExtractError> {
        ctx.socket
            .data()
            .get::<T>()
            .map(Extension)
            .ok_or(ExtractError::MissingExtension(std::any::type_name::<T>()))
    }
}

/// Like [`Extension`], but absent data is `None` instead of an error.
impl<T: Clone + Send + Sync + 'static> FromEvent for Option<Extension<T>> {
    fn from_event(ctx: &mut EventCtx) -> Result<Self, ExtractError> {
        Ok(ctx.socket.data().get::<T>().map(Extension))
    }
}
