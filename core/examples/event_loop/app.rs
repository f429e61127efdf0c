//! The application: what the server does with each [`Event`], through the machine's
//! commands. It is the conformance suite's scenario application (the handlers of
//! `conformance/src/lib.rs`), written without the `volley` crate: no handlers, no futures,
//! one `match` on the event name.
//!
//! | event | what the server does |
//! | --- | --- |
//! | `echo` | emits `echo` back with the same arguments (binary included) |
//! | `echo-ack` | acknowledges with the same arguments |
//! | `whoami` | acknowledges with `{nsp, id, auth, token}` |
//! | `join` / `leave` | joins or leaves the room named by the first argument, acknowledges it |
//! | `rooms` | acknowledges with the socket's rooms, sorted |
//! | `broadcast` | `{to, except, event, self}` first: emits `event` with all the arguments to the sockets in `to` (everyone when empty) but those in `except`, the sender only with `self`; acknowledges `"sent"` |
//! | `disconnect-me` / `drop-transport` | disconnects the socket (`drop-transport`: the whole connection) |
//! | `ask` / `ask-short` | emits `question` with the same arguments and an ack id, waits (10 s / 300 ms), and acknowledges `ask` with the answer or `{"ackError": …}` |
//! | `burst` | `{n, event, binaryEvery}`: emits `event` `n` times with the index (and, every `binaryEvery`, `index % 256 + 1` bytes), acknowledges `n` |
//! | `seq` / `seq-report` | records an integer / acknowledges the record and clears it |
//! | `kick` (`/admin` only) | `{nsp, id, close}`: disconnects that socket, acknowledges whether it was found |
//!
//! `/secure` refuses a connect whose auth `token` is not `"abc"` (`unauthorized`, data
//! `{"code": 42}`); every socket leaving `/`, `/custom` or `/secure` is reported to `/admin`
//! as `left` with `{nsp, id, reason}`.

use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use volley_core::socketio::{AckFailure, AckId, AckToken, BroadcastOptions, Event, Room, Server};
use volley_core::{Bytes, SocketId};

/// The namespaces the server accepts connects to.
pub const NAMESPACES: [&str; 4] = ["/", "/admin", "/custom", "/secure"];

/// The namespaces whose departures are reported to `/admin`.
const REPORTED: [&str; 3] = ["/", "/custom", "/secure"];

/// How long `ask` and `ask-short` wait for the client's answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);
const ASK_SHORT_TIMEOUT: Duration = Duration::from_millis(300);

/// What the application keeps per connected socket.
struct SocketState {
    nsp: Arc<str>,
    /// The auth object of its connect.
    auth: Value,
    /// What `seq` recorded.
    seq: Vec<u64>,
}

/// The application's state: its sockets, and the `ask`s waiting for the client's answer.
#[derive(Default)]
pub struct App {
    sockets: HashMap<SocketId, SocketState>,
    /// Server → client acks in flight: the client's `ask` they will answer.
    asks: HashMap<(SocketId, AckId), Option<AckToken>>,
}

/// The arguments of an ack or event as JSON text.
fn args(values: &[Value]) -> String {
    Value::Array(values.to_vec()).to_string()
}

impl App {
    /// Reacts to one event of the machine. Commands fail only for sockets that left in the
    /// meantime or whose queue is full; such failures are ignored, as a handler would.
    pub fn on_event(&mut self, server: &mut Server, event: Event, now: Instant) {
        match event {
            Event::Connect(request) => {
                if request.accepted.is_some() {
                    return; // accepted by the machine itself (connection state recovery)
                }
                let auth: Value = serde_json::from_str(request.auth.as_str()).unwrap_or(json!({}));
                let by_auth = auth.get("token").and_then(Value::as_str) == Some("abc");
                let query = request.handshake.request.query_param("token");
                let by_query = query.as_deref() == Some("abc");
                if &*request.nsp == "/secure" && !(by_auth || by_query) {
                    let data = Some(r#"{"code":42}"#);
                    let _ = server.reject(request.id, "unauthorized", data, now);
                    return;
                }
                if let Ok(socket) = server.accept(request.id, now) {
                    let state = SocketState {
                        nsp: request.nsp.clone(),
                        auth,
                        seq: Vec::new(),
                    };
                    self.sockets.insert(socket, state);
                }
            }
            Event::Event {
                socket,
                nsp,
                name,
                args,
                attachments,
                ack,
            } => self.on_message(
                server,
                socket,
                &nsp,
                &name,
                args.as_str(),
                attachments,
                ack,
                now,
            ),
            Event::Ack {
                socket,
                id,
                args,
                attachments,
            } => {
                if let Some(Some(token)) = self.asks.remove(&(socket, id)) {
                    let _ = server.ack(token, args.as_str(), attachments, now);
                }
            }
            Event::AckFailed { socket, id, reason } => {
                if let Some(Some(token)) = self.asks.remove(&(socket, id)) {
                    let error = match reason {
                        AckFailure::Timeout => "operation has timed out",
                        AckFailure::Disconnected => "socket has been disconnected",
                    };
                    let answer = args(&[json!({ "ackError": error })]);
                    let _ = server.ack(token, &answer, vec![], now);
                }
            }
            Event::Disconnecting { .. } => {}
            Event::Disconnect {
                socket,
                nsp,
                reason,
            } => {
                self.sockets.remove(&socket);
                if REPORTED.contains(&&*nsp) {
                    let report =
                        json!({ "nsp": &*nsp, "id": socket.as_str(), "reason": reason.as_str() });
                    let opts = BroadcastOptions::default();
                    let _ =
                        server.broadcast("/admin", &opts, "left", &args(&[report]), vec![], now);
                }
            }
        }
    }

    /// One event from a client: `name` with `raw` arguments (JSON array text whose
    /// placeholders point into `attachments`).
    #[allow(clippy::too_many_arguments)]
    fn on_message(
        &mut self,
        server: &mut Server,
        socket: SocketId,
        nsp: &str,
        name: &str,
        raw: &str,
        attachments: Vec<Bytes>,
        ack: Option<AckToken>,
        now: Instant,
    ) {
        let values: Vec<Value> = serde_json::from_str(raw).unwrap_or_default();
        let first = values.first().cloned().unwrap_or(Value::Null);
        // The answer, if the event has one: JSON text of the ack's arguments.
        let answer: Option<String> = match name {
            // Passed through untouched: key order, numbers and binary stay as they came.
            "echo" => {
                let _ = server.emit(socket, "echo", raw, attachments, false, now);
                None
            }
            "echo-ack" => {
                if let Some(token) = ack {
                    let _ = server.ack(token, raw, attachments, now);
                }
                return;
            }
            "whoami" => {
                let state = self.sockets.get(&socket);
                let token = server
                    .handshake(socket)
                    .and_then(|h| h.request.query_param("token").map(|t| t.into_owned()));
                let me = json!({
                    "nsp": nsp,
                    "id": socket.as_str(),
                    "auth": state.map_or(json!({}), |s| s.auth.clone()),
                    "token": token,
                });
                Some(args(&[me]))
            }
            "join" | "leave" => {
                let Some(room) = first.as_str() else { return };
                let _ = match name {
                    "join" => server.join(socket, Room::new(room)),
                    _ => server.leave(socket, &Room::new(room)),
                };
                Some(args(&[json!(room)]))
            }
            "rooms" => {
                let mut rooms: Vec<String> = server
                    .rooms_of(socket)
                    .iter()
                    .map(|r| r.as_str().to_owned())
                    .collect();
                rooms.sort();
                Some(args(&[json!(rooms)]))
            }
            "broadcast" => {
                let rooms = |key: &str| -> Vec<Room> {
                    let list = first.get(key).and_then(Value::as_array);
                    list.into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .map(Room::new)
                        .collect()
                };
                let mut opts = BroadcastOptions {
                    rooms: rooms("to"),
                    except: rooms("except"),
                    ..BroadcastOptions::default()
                };
                if first.get("self") != Some(&Value::Bool(true)) {
                    opts.except.push(Room::from(socket));
                }
                let event = first.get("event").and_then(Value::as_str).unwrap_or("");
                let _ = server.broadcast(nsp, &opts, event, raw, attachments, now);
                Some(args(&[json!("sent")]))
            }
            "disconnect-me" | "drop-transport" => {
                let _ = server.disconnect(socket, name == "drop-transport", now);
                return;
            }
            "ask" | "ask-short" => {
                let timeout = if name == "ask" {
                    ASK_TIMEOUT
                } else {
                    ASK_SHORT_TIMEOUT
                };
                let asked =
                    server.emit_with_ack(socket, "question", raw, attachments, Some(timeout), now);
                if let Ok(id) = asked {
                    self.asks.insert((socket, id), ack);
                }
                return;
            }
            "burst" => {
                let n = first.get("n").and_then(Value::as_u64).unwrap_or(0);
                let every = first
                    .get("binaryEvery")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                let event = first.get("event").and_then(Value::as_str).unwrap_or("");
                for i in 0..n {
                    if every > 0 && i % every == 0 {
                        let bytes = vec![(i % 256) as u8; (i % 256) as usize + 1];
                        let text = format!(r#"[{i},{{"_placeholder":true,"num":0}}]"#);
                        let _ = server.emit(socket, event, &text, vec![bytes.into()], false, now);
                    } else {
                        let _ = server.emit(socket, event, &format!("[{i}]"), vec![], false, now);
                    }
                }
                Some(args(&[json!(n)]))
            }
            "seq" => {
                if let (Some(n), Some(state)) = (first.as_u64(), self.sockets.get_mut(&socket)) {
                    state.seq.push(n);
                }
                None
            }
            "seq-report" => {
                let log = self
                    .sockets
                    .get_mut(&socket)
                    .map(|s| std::mem::take(&mut s.seq))
                    .unwrap_or_default();
                Some(args(&[json!(log)]))
            }
            "kick" if nsp == "/admin" => {
                let target_nsp = first.get("nsp").and_then(Value::as_str).unwrap_or("");
                let target_id = first.get("id").and_then(Value::as_str).unwrap_or("");
                let close = first.get("close") == Some(&Value::Bool(true));
                let target = self
                    .sockets
                    .iter()
                    .find(|(id, s)| &*s.nsp == target_nsp && id.as_str() == target_id)
                    .map(|(id, _)| *id);
                if let Some(target) = target {
                    let _ = server.disconnect(target, close, now);
                }
                Some(args(&[json!(target.is_some())]))
            }
            _ => None,
        };
        if let (Some(answer), Some(token)) = (answer, ack) {
            let _ = server.ack(token, &answer, vec![], now);
        }
    }
}
