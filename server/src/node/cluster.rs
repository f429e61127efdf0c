//! The node's part in a cluster: what it publishes to the other nodes, what it does with
//! their messages, and the requests that wait for their answers.

use super::*;

impl Node {
    /// How many other nodes the adapter counts now.
    pub(super) fn other_nodes(&self) -> usize {
        self.hub.cluster.adapter.server_count().saturating_sub(1)
    }

    /// A request id no other request of this cluster uses: this node's id and a counter.
    pub(super) fn next_request_id(&mut self) -> RequestId {
        let n = self.next_request;
        self.next_request += 1;
        RequestId::new(&format!("{}-{n:x}", self.hub.cluster.node_id))
            .or_else(|_| RequestId::new(&format!("{n:x}")))
            .expect("a hexadecimal counter is a valid request id")
    }

    /// Hands `message` to the adapter: for node `to`, or for every other node.
    pub(crate) fn publish(&self, to: Option<NodeId>, message: ClusterMessage) {
        self.hub.publish(to, message);
    }

    /// Puts the selected sockets in `rooms` (`join`) or takes them out, here and (unless
    /// `opts.local`) on the other nodes.
    pub(crate) fn sockets_rooms(
        &mut self,
        nsps: &[Arc<str>],
        opts: &BroadcastOptions,
        rooms: &[Room],
        join: bool,
    ) {
        for nsp in nsps {
            if !opts.local {
                let (nsp, opts) = (nsp.to_string(), opts.clone());
                let rooms = rooms.iter().map(|r| r.to_string()).collect();
                self.publish(
                    None,
                    if join {
                        ClusterMessage::SocketsJoin { nsp, opts, rooms }
                    } else {
                        ClusterMessage::SocketsLeave { nsp, opts, rooms }
                    },
                );
            }
            if join {
                self.sio.sockets_join(nsp, opts, rooms);
            } else {
                self.sio.sockets_leave(nsp, opts, rooms);
            }
        }
    }

    /// Disconnects the selected sockets, here and (unless `opts.local`) on the other nodes.
    pub(crate) fn disconnect_sockets(
        &mut self,
        nsps: &[Arc<str>],
        opts: &BroadcastOptions,
        close: bool,
        now: Instant,
    ) {
        for nsp in nsps {
            if !opts.local {
                self.publish(
                    None,
                    ClusterMessage::DisconnectSockets {
                        nsp: nsp.to_string(),
                        opts: opts.clone(),
                        close,
                    },
                );
            }
            self.disconnect_selected(nsp, opts, close, now);
        }
    }

    /// Disconnects the sockets `opts` selects in `nsp`, here and on the connections' tasks.
    pub(super) fn disconnect_selected(
        &mut self,
        nsp: &str,
        opts: &BroadcastOptions,
        close: bool,
        now: Instant,
    ) {
        for socket in self.sio.select(nsp, opts) {
            match self.owner_of(socket) {
                Some(mailbox) => {
                    let command = Command::Disconnect { socket, close };
                    let _ = self.hand_to_owner(&mailbox, command, now);
                }
                None => {
                    let _ = self.sio.disconnect(socket, close, now);
                }
            }
        }
    }

    /// The selected sockets of this node now, and (unless `opts.local`) one receiver per
    /// namespace for the other nodes' sockets: complete when every other node answered, or
    /// what came by `timeout` (the request timeout when `None`).
    pub(crate) fn fetch_sockets(
        &mut self,
        nsps: &[Arc<str>],
        opts: &BroadcastOptions,
        timeout: Option<Duration>,
        now: Instant,
    ) -> (Vec<RemoteSocket>, Vec<oneshot::Receiver<Vec<RemoteSocket>>>) {
        let local = nsps
            .iter()
            .flat_map(|nsp| self.fetch(nsp, opts))
            .map(|(socket, rooms)| RemoteSocket::local(socket, rooms))
            .collect();
        let others = self.other_nodes();
        if opts.local || others == 0 {
            return (local, Vec::new());
        }
        let deadline = now + timeout.unwrap_or(self.hub.cluster.request_timeout);
        let mut remote = Vec::new();
        for nsp in nsps {
            let request = self.next_request_id();
            self.requests
                .start(request, RequestKind::FetchSockets, others, deadline);
            let (tx, rx) = oneshot::channel();
            self.collectors.insert(
                request,
                Collector::Fetch {
                    nsp: nsp.clone(),
                    sockets: Vec::new(),
                    tx,
                },
            );
            self.publish(
                None,
                ClusterMessage::FetchSockets {
                    request,
                    nsp: nsp.to_string(),
                    opts: opts.clone(),
                },
            );
            remote.push(rx);
        }
        (local, remote)
    }

    /// The rooms of `nsps` on every node: `tx` gets them once every other node answered, or
    /// those known at the request timeout.
    pub(crate) fn all_rooms(
        &mut self,
        nsps: &[Arc<str>],
        tx: oneshot::Sender<Vec<Room>>,
        now: Instant,
    ) {
        let rooms: BTreeSet<Room> = nsps.iter().flat_map(|nsp| self.sio.rooms(nsp)).collect();
        let expected = self.other_nodes() * nsps.len();
        if expected == 0 {
            let _ = tx.send(rooms.into_iter().collect());
            return;
        }
        let request = self.next_request_id();
        let deadline = now + self.hub.cluster.request_timeout;
        self.requests
            .start(request, RequestKind::AllRooms, expected, deadline);
        self.collectors
            .insert(request, Collector::Rooms { rooms, tx });
        for nsp in nsps {
            self.publish(
                None,
                ClusterMessage::AllRooms {
                    request,
                    nsp: nsp.to_string(),
                },
            );
        }
    }

    /// Emits `event` to the server-side handlers of the other nodes (never this one's). With
    /// `tx`, each other node answers once (per namespace): `tx` gets the answers once all
    /// came, or a timeout error with those that did at the request timeout.
    pub(crate) fn server_side_emit(
        &mut self,
        nsps: &[Arc<str>],
        event: &str,
        payload: Payload,
        tx: Option<oneshot::Sender<Result<Vec<Payload>, ServerSideEmitError>>>,
        now: Instant,
    ) {
        let (json, attachments) = payload.into_json();
        let request = match tx {
            None => None,
            Some(tx) => {
                let expected = self.other_nodes() * nsps.len();
                if expected == 0 {
                    let _ = tx.send(Ok(Vec::new()));
                    return;
                }
                let request = self.next_request_id();
                let deadline = now + self.hub.cluster.request_timeout;
                self.requests
                    .start(request, RequestKind::ServerSideEmit, expected, deadline);
                self.collectors.insert(
                    request,
                    Collector::Emit {
                        responses: Vec::new(),
                        tx,
                    },
                );
                Some(request)
            }
        };
        for nsp in nsps {
            self.publish(
                None,
                ClusterMessage::ServerSideEmit {
                    nsp: nsp.to_string(),
                    event: event.to_owned(),
                    args: json.clone(),
                    attachments: attachments.clone(),
                    request,
                },
            );
        }
    }

    // ---- the cluster: incoming ----

    /// Handles a message another node (`from`) sent this one (kept under `offset` by an
    /// adapter with a shared recovery store).
    pub(crate) fn on_cluster(
        &mut self,
        from: NodeId,
        message: ClusterMessage,
        offset: Option<String>,
        now: Instant,
    ) {
        if from == self.hub.cluster.node_id {
            return;
        }
        match message {
            ClusterMessage::Broadcast {
                nsp,
                mut opts,
                event,
                args,
                attachments,
                ack,
                timeout,
            } => {
                // Whatever arrives is for this node's sockets only.
                opts.local = true;
                self.notify_outgoing(&nsp, &opts, &event, &args, &attachments);
                let hooks = self.hooks_for(&nsp, &event, &args, &attachments);
                let Some(request) = ack else {
                    let _ = self.sio.broadcast_at(
                        &nsp,
                        &opts,
                        &event,
                        &args,
                        attachments,
                        offset.as_deref(),
                        now,
                    );
                    self.hand_off(None, hooks, None, true, now);
                    return;
                };
                let count = match self.sio.broadcast_with_ack(
                    &nsp,
                    &opts,
                    &event,
                    &args,
                    attachments,
                    timeout,
                    now,
                ) {
                    Ok((id, sent)) => {
                        for s in &sent {
                            self.local
                                .acks
                                .insert((*s, id.0), Waiter::Relay { to: from, request });
                        }
                        let ask = owned::Ask::Relay { to: from, request };
                        sent.len() + self.hand_off(Some(ask), hooks, None, true, now)
                    }
                    Err(_) => 0,
                };
                // Before any acknowledgement: the sender learns how many to wait for.
                self.publish(
                    Some(from),
                    ClusterMessage::BroadcastClientCount { request, count },
                );
            }
            ClusterMessage::SocketsJoin { nsp, opts, rooms } => {
                let rooms: Vec<Room> = rooms.into_iter().map(Room::from).collect();
                self.sio.sockets_join(&nsp, &opts, &rooms);
            }
            ClusterMessage::SocketsLeave { nsp, opts, rooms } => {
                let rooms: Vec<Room> = rooms.into_iter().map(Room::from).collect();
                self.sio.sockets_leave(&nsp, &opts, &rooms);
            }
            ClusterMessage::DisconnectSockets { nsp, opts, close } => {
                self.disconnect_selected(&nsp, &opts, close, now);
            }
            ClusterMessage::FetchSockets { request, nsp, opts } => {
                let sockets = self
                    .fetch(&nsp, &opts)
                    .into_iter()
                    .map(|(socket, rooms)| socket_info(&socket, &rooms))
                    .collect();
                self.publish(
                    Some(from),
                    ClusterMessage::FetchSocketsResponse { request, sockets },
                );
            }
            ClusterMessage::ServerSideEmit {
                nsp,
                event,
                args,
                attachments,
                request,
            } => self.on_server_side_emit(from, &nsp, &event, &args, attachments, request),
            ClusterMessage::AllRooms { request, nsp } => {
                let rooms = self.sio.rooms(&nsp).iter().map(|r| r.to_string()).collect();
                self.publish(
                    Some(from),
                    ClusterMessage::AllRoomsResponse { request, rooms },
                );
            }
            answer => self.on_answer(from, answer, now),
        }
    }

    /// Runs the namespace's handler of a server-side event; with a request, its reply goes
    /// back to the sender (nothing when the handler fails or there is none, as the
    /// reference server, so the sender's request times out).
    pub(super) fn on_server_side_emit(
        &mut self,
        from: NodeId,
        nsp: &str,
        event: &str,
        args: &str,
        attachments: Vec<bytes::Bytes>,
        request: Option<RequestId>,
    ) {
        let Some(handler) = self
            .hub
            .registry
            .lookup(nsp)
            .and_then(|h| h.server_event(event))
        else {
            tracing::debug!(nsp, event, "no handler for a server-side event");
            return;
        };
        let payload = Payload::from_wire(args, attachments);
        let adapter = self.hub.cluster.adapter.clone();
        let event = event.to_owned();
        let ctl = self.ctl().cloned();
        let namespace = nsp.to_owned();
        (self.hub.spawn)(Box::pin(async move {
            let run = AssertUnwindSafe(async { handler(payload).await });
            let reply = match run.catch_unwind().await {
                Ok(reply) => reply,
                Err(payload) => {
                    if let Some(ctl) = ctl {
                        let report = HandlerPanic {
                            socket: None,
                            namespace,
                            event,
                            place: PanicPlace::ServerEvent,
                            message: panic_message(&*payload),
                        };
                        report_panic(&ctl, &Route::Machine, report);
                    }
                    return;
                }
            };
            let answer = match reply {
                Reply::Payload(p) => p,
                Reply::None => Payload::new(),
                Reply::Error(error) => {
                    tracing::debug!(event, error, "server-side event handler failed");
                    return;
                }
            };
            if let Some(request) = request {
                let (args, attachments) = answer.into_json();
                adapter.publish(
                    Some(from),
                    ClusterMessage::ServerSideEmitResponse {
                        request,
                        args,
                        attachments,
                    },
                );
            }
        }));
    }

    /// An answer to one of this node's requests.
    pub(super) fn on_answer(&mut self, from: NodeId, message: ClusterMessage, now: Instant) {
        let progress = self.requests.on_answer(&message);
        let Some(request) = message.answers() else {
            tracing::debug!(%from, ?message, "unknown cluster message");
            return;
        };
        if progress == Progress::Unknown {
            // Late (after the deadline), or for a request this node never made.
            return;
        }
        crate::metrics::cluster_answer(&message);
        let ctl = self.ctl().cloned();
        match (self.collectors.get_mut(&request), message) {
            (
                Some(Collector::Fetch { nsp, sockets, .. }),
                ClusterMessage::FetchSocketsResponse { sockets: infos, .. },
            ) => {
                if let Some(ctl) = ctl {
                    sockets.extend(
                        infos
                            .iter()
                            .filter_map(|i| RemoteSocket::remote(&ctl, from, nsp, i, now)),
                    );
                }
            }
            (
                Some(Collector::Rooms { rooms, .. }),
                ClusterMessage::AllRoomsResponse { rooms: r, .. },
            ) => {
                rooms.extend(r.into_iter().map(Room::from));
            }
            (
                Some(Collector::Emit { responses, .. }),
                ClusterMessage::ServerSideEmitResponse {
                    args, attachments, ..
                },
            ) => responses.push(Payload::from_wire(&args, attachments)),
            (
                Some(Collector::Acks(key)),
                ClusterMessage::BroadcastAck {
                    socket,
                    args,
                    attachments,
                    ..
                },
            ) => {
                self.hub.update_aggregate(*key, |agg| {
                    agg.responses.push(AckResponse {
                        socket,
                        payload: Payload::from_wire(&args, attachments),
                    });
                });
            }
            _ => {}
        }
        if progress == Progress::Complete {
            self.finish_request(request, 0, 0);
        }
    }

    /// Hands a request's result over: complete, or partial with `nodes_left` nodes that
    /// never answered and `acks_left` acknowledgements announced and never relayed.
    pub(super) fn finish_request(
        &mut self,
        request: RequestId,
        nodes_left: usize,
        acks_left: usize,
    ) {
        let Some(collector) = self.collectors.remove(&request) else {
            return;
        };
        if nodes_left > 0 {
            tracing::debug!(%request, nodes_left, acks_left, "cluster request timed out");
        }
        match collector {
            Collector::Fetch { sockets, tx, .. } => {
                let _ = tx.send(sockets);
            }
            Collector::Rooms { rooms, tx } => {
                let _ = tx.send(rooms.into_iter().collect());
            }
            Collector::Emit { responses, tx } => {
                let _ = tx.send(if nodes_left == 0 {
                    Ok(responses)
                } else {
                    Err(ServerSideEmitError::Timeout {
                        responses,
                        missing: nodes_left,
                    })
                });
            }
            Collector::Acks(key) => {
                self.hub.update_aggregate(key, |agg| {
                    agg.missing += nodes_left + acks_left;
                    agg.remote = None;
                });
            }
        }
    }

    /// The namespaces that exist now and are served by `family`'s handlers (the children of
    /// a dynamic namespace).
    pub(crate) fn family_members(&self, family: &Arc<NsHandlers>) -> Vec<Arc<str>> {
        self.sio
            .namespace_names()
            .into_iter()
            .filter(|name| {
                self.hub
                    .registry
                    .lookup(name)
                    .is_some_and(|h| Arc::ptr_eq(&h, family))
            })
            .map(Arc::from)
            .collect()
    }

    /// The sockets `opts` selects in `nsp`, with their rooms.
    pub(crate) fn fetch(
        &self,
        nsp: &str,
        opts: &BroadcastOptions,
    ) -> Vec<(Socket, Vec<volley_core::socketio::Room>)> {
        self.sio
            .select(nsp, opts)
            .into_iter()
            .filter_map(|id| {
                let socket = match self.local.sockets.get(&id) {
                    Some(entry) => entry.socket.clone(),
                    None => self.hub.owned_socket(id)?,
                };
                Some((socket, self.sio.rooms_of(id)))
            })
            .collect()
    }
}
