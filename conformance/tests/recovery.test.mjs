// @server --app recovery
// @targets tokio smol   (its handlers, src/recovery.rs, are written for the volley crate;
//                          the event loop example serves the scenario application only)
//
// Connection state recovery (Socket.IO 4.6) with the official client, against a server of
// its own (`--app recovery`: a 3 s window, the middleware skipped on a recovered connect;
// see src/recovery.rs for its handlers).
//
// With recovery on, the server sends its private id (`pid`) in the CONNECT reply and appends
// an offset to every event it sends without acknowledgement. The client does not strip the
// offset: handlers get it as their last argument, and the client remembers the latest one.
// When a connection drops for a reason the server deems recoverable ("transport close" here)
// the server keeps the socket's session for the window; a client that reconnects in time
// offers `{pid, offset}` in its CONNECT and gets its socket back (same id, rooms, data, and
// every event after its offset, replayed), `socket.recovered` telling it so.
//
// How the transport is dropped: on a WebSocket the socket itself is closed (what a network
// failure looks like to both sides: "transport close"); over polling the client's engine is
// closed (its reason is "forced close", and it writes a close packet, which the server
// reports as "transport close"). Either way the client's Manager reconnects by itself.
//
// The scenarios are declared by `recoveryScenarios(variant)`; the variant names the client
// options the connections use (a parser, say), so that another variant is one more call with
// the server's matching option in its own file.

import assert from "node:assert/strict";
import {
  connected,
  emitAck,
  EVENT_TIMEOUT,
  Inbox,
  once,
  onTransport,
  scenario,
  unique,
  withTimeout,
} from "./lib/harness.mjs";

/** The pace of a stream, and how many ticks it sends once the socket is back. */
const EVERY_MS = 20;
const AFTER_RETURN = 40;
/** The most ticks a stream sends (a bound for a scenario gone wrong: 8 s at 20 ms). */
const MAX_TICKS = 400;
/** Ticks received before the transport is dropped. */
const BEFORE_DROP = 25;
/** Every how many ticks `own-tick` carries an attachment. */
const BINARY_EVERY = 10;
/** The reconnection delay of clients meant to come back within the window. */
const QUICK_RETURN_MS = 1000;

/** The offset the server appended: the last argument, a string. */
function offsetOf(args, what) {
  const offset = args[args.length - 1];
  assert.equal(typeof offset, "string", `${what} carries an offset as its last argument`);
  return offset;
}

/** What the server's `welcome` says, without the window (the caller reads it apart). */
function summary(welcome) {
  const { recovered, offered, connections, middlewareRuns } = welcome;
  return { recovered, offered, connections, middlewareRuns };
}

/** The `/admin` report of socket `id` leaving `/`. */
function departure(admin, id) {
  return withTimeout(
    new Promise((resolve) => {
      const on = (report) => {
        if (report.nsp === "/" && report.id === id) {
          admin.off("left", on);
          resolve(report);
        }
      };
      admin.on("left", on);
    }),
    EVENT_TIMEOUT,
    `the server to report ${id} gone`,
  );
}

/**
 * Drops the connection under `s` without a Socket.IO DISCONNECT, and returns the reason
 * the client will give.
 */
function dropTransport(s) {
  const engine = s.io.engine;
  if (engine.transport.name === "websocket") {
    engine.transport.ws.close();
    return "transport close";
  }
  engine.close();
  return "forced close";
}

/**
 * Declares the recovery scenarios for one client variant: `{ name, client }`, `client`
 * being extra options of every connection.
 */
function recoveryScenarios(variant) {
  /** A socket on `/` named `key` for the server's counts (not yet connected). */
  function clientSocket(ctx, key, extra = {}) {
    return ctx.socket("/", { ...variant.client, auth: { client: key }, ...extra });
  }

  /** Options of a client that reconnects by itself, always after `delay` ms. */
  function reconnecting(delay) {
    return {
      reconnection: true,
      reconnectionDelay: delay,
      reconnectionDelayMax: delay,
      randomizationFactor: 0,
    };
  }

  /**
   * Drops the transport of connected socket `s` and waits for its reconnection: asserts the
   * reasons on both sides (the server's is recoverable) and returns when the drop happened.
   */
  async function dropAndReconnect(s, admin, ms = EVENT_TIMEOUT) {
    const left = departure(admin, s.id);
    const disconnected = once(s, "disconnect");
    const reconnected = once(s.io, "reconnect", ms);
    const droppedAt = Date.now();
    const expected = dropTransport(s);
    const [reason] = await disconnected;
    assert.equal(reason, expected, "the client's reason");
    assert.equal((await left).reason, "transport close", "the server's reason (recoverable)");
    await reconnected;
    await connected(s, "the reconnection");
    return droppedAt;
  }

  scenario(`${variant.name}: the transport drops mid-stream; the socket is recovered and every event arrives once, in order`, async (ctx) => {
    const admin = await ctx.connect("/admin", { transports: ["websocket"] });
    const key = unique("stream");
    const room = unique("room");
    const s = clientSocket(ctx, key, reconnecting(QUICK_RETURN_MS));
    const inbox = new Inbox(s, "welcome", "own-tick", "stream-end");
    // Every tick of this stream, in arrival order, with its offset and its attachment.
    const log = [];
    const offsets = [];
    const attachments = [];
    for (const kind of ["room", "all", "own"]) {
      s.on(`${kind}-tick`, (...args) => {
        const [tick] = args;
        if (tick.stream !== key) return;
        log.push(`${kind} ${tick.n}`);
        offsets.push(args[args.length - 1]);
        if (kind === "own" && tick.n % BINARY_EVERY === 0) {
          attachments.push([tick.n, args.length === 3 ? [...args[1]] : null]);
        }
      });
    }
    await connected(s);
    assert.equal(s.recovered, false, "a first connection is not recovered");
    const [[first]] = await inbox.until("welcome", 1);
    assert.deepEqual(summary(first), { recovered: false, offered: false, connections: 1, middlewareRuns: 1 });
    assert.equal(first.id, s.id);
    assert.deepEqual(await emitAck(s, "join", room), [room]);
    // A drop in the middle of the upgrade is upgrade.test.mjs's business.
    if (ctx.mode === "upgrade") await onTransport(s, "websocket");
    const id = s.id;
    const engineId = s.io.engine.id;

    const spec = {
      key,
      room,
      everyMs: EVERY_MS,
      afterReturn: AFTER_RETURN,
      max: MAX_TICKS,
      binaryEvery: BINARY_EVERY,
    };
    assert.deepEqual(await emitAck(s, "stream", spec), ["started"]);
    await inbox.until("own-tick", BEFORE_DROP);
    await dropAndReconnect(s, admin);
    assert.equal(s.recovered, true, "the socket is recovered");
    assert.equal(s.id, id, "the same socket id");
    assert.notEqual(s.io.engine.id, engineId, "a new Engine.IO session");

    const [[end]] = await inbox.until("stream-end", 1, MAX_TICKS * EVERY_MS + EVENT_TIMEOUT);
    assert.ok(end.away > 0, `ticks were sent while the client was away (${end.away} of ${end.count})`);
    assert.ok(end.count < MAX_TICKS, "the stream saw the socket come back");
    const expected = [];
    for (let n = 0; n < end.count; n += 1) expected.push(`room ${n}`, `all ${n}`, `own ${n}`);
    assert.deepEqual(log, expected, "every tick once, in the order sent");
    assert.ok(offsets.every((o) => typeof o === "string"), "every tick carries an offset");
    assert.equal(new Set(offsets).size, offsets.length, "every tick its own offset");
    const binary = [];
    for (let n = 0; n < end.count; n += BINARY_EVERY) binary.push([n, [n % 256, n % 256, n % 256]]);
    assert.deepEqual(attachments, binary, "every attachment, intact");

    // The connection handler ran again, the middleware did not.
    const [, [second]] = await inbox.until("welcome", 2);
    assert.deepEqual(summary(second), { recovered: true, offered: true, connections: 2, middlewareRuns: 1 });
    assert.equal(second.id, id);
    // The room membership came back with the socket.
    const [rooms] = await emitAck(s, "rooms");
    assert.deepEqual(rooms, [id, room].sort());
    const check = once(s, "room-check");
    assert.deepEqual(await emitAck(s, "broadcast", { to: [room], event: "room-check", self: true }), ["sent"]);
    const args = await check;
    assert.deepEqual(args.slice(0, -1), [{ to: [room], event: "room-check", self: true }]);
    offsetOf(args, "room-check");
  });

  scenario(`${variant.name}: back after the window, the client gets a new socket and the connection handler runs again`, async (ctx) => {
    const admin = await ctx.connect("/admin", { transports: ["websocket"] });
    const key = unique("late");
    const room = unique("room");
    const s = clientSocket(ctx, key);
    const inbox = new Inbox(s, "welcome");
    await connected(s);
    const [[first, offset]] = await inbox.until("welcome", 1);
    assert.deepEqual(summary(first), { recovered: false, offered: false, connections: 1, middlewareRuns: 1 });
    assert.equal(typeof offset, "string", "the client holds an offset to offer");
    assert.deepEqual(await emitAck(s, "join", room), [room]);
    if (ctx.mode === "upgrade") await onTransport(s, "websocket");
    // The automatic reconnection comes well after the window.
    const late = first.windowMs + 1500;
    s.io.reconnection(true);
    s.io.reconnectionDelay(late);
    s.io.reconnectionDelayMax(late);
    s.io.randomizationFactor(0);
    const id = s.id;
    const droppedAt = await dropAndReconnect(s, admin, late + EVENT_TIMEOUT);
    assert.ok(Date.now() - droppedAt > first.windowMs, "the client came back after the window");
    assert.equal(s.recovered, false, "too late to recover");
    assert.notEqual(s.id, id, "a new socket id");

    const [, [second]] = await inbox.until("welcome", 2);
    assert.deepEqual(summary(second), { recovered: false, offered: true, connections: 2, middlewareRuns: 2 });
    assert.equal(second.id, s.id);
    const [rooms] = await emitAck(s, "rooms");
    assert.deepEqual(rooms, [s.id], "a fresh socket, in no room of the old one");
    const [data] = await emitAck(s, "data");
    assert.deepEqual(data, { client: key, firstId: s.id }, "fresh data");
  });

  scenario(`${variant.name}: a client without a valid session is not recovered`, async (ctx) => {
    // A first connection: the reply carries a pid (`recovered` is `false`, not undefined).
    const key = unique("first");
    const s = clientSocket(ctx, key);
    const inbox = new Inbox(s, "welcome");
    await connected(s);
    assert.equal(s.recovered, false);
    const [[welcome]] = await inbox.until("welcome", 1);
    assert.deepEqual(summary(welcome), { recovered: false, offered: false, connections: 1, middlewareRuns: 1 });

    // A made-up session: the server runs the middleware and makes a new socket.
    const forger = unique("forged");
    const f = ctx.socket("/", {
      ...variant.client,
      auth: { client: forger, pid: "not-a-session", offset: "not-an-offset" },
    });
    const forged = new Inbox(f, "welcome");
    await connected(f);
    assert.equal(f.recovered, false);
    const [[w]] = await forged.until("welcome", 1);
    assert.deepEqual(summary(w), { recovered: false, offered: true, connections: 1, middlewareRuns: 1 });
    assert.notEqual(f.id, s.id);
  });

  scenario(`${variant.name}: a recovered connect skips the middleware and keeps the socket's data`, async (ctx) => {
    const admin = await ctx.connect("/admin", { transports: ["websocket"] });
    const key = unique("mw");
    const s = clientSocket(ctx, key, reconnecting(QUICK_RETURN_MS));
    const inbox = new Inbox(s, "welcome");
    await connected(s);
    const [[first]] = await inbox.until("welcome", 1);
    assert.equal(first.middlewareRuns, 1);
    const [data] = await emitAck(s, "data");
    assert.deepEqual(data, { client: key, firstId: s.id });
    if (ctx.mode === "upgrade") await onTransport(s, "websocket");
    const id = s.id;
    await dropAndReconnect(s, admin);
    assert.equal(s.recovered, true);
    assert.equal(s.id, id);
    const [, [second]] = await inbox.until("welcome", 2);
    assert.deepEqual(summary(second), { recovered: true, offered: true, connections: 2, middlewareRuns: 1 });
    assert.deepEqual(await emitAck(s, "data"), [data], "the data came back with the socket");
  });
}

recoveryScenarios({ name: "default parser", client: {} });
