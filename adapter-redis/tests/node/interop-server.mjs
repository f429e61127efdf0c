// A Node socket.io server in a Redis cluster through @socket.io/redis-adapter, driven by
// tests/interop.rs over the line protocol of interop-lines.mjs.
//
//   node interop-server.mjs <redis-url> [<subscription-mode>]
//   node interop-server.mjs cluster:<node-url>,<node-url>,... <subscription-mode>
//
// With a subscription mode ("static", "dynamic" or "dynamic-private") the adapter is
// createShardedAdapter (Redis 7 sharded Pub/Sub) in that mode; without, createAdapter
// (classic Pub/Sub). A `cluster:` URL list connects to a Redis Cluster through those nodes
// (node-redis's createCluster).
//
// Reports {"report":"ready","port":p} once it listens on 127.0.0.1:p and its adapter is set
// up. Its sockets keep {"node":"node","who":<auth.who>} as data and answer "join" (joins the
// room, acknowledges with its name). Server-side events "note" and "ask" are reported; "ask"
// is answered with {"node":"node","got":<first argument>}.

import { createServer } from "node:http";
import { Server } from "socket.io";
import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { createClient, createCluster } from "redis";
import { report, serve, splitAck, toWire } from "./interop-lines.mjs";

const url = process.argv[2];
const subscriptionMode = process.argv[3];
if (!url) {
  process.stderr.write("usage: node interop-server.mjs <redis-url> [<subscription-mode>]\n");
  process.exit(2);
}

const pub = url.startsWith("cluster:")
  ? createCluster({
      rootNodes: url
        .slice("cluster:".length)
        .split(",")
        .map((u) => ({ url: u })),
    })
  : createClient({ url });
const sub = pub.duplicate();
pub.on("error", (e) => process.stderr.write(`redis pub: ${e}\n`));
sub.on("error", (e) => process.stderr.write(`redis sub: ${e}\n`));
await Promise.all([pub.connect(), sub.connect()]);

const http = createServer();
const adapter = subscriptionMode
  ? createShardedAdapter(pub, sub, { subscriptionMode })
  : createAdapter(pub, sub);
const io = new Server(http, { adapter });

io.on("connection", (socket) => {
  socket.data = { node: "node", who: socket.handshake.auth?.who ?? null };
  socket.on("join", (room, ack) => {
    socket.join(room);
    ack?.(room);
  });
});

io.on("note", (...all) => {
  const [args] = splitAck(all);
  report("server-event", { name: "note", args: toWire(args) });
});

io.on("ask", (...all) => {
  const [args, ack] = splitAck(all);
  report("server-event", { name: "ask", args: toWire(args) });
  ack?.({ node: "node", got: args[0] ?? null });
});

/** `io.of("/")` narrowed by rooms and exceptions. */
function select({ to = [], except = [] }) {
  let op = io.of("/");
  for (const room of to) op = op.to(room);
  for (const room of except) op = op.except(room);
  return op;
}

function describe(socket) {
  return {
    id: socket.id,
    rooms: [...socket.rooms],
    data: socket.data,
    handshake: socket.handshake,
  };
}

serve(
  {
    async emit({ event, args = [], ...target }) {
      select(target).emit(event, ...args);
    },
    async emitWithAck({ event, args = [], timeout = 5000, ...target }) {
      return await select(target).timeout(timeout).emitWithAck(event, ...args);
    },
    async fetchSockets(target) {
      const sockets = await select(target).fetchSockets();
      return sockets.map(describe);
    },
    async remoteEmit({ id, event, args = [] }) {
      const sockets = await io.fetchSockets();
      const socket = sockets.find((s) => s.id === id);
      if (!socket) throw new Error(`no socket ${id} in the cluster`);
      socket.emit(event, ...args);
    },
    async socketsJoin({ rooms, ...target }) {
      select(target).socketsJoin(rooms);
    },
    async disconnectSockets({ close = false, ...target }) {
      select(target).disconnectSockets(close);
    },
    async serverSideEmit({ event, args = [] }) {
      io.serverSideEmit(event, ...args);
    },
    async serverSideEmitWithAck({ event, args = [] }) {
      return await io.serverSideEmitWithAck(event, ...args);
    },
    async serverCount() {
      return await io.of("/").adapter.serverCount();
    },
    async allRooms() {
      return [...(await io.of("/").adapter.allRooms())];
    },
  },
  async () => {
    io.close();
    await Promise.allSettled([pub.quit(), sub.quit()]);
  },
);

http.listen(0, "127.0.0.1", () => {
  report("ready", { port: http.address().port });
});
