/**
 * A node's block store: CDN blocks in files named by their CID, bounded by the node's CDN quota,
 * each block checked against its CID when written and when read (`docs/protocol/cdn.md`).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { CID } from "multiformats/cid";
import { sha256 } from "multiformats/hashes/sha2";
import { TrueCloudError, ValidationError } from "../protocol/mod.ts";

/** Codecs the store accepts: raw leaves and dag-pb nodes. */
const CODECS = new Set([0x55, 0x70]);

/** Raised when a block is not in the store. */
export class BlockNotFoundError extends TrueCloudError {
  /** @param cid The missing block. */
  constructor(cid: CID) {
    super(`Block ${cid} is not here`, { code: "not_found", status: 404 });
  }
}

/**
 * Blocks on disk with a byte quota.
 *
 * It offers the `put`, `get` and `has` that `ipfs-unixfs-importer` and `-exporter` use.
 */
export class BlockStore {
  readonly #dir: string;
  readonly #quota: number;
  #used = 0;
  #reserved = 0;
  #sizes = new Map<string, number>();
  #writing = new Map<string, Promise<void>>();
  #readOnly = false;
  // Blocks found intact, with the identity of the file they were read from (inode, size,
  // modification time): reading the same unchanged file again skips the hash, which otherwise costs
  // as much as the read and the TLS together. A file modified in the last two seconds is not
  // remembered: its time stamp could not show a change made in the same instant (the "racy" case
  // git's index knows). `scrub` hashes everything again.
  #intact = new Map<string, string>();

  private constructor(dir: string, quota: number) {
    this.#dir = dir;
    this.#quota = quota;
  }

  /**
   * Opens (or creates) a store and counts what it holds.
   * @param dir The directory.
   * @param quotaBytes The most bytes it may hold.
   */
  static async open(dir: string, quotaBytes: number): Promise<BlockStore> {
    await Deno.mkdir(dir, { recursive: true });
    const s = new BlockStore(dir, quotaBytes);
    for await (const shard of Deno.readDir(dir)) {
      if (!shard.isDirectory) continue;
      for await (const f of Deno.readDir(`${dir}/${shard.name}`)) {
        if (!f.isFile || f.name.endsWith(".tmp")) continue;
        const size = (await Deno.stat(`${dir}/${shard.name}/${f.name}`)).size;
        s.#sizes.set(f.name, size);
        s.#used += size;
      }
    }
    return s;
  }

  /**
   * Opens a store for reading only, without counting what it holds: for the gateway, which serves
   * from the nodes' stores and must not spend its start-up walking them.
   * @param dir The directory.
   */
  static openReadOnly(dir: string): BlockStore {
    const s = new BlockStore(dir, 0);
    s.#readOnly = true;
    return s;
  }

  /** Bytes held. */
  get used(): number {
    return this.#used;
  }

  /** Bytes still free under the quota. */
  get free(): number {
    return Math.max(0, this.#quota - this.#used);
  }

  #path(cid: CID): string {
    const key = cid.toString();
    return `${this.#dir}/${key.slice(-2)}/${key}`;
  }

  // node:crypto's SHA-256 runs on the CPU's SHA instructions, synchronously: several times faster
  // per block than an awaited Web Crypto digest.
  static #check(cid: CID, bytes: Uint8Array): boolean {
    if (cid.multihash.code !== sha256.code) return false;
    const digest = createHash("sha256").update(bytes).digest();
    const want = cid.multihash.digest;
    return digest.length === want.length && digest.every((b, i) => b === want[i]);
  }

  /**
   * Stores a block after checking it against its CID.
   * @param cid The block's CID (SHA-256, raw or dag-pb).
   * @param bytes The block.
   * @returns The CID.
   * @throws {ValidationError} When the block does not match its CID or the codec is not allowed.
   * @throws {TrueCloudError} `quota_exceeded` when it would go over the quota.
   */
  async put(cid: CID, bytes: Uint8Array): Promise<CID> {
    if (this.#readOnly) {
      throw new TrueCloudError("This block store is read-only", { code: "read_only" });
    }
    if (!CODECS.has(cid.code)) {
      throw new ValidationError(`Codec 0x${cid.code.toString(16)} is not stored here`);
    }
    if (!BlockStore.#check(cid, bytes)) {
      throw new ValidationError(`Block does not match its CID ${cid}`, { code: "block_mismatch" });
    }
    const key = cid.toString();
    if (this.#sizes.has(key)) return cid;
    // The importer writes blocks in parallel, and equal chunks share a CID: one write per block.
    const pending = this.#writing.get(key);
    if (pending) {
      await pending;
      return cid;
    }
    if (this.#used + this.#reserved + bytes.length > this.#quota) {
      throw new TrueCloudError(
        `Storing ${bytes.length} more bytes would exceed this node's CDN quota of ${this.#quota}`,
        { code: "quota_exceeded", status: 507 },
      );
    }
    const path = this.#path(cid);
    this.#reserved += bytes.length;
    const write = (async () => {
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      await Deno.writeFile(`${path}.tmp`, bytes);
      await Deno.rename(`${path}.tmp`, path);
    })();
    this.#writing.set(key, write);
    try {
      await write;
      this.#sizes.set(key, bytes.length);
      this.#used += bytes.length;
    } finally {
      this.#reserved -= bytes.length;
      this.#writing.delete(key);
    }
    return cid;
  }

  /**
   * Reads a block, checking it against its CID (a damaged block is deleted and reported missing).
   * @param cid The block's CID.
   * @throws {BlockNotFoundError} When it is not here, or was damaged.
   */
  async *get(cid: CID): AsyncGenerator<Uint8Array> {
    yield await this.getBlock(cid);
  }

  /**
   * Reads a whole block.
   * @param cid The block's CID.
   * @throws {BlockNotFoundError} When it is not here, or was damaged.
   */
  async getBlock(cid: CID): Promise<Uint8Array> {
    const path = this.#path(cid);
    let bytes: Uint8Array;
    let info: Deno.FileInfo;
    try {
      bytes = await Deno.readFile(path);
      info = await Deno.stat(path); // after the read: a change made meanwhile shows here
    } catch {
      throw new BlockNotFoundError(cid);
    }
    const key = cid.toString();
    const mtime = info.mtime?.getTime() ?? 0;
    const stamp = `${info.ino}:${info.size}:${mtime}`;
    if (info.size === bytes.length && this.#intact.get(key) === stamp) return bytes;
    if (!BlockStore.#check(cid, bytes)) {
      this.#intact.delete(key);
      await this.delete(cid);
      throw new BlockNotFoundError(cid);
    }
    if (mtime && Date.now() - mtime > 2000) {
      if (this.#intact.size >= 1 << 20) this.#intact.clear();
      this.#intact.set(key, stamp);
    }
    return bytes;
  }

  /**
   * Hashes every block again, deleting those that no longer match their CID (they are then
   * missing, and re-replicated from another holder).
   * @returns How many blocks were checked, and the CIDs of the damaged ones.
   */
  async scrub(): Promise<{ checked: number; damaged: string[] }> {
    this.#intact.clear();
    let checked = 0;
    const damaged: string[] = [];
    let shards: Deno.DirEntry[];
    try {
      shards = await Array.fromAsync(Deno.readDir(this.#dir));
    } catch {
      return { checked, damaged }; // no directory: nothing held
    }
    for (const shard of shards) {
      if (!shard.isDirectory) continue;
      for await (const f of Deno.readDir(`${this.#dir}/${shard.name}`)) {
        if (!f.isFile || f.name.endsWith(".tmp")) continue;
        let cid: CID;
        try {
          cid = CID.parse(f.name);
        } catch {
          continue; // not a block
        }
        checked++;
        try {
          await this.getBlock(cid);
        } catch (err) {
          if (!(err instanceof BlockNotFoundError)) throw err;
          damaged.push(f.name);
        }
      }
    }
    return { checked, damaged };
  }

  /**
   * Tells whether a block is here.
   * @param cid The block's CID.
   */
  async has(cid: CID): Promise<boolean> {
    if (!this.#readOnly) return this.#sizes.has(cid.toString());
    try {
      return (await Deno.stat(this.#path(cid))).isFile;
    } catch {
      return false;
    }
  }

  /**
   * Deletes a block (no error if absent).
   * @param cid The block's CID.
   */
  async delete(cid: CID): Promise<void> {
    const key = cid.toString();
    await Deno.remove(this.#path(cid)).catch(() => {});
    const size = this.#sizes.get(key);
    if (size !== undefined) {
      this.#sizes.delete(key);
      this.#used -= size;
    }
  }
}

export { CID };

/** What reading content needs of a store: one store, or several. */
export interface BlockSource {
  /** The block's bytes, checked against its CID. */
  getBlock(cid: CID): Promise<Uint8Array>;
  /** The same, as the exporter wants it. */
  get(cid: CID): AsyncGenerator<Uint8Array>;
  /** Whether the block is here. */
  has(cid: CID): Promise<boolean>;
}

/**
 * Several block stores read as one: a block comes from the first store that has it intact. The
 * gateway reads the CDN nodes' stores this way on a single host.
 */
export class StoreSet implements BlockSource {
  readonly #stores: BlockSource[];

  /** @param stores The stores (or any block sources), tried in order. */
  constructor(stores: BlockSource[]) {
    this.#stores = stores;
  }

  /** @throws {BlockNotFoundError} When no store has the block intact. */
  async getBlock(cid: CID): Promise<Uint8Array> {
    for (const s of this.#stores) {
      try {
        return await s.getBlock(cid);
      } catch (err) {
        if (!(err instanceof BlockNotFoundError)) throw err;
      }
    }
    throw new BlockNotFoundError(cid);
  }

  /** The block, as the exporter wants it. */
  async *get(cid: CID): AsyncGenerator<Uint8Array> {
    yield await this.getBlock(cid);
  }

  /** Whether any store has the block. */
  async has(cid: CID): Promise<boolean> {
    for (const s of this.#stores) if (await s.has(cid)) return true;
    return false;
  }
}
