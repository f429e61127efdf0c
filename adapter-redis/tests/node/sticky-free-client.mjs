// Official socket.io-client sockets for tests/sticky_free, driven over the line protocol of
// interop-lines.mjs; the server they reach is a round-robin proxy in front of a cluster.
//
//   node sticky-free-client.mjs
//
// Reports {"report":"ready"} at once. Then, for each client, every event it receives:
// {"report":"event","client":name,"name":event,"args":[...]} (an event asking for an
// acknowledgement is answered with {"client":name,"echo":<first argument>}); each
// disconnection: {"report":"disconnect","client":name,"reason":reason}; each connection
// after the first (a reconnection): {"report":"connect","client":name,...info};
// each transport upgrade: {"report":"upgrade","client":name,"transport":name}.
// Connection errors are only reported: {"report":"connect_error","client":name,"message":m}.

import { io } from "socket.io-client";
import { report, serve, splitAck, toWire } from "./interop-lines.mjs";

const clients = new Map();

function client(name) {
  const socket = clients.get(name);
  if (!socket) throw new Error(`no client ${name}`);
  return socket;
}

/** What the test needs to know about a socket: its ids, transport and whether it recovered. */
function info(socket) {
  return {
    id: socket.id ?? null,
    engineId: socket.io.engine?.id ?? null,
    transport: socket.io.engine?.transport?.name ?? null,
    connected: socket.connected,
    recovered: socket.recovered ?? false,
  };
}

serve(
  {
    // Connects client `name` to `url`; resolves with its info once connected. With
    // `reconnectionDelay` (ms), it reconnects each time it loses the connection, after that
    // delay give or take half (the client's randomization).
    async connect({ name, url, auth = {}, transports, reconnectionDelay = null }) {
      const socket = io(url, {
        auth,
        transports,
        forceNew: true,
        reconnection: reconnectionDelay !== null,
        reconnectionDelay: reconnectionDelay ?? 1000,
        reconnectionDelayMax: 3 * (reconnectionDelay ?? 1000),
        timeout: 10000,
      });
      clients.set(name, socket);
      socket.onAny((event, ...all) => {
        const [args, ack] = splitAck(all);
        report("event", { client: name, name: event, args: toWire(args) });
        ack?.({ client: name, echo: args[0] ?? null });
      });
      socket.on("disconnect", (reason) => report("disconnect", { client: name, reason }));
      socket.on("connect_error", (e) => report("connect_error", { client: name, message: String(e?.message ?? e) }));
      const watchUpgrade = () =>
        socket.io.engine.on("upgrade", (t) => report("upgrade", { client: name, transport: t.name }));
      socket.io.on("open", watchUpgrade);
      return await new Promise((resolve, reject) => {
        socket.once("connect", () => {
          socket.on("connect", () => report("connect", { client: name, ...info(socket) }));
          resolve(info(socket));
        });
        socket.once("connect_error", (e) => reject(e));
      });
    },
    async info({ client: name }) {
      return info(client(name));
    },
    // Emits without asking for an acknowledgement.
    async emit({ client: name, event, args = [] }) {
      client(name).emit(event, ...args);
      return true;
    },
    // Emits `echo` with {i} for i from 0 to n - 1, in one go.
    async burst({ client: name, n }) {
      const socket = client(name);
      for (let i = 0; i < n; i++) socket.emit("echo", { i });
      return true;
    },
    // Emits `echo` with {i} and `size` bytes of value i % 256, for i from 0 to n - 1, in one go.
    async burstBinary({ client: name, n, size }) {
      const socket = client(name);
      for (let i = 0; i < n; i++) socket.emit("echo", { i }, Buffer.alloc(size, i % 256));
      return true;
    },
    // Emits and waits for the server's acknowledgement.
    async emitWithAck({ client: name, event, args = [] }) {
      return await client(name).timeout(10000).emitWithAck(event, ...args);
    },
    async close({ client: name }) {
      client(name).disconnect();
      return true;
    },
  },
  () => {
    for (const socket of clients.values()) socket.disconnect();
  },
);

report("ready", {});
