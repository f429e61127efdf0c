// The line protocol between tests/interop.rs and the interop-*.mjs scripts.
//
// Commands arrive on stdin, one JSON object a line: {"id": n, "op": "name", "args": {...}}.
// Each gets one answer line on stdout: {"id": n, "ok": value} or {"id": n, "error": "..."}.
// Lines without an id are reports the script sends on its own ({"report": "kind", ...}).
// Binary values travel as {"$bin": "<base64>"} both ways.
//
// The script exits when stdin closes (the test ended or died), and in any case after
// VOLLEY_INTEROP_LIFETIME_MS (default 180 s), so it never outlives its test.

import { createInterface } from "node:readline";

/** Writes one line to the test. */
export function send(message) {
  process.stdout.write(JSON.stringify(message) + "\n");
}

/** Sends a report (a line without an id). */
export function report(kind, fields) {
  send({ report: kind, ...fields });
}

/** Buffers and typed arrays as {"$bin": base64}; functions dropped; the rest as is. */
export function toWire(value) {
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) {
    return { $bin: Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString("base64") };
  }
  if (value instanceof ArrayBuffer) {
    return { $bin: Buffer.from(value).toString("base64") };
  }
  if (Array.isArray(value)) {
    return value.filter((v) => typeof v !== "function").map(toWire);
  }
  if (value instanceof Set) {
    return [...value].map(toWire);
  }
  if (value !== null && typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) {
      if (typeof v !== "function" && v !== undefined) out[k] = toWire(v);
    }
    return out;
  }
  return value;
}

/** The inverse of toWire: {"$bin": base64} back to a Buffer. */
export function fromWire(value) {
  if (Array.isArray(value)) {
    return value.map(fromWire);
  }
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value);
    if (keys.length === 1 && keys[0] === "$bin") {
      return Buffer.from(value.$bin, "base64");
    }
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = fromWire(v);
    return out;
  }
  return value;
}

/** Splits a trailing acknowledgement callback off an argument list. */
export function splitAck(args) {
  if (args.length > 0 && typeof args[args.length - 1] === "function") {
    return [args.slice(0, -1), args[args.length - 1]];
  }
  return [args, null];
}

/**
 * Answers commands with `ops` (name -> async (args) => result) until stdin closes; `onClose`
 * runs before the process exits.
 */
export function serve(ops, onClose = () => {}) {
  const lifetime = Number(process.env.VOLLEY_INTEROP_LIFETIME_MS ?? 180000);
  setTimeout(() => {
    process.stderr.write(`lifetime of ${lifetime} ms reached, exiting\n`);
    process.exit(3);
  }, lifetime).unref();

  const lines = createInterface({ input: process.stdin });
  lines.on("line", async (line) => {
    let command;
    try {
      command = JSON.parse(line);
    } catch {
      send({ report: "bad-line", line });
      return;
    }
    const { id, op, args } = command;
    try {
      const handler = ops[op];
      if (!handler) throw new Error(`unknown op ${op}`);
      const result = await handler(fromWire(args ?? {}));
      send({ id, ok: toWire(result ?? null) });
    } catch (e) {
      send({ id, error: String(e?.stack ?? e) });
    }
  });
  lines.on("close", async () => {
    // Closing gets a moment, not more: the process must go.
    const grace = new Promise((resolve) => setTimeout(resolve, 2000).unref());
    try {
      await Promise.race([onClose(), grace]);
    } finally {
      process.exit(0);
    }
  });
}
