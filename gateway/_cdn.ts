// The gateway's CDN egress, when its configuration names a CDN directory that exists: a read-only
// catalogue and block store (publishing happens inside the cloud), and the edge cache.
import type { Hono } from "hono";
import { BlockStore, Catalogue, createCdnApp, gatewaySource } from "../cdn/mod.ts";

/** Opens the CDN egress, or gives `undefined` when there is no CDN directory. */
export async function openCdnEgress(
  dir: string | undefined,
): Promise<{ app: Hono; close(): void } | undefined> {
  if (!dir) return undefined;
  try {
    if (!(await Deno.stat(dir)).isDirectory) return undefined;
  } catch {
    return undefined;
  }
  const store = await BlockStore.open(`${dir}/blocks`, Number.MAX_SAFE_INTEGER);
  const catalogue = await Catalogue.open(`${dir}/catalogue.kv`, {
    isMember: () => false, // the gateway only reads
    has: (cid) => store.has(cid),
  });
  return { app: createCdnApp(gatewaySource(catalogue, store)), close: () => catalogue.close() };
}
