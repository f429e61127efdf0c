//! Random client lives against the Socket.IO machine and a small model of who is connected
//! where, in which rooms, and which acks are pending: after every step the machine agrees
//! with the model, a broadcast reaches exactly the sockets the model selects, and at the end
//! nothing is left.

mod sio_common;

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use sio_common::{C, Kind, SioPair};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use volley_core::ids::SocketId;
use volley_core::socketio::{AckFailure, BroadcastOptions, Event, Room};

const SLOTS: usize = 4;
/// `/` always exists, `/a` is declared, `/b` is dynamic with cleanup.
const NSPS: [&str; 3] = ["/", "/a", "/b"];
const ROOMS: [&str; 3] = ["r0", "r1", "r2"];

#[derive(Debug, Clone)]
enum Action {
    Open {
        slot: usize,
        eio3: bool,
        ws: bool,
    },
    Connect {
        slot: usize,
        nsp: usize,
    },
    Join {
        slot: usize,
        nsp: usize,
        room: usize,
    },
    Leave {
        slot: usize,
        nsp: usize,
        room: usize,
    },
    Emit {
        slot: usize,
        nsp: usize,
    },
    EmitWithAck {
        slot: usize,
        nsp: usize,
        timeout: Option<u64>,
    },
    Answer {
        slot: usize,
        nsp: usize,
    },
    ClientLeave {
        slot: usize,
        nsp: usize,
    },
    ServerDisconnect {
        slot: usize,
        nsp: usize,
        close: bool,
    },
    Drop {
        slot: usize,
        error: bool,
    },
    Advance {
        ms: u64,
    },
    Broadcast {
        nsp: usize,
        rooms: Vec<usize>,
        except: Vec<usize>,
        /// A slot whose own room is added to `rooms` (false) or `except` (true).
        own: Option<(usize, bool)>,
        volatile: bool,
    },
}

fn action() -> impl Strategy<Value = Action> {
    let slot = 0..SLOTS;
    let nsp = 0..NSPS.len();
    let room = 0..ROOMS.len();
    prop_oneof![
        2 => (slot.clone(), any::<bool>(), any::<bool>())
            .prop_map(|(slot, eio3, ws)| Action::Open { slot, eio3, ws }),
        4 => (slot.clone(), nsp.clone()).prop_map(|(slot, nsp)| Action::Connect { slot, nsp }),
        4 => (slot.clone(), nsp.clone(), room.clone())
            .prop_map(|(slot, nsp, room)| Action::Join { slot, nsp, room }),
        2 => (slot.clone(), nsp.clone(), room)
            .prop_map(|(slot, nsp, room)| Action::Leave { slot, nsp, room }),
        2 => (slot.clone(), nsp.clone()).prop_map(|(slot, nsp)| Action::Emit { slot, nsp }),
        2 => (
            slot.clone(),
            nsp.clone(),
            prop_oneof![Just(None), Just(Some(100)), Just(Some(500))]
        )
            .prop_map(|(slot, nsp, timeout)| Action::EmitWithAck { slot, nsp, timeout }),
        2 => (slot.clone(), nsp.clone()).prop_map(|(slot, nsp)| Action::Answer { slot, nsp }),
        1 => (slot.clone(), nsp.clone())
            .prop_map(|(slot, nsp)| Action::ClientLeave { slot, nsp }),
        1 => (slot.clone(), nsp.clone(), any::<bool>())
            .prop_map(|(slot, nsp, close)| Action::ServerDisconnect { slot, nsp, close }),
        1 => (slot.clone(), any::<bool>()).prop_map(|(slot, error)| Action::Drop { slot, error }),
        2 => prop_oneof![Just(50u64), Just(300), Just(1000)].prop_map(|ms| Action::Advance { ms }),
        5 => (
            0..NSPS.len(),
            proptest::collection::vec(0..ROOMS.len(), 0..3),
            proptest::collection::vec(0..ROOMS.len(), 0..2),
            proptest::option::of((slot, any::<bool>())),
            proptest::bool::weighted(0.2),
        )
            .prop_map(|(nsp, rooms, except, own, volatile)| Action::Broadcast {
                nsp,
                rooms,
                except,
                own,
                volatile
            }),
    ]
}

struct ClientModel {
    c: C,
    sockets: BTreeMap<usize, SocketId>,
    /// The connect timeout, armed until the first join.
    deadline: Option<Instant>,
}

#[derive(Default)]
struct Model {
    slots: [Option<ClientModel>; SLOTS],
    /// Rooms besides the socket's own.
    rooms: BTreeMap<SocketId, BTreeSet<&'static str>>,
    /// Pending server-to-client acks and their deadlines.
    acks: BTreeMap<(SocketId, u64), Option<Instant>>,
    /// What the machine must report in this step.
    left: BTreeSet<SocketId>,
    timed_out: BTreeSet<(SocketId, u64)>,
}

impl Model {
    fn socket(&self, slot: usize, nsp: usize) -> Option<SocketId> {
        self.slots[slot].as_ref()?.sockets.get(&nsp).copied()
    }

    fn remove_socket(&mut self, s: SocketId) {
        self.rooms.remove(&s);
        self.acks.retain(|(socket, _), _| *socket != s);
        self.left.insert(s);
    }

    /// The client's whole connection ends.
    fn close(&mut self, slot: usize) {
        if let Some(client) = self.slots[slot].take() {
            for s in client.sockets.into_values() {
                self.remove_socket(s);
            }
        }
    }

    fn leave(&mut self, slot: usize, nsp: usize) {
        if let Some(s) = self.slots[slot]
            .as_mut()
            .and_then(|c| c.sockets.remove(&nsp))
        {
            self.remove_socket(s);
        }
    }

    fn in_any(&self, s: SocketId, rooms: &[String]) -> bool {
        rooms.iter().any(|r| {
            r == s.as_str()
                || self
                    .rooms
                    .get(&s)
                    .is_some_and(|set| set.contains(r.as_str()))
        })
    }

    fn socket_count(&self) -> usize {
        self.slots.iter().flatten().map(|c| c.sockets.len()).sum()
    }
}

fn run(actions: Vec<Action>) -> Result<(), TestCaseError> {
    let mut p = SioPair::new();
    p.server.add_namespace("/a");
    p.server.add_dynamic_namespace(|n| n == "/b", true);
    let mut m = Model::default();
    let mut broadcasts = 0;
    for action in actions {
        m.left.clear();
        m.timed_out.clear();
        match action {
            Action::Open { slot, eio3, ws } => {
                if m.slots[slot].is_some() {
                    continue;
                }
                let kind = if ws { Kind::Ws } else { Kind::Polling };
                let c = p.open(if eio3 { 3 } else { 4 }, kind);
                let mut client = ClientModel {
                    c,
                    sockets: BTreeMap::new(),
                    deadline: Some(p.now + Duration::from_secs(1)),
                };
                if eio3 {
                    client.sockets.insert(0, p.socket_of(c, "/").unwrap());
                    client.deadline = None;
                }
                m.slots[slot] = Some(client);
            }
            Action::Connect { slot, nsp } => {
                let Some(client) = &mut m.slots[slot] else {
                    continue;
                };
                let c = client.c;
                if let std::collections::btree_map::Entry::Vacant(entry) = client.sockets.entry(nsp)
                {
                    entry.insert(p.join(c, NSPS[nsp], None));
                    client.deadline = None;
                } else {
                    // A second CONNECT closes the connection.
                    p.send(c, &format!("0{}", prefix(nsp)));
                    m.close(slot);
                }
            }
            Action::Join { slot, nsp, room } => {
                if let Some(s) = m.socket(slot, nsp) {
                    p.server.join(s, Room::from(ROOMS[room])).unwrap();
                    m.rooms.entry(s).or_default().insert(ROOMS[room]);
                }
            }
            Action::Leave { slot, nsp, room } => {
                if let Some(s) = m.socket(slot, nsp) {
                    p.server.leave(s, &Room::from(ROOMS[room])).unwrap();
                    if let Some(set) = m.rooms.get_mut(&s) {
                        set.remove(ROOMS[room]);
                    }
                }
            }
            Action::Emit { slot, nsp } => {
                let Some(client) = &m.slots[slot] else {
                    continue;
                };
                p.send(client.c, &format!("2{}[\"e\",{slot}]", prefix(nsp)));
                match m.socket(slot, nsp) {
                    Some(s) => {
                        let events = p.take_events();
                        prop_assert_eq!(events.len(), 1);
                        let ok = matches!(
                            &events[0],
                            Event::Event { socket, name, .. } if *socket == s && name == "e"
                        );
                        prop_assert!(ok, "an event from the socket");
                    }
                    None => m.close(slot),
                }
            }
            Action::EmitWithAck { slot, nsp, timeout } => {
                let Some(s) = m.socket(slot, nsp) else {
                    continue;
                };
                let timeout = timeout.map(Duration::from_millis);
                let id = p
                    .server
                    .emit_with_ack(s, "q", "[]", vec![], timeout, p.now)
                    .unwrap();
                p.drive();
                m.acks.insert((s, id.0), timeout.map(|t| p.now + t));
            }
            Action::Answer { slot, nsp } => {
                let Some(client) = &m.slots[slot] else {
                    continue;
                };
                let c = client.c;
                let pending = m
                    .socket(slot, nsp)
                    .and_then(|s| m.acks.keys().find(|(socket, _)| *socket == s).copied());
                let id = pending.map_or(999_999, |(_, id)| id);
                p.send(c, &format!("3{}{id}[\"a\"]", prefix(nsp)));
                match (m.socket(slot, nsp), pending) {
                    (Some(s), Some(key)) => {
                        m.acks.remove(&key);
                        let events = p.take_events();
                        prop_assert_eq!(events.len(), 1);
                        let ok = matches!(
                            &events[0],
                            Event::Ack { socket, id: got, .. } if *socket == s && got.0 == id
                        );
                        prop_assert!(ok, "the ack of the socket");
                    }
                    (Some(_), None) => {}
                    (None, _) => m.close(slot),
                }
            }
            Action::ClientLeave { slot, nsp } => {
                let Some(client) = &m.slots[slot] else {
                    continue;
                };
                p.send(client.c, &format!("1{}", prefix(nsp)));
                if m.socket(slot, nsp).is_some() {
                    m.leave(slot, nsp);
                } else {
                    m.close(slot);
                }
            }
            Action::ServerDisconnect { slot, nsp, close } => {
                let Some(s) = m.socket(slot, nsp) else {
                    continue;
                };
                p.server.disconnect(s, close, p.now).unwrap();
                p.drive();
                if close {
                    m.close(slot);
                } else {
                    m.leave(slot, nsp);
                }
            }
            Action::Drop { slot, error } => {
                let Some(client) = &m.slots[slot] else {
                    continue;
                };
                p.drop_transport(client.c, error);
                m.close(slot);
            }
            Action::Advance { ms } => {
                let until = p.now + Duration::from_millis(ms);
                p.advance(Duration::from_millis(ms));
                for slot in 0..SLOTS {
                    if m.slots[slot]
                        .as_ref()
                        .and_then(|c| c.deadline)
                        .is_some_and(|t| t <= until)
                    {
                        m.close(slot);
                    }
                }
                let due: Vec<(SocketId, u64)> = m
                    .acks
                    .iter()
                    .filter(|(_, t)| t.is_some_and(|t| t <= until))
                    .map(|(k, _)| *k)
                    .collect();
                for key in due {
                    m.acks.remove(&key);
                    m.timed_out.insert(key);
                }
            }
            Action::Broadcast {
                nsp,
                rooms,
                except,
                own,
                volatile,
            } => {
                let mut opts = BroadcastOptions {
                    rooms: rooms.iter().map(|r| Room::from(ROOMS[*r])).collect(),
                    except: except.iter().map(|r| Room::from(ROOMS[*r])).collect(),
                    volatile,
                    ..BroadcastOptions::default()
                };
                if let Some((slot, is_except)) = own {
                    // Any socket of that client names a room (maybe of another namespace).
                    if let Some(s) = m.slots[slot]
                        .as_ref()
                        .and_then(|c| c.sockets.values().next().copied())
                    {
                        if is_except {
                            opts.except.push(Room::from(s));
                        } else {
                            opts.rooms.push(Room::from(s));
                        }
                    }
                }
                let names =
                    |rs: &[Room]| rs.iter().map(|r| r.as_str().to_owned()).collect::<Vec<_>>();
                let (want_rooms, want_except) = (names(&opts.rooms), names(&opts.except));
                let expected: BTreeSet<SocketId> = m
                    .slots
                    .iter()
                    .flatten()
                    .filter_map(|c| c.sockets.get(&nsp).copied())
                    .filter(|s| want_rooms.is_empty() || m.in_any(*s, &want_rooms))
                    .filter(|s| !m.in_any(*s, &want_except))
                    .collect();
                let selected: BTreeSet<SocketId> =
                    p.server.select(NSPS[nsp], &opts).into_iter().collect();
                if !p.server.namespaces().any(|n| n == NSPS[nsp]) {
                    prop_assert!(expected.is_empty());
                    continue;
                }
                prop_assert_eq!(&selected, &expected);
                // Clients flush what they hold, so a volatile send finds them writable only
                // where the transport can take it now.
                let writable: BTreeSet<SocketId> = expected
                    .iter()
                    .copied()
                    .filter(|s| p.server.is_writable(*s))
                    .collect();
                broadcasts += 1;
                let name = format!("b{broadcasts}");
                let n = p
                    .server
                    .broadcast(NSPS[nsp], &opts, &name, "[]", vec![], p.now)
                    .unwrap();
                p.drive();
                let reached = if volatile { &writable } else { &expected };
                prop_assert_eq!(n, reached.len());
                let wire = format!("42{}[\"{name}\"]", prefix(nsp));
                for client in m.slots.iter().flatten() {
                    let got = p.recv_text(client.c).iter().filter(|f| **f == wire).count();
                    let want = client
                        .sockets
                        .get(&nsp)
                        .is_some_and(|s| reached.contains(s));
                    prop_assert_eq!(got, usize::from(want), "{}", wire);
                }
            }
        }
        check(&mut p, &m)?;
    }
    // Everyone leaves; every timer runs out.
    for slot in 0..SLOTS {
        if let Some(client) = &m.slots[slot] {
            p.send_raw(client.c, "1");
        }
    }
    p.advance(Duration::from_secs(2));
    p.assert_empty();
    prop_assert!(!p.server.namespaces().any(|n| n == "/b"));
    Ok(())
}

fn prefix(nsp: usize) -> String {
    if nsp == 0 {
        String::new()
    } else {
        format!("{},", NSPS[nsp])
    }
}

/// The machine agrees with the model, and reported exactly the departures and timeouts the
/// model expects in this step.
fn check(p: &mut SioPair, m: &Model) -> Result<(), TestCaseError> {
    let events = p.take_events();
    let left: BTreeSet<SocketId> = events
        .iter()
        .filter_map(|e| match e {
            Event::Disconnect { socket, .. } => Some(*socket),
            _ => None,
        })
        .collect();
    prop_assert_eq!(&left, &m.left);
    let timed_out: BTreeSet<(SocketId, u64)> = events
        .iter()
        .filter_map(|e| match e {
            Event::AckFailed {
                socket,
                id,
                reason: AckFailure::Timeout,
            } => Some((*socket, id.0)),
            _ => None,
        })
        .collect();
    prop_assert_eq!(&timed_out, &m.timed_out);
    prop_assert_eq!(p.server.socket_count(), m.socket_count());
    prop_assert_eq!(p.server.pending_ack_count(), m.acks.len());
    prop_assert_eq!(p.server.client_count(), m.slots.iter().flatten().count());
    prop_assert_eq!(p.server.pending_connect_count(), 0);
    for client in m.slots.iter().flatten() {
        for (nsp, s) in &client.sockets {
            prop_assert!(p.server.contains(*s));
            prop_assert_eq!(p.server.namespace_of(*s).map(|n| &**n), Some(NSPS[*nsp]));
            let mut want: Vec<String> = m
                .rooms
                .get(s)
                .into_iter()
                .flatten()
                .map(|r| (*r).to_owned())
                .collect();
            want.push(s.as_str().to_owned());
            want.sort();
            let got: Vec<String> = p
                .server
                .rooms_of(*s)
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect();
            prop_assert_eq!(got, want);
        }
    }
    let b_alive = m.slots.iter().flatten().any(|c| c.sockets.contains_key(&2));
    prop_assert_eq!(p.server.namespaces().any(|n| n == "/b"), b_alive);
    for client in m.slots.iter().flatten() {
        p.recv(client.c);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        rng_seed: RngSeed::Fixed(0x5eed_50c1),
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_machine_follows_the_model(actions in proptest::collection::vec(action(), 1..60)) {
        run(actions)?;
    }
}
