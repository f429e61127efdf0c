//! What the machine's events mean for the application: connects (with their middleware),
//! events to handlers, acknowledgements, disconnects, upgrades, refusals and panics.

use super::*;

impl<O: Ops> Unit<'_, O> {
    /// Handles one event of the core machine (the driver's event callback).
    pub(crate) fn dispatch(&mut self, event: Event, now: Instant) {
        crate::metrics::socket_event(&event, |nsp| self.ops.namespace_socket_count(nsp));
        match event {
            Event::Connect(req) => self.on_connect(req, now),
            Event::Event {
                socket,
                name,
                args,
                attachments,
                ack,
                ..
            } => {
                let payload = Payload::from_decoded(args, attachments);
                self.on_event(socket, name, payload, AckSlot::new(ack));
            }
            Event::Ack {
                socket,
                id,
                args,
                attachments,
            } => {
                let payload = Payload::from_decoded(args, attachments);
                self.resolve(socket, id, Ok(payload));
            }
            Event::AckFailed { socket, id, reason } => {
                let err = match reason {
                    AckFailure::Timeout => AckError::Timeout,
                    AckFailure::Disconnected => AckError::Disconnected,
                };
                self.resolve(socket, id, Err(err));
            }
            Event::Disconnecting {
                socket,
                reason,
                rooms,
                ..
            } => {
                let Some(entry) = self.local.sockets.get_mut(&socket) else {
                    return;
                };
                // Connection state recovery: the session the socket left keeps its data.
                if let Some(data) = entry.socket.data().get::<serde_json::Value>() {
                    self.ops
                        .set_session_data(socket, Utf8Bytes::from(data.to_string()));
                }
                // Kept where every node can find it, with an adapter that shares recovery.
                if let (true, Some(r)) = (
                    self.ops.is_recovery_shared(),
                    self.ops.connection_state_recovery(),
                ) {
                    if let Some(session) = self.ops.take_session(socket) {
                        self.hub
                            .cluster
                            .adapter
                            .persist_session(session, r.max_disconnection_duration);
                    }
                }
                for hook in entry.socket.ns_handlers().disconnecting() {
                    let (s, rooms) = (entry.socket.clone(), rooms.clone());
                    let job = guarded(
                        self.hub.ctl(),
                        &entry.socket,
                        PanicPlace::Disconnecting,
                        "disconnecting",
                        move || hook(s, reason, rooms),
                    );
                    entry.push(Job::Barrier(job), &self.hub.spawn);
                }
                for job in Self::own_reserved(
                    self.hub.ctl(),
                    &self.hub.state,
                    &entry.socket,
                    "disconnecting",
                    reason,
                ) {
                    entry.push(Job::Barrier(job), &self.hub.spawn);
                }
            }
            Event::Disconnect {
                socket,
                reason,
                nsp,
            } => {
                if !self.ops.has_namespace(&nsp) {
                    // A dynamic child removed once empty: created again, it is new again.
                    self.hub.registry.forget(&nsp);
                }
                let Some(mut entry) = self.local.sockets.remove(&socket) else {
                    return;
                };
                if let Route::Owned(_) = self.route {
                    self.hub.owned_sockets().remove(&socket);
                    let recovery = self.ops.connection_state_recovery().is_some();
                    self.hub.nudge(recovery);
                }
                entry.socket.mark_disconnected();
                for hook in entry.socket.ns_handlers().disconnect() {
                    let s = entry.socket.clone();
                    let job = guarded(
                        self.hub.ctl(),
                        &entry.socket,
                        PanicPlace::Disconnect,
                        "disconnect",
                        move || hook(s, reason),
                    );
                    entry.push(Job::Barrier(job), &self.hub.spawn);
                }
                for job in Self::own_reserved(
                    self.hub.ctl(),
                    &self.hub.state,
                    &entry.socket,
                    "disconnect",
                    reason,
                ) {
                    entry.push(Job::Barrier(job), &self.hub.spawn);
                }
                // The socket's own listeners hold clones of it: dropped with it.
                entry.socket.close_listeners();
                if let Some(life) = entry.life.take() {
                    let _ = life.send(reason);
                }
                // Dropping the queue lets the socket's task finish what it has, then end.
            }
        }
    }

    /// The jobs running the listeners `socket` registered on itself for a reserved event
    /// (`disconnecting`, `disconnect`): each gets the reason as its one argument.
    pub(super) fn own_reserved(
        ctl: Option<&Arc<Ctl>>,
        state: &Extensions,
        socket: &Socket,
        event: &'static str,
        reason: DisconnectReason,
    ) -> Vec<BoxFuture<()>> {
        let place = if event == "disconnect" {
            PanicPlace::Disconnect
        } else {
            PanicPlace::Disconnecting
        };
        socket
            .take_listeners(event)
            .into_iter()
            .map(|l| {
                let (s, state) = (socket.clone(), state.clone());
                guarded(ctl, socket, place, event, move || {
                    let ctx = EventCtx {
                        socket: s,
                        name: event.to_owned(),
                        payload: Payload::of(reason.as_str()).unwrap_or_default(),
                        ack: AckSlot::default(),
                        state,
                        last: false,
                    };
                    let reply = (l.handler)(ctx);
                    Box::pin(async move {
                        let _ = reply.await;
                    })
                })
            })
            .collect()
    }

    pub(super) fn on_connect(&mut self, req: ConnectRequest, now: Instant) {
        // Shared recovery: the session and what it missed are fetched from the adapter
        // first; the request goes on when they came (or did not).
        if self.ops.is_recovery_shared() && !req.recovered && req.accepted.is_none() {
            if let (Some((pid, offset)), Some(ctl)) =
                (recovery_auth(&req.auth), self.hub.ctl().cloned())
            {
                let restore = self
                    .hub
                    .cluster
                    .adapter
                    .restore_session(&pid, &offset, &req.nsp);
                let route = self.route.clone();
                (self.hub.spawn)(Box::pin(async move {
                    let found = restore.await;
                    let _ = ctl.send(
                        &route,
                        Command::Restored(Box::new(super::command::Restored { req, found })),
                    );
                }));
                return;
            }
        }
        self.connect(req, now);
    }

    /// The adapter's answer to a recovering connect.
    pub(super) fn on_restored(
        &mut self,
        mut req: ConnectRequest,
        found: Option<(SessionState, Vec<StoredMessage>)>,
        now: Instant,
    ) {
        if let Some((session, stored)) = found {
            let data = session.data.clone();
            match self.ops.restore_connect(req.id, session, stored, now) {
                // The client left meanwhile.
                Err(_) => return,
                Ok(RestoreOutcome::Refused) => {}
                Ok(RestoreOutcome::Restored) => {
                    req.recovered = true;
                    req.session_data = data;
                }
                Ok(RestoreOutcome::Accepted(id)) => {
                    req.recovered = true;
                    req.session_data = data;
                    req.accepted = Some(id);
                }
            }
        }
        self.connect(req, now);
    }

    /// Runs the connection middleware of a request (or attaches a socket the core accepted).
    pub(super) fn connect(&mut self, req: ConnectRequest, now: Instant) {
        crate::metrics::connect_requested(req.auth.as_str(), req.recovered);
        let Some(ctl) = self.hub.ctl().cloned() else {
            let _ = self.ops.reject(req.id, "server not ready", None, now);
            return;
        };
        let ns = self.hub.registry.lookup(&req.nsp).unwrap_or_default();
        if self.hub.registry.first_seen(&req.nsp) {
            // A dynamic namespace's child, created by this connect.
            let namespace = crate::namespace::Namespace {
                ctl: ctl.clone(),
                name: Some(req.nsp.clone()),
                handlers: ns.clone(),
            };
            announce_namespace(&ctl, namespace);
        }
        let data = Extensions::new();
        if let Some(v) = req
            .session_data
            .as_ref()
            .and_then(|d| serde_json::from_str::<serde_json::Value>(d.as_str()).ok())
        {
            data.insert(v);
        }
        if let Some(id) = req.accepted {
            // A recovered connect the core accepted itself: the middleware is skipped.
            self.attach(id, Handshake::from_request(&req), data, ns, None, ctl, true);
            return;
        }
        let chain: Vec<_> = self
            .hub
            .registry
            .global_connect()
            .into_iter()
            .chain(ns.connect())
            .collect();
        if chain.is_empty() {
            // No connection middleware: nothing runs before the socket is accepted, and
            // nothing waits for its disconnect. Accepted here, without a task that would
            // stay parked (with its handshake copy) for the socket's whole life.
            let handshake = Handshake::from_request(&req);
            if let Err(e) = self.accept(req.id, handshake, data, ns, None, now) {
                crate::metrics::refused("connect_error");
                let _ = self.ops.reject(req.id, &e.to_string(), None, now);
            }
            return;
        }
        let ctx = ConnectCtx {
            handshake: Handshake::from_request(&req),
            data,
            request: req.id,
            socket: Arc::new(std::sync::OnceLock::new()),
            state: self.hub.state.clone(),
        };
        let accepted = Arc::new(AtomicBool::new(false));
        let next = Next {
            chain: chain.into(),
            index: 0,
            ns,
            ctl: ctl.clone(),
            route: self.route.clone(),
            accepted: accepted.clone(),
        };
        let id = req.id;
        let namespace = req.nsp.to_string();
        let route = self.route.clone();
        (self.hub.spawn)(Box::pin(async move {
            let socket = ctx.socket.clone();
            let result = match AssertUnwindSafe(next.run(ctx)).catch_unwind().await {
                Ok(result) => result,
                Err(payload) => {
                    // Accepted: the socket is disconnected. Not yet: the client is refused.
                    let report = HandlerPanic {
                        socket: socket.get().map(Socket::id),
                        namespace,
                        event: "connection".to_owned(),
                        place: PanicPlace::ConnectMiddleware,
                        message: panic_message(&*payload),
                    };
                    let refuse = !accepted.load(Ordering::SeqCst);
                    let _ = ctl.send(
                        &route,
                        Command::Panic {
                            report: Box::new(report),
                            refuse: refuse.then_some(id),
                        },
                    );
                    return;
                }
            };
            if accepted.load(Ordering::SeqCst) {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection middleware failed after disconnect");
                }
                return;
            }
            let (message, data) = match result {
                Err(e) => (e.message, e.data.map(|d| d.to_string())),
                Ok(()) => ("connection refused".to_owned(), None),
            };
            let _ = ctl.send(
                &route,
                Command::Reject {
                    request: id,
                    message,
                    data,
                },
            );
        }));
    }

    pub(super) fn on_event(
        &mut self,
        socket: SocketId,
        name: String,
        payload: Payload,
        ack: AckSlot,
    ) {
        let Some(entry) = self.local.sockets.get_mut(&socket) else {
            return;
        };
        if entry.is_closed() || entry.failed {
            // A handler of the socket panicked: it is on its way out.
            return;
        }
        let Some(ctl) = self.hub.ctl().cloned() else {
            return;
        };
        let sock = entry.socket.clone();
        let ns = sock.ns_handlers().clone();
        let mut chain = self.hub.registry.global_packet();
        chain.extend(ns.packet());
        chain.extend(sock.own_middleware());
        let state = self.hub.state.clone();
        let received = crate::metrics::Received::now();
        // Every piece of application code runs contained: a panic is reported with the
        // event's name and disconnects the socket, and what follows it does not run.
        let fut = async move {
            received.handling_starts();
            let mut ev = IncomingEvent { name, payload };
            if !chain.is_empty() {
                let event = ev.name.clone();
                let run = run_packet_middleware(chain, &sock, ev);
                match contained(run, &ctl, &sock, PanicPlace::PacketMiddleware, &event).await {
                    Some(Some(next)) => ev = next,
                    _ => return,
                }
            }
            for hook in sock.any_hooks() {
                let run = async { hook(sock.clone(), ev.name.clone(), ev.payload.clone()).await };
                if contained(run, &ctl, &sock, PanicPlace::Any, &ev.name)
                    .await
                    .is_none()
                {
                    return;
                }
            }
            // The listeners of the event as the middleware left it (it may have renamed it):
            // the namespace's, then the socket's own.
            let routes = ns.routes(&ev.name);
            let routes = routes.as_deref().unwrap_or_default();
            let own = sock.take_listeners(&ev.name);
            let listener = |r: &crate::registry::Route| Listener {
                handler: r.handler.clone(),
                middleware: r.middleware.clone(),
                result: r.result.clone(),
            };
            let own_listener = |l: crate::listeners::OwnListener| Listener {
                handler: l.handler,
                middleware: Vec::new(),
                result: ResultTo::Ack,
            };
            if routes.len() + own.len() <= 1 {
                // The common case, with no list to build.
                let one = match routes.first() {
                    Some(r) => Some(listener(r)),
                    None => own.into_iter().next().map(own_listener),
                };
                if let Some(one) = one {
                    run_listener(one, ctl, sock, ev, ack, state).await;
                }
                return;
            }
            let listeners: Vec<Listener> = routes
                .iter()
                .map(listener)
                .chain(own.into_iter().map(own_listener))
                .collect();
            // Each starts in registration order, then they proceed concurrently.
            let runs = listeners.into_iter().map(|l| {
                run_listener(
                    l,
                    ctl.clone(),
                    sock.clone(),
                    ev.clone(),
                    ack.clone(),
                    state.clone(),
                )
            });
            futures::future::join_all(runs).await;
        };
        let mut fut: BoxFuture<()> = Box::pin(fut);
        if !self.hub.inline_handlers.load(Ordering::Relaxed) || entry.unfinished() != 0 {
            entry.push(Job::Handler(fut), &self.hub.spawn);
            return;
        }
        // Nothing of this socket waits or runs: the handler starts here, and only if it has
        // to wait does it move to the socket's task (which polls it again at once, so that
        // it registers that task's waker). What it casts meanwhile runs right after this
        // event (see `Handle::cast`).
        let mut cx = Context::from_waker(Waker::noop());
        let polled = entry.span.in_scope(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)))
        });
        match polled {
            Ok(Poll::Ready(())) => {}
            Ok(Poll::Pending) => entry.push(Job::Handler(fut), &self.hub.spawn),
            Err(payload) => {
                // Application code is contained inside the future; this is a last resort.
                entry.close();
                let report = HandlerPanic {
                    socket: Some(socket),
                    namespace: entry.socket.ns().to_owned(),
                    event: String::new(),
                    place: PanicPlace::Handler,
                    message: panic_message(&*payload),
                };
                if let Some(ctl) = self.hub.ctl() {
                    report_panic(ctl, self.route, report);
                }
            }
        }
    }

    /// Answers `tx` once the connection of `socket` runs over WebSocket (`true`), or is
    /// gone (`false`).
    pub(crate) fn wait_upgrade(&mut self, socket: SocketId, tx: oneshot::Sender<bool>) {
        let Some(sid) = self.ops.session_of(socket) else {
            let _ = tx.send(false);
            return;
        };
        self.local.upgrades.push((sid, tx));
        self.check_upgrades();
    }

    /// Settles the upgrade waiters whose session upgraded or closed. The core reports an
    /// upgrade only inside its own pump, so the state is looked at after every input, as
    /// long as someone waits.
    pub(super) fn check_upgrades(&mut self) {
        if self.local.upgrades.is_empty() {
            return;
        }
        let mut kept = Vec::new();
        for (sid, tx) in std::mem::take(&mut self.local.upgrades) {
            if tx.is_canceled() {
                continue;
            }
            match self.ops.transport(sid) {
                None => {
                    let _ = tx.send(false);
                }
                Some(TransportKind::WebSocket) => {
                    let _ = tx.send(true);
                }
                Some(_) => kept.push((sid, tx)),
            }
        }
        self.local.upgrades = kept;
    }

    /// A caught panic: logged at error level, handed to the `on_error` hooks, and its socket
    /// disconnected from the namespace (the client gets `41`, the `disconnect` handlers run
    /// with "server namespace disconnect"; the socket leaves its rooms, so no broadcast
    /// reaches it any more).
    /// Hands `error` to the `on_error` hooks, each contained.
    pub(super) fn run_error_hooks(&self, error: &ServerError) {
        let Some(ctl) = self.hub.ctl() else {
            return;
        };
        let hooks = ctl
            .errors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for hook in hooks {
            if std::panic::catch_unwind(AssertUnwindSafe(|| hook(error))).is_err() {
                tracing::error!("an on_error hook panicked");
            }
        }
    }

    /// Reports the packets the core could not queue (full queues) since the last call: a
    /// warning, and the `on_error` hooks.
    pub(super) fn report_refused(&mut self) {
        for socket in self.ops.take_refused() {
            self.report_overflow(socket);
        }
    }

    /// Reports a packet for `socket` refused by a full queue: a warning, the overflow
    /// metric, and the `on_error` hooks.
    pub(super) fn report_overflow(&mut self, socket: SocketId) {
        let namespace = self
            .ops
            .namespace_of(socket)
            .map(|n| n.to_string())
            .unwrap_or_default();
        crate::metrics::overflow(self.ops.overflow());
        tracing::warn!(%socket, %namespace, "outgoing queue full: packet refused");
        let error = ServerError::Overflow(crate::io::Overflow { socket, namespace });
        self.run_error_hooks(&error);
    }

    pub(crate) fn on_panic(&mut self, report: HandlerPanic, now: Instant) {
        tracing::error!(
            socket = ?report.socket,
            namespace = %report.namespace,
            event = %report.event,
            place = report.place.as_str(),
            panic = %report.message,
            "application code panicked; its socket is disconnected"
        );
        let socket = report.socket;
        self.run_error_hooks(&ServerError::Panic(report));
        if let Some(id) = socket {
            if let Some(entry) = self.local.sockets.get_mut(&id) {
                entry.failed = true;
            }
            let _ = self.ops.disconnect(id, false, now);
        }
    }
}

/// One listener of an event, as it runs for one socket.
struct Listener {
    handler: crate::handler::ErasedHandler,
    middleware: Vec<PacketMw>,
    result: ResultTo,
}

/// Runs one listener of an event: its own middleware, then the handler, then what its result
/// says (the acknowledgement goes to the first listener that takes it).
async fn run_listener(
    listener: Listener,
    ctl: Arc<Ctl>,
    sock: Socket,
    mut ev: IncomingEvent,
    ack: AckSlot,
    state: Extensions,
) {
    // The rarer paths (packet middleware, an error reply) run boxed: this future, made for
    // every event, is sized for the handler's path alone.
    if !listener.middleware.is_empty() {
        let event = ev.name.clone();
        let run = run_packet_middleware(listener.middleware, &sock, ev);
        let place = PanicPlace::PacketMiddleware;
        match Box::pin(contained(run, &ctl, &sock, place, &event)).await {
            Some(Some(next)) => ev = next,
            _ => return,
        }
    }
    let event = ev.name.clone();
    let ctx = EventCtx {
        socket: sock.clone(),
        name: ev.name,
        payload: ev.payload,
        ack: ack.clone(),
        state,
        last: false,
    };
    let run = async { (listener.handler)(ctx).await };
    let Some(reply) = contained(run, &ctl, &sock, PanicPlace::Handler, &event).await else {
        return;
    };
    match reply {
        Reply::None => {}
        Reply::Payload(p) => match &listener.result {
            ResultTo::Ack => {
                if let Some(token) = take_ack(&ack) {
                    sock.send_ack(token, p);
                }
            }
            ResultTo::Emit { event, always } => match take_ack(&ack) {
                Some(token) if !always => sock.send_ack(token, p),
                _ => sock.emit_payload(event, p),
            },
            ResultTo::Broadcast { event, rooms } => {
                let mut op = sock.broadcast();
                for room in rooms {
                    op = op.to(room.clone());
                }
                op.emit_payload(event, p);
            }
        },
        Reply::Error(message) => {
            let run = sock.report_error(message);
            let _ = Box::pin(contained(run, &ctl, &sock, PanicPlace::Error, &event)).await;
        }
    }
}

/// Runs packet middleware in order: the event as the last one passed it on, or `None` when
/// one dropped or rejected it (a rejection is reported to the socket's `error` handlers).
async fn run_packet_middleware(
    chain: Vec<PacketMw>,
    sock: &Socket,
    mut ev: IncomingEvent,
) -> Option<IncomingEvent> {
    for mw in chain {
        match mw(sock.clone(), ev).await {
            PacketFlow::Continue(next) => ev = next,
            PacketFlow::Drop => return None,
            PacketFlow::Reject(message) => {
                sock.report_error(message).await;
                return None;
            }
        }
    }
    Some(ev)
}
