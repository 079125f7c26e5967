// The gateway's CDN egress: through a node agent on this host (the uplink: public content only,
// fetched by the agent over its VPNs), or from a CDN directory that exists: a read-only catalogue,
// the CDN nodes' block stores on this host (`nodes/*`, or a single `blocks`). Both with the edge
// cache. Publishing happens inside the cloud.
import type { Hono } from "hono";
import {
  BlockStore,
  Catalogue,
  cdnFastPath,
  createCdnApp,
  gatewaySource,
  openUplink,
  StoreSet,
  type UplinkOptions,
} from "../cdn/mod.ts";

/** The CDN egress of a gateway. */
export interface CdnEgress {
  app: Hono;
  fast: (req: Request) => Response | undefined;
  close(): void;
}

/**
 * Opens the CDN egress, or gives `undefined` when there is no uplink and no CDN directory.
 * @param dir The CDN directory.
 * @param uplink The node agent to read the CDN through, which wins over the directory.
 */
export async function openCdnEgress(
  dir: string | undefined,
  uplink?: UplinkOptions,
): Promise<CdnEgress | undefined> {
  if (uplink) {
    const view = openUplink(uplink);
    const source = gatewaySource(view, view.read);
    return { app: createCdnApp(source), fast: cdnFastPath(source), close: () => {} };
  }
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
