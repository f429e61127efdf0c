// Message order under load: 1000 emits in a burst from the client (the server records
// them), 1000 from the server (some with binary attachments), and 1000 echoes round trip.

import assert from "node:assert/strict";
import { emitAck, Inbox, scenario } from "./lib/harness.mjs";

const N = 1000;
const range = (n) => Array.from({ length: n }, (_, i) => i);

scenario("1000 client → server emits arrive in order", async (ctx) => {
  const s = await ctx.connect();
  for (let i = 0; i < N; i++) s.emit("seq", i);
  const [log] = await emitAck(s, "seq-report");
  assert.equal(log.length, N, "every emit arrived before the report");
  assert.deepEqual(log, range(N));
});

scenario("1000 server → client emits arrive in order (binary every 100th)", async (ctx) => {
  const s = await ctx.connect();
  const inbox = new Inbox(s, "item");
  const [count] = await emitAck(s, "burst", { n: N, event: "item", binaryEvery: 100 });
  assert.equal(count, N);
  // The ack was queued after the burst, so everything is here already.
  const items = inbox.all("item");
  assert.equal(items.length, N, "the burst arrived before its ack");
  items.forEach((args, i) => {
    assert.equal(args[0], i, "order");
    if (i % 100 === 0) {
      assert.equal(args.length, 2);
      assert.equal(args[1].length, (i % 256) + 1);
      assert.ok(args[1].every((b) => b === i % 256));
    } else {
      assert.equal(args.length, 1);
    }
  });
});

scenario("1000 echoes in a burst come back in order", async (ctx) => {
  const s = await ctx.connect();
  const inbox = new Inbox(s, "echo");
  for (let i = 0; i < N; i++) s.emit("echo", i, `#${i}`);
  const got = await inbox.until("echo", N, 20000);
  assert.deepEqual(
    got.map((a) => a[0]),
    range(N),
  );
  assert.ok(got.every((a, i) => a[1] === `#${i}`));
});

scenario("both directions at once on two namespaces of one connection", async (ctx) => {
  const m = ctx.manager();
  const a = m.socket("/");
  const b = m.socket("/custom");
  await Promise.all([a, b].map((s) => new Promise((r) => s.once("connect", r))));
  const inboxA = new Inbox(a, "echo");
  const inboxB = new Inbox(b, "item");
  const burst = emitAck(b, "burst", { n: N, event: "item" });
  for (let i = 0; i < N; i++) {
    a.emit("echo", i);
    b.emit("seq", i);
  }
  const [echoes, [count]] = await Promise.all([inboxA.until("echo", N, 20000), burst]);
  assert.equal(count, N);
  assert.deepEqual(echoes.map((x) => x[0]), range(N));
  assert.deepEqual(inboxB.all("item").map((x) => x[0]), range(N));
  const [log] = await emitAck(b, "seq-report");
  assert.deepEqual(log, range(N));
});
