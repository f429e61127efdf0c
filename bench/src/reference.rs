//! The reference server's rules: the benchmark contract answered by string manipulation
//! alone (no packet types, no JSON), which is the least any server must do on the wire.
//!
//! | received (one Engine.IO text packet) | reply |
//! | --- | --- |
//! | `40…` (connect to `/`) | `40{"sid":"<sid>"}` to the sender |
//! | `42["echo",…` | the same text to the sender |
//! | `42<id>["echo_ack",<rest>` | `43<id>[<rest>` to the sender |
//! | `42["broadcast",…` | the same text to every connection |
//! | `1` (close) | the connection ends |
//! | anything else (`3` pongs included) | nothing |

use std::borrow::Cow;

/// What the reference server does with one received packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    /// Nothing.
    None,
    /// Send this text back to the sender.
    Back(Cow<'a, str>),
    /// Send this text to every connection (the sender included).
    All(Cow<'a, str>),
    /// The client closed its session.
    Close,
}

/// The open packet for session `sid`; `upgrades` lists `websocket` for a polling handshake.
pub fn open_packet(sid: &str, polling: bool) -> String {
    let upgrades = if polling { r#"["websocket"]"# } else { "[]" };
    format!(
        r#"0{{"sid":"{sid}","upgrades":{upgrades},"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}}"#
    )
}

/// A session id of 20 characters, like Engine.IO's, numbered rather than random.
pub fn session_id(n: u64) -> String {
    format!("ref{n:017}")
}

/// The reply to one received Engine.IO text packet of session `sid`.
pub fn react<'a>(text: &'a str, sid: &str) -> Reply<'a> {
    if text == "1" {
        return Reply::Close;
    }
    if text.starts_with("40") {
        return Reply::Back(Cow::Owned(format!(r#"40{{"sid":"{sid}"}}"#)));
    }
    let Some(rest) = text.strip_prefix("42") else {
        return Reply::None;
    };
    let body = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let id = &rest[..rest.len() - body.len()];
    if let Some(args) = name_args(body, "echo") {
        return Reply::Back(if id.is_empty() {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(format!("42[\"echo\"{args}"))
        });
    }
    if let Some(args) = name_args(body, "echo_ack") {
        if id.is_empty() {
            return Reply::None;
        }
        // `,1,2]` → `[1,2]`; `]` → `[]`.
        let args = args.strip_prefix(',').unwrap_or(args);
        return Reply::Back(Cow::Owned(format!("43{id}[{args}")));
    }
    if let Some(args) = name_args(body, "broadcast") {
        return Reply::All(if id.is_empty() {
            Cow::Borrowed(text)
        } else {
            Cow::Owned(format!("42[\"broadcast\"{args}"))
        });
    }
    Reply::None
}

/// What follows the event name in `["name",…]` (`,…]` or `]`), if the event is `name`.
fn name_args<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let rest = body
        .strip_prefix("[\"")?
        .strip_prefix(name)?
        .strip_prefix('"')?;
    (rest.starts_with(',') || rest.starts_with(']')).then_some(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn back(s: &str) -> Reply<'_> {
        Reply::Back(Cow::Borrowed(s))
    }

    #[test]
    fn the_contract_by_string_manipulation() {
        let sid = session_id(7);
        assert_eq!(sid.len(), 20);
        assert_eq!(
            react("40", &sid),
            back(r#"40{"sid":"ref00000000000000007"}"#)
        );
        assert_eq!(
            react(r#"42["echo",1,"x"]"#, &sid),
            back(r#"42["echo",1,"x"]"#)
        );
        assert_eq!(react(r#"42["echo"]"#, &sid), back(r#"42["echo"]"#));
        assert_eq!(
            react(r#"4212["echo_ack",1,"x"]"#, &sid),
            back(r#"4312[1,"x"]"#)
        );
        assert_eq!(react(r#"423["echo_ack"]"#, &sid), back("433[]"));
        assert_eq!(
            react(r#"42["broadcast",{"a":1}]"#, &sid),
            Reply::All(Cow::Borrowed(r#"42["broadcast",{"a":1}]"#))
        );
        assert_eq!(react("1", &sid), Reply::Close);
        for ignored in [
            "3",
            "2",
            r#"42["echoes",1]"#,
            r#"42["echo_ack",1]"#,
            "41",
            "6",
        ] {
            assert_eq!(react(ignored, &sid), Reply::None, "{ignored}");
        }
    }

    #[test]
    fn open_packets_have_the_handshake_keys() {
        let open = open_packet("abc", true);
        assert!(open.starts_with(r#"0{"sid":"abc","upgrades":["websocket"],"pingInterval":25000"#));
        assert_eq!(crate::wire::open_sid(&open), Some("abc"));
    }
}
