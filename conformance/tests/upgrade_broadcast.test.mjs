// @targets tokio smol   (the `stream` handler broadcasts from a thread of the volley crate's
// application; the event loop example has no such handler)
//
// A polling session upgraded to WebSocket while broadcasts to it are made from another
// thread: every broadcast arrives exactly once and in order, some over polling and some
// over the WebSocket.

import assert from "node:assert/strict";
import { connected, emitAck, Inbox, once, scenario, unique } from "./lib/harness.mjs";

scenario(
  "broadcasts from another thread during the upgrade arrive once, in order",
  async (ctx) => {
    // Connected over polling; the upgrade is started by hand (the client's own `_probe`,
    // what it runs after the handshake when `upgrade` is on) once the stream runs.
    const s = ctx.socket("/", { upgrade: false });
    const inbox = new Inbox(s, "tick", "tick-end");
    // The transport each tick arrived on.
    const over = [];
    s.on("tick", () => over.push(s.io.engine.transport.name));
    await connected(s);
    const engine = s.io.engine;
    assert.equal(engine.transport.name, "polling");
    const room = unique("stream");
    await emitAck(s, "join", room);
    assert.deepEqual(await emitAck(s, "stream", { room, event: "tick", max: 200000 }), ["started"]);
    await inbox.until("tick", 20, 20000);
    const upgraded = once(engine, "upgrade", 20000);
    engine._probe("websocket");
    await upgraded;
    assert.equal(engine.transport.name, "websocket");
    // Some more over the WebSocket, then stop.
    const after = over.length;
    await inbox.until("tick", after + 50, 20000);
    s.emit("stream-stop");
    const [[count]] = await inbox.until("tick-end", 1, 20000);
    const got = (await inbox.until("tick", count, 20000)).map((a) => a[0]);
    assert.deepEqual(got, Array.from({ length: count }, (_, k) => k), "each once, in order");
    assert.ok(over.includes("polling"), "some arrived before the upgrade");
    assert.ok(over.includes("websocket"), "some arrived after it");
  },
  { modes: ["upgrade"], timeout: 60000 },
);
