// @server FAST_PING=1
//
// Heartbeat: with a 300 ms ping interval and a 200 ms ping timeout (the reference suites'
// values), an idle connection stays up through several ping intervals in every mode: the
// server pings, the client answers, nobody disconnects, and the same socket still works.

import assert from "node:assert/strict";
import { emitAck, scenario, withTimeout } from "./lib/harness.mjs";

const PINGS = 6;

scenario("an idle connection survives several ping intervals", async (ctx) => {
  const s = await ctx.connect("/custom");
  const engine = s.io.engine;
  const id = s.id;
  let disconnected = null;
  s.on("disconnect", (reason) => (disconnected = reason));
  const pings = await withTimeout(
    new Promise((resolve, reject) => {
      let n = 0;
      const started = Date.now();
      engine.on("ping", () => {
        n += 1;
        if (n === PINGS) resolve({ n, ms: Date.now() - started });
      });
      s.on("disconnect", (reason) => reject(new Error(`disconnected while idle: ${reason}`)));
    }),
    PINGS * 300 + 3000,
    `${PINGS} pings`,
  );
  assert.equal(pings.n, PINGS);
  assert.ok(pings.ms >= (PINGS - 1) * 300 - 50, `pings came every ~300 ms (${pings.ms} ms for ${PINGS})`);
  assert.equal(disconnected, null);
  assert.equal(s.connected, true);
  assert.equal(engine.id, s.io.engine.id, "same Engine.IO session");
  const [me] = await emitAck(s, "whoami");
  assert.equal(me.id, id, "same socket");
});
