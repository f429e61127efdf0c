//! Event handlers: async functions whose arguments are extracted from the event, and whose
//! return value becomes the acknowledgement.

use crate::extract::{EventCtx, FromEvent};
use crate::payload::{EncodeError, Payload};
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What a handler produced: nothing, the arguments of its acknowledgement, or an error for
/// the socket's `error` handlers.
#[derive(Debug)]
pub enum Reply {
    /// No acknowledgement.
    None,
    /// Acknowledge (or, with `emit_result`, emit) these arguments.
    Payload(Payload),
    /// The handler failed; `error` handlers see the message.
    Error(String),
}

/// Turns a handler's return value into a [`Reply`].
///
/// `()` sends nothing; `Result::Err` reaches the socket's `error` handlers; other values are
/// the acknowledgement's single argument, tuples its several arguments. Wrap any other
/// `Serialize` type in [`Json`].
pub trait IntoReply {
    /// The reply.
    fn into_reply(self) -> Reply;
}

/// Any serializable value as one acknowledgement argument.
#[derive(Debug, Clone, PartialEq)]
pub struct Json<T>(pub T);

fn one<T: Serialize + ?Sized>(v: &T) -> Reply {
    match Payload::of(v) {
        Ok(p) => Reply::Payload(p),
        Err(EncodeError(e)) => Reply::Error(e.to_string()),
    }
}

impl IntoReply for () {
    fn into_reply(self) -> Reply {
        Reply::None
    }
}

impl IntoReply for Reply {
    fn into_reply(self) -> Reply {
        self
    }
}

impl IntoReply for Payload {
    fn into_reply(self) -> Reply {
        Reply::Payload(self)
    }
}

impl<T: Serialize> IntoReply for Json<T> {
    fn into_reply(self) -> Reply {
        one(&self.0)
    }
}

macro_rules! reply_as_one {
    ($($t:ty),*) => {$(
        impl IntoReply for $t {
            fn into_reply(self) -> Reply {
                one(&self)
            }
        }
    )*};
}

reply_as_one!(
    bool,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    f32,
    f64,
    String,
    &'static str,
    serde_json::Value
);

impl<T: Serialize> IntoReply for Vec<T> {
    fn into_reply(self) -> Reply {
        one(&self)
    }
}

impl<T: Serialize> IntoReply for Option<T> {
    fn into_reply(self) -> Reply {
        one(&self)
    }
}

impl<T: IntoReply, E: std::fmt::Display> IntoReply for Result<T, E> {
    fn into_reply(self) -> Reply {
        match self {
            Ok(v) => v.into_reply(),
            Err(e) => Reply::Error(e.to_string()),
        }
    }
}

macro_rules! reply_tuple {
    ($($name:ident),+) => {
        impl<$($name: Serialize),+> IntoReply for ($($name,)+) {
            #[allow(non_snake_case)]
            fn into_reply(self) -> Reply {
                let ($($name,)+) = self;
                let p = Payload::new();
                $(let p = match p.arg(&$name) { Ok(p) => p, Err(EncodeError(e)) => return Reply::Error(e.to_string()) };)+
                Reply::Payload(p)
            }
        }
    };
}

reply_tuple!(A, B);
reply_tuple!(A, B, C);
reply_tuple!(A, B, C, D);

/// An async function usable as an event handler: its arguments implement [`FromEvent`], its
/// output [`IntoReply`]. `T` only tells the implementations apart.
pub trait Handler<T>: Clone + Send + Sync + 'static {
    /// Runs the handler for one event.
    fn call(&self, ctx: EventCtx) -> BoxFuture<Reply>;
}

pub(crate) type ErasedHandler = Arc<dyn Fn(EventCtx) -> BoxFuture<Reply> + Send + Sync>;

pub(crate) fn erase<H: Handler<T>, T>(h: H) -> ErasedHandler {
    Arc::new(move |ctx| h.call(ctx))
}

macro_rules! handler_fn {
    ($($arg:ident),*) => {
        impl<F, Fut, R, $($arg,)*> Handler<($($arg,)*)> for F
        where
            F: Fn($($arg),*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = R> + Send + 'static,
            R: IntoReply,
            $($arg: FromEvent + Send + 'static,)*
        {
            #[allow(non_snake_case, unused_mut, unused_variables)]
            fn call(&self, mut ctx: EventCtx) -> BoxFuture<Reply> {
                // Counted down so that the last extractor knows it is the last.
                let mut left = <[&str]>::len(&[$(stringify!($arg)),*]);
                $(
                    left -= 1;
                    let $arg = match ctx.extract::<$arg>(left == 0) {
                        Ok(v) => v,
                        Err(e) => {
                            let msg = e.to_string();
                            return Box::pin(async move { Reply::Error(msg) });
                        }
                    };
                )*
                let fut = (self)($($arg),*);
                Box::pin(async move { fut.await.into_reply() })
            }
        }
    };
}

handler_fn!();
handler_fn!(A1);
handler_fn!(A1, A2);
handler_fn!(A1, A2, A3);
handler_fn!(A1, A2, A3, A4);
handler_fn!(A1, A2, A3, A4, A5);
handler_fn!(A1, A2, A3, A4, A5, A6);
