// Reconnection after the server drops the transport. Volley's API has no way to close a
// connection without sending DISCONNECT first (the reference's `socket.conn.close()`), so
// the drop is forced through the protocol: the client writes a packet that does not decode,
// the server closes the Engine.IO session (the reason reported to `/admin` is "parse
// error"), and the client, which did not ask to leave, reconnects by itself.

import assert from "node:assert/strict";
import {
  assertServerDisconnect,
  connected,
  emitAck,
  once,
  onTransport,
  scenario,
  serverDisconnectReasons,
  withTimeout,
} from "./lib/harness.mjs";

scenario("the server drops the transport; the client reconnects and works", async (ctx) => {
  const admin = await ctx.connect("/admin", { transports: ["websocket"] });
  const s = ctx.socket("/", { reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100 });
  await connected(s);
  // A close in the middle of the upgrade is upgrade.test.mjs's business.
  if (ctx.mode === "upgrade") await onTransport(s, "websocket");
  const first = s.id;
  const engineId = s.io.engine.id;
  const left = withTimeout(
    new Promise((resolve) => admin.on("left", (r) => r.id === first && resolve(r))),
    10000,
    "the server to drop the socket",
  );
  const disconnected = once(s, "disconnect");
  const reconnected = once(s.io, "reconnect");
  s.io.engine.write("x-not-a-socket.io-packet");
  const [reason] = await disconnected;
  assert.ok(["transport close", "transport error"].includes(reason), `the transport dropped (${reason})`);
  assert.equal((await left).reason, "parse error");
  const [attempts] = await reconnected;
  assert.ok(attempts >= 1);
  await connected(s, "reconnect");
  assert.notEqual(s.id, first, "a new socket id");
  assert.notEqual(s.io.engine.id, engineId, "a new Engine.IO session");
  const [me] = await emitAck(s, "whoami");
  assert.equal(me.id, s.id);
  const echo = once(s, "echo");
  s.emit("echo", "after reconnect", Buffer.from([1, 2, 3]));
  const [text, bin] = await echo;
  assert.equal(text, "after reconnect");
  assert.deepEqual([...bin], [1, 2, 3]);
});

scenario("a disconnect(true) ends the connection without automatic reconnection", async (ctx, t) => {
  const s = ctx.socket("/", { reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100 });
  await connected(s);
  if (ctx.mode === "upgrade") await onTransport(s, "websocket");
  let attempts = 0;
  s.io.on("reconnect_attempt", () => (attempts += 1));
  const gone = serverDisconnectReasons(s);
  s.emit("drop-transport");
  assertServerDisconnect(t, await gone);
  // A server disconnect is final for the client: reconnecting is up to the application.
  s.connect();
  await connected(s, "manual reconnect");
  assert.equal(attempts, 0, "no automatic attempt");
  assert.deepEqual(await emitAck(s, "echo-ack", "ok"), ["ok"]);
});
