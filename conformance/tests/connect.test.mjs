// Connecting: the namespace socket id, the transport of each mode, auth accepted and
// refused (CONNECT_ERROR's message and data reach the client), an unknown namespace, and
// several namespaces multiplexed on one Engine.IO connection.

import assert from "node:assert/strict";
import { connected, emitAck, onTransport, scenario } from "./lib/harness.mjs";

scenario("connect to / and the transport of the mode", async (ctx) => {
  const s = await ctx.connect("/");
  assert.equal(typeof s.id, "string");
  const [me] = await emitAck(s, "whoami");
  assert.equal(me.nsp, "/");
  assert.equal(me.id, s.id, "the client's socket id is the server's");
  assert.notEqual(s.id, s.io.engine.id, "the namespace socket id is not the Engine.IO sid");
  assert.deepEqual(me.auth, {}, "absent auth is {}");
  if (ctx.mode === "polling") {
    assert.equal(s.io.engine.transport.name, "polling");
  } else {
    await onTransport(s, "websocket");
    const [again] = await emitAck(s, "whoami");
    assert.equal(again.id, s.id, "same socket after the upgrade");
  }
});

scenario("connect with auth", async (ctx) => {
  const auth = { token: "abc", user: { name: "zoë", roles: ["a", "b"] } };
  const s = await ctx.connect("/secure", { auth });
  const [me] = await emitAck(s, "whoami");
  assert.equal(me.nsp, "/secure");
  assert.deepEqual(me.auth, auth);
  assert.deepEqual(Object.keys(me.auth), ["token", "user"]);
});

scenario("refused connect: CONNECT_ERROR with message and data", async (ctx) => {
  for (const auth of [{ token: "wrong" }, undefined]) {
    const s = ctx.socket("/secure", auth ? { auth } : {});
    const err = await connected(s).then(
      () => assert.fail("connected without the token"),
      (e) => e,
    );
    assert.equal(err.message, "unauthorized");
    assert.deepEqual(err.data, { code: 42 });
    assert.equal(err.data.code, 42);
    assert.equal(s.connected, false);
  }
  // The refusal is per namespace: the connection may still join another one.
  const m = ctx.manager();
  const refused = m.socket("/secure", { auth: { token: "nope" } });
  const err = await connected(refused).then(() => assert.fail("connected"), (e) => e);
  assert.equal(err.message, "unauthorized");
  const ok = await connected(m.socket("/custom"));
  const [me] = await emitAck(ok, "whoami");
  assert.equal(me.nsp, "/custom");
});

scenario("unknown namespace", async (ctx) => {
  const s = ctx.socket("/does-not-exist");
  const err = await connected(s).then(() => assert.fail("connected to an unknown namespace"), (e) => e);
  assert.equal(err.message, "Invalid namespace");
});

scenario("several namespaces on one connection (Manager multiplexing)", async (ctx) => {
  const m = ctx.manager();
  const names = ["/", "/admin", "/custom", "/secure"];
  const sockets = await Promise.all(
    names.map((nsp) => connected(m.socket(nsp, nsp === "/secure" ? { auth: { token: "abc" } } : {}), nsp)),
  );
  const ids = new Set(sockets.map((s) => s.id));
  assert.equal(ids.size, names.length, "one socket id per namespace");
  assert.ok(sockets.every((s) => s.io === m), "one manager");
  const engineId = m.engine.id;
  for (const [i, s] of sockets.entries()) {
    const [me] = await emitAck(s, "whoami");
    assert.equal(me.nsp, names[i]);
    assert.equal(me.id, s.id);
    const [a, b] = await emitAck(s, "echo-ack", names[i], i);
    assert.deepEqual([a, b], [names[i], i]);
  }
  // Events for each namespace reach only its socket.
  const got = await Promise.all(
    sockets.map(
      (s, i) =>
        new Promise((resolve) => {
          s.once("echo", (...args) => resolve(args));
          s.emit("echo", `from ${names[i]}`);
        }),
    ),
  );
  assert.deepEqual(got, names.map((n) => [`from ${n}`]));
  // Leaving one namespace keeps the others (and the connection).
  sockets[2].disconnect();
  const [still] = await emitAck(sockets[1], "whoami");
  assert.equal(still.nsp, "/admin");
  assert.equal(m.engine.id, engineId, "still the same Engine.IO connection");
});
