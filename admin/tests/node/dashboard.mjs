// The real Admin UI dashboard (the built `ui/dist` of @socket.io/admin-ui, served by the
// Volley server under test at argv[2]/admin-ui/) in headless Chromium: log in with username
// argv[3] and password argv[4], see the server, a socket connected by the official client
// and its room "lobby", and disconnect that socket with the row's button (its rooms go with
// it). Prints one JSON line of what it
// saw; the Rust test checks it and the server's side.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { io } from "socket.io-client";

const [base, username, password] = process.argv.slice(2);
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const WAIT = 15000;
const out = {};
const profile = mkdtempSync(join(tmpdir(), "volley-admin-ui-"));
let context;
try {
  const user = io(base, { transports: ["websocket"], reconnection: false });
  await new Promise((resolve, reject) => {
    user.once("connect", resolve);
    user.once("connect_error", reject);
  });
  out.userId = user.id;
  const userGone = new Promise((resolve) => user.once("disconnect", resolve));

  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    locale: "en-US",
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(WAIT);
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  // Fonts and icons come from CDNs: nothing leaves this machine.
  await page.route("**/*", (route) =>
    new URL(route.request().url()).hostname === "127.0.0.1" ? route.continue() : route.abort(),
  );
  await page.goto(`${base}/admin-ui/`);
  await page.getByLabel("Server URL").fill(base);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Connect" }).click();
  await page.getByRole("dialog").waitFor({ state: "hidden" });

  await page.goto(`${base}/admin-ui/#/servers/`);
  await page.getByText("volley-ui-test").first().waitFor();
  out.serverShown = true;

  await page.goto(`${base}/admin-ui/#/rooms/`);
  await page.getByText("lobby").first().waitFor();
  out.roomShown = true;

  await page.goto(`${base}/admin-ui/#/sockets/`);
  const row = page.locator("tbody tr", { hasText: out.userId }).first();
  await row.waitFor();
  out.socketListed = true;
  await row.getByRole("button").click();
  out.userReason = await userGone;
  // The click also opens the socket's page: back to the list, where its row is gone.
  await page.goto(`${base}/admin-ui/#/sockets/`);
  await page.waitForFunction(
    (id) => ![...document.querySelectorAll("tbody tr")].some((r) => r.textContent.includes(id)),
    out.userId,
  );
  out.rowRemoved = true;
  // Its rooms are gone too: the dashboard drops a room on the `room_left` of its last socket.
  await page.goto(`${base}/admin-ui/#/rooms/`);
  await page.waitForFunction(
    (id) => {
      const text = [...document.querySelectorAll("tbody tr")].map((r) => r.textContent).join();
      return !text.includes("lobby") && !text.includes(id);
    },
    out.userId,
  );
  out.roomsRemoved = true;
  out.pageErrors = errors;
  console.log(JSON.stringify(out));
  await context.close();
  rmSync(profile, { recursive: true, force: true });
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ error: String(e), partial: out }));
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  process.exit(1);
}
