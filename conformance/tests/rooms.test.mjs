// Rooms and broadcast with several clients: to a room (sender excluded, as
// `socket.to(room)`), to a room including the sender (`io.to(room)`), to several rooms (a
// union, each socket once), `except`, leaving a room, and namespaces kept apart.
//
// "Did not receive" is proven without waiting: after each broadcast, a marker is broadcast
// to everyone; events on one connection arrive in order, so a socket that got the marker
// and not the broadcast never will.

import assert from "node:assert/strict";
import { emitAck, Inbox, scenario, unique, withTimeout } from "./lib/harness.mjs";

async function clients(ctx, n, nsp = "/") {
  const sockets = await Promise.all(Array.from({ length: n }, () => ctx.connect(nsp)));
  return sockets.map((s) => ({ s, inbox: new Inbox(s, "news", "marker") }));
}

/** Broadcasts a marker to all, waits until each client has it, and returns (and clears)
 * the news each one got before it (without the broadcast options, the first argument). */
async function settle(sender, all, tag) {
  await emitAck(sender.s, "broadcast", { event: "marker", self: true }, tag);
  return Promise.all(all.map((c) => drainUntilMarker(c, tag)));
}

async function drainUntilMarker(c, tag) {
  while (!c.inbox.all("marker").some((args) => args[1] === tag)) {
    await c.inbox.until("marker", c.inbox.all("marker").length + 1);
  }
  return c.inbox
    .all("news")
    .splice(0)
    .map((args) => args.slice(1));
}

scenario("to a room, to several rooms, except, self, leave", async (ctx) => {
  const [a, b, c, d] = await clients(ctx, 4);
  const all = [a, b, c, d];
  const r1 = unique("r1");
  const r2 = unique("r2");
  assert.deepEqual(await emitAck(a.s, "join", r1), [r1]);
  assert.deepEqual(await emitAck(b.s, "join", r1), [r1]);
  assert.deepEqual(await emitAck(c.s, "join", r2), [r2]);
  assert.deepEqual(await emitAck(b.s, "join", r2), [r2]);
  const [rooms] = await emitAck(b.s, "rooms");
  assert.deepEqual(rooms, [b.s.id, r1, r2].sort(), "a socket is in its own room too");

  // socket.to(r1): b only (a is the sender).
  await emitAck(a.s, "broadcast", { to: [r1], event: "news" }, "to r1");
  assert.deepEqual(await settle(a, all, "m1"), [[], [["to r1"]], [], []]);

  // io.to(r1) includes the sender.
  await emitAck(a.s, "broadcast", { to: [r1], event: "news", self: true }, "to r1 with self");
  assert.deepEqual(await settle(a, all, "m2"), [[["to r1 with self"]], [["to r1 with self"]], [], []]);

  // Union of rooms: b is in both and gets it once.
  await emitAck(d.s, "broadcast", { to: [r1, r2], event: "news" }, "union");
  assert.deepEqual(await settle(d, all, "m3"), [[["union"]], [["union"]], [["union"]], []]);

  // Everyone but r1 (and the sender).
  await emitAck(c.s, "broadcast", { except: [r1], event: "news" }, "except r1");
  assert.deepEqual(await settle(c, all, "m4"), [[], [], [], [["except r1"]]]);

  // r2 except r1: c only; with self from d.
  await emitAck(d.s, "broadcast", { to: [r2], except: [r1], event: "news", self: true }, "r2 - r1");
  assert.deepEqual(await settle(d, all, "m5"), [[], [], [["r2 - r1"]], []]);

  // Except the sender's own room (its id) with self: everyone else.
  await emitAck(a.s, "broadcast", { except: [a.s.id], event: "news", self: true }, "not a");
  assert.deepEqual(await settle(a, all, "m6"), [[], [["not a"]], [["not a"]], [["not a"]]]);

  // After leaving r1, b no longer gets r1's broadcasts.
  assert.deepEqual(await emitAck(b.s, "leave", r1), [r1]);
  await emitAck(d.s, "broadcast", { to: [r1], event: "news" }, "r1 after leave");
  assert.deepEqual(await settle(d, all, "m7"), [[["r1 after leave"]], [], [], []]);

  // A socket addressed by its id (private message).
  await emitAck(a.s, "broadcast", { to: [c.s.id], event: "news" }, "dm");
  assert.deepEqual(await settle(a, all, "m8"), [[], [], [["dm"]], []]);
});

scenario("a disconnected socket leaves its rooms", async (ctx) => {
  const [a, b, c] = await clients(ctx, 3);
  const r = unique("gone");
  for (const x of [a, b, c]) await emitAck(x.s, "join", r);
  const admin = await ctx.connect("/admin");
  const id = b.s.id;
  const left = new Promise((resolve) => admin.on("left", (report) => report.id === id && resolve(report)));
  b.s.disconnect();
  assert.equal((await withTimeout(left, 10000, "the server to see b leave")).reason, "client namespace disconnect");
  await emitAck(a.s, "broadcast", { to: [r], event: "news", self: true }, "after b left");
  assert.deepEqual(await settle(a, [a, c], "m"), [[["after b left"]], [["after b left"]]]);
  assert.equal(b.inbox.all("news").length, 0);
});

scenario("broadcasts stay in their namespace", async (ctx) => {
  const m1 = ctx.manager();
  const m2 = ctx.manager();
  const sockets = [m1.socket("/"), m1.socket("/custom"), m2.socket("/"), m2.socket("/custom")];
  await Promise.all(sockets.map((s) => new Promise((r) => s.once("connect", r))));
  const [r1, c1, r2, c2] = sockets.map((s) => ({ s, inbox: new Inbox(s, "news", "marker") }));
  const room = unique("shared-name");
  for (const x of [r1, c1, r2, c2]) await emitAck(x.s, "join", room);
  await emitAck(c1.s, "broadcast", { to: [room], event: "news", self: true }, "custom only");
  assert.deepEqual(await settle(c1, [c1, c2], "mc"), [[["custom only"]], [["custom only"]]]);
  await emitAck(r2.s, "broadcast", { to: [room], event: "news", self: true }, "root only");
  assert.deepEqual(await settle(r2, [r1, r2], "mr"), [[["root only"]], [["root only"]]]);
  assert.equal(c1.inbox.all("news").length, 0, "/custom got nothing of /");
  assert.equal(c2.inbox.all("news").length, 0, "/custom got nothing of /");
});
