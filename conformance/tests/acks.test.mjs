// Acknowledgements both ways: the client asks and the server answers (several arguments,
// concurrently), the server asks and the client answers (the server reports the answer back
// through the ack of `ask`), and a server-side ack timeout when the client does not answer.

import assert from "node:assert/strict";
import { emitAck, scenario } from "./lib/harness.mjs";

scenario("client → server acks", async (ctx) => {
  const s = await ctx.connect();
  assert.deepEqual(await emitAck(s, "echo-ack", 1, "two", { three: 3 }), [1, "two", { three: 3 }]);
  // The promise form resolves with the first argument.
  assert.equal(await s.timeout(10000).emitWithAck("echo-ack", "first", "second"), "first");
  // Many in flight at once: each answer matches its own question.
  const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => emitAck(s, "echo-ack", i, `n${i}`)));
  answers.forEach((a, i) => assert.deepEqual(a, [i, `n${i}`]));
});

scenario("server → client acks", async (ctx) => {
  const s = await ctx.connect();
  const questions = [];
  s.on("question", (...args) => {
    const cb = args.pop();
    assert.equal(typeof cb, "function", "the server asked for an acknowledgement");
    questions.push(args);
    cb({ answered: args }, "and more", 7);
  });
  const answer = await emitAck(s, "ask", "what", { is: ["this"] });
  assert.deepEqual(questions, [["what", { is: ["this"] }]]);
  assert.deepEqual(answer, [{ answered: ["what", { is: ["this"] }] }, "and more", 7]);

  // Concurrent server-side acks on one socket keep their ids apart.
  const many = await Promise.all(Array.from({ length: 50 }, (_, i) => emitAck(s, "ask", i)));
  many.forEach((a, i) => assert.deepEqual(a, [{ answered: [i] }, "and more", 7]));
});

scenario("server → client acks in another namespace", async (ctx) => {
  const m = ctx.manager();
  const root = m.socket("/");
  const custom = m.socket("/custom");
  await Promise.all([root, custom].map((s) => new Promise((r) => s.once("connect", r))));
  root.on("question", (q, cb) => cb(`root:${q}`));
  custom.on("question", (q, cb) => cb(`custom:${q}`));
  assert.deepEqual(await emitAck(custom, "ask", "x"), ["custom:x"]);
  assert.deepEqual(await emitAck(root, "ask", "y"), ["root:y"]);
});

scenario("server → client ack that never comes times out on the server", async (ctx) => {
  const s = await ctx.connect();
  let asked = 0;
  s.on("question", () => {
    asked += 1; // no answer
  });
  const [result] = await emitAck(s, "ask-short", "hello?");
  assert.equal(asked, 1);
  assert.deepEqual(result, { ackError: "operation has timed out" });
  // The socket still works.
  assert.deepEqual(await emitAck(s, "echo-ack", "still here"), ["still here"]);
});
