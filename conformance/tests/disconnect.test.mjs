// Disconnects: the server removes a socket (`socket.disconnect(false)`: the client sees
// "io server disconnect", the connection's other namespaces stay), the server closes the
// connection (`socket.disconnect(true)`), the client leaves (the server sees "client
// namespace disconnect", reported to an observer on `/admin`), and a manual reconnect after
// a server disconnect.

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

/** An observer on `/admin` (its own connection) collecting the server's departure reports. */
async function observer(ctx) {
  const admin = await ctx.connect("/admin", { transports: ["websocket"] });
  return {
    left(id) {
      return withTimeout(
        new Promise((resolve) => {
          const on = (report) => {
            if (report.id === id) {
              admin.off("left", on);
              resolve(report);
            }
          };
          admin.on("left", on);
        }),
        10000,
        `the server to report that ${id} left`,
      );
    },
  };
}

scenario("server-initiated disconnect: io server disconnect", async (ctx) => {
  const admin = await observer(ctx);
  const m = ctx.manager();
  const root = await connected(m.socket("/"));
  const custom = await connected(m.socket("/custom"));
  const id = root.id;
  const left = admin.left(id);
  const gone = once(root, "disconnect");
  root.emit("disconnect-me");
  const [reason] = await gone;
  assert.equal(reason, "io server disconnect");
  assert.equal(root.connected, false);
  assert.deepEqual(await left, { nsp: "/", id, reason: "server namespace disconnect" });
  // Only that namespace left: the connection and /custom go on.
  assert.deepEqual(await emitAck(custom, "echo-ack", "still"), ["still"]);
  // No automatic reconnection after a server disconnect; a manual one works.
  root.connect();
  await connected(root, "manual reconnect");
  assert.notEqual(root.id, id, "a new socket id");
  assert.deepEqual(await emitAck(root, "echo-ack", "back"), ["back"]);
});

scenario("server closes the connection: disconnect(true)", async (ctx, t) => {
  const admin = await observer(ctx);
  const m = ctx.manager();
  const root = await connected(m.socket("/"));
  const custom = await connected(m.socket("/custom"));
  // A close in the middle of the upgrade is upgrade.test.mjs's business.
  if (ctx.mode === "upgrade") await onTransport(root, "websocket");
  const [rootLeft, customLeft] = [admin.left(root.id), admin.left(custom.id)];
  const reasons = Promise.all([serverDisconnectReasons(root), serverDisconnectReasons(custom)]);
  root.emit("drop-transport");
  const [r1, r2] = await reasons;
  assertServerDisconnect(t, r1);
  assert.deepEqual(r2, ["io server disconnect"], "every namespace of the connection is told");
  assert.equal((await rootLeft).reason, "server namespace disconnect");
  assert.equal((await customLeft).reason, "server namespace disconnect");
  // Reconnecting by hand opens a new connection that works.
  root.connect();
  await connected(root, "manual reconnect");
  assert.deepEqual(await emitAck(root, "echo-ack", 1), [1]);
});

scenario("client-initiated disconnect: client namespace disconnect", async (ctx) => {
  const admin = await observer(ctx);
  // Alone on its connection: the client sends DISCONNECT, then closes the connection.
  const alone = await ctx.connect("/");
  const id = alone.id;
  const left = admin.left(id);
  const gone = once(alone, "disconnect");
  alone.disconnect();
  assert.equal((await gone)[0], "io client disconnect");
  assert.deepEqual(await left, { nsp: "/", id, reason: "client namespace disconnect" });

  // One namespace of several: the others go on.
  const m = ctx.manager();
  const root = await connected(m.socket("/"));
  const custom = await connected(m.socket("/custom"));
  const customLeft = admin.left(custom.id);
  custom.disconnect();
  assert.equal((await customLeft).reason, "client namespace disconnect");
  assert.deepEqual(await emitAck(root, "echo-ack", "on"), ["on"]);
});
