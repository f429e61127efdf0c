//! Namespaces declared as types: Midway's `@WSController` style.
//!
//! A [`Controller`] is a type whose methods are the namespace's handlers. It names its
//! namespace and declares, in one function, which method answers what; [`Io::controller`]
//! registers an instance. Everything expands to the ordinary builder calls
//! ([`Namespace::on`], [`Namespace::on_connection`], …), so a controller costs nothing at
//! run time beyond one `Arc` clone per call, and controllers and closures mix freely.
//!
//! | Midway | Volley |
//! | --- | --- |
//! | `@WSController('/chat')` | `const NAMESPACE: &str = "/chat";` |
//! | `@OnWSConnection()` | [`Routes::on_connection`] |
//! | `@OnWSMessage('event')` | [`Routes::on`] |
//! | `@WSEmit('reply')` | [`.emit_result("reply")`](EventRoute::emit_result): ack when asked for, else emitted |
//! | `@WSBroadCast('reply')` | [`.broadcast_result("reply", rooms)`](EventRoute::broadcast_result) |
//! | `@OnWSDisConnection()` | [`Routes::on_disconnection`] |
//! | controller middleware | [`Routes::use_connect`], [`Routes::use_packet`] |
//! | method middleware | [`.with(mw)`](EventRoute::with) |
//!
//! Methods take the instance as `self: Arc<Self>`, then any extractors, as handlers do:
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use volley::controller::{Controller, Routes};
//! use volley::testing::{TestClient, TestRuntime};
//! use volley::{Data, DisconnectReason, Socket};
//!
//! #[derive(Default)]
//! struct Counter {
//!     total: AtomicU64,
//! }
//!
//! impl Counter {
//!     async fn hello(self: Arc<Self>, socket: Socket) {
//!         let _ = socket.emit("total", &self.total.load(Ordering::Relaxed));
//!     }
//!     async fn add(self: Arc<Self>, Data(n): Data<u64>) -> u64 {
//!         self.total.fetch_add(n, Ordering::Relaxed) + n
//!     }
//!     async fn bye(self: Arc<Self>, _socket: Socket, _reason: DisconnectReason) {}
//! }
//!
//! impl Controller for Counter {
//!     const NAMESPACE: &'static str = "/counter";
//!     fn routes(routes: &mut Routes<Self>) {
//!         routes.on_connection(Self::hello);
//!         routes.on("add", Self::add).emit_result("added");
//!         routes.on_disconnection(Self::bye);
//!     }
//! }
//!
//! let rt = TestRuntime::new();
//! let io = volley::builder().build(rt.clone());
//! io.controller(Counter::default());
//! rt.block_on(async {
//!     let mut c = TestClient::connect(&io, "/counter", None).await.unwrap();
//!     assert_eq!(c.recv().await.unwrap().data::<u64>().unwrap(), 0);
//!     // Asked with an ack: the result is the ack.
//!     assert_eq!(c.emit_with_ack::<_, u64>("add", &2).await.unwrap(), 2);
//!     // Without: it is emitted as `added`.
//!     c.emit("add", &3);
//!     let got = c.recv().await.unwrap();
//!     assert_eq!((got.event.as_str(), got.data::<u64>().unwrap()), ("added", 5));
//! });
//! ```

use crate::extract::{EventCtx, FromEvent};
use crate::handler::{BoxFuture, ErasedHandler, IntoReply, Reply};
use crate::io::Io;
use crate::middleware::{ConnectCtx, ConnectError, IncomingEvent, Next, PacketFlow};
use crate::namespace::{EventRoute, Namespace};
use crate::runtime::Runtime;
use crate::socket::Socket;
use std::future::Future;
use std::sync::Arc;
use volley_core::socketio::DisconnectReason;

/// A namespace declared as a type (see the [module docs](self)).
pub trait Controller: Send + Sync + Sized + 'static {
    /// The namespace the controller serves (`@WSController`'s argument).
    const NAMESPACE: &'static str;

    /// Declares the controller's handlers and middleware.
    fn routes(routes: &mut Routes<Self>);
}

/// A method usable as an event handler of controller `C`: `self: Arc<C>` first, then
/// extractors ([`FromEvent`]), returning anything [`IntoReply`]. `T` only tells the
/// implementations apart.
pub trait Method<C, T>: Send + Sync + 'static {
    /// Runs the method on `this` for one event.
    fn call(&self, this: Arc<C>, ctx: EventCtx) -> BoxFuture<Reply>;
}

macro_rules! method_fn {
    ($($arg:ident),*) => {
        impl<C, F, Fut, R, $($arg,)*> Method<C, ($($arg,)*)> for F
        where
            C: Send + Sync + 'static,
            F: Fn(Arc<C>, $($arg),*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = R> + Send + 'static,
            R: IntoReply,
            $($arg: FromEvent + Send + 'static,)*
        {
            #[allow(non_snake_case, unused_mut, unused_variables)]
            fn call(&self, this: Arc<C>, mut ctx: EventCtx) -> BoxFuture<Reply> {
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
                let fut = (self)(this, $($arg),*);
                Box::pin(async move { fut.await.into_reply() })
            }
        }
    };
}

method_fn!();
method_fn!(A1);
method_fn!(A1, A2);
method_fn!(A1, A2, A3);
method_fn!(A1, A2, A3, A4);
method_fn!(A1, A2, A3, A4, A5);

/// What a [`Controller`] declares its handlers on: its namespace and its instance.
pub struct Routes<C> {
    ns: Namespace,
    this: Arc<C>,
}

impl<C: Controller> Routes<C> {
    /// The controller instance the methods run on.
    pub fn instance(&self) -> &Arc<C> {
        &self.this
    }

    /// The namespace, for anything the controller style does not cover.
    pub fn namespace(&self) -> &Namespace {
        &self.ns
    }

    /// `@OnWSMessage(event)`: `method` handles `event`. Refine the route it returns with
    /// [`emit_result`](EventRoute::emit_result), [`broadcast_result`](EventRoute::broadcast_result)
    /// or method-level middleware ([`with`](EventRoute::with)).
    pub fn on<M, T>(&mut self, event: &str, method: M) -> EventRoute
    where
        M: Method<C, T>,
        T: 'static,
    {
        let this = self.this.clone();
        let method = Arc::new(method);
        let handler: ErasedHandler = Arc::new(move |ctx| method.call(this.clone(), ctx));
        self.ns.on_erased(event, handler)
    }

    /// `@OnWSConnection()`: runs for every socket that joins, before its events.
    pub fn on_connection<F, Fut>(&mut self, method: F) -> &mut Self
    where
        F: Fn(Arc<C>, Socket) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let this = self.this.clone();
        self.ns.on_connection(move |s| method(this.clone(), s));
        self
    }

    /// `@OnWSDisConnection()`: runs when a socket has left, with Socket.IO's reason.
    pub fn on_disconnection<F, Fut>(&mut self, method: F) -> &mut Self
    where
        F: Fn(Arc<C>, Socket, DisconnectReason) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let this = self.this.clone();
        self.ns
            .on_disconnect(move |s, r| method(this.clone(), s, r));
        self
    }

    /// Controller-level connection middleware (onion style, see [`Namespace::use_connect`]).
    pub fn use_connect<F, Fut>(&mut self, mw: F) -> &mut Self
    where
        F: Fn(Arc<C>, ConnectCtx, Next) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        let this = self.this.clone();
        self.ns
            .use_connect(move |ctx, next| mw(this.clone(), ctx, next));
        self
    }

    /// Controller-level packet middleware: runs before every event of the namespace (see
    /// [`Namespace::use_packet`]).
    pub fn use_packet<F, Fut>(&mut self, mw: F) -> &mut Self
    where
        F: Fn(Arc<C>, Socket, IncomingEvent) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = PacketFlow> + Send + 'static,
    {
        let this = self.this.clone();
        self.ns.use_packet(move |s, e| mw(this.clone(), s, e));
        self
    }
}

impl<R: Runtime> Io<R> {
    /// Registers `controller` on its namespace ([`Controller::NAMESPACE`]) and returns that
    /// namespace.
    pub fn controller<C: Controller>(&self, controller: C) -> Namespace {
        let ns = self.ns(C::NAMESPACE);
        let mut routes = Routes {
            ns: ns.clone(),
            this: Arc::new(controller),
        };
        C::routes(&mut routes);
        ns
    }
}
