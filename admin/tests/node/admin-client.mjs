// The official socket.io-client speaking the Admin UI protocol, as the dashboard does, to a
// server at argv[2] instrumented with username argv[3] and password argv[4]. Prints one JSON
// line of what it saw; the Rust test checks it.
import { io } from "socket.io-client";

const [url, username, password] = process.argv.slice(2);
const opts = { transports: ["websocket"], reconnection: false, forceNew: true };

const once = (socket, event, ms = 5000) =>
  new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} in ${ms} ms`)), ms);
    socket.once(event, (...args) => {
      clearTimeout(t);
      resolve(args);
    });
  });

// The first `event` whose arguments `pred` accepts.
const onceWhere = (socket, event, pred, ms = 5000) =>
  new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no matching ${event} in ${ms} ms`)), ms);
    const check = (...args) => {
      if (pred(...args)) {
        clearTimeout(t);
        socket.off(event, check);
        resolve(args);
      }
    };
    socket.on(event, check);
  });

const out = {};
let upgrading;
try {
  const user = io(url, opts);
  await once(user, "connect");
  out.userId = user.id;

  // A wrong password is refused with the reference's message.
  const bad = io(`${url}/admin`, { ...opts, auth: { username, password: "nope" } });
  out.badLogin = (await once(bad, "connect_error"))[0].message;
  bad.close();

  const admin = io(`${url}/admin`, { ...opts, auth: { username, password } });
  const session = once(admin, "session");
  const config = once(admin, "config");
  const stats = once(admin, "server_stats");
  const all = once(admin, "all_sockets");
  await once(admin, "connect");
  [out.session] = await session;
  [out.config] = await config;
  [out.stats] = await stats;
  [out.allSockets] = await all;

  // A new socket shows up, then the room its connection handler joins.
  const sequence = [];
  const record = (event, ...args) => sequence.push([event, ...args.slice(0, 3)]);
  admin.onAny(record);
  const lobby = onceWhere(admin, "room_joined", (_nsp, room) => room === "lobby");
  const connected = once(admin, "socket_connected");
  const other = io(url, opts);
  // The dashboard may hear of the socket before the socket hears its CONNECT reply.
  [[out.connected]] = await Promise.all([connected, once(other, "connect")]);
  out.otherId = other.id;
  await lobby;
  admin.offAny(record);
  out.sequence = sequence
    .filter(([event]) => event !== "server_stats")
    .map(([event, a, b]) => (event === "socket_connected" ? [event, a.id] : [event, b]));

  // Rooms joined and left from the dashboard are reported with their socket.
  const joined = onceWhere(admin, "room_joined", (_nsp, room) => room === "team");
  admin.emit("join", "/", "team", other.id);
  out.roomJoined = await joined;
  const left = onceWhere(admin, "room_left", (_nsp, room) => room === "team");
  admin.emit("leave", "/", "team", other.id);
  out.roomLeft = await left;

  // An event the socket sends is reported as the dashboard's events list shows it.
  const received = once(admin, "event_received");
  other.emit("hello", 1, "two");
  out.eventReceived = await received;

  // Data the server stores for the socket: `socket_updated` with the data.
  const dataUpdated = onceWhere(admin, "socket_updated", (u) => u.data !== undefined);
  other.emit("rename", "zoe");
  [out.dataUpdated] = await dataUpdated;

  // A client that opens over polling and upgrades: `socket_updated` with the new transport.
  const pollingConnected = once(admin, "socket_connected");
  const updated = onceWhere(admin, "socket_updated", (u) => u.transport !== undefined);
  upgrading = io(url, { ...opts, transports: ["polling", "websocket"] });
  [[out.pollingConnected]] = await Promise.all([pollingConnected, once(upgrading, "connect")]);
  out.upgradingId = upgrading.id;
  [out.updated] = await updated;

  // Disconnect the first user from the dashboard (filter: the room of its id).
  const gone = once(admin, "socket_disconnected");
  const userGone = once(user, "disconnect");
  admin.emit("_disconnect", "/", false, out.userId);
  out.disconnected = await gone;
  [out.userReason] = await userGone;

  // The periodic stats carry the traffic since the previous ones, for the charts.
  const withEvents = new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("no aggregatedEvents in 7000 ms")), 7000);
    const check = (stats) => {
      if (stats.aggregatedEvents?.some((e) => e.type === "rawConnection")) {
        clearTimeout(t);
        admin.off("server_stats", check);
        resolve(stats);
      }
    };
    admin.on("server_stats", check);
  });
  out.statsWithEvents = await withEvents;

  // The session id logs in alone.
  const again = io(`${url}/admin`, { ...opts, auth: { sessionId: out.session } });
  await once(again, "connect");
  out.sessionLogin = true;
  for (const s of [again, admin, other, upgrading]) s.close();
  console.log(JSON.stringify(out));
  process.exit(0);
} catch (e) {
  console.log(JSON.stringify({ error: String(e), partial: out }));
  process.exit(1);
}
