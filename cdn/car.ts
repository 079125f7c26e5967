/**
 * Moving objects between nodes as CAR v1 archives (`@ipld/car`): the root CID, then every block of
 * the object's DAG. The receiver checks each block against its CID as it stores it
 * (`docs/protocol/cdn.md`).
 *
 * @module
 */

import { CarReader, CarWriter } from "@ipld/car";
import * as dagPb from "@ipld/dag-pb";
import { CID } from "multiformats/cid";
import { concatBytes, ValidationError } from "../protocol/mod.ts";
import type { BlockSource, BlockStore } from "./blockstore.ts";

/** Every block of an object's DAG, root first. */
export async function* dagBlocks(
  store: BlockSource,
  root: CID,
): AsyncGenerator<{ cid: CID; bytes: Uint8Array }> {
  const queue = [root];
  while (queue.length) {
    const cid = queue.shift()!;
    const bytes = await store.getBlock(cid);
    yield { cid, bytes };
    if (cid.code === dagPb.code) {
      for (const link of dagPb.decode(bytes).Links) {
        queue.push(CID.asCID(link.Hash) ?? CID.decode(link.Hash.bytes));
      }
    }
  }
}

/**
 * One block of an object's DAG, reached from the root by a random link at each level (a leaf, unless
 * a node has no links), reading only the blocks on the way.
 * @param store Where its blocks are.
 * @param root The object's CID.
 * @param random Uniform in [0, 1).
 */
export async function randomBlock(
  store: BlockSource,
  root: CID,
  random: () => number = Math.random,
): Promise<{ cid: CID; bytes: Uint8Array }> {
  let cid = root;
  for (let depth = 0;; depth++) {
    const bytes = await store.getBlock(cid);
    if (cid.code !== dagPb.code || depth >= 16) return { cid, bytes };
    const links = dagPb.decode(bytes).Links;
    if (!links.length) return { cid, bytes };
    const link = links[Math.floor(random() * links.length)];
    cid = CID.asCID(link.Hash) ?? CID.decode(link.Hash.bytes);
  }
}

/**
 * Writes an object as a CAR archive.
 * @param store Where its blocks are.
 * @param root The object's CID.
 * @returns The archive's bytes.
 */
export async function exportCar(store: BlockSource, root: CID): Promise<Uint8Array> {
  const { writer, out } = CarWriter.create([root]);
  const chunks: Uint8Array[] = [];
  const collecting = (async () => {
    for await (const c of out) chunks.push(c);
  })();
  for await (const b of dagBlocks(store, root)) await writer.put(b);
  await writer.close();
  await collecting;
  return concatBytes(chunks);
}

/**
 * Reads a CAR archive into a store, checking every block, and checks that the whole DAG of its
 * root is then present.
 * @param store Where the blocks go.
 * @param car The archive.
 * @returns The root CID.
 * @throws {ValidationError} When the archive is malformed, a block does not match its CID, or a
 * block of the DAG is missing.
 */
export async function importCar(store: BlockStore, car: Uint8Array): Promise<CID> {
  let reader: CarReader;
  try {
    reader = await CarReader.fromBytes(car);
  } catch (cause) {
    throw new ValidationError("Not a CAR archive", { code: "malformed", cause });
  }
  const roots = await reader.getRoots();
  if (roots.length !== 1) {
    throw new ValidationError("A CAR archive must have one root", { code: "malformed" });
  }
  // A refused archive leaves nothing behind: blocks it added are taken out again.
  const added: CID[] = [];
  const root = CID.decode(roots[0].bytes);
  try {
    for await (const { cid, bytes } of reader.blocks()) {
      const c = CID.decode(cid.bytes);
      const had = await store.has(c);
      await store.put(c, bytes);
      if (!had) added.push(c);
    }
    try {
      for await (const _ of dagBlocks(store, root)) { /* every block must be present */ }
    } catch (cause) {
      throw new ValidationError("The archive lacks blocks of its object", {
        code: "incomplete",
        cause,
      });
    }
  } catch (err) {
    for (const c of added) await store.delete(c);
    throw err;
  }
  return root;
}
