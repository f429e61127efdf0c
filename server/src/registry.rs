//! Where handlers and middleware are registered, per namespace.

use crate::handler::{BoxFuture, ErasedHandler, Reply};
use crate::listeners::ListenerId;
use crate::middleware::{ConnectMw, PacketMw};
use crate::namespace::Namespace;
use crate::payload::Payload;
use crate::socket::Socket;
use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use volley_core::socketio::{DisconnectReason, MembershipChange, Room};

pub(crate) type SocketHook = Arc<dyn Fn(Socket) -> BoxFuture<()> + Send + Sync>;
pub(crate) type DisconnectingHook =
    Arc<dyn Fn(Socket, DisconnectReason, Vec<Room>) -> BoxFuture<()> + Send + Sync>;
pub(crate) type DisconnectHook =
    Arc<dyn Fn(Socket, DisconnectReason) -> BoxFuture<()> + Send + Sync>;
pub(crate) type ErrorHook = Arc<dyn Fn(Socket, String) -> BoxFuture<()> + Send + Sync>;
pub(crate) type AnyHook = Arc<dyn Fn(Socket, String, Payload) -> BoxFuture<()> + Send + Sync>;
pub(crate) type OutgoingHook = Arc<dyn Fn(&Socket, &str, &Payload) + Send + Sync>;
/// An `Io::on_room_membership` listener: the namespace and the join or leave.
pub(crate) type MembershipHook = Arc<dyn Fn(&str, &MembershipChange) + Send + Sync>;
/// A handler of events other nodes of a cluster emit (`serverSideEmit`).
pub(crate) type ServerHandler = Arc<dyn Fn(Payload) -> BoxFuture<Reply> + Send + Sync>;

/// Where a handler's result goes.
#[derive(Clone, Debug, Default)]
pub(crate) enum ResultTo {
    /// The acknowledgement, when the client asked for one.
    #[default]
    Ack,
    /// The acknowledgement when the client asked for one, else emitted as `event` to the
    /// socket (Midway's `@WSEmit`); with `always`, emitted even when an ack was asked for.
    Emit { event: String, always: bool },
    /// Broadcast as `event` to the namespace (or `rooms`) but the socket itself (Midway's
    /// `@WSBroadCast`).
    Broadcast { event: String, rooms: Vec<Room> },
}

/// One listener of an event: the handler, its own packet middleware, and where its result
/// goes.
#[derive(Clone)]
pub(crate) struct Route {
    pub id: ListenerId,
    pub handler: ErasedHandler,
    pub middleware: Vec<PacketMw>,
    pub result: ResultTo,
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(PoisonError::into_inner).clone()
}

fn write<T>(lock: &RwLock<T>, f: impl FnOnce(&mut T)) {
    f(&mut lock.write().unwrap_or_else(PoisonError::into_inner));
}

/// Everything registered on one namespace (or one family of dynamic namespaces).
#[derive(Default)]
pub(crate) struct NsHandlers {
    pub connect: RwLock<Vec<ConnectMw>>,
    pub packet: RwLock<Vec<PacketMw>>,
    /// Shared slices, replaced whole when a listener is added or refined: an event takes its
    /// listeners with one reference count rather than a copy.
    pub routes: RwLock<HashMap<String, Arc<[Route]>>>,
    pub connection: RwLock<Vec<SocketHook>>,
    pub disconnecting: RwLock<Vec<DisconnectingHook>>,
    pub disconnect: RwLock<Vec<DisconnectHook>>,
    pub error: RwLock<Vec<ErrorHook>>,
    pub any: RwLock<Vec<AnyHook>>,
    pub any_outgoing: RwLock<Vec<OutgoingHook>>,
    pub server_events: RwLock<HashMap<String, ServerHandler>>,
}

impl NsHandlers {
    pub fn connect(&self) -> Vec<ConnectMw> {
        read(&self.connect)
    }
    pub fn packet(&self) -> Vec<PacketMw> {
        read(&self.packet)
    }
    /// The listeners of event `name`, in registration order.
    pub fn routes(&self, name: &str) -> Option<Arc<[Route]>> {
        self.routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }
    /// Adds a listener of event `name`, after those it has.
    pub fn add_route(&self, name: String, route: Route) {
        write(&self.routes, |m| {
            let routes = m.entry(name).or_insert_with(|| Arc::from([]));
            let mut all = routes.to_vec();
            all.push(route);
            *routes = all.into();
        });
    }
    /// Refines listener `id` of event `name`.
    pub fn edit_route(&self, name: &str, id: ListenerId, f: impl FnOnce(&mut Route)) {
        write(&self.routes, |m| {
            let Some(routes) = m.get_mut(name) else {
                return;
            };
            let mut all = routes.to_vec();
            if let Some(r) = all.iter_mut().find(|r| r.id == id) {
                f(r);
                *routes = all.into();
            }
        });
    }
    pub fn connection(&self) -> Vec<SocketHook> {
        read(&self.connection)
    }
    pub fn disconnecting(&self) -> Vec<DisconnectingHook> {
        read(&self.disconnecting)
    }
    pub fn disconnect(&self) -> Vec<DisconnectHook> {
        read(&self.disconnect)
    }
    pub fn error(&self) -> Vec<ErrorHook> {
        read(&self.error)
    }
    pub fn any(&self) -> Vec<AnyHook> {
        read(&self.any)
    }
    pub fn any_outgoing(&self) -> Vec<OutgoingHook> {
        read(&self.any_outgoing)
    }
    pub fn server_event(&self, name: &str) -> Option<ServerHandler> {
        self.server_events
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }
    pub fn set_server_event(&self, name: String, handler: ServerHandler) {
        write(&self.server_events, |m| {
            m.insert(name, handler);
        });
    }
    pub fn push<T>(lock: &RwLock<Vec<T>>, item: T) {
        write(lock, |v| v.push(item));
    }
    pub fn prepend<T>(lock: &RwLock<Vec<T>>, item: T) {
        write(lock, |v| v.insert(0, item));
    }
    pub fn clear<T>(lock: &RwLock<Vec<T>>) {
        write(lock, Vec::clear);
    }
}

type NsMatcher = Arc<dyn Fn(&str) -> bool + Send + Sync>;
/// An `Io::on_new_namespace` hook.
pub(crate) type NewNamespaceHook = Arc<dyn Fn(Namespace) + Send + Sync>;

/// All namespaces' handlers, plus the global middleware.
#[derive(Default)]
pub(crate) struct Registry {
    pub connect: RwLock<Vec<ConnectMw>>,
    pub packet: RwLock<Vec<PacketMw>>,
    statics: RwLock<HashMap<String, Arc<NsHandlers>>>,
    dynamic: RwLock<Vec<(NsMatcher, Arc<NsHandlers>)>>,
    /// The `new_namespace` hooks.
    pub new_namespace: RwLock<Vec<NewNamespaceHook>>,
    /// Every namespace name announced to the `new_namespace` hooks (or existing before
    /// they could be told).
    known: RwLock<std::collections::HashSet<String>>,
    /// The `on_room_membership` listeners.
    pub membership: RwLock<Vec<MembershipHook>>,
}

impl Registry {
    /// The handlers of a declared namespace, created on first use.
    pub fn namespace(&self, name: &str) -> Arc<NsHandlers> {
        let mut map = self.statics.write().unwrap_or_else(PoisonError::into_inner);
        map.entry(name.to_owned()).or_default().clone()
    }

    /// Records that namespace `name` exists: true the first time (the `new_namespace`
    /// hooks are then due).
    pub fn first_seen(&self, name: &str) -> bool {
        self.known
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned())
    }

    /// Forgets namespace `name` (a dynamic child removed once empty), so that a later
    /// creation is announced again.
    pub fn forget(&self, name: &str) {
        self.known
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    pub fn new_namespace_hooks(&self) -> Vec<NewNamespaceHook> {
        read(&self.new_namespace)
    }

    /// Whether any `on_room_membership` listener is registered.
    pub fn has_membership_hooks(&self) -> bool {
        !self
            .membership
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    pub fn membership_hooks(&self) -> Vec<MembershipHook> {
        read(&self.membership)
    }

    /// The handlers of the dynamic family that serves `name`, when no namespace of that
    /// name was declared.
    pub fn dynamic_child(&self, name: &str) -> Option<Arc<NsHandlers>> {
        if self
            .statics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(name)
        {
            return None;
        }
        self.dynamic
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(m, _)| m(name))
            .map(|(_, h)| h.clone())
    }

    /// A new family of dynamic namespaces.
    pub fn dynamic(&self, matcher: NsMatcher) -> Arc<NsHandlers> {
        let handlers = Arc::new(NsHandlers::default());
        write(&self.dynamic, |v| v.push((matcher, handlers.clone())));
        handlers
    }

    /// The handlers for namespace `name`: its own, or those of the first dynamic family that
    /// takes it.
    pub fn lookup(&self, name: &str) -> Option<Arc<NsHandlers>> {
        if let Some(h) = self
            .statics
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Some(h.clone());
        }
        self.dynamic
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(m, _)| m(name))
            .map(|(_, h)| h.clone())
    }

    pub fn global_connect(&self) -> Vec<ConnectMw> {
        read(&self.connect)
    }

    pub fn global_packet(&self) -> Vec<PacketMw> {
        read(&self.packet)
    }
}
