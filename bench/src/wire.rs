//! The load generator's side of the wire: building benchmark packets and reading the send
//! time back out of replies, without a JSON parser.

use std::fmt::Write as _;

/// Padding of `size` bytes (`x` repeated), the payload-size knob of every scenario.
pub fn pad(size: usize) -> String {
    "x".repeat(size)
}

/// The Engine.IO message carrying Socket.IO EVENT `name` with arguments `[stamp, pad]`:
/// `42["name",stamp,"pad"]`, with ack id `ack` when given (`42<id>[…]`).
pub fn event(name: &str, ack: Option<u64>, stamp: u64, pad: &str) -> String {
    let mut out = String::with_capacity(name.len() + pad.len() + 40);
    out.push_str("42");
    if let Some(id) = ack {
        let _ = write!(out, "{id}");
    }
    let _ = write!(out, "[\"{name}\",{stamp},\"{pad}\"]");
    out
}

/// The send time carried by a benchmark reply: the first argument of an EVENT
/// (`42["echo",123,…]`, `42["broadcast",123,…]`) or of an ACK (`43<id>[123,…]`). `None` for
/// anything else (pings, connect replies).
pub fn stamp(text: &str) -> Option<u64> {
    let rest = text.strip_prefix('4')?;
    let (kind, rest) = rest.split_at_checked(1)?;
    let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
    let mut rest = rest.strip_prefix('[')?;
    match kind {
        "2" => {
            // Skip the event name: a JSON string without escapes in every benchmark message.
            let name = rest.strip_prefix('"')?;
            let end = name.find('"')?;
            rest = name[end + 1..].strip_prefix(',')?;
        }
        "3" => {}
        _ => return None,
    }
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    rest[..digits].parse().ok()
}

/// The ack id of an ACK reply (`43<id>[…]`).
pub fn ack_id(text: &str) -> Option<u64> {
    let rest = text.strip_prefix("43")?;
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    rest[..digits].parse().ok()
}

/// The session id in an open packet `0{"sid":"…",…}`.
pub fn open_sid(text: &str) -> Option<&str> {
    let rest = text.strip_prefix('0')?;
    let start = rest.find("\"sid\":\"")? + 7;
    let len = rest[start..].find('"')?;
    Some(&rest[start..start + len])
}

/// The packets of a v4 polling body (`\x1e`-separated).
pub fn split_payload(body: &str) -> impl Iterator<Item = &str> {
    body.split('\x1e').filter(|p| !p.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_their_stamp() {
        let e = event("echo", None, 123, "xx");
        assert_eq!(e, r#"42["echo",123,"xx"]"#);
        assert_eq!(stamp(&e), Some(123));
        let a = event("echo_ack", Some(7), 99, "");
        assert_eq!(a, r#"427["echo_ack",99,""]"#);
        assert_eq!(stamp(r#"437[99,""]"#), Some(99));
        assert_eq!(ack_id(r#"437[99,""]"#), Some(7));
        assert_eq!(stamp(r#"42["broadcast",5,"x"]"#), Some(5));
    }

    #[test]
    fn other_packets_carry_none() {
        for text in [
            "2",
            "3",
            "40",
            r#"40{"sid":"a"}"#,
            "42[]",
            r#"42["x"]"#,
            "4",
            "",
        ] {
            assert_eq!(stamp(text), None, "{text}");
        }
    }

    #[test]
    fn open_packets_and_payloads() {
        let open = r#"0{"sid":"abc","upgrades":[],"pingInterval":25000}"#;
        assert_eq!(open_sid(open), Some("abc"));
        assert_eq!(open_sid("40"), None);
        let body = "42[\"a\"]\x1e2\x1e43[1]";
        assert_eq!(
            split_payload(body).collect::<Vec<_>>(),
            ["42[\"a\"]", "2", "43[1]"]
        );
    }
}
