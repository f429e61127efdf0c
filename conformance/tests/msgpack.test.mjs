// The msgpack parser (socket.io-msgpack-parser): Socket.IO packets encoded as MessagePack
// binary messages instead of JSON text.
//
// EXPECTED UNSUPPORTED: Volley has no msgpack parser yet. This scenario asserts the current
// behaviour: the client's CONNECT is a binary message the server cannot decode, so the
// server closes the connection and the client never connects. When Volley gains msgpack
// support this scenario fails on purpose: turn it into a real one (connect, events with
// every type, binary, acks).

import assert from "node:assert/strict";
import { io } from "socket.io-client";
import customParser from "socket.io-msgpack-parser";
import { emitAck, SERVER_URL, scenario, withTimeout } from "./lib/harness.mjs";

scenario("msgpack client: expected unsupported (the connection fails)", async (ctx, t) => {
  const s = io(SERVER_URL, { ...ctx.opts(), parser: customParser });
  ctx.closables.push(() => s.disconnect());
  const outcome = await withTimeout(
    new Promise((resolve) => {
      s.once("connect", () => resolve({ kind: "connect" }));
      s.once("connect_error", (err) => resolve({ kind: "connect_error", message: err.message }));
      s.once("disconnect", (reason) => resolve({ kind: "disconnect", reason }));
      s.io.once("close", (reason) => resolve({ kind: "close", reason }));
      // Upgrade mode: the probe usually finds the session gone ("websocket error") and
      // polling goes on to the close. A client left paused with its probe failed would be
      // stranded: recorded so that the assertion below names it.
      const engine = s.io.engine;
      engine?.on("upgradeError", (err) => {
        if (["pausing", "paused"].includes(engine.transport.readyState)) {
          resolve({ kind: "stranded", message: err.message });
        }
      });
    }),
    10000,
    "the msgpack client's outcome",
  );
  t.diagnostic(`EXPECTED UNSUPPORTED (msgpack parser): ${JSON.stringify(outcome)}`);
  assert.notEqual(outcome.kind, "connect", "msgpack is supported now: make this a real scenario");
  // Today: the server closes the connection on the undecodable CONNECT.
  assert.equal(outcome.kind, "disconnect", JSON.stringify(outcome));
  assert.ok(["transport close", "transport error"].includes(outcome.reason), outcome.reason);
  assert.equal(s.connected, false);
  assert.equal(s.id, undefined, "never connected");
  // The server is unharmed: a JSON client on the same mode still works.
  const ok = await ctx.connect("/");
  assert.deepEqual(await emitAck(ok, "echo-ack", "json"), ["json"]);
});
