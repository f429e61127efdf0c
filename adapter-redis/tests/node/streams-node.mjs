// A Node socket.io 4.8 server in a cluster through @socket.io/redis-streams-adapter 0.3, with
// connection state recovery on; driven by tests/streams.rs.
//
//   node streams-node.mjs <redis-url> <stream-name> <window-ms>
//
// Prints {"ready":<port>} once it listens on 127.0.0.1:<port>. Reads JSON lines on stdin:
// {"emit":<event>,"args":[...],"to":<room>?} broadcasts through the adapter. Exits when
// stdin closes. Sockets answer "join" (joins the room, acknowledges true) and "recovered"
// (acknowledges socket.recovered).

import { createServer } from "node:http";
import { createInterface } from "node:readline";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-streams-adapter";
import { createClient } from "redis";

const [url, streamName, windowMs] = process.argv.slice(2);
if (!url || !streamName || !windowMs) {
  process.stderr.write("usage: node streams-node.mjs <redis-url> <stream-name> <window-ms>\n");
  process.exit(2);
}

const redis = createClient({ url });
redis.on("error", (e) => process.stderr.write(`redis: ${e}\n`));
await redis.connect();

const http = createServer();
const io = new Server(http, {
  adapter: createAdapter(redis, { streamName, blockTimeInMs: 1000 }),
  connectionStateRecovery: {
    maxDisconnectionDuration: Number(windowMs),
    skipMiddlewares: true,
  },
});

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    ack?.(true);
  });
  socket.on("recovered", (ack) => ack?.(socket.recovered));
});

createInterface({ input: process.stdin })
  .on("line", (line) => {
    const cmd = JSON.parse(line);
    if (cmd.emit) {
      const op = cmd.to ? io.to(cmd.to) : io;
      op.emit(cmd.emit, ...(cmd.args ?? []));
    }
  })
  .on("close", () => process.exit(0));

http.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ ready: http.address().port }) + "\n");
});
