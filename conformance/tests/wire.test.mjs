// Wire details where the reference server's behaviour is easy to miss, checked with raw
// requests and a raw WebSocket (the `ws` package the clients use), not the Socket.IO client:
// a second WebSocket for a session that already has one, and a polling body over
// `maxHttpBufferSize`.

import assert from "node:assert/strict";
import http from "node:http";
import { test } from "node:test";
import WebSocket from "ws";
import { SERVER_URL, RUNTIME, withTimeout } from "./lib/harness.mjs";

const PATH = "/socket.io/";
const WS_URL = SERVER_URL.replace(/^http/, "ws") + PATH;
const LIMIT = 10000;

/** The next message of `ws`, as text. */
function nextMessage(ws) {
  return withTimeout(
    new Promise((resolve, reject) => {
      ws.once("message", (data) => resolve(data.toString()));
      ws.once("error", reject);
    }),
    LIMIT,
    "a WebSocket message",
  );
}

/** How `ws` ended: `{ opened, code }`, or rejects on an `error` event. */
function ending(ws) {
  return withTimeout(
    new Promise((resolve, reject) => {
      let opened = false;
      ws.once("open", () => (opened = true));
      ws.once("error", reject);
      ws.once("close", (code) => resolve({ opened, code }));
    }),
    LIMIT,
    "the WebSocket to close",
  );
}

/** A raw HTTP request; resolves with `{ status, body }`. */
function request(method, query, body) {
  return withTimeout(
    new Promise((resolve, reject) => {
      const req = http.request(`${SERVER_URL}${PATH}?${query}`, { method, agent: false }, (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode, body: text }));
        res.on("error", () => resolve({ status: res.statusCode, body: text }));
      });
      req.on("error", reject);
      if (body !== undefined) req.setHeader("Content-Length", Buffer.byteLength(body));
      req.end(body);
    }),
    LIMIT,
    `${method} ${query}`,
  );
}

function sidOf(open) {
  assert.match(open, /^0\{/);
  return JSON.parse(open.slice(1)).sid;
}

test(`a second WebSocket for an upgraded session is accepted, then closed [${RUNTIME}]`, async () => {
  const first = new WebSocket(`${WS_URL}?EIO=4&transport=websocket`);
  try {
    const sid = sidOf(await nextMessage(first));
    const second = new WebSocket(`${WS_URL}?EIO=4&transport=websocket&sid=${sid}`);
    // The reference completes the handshake and closes the socket (no close code): a
    // client sees `close`, not `error` as it would for an HTTP refusal.
    const { opened, code } = await ending(second);
    assert.ok(opened, "the handshake completed");
    assert.equal(code, 1005);
    // The session goes on over the first socket.
    first.send("40");
    assert.match(await nextMessage(first), /^40\{"sid":/);
  } finally {
    first.close();
  }
});

test(`a second WebSocket beside a probe in flight is accepted, then closed [${RUNTIME}]`, async () => {
  const open = await request("GET", "EIO=4&transport=polling");
  assert.equal(open.status, 200);
  const sid = sidOf(open.body);
  const probe = new WebSocket(`${WS_URL}?EIO=4&transport=websocket&sid=${sid}`);
  try {
    await withTimeout(new Promise((r) => probe.once("open", r)), LIMIT, "the probe to open");
    const second = new WebSocket(`${WS_URL}?EIO=4&transport=websocket&sid=${sid}`);
    const { opened, code } = await ending(second);
    assert.ok(opened, "the handshake completed");
    assert.equal(code, 1005);
    probe.send("2probe");
    assert.equal(await nextMessage(probe), "3probe");
  } finally {
    probe.close();
  }
});

test(`a polling body over maxHttpBufferSize gets 413 and closes the session [${RUNTIME}]`, async () => {
  const open = await request("GET", "EIO=4&transport=polling");
  const sid = sidOf(open.body);
  // The conformance servers accept 2 MB.
  const big = "4" + "x".repeat(2_000_001);
  const posted = await request("POST", `EIO=4&transport=polling&sid=${sid}`, big);
  assert.equal(posted.status, 413);
  // engine.io 6.6 closes the session ("payload too large"); older versions kept it.
  const after = await request("GET", `EIO=4&transport=polling&sid=${sid}`);
  assert.equal(after.status, 400);
  assert.deepEqual(JSON.parse(after.body), { code: 1, message: "Session ID unknown" });
});
