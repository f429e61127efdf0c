//! Emits and broadcasts from the handles: single sockets, rooms, with or without
//! acknowledgements, in call order when their offsets come from the adapter.

use super::*;
use volley_core::socketio::AckToken;

impl Node {
    /// Sends `event` to the sockets `opts` selects in each of `nsps`, asking each for an
    /// acknowledgement, on this node and (unless `opts.local`) on the others; `tx` gets every
    /// answer once all came or failed: the local sockets answered or failed, and every other
    /// node reported how many sockets it asked and relayed that many answers. The other nodes
    /// are waited for until `timeout` (the request timeout when `None`); then the result is
    /// partial, `missing` counting the sockets that did not answer plus one for each node
    /// that never reported its count. A namespace that does not exist (any more) has no
    /// sockets to ask.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn broadcast_with_ack(
        &mut self,
        nsps: &[Arc<str>],
        opts: &BroadcastOptions,
        event: &str,
        payload: Payload,
        timeout: Option<Duration>,
        tx: oneshot::Sender<Result<Vec<AckResponse>, PartialAcks>>,
        now: Instant,
    ) {
        let (json, attachments) = payload.into_json();
        // Opened first, so that an answer arriving on another task finds it; its count of
        // sockets to wait for is set once they are asked.
        let key = self.hub.open_aggregate(Aggregate {
            remaining: usize::MAX,
            responses: Vec::new(),
            missing: 0,
            remote: None,
            tx,
        });
        let mut asked = 0;
        for nsp in nsps {
            self.notify_outgoing(nsp, opts, event, &json, &attachments);
            let Ok((id, sent)) = self.sio.broadcast_with_ack(
                nsp,
                opts,
                event,
                &json,
                attachments.clone(),
                timeout,
                now,
            ) else {
                continue;
            };
            for s in &sent {
                self.local.acks.insert((*s, id.0), Waiter::Member(key));
            }
            let hooks = self.hooks_for(nsp, event, &json, &attachments);
            let ask = Some(owned::Ask::Member(key));
            let handed = self.hand_off(ask, hooks, None, true, now);
            crate::metrics::broadcast::<()>(&Ok(sent.len() + handed));
            crate::metrics::acks_sent(sent.len() + handed);
            asked += sent.len() + handed;
        }
        let mut remote = None;
        let expected = self.other_nodes() * nsps.len();
        if !opts.local && expected > 0 {
            let request = self.next_request_id();
            let limit = timeout.unwrap_or(self.hub.cluster.request_timeout);
            self.requests
                .start(request, RequestKind::BroadcastAck, expected, now + limit);
            self.collectors.insert(request, Collector::Acks(key));
            for nsp in nsps {
                self.publish(
                    None,
                    ClusterMessage::Broadcast {
                        nsp: nsp.to_string(),
                        opts: opts.clone(),
                        event: event.to_owned(),
                        args: json.clone(),
                        attachments: attachments.clone(),
                        ack: Some(request),
                        timeout: Some(limit),
                    },
                );
            }
            remote = Some(request);
        }
        self.hub.update_aggregate(key, |agg| {
            // Answers that came meanwhile were counted down from the placeholder.
            agg.remaining = asked.saturating_sub(usize::MAX - agg.remaining);
            agg.remote = remote;
        });
    }

    // ---- the cluster: outgoing ----

    /// Sends `event` to the sockets `opts` selects in each of `nsps`, here and (unless
    /// `opts.local`) on the other nodes. `checked` gets what became of the packet on this
    /// node, once the sessions run elsewhere have queued (or refused) their copies.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn broadcast(
        &mut self,
        nsps: &[Arc<str>],
        opts: &BroadcastOptions,
        event: &str,
        payload: Payload,
        compress: bool,
        checked: Option<oneshot::Sender<crate::operators::Broadcasted>>,
        now: Instant,
    ) {
        let receipt = checked.map(|tx| Arc::new(owned::Receipt::new(tx)));
        let mut report = crate::operators::Broadcasted::default();
        for nsp in nsps {
            self.note_sends(nsp, opts, compress);
        }
        let (json, attachments) = payload.into_json();
        let shared = self.sio.shared_access().is_recovery_shared();
        for nsp in nsps {
            let message = || ClusterMessage::Broadcast {
                nsp: nsp.to_string(),
                opts: opts.clone(),
                event: event.to_owned(),
                args: json.clone(),
                attachments: attachments.clone(),
                ack: None,
                timeout: None,
            };
            if let (true, false, Some(ctl)) = (shared, opts.local, self.ctl().cloned()) {
                // The packet carries the offset the adapter keeps it under: deliver it here
                // once that is known, after the broadcasts made before it.
                let offset = self.hub.cluster.adapter.publish_broadcast(message());
                let seq = self.enqueue(nsp, opts, event, &json, &attachments, compress, None);
                (self.hub.spawn)(Box::pin(async move {
                    let offset = offset.await;
                    let _ = ctl
                        .handle
                        .cast(move |node: &mut Node, now| node.on_offset(seq, offset, now));
                }));
                report.deferred = true;
                continue;
            }
            if !opts.local {
                self.publish(None, message());
            }
            if self.queued.is_empty() {
                self.notify_outgoing(nsp, opts, event, &json, &attachments);
                // A namespace that went away meanwhile has nobody to send to.
                let refused_before = self.sio.refused().len();
                let sent = self
                    .sio
                    .broadcast(nsp, opts, event, &json, attachments.clone(), now);
                let hooks = self.hooks_for(nsp, event, &json, &attachments);
                let handed = self.hand_off(None, hooks, receipt.as_ref(), compress, now);
                crate::metrics::broadcast(
                    &sent.as_ref().map(|n| n + handed).map_err(|e| e.clone()),
                );
                report.queued += sent.as_ref().copied().unwrap_or(0);
                let refused = self.sio.refused().get(refused_before..).unwrap_or_default();
                report.refused.extend_from_slice(refused);
            } else {
                self.enqueue(nsp, opts, event, &json, &attachments, compress, Some(None));
                report.deferred = true;
            }
        }
        match receipt {
            Some(receipt) => receipt.settle(report),
            None => drop(report),
        }
    }

    /// Queues a broadcast for local delivery in call order.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn enqueue(
        &mut self,
        nsp: &Arc<str>,
        opts: &BroadcastOptions,
        event: &str,
        args: &str,
        attachments: &[bytes::Bytes],
        compress: bool,
        offset: Option<Option<String>>,
    ) -> u64 {
        let seq = self.next_queued;
        self.next_queued += 1;
        self.queued.push_back(Queued {
            seq,
            offset,
            nsp: nsp.clone(),
            opts: opts.clone(),
            event: event.to_owned(),
            args: args.to_owned(),
            attachments: attachments.to_vec(),
            compress,
        });
        seq
    }

    /// The event and payload the outgoing hooks of the sockets of `nsp` run on elsewhere see,
    /// when some may be registered.
    pub(super) fn hooks_for(
        &self,
        nsp: &str,
        event: &str,
        args: &str,
        attachments: &[bytes::Bytes],
    ) -> Option<Arc<(String, Payload)>> {
        let ns = self.hub.registry.lookup(nsp)?;
        let own = self
            .ctl()
            .is_some_and(|c| c.own_outgoing.load(Ordering::Acquire) > 0);
        if !own && ns.any_outgoing().is_empty() {
            return None;
        }
        let payload = Payload::from_wire(args, attachments.to_vec());
        Some(Arc::new((event.to_owned(), payload)))
    }

    /// Runs the outgoing hooks of `nsp` (`on_any_outgoing`) for every socket of this node a
    /// broadcast selects, as the reference tells each recipient's `onAnyOutgoing` listeners.
    pub(super) fn notify_outgoing(
        &self,
        nsp: &str,
        opts: &BroadcastOptions,
        event: &str,
        args: &str,
        attachments: &[bytes::Bytes],
    ) {
        let Some(ns) = self.hub.registry.lookup(nsp) else {
            return;
        };
        let own = self
            .ctl()
            .is_some_and(|c| c.own_outgoing.load(Ordering::Acquire) > 0);
        if !own && ns.any_outgoing().is_empty() {
            return;
        }
        let payload = Payload::from_wire(args, attachments.to_vec());
        for id in self.sio.select(nsp, opts) {
            if let Some(entry) = self.local.sockets.get(&id) {
                for hook in &entry.socket.outgoing_hooks() {
                    self.hub.outgoing_hook(hook, &entry.socket, event, &payload);
                }
            }
        }
    }

    /// The adapter kept broadcast `seq` under `offset` (or could not): deliver what is ready,
    /// in order.
    pub(super) fn on_offset(&mut self, seq: u64, offset: Option<String>, now: Instant) {
        if let Some(q) = self.queued.iter_mut().find(|q| q.seq == seq) {
            q.offset = Some(offset);
        }
        while self.queued.front().is_some_and(|q| q.offset.is_some()) {
            let Some(q) = self.queued.pop_front() else {
                break;
            };
            let offset = q.offset.flatten();
            self.notify_outgoing(&q.nsp, &q.opts, &q.event, &q.args, &q.attachments);
            let hooks = self.hooks_for(&q.nsp, &q.event, &q.args, &q.attachments);
            let sent = self.sio.broadcast_at(
                &q.nsp,
                &q.opts,
                &q.event,
                &q.args,
                q.attachments,
                offset.as_deref(),
                now,
            );
            let handed = self.hand_off(None, hooks, None, q.compress, now);
            crate::metrics::broadcast(&sent.map(|n| n + handed));
        }
    }

    /// Records a packet sent to the sockets `opts` selects in `nsp`, for the compression of
    /// poll answers (see [`Node::note_send`]).
    pub(super) fn note_sends(&mut self, nsp: &str, opts: &BroadcastOptions, compress: bool) {
        if compress && self.plain.is_empty() {
            return;
        }
        for id in self.sio.select(nsp, opts) {
            self.note_send(id, compress);
        }
    }

    /// Records a packet sent to `socket`: with `compress(false)`, its polling session's next
    /// answer stays uncompressed unless a packet that allows compression joins it (the
    /// reference compresses a payload when any of its packets allows it). Nothing is kept
    /// while no packet was sent with `compress(false)`.
    pub(super) fn note_send(&mut self, socket: SocketId, compress: bool) {
        if compress && self.plain.is_empty() {
            return;
        }
        let Some(sid) = self.sio.session_of(socket) else {
            return;
        };
        if compress {
            if let Some(mixed) = self.plain.get_mut(&sid) {
                *mixed = true;
            }
        } else if self.sio.engine().transport(sid) == Some(TransportKind::Polling) {
            self.plain.entry(sid).or_insert(false);
        }
    }
}

impl<O: Ops> Unit<'_, O> {
    /// Sends `event` to `socket` asking for an acknowledgement; `tx` gets the answer, or why
    /// none will come.
    pub(crate) fn emit_with_ack(
        &mut self,
        socket: SocketId,
        event: &str,
        payload: Payload,
        timeout: Option<Duration>,
        tx: oneshot::Sender<Result<Payload, AckError>>,
        now: Instant,
    ) {
        let (json, attachments) = payload.into_wire();
        match self
            .ops
            .emit_with_ack(socket, event, &json, attachments, timeout, now)
        {
            Ok(id) => {
                crate::metrics::acks_sent(1);
                self.local.acks.insert((socket, id.0), Waiter::Single(tx));
            }
            Err(e) => {
                if matches!(e, SioError::BufferFull(_)) {
                    crate::metrics::overflow(self.ops.overflow());
                }
                let _ = tx.send(Err(AckError::NotSent(e.to_string())));
            }
        }
    }

    /// Answers a client's acknowledgement request.
    pub(crate) fn ack(&mut self, token: AckToken, payload: Payload, now: Instant) {
        let (json, attachments) = payload.into_wire();
        let _ = self.ops.ack(token, &json, attachments, now);
    }

    /// Sends `event` to one socket of this unit after its outgoing hooks, saying whether the
    /// packet was queued.
    pub(crate) fn emit_one(
        &mut self,
        socket: SocketId,
        event: &str,
        payload: Payload,
        volatile: bool,
        now: Instant,
    ) -> Result<(), crate::socket::EmitError> {
        use crate::socket::EmitError;
        if let Some(entry) = self.local.sockets.get(&socket) {
            for hook in entry.socket.outgoing_hooks() {
                self.hub
                    .outgoing_hook(&hook, &entry.socket, event, &payload);
            }
        }
        let (json, attachments) = payload.into_wire();
        match self
            .ops
            .emit(socket, event, &json, attachments, volatile, now)
        {
            Ok(_) => Ok(()),
            Err(SioError::BufferFull(_)) => Err(EmitError::Full),
            Err(_) => Err(EmitError::Disconnected),
        }
    }

    pub(super) fn resolve(
        &mut self,
        socket: SocketId,
        id: AckId,
        result: Result<Payload, AckError>,
    ) {
        match self.local.acks.remove(&(socket, id.0)) {
            Some(Waiter::Single(tx)) => {
                let _ = tx.send(result);
            }
            Some(Waiter::Member(key)) => self.hub.update_aggregate(key, |agg| {
                match result {
                    Ok(payload) => agg.responses.push(AckResponse { socket, payload }),
                    Err(_) => agg.missing += 1,
                }
                agg.remaining = agg.remaining.saturating_sub(1);
            }),
            Some(Waiter::Relay { to, request }) => {
                // A failure is not relayed: the sender counts it missing at its deadline.
                if let Ok(payload) = result {
                    let (args, attachments) = payload.into_json();
                    self.hub.publish(
                        Some(to),
                        ClusterMessage::BroadcastAck {
                            request,
                            socket,
                            args,
                            attachments,
                        },
                    );
                }
            }
            None => {}
        }
    }
}

impl Hub {
    /// Runs one `on_any_outgoing` hook, where the emit runs: a panic is contained.
    pub(super) fn outgoing_hook(
        &self,
        hook: &OutgoingHook,
        socket: &Socket,
        event: &str,
        payload: &Payload,
    ) {
        let run = || hook(socket, event, payload);
        if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(run)) {
            if let Some(ctl) = self.ctl() {
                let report = HandlerPanic {
                    socket: Some(socket.id()),
                    namespace: socket.ns().to_owned(),
                    event: event.to_owned(),
                    place: PanicPlace::Outgoing,
                    message: panic_message(&*payload),
                };
                report_panic(ctl, &socket.route(), report);
            }
        }
    }
}
