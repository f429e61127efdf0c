// socket.io-client 2.x (Socket.IO protocol v4 over Engine.IO v3; the server has
// `allow_eio3(true)`): connect (`/` is connected by the server without asking), events with
// many argument types, acks both ways, binary events and acks, namespaces multiplexed on one
// connection, and the namespace query as v2's credentials (accepted and refused).

import assert from "node:assert/strict";
import ioV2 from "socket.io-client-v2";
import { MODES, SERVER_URL, scenario, withTimeout } from "./lib/harness.mjs";

const TIMEOUT = 10000;

function v2socket(ctx, nsp = "/", extra = {}) {
  const s = ioV2(SERVER_URL + (nsp === "/" ? "" : nsp), {
    forceNew: true,
    reconnection: false,
    ...MODES[ctx.mode],
    ...extra,
  });
  ctx.closables.push(() => s.close());
  return s;
}

/** Resolves once connected; rejects with the namespace refusal (`error`) or `connect_error`. */
function v2connected(s, what = "v2 connect") {
  if (s.connected) return Promise.resolve(s);
  return withTimeout(
    new Promise((resolve, reject) => {
      s.once("connect", () => resolve(s));
      s.once("error", (data) => reject(Object.assign(new Error("refused"), { data })));
      s.once("connect_error", (err) => reject(err));
    }),
    TIMEOUT,
    what,
  );
}

function v2ack(s, event, ...args) {
  return withTimeout(new Promise((resolve) => s.emit(event, ...args, (...answer) => resolve(answer))), TIMEOUT, `ack of ${event}`);
}

function v2once(s, event) {
  return withTimeout(new Promise((resolve) => s.once(event, (...args) => resolve(args))), TIMEOUT, `event ${event}`);
}

const ARGS = ["héllo 🎉 \u2028\u2029", { zeta: 1, alpha: [1, { b: null, a: true }] }, 0, -7, 3.5, 2 ** 53 - 1, null, true, false, [1, "2", [3]]];

scenario("v2: connect, id and transport", async (ctx) => {
  const s = await v2connected(v2socket(ctx));
  const [me] = await v2ack(s, "whoami");
  assert.equal(me.nsp, "/");
  assert.equal(me.id, s.id, "the client's id is the server's");
  assert.equal(me.id, s.io.engine.id, "in protocol v4 the id of / is the Engine.IO sid");
  const transport = s.io.engine.transport.name;
  if (ctx.mode === "polling") assert.equal(transport, "polling");
  if (ctx.mode === "websocket") assert.equal(transport, "websocket");
});

scenario("v2: events with many argument types", async (ctx) => {
  const s = await v2connected(v2socket(ctx));
  const back = v2once(s, "echo");
  s.emit("echo", ...ARGS);
  const got = await back;
  assert.equal(JSON.stringify(got), JSON.stringify(ARGS));
  assert.equal(JSON.stringify(await v2ack(s, "echo-ack", ...ARGS)), JSON.stringify(ARGS));
});

scenario("v2: acks both ways", async (ctx) => {
  const s = await v2connected(v2socket(ctx));
  const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => v2ack(s, "echo-ack", i)));
  answers.forEach((a, i) => assert.deepEqual(a, [i]));
  s.on("question", (q, cb) => cb({ answered: q }, "v2"));
  assert.deepEqual(await v2ack(s, "ask", "from the server?"), [{ answered: "from the server?" }, "v2"]);
});

scenario("v2: binary events and acks", async (ctx) => {
  const s = await v2connected(v2socket(ctx));
  for (const n of [1, 1000, 100_000, 1024 * 1024]) {
    const data = Buffer.alloc(n, n & 0xff);
    data[0] = 0xfe;
    const back = v2once(s, "echo");
    s.emit("echo", data, { nested: [data.subarray(0, 3)] });
    const [bin, obj] = await back;
    assert.ok(Buffer.from(bin).equals(data), `${n} B event`);
    assert.ok(Buffer.from(obj.nested[0]).equals(data.subarray(0, 3)), "nested binary");
    const [ackBin] = await v2ack(s, "echo-ack", data);
    assert.ok(Buffer.from(ackBin).equals(data), `${n} B ack`);
  }
  s.on("question", (b, cb) => cb(Buffer.from(b).reverse()));
  const [rev] = await v2ack(s, "ask", Buffer.from([1, 2, 3]));
  assert.deepEqual([...Buffer.from(rev)], [3, 2, 1]);
});

scenario("v2: namespaces on one connection", async (ctx) => {
  const m = ioV2.Manager(SERVER_URL, { reconnection: false, ...MODES[ctx.mode] });
  ctx.closables.push(() => m.close());
  const root = m.socket("/");
  const custom = m.socket("/custom");
  const admin = m.socket("/admin");
  await Promise.all([root, custom, admin].map((s) => v2connected(s)));
  for (const [s, nsp] of [[root, "/"], [custom, "/custom"], [admin, "/admin"]]) {
    const [me] = await v2ack(s, "whoami");
    assert.equal(me.nsp, nsp);
    assert.deepEqual(await v2ack(s, "echo-ack", nsp), [nsp]);
  }
  const [me] = await v2ack(custom, "whoami");
  assert.equal(me.id, `/custom#${m.engine.id}`, "protocol v4 ids: /nsp#sid");
});

scenario("v2: credentials in the namespace query, accepted and refused", async (ctx) => {
  const ok = await v2connected(v2socket(ctx, "/secure", { query: { token: "abc" } }));
  const [me] = await v2ack(ok, "whoami");
  assert.equal(me.nsp, "/secure");
  assert.equal(me.token, "abc");

  const refused = v2socket(ctx, "/secure", { query: { token: "nope" } });
  const err = await v2connected(refused).then(() => assert.fail("connected"), (e) => e);
  // Protocol v4's ERROR carries the data when there is some, else the message (as the
  // reference server does for v2 clients).
  assert.deepEqual(err.data, { code: 42 });
});

scenario("v2: unknown namespace", async (ctx) => {
  const s = v2socket(ctx, "/nowhere");
  const err = await v2connected(s).then(() => assert.fail("connected"), (e) => e);
  assert.equal(err.data, "Invalid namespace");
});
