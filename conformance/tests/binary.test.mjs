// Binary events and acks: Buffer, ArrayBuffer and typed-array payloads from 1 B to 1 MiB,
// several attachments in one packet, binary nested in objects and arrays, and binary both
// ways through client and server acks.

import assert from "node:assert/strict";
import { emitAck, once, scenario } from "./lib/harness.mjs";

const SIZES = [1, 2, 100, 1024, 65535, 65536, 100_000, 1024 * 1024];

/** `n` bytes of a pattern that differs per size (so that swapped attachments are caught). */
function bytes(n, seed = n) {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

/** The bytes of a received binary value (node receives Buffers). */
function asBuffer(v) {
  assert.ok(Buffer.isBuffer(v) || v instanceof ArrayBuffer || ArrayBuffer.isView(v), `binary expected, got ${typeof v}`);
  return Buffer.isBuffer(v) ? v : ArrayBuffer.isView(v) ? Buffer.from(v.buffer, v.byteOffset, v.byteLength) : Buffer.from(v);
}

function assertBytes(actual, expected, what) {
  const got = asBuffer(actual);
  assert.equal(got.length, expected.length, `${what}: length`);
  assert.ok(got.equals(expected), `${what}: content differs`);
}

scenario("binary events of 1 B .. 1 MiB are emitted back", async (ctx) => {
  const s = await ctx.connect();
  for (const n of SIZES) {
    const data = bytes(n);
    const back = once(s, "echo", 30000);
    s.emit("echo", data);
    const [got] = await back;
    assertBytes(got, data, `${n} B`);
  }
});

scenario("binary acks of 1 B .. 1 MiB (Buffer, ArrayBuffer, Uint8Array)", async (ctx) => {
  const s = await ctx.connect();
  for (const n of SIZES) {
    const data = bytes(n, 7);
    const forms = [data, data.buffer.slice(data.byteOffset, data.byteOffset + n), new Uint8Array(data)];
    for (const form of forms) {
      const [got, label] = await emitAck(s, "echo-ack", form, `size ${n}`);
      assertBytes(got, data, `${n} B as ${form.constructor.name}`);
      assert.equal(label, `size ${n}`);
    }
  }
});

scenario("several attachments, nested in objects and arrays, in order", async (ctx) => {
  const s = await ctx.connect();
  const a = bytes(10, 1);
  const b = bytes(20, 2);
  const c = bytes(30, 3);
  const d = bytes(1, 4);
  const payload = { first: a, list: [b, "text", { deep: c }], n: 1, empty: Buffer.alloc(0) };
  const back = once(s, "echo");
  s.emit("echo", "lead", payload, d, [null, a]);
  const [lead, obj, top, arr] = await back;
  assert.equal(lead, "lead");
  assertBytes(obj.first, a, "first");
  assertBytes(obj.list[0], b, "list[0]");
  assert.equal(obj.list[1], "text");
  assertBytes(obj.list[2].deep, c, "deep");
  assert.equal(obj.n, 1);
  assertBytes(obj.empty, Buffer.alloc(0), "empty buffer");
  assert.deepEqual(Object.keys(obj), ["first", "list", "n", "empty"]);
  assertBytes(top, d, "top-level");
  assert.equal(arr[0], null);
  assertBytes(arr[1], a, "repeated buffer");

  const [ackObj, ackTop] = await emitAck(s, "echo-ack", payload, d);
  assertBytes(ackObj.list[2].deep, c, "ack deep");
  assertBytes(ackTop, d, "ack top-level");
});

scenario("binary through server → client acks, both ways", async (ctx) => {
  const s = await ctx.connect("/custom");
  s.on("question", (data, cb) => {
    const b = asBuffer(data);
    const answer = Buffer.from(b).reverse();
    cb(answer, { len: b.length, copy: b });
  });
  for (const n of [1, 4096, 1024 * 1024]) {
    const data = bytes(n, 9);
    const [reversed, meta] = await emitAck(s, "ask", data);
    assertBytes(reversed, Buffer.from(data).reverse(), `${n} B reversed`);
    assert.equal(meta.len, n);
    assertBytes(meta.copy, data, `${n} B copy`);
  }
});

scenario("binary and text events interleaved keep their order", async (ctx) => {
  const s = await ctx.connect();
  const got = [];
  const done = new Promise((resolve) =>
    s.on("echo", (...args) => {
      got.push(args);
      if (got.length === 60) resolve();
    }),
  );
  const sent = [];
  for (let i = 0; i < 60; i++) {
    const args = i % 3 === 0 ? [i, bytes(i + 1)] : i % 3 === 1 ? [i, "text"] : [i, { b: bytes(5, i), t: "x" }];
    sent.push(args);
    s.emit("echo", ...args);
  }
  await done;
  for (let i = 0; i < 60; i++) {
    assert.equal(got[i][0], i, "order");
    if (i % 3 === 0) assertBytes(got[i][1], sent[i][1], `#${i}`);
    else if (i % 3 === 1) assert.equal(got[i][1], "text");
    else assertBytes(got[i][1].b, sent[i][1].b, `#${i} nested`);
  }
});
