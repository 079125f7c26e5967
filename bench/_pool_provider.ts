/**
 * The providers' side of the pool benchmark, run as a subprocess by `bench/pool.ts` so that the
 * consumer and the providers do not share one JavaScript thread: a {@linkcode VolumeStore} on real
 * files in `--dir`, one volume per `--consumer` key, each exported by a {@linkcode BlockServer}
 * through a {@linkcode TunnelServer} on 127.0.0.1.
 *
 *   deno run --allow-read --allow-write --allow-net=127.0.0.1 --allow-env bench/_pool_provider.ts
 *     --dir DIR --block-size 65536 --blocks N --consumer=KEY [--consumer=KEY …]
 *
 * Once serving, it prints one line of JSON on standard output:
 * `{"endpoint":"127.0.0.1:PORT","volumes":[{"id":UUID,"serverPublic":KEY,"files":[DATA,TAGS]}]}`,
 * the volumes in the order of the `--consumer` keys (base64url X25519 public keys, given as
 * `--consumer=KEY` since a key may start with "-"). It stops serving, closes the store and exits
 * on SIGTERM, SIGINT, or when its standard input ends (its parent is gone). The volume files stay
 * in `--dir`: the parent removes the directory.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  BlockServer,
  decodeTunnelKey,
  encodeTunnelKey,
  formatEndpoint,
  generateTunnelKeys,
  TunnelServer,
  volumeFootprint,
  VolumeStore,
} from "../node/vp/mod.ts";

/** What the provider prints once it serves. */
export interface ProviderAnnouncement {
  /** `127.0.0.1:PORT`. */
  endpoint: string;
  /** One per consumer key, in order. */
  volumes: { id: string; serverPublic: string; files: [string, string] }[];
}

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    dir: { type: "string" },
    "block-size": { type: "string", default: "65536" },
    blocks: { type: "string" },
    consumer: { type: "string", multiple: true, default: [] },
  },
});

function usage(message: string): never {
  console.error(`pool provider: ${message}`);
  Deno.exit(2);
}

const dir = flags.dir ?? usage("--dir is required");
const blockSize = Number(flags["block-size"]);
const blocks = Number(flags.blocks ?? usage("--blocks is required"));
if (!Number.isSafeInteger(blockSize) || !Number.isSafeInteger(blocks) || blocks < 1) {
  usage("--block-size and --blocks must be whole numbers");
}
if (flags.consumer.length === 0) usage("Give at least one --consumer=KEY");
let consumers: Uint8Array[];
try {
  consumers = flags.consumer.map(decodeTunnelKey);
} catch (err) {
  usage((err as Error).message);
}

let store: VolumeStore;
try {
  store = await VolumeStore.open({
    dir,
    capacityBytes: consumers.length * volumeFootprint(blockSize, blocks),
  });
} catch (err) {
  console.error(`pool provider: ${(err as Error).message}`);
  Deno.exit(1);
}
const tunnels = new TunnelServer();
const server = new BlockServer(store, tunnels);
let stopping: Promise<void> | undefined;

/** Stops serving and closes the store, once. */
function stop(): Promise<void> {
  stopping ??= (async () => {
    await server.close();
    await tunnels.close();
    await store.close();
  })();
  return stopping;
}

async function exitAfterStop(): Promise<never> {
  let code = 0;
  try {
    await stop();
  } catch (err) {
    console.error(`pool provider: ${(err as Error).message}`);
    code = 1;
  }
  Deno.exit(code);
}

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  Deno.addSignalListener(signal, () => void exitAfterStop());
}

try {
  const at = await tunnels.listen({ hostname: "127.0.0.1", port: 0 });
  const volumes: ProviderAnnouncement["volumes"] = [];
  for (const clientPublic of consumers) {
    const id = crypto.randomUUID();
    await store.create(id, blockSize, blocks);
    const serverStatic = generateTunnelKeys();
    await server.export(id, { serverStatic, clientPublic });
    volumes.push({
      id,
      serverPublic: encodeTunnelKey(serverStatic.publicKey),
      files: [`${store.dir}/${id}.data`, `${store.dir}/${id}.tags`],
    });
  }
  const announcement: ProviderAnnouncement = { endpoint: formatEndpoint(at), volumes };
  console.log(JSON.stringify(announcement));
} catch (err) {
  console.error(`pool provider: ${(err as Error).message}`);
  await stop().catch(() => {});
  Deno.exit(1);
}

// Standard input ends when the parent closes it or exits.
await Deno.stdin.readable.pipeTo(new WritableStream()).catch(() => {});
await exitAfterStop();
