// Shared helpers of the scenarios: the server URL, the three transport modes, promises with
// time limits, and a per-test context that closes every socket it opened.
//
// Nothing here waits for a fixed time: every wait is on an event, bounded by a timeout that
// fails the test with a message naming what did not happen.

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { io, Manager } from "socket.io-client";

/** The server under test, e.g. `http://127.0.0.1:3000` (set by tests/run.rs, or by hand). */
export const SERVER_URL = process.env.SERVER_URL;
if (!SERVER_URL) {
  throw new Error(
    "SERVER_URL is not set: start `conformance-server` and run " +
      "`SERVER_URL=http://127.0.0.1:<port> node --test tests/<file>.test.mjs` (see conformance/README.md)",
  );
}

/** The runtime the server runs on, for messages only. */
export const RUNTIME = process.env.RUNTIME ?? "unknown runtime";

/** Client options of each transport mode. */
export const MODES = {
  polling: { transports: ["polling"] },
  websocket: { transports: ["websocket"] },
  upgrade: {}, // the default: polling first, then the upgrade to WebSocket
};

/** The time limit of one scenario in one mode. */
export const SCENARIO_TIMEOUT = Number(process.env.SCENARIO_TIMEOUT_MS ?? 30000);

/** The time limit of one expected event. */
export const EVENT_TIMEOUT = Number(process.env.EVENT_TIMEOUT_MS ?? 10000);

/** `promise`, or a rejection naming `what` after `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer));
}

/** The arguments of the next `event` from `emitter` (any emitter with `once`). */
export function once(emitter, event, ms = EVENT_TIMEOUT) {
  return withTimeout(
    new Promise((resolve) => emitter.once(event, (...args) => resolve(args))),
    ms,
    `event "${event}"`,
  );
}

/** Emits `event` with `args` and resolves with every argument of the acknowledgement. */
export function emitAck(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    socket.timeout(EVENT_TIMEOUT).emit(event, ...args, (err, ...answer) => {
      if (err) reject(new Error(`no acknowledgement of "${event}" within ${EVENT_TIMEOUT} ms: ${err.message}`));
      else resolve(answer);
    });
  });
}

/** Records every occurrence of some events of a socket, and waits for counts of them. */
export class Inbox {
  constructor(socket, ...events) {
    this.events = new Map();
    this.waiters = [];
    for (const event of events) {
      this.events.set(event, []);
      socket.on(event, (...args) => {
        this.events.get(event).push(args);
        this.waiters = this.waiters.filter((w) => !w());
      });
    }
  }

  /** The argument lists received so far for `event`. */
  all(event) {
    return this.events.get(event);
  }

  /** Resolves with the argument lists of `event` once `count` of them arrived. */
  until(event, count = 1, ms = EVENT_TIMEOUT) {
    const list = this.all(event);
    if (!list) throw new Error(`the inbox does not record "${event}"`);
    return withTimeout(
      new Promise((resolve) => {
        const check = () => {
          if (list.length >= count) {
            resolve(list.slice());
            return true;
          }
          return false;
        };
        if (!check()) this.waiters.push(check);
      }),
      ms,
      `${count} "${event}" event(s) (got ${list.length})`,
    );
  }
}

/** A test's sockets and managers, closed when the test ends. */
export class Ctx {
  constructor(mode) {
    this.mode = mode;
    this.closables = [];
  }

  /** Client options for this mode, with `extra` on top. */
  opts(extra = {}) {
    return { forceNew: true, reconnection: false, ...MODES[this.mode], ...extra };
  }

  /** A socket for `nsp` (not yet connected when returned). */
  socket(nsp = "/", extra = {}) {
    const s = io(SERVER_URL + (nsp === "/" ? "" : nsp), this.opts(extra));
    this.closables.push(() => s.disconnect());
    return s;
  }

  /** A Manager (one Engine.IO connection) whose sockets are multiplexed on it. */
  manager(extra = {}) {
    const { forceNew: _, ...opts } = this.opts(extra);
    const m = new Manager(SERVER_URL, { autoConnect: true, ...opts });
    this.closables.push(() => m.disconnect());
    return m;
  }

  /** A connected socket for `nsp`; rejects with the connect error. */
  async connect(nsp = "/", extra = {}) {
    return connected(this.socket(nsp, extra), `connect to ${nsp}`);
  }

  /** Closes everything the test opened. */
  close() {
    for (const c of this.closables.splice(0)) {
      try {
        c();
      } catch {
        // already closed
      }
    }
  }
}

/** Resolves with `socket` once it is connected; rejects with its connect error. */
export function connected(socket, what = "connect") {
  if (socket.connected) return Promise.resolve(socket);
  return withTimeout(
    new Promise((resolve, reject) => {
      const ok = () => {
        socket.off("connect_error", ko);
        resolve(socket);
      };
      const ko = (err) => {
        socket.off("connect", ok);
        reject(err);
      };
      socket.once("connect", ok);
      socket.once("connect_error", ko);
    }),
    EVENT_TIMEOUT,
    what,
  );
}

/** Resolves once the socket's connection runs on `name` (waiting for the upgrade if needed). */
export function onTransport(socket, name) {
  const engine = socket.io.engine;
  if (engine.transport.name === name) return Promise.resolve();
  return withTimeout(
    new Promise((resolve, reject) => {
      engine.on("upgrade", (t) => (t.name === name ? resolve() : reject(new Error(`upgraded to ${t.name}`))));
    }),
    EVENT_TIMEOUT,
    `the upgrade to ${name}`,
  );
}

/**
 * Declares `name` as one test per transport mode (`modes`, all three by default); `fn` gets
 * a fresh context (closed afterwards) and the node:test context.
 */
export function scenario(name, fn, { modes = Object.keys(MODES), timeout = SCENARIO_TIMEOUT } = {}) {
  describe(`${name} [${RUNTIME}]`, () => {
    for (const mode of modes) {
      test(mode, { timeout }, async (t) => {
        const ctx = new Ctx(mode);
        try {
          await fn(ctx, t);
        } finally {
          ctx.close();
        }
      });
    }
  });
}

/** The reasons of the socket's `disconnect` events, up to the first "io server disconnect". */
export function serverDisconnectReasons(socket, ms = EVENT_TIMEOUT) {
  const reasons = [];
  return withTimeout(
    new Promise((resolve) => {
      const on = (reason) => {
        reasons.push(reason);
        if (reason === "io server disconnect" || reasons.length > 2) {
          socket.off("disconnect", on);
          resolve(reasons);
        }
      };
      socket.on("disconnect", on);
    }),
    ms,
    `"io server disconnect" (got ${JSON.stringify(reasons)})`,
  );
}

/**
 * Asserts that a server disconnect (`41` then, for `disconnect(true)`, the close) reached
 * the socket as "io server disconnect" alone: the close packet never shares a payload with
 * queued packets, which clients would act on after it.
 */
export function assertServerDisconnect(_t, reasons) {
  assert.deepEqual(reasons, ["io server disconnect"]);
}

/** A new name, unique in this process (rooms, nicknames). */
let counter = 0;
export function unique(prefix) {
  counter += 1;
  return `${prefix}-${process.pid}-${counter}`;
}
