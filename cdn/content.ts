/**
 * Content addressing for the CDN (`docs/protocol/cdn.md`): objects become UnixFS v1 DAGs with
 * CIDv1, raw leaves and 1 MiB chunks (`ipfs-unixfs-importer`), exactly as IPFS builds them, and are
 * read back, whole or by byte range, with `ipfs-unixfs-exporter`.
 *
 * @module
 */

import { importer } from "ipfs-unixfs-importer";
import { fixedSize } from "ipfs-unixfs-importer/chunker";
import { exporter } from "ipfs-unixfs-exporter";
import { CID } from "multiformats/cid";
import { ValidationError } from "../protocol/mod.ts";
import type { BlockSource, BlockStore } from "./blockstore.ts";

/** Chunk size of the CDN's DAGs. */
export const CHUNK_SIZE = 1024 * 1024;

/** The result of adding content. */
export interface AddedContent {
  /** The object's address. */
  cid: CID;
  /** Its length in bytes. */
  size: number;
}

/**
 * Adds content to a block store, streamed.
 * @param store Where the blocks go.
 * @param content The bytes, as an async iterable or a stream.
 * @returns The CID and size.
 * @throws {TrueCloudError} `quota_exceeded` when the store is full.
 */
export async function addContent(
  store: BlockStore,
  content: AsyncIterable<Uint8Array> | Uint8Array,
): Promise<AddedContent> {
  // Blocks this call adds are noted, so that a failed add (a full store, a broken stream) leaves
  // nothing behind.
  const added: CID[] = [];
  const recording = {
    put: async (cid: CID, bytes: Uint8Array) => {
      const had = await store.has(cid);
      await store.put(cid, bytes);
      if (!had) added.push(cid);
      return cid;
    },
    get: (cid: CID) => store.get(cid),
    has: (cid: CID) => store.has(cid),
  };
  let last: { cid: CID; size: bigint } | undefined;
  try {
    const entries = importer([{ content }], recording as never, {
      cidVersion: 1,
      rawLeaves: true,
      chunker: fixedSize({ chunkSize: CHUNK_SIZE }),
      reduceSingleLeafToSelf: true,
    });
    for await (const entry of entries) {
      last = { cid: entry.cid as unknown as CID, size: entry.size };
    }
  } catch (err) {
    for (const cid of added) await store.delete(cid);
    throw err;
  }
  if (!last) throw new ValidationError("Nothing to add");
  return { cid: CID.parse(last.cid.toString()), size: Number((await stat(store, last.cid)).size) };
}

/**
 * The size of an object.
 * @param store The blocks.
 * @param cid The object's CID.
 */
export async function stat(store: BlockSource, cid: CID): Promise<{ size: bigint }> {
  const entry = await exporter(cid as never, store as never);
  return { size: BigInt(entry.size) };
}

/**
 * Reads an object, or a byte range of it, streamed and verified block by block.
 * @param store The blocks.
 * @param cid The object's CID.
 * @param range Offset and length, if a range.
 */
export async function* readContent(
  store: BlockSource,
  cid: CID,
  range?: { offset: number; length: number },
): AsyncGenerator<Uint8Array> {
  const entry = await exporter(cid as never, store as never);
  if (entry.type !== "file" && entry.type !== "raw") {
    throw new ValidationError(`${cid} is not a file`, { code: "invalid" });
  }
  // Read a few blocks ahead: disk reads and checks overlap with sending.
  yield* entry.content({
    ...(range ? { offset: range.offset, length: range.length } : {}),
    blockReadConcurrency: 4,
  });
}

/**
 * Parses the text form of a CID, refusing anything else.
 * @param text Such as `bafy…`.
 * @throws {ValidationError} When it is not a CIDv1 of raw or dag-pb content with SHA-256.
 */
export function parseCid(text: string): CID {
  let cid: CID;
  try {
    cid = CID.parse(text);
  } catch (cause) {
    throw new ValidationError("Not a CID", { code: "invalid", cause });
  }
  if (
    cid.version !== 1 || (cid.code !== 0x55 && cid.code !== 0x70) || cid.multihash.code !== 0x12
  ) {
    throw new ValidationError("Only CIDv1 raw or dag-pb with SHA-256 address CDN content", {
      code: "invalid",
    });
  }
  return cid;
}
