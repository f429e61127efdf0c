// The chat application, shared by the tokio and smol examples: rooms, nicknames, a typing
// notice, the user list of each room, and acknowledgements for delivery.

use serde::{Deserialize, Serialize};
use volley::runtime::Runtime;
use volley::{ConnectCtx, ConnectError, Data, Io, Next, Socket};

/// The page served at `/`.
pub const PAGE: &str = include_str!("index.html");
/// A small Socket.IO client for the page, used when the official bundle is not installed.
pub const CLIENT: &str = include_str!("client.js");

#[derive(Clone, Debug)]
struct Nick(String);

#[derive(Clone, Debug)]
struct CurrentRoom(String);

#[derive(Serialize)]
struct ChatMessage<'a> {
    nick: &'a str,
    room: &'a str,
    text: &'a str,
}

#[derive(Deserialize)]
struct Auth {
    nick: Option<String>,
}

fn nick_of(s: &Socket) -> String {
    s.data()
        .get::<Nick>()
        .map(|n| n.0)
        .unwrap_or_else(|| "anonymous".to_owned())
}

fn room_of(s: &Socket) -> String {
    s.data()
        .get::<CurrentRoom>()
        .map(|r| r.0)
        .unwrap_or_else(|| "lobby".to_owned())
}

fn clean(text: &str, max: usize) -> String {
    text.trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(max)
        .collect()
}

/// Sends everyone in `room` its current user list.
async fn announce_users<R: Runtime>(io: &Io<R>, room: &str) {
    let sockets = io.to(room).fetch_sockets().await;
    let mut users: Vec<String> = sockets
        .iter()
        .filter_map(|s| s.data().get::<Nick>().map(|n| n.0))
        .collect();
    users.sort();
    let _ = io.to(room).emit("users", &users);
}

/// Registers the chat handlers on `/`.
pub fn install<R: Runtime>(io: &Io<R>) {
    let ns = io.ns("/");
    ns.use_connect(|ctx: ConnectCtx, next: Next| async move {
        let nick = ctx
            .auth_as::<Auth>()
            .ok()
            .and_then(|a| a.nick)
            .map(|n| clean(&n, 24))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ConnectError::new("a nickname is required"))?;
        ctx.data().insert(Nick(nick));
        ctx.data().insert(CurrentRoom("lobby".to_owned()));
        next.run(ctx).await
    });

    let io1 = io.clone();
    ns.on_connection(move |s: Socket| {
        let io = io1.clone();
        async move {
            s.join("lobby");
            let _ = s
                .to("lobby")
                .emit("notice", &format!("{} joined lobby", nick_of(&s)));
            announce_users(&io, "lobby").await;
        }
    });

    let io2 = io.clone();
    ns.on("join", move |s: Socket, Data(room): Data<String>| {
        let io = io2.clone();
        async move {
            let room = clean(&room, 32);
            if room.is_empty() {
                return Err("a room name is required".to_owned());
            }
            let old = room_of(&s);
            if old != room {
                s.leave(old.as_str());
                let _ = s
                    .to(old.as_str())
                    .emit("notice", &format!("{} left", nick_of(&s)));
                s.join(room.as_str());
                s.data().insert(CurrentRoom(room.clone()));
                let _ = s
                    .to(room.as_str())
                    .emit("notice", &format!("{} joined {room}", nick_of(&s)));
                announce_users(&io, &old).await;
                announce_users(&io, &room).await;
            }
            Ok(room)
        }
    });

    ns.on(
        "message",
        |s: Socket, Data(text): Data<String>| async move {
            let text = clean(&text, 2000);
            if text.is_empty() {
                return false;
            }
            let (nick, room) = (nick_of(&s), room_of(&s));
            let msg = ChatMessage {
                nick: &nick,
                room: &room,
                text: &text,
            };
            // Everyone else in the room gets it; the sender learns delivery from the ack.
            let _ = s.to(room.as_str()).emit("message", &msg);
            true
        },
    );

    ns.on("typing", |s: Socket, Data(typing): Data<bool>| async move {
        let _ = s.to(room_of(&s).as_str()).volatile().emit(
            "typing",
            &serde_json::json!({ "nick": nick_of(&s), "typing": typing }),
        );
    });

    let io3 = io.clone();
    ns.on_disconnect(move |s: Socket, _reason| {
        let io = io3.clone();
        async move {
            let room = room_of(&s);
            let _ = io
                .to(room.as_str())
                .emit("notice", &format!("{} left", nick_of(&s)));
            announce_users(&io, &room).await;
        }
    });
}

/// Answers the page and the client script; everything else outside `/socket.io/` is 404.
/// The official client bundle is served when installed (the conformance suite's
/// `node_modules`, or the file named by `VOLLEY_CLIENT_JS`), the small built-in one otherwise.
pub fn site()
-> impl Fn(&volley_core::http::RequestHead) -> volley_core::http::Response + Send + Sync + 'static {
    use volley_core::http::Response;
    let official = std::env::var("VOLLEY_CLIENT_JS")
        .ok()
        .or_else(|| {
            Some(format!(
                "{}/../conformance/node_modules/socket.io-client/dist/socket.io.min.js",
                env!("CARGO_MANIFEST_DIR")
            ))
        })
        .and_then(|path| std::fs::read_to_string(path).ok());
    let script = official.unwrap_or_else(|| CLIENT.to_owned());
    move |head| match head.path() {
        "/" | "/index.html" => Response::new(200)
            .header("Content-Type", "text/html; charset=utf-8")
            .body(PAGE),
        "/socket.io.js" => Response::new(200)
            .header("Content-Type", "application/javascript; charset=utf-8")
            .body(script.clone()),
        _ => Response::new(404)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body("Not Found"),
    }
}
