// Events and their arguments: strings (unicode, emoji, U+2028/U+2029, escapes), nested
// objects whose key order must survive the server, integers and floats, null, booleans,
// arrays, several arguments and none; both as an event emitted back and as an ack.

import assert from "node:assert/strict";
import { emitAck, once, scenario } from "./lib/harness.mjs";

const STRINGS = [
  "",
  "plain ascii",
  "héllo wörld ñ ß",
  "emoji 🎉🚀👩‍👩‍👧‍👦 and a lone surrogate-free flag 🇫🇷",
  "line\u2028separator\u2029paragraph",
  "quotes \" ' backslash \\ slash / tab \t newline \n cr \r nul-free",
  "日本語のテキスト",
  "\u0001\u001f control characters",
  "x".repeat(10000),
];

const NESTED = {
  zeta: 1,
  alpha: { yankee: [1, { z: null, a: true }], bravo: "b" },
  mike: [],
  "key with spaces": {},
  "ключ": "значение",
  _placeholderish: { _placeholder: false },
  charlie: [[[]], [{}]],
};

const NUMBERS = [0, 1, -1, 42, 2 ** 31, -(2 ** 31), 2 ** 53 - 1, -(2 ** 53 - 1), 3.14, -0.5, 1e-7, 1.7976931348623157e308, 5e-324, 0.1 + 0.2, 1e21, 3.131513062514022e-294];

const ARGS = [
  ...STRINGS,
  NESTED,
  ...NUMBERS,
  null,
  true,
  false,
  [1, "two", [3, [4]], { five: 5 }, null, false],
];

scenario("an event with every argument type is emitted back intact", async (ctx) => {
  const s = await ctx.connect();
  const back = once(s, "echo");
  s.emit("echo", ...ARGS);
  const got = await back;
  assert.deepEqual(got, ARGS);
  // Key order survives (deepEqual does not check it).
  assert.equal(JSON.stringify(got), JSON.stringify(ARGS));
  assert.deepEqual(Object.keys(got[STRINGS.length]), Object.keys(NESTED));
  assert.deepEqual(Object.keys(got[STRINGS.length].alpha), ["yankee", "bravo"]);
  // Integers stay integers.
  for (const [i, n] of NUMBERS.entries()) {
    const v = got[STRINGS.length + 1 + i];
    assert.ok(Object.is(v, n) || (n === 0 && v === 0), `number ${n} came back as ${v}`);
    assert.equal(Number.isInteger(v), Number.isInteger(n), `${n} keeps its integer-ness`);
  }
});

scenario("the same arguments as an acknowledgement", async (ctx) => {
  const s = await ctx.connect();
  const got = await emitAck(s, "echo-ack", ...ARGS);
  assert.equal(JSON.stringify(got), JSON.stringify(ARGS));
});

scenario("one argument at a time, each type", async (ctx) => {
  const s = await ctx.connect("/custom");
  for (const arg of ARGS) {
    const [v] = await emitAck(s, "echo-ack", arg);
    assert.equal(JSON.stringify(v), JSON.stringify(arg));
  }
});

scenario("no arguments, and an ack with no arguments", async (ctx) => {
  const s = await ctx.connect();
  const back = once(s, "echo");
  s.emit("echo");
  assert.deepEqual(await back, []);
  assert.deepEqual(await emitAck(s, "echo-ack"), []);
});

scenario("unicode and odd characters in event names and namespaces' payloads", async (ctx) => {
  // The server routes by exact name: an unhandled unicode event is ignored, a handled one
  // answers; the ack shows the server kept the connection.
  const s = await ctx.connect();
  s.emit("événement 🎉\u2028", "ignored");
  const [who] = await emitAck(s, "whoami");
  assert.equal(who.id, s.id);
  const [v] = await emitAck(s, "echo-ack", { "🎉": "\u2028", "\u2029": ["🎉"] });
  assert.deepEqual(v, { "🎉": "\u2028", "\u2029": ["🎉"] });
});
