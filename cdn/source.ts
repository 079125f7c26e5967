/**
 * The gateway's view of the CDN: the catalogue for what is published, block stores for the bytes,
 * and an edge cache (`lru-cache`, bounded in bytes) of small objects, so that popular small objects
 * are served from memory.
 *
 * @module
 */

import { LRUCache } from "lru-cache";
import { concatBytes } from "../protocol/mod.ts";
import type { CID } from "multiformats/cid";
import type { BlockSource } from "./blockstore.ts";
import type { Catalogue } from "./catalogue.ts";
import { readContent } from "./content.ts";
import type { ContentSource, PublishedObject } from "./egress.ts";

/** How long a catalogue lookup is trusted, in milliseconds. */
const MEMO_MS = 1000;

interface Memo {
  at: number;
  value: Promise<PublishedObject | undefined>;
  settled: boolean;
  obj?: PublishedObject;
}

/** Objects up to this size are kept whole in the edge cache. */
export const EDGE_CACHE_OBJECT_LIMIT = 1024 * 1024;

async function whole(it: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of it) parts.push(p);
  return concatBytes(parts);
}

/** What a gateway needs of a catalogue: a {@linkcode Catalogue}, or an uplink's view of one. */
export type CatalogueView = Pick<Catalogue, "byName" | "byCid" | "list">;

/** Reads an object's bytes, or a range of them. */
export type ObjectReader = (
  cid: CID,
  range?: { offset: number; length: number },
) => AsyncIterable<Uint8Array>;

/**
 * Builds the content source of a gateway.
 * @param catalogue What is published.
 * @param store Where the blocks are, or a reader of whole objects.
 * @param options Edge cache size in bytes (default 64 MiB).
 */
export function gatewaySource(
  catalogue: CatalogueView,
  store: BlockSource | ObjectReader,
  options: { cacheBytes?: number } = {},
): ContentSource & { cache: LRUCache<string, Uint8Array> } {
  const readObject: ObjectReader = typeof store === "function"
    ? store
    : (cid, range) => readContent(store, cid, range);
  const cache = new LRUCache<string, Uint8Array>({
    maxSize: options.cacheBytes ?? 64 * 1024 * 1024,
    sizeCalculation: (v) => Math.max(1, v.length),
  });
  // Catalogue lookups are kept for a second: a published name or CID changes rarely, and a KV read
  // per request would cost more than the rest of the answer.
  const memo = new Map<string, Memo>();
  const remember = (key: string, load: () => Promise<PublishedObject | undefined>) => {
    const now = Date.now();
    const hit = memo.get(key);
    if (hit && now - hit.at < MEMO_MS) return hit.value;
    if (memo.size > 10_000) memo.clear();
    const entry: Memo = { at: now, value: load(), settled: false };
    entry.value.then((obj) => {
      entry.settled = true;
      entry.obj = obj;
    }, () => memo.delete(key));
    memo.set(key, entry);
    return entry.value;
  };
  return {
    cache,
    cached: (cid) => cache.get(cid.toString()),
    peek(cid) {
      const hit = memo.get(`c:${cid}`);
      if (!hit?.settled || !hit.obj || Date.now() - hit.at >= MEMO_MS) return undefined;
      const bytes = cache.get(cid);
      return bytes && { obj: hit.obj, bytes };
    },
    byName: (name) => remember(`n:${name}`, () => catalogue.byName(name)),
    byCid: (cid) => remember(`c:${cid}`, () => catalogue.byCid(cid)),
    list: () => catalogue.list(),
    async *read(cid: CID, range?: { offset: number; length: number }) {
      const key = cid.toString();
      let bytes = cache.get(key);
      if (!bytes) {
        const obj = await catalogue.byCid(cid);
        if (!obj || obj.size > EDGE_CACHE_OBJECT_LIMIT) {
          yield* readObject(cid, range);
          return;
        }
        bytes = await whole(readObject(cid));
        cache.set(key, bytes);
      }
      yield range ? bytes.subarray(range.offset, range.offset + range.length) : bytes;
    },
  };
}
