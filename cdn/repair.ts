/**
 * Re-replication: brings every object to the holders placement gives it among the live members,
 * copying it as a CAR archive from a live node that has it (`docs/protocol/cdn.md`). Nodes here are
 * anything with a block store; across the network the same exchange runs over the management VPN.
 *
 * @module
 */

import type { CID } from "multiformats/cid";
import type { BlockStore } from "./blockstore.ts";
import { dagBlocks, exportCar, importCar } from "./car.ts";
import { holders } from "./placement.ts";

/** One copy made. */
export interface Copy {
  /** The object. */
  cid: string;
  /** The node it came from. */
  from: string;
  /** The node it went to. */
  to: string;
}

async function holdsWhole(store: BlockStore, cid: CID): Promise<boolean> {
  try {
    for await (const _ of dagBlocks(store, cid)) { /* each block present and intact */ }
    return true;
  } catch {
    return false;
  }
}

/**
 * Copies objects to the holders they should have.
 * @param objects The objects.
 * @param nodes The live nodes' stores, by node id.
 * @param k Holders per object (default 3).
 * @returns The copies made; objects that no live node holds are listed in `lost`.
 */
export async function repair(
  objects: readonly CID[],
  nodes: ReadonlyMap<string, BlockStore>,
  k = 3,
): Promise<{ copies: Copy[]; lost: string[] }> {
  const live = [...nodes.keys()];
  const copies: Copy[] = [];
  const lost: string[] = [];
  for (const cid of objects) {
    const want = holders(cid.toString(), live, k);
    const have: string[] = [];
    for (const id of live) if (await holdsWhole(nodes.get(id)!, cid)) have.push(id);
    if (!have.length) {
      lost.push(cid.toString());
      continue;
    }
    for (const to of want) {
      if (have.includes(to)) continue;
      const from = have[0];
      await importCar(nodes.get(to)!, await exportCar(nodes.get(from)!, cid));
      have.push(to);
      copies.push({ cid: cid.toString(), from, to });
    }
  }
  return { copies, lost };
}
