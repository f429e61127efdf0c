// A WebSocket message over `maxHttpBufferSize` closes the socket with close code 1009
// (message too big), as the reference does, after the open packet.

import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import { SERVER_URL, RUNTIME, withTimeout } from "./lib/harness.mjs";

test(`a WebSocket message over maxHttpBufferSize is closed with 1009 [${RUNTIME}]`, async () => {
  const ws = new WebSocket(SERVER_URL.replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket");
  const messages = [];
  ws.on("message", (data) => messages.push(data.toString()));
  const closed = withTimeout(
    new Promise((resolve, reject) => {
      ws.once("error", reject);
      ws.once("close", (code) => resolve(code));
    }),
    10000,
    "the close",
  );
  await withTimeout(new Promise((r) => ws.once("open", r)), 10000, "the open");
  // Sent at once, before the open packet is read. The conformance servers accept 2 MB.
  ws.send("4" + "x".repeat(2_000_001));
  assert.equal(await closed, 1009);
  assert.match(messages[0] ?? "", /^0\{/, "the open packet came first");
});
