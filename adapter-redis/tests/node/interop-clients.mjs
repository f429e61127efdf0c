// Official socket.io-client sockets for tests/interop.rs, driven over the line protocol of
// interop-lines.mjs.
//
//   node interop-clients.mjs
//
// Reports {"report":"ready"} at once. Every event a client receives is reported as
// {"report":"event","client":name,"name":event,"args":[...]}; an event asking for an
// acknowledgement is answered with {"client":name,"echo":<first argument>}. A disconnection
// is reported as {"report":"disconnect","client":name,"reason":reason}.

import { io } from "socket.io-client";
import { report, serve, splitAck, toWire } from "./interop-lines.mjs";

const clients = new Map();

function client(name) {
  const socket = clients.get(name);
  if (!socket) throw new Error(`no client ${name}`);
  return socket;
}

serve(
  {
    // Connects client `name` to `url` (path /socket.io/); resolves with its socket id.
    async connect({ name, url, auth = {}, query = {}, headers = {}, transports }) {
      const socket = io(url, {
        auth,
        query,
        extraHeaders: headers,
        transports,
        forceNew: true,
        reconnection: false,
        timeout: 10000,
      });
      clients.set(name, socket);
      socket.onAny((event, ...all) => {
        const [args, ack] = splitAck(all);
        report("event", { client: name, name: event, args: toWire(args) });
        ack?.({ client: name, echo: args[0] ?? null });
      });
      socket.on("disconnect", (reason) => report("disconnect", { client: name, reason }));
      return await new Promise((resolve, reject) => {
        socket.once("connect", () => resolve({ id: socket.id, transport: socket.io.engine.transport.name }));
        socket.once("connect_error", (e) => reject(e));
      });
    },
    // Emits without asking for an acknowledgement.
    async emit({ client: name, event, args = [] }) {
      client(name).emit(event, ...args);
      return true;
    },
    // Emits and waits for the server's acknowledgement.
    async emitWithAck({ client: name, event, args = [] }) {
      return await client(name).timeout(10000).emitWithAck(event, ...args);
    },
    async close({ client: name }) {
      client(name).disconnect();
    },
  },
  () => {
    for (const socket of clients.values()) socket.disconnect();
  },
);

report("ready", {});
