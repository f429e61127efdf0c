//! Connection state recovery (Socket.IO 4.6), in memory: the recent packets sent with an
//! offset, and the sessions of sockets that left for a reason the client may recover from.
//!
//! The rules follow the reference's `SessionAwareAdapter`: an EVENT without ack and not
//! volatile (broadcast or single emit) gets an offset as its last argument and is kept for
//! `max_disconnection_duration`; a socket that leaves for a recoverable reason leaves a
//! session (id, private id, rooms, application data) for as long; a CONNECT whose auth
//! carries `{"pid","offset"}` of such a session, with `offset` still kept, gets the socket
//! back and the packets after `offset` that its rooms select, in order.

use super::packet::{Packet, SioProtocol};
use super::rooms::Room;
use crate::cluster::ClusterMessage;
use crate::ids::SocketId;
use crate::utf8::Utf8Bytes;
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Connection state recovery options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// How long a disconnected socket's session, and every packet sent with an offset, is
    /// kept. Default 2 minutes.
    pub max_disconnection_duration: Duration,
    /// Whether a recovered connect skips the connection middleware: the machine then
    /// accepts it itself. Default `true`.
    pub skip_middlewares: bool,
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            max_disconnection_duration: Duration::from_secs(120),
            skip_middlewares: true,
        }
    }
}

/// One packet sent with an offset, with the selection it was sent to.
struct Stored {
    counter: u64,
    sent: Instant,
    nsp: Arc<str>,
    rooms: Vec<Room>,
    except: Vec<Room>,
    text: Utf8Bytes,
    attachments: Vec<Bytes>,
}

/// What a socket left behind.
struct Session {
    socket: SocketId,
    nsp: Arc<str>,
    rooms: Vec<Room>,
    data: Option<Utf8Bytes>,
    expires: Instant,
}

/// A session taken back by a reconnecting client.
#[derive(Debug)]
pub(crate) struct Restored {
    pub(crate) socket: SocketId,
    pub(crate) pid: Arc<str>,
    pub(crate) rooms: Vec<Room>,
    pub(crate) data: Option<Utf8Bytes>,
    /// Encoded EVENT packets (text, attachments), in the order they were sent.
    pub(crate) missed: Vec<(Utf8Bytes, Vec<Bytes>)>,
    /// In-memory recovery: the counter of the next packet to be kept when `missed` was
    /// collected; packets kept from then until the socket opens are its too.
    pub(crate) next: Option<u64>,
}

/// The recovery state of one server.
pub(crate) struct Store {
    pub(crate) config: Recovery,
    /// Offsets and sessions are kept by the caller (a cluster adapter), not here.
    pub(crate) shared: bool,
    prefix: String,
    next: u64,
    packets: VecDeque<Stored>,
    sessions: HashMap<Arc<str>, Session>,
    by_socket: HashMap<SocketId, Arc<str>>,
    expiries: BTreeSet<(Instant, Arc<str>)>,
}

impl Store {
    /// `prefix` makes this server's offsets its own (drawn from the server's seed).
    pub(crate) fn new(config: Recovery, prefix: String) -> Self {
        Store {
            config,
            shared: false,
            prefix,
            next: 0,
            packets: VecDeque::new(),
            sessions: HashMap::new(),
            by_socket: HashMap::new(),
            expiries: BTreeSet::new(),
        }
    }

    pub(crate) fn session_count(&self) -> usize {
        self.sessions.len()
    }

    pub(crate) fn packet_count(&self) -> usize {
        self.packets.len()
    }

    /// The next offset: `<prefix>.<counter in hex>`, increasing.
    pub(crate) fn next_offset(&mut self) -> (u64, String) {
        let counter = self.next;
        self.next += 1;
        (counter, format!("{}.{counter:08x}", self.prefix))
    }

    /// Keeps a packet sent under offset `counter` (from [`Store::next_offset`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn keep(
        &mut self,
        counter: u64,
        nsp: Arc<str>,
        rooms: Vec<Room>,
        except: Vec<Room>,
        text: Utf8Bytes,
        attachments: Vec<Bytes>,
        now: Instant,
    ) {
        self.packets.push_back(Stored {
            counter,
            sent: now,
            nsp,
            rooms,
            except,
            text,
            attachments,
        });
    }

    /// Keeps what `socket` leaves behind, until `now` plus the window.
    pub(crate) fn persist(
        &mut self,
        socket: SocketId,
        pid: Arc<str>,
        nsp: Arc<str>,
        rooms: Vec<Room>,
        now: Instant,
    ) {
        let expires = now + self.config.max_disconnection_duration;
        if let Some(old) = self.sessions.remove(&pid) {
            self.expiries.remove(&(old.expires, pid.clone()));
            self.by_socket.remove(&old.socket);
        }
        self.expiries.insert((expires, pid.clone()));
        self.by_socket.insert(socket, pid.clone());
        self.sessions.insert(
            pid,
            Session {
                socket,
                nsp,
                rooms,
                data: None,
                expires,
            },
        );
    }

    /// The namespace of the session `socket` left, if it left one.
    pub(crate) fn session_nsp(&self, socket: SocketId) -> Option<Arc<str>> {
        let pid = self.by_socket.get(&socket)?;
        self.sessions.get(pid).map(|s| s.nsp.clone())
    }

    /// Attaches the application's data to the session `socket` left.
    pub(crate) fn set_data(&mut self, socket: SocketId, data: Utf8Bytes) -> bool {
        let Some(pid) = self.by_socket.get(&socket) else {
            return false;
        };
        match self.sessions.get_mut(pid) {
            Some(s) => {
                s.data = Some(data);
                true
            }
            None => false,
        }
    }

    /// Takes the session `socket` left out of the store, for a store of the caller's.
    pub(crate) fn take_session(&mut self, socket: SocketId) -> Option<SessionState> {
        let pid = self.by_socket.remove(&socket)?;
        let s = self.sessions.remove(&pid)?;
        self.expiries.remove(&(s.expires, pid.clone()));
        Some(SessionState {
            socket: s.socket,
            pid: pid.to_string(),
            nsp: Some(s.nsp.to_string()),
            rooms: s.rooms,
            data: s.data,
        })
    }

    /// Takes the session named by `auth` (`{"pid","offset"}`) back for namespace `nsp`, with
    /// the packets after `offset` its rooms select. `None` (and the session, if any, stays)
    /// when the session is unknown or expired, or `offset` is not kept.
    pub(crate) fn restore(&mut self, nsp: &str, auth: &str, now: Instant) -> Option<Restored> {
        let auth: serde_json::Value = serde_json::from_str(auth).ok()?;
        let pid = auth.get("pid")?.as_str()?;
        let offset = auth.get("offset")?.as_str()?;
        let session = self.sessions.get(pid)?;
        if &*session.nsp != nsp || session.expires <= now {
            return None;
        }
        let counter = offset
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix('.')?;
        let counter = u64::from_str_radix(counter, 16).ok()?;
        let first = self.packets.front()?.counter;
        if counter < first || counter >= self.next {
            return None;
        }
        let index = usize::try_from(counter - first).ok()?;
        let missed = self
            .packets
            .iter()
            .skip(index + 1)
            .filter(|p| &*p.nsp == nsp && selects(&session.rooms, &p.rooms, &p.except))
            .map(|p| (p.text.clone(), p.attachments.clone()))
            .collect();
        let (pid, session) = self.sessions.remove_entry(pid)?;
        self.expiries.remove(&(session.expires, pid.clone()));
        self.by_socket.remove(&session.socket);
        Some(Restored {
            socket: session.socket,
            pid,
            rooms: session.rooms,
            data: session.data,
            missed,
            next: Some(self.next),
        })
    }

    /// The packets of `nsp` kept from counter `from` on that select a socket in `rooms`, in
    /// order: what a recovering socket missed while its connect request waited.
    pub(crate) fn kept_since(
        &self,
        from: u64,
        nsp: &str,
        rooms: &[Room],
    ) -> Vec<(Utf8Bytes, Vec<Bytes>)> {
        self.packets
            .iter()
            .filter(|p| p.counter >= from)
            .filter(|p| &*p.nsp == nsp && selects(rooms, &p.rooms, &p.except))
            .map(|p| (p.text.clone(), p.attachments.clone()))
            .collect()
    }

    /// Drops the sessions and packets whose window ended by `now`.
    pub(crate) fn purge(&mut self, now: Instant) {
        let window = self.config.max_disconnection_duration;
        while let Some(p) = self.packets.front() {
            if p.sent + window > now {
                break;
            }
            self.packets.pop_front();
        }
        while let Some((t, pid)) = self.expiries.first().cloned() {
            if t > now {
                break;
            }
            self.expiries.remove(&(t, pid.clone()));
            if let Some(s) = self.sessions.remove(&pid) {
                self.by_socket.remove(&s.socket);
            }
        }
    }

    /// When [`Store::purge`] has something to do next.
    pub(crate) fn next_purge(&self) -> Option<Instant> {
        let packet = self
            .packets
            .front()
            .map(|p| p.sent + self.config.max_disconnection_duration);
        let session = self.expiries.first().map(|(t, _)| *t);
        match (packet, session) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Whether a packet sent to `rooms` except `except` reaches a socket in `session` rooms, as
/// the reference's `shouldIncludePacket` decides.
pub(crate) fn selects(session: &[Room], rooms: &[Room], except: &[Room]) -> bool {
    let included = rooms.is_empty() || session.iter().any(|r| rooms.contains(r));
    let excluded = session.iter().any(|r| except.contains(r));
    included && !excluded
}

/// `data` (an EVENT's JSON array text) with `offset` appended as its last element.
pub(crate) fn append_offset(data: &str, offset: &str) -> Utf8Bytes {
    let body = data.trim_end();
    let body = body.strip_suffix(']').unwrap_or(body);
    let mut out = String::with_capacity(body.len() + offset.len() + 4);
    out.push_str(body);
    out.push(',');
    super::packet::write_json_string(&mut out, offset);
    out.push(']');
    Utf8Bytes::from(out)
}

/// A session a socket left behind, as it travels to and from a store outside the machine
/// (a cluster adapter's; see [`Server::set_shared_recovery`](super::Server::set_shared_recovery)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    /// The socket's id, which a recovered socket gets back.
    pub socket: SocketId,
    /// The private id the client presents to recover.
    pub pid: String,
    /// The namespace the socket was in; `None` when the store does not say (the reference
    /// adapters keep no namespace), in which case any namespace may take the session.
    pub nsp: Option<String>,
    /// The socket's rooms (its own id's included).
    pub rooms: Vec<Room>,
    /// The application's data (opaque text to the machine; JSON in the API layer).
    pub data: Option<Utf8Bytes>,
}

/// A message kept by a store outside the machine under `offset` (a stream entry's id): the
/// candidates for replay to a recovering socket.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    /// The offset it was kept under; replayed packets carry it as their last argument.
    pub offset: String,
    /// The message. Only [`ClusterMessage::Broadcast`]s without acknowledgement, not
    /// volatile, of the socket's namespace and selecting its rooms are replayed.
    pub message: ClusterMessage,
}

/// The `pid` and `offset` strings of a CONNECT's auth object, when it has both (a client
/// asking to recover its session).
pub fn recovery_auth(auth: &str) -> Option<(String, String)> {
    let auth: serde_json::Value = serde_json::from_str(auth).ok()?;
    let pid = auth.get("pid")?.as_str()?;
    let offset = auth.get("offset")?.as_str()?;
    Some((pid.to_owned(), offset.to_owned()))
}

/// Which of `stored` a socket of `session` recovering into namespace `nsp` missed: the
/// encoded EVENT packets, offsets appended, in order.
pub(crate) fn replay(
    nsp: &str,
    session: &SessionState,
    stored: Vec<StoredMessage>,
) -> Vec<(Utf8Bytes, Vec<Bytes>)> {
    stored
        .into_iter()
        .filter_map(|m| match m.message {
            ClusterMessage::Broadcast {
                nsp: n,
                opts,
                event,
                args,
                attachments,
                ack: None,
                ..
            } if n == nsp
                && !opts.volatile
                && selects(&session.rooms, &opts.rooms, &opts.except) =>
            {
                let mut packet = Packet::event(nsp, &event, &args, None, attachments);
                let data = packet.data.as_deref().map(|d| append_offset(d, &m.offset));
                packet.data = data;
                Some(packet.encode(SioProtocol::V5))
            }
            _ => None,
        })
        .collect()
}
