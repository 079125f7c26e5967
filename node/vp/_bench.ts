/**
 * Throughput of the block protocol: sequential 1 MiB writes, then reads, through one
 * {@linkcode BlockClient} to a {@linkcode BlockServer} over TCP on 127.0.0.1, with the server in
 * the same process or in a second one.
 *
 * ```sh
 * deno run --allow-all node/vp/_bench.ts [--mib 512] [--block 65536] [--depth 8] [--process]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { BlockClient } from "./block_client.ts";
import { BlockServer } from "./block_server.ts";
import { VolumeStore } from "./store.ts";
import {
  decodeTunnelKey,
  encodeTunnelKey,
  generateTunnelKeys,
  type TunnelEndpoint,
  TunnelServer,
} from "./tunnel.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    mib: { type: "string", default: "512" },
    block: { type: "string", default: "65536" },
    depth: { type: "string", default: "8" },
    rounds: { type: "string", default: "3" },
    process: { type: "boolean", default: false },
    serve: { type: "boolean", default: false },
  },
});
const MIB = 1024 * 1024;
const total = Number(flags.mib) * MIB;
const blockSize = Number(flags.block);
const depth = Number(flags.depth);

interface Served {
  endpoint: TunnelEndpoint;
  volumeId: string;
  serverPublic: string;
  clientPublic: string;
  clientPrivate: string;
  stop: () => Promise<void>;
}

async function serve(): Promise<Served> {
  const dir = await Deno.makeTempDir({ prefix: "vp_bench_" });
  const store = await VolumeStore.open({ dir, capacityBytes: 2 * total + 64 * MIB });
  const volumeId = crypto.randomUUID();
  await store.create(volumeId, blockSize, total / blockSize);
  const tunnels = new TunnelServer();
  const endpoint = await tunnels.listen({ hostname: "127.0.0.1", port: 0 });
  const server = new BlockServer(store, tunnels);
  const sk = generateTunnelKeys(), ck = generateTunnelKeys();
  await server.export(volumeId, { serverStatic: sk, clientPublic: ck.publicKey });
  return {
    endpoint,
    volumeId,
    serverPublic: encodeTunnelKey(sk.publicKey),
    clientPublic: encodeTunnelKey(ck.publicKey),
    clientPrivate: encodeTunnelKey(ck.privateKey),
    stop: async () => {
      await server.close();
      await tunnels.close();
      await store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function phase(n: number, f: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const t = performance.now();
  await Promise.all(
    Array.from({ length: depth }, async () => {
      while (next < n) await f(next++);
    }),
  );
  return total / 1e6 / ((performance.now() - t) / 1000);
}

if (flags.serve) {
  const s = await serve();
  const { stop: _, ...out } = s;
  console.log(JSON.stringify(out));
  await new Response(Deno.stdin.readable).arrayBuffer(); // until the parent closes stdin
  await s.stop();
  Deno.exit(0);
}

let served: Omit<Served, "stop">;
let stop: () => Promise<void>;
if (flags.process) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", new URL(import.meta.url).pathname, ...Deno.args, "--serve"],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let line = "";
  while (!line.includes("\n")) {
    const r = await reader.read();
    if (r.done) throw new Error("The server process ended early");
    line += r.value;
  }
  served = JSON.parse(line);
  const writer = child.stdin.getWriter();
  stop = async () => {
    await writer.close();
    await reader.cancel();
    await child.status;
  };
} else {
  const s = await serve();
  served = s;
  stop = s.stop;
}

const client = await BlockClient.connect(served.endpoint, {
  volumeId: served.volumeId,
  clientStatic: {
    publicKey: decodeTunnelKey(served.clientPublic),
    privateKey: decodeTunnelKey(served.clientPrivate),
  },
  serverPublic: decodeTunnelKey(served.serverPublic),
});
const perRequest = MIB / blockSize;
const data = new Uint8Array(MIB);
crypto.getRandomValues(data.subarray(0, 65536));
for (let at = 65536; at < MIB; at *= 2) data.copyWithin(at, 0, at);
const tags = new Uint8Array(perRequest * 32).fill(7);
const requests = total / MIB;
const writes: number[] = [], reads: number[] = [];
for (let r = 0; r < Number(flags.rounds); r++) {
  writes.push(await phase(requests, (i) => client.write(i * perRequest, data, tags)));
  await client.flush();
  reads.push(
    await phase(requests, async (i) => {
      const got = await client.read(i * perRequest, perRequest);
      if (got.tags[0] !== 7 || got.data[12345] !== data[12345]) throw new Error("Wrong data read");
    }),
  );
}
const fmt = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(" ");
console.log(
  `${
    flags.process ? "two processes" : "one process"
  }, ${flags.mib} MiB, ${blockSize}-byte blocks, ` +
    `${depth} requests in flight: write MB/s ${fmt(writes)} | read MB/s ${fmt(reads)} | ` +
    `heartbeat ${client.latencyMs?.toFixed(2)} ms`,
);
await client.close();
await stop();
