// An @socket.io/redis-emitter (no server of its own) for tests/interop.rs, driven over the
// line protocol of interop-lines.mjs.
//
//   node interop-emitter.mjs <redis-url>
//
// Reports {"report":"ready"} once connected to Redis. Each op returns after its PUBLISH
// completed, so what the test does next is ordered after it.

import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";
import { report, serve } from "./interop-lines.mjs";

const url = process.argv[2];
if (!url) {
  process.stderr.write("usage: node interop-emitter.mjs <redis-url>\n");
  process.exit(2);
}

const redis = createClient({ url });
redis.on("error", (e) => process.stderr.write(`redis: ${e}\n`));
await redis.connect();

// The emitter does not return the PUBLISH promise: record it here to await it.
let lastPublish = Promise.resolve();
const publisher = {
  publish(channel, message) {
    lastPublish = redis.publish(channel, message);
    return lastPublish;
  },
};
const emitter = new Emitter(publisher);

/** The emitter narrowed by rooms and exceptions. */
function select({ to = [], except = [] }) {
  let op = emitter;
  for (const room of to) op = op.to(room);
  for (const room of except) op = op.except(room);
  return op;
}

async function published() {
  await lastPublish;
}

serve(
  {
    async emit({ event, args = [], ...target }) {
      select(target).emit(event, ...args);
      await published();
    },
    async socketsJoin({ rooms, ...target }) {
      select(target).socketsJoin(rooms);
      await published();
    },
    async socketsLeave({ rooms, ...target }) {
      select(target).socketsLeave(rooms);
      await published();
    },
    async disconnectSockets({ close = false, ...target }) {
      select(target).disconnectSockets(close);
      await published();
    },
    async serverSideEmit({ event, args = [] }) {
      emitter.serverSideEmit(event, ...args);
      await published();
    },
  },
  async () => {
    await redis.quit();
  },
);

report("ready", {});
