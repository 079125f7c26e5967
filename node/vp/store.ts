/**
 * The Volume Provider's store: the directory on the provider's disk where leased volumes live.
 *
 * Each volume is three files named by its id (a UUID) under the store's directory:
 *
 * - `<id>.data`: the blocks, a sparse file of `blockCount × blockSize` bytes; never-written
 *   ranges are holes and read as zeros;
 * - `<id>.tags`: one 36-byte record per block: the block's 32-byte tag, then a CRC-32 check of
 *   the tag and the block (`docs/protocol/blocks.md`, "The provider's files"), so that disk rot is
 *   reported instead of returned;
 * - `<id>.json`: the volume's shape.
 *
 * The store never lends more than its capacity: a volume counts its full footprint, data and tag
 * records. Wiping a volume truncates its files, overwrites its metadata and unlinks all three.
 *
 * @module
 */

import { crc32 } from "node:zlib";
import {
  ConflictError,
  discardLogger,
  isUuid,
  type Logger,
  NotFoundError,
  parseWith,
  TrueCloudError,
  uuidSchema,
  ValidationError,
  z,
} from "../../protocol/mod.ts";
import {
  type BlockDevice,
  type BlockRead,
  checkBlocks,
  DeviceError,
  TAG_BYTES,
} from "../drivers/mod.ts";
import { RECORD_BYTES } from "./_wire.ts";

/** Smallest block size. */
export const MIN_BLOCK_SIZE = 4096;
/** Largest block size. */
export const MAX_BLOCK_SIZE = 1024 * 1024;
/** Most blocks in a volume. */
export const MAX_BLOCK_COUNT = 2 ** 40;
/** Bytes per block in the tag file: the tag, then a CRC-32. */
export const VOLUME_RECORD_BYTES: number = RECORD_BYTES;

const FORMAT = "truecloud-volume/1";
// Largest single write of zeros while trimming.
const SHORT_TRIM = 4; // blocks: the pool repairs one at a time
const ZERO_CHUNK = 1024 * 1024;
const SYNC_IO = 64 * 1024;

const metaSchema = z.strictObject({
  format: z.literal(FORMAT),
  id: uuidSchema,
  blockSize: z.number().int(),
  blockCount: z.number().int(),
  recordBytes: z.literal(RECORD_BYTES),
  createdAt: z.string().max(64),
  state: z.enum(["ready", "wiping"]),
});
type Meta = z.infer<typeof metaSchema>;

/** What the store says of a volume. */
export interface VolumeInfo {
  /** The volume's UUID (the lease id). */
  id: string;
  /** Bytes per block. */
  blockSize: number;
  /** Blocks. */
  blockCount: number;
  /** `blockSize × blockCount`: what the consumer sees. */
  bytes: number;
  /** What the volume takes from the capacity: its blocks and its tag records. */
  footprint: number;
  /** When it was created, ISO 8601. */
  createdAt: string;
}

/** Settings of {@linkcode VolumeStore.open}. */
export interface VolumeStoreOptions {
  /** The directory holding the volumes (created if missing). */
  dir: string;
  /** Bytes the node lends for volumes; the sum of the volumes' footprints never exceeds it. */
  capacityBytes: number;
  /** Where the store logs (default: nowhere). */
  log?: Logger;
}

/**
 * Checks a volume's shape.
 * @throws {ValidationError} When the block size is not a power of two from 4 KiB to 1 MiB or the
 * count is not a whole number from 1 to 2^40.
 */
export function checkShape(blockSize: number, blockCount: number): void {
  if (
    !Number.isInteger(blockSize) || blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE ||
    (blockSize & (blockSize - 1)) !== 0
  ) {
    throw new ValidationError(
      `Block size ${blockSize} is not a power of two from ${MIN_BLOCK_SIZE} to ${MAX_BLOCK_SIZE}`,
    );
  }
  if (!Number.isInteger(blockCount) || blockCount < 1 || blockCount > MAX_BLOCK_COUNT) {
    throw new ValidationError(`Block count ${blockCount} is not from 1 to ${MAX_BLOCK_COUNT}`);
  }
}

/**
 * Bytes of the provider's disk a volume takes: its blocks and its tag records.
 * @param blockSize Bytes per block.
 * @param blockCount Blocks.
 */
export function volumeFootprint(blockSize: number, blockCount: number): number {
  return blockCount * (blockSize + RECORD_BYTES);
}

function checkId(id: string): void {
  if (typeof id !== "string" || !isUuid(id)) {
    throw new ValidationError(
      `Volume id ${JSON.stringify(String(id).slice(0, 80))} is not a lowercase UUID`,
      { code: "invalid" },
    );
  }
}

/** Runs async steps one at a time. */
class Serial {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(f: () => Promise<T>): Promise<T> {
    const p = this.#tail.then(f);
    this.#tail = p.then(() => {}, () => {});
    return p;
  }
}

// Positioned I/O: the seek, and transfers up to SYNC_IO bytes, are synchronous (a page-cache copy
// costs less than a trip to the blocking thread pool); larger transfers are asynchronous. The
// callers serialize every operation on a file.
async function readAt(f: Deno.FsFile, pos: number, buf: Uint8Array): Promise<void> {
  f.seekSync(pos, Deno.SeekMode.Start);
  let at = 0;
  while (at < buf.length) {
    const rest = buf.subarray(at);
    const n = rest.length <= SYNC_IO ? f.readSync(rest) : await f.read(rest);
    if (n === null) {
      buf.fill(0, at); // past the end of a shortened file: holes
      return;
    }
    at += n;
  }
}

async function writeAt(f: Deno.FsFile, pos: number, buf: Uint8Array): Promise<void> {
  f.seekSync(pos, Deno.SeekMode.Start);
  let at = 0;
  while (at < buf.length) {
    const rest = buf.subarray(at);
    at += rest.length <= SYNC_IO ? f.writeSync(rest) : await f.write(rest);
  }
}

function allZero(b: Uint8Array): boolean {
  // Eight bytes at a time where aligned.
  if (b.byteOffset % 8 === 0 && b.length % 8 === 0) {
    const w = new BigUint64Array(b.buffer, b.byteOffset, b.length / 8);
    for (let i = 0; i < w.length; i++) if (w[i] !== 0n) return false;
    return true;
  }
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * The check stored beside block data: CRC-32 of the tag then the block, XOR the same CRC over
 * zeros, so that a never-written block (zero tag, zeros) has check 0.
 */
function blockCheck(block: Uint8Array, tag: Uint8Array, zero: number): number {
  return (crc32(block, crc32(tag)) ^ zero) >>> 0;
}

const zeroChecks = new Map<number, number>();
function zeroCheckOf(blockSize: number): number {
  let z = zeroChecks.get(blockSize);
  if (z === undefined) {
    z = crc32(new Uint8Array(blockSize + TAG_BYTES)) >>> 0;
    zeroChecks.set(blockSize, z);
  }
  return z;
}

function checksumError(id: string, block: number): DeviceError {
  return new DeviceError(
    `Volume ${id}: checksum mismatch in block ${block} on the provider's disk`,
    "device_failed",
    new TrueCloudError(`Block ${block} does not match its stored checksum`, { code: "checksum" }),
  );
}

/**
 * One volume of a {@linkcode VolumeStore}, open: a {@linkcode BlockDevice} on the provider's disk.
 *
 * Operations run one at a time, in the order called. Buffers passed to `write` must stay unchanged
 * until its promise settles.
 */
class Volume implements BlockDevice {
  /** The volume's id. */
  readonly id: string;
  readonly blockSize: number;
  readonly blockCount: number;
  readonly #data: Deno.FsFile;
  readonly #tags: Deno.FsFile;
  readonly #zero: number;
  readonly #serial = new Serial();
  readonly #onClose: () => void;
  #closed?: string;

  /** Made by {@linkcode VolumeStore}. */
  constructor(
    meta: Meta,
    data: Deno.FsFile,
    tags: Deno.FsFile,
    onClose: () => void,
  ) {
    this.id = meta.id;
    this.blockSize = meta.blockSize;
    this.blockCount = meta.blockCount;
    this.#data = data;
    this.#tags = tags;
    this.#zero = zeroCheckOf(meta.blockSize);
    this.#onClose = onClose;
  }

  /** Whether the volume is closed (or wiped). */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  #check(): void {
    if (this.#closed) {
      throw new DeviceError(`Volume ${this.id} is ${this.#closed}`, "device_unavailable");
    }
  }

  async #io<T>(op: string, f: () => Promise<T>): Promise<T> {
    return await this.#serial.run(async () => {
      this.#check();
      try {
        return await f();
      } catch (err) {
        if (err instanceof DeviceError) throw err;
        throw new DeviceError(
          `Volume ${this.id}: ${op} failed: ${(err as Error).message}`,
          "device_failed",
          err,
        );
      }
    });
  }

  /**
   * Reads blocks and their tags, checking each block against its stored checksum.
   * @throws {DeviceError} `device_range` outside the volume; `device_failed` when the disk fails
   * or a block does not match its checksum (then `cause.code` is `checksum`).
   */
  async read(first: number, count: number, signal?: AbortSignal): Promise<BlockRead> {
    this.#check();
    checkBlocks(this, first, count);
    signal?.throwIfAborted();
    const data = new Uint8Array(count * this.blockSize);
    const tags = new Uint8Array(count * TAG_BYTES);
    await this.readInto(first, count, data, tags);
    return { data, tags };
  }

  /**
   * Reads blocks and their tags into buffers of the caller's (the block server's responses).
   * @param data `count × blockSize` bytes.
   * @param tags `count × TAG_BYTES` bytes.
   * @throws {DeviceError} As {@linkcode Volume.read}.
   */
  async readInto(first: number, count: number, data: Uint8Array, tags: Uint8Array): Promise<void> {
    this.#check();
    checkBlocks(this, first, count, data, tags);
    const records = new Uint8Array(count * RECORD_BYTES);
    await this.#io("read", async () => {
      await readAt(this.#data, first * this.blockSize, data);
      await readAt(this.#tags, first * RECORD_BYTES, records);
    });
    const v = new DataView(records.buffer);
    const bs = this.blockSize;
    for (let i = 0; i < count; i++) {
      const tag = records.subarray(i * RECORD_BYTES, i * RECORD_BYTES + TAG_BYTES);
      const block = data.subarray(i * bs, (i + 1) * bs);
      if (blockCheck(block, tag, this.#zero) !== v.getUint32(i * RECORD_BYTES + TAG_BYTES)) {
        throw checksumError(this.id, first + i);
      }
      tags.set(tag, i * TAG_BYTES);
    }
  }

  /**
   * Writes blocks and their tags (the tag records first, then the data: a crash between the two
   * leaves blocks that fail their checksum, never blocks that pass with the wrong content).
   * @throws {DeviceError} `device_range` when the buffers do not fit; `device_failed` when the disk
   * fails.
   */
  async write(first: number, data: Uint8Array, tags: Uint8Array): Promise<void> {
    this.#check();
    const count = data.length / this.blockSize;
    checkBlocks(this, first, count, data, tags);
    const bs = this.blockSize;
    const records = new Uint8Array(count * RECORD_BYTES);
    const v = new DataView(records.buffer);
    for (let i = 0; i < count; i++) {
      const tag = tags.subarray(i * TAG_BYTES, (i + 1) * TAG_BYTES);
      records.set(tag, i * RECORD_BYTES);
      v.setUint32(
        i * RECORD_BYTES + TAG_BYTES,
        blockCheck(data.subarray(i * bs, (i + 1) * bs), tag, this.#zero),
      );
    }
    await this.#io("write", async () => {
      await writeAt(this.#tags, first * RECORD_BYTES, records);
      await writeAt(this.#data, first * bs, data);
    });
  }

  /** Makes every completed write durable (fdatasync of both files). */
  async flush(): Promise<void> {
    this.#check();
    await this.#io("flush", async () => {
      await this.#tags.syncData();
      await this.#data.syncData();
    });
  }

  /**
   * Forgets blocks: they read as zeros with zero tags afterwards. A range that reaches the end of
   * the volume is cut off the files and grown back (a hole, its disk space released); otherwise
   * the blocks that hold anything (a record, or data) are overwritten with zeros (blocks that are
   * zeros already are left alone and stay holes).
   * @throws {DeviceError} As {@linkcode Volume.write}.
   */
  async trim(first: number, count: number): Promise<void> {
    this.#check();
    checkBlocks(this, first, count);
    const bs = this.blockSize;
    await this.#io("trim", async () => {
      if (first + count === this.blockCount) {
        await this.#data.truncate(first * bs);
        await this.#data.truncate(this.blockCount * bs);
        await this.#tags.truncate(first * RECORD_BYTES);
        await this.#tags.truncate(this.blockCount * RECORD_BYTES);
        return;
      }
      const step = Math.max(1, Math.floor(4 * 1024 * 1024 / bs)); // 4 MiB of data at a time
      for (let at = first; at < first + count; at += step) {
        const n = Math.min(step, first + count - at);
        const records = new Uint8Array(n * RECORD_BYTES);
        await readAt(this.#tags, at * RECORD_BYTES, records);
        // A block holds something when its record does, or, for short trims (the pool's repairs
        // of single blocks), its data does: rot under a block never written must not outlive the
        // trim that repairs it. Long trims do not read their holes.
        const data = new Uint8Array(count <= SHORT_TRIM ? n * bs : 0);
        if (data.length) await readAt(this.#data, at * bs, data);
        if (allZero(records) && allZero(data)) continue;
        // Zero the data of each run of blocks that hold something.
        let run = -1;
        for (let i = 0; i <= n; i++) {
          const used = i < n &&
            (!allZero(records.subarray(i * RECORD_BYTES, (i + 1) * RECORD_BYTES)) ||
              (data.length > 0 && !allZero(data.subarray(i * bs, (i + 1) * bs))));
          if (used && run < 0) run = i;
          if (!used && run >= 0) {
            await this.#zeroData((at + run) * bs, (i - run) * bs);
            run = -1;
          }
        }
        await writeAt(this.#tags, at * RECORD_BYTES, new Uint8Array(n * RECORD_BYTES));
      }
    });
  }

  async #zeroData(pos: number, length: number): Promise<void> {
    const zeros = new Uint8Array(Math.min(length, ZERO_CHUNK));
    for (let done = 0; done < length; done += zeros.length) {
      await writeAt(
        this.#data,
        pos + done,
        zeros.subarray(0, Math.min(zeros.length, length - done)),
      );
    }
  }

  /** Closes the volume's files once the operations under way are done (does not wipe). */
  close(): Promise<void> {
    return this.shut("closed");
  }

  /** Closes with a reason that later calls report. */
  async shut(why: string): Promise<void> {
    await this.#serial.run(() => {
      if (this.#closed) return Promise.resolve();
      this.#closed = why;
      this.#data.close();
      this.#tags.close();
      this.#onClose();
      return Promise.resolve();
    });
  }
}

export type { Volume };

/**
 * The directory of volumes a node lends.
 *
 * @example
 * ```ts ignore
 * const store = await VolumeStore.open({ dir: "/var/lib/truecloud/volumes", capacityBytes: 2 ** 40 });
 * const v = await store.create(crypto.randomUUID(), 65536, 1024);
 * await v.write(0, new Uint8Array(65536), new Uint8Array(32));
 * ```
 */
export class VolumeStore {
  /** The directory, absolute. */
  readonly dir: string;
  /** Bytes lent for volumes at most. */
  readonly capacityBytes: number;
  readonly #log: Logger;
  readonly #volumes = new Map<string, Meta>();
  readonly #opened = new Map<string, Volume>();
  // Files of volumes whose metadata is unreadable: left for the operator, their bytes counted.
  readonly #broken = new Map<string, number>();
  readonly #serial = new Serial();
  #closed = false;

  private constructor(dir: string, capacityBytes: number, log: Logger) {
    this.dir = dir;
    this.capacityBytes = capacityBytes;
    this.#log = log;
  }

  /**
   * Opens (and creates if missing) a store, finishing any wipe that was interrupted.
   * @throws {ValidationError} When the settings are invalid.
   */
  static async open(o: VolumeStoreOptions): Promise<VolumeStore> {
    if (typeof o.dir !== "string" || o.dir === "") {
      throw new ValidationError("The volume directory is missing");
    }
    if (!Number.isSafeInteger(o.capacityBytes) || o.capacityBytes < 0) {
      throw new ValidationError(`Capacity ${o.capacityBytes} is not a whole number of bytes`);
    }
    await Deno.mkdir(o.dir, { recursive: true, mode: 0o700 });
    const store = new VolumeStore(
      await Deno.realPath(o.dir),
      o.capacityBytes,
      o.log ?? discardLogger,
    );
    await store.#scan();
    return store;
  }

  #path(id: string, ext: "data" | "tags" | "json" | "json.tmp"): string {
    return `${this.dir}/${id}.${ext}`;
  }

  async #scan(): Promise<void> {
    const names: string[] = [];
    for await (const e of Deno.readDir(this.dir)) if (e.isFile) names.push(e.name);
    for (const name of names.sort()) {
      const tmp = /^(.+)\.json\.tmp$/.exec(name);
      if (tmp && isUuid(tmp[1])) {
        await Deno.remove(`${this.dir}/${name}`).catch(() => {});
        continue;
      }
      const m = /^(.+)\.json$/.exec(name);
      if (!m || !isUuid(m[1])) continue;
      const id = m[1];
      const bytes = await Deno.readFile(this.#path(id, "json"));
      if (allZero(bytes)) {
        await this.#destroy(id); // a wipe stopped after overwriting the metadata
        continue;
      }
      let meta: Meta;
      try {
        meta = parseWith(
          metaSchema,
          JSON.parse(new TextDecoder().decode(bytes)),
          "volume metadata",
        );
        if (meta.id !== id) throw new ValidationError("The metadata names another volume");
        checkShape(meta.blockSize, meta.blockCount);
      } catch (err) {
        let size = 0;
        for (const ext of ["data", "tags"] as const) {
          size += await Deno.stat(this.#path(id, ext)).then((s) => s.size, () => 0);
        }
        this.#broken.set(id, size);
        this.#log.warn("Volume metadata unreadable: files left in place", { volume: id, err });
        continue;
      }
      if (meta.state === "wiping") {
        await this.#destroy(id);
        this.#log.info("Finished wiping a volume", { volume: id });
        continue;
      }
      this.#volumes.set(id, meta);
    }
  }

  /** Bytes taken by the volumes (their footprints). */
  get usedBytes(): number {
    let n = 0;
    for (const m of this.#volumes.values()) n += volumeFootprint(m.blockSize, m.blockCount);
    for (const b of this.#broken.values()) n += b;
    return n;
  }

  /** Bytes still free for volumes. */
  get freeBytes(): number {
    return Math.max(0, this.capacityBytes - this.usedBytes);
  }

  /** Whether the store holds a volume. */
  has(id: string): boolean {
    return this.#volumes.has(id);
  }

  /** What the store says of one volume, if it holds it. */
  info(id: string): VolumeInfo | undefined {
    const m = this.#volumes.get(id);
    return m && {
      id: m.id,
      blockSize: m.blockSize,
      blockCount: m.blockCount,
      bytes: m.blockSize * m.blockCount,
      footprint: volumeFootprint(m.blockSize, m.blockCount),
      createdAt: m.createdAt,
    };
  }

  /** Every volume, by id. */
  list(): VolumeInfo[] {
    return [...this.#volumes.keys()].sort().map((id) => this.info(id)!);
  }

  #checkOpen(): void {
    if (this.#closed) throw new TrueCloudError("The volume store is closed", { code: "closed" });
  }

  async #writeMeta(meta: Meta): Promise<void> {
    const tmp = this.#path(meta.id, "json.tmp");
    const f = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
    try {
      const bytes = new TextEncoder().encode(JSON.stringify(meta) + "\n");
      let at = 0;
      while (at < bytes.length) at += await f.write(bytes.subarray(at));
      await f.sync();
    } finally {
      f.close();
    }
    await Deno.rename(tmp, this.#path(meta.id, "json"));
  }

  /**
   * Creates a volume of zeros and opens it.
   * @param id The volume's UUID (the lease id), lowercase.
   * @param blockSize A power of two from 4 KiB to 1 MiB.
   * @param blockCount Blocks, at least 1.
   * @throws {ValidationError} When the id or shape is invalid.
   * @throws {ConflictError} `volume_exists` when the store holds that id.
   * @throws {TrueCloudError} `no_capacity` when the volume would take the store past its capacity.
   */
  create(id: string, blockSize: number, blockCount: number): Promise<Volume> {
    checkId(id);
    checkShape(blockSize, blockCount);
    return this.#serial.run(async () => {
      this.#checkOpen();
      if (this.#volumes.has(id) || this.#broken.has(id)) {
        throw new ConflictError(`Volume ${id} exists`, { code: "volume_exists" });
      }
      const footprint = volumeFootprint(blockSize, blockCount);
      if (this.usedBytes + footprint > this.capacityBytes) {
        throw new TrueCloudError(
          `A volume of ${footprint} bytes does not fit: ${this.freeBytes} of ${this.capacityBytes} bytes are free`,
          { code: "no_capacity", status: 507 },
        );
      }
      const meta: Meta = {
        format: FORMAT,
        id,
        blockSize,
        blockCount,
        recordBytes: RECORD_BYTES,
        createdAt: new Date().toISOString(),
        state: "ready",
      };
      const opts = { read: true, write: true, create: true, truncate: true, mode: 0o600 };
      let data: Deno.FsFile | undefined, tags: Deno.FsFile | undefined;
      try {
        data = await Deno.open(this.#path(id, "data"), opts);
        tags = await Deno.open(this.#path(id, "tags"), opts);
        await data.truncate(blockSize * blockCount);
        await tags.truncate(blockCount * RECORD_BYTES);
        await this.#writeMeta(meta);
      } catch (err) {
        data?.close();
        tags?.close();
        for (const ext of ["data", "tags", "json.tmp", "json"] as const) {
          await Deno.remove(this.#path(id, ext)).catch(() => {});
        }
        throw new TrueCloudError(`Cannot create volume ${id}: ${(err as Error).message}`, {
          code: "store_failed",
          cause: err,
        });
      }
      this.#volumes.set(id, meta);
      this.#log.info("Volume created", { volume: id, blockSize, blockCount });
      return this.#track(meta, data, tags);
    });
  }

  #track(meta: Meta, data: Deno.FsFile, tags: Deno.FsFile): Volume {
    const v: Volume = new Volume(meta, data, tags, () => {
      if (this.#opened.get(meta.id) === v) this.#opened.delete(meta.id);
    });
    this.#opened.set(meta.id, v);
    return v;
  }

  /**
   * Opens a volume; the volume open already, if it is.
   * @throws {ValidationError} When the id is not a UUID.
   * @throws {NotFoundError} `unknown_volume` when the store does not hold it.
   * @throws {TrueCloudError} `store_failed` when its files are missing or of the wrong size.
   */
  open(id: string): Promise<Volume> {
    checkId(id);
    return this.#serial.run(async () => {
      this.#checkOpen();
      const open = this.#opened.get(id);
      if (open && !open.closed) return open;
      const meta = this.#volumes.get(id);
      if (!meta) {
        throw new NotFoundError(`No volume ${id} in this store`, { code: "unknown_volume" });
      }
      const opts = { read: true, write: true };
      let data: Deno.FsFile | undefined, tags: Deno.FsFile | undefined;
      try {
        data = await Deno.open(this.#path(id, "data"), opts);
        tags = await Deno.open(this.#path(id, "tags"), opts);
        const [ds, ts] = [(await data.stat()).size, (await tags.stat()).size];
        if (ds !== meta.blockSize * meta.blockCount || ts !== meta.blockCount * RECORD_BYTES) {
          throw new Error(`its files have ${ds} and ${ts} bytes`);
        }
      } catch (err) {
        data?.close();
        tags?.close();
        throw new TrueCloudError(`Cannot open volume ${id}: ${(err as Error).message}`, {
          code: "store_failed",
          cause: err,
        });
      }
      return this.#track(meta, data, tags);
    });
  }

  /**
   * Wipes a volume: closes it (its later operations fail with `device_unavailable`), truncates its
   * files to nothing, overwrites its metadata and unlinks all three. Its data can never be read
   * again through the store, and a new volume of the same id starts all zeros. A wipe interrupted
   * by a crash is finished when the store is next opened.
   * @throws {ValidationError} When the id is not a UUID.
   * @throws {NotFoundError} `unknown_volume` when the store does not hold it.
   */
  wipe(id: string): Promise<void> {
    checkId(id);
    return this.#serial.run(async () => {
      this.#checkOpen();
      const meta = this.#volumes.get(id);
      if (!meta && !this.#broken.has(id)) {
        throw new NotFoundError(`No volume ${id} in this store`, { code: "unknown_volume" });
      }
      await this.#opened.get(id)?.shut("wiped");
      if (meta) await this.#writeMeta({ ...meta, state: "wiping" });
      await this.#destroy(id);
      this.#volumes.delete(id);
      this.#broken.delete(id);
      this.#log.info("Volume wiped", { volume: id });
    });
  }

  async #destroy(id: string): Promise<void> {
    for (const ext of ["data", "tags"] as const) {
      const path = this.#path(id, ext);
      try {
        const f = await Deno.open(path, { write: true });
        try {
          await f.truncate(0);
          await f.sync();
        } finally {
          f.close();
        }
        await Deno.remove(path);
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
    }
    const meta = this.#path(id, "json");
    try {
      const f = await Deno.open(meta, { read: true, write: true });
      try {
        const size = (await f.stat()).size;
        await writeAt(f, 0, new Uint8Array(size));
        await f.sync();
      } finally {
        f.close();
      }
      await Deno.remove(meta);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }

  /** Closes every open volume and the store. */
  close(): Promise<void> {
    return this.#serial.run(async () => {
      if (this.#closed) return;
      this.#closed = true;
      for (const v of [...this.#opened.values()]) await v.close();
    });
  }
}
