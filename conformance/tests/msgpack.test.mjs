// @server --app msgpack
// The msgpack parser (socket.io-msgpack-parser): every packet is one MessagePack binary
// message instead of JSON text. The server is the scenario server built with
// `Parser::MsgPack` (as the reference server's `parser` option, one parser for all clients).
//
// Covered in each transport mode: connect with auth and a refused connect (message and data),
// several namespaces on one connection, events with every argument type, acks both ways,
// binary values of 1 B .. 1 MiB nested anywhere, rooms and broadcast with `except`, server
// and client disconnects, a burst in order, and a default-parser client refused cleanly.

import assert from "node:assert/strict";
import { io, Manager } from "socket.io-client";
import customParser from "socket.io-msgpack-parser";
import { connected, emitAck, Inbox, once, scenario, SERVER_URL, serverDisconnectReasons, unique, withTimeout } from "./lib/harness.mjs";

/** A socket of the msgpack server for `nsp`, closed with the test. */
function socket(ctx, nsp = "/", extra = {}) {
  const s = io(SERVER_URL + (nsp === "/" ? "" : nsp), ctx.opts({ parser: customParser, ...extra }));
  ctx.closables.push(() => s.disconnect());
  return s;
}

function connect(ctx, nsp = "/", extra = {}) {
  return connected(socket(ctx, nsp, extra), `msgpack connect to ${nsp}`);
}

function bytes(n, seed = n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

function assertBytes(actual, expected, what) {
  assert.ok(Buffer.isBuffer(actual) || actual instanceof ArrayBuffer || ArrayBuffer.isView(actual), `${what}: binary expected, got ${typeof actual}`);
  const got = Buffer.isBuffer(actual) ? actual : ArrayBuffer.isView(actual) ? Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength) : Buffer.from(actual);
  assert.equal(got.length, expected.length, `${what}: length`);
  assert.ok(got.equals(expected), `${what}: content differs`);
}

// Numbers that MessagePack (as notepack writes it) carries exactly: integers up to 2^53 and
// non-integral floats. (notepack writes integral floats beyond 2^53 as broken 64-bit
// integers, so the reference pairing cannot carry them either.)
const NUMBERS = [0, 1, -1, 42, 127, 128, -32, -33, 255, 256, 65535, 65536, 2 ** 31, -(2 ** 31), 2 ** 32, 2 ** 53 - 1, -(2 ** 53 - 1), 3.14, -0.5, 1e-7, 5e-324, 0.1 + 0.2, 3.131513062514022e-294];
const NESTED = { zeta: 1, alpha: { yankee: [1, { z: null, a: true }], bravo: "b" }, mike: [], "ключ": "значение", charlie: [[[]], [{}]] };
const ARGS = ["", "héllo 🎉 日本語", "x".repeat(70000), "quotes \" \\ \n", NESTED, ...NUMBERS, null, true, false, [1, "two", [3, [4]], { five: 5 }]];

scenario("msgpack: connect with auth, whoami, a refused connect with message and data", async (ctx) => {
  const s = await connect(ctx, "/", { auth: { user: "ann", n: 7 } });
  const [me] = await emitAck(s, "whoami");
  assert.equal(me.id, s.id);
  assert.equal(me.nsp, "/");
  assert.deepEqual(me.auth, { user: "ann", n: 7 });

  const refused = socket(ctx, "/secure", { auth: { token: "wrong" } });
  const [err] = await once(refused, "connect_error");
  assert.equal(err.message, "unauthorized");
  assert.deepEqual(err.data, { code: 42 });
  const admitted = await connect(ctx, "/secure", { auth: { token: "abc" } });
  assert.deepEqual(await emitAck(admitted, "echo-ack", "in"), ["in"]);
});

scenario("msgpack: several namespaces on one connection, and an unknown one", async (ctx) => {
  const m = new Manager(SERVER_URL, { autoConnect: true, parser: customParser, ...ctx.opts() });
  ctx.closables.push(() => m.disconnect());
  const root = m.socket("/");
  const custom = m.socket("/custom");
  await Promise.all([connected(root, "/"), connected(custom, "/custom")]);
  assert.deepEqual(await emitAck(custom, "whoami").then(([w]) => w.nsp), "/custom");
  assert.deepEqual(await emitAck(root, "echo-ack", "r"), ["r"]);
  const unknown = m.socket("/nowhere");
  const [err] = await once(unknown, "connect_error");
  assert.equal(err.message, "Invalid namespace");
  assert.deepEqual(await emitAck(custom, "echo-ack", "still"), ["still"]);
});

scenario("msgpack: every argument type, emitted back and acknowledged", async (ctx) => {
  const s = await connect(ctx);
  const back = once(s, "echo");
  s.emit("echo", ...ARGS);
  const got = await back;
  assert.deepEqual(got, ARGS);
  assert.equal(JSON.stringify(got), JSON.stringify(ARGS), "key order");
  for (const [i, n] of NUMBERS.entries()) {
    const v = got[5 + i];
    assert.ok(Object.is(v, n) || (n === 0 && v === 0), `number ${n} came back as ${v}`);
  }
  assert.deepEqual(await emitAck(s, "echo-ack", ...ARGS), ARGS);
  assert.deepEqual(await emitAck(s, "echo-ack"), []);
});

scenario("msgpack: server → client acks", async (ctx) => {
  const s = await connect(ctx);
  s.on("question", (...args) => {
    const cb = args.pop();
    cb({ answered: args }, bytes(3, 9));
  });
  const [answer, bin] = await emitAck(s, "ask", "what", { is: ["this"] });
  assert.deepEqual(answer, { answered: ["what", { is: ["this"] }] });
  assertBytes(bin, bytes(3, 9), "binary in the client's ack");
  const many = await Promise.all(Array.from({ length: 50 }, (_, i) => emitAck(s, "ask", i)));
  many.forEach(([a], i) => assert.deepEqual(a, { answered: [i] }));
});

scenario("msgpack: binary values of 1 B .. 1 MiB, nested, both ways", async (ctx) => {
  const s = await connect(ctx);
  for (const n of [1, 255, 256, 65535, 65536, 1024 * 1024]) {
    const data = bytes(n);
    const back = once(s, "echo", 30000);
    s.emit("echo", data);
    assertBytes((await back)[0], data, `${n} B echoed`);
    const [acked, label] = await emitAck(s, "echo-ack", new Uint8Array(data), `size ${n}`);
    assertBytes(acked, data, `${n} B acknowledged`);
    assert.equal(label, `size ${n}`);
  }
  const a = bytes(10, 1);
  const b = bytes(20, 2);
  const [got] = await emitAck(s, "echo-ack", { first: a, list: [b, "t", { deep: a }], empty: Buffer.alloc(0) });
  assertBytes(got.first, a, "first");
  assertBytes(got.list[0], b, "list[0]");
  assert.equal(got.list[1], "t");
  assertBytes(got.list[2].deep, a, "deep");
  assertBytes(got.empty, Buffer.alloc(0), "empty");
});

scenario("msgpack: rooms, broadcast and except across clients", async (ctx) => {
  const room = unique("mp-room");
  const others = unique("mp-others");
  const [a, b, c] = await Promise.all([connect(ctx), connect(ctx), connect(ctx)]);
  await emitAck(a, "join", room);
  await emitAck(b, "join", room);
  await emitAck(b, "join", others);
  const inboxes = [a, b, c].map((s) => new Inbox(s, "news"));
  const data = bytes(5);
  assert.deepEqual(await emitAck(c, "broadcast", { to: [room], except: [others], event: "news" }, "hello", data), ["sent"]);
  const [got] = await inboxes[0].until("news", 1);
  assert.equal(got[0].event, "news");
  assert.equal(got[1], "hello");
  assertBytes(got[2], data, "broadcast binary");
  // A marker to everyone tells when the first broadcast would have arrived at b and c.
  await emitAck(a, "broadcast", { event: "news", self: true }, "marker");
  for (const inbox of inboxes) await inbox.until("news", inbox === inboxes[0] ? 2 : 1);
  assert.deepEqual(inboxes[1].all("news").map((args) => args[1]), ["marker"], "b is excluded");
  assert.deepEqual(inboxes[2].all("news").map((args) => args[1]), ["marker"], "c is not in the room");
});

scenario("msgpack: a burst of 1000 events arrives in order", async (ctx) => {
  const s = await connect(ctx);
  const inbox = new Inbox(s, "tick");
  assert.deepEqual(await emitAck(s, "burst", { n: 1000, event: "tick", binaryEvery: 100 }), [1000]);
  const ticks = await inbox.until("tick", 1000, 30000);
  ticks.forEach((args, i) => {
    assert.equal(args[0], i);
    if (i % 100 === 0) assertBytes(args[1], Buffer.alloc((i % 256) + 1, i % 256), `tick ${i}`);
  });
});

scenario("msgpack: server and client disconnects", async (ctx) => {
  const s = await connect(ctx);
  const reasons = serverDisconnectReasons(s);
  s.emit("disconnect-me");
  assert.deepEqual(await reasons, ["io server disconnect"]);
  const t = await connect(ctx);
  const gone = once(t, "disconnect");
  t.disconnect();
  assert.equal((await gone)[0], "io client disconnect");
});

scenario("msgpack: a client with the default parser is refused, others unharmed", async (ctx) => {
  const s = io(SERVER_URL, ctx.opts());
  ctx.closables.push(() => s.disconnect());
  const outcome = await withTimeout(
    new Promise((resolve) => {
      s.once("connect", () => resolve("connect"));
      s.once("connect_error", () => resolve("connect_error"));
      s.once("disconnect", (reason) => resolve(reason));
      s.io.once("close", (reason) => resolve(reason));
      // Upgrade mode: the probe may find the session closed and leave the client paused,
      // which the client never reports as a disconnect.
      const engine = s.io.engine;
      engine?.on("upgradeError", () => {
        if (["pausing", "paused"].includes(engine.transport.readyState)) resolve("probe failed");
      });
    }),
    10000,
    "the JSON client's outcome",
  );
  assert.notEqual(outcome, "connect");
  assert.equal(s.connected, false);
  const ok = await connect(ctx);
  assert.deepEqual(await emitAck(ok, "echo-ack", "fine"), ["fine"]);
});
