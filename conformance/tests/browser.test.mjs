// @server --app chat
// @targets tokio smol   (the chat application and its page are the volley crate's example;
//                          the event loop example serves the scenario application only)
//
// A real browser: headless Chromium (Debian's, driven by playwright-core) loads the chat
// example's page from the server, with the official client bundle served at /socket.io.js.
// Two pages connect over polling, upgrade to WebSocket, and chat: each sees the other's
// message and its own delivery mark (the ack). A screenshot is saved as evidence.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { SERVER_URL, scenario } from "./lib/harness.mjs";

const HERE = dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const SCREENSHOT = process.env.SCREENSHOT ?? join(HERE, "../../target/conformance/chat.png");
const WAIT = 15000;

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

async function openChat(context, nick) {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  page.on("dialog", (d) => d.dismiss()); // the nickname prompt must not appear (?nick=)
  await page.goto(`${SERVER_URL}/?nick=${encodeURIComponent(nick)}`);
  await page.waitForFunction(() => document.getElementById("status").textContent === "connected");
  // The official client: a Manager with an Engine.IO socket that upgrades to WebSocket.
  await page.waitForFunction(() => window.socket?.io?.engine?.transport?.name === "websocket");
  const polledFirst = await page.evaluate(() =>
    performance.getEntriesByType("resource").some((e) => /\/socket\.io\/\?EIO=4&transport=polling/.test(e.name)),
  );
  assert.ok(polledFirst, `${nick}: the connection started with HTTP long-polling`);
  assert.deepEqual(errors, [], `${nick}: no page errors`);
  return { page, errors };
}

async function send(page, text) {
  await page.fill("#text", text);
  await page.press("#text", "Enter");
}

function lines(page) {
  return page.$$eval("#log li", (lis) => lis.map((li) => ({ text: li.textContent, cls: li.className })));
}

scenario(
  "two browser pages chat over polling → WebSocket",
  async () => {
    // The page must use the official bundle, not the example's fallback client.
    const bundle = await (await fetch(`${SERVER_URL}/socket.io.js`)).text();
    const official = readFileSync(join(HERE, "../node_modules/socket.io-client/dist/socket.io.min.js"), "utf8");
    assert.equal(bundle, official, "/socket.io.js is node_modules/socket.io-client/dist/socket.io.min.js");

    const profile = mkdtempSync(join(tmpdir(), "volley-chromium-"));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: { width: 900, height: 500 },
      timeout: 30000,
    });
    try {
      const alice = await openChat(context, "alice");
      const bob = await openChat(context, "bob");
      assert.ok(
        await alice.page.evaluate(() => typeof window.io.Manager === "function" && typeof window.socket.io.engine.id === "string"),
        "the page runs the official client (a Manager over an Engine.IO socket)",
      );

      // Both appear in each other's user list.
      for (const { page } of [alice, bob]) {
        await page.waitForFunction(() => {
          const users = [...document.querySelectorAll("#users li")].map((li) => li.textContent);
          return users.includes("alice") && users.includes("bob");
        });
      }

      await send(alice.page, "hello bob, ça va? ✓");
      await bob.page.waitForFunction(() =>
        [...document.querySelectorAll("#log li")].some((li) => li.textContent === "alice: hello bob, ça va? ✓"),
      );
      await alice.page.waitForSelector("#log li.mine.delivered");

      await send(bob.page, "hi alice, über ✓");
      await alice.page.waitForFunction(() =>
        [...document.querySelectorAll("#log li")].some((li) => li.textContent === "bob: hi alice, über ✓"),
      );
      await bob.page.waitForSelector("#log li.mine.delivered");

      const aliceLog = await lines(alice.page);
      const bobLog = await lines(bob.page);
      assert.ok(
        aliceLog.some((l) => l.text === "alice: hello bob, ça va? ✓" && l.cls === "mine delivered"),
        `alice's own line is marked delivered: ${JSON.stringify(aliceLog)}`,
      );
      assert.ok(aliceLog.some((l) => l.text === "bob: hi alice, über ✓"), "alice got bob's message");
      assert.ok(
        bobLog.some((l) => l.text === "bob: hi alice, über ✓" && l.cls === "mine delivered"),
        `bob's own line is marked delivered: ${JSON.stringify(bobLog)}`,
      );
      assert.ok(bobLog.some((l) => l.text === "alice: hello bob, ça va? ✓"), "bob got alice's message");
      // Still on WebSocket after the exchange, and no page errors.
      for (const { page, errors } of [alice, bob]) {
        assert.equal(await page.evaluate(() => window.socket.io.engine.transport.name), "websocket");
        assert.deepEqual(errors, []);
      }

      mkdirSync(dirname(SCREENSHOT), { recursive: true });
      await alice.page.screenshot({ path: SCREENSHOT });
    } finally {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    }
  },
  { modes: ["upgrade"], timeout: 60000 },
);
