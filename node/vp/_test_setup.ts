/**
 * A provider and a consumer of one volume on 127.0.0.1 for the tests of `node/vp/`: a store in a
 * temporary directory, a tunnel server, a block server and a block client (optionally through a
 * {@linkcode TestProxy}). Private to the tests.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DeviceError } from "../drivers/mod.ts";
import { BlockClient, type BlockClientOptions } from "./block_client.ts";
import { BlockServer } from "./block_server.ts";
import { VolumeStore } from "./store.ts";
import { TestProxy } from "./_test_proxy.ts";
import {
  generateTunnelKeys,
  type TunnelClientParams,
  type TunnelEndpoint,
  type TunnelKeyPair,
  TunnelServer,
} from "./tunnel.ts";

/** Everything of one test volume. */
export interface VolumeSetup {
  dir: string;
  store: VolumeStore;
  tunnels: TunnelServer;
  server: BlockServer;
  endpoint: TunnelEndpoint;
  volumeId: string;
  serverKeys: TunnelKeyPair;
  clientKeys: TunnelKeyPair;
  params: TunnelClientParams;
  proxy?: TestProxy;
  client: BlockClient;
  /** Reasons given to `onDead`, with the time each came (performance.now()). */
  deaths: { reason: string; at: number }[];
  /** Connects another client to the volume (closed by `cleanup`). */
  connect(options?: BlockClientOptions, endpoint?: TunnelEndpoint): Promise<BlockClient>;
  /** Closes everything and removes the directory. */
  cleanup(): Promise<void>;
}

/** Settings of {@linkcode setupVolume}. */
export interface SetupOptions {
  blockSize?: number;
  blockCount?: number;
  /** Puts a proxy between the client and the server. */
  proxy?: boolean;
  client?: BlockClientOptions;
}

/** Creates a store with one exported volume and attaches a client to it. */
export async function setupVolume(o: SetupOptions = {}): Promise<VolumeSetup> {
  const blockSize = o.blockSize ?? 4096, blockCount = o.blockCount ?? 64;
  const base = await Deno.makeTempDir({ prefix: "vp_block_" });
  const dir = `${base}/volumes`;
  const store = await VolumeStore.open({ dir, capacityBytes: 2 ** 40 });
  const tunnels = new TunnelServer();
  const endpoint = await tunnels.listen({ hostname: "127.0.0.1", port: 0 });
  const server = new BlockServer(store, tunnels);
  const volumeId = crypto.randomUUID();
  await store.create(volumeId, blockSize, blockCount);
  const serverKeys = generateTunnelKeys(), clientKeys = generateTunnelKeys();
  await server.export(volumeId, { serverStatic: serverKeys, clientPublic: clientKeys.publicKey });
  const params = { volumeId, clientStatic: clientKeys, serverPublic: serverKeys.publicKey };
  const proxy = o.proxy ? TestProxy.start(endpoint) : undefined;
  const deaths: { reason: string; at: number }[] = [];
  const clients: BlockClient[] = [];
  const connect = async (options: BlockClientOptions = {}, to = proxy?.endpoint ?? endpoint) => {
    const c = await BlockClient.connect(to, params, options);
    clients.push(c);
    return c;
  };
  const client = await connect({
    ...o.client,
    onDead: (reason) => {
      deaths.push({ reason, at: performance.now() });
      o.client?.onDead?.(reason);
    },
  });
  return {
    dir,
    store,
    tunnels,
    server,
    endpoint,
    volumeId,
    serverKeys,
    clientKeys,
    params,
    proxy,
    client,
    deaths,
    connect,
    cleanup: async () => {
      for (const c of clients) await c.close();
      await proxy?.close();
      await server.close();
      await tunnels.close();
      await store.close();
      await Deno.remove(base, { recursive: true });
    },
  };
}

/** Blocks of recognisable data and tags. */
export function testBlocks(
  count: number,
  seed: number,
  blockSize = 4096,
): { data: Uint8Array; tags: Uint8Array } {
  const data = new Uint8Array(count * blockSize), tags = new Uint8Array(count * 32);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + seed * 13 + (i >> 12)) & 0xff;
  for (let i = 0; i < tags.length; i++) tags[i] = ((i * 3 + seed) & 0xff) | 1;
  return { data, tags };
}

/**
 * Asserts that a device call fails with a DeviceError of this code.
 * @param p The call.
 * @param code The code.
 * @returns The error.
 */
export async function rejectsDevice(p: Promise<unknown>, code: string): Promise<DeviceError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof DeviceError, `expected a DeviceError, got ${err}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}`);
}
