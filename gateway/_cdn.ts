// The gateway's CDN egress, when its configuration names a CDN directory that exists: a read-only
// catalogue, the CDN nodes' block stores on this host (`nodes/*`, or a single `blocks`), and the
// edge cache. Publishing happens inside the cloud.
import type { Hono } from "hono";
import {
  BlockStore,
  Catalogue,
  cdnFastPath,
  createCdnApp,
  gatewaySource,
  StoreSet,
} from "../cdn/mod.ts";

/** Opens the CDN egress, or gives `undefined` when there is no CDN directory. */
export async function openCdnEgress(
  dir: string | undefined,
): Promise<
  { app: Hono; fast: (req: Request) => Response | undefined; close(): void } | undefined
> {
  if (!dir) return undefined;
  try {
    if (!(await Deno.stat(dir)).isDirectory) return undefined;
  } catch {
    return undefined;
  }
  const stores: BlockStore[] = [];
  try {
    for await (const e of Deno.readDir(`${dir}/nodes`)) {
      if (e.isDirectory) {
        stores.push(BlockStore.openReadOnly(`${dir}/nodes/${e.name}`));
      }
    }
  } catch {
    // no per-node stores: a single one
  }
  if (!stores.length) stores.push(BlockStore.openReadOnly(`${dir}/blocks`));
  const blocks = new StoreSet(stores);
  const catalogue = await Catalogue.open(`${dir}/catalogue.kv`, {
    isMember: () => false, // the gateway only reads
    has: (cid) => blocks.has(cid),
  });
  const source = gatewaySource(catalogue, blocks);
  return {
    app: createCdnApp(source),
    fast: cdnFastPath(source),
    close: () => catalogue.close(),
  };
}
