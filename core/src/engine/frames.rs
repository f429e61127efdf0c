//! The shared framing of broadcast texts for a composition of sessions.
//!
//! Why at the composition: a session keeps its WebSocket packets unframed until they are
//! drained ([`super::Session::poll_output`]), and [`super::Engine`] drains every session into
//! its own queue right after the input that made them, through one cache. So a text the
//! Socket.IO layer queued for many sessions is framed once, as before the split, and a
//! session needs no handle on anything shared (a runtime that runs each session on its own
//! task frames per session).

use super::packet::{Message, Packet, Protocol, WsMessage};
use crate::utf8::Utf8Bytes;
use bytes::Bytes;

/// How many shared text frames [`FrameCache`] remembers: a few broadcasts in flight at once.
const FRAME_CACHE: usize = 8;

/// WebSocket frames of text messages that several sessions queued (a broadcast, whose text the
/// Socket.IO layer encodes once and clones for every target), remembered by the identity of
/// that text so the `4…` frame is built once and shared instead of copied per recipient.
///
/// An entry keeps a clone of its text alive, so the same address and length mean the same
/// (immutable) bytes. At most [`FRAME_CACHE`] frames are held; a text nobody else holds is
/// framed directly, without an entry.
#[derive(Default)]
pub(crate) struct FrameCache {
    entries: [Option<(Bytes, Utf8Bytes)>; FRAME_CACHE],
    next: usize,
}

impl FrameCache {
    /// `packet` as a WebSocket message, the frame shared with earlier recipients if any.
    pub(crate) fn frame(&mut self, packet: &Packet, protocol: Protocol) -> WsMessage {
        let Packet::Message(Message::Text(text)) = packet else {
            return packet.to_ws(protocol);
        };
        let source = text.as_bytes();
        if source.is_unique() {
            // One recipient only (an emit to one socket): nothing to share.
            return packet.to_ws(protocol);
        }
        let same =
            |(s, _): &&(Bytes, Utf8Bytes)| s.as_ptr() == source.as_ptr() && s.len() == source.len();
        if let Some((_, frame)) = self.entries.iter().flatten().find(same) {
            return WsMessage::Text(frame.clone());
        }
        let message = packet.to_ws(protocol);
        if let WsMessage::Text(frame) = &message {
            self.entries[self.next] = Some((source.clone(), frame.clone()));
            self.next = (self.next + 1) % FRAME_CACHE;
        }
        message
    }
}

#[cfg(test)]
mod frame_cache_tests {
    use super::*;

    fn frame(m: &WsMessage) -> &Utf8Bytes {
        match m {
            WsMessage::Text(t) => t,
            WsMessage::Binary(_) => panic!("binary frame"),
        }
    }

    #[test]
    fn a_text_queued_for_several_sessions_is_framed_once() {
        let mut cache = FrameCache::default();
        let text = Utf8Bytes::from(String::from(r#"2["news",1]"#));
        let a = cache.frame(&Packet::Message(Message::Text(text.clone())), Protocol::V4);
        let b = cache.frame(&Packet::Message(Message::Text(text.clone())), Protocol::V3);
        assert_eq!(&**frame(&a), r#"42["news",1]"#);
        assert_eq!(a, b);
        assert_eq!(frame(&a).as_ptr(), frame(&b).as_ptr(), "shared, not copied");
        // Another text with the same content is another message.
        let other = Utf8Bytes::from(String::from(r#"2["news",1]"#));
        let keep = other.clone();
        let c = cache.frame(&Packet::Message(Message::Text(other)), Protocol::V4);
        assert_eq!(c, a);
        assert_ne!(frame(&c).as_ptr(), frame(&a).as_ptr());
        drop(keep);
        // A text held by one queue only is framed directly and not remembered.
        let single = Utf8Bytes::from(String::from("2[]"));
        let d = cache.frame(&Packet::Message(Message::Text(single)), Protocol::V4);
        assert_eq!(&**frame(&d), "42[]");
        assert_eq!(cache.entries.iter().flatten().count(), 2);
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut cache = FrameCache::default();
        let texts: Vec<Utf8Bytes> = (0..3 * FRAME_CACHE)
            .map(|i| Utf8Bytes::from(format!("2[{i}]")))
            .collect();
        for t in &texts {
            let m = cache.frame(&Packet::Message(Message::Text(t.clone())), Protocol::V4);
            assert_eq!(&**frame(&m), format!("4{t}"));
        }
        assert_eq!(cache.entries.iter().flatten().count(), FRAME_CACHE);
    }
}
