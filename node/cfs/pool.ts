/**
 * The userspace RAIDZ3-like pool: a linear byte space striped over eight block devices with
 * Reed–Solomon 5+3, every shard tagged with a generation and a MAC so that providers cannot alter,
 * swap or replay blocks undetected (`docs/protocol/pool.md`).
 *
 * @module
 */

import {
  type Clock,
  ConflictError,
  discardLogger,
  isUuid,
  type Logger,
  systemClock,
  TrueCloudError,
  uuidToBytes,
  ValidationError,
} from "../../protocol/mod.ts";
import { type BlockDevice, DeviceError, TAG_BYTES } from "../drivers/mod.ts";
import { type ErasureCoder, WasmCoder } from "./erasure/mod.ts";
import { type ByteStore, checkRange } from "./byte_store.ts";
import type { CfsEvent, MemberState, PoolState, ResilverStatus } from "./status.ts";
import { POOL_ID_BYTES, POOL_KEY_BYTES, ShardTagger } from "./_tags.ts";

/** Members of a pool. */
export const POOL_MEMBERS = 8;
/** Members holding data shards (slots 0–4). */
export const POOL_DATA_MEMBERS = 5;
/** Members that may be lost without losing data. */
export const POOL_PARITY_MEMBERS = 3;

const N = POOL_MEMBERS;
const K = POOL_DATA_MEMBERS;
const M = POOL_PARITY_MEMBERS;
const NOT_READ = -2;

/** A member a write goes to, as it was when the write began. */
interface WriteTarget {
  slot: number;
  device: BlockDevice;
  epoch: number;
  online: boolean;
}

/** Why a pool operation failed. */
export type PoolErrorCode = "data_lost" | "pool_faulted" | "pool_closed";

/** A pool operation that could not be done safely. */
export class PoolError extends TrueCloudError {
  /** The first stripe concerned, when known. */
  readonly stripe?: number;
  /** The pool bytes concerned, when known. */
  readonly offset?: number;
  /** Their length. */
  readonly length?: number;

  /**
   * @param message What failed, naming the stripe and bytes when known.
   * @param code `data_lost`, `pool_faulted` or `pool_closed`.
   * @param where The stripe and bytes concerned.
   */
  constructor(
    message: string,
    code: PoolErrorCode,
    where: { stripe?: number; offset?: number; length?: number } = {},
  ) {
    super(message, { code, status: code === "data_lost" ? 500 : 503 });
    this.stripe = where.stripe;
    this.offset = where.offset;
    this.length = where.length;
  }
}

/** How a pool is opened or created. */
export interface PoolOptions {
  /** One device per slot (length 8); `undefined` for a slot with no volume yet (`missing`). */
  devices: readonly (BlockDevice | undefined)[];
  /** The pool's 32-byte secret key for shard MACs. */
  key: Uint8Array;
  /** The pool's 16-byte id, as bytes or a UUID. */
  poolId: Uint8Array | string;
  /** A 5+3 erasure coder taking shards of the block size (default: a new {@linkcode WasmCoder}). */
  coder?: ErasureCoder;
  /** Where to log (default: nowhere). */
  log?: Logger;
  /** The time source (default: the system clock). */
  clock?: Clock;
  /** The last {@linkcode Pool.generation} persisted: generations continue above it. */
  generationHint?: number;
  /** Called for member state changes, checksum errors, resilvers, scrubs and data loss. */
  onEvent?: (event: CfsEvent) => void;
  /** Stripes per device call (1 to 256, default 16). */
  batchStripes?: number;
  /** Batches in flight in one large read or write, a resilver or a scrub (1 to 16, default 4). */
  parallelBatches?: number;
}

/** One member as {@linkcode Pool.status} reports it. */
export interface PoolMemberStatus {
  /** 0–4 data, 5–7 parity. */
  slot: number;
  role: "data" | "parity";
  state: MemberState;
  /** Why it is not online, when it is not. */
  reason?: string;
  /** Bytes of its device (0 when it has none). */
  sizeBytes: number;
  /** Errors counted since its volume joined (a replacement starts again from zero). */
  errors: { read: number; write: number; checksum: number };
  /** Stripes it still has to catch up. */
  behindStripes: number;
}

/** A scrub under way or finished. */
export interface ScrubStatus {
  /** Pool bytes scrubbed. */
  doneBytes: number;
  /** Pool bytes to scrub. */
  totalBytes: number;
  /** Shards rewritten so far. */
  repaired: number;
  finished: boolean;
}

/** What a finished scrub found. */
export interface ScrubResult {
  /** Written stripes checked (generation above 0). */
  stripes: number;
  /** Shards that were bad, stale or did not match the others. */
  checksumErrors: number;
  /** Shards rewritten with their true content. */
  repaired: number;
  /** Stripes without five agreeing shards. */
  unrepairable: number;
}

/** The pool as a whole. */
export interface PoolStatus {
  state: PoolState;
  /** Usable bytes. */
  sizeBytes: number;
  /** Members that may still be lost without losing data. */
  lossesTolerated: number;
  /** The last generation used: persist it and give it back as `generationHint`. */
  generation: number;
  members: PoolMemberStatus[];
  /** The resilver running, or the last one. */
  resilver?: ResilverStatus;
  /** The scrub running, or the last one. */
  scrub?: ScrubStatus;
}

interface Member {
  device: BlockDevice | undefined;
  state: MemberState;
  reason?: string;
  errors: { read: number; write: number; checksum: number };
  /** Stripes written while it was away. */
  behind: StripeSet;
  /** A replacement resilver was interrupted: it needs a whole one. */
  full: boolean;
  /** Changes with every state change; work started under an older epoch is stale. */
  epoch: number;
  /** Calls in flight, by the function that fails each one when the member leaves. */
  pending: Set<(error: Error) => void>;
  /** Aborted when it leaves: given to reads. */
  abort: AbortController;
}

interface ResilverTask {
  slot: number;
  epoch: number;
  status: ResilverStatus;
  stripesLeft: number;
  unrepairable: number;
  /** When it finished or stopped (Unix ms). */
  endedAt?: number;
  done: Promise<ResilverStatus>;
}

/** What reading a batch of stripes found. */
interface LoadReport {
  /** Stripes with no consensus. */
  lost: number[];
  /** Stripes of generation above 0. */
  written: number;
  checksumErrors: number;
  repaired: number;
  /** Per slot, written stripes read from it, and its shards among them that were wrong. */
  bySlot: { read: number; wrong: number }[];
}

/** What a spot check found of one member (`docs/protocol/pool.md`, "Spot checks"). */
export interface SpotCheck {
  slot: number;
  /** Sampled stripes, written (generation above 0), that it answered. */
  checked: number;
  /** Of its shards among them, those that failed verification or did not match (now rewritten). */
  wrong: number;
}

/** The slot being rebuilt, or what a read needs. */
type LoadMode = "data" | "scrub" | { target: number };

/** Called once per stripe with a consensus, while `shards` (all eight, or zeros) are valid. */
type StripeUse = (stripe: number, generation: number, shards: readonly Uint8Array[]) => void;

/**
 * A pool of eight block devices: five data and three parity shards per stripe, any three members
 * may be lost. Implements {@linkcode ByteStore}.
 *
 * Layout, tags and the read rule are in `docs/protocol/pool.md`. Members move between the states
 * of {@linkcode MemberState}: the CFS calls {@linkcode Pool.setAway}, {@linkcode Pool.fault},
 * {@linkcode Pool.replace} and {@linkcode Pool.rejoin} as its heartbeats and leases decide, and the
 * pool itself makes a member away when a device call times out or the device is unavailable.
 *
 * @example
 * ```ts
 * import { MemoryBlockDevice } from "../drivers/mod.ts";
 * import { Pool } from "./pool.ts";
 * const devices = Array.from({ length: 8 }, () => new MemoryBlockDevice(4096, 64));
 * const pool = await Pool.create({
 *   devices,
 *   key: crypto.getRandomValues(new Uint8Array(32)),
 *   poolId: crypto.randomUUID(),
 * });
 * await pool.write(100, new TextEncoder().encode("hello"));
 * pool.setAway(0, "no heartbeat");
 * console.log(new TextDecoder().decode(await pool.read(100, 5))); // hello
 * await pool.close();
 * ```
 */
export class Pool implements ByteStore {
  /** Usable bytes: `stripes × 5 × blockSize`. */
  readonly size: number;
  /** A stripe's data: `5 × blockSize`. */
  readonly alignment: number;
  /** The shard size: the members' block size. */
  readonly blockSize: number;
  /** Stripes: the smallest member's block count. */
  readonly stripes: number;
  readonly #members: Member[];
  readonly #coder: ErasureCoder;
  readonly #tagger: ShardTagger;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #onEvent?: (event: CfsEvent) => void;
  readonly #batch: number;
  readonly #parallel: number;
  readonly #locks = new RangeLocks();
  readonly #ops = new Set<Promise<unknown>>();
  readonly #resilvers = new Map<number, ResilverTask>();
  readonly #zeros: Uint8Array[];
  readonly #latest = new Map<number, ResilverTask>();
  #lastResilver?: ResilverTask;
  #scrub?: { status: ScrubStatus; done: Promise<ScrubResult>; running: boolean };
  #generation: number;
  #closed = false;
  #state: PoolState = "online";

  private constructor(o: CheckedOptions) {
    this.blockSize = o.blockSize;
    this.stripes = o.stripes;
    this.alignment = K * o.blockSize;
    this.size = o.stripes * this.alignment;
    this.#members = o.devices.map((device) => ({
      device,
      state: device ? "online" : "missing",
      reason: device ? undefined : "No volume for this slot",
      errors: { read: 0, write: 0, checksum: 0 },
      behind: new StripeSet(o.stripes),
      full: false,
      epoch: 0,
      pending: new Set(),
      abort: new AbortController(),
    }));
    this.#coder = o.coder;
    this.#tagger = new ShardTagger(o.key, o.poolId);
    this.#log = o.log;
    this.#clock = o.clock;
    this.#onEvent = o.onEvent;
    this.#batch = o.batchStripes;
    this.#parallel = o.parallelBatches;
    this.#generation = Math.max(o.generationHint, Math.floor(o.clock.now() * 1000));
    const zero = new Uint8Array(o.blockSize);
    this.#zeros = Array.from({ length: N }, () => zero);
    this.#state = this.#poolState();
  }

  /**
   * Creates a new pool: checks the options and trims the pool's blocks on every device given, so
   * every stripe reads as zeros.
   *
   * @param options Devices, key, pool id and dependencies.
   * @returns The pool, open.
   * @throws {ValidationError} On malformed options: not eight slots, fewer than five devices,
   * differing block sizes, a key of other than 32 bytes, a bad pool id (nothing is touched).
   * @throws {DeviceError} If a device fails to trim.
   */
  static async create(options: PoolOptions): Promise<Pool> {
    const checked = checkOptions(options);
    await Promise.all(
      checked.devices.map((d) => d?.trim(0, checked.stripes)),
    );
    const pool = new Pool(checked);
    pool.#log.info("Pool created", { stripes: pool.stripes, blockSize: pool.blockSize });
    return pool;
  }

  /**
   * Opens an existing pool: every device given is online.
   *
   * @param options Devices, key, pool id and dependencies.
   * @returns The pool, open.
   * @throws {ValidationError} On malformed options, as {@linkcode Pool.create}.
   */
  static open(options: PoolOptions): Promise<Pool> {
    try {
      const pool = new Pool(checkOptions(options));
      pool.#log.info("Pool opened", { stripes: pool.stripes, blockSize: pool.blockSize });
      return Promise.resolve(pool);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The last generation used: persist it and give it back as `generationHint` when reopening. */
  get generation(): number {
    return this.#generation;
  }

  /** {@inheritDoc ByteStore.read} */
  read(offset: number, length: number): Promise<Uint8Array> {
    return this.#op(() => {
      checkRange(this, offset, length);
      return this.#read(offset, length);
    });
  }

  /** {@inheritDoc ByteStore.write} */
  write(offset: number, data: Uint8Array): Promise<void> {
    return this.#op(() => {
      if (!(data instanceof Uint8Array)) throw new ValidationError("Data must be a Uint8Array");
      checkRange(this, offset, data.length);
      if (data.length === 0) return Promise.resolve();
      this.#needOnline("write", offset, data.length);
      return this.#write(offset, data);
    });
  }

  /**
   * Makes every completed write durable: flushes every online and resilvering member in parallel.
   * @throws {PoolError} `pool_faulted` if fewer than five online members flushed.
   */
  flush(): Promise<void> {
    return this.#op(async () => {
      this.#needOnline("flush", 0, 0);
      const targets = this.#writable();
      const results = await Promise.allSettled(
        targets.map((t) => this.#call(t.slot, t.epoch, (d) => d.flush())),
      );
      let ok = 0;
      results.forEach((r, i) => {
        const t = targets[i];
        if (r.status === "rejected") this.#failed(t.slot, t.epoch, r.reason, "write");
        else if (t.online) ok++;
      });
      if (ok < K) {
        throw new PoolError(`Only ${ok} members flushed: durability needs ${K}`, "pool_faulted");
      }
    });
  }

  /**
   * Forgets a range: whole stripes are trimmed on every online and resilvering member (and
   * recorded as behind for away ones); partial stripes at the ends are written with zeros.
   * @throws {PoolError} `pool_faulted` if fewer than five online members took it.
   */
  trim(offset: number, length: number): Promise<void> {
    return this.#op(async () => {
      checkRange(this, offset, length);
      if (length === 0) return;
      this.#needOnline("trim", offset, length);
      const SB = this.alignment, end = offset + length;
      const first = Math.ceil(offset / SB), last = Math.floor(end / SB);
      if (first >= last) {
        await this.#write(offset, new Uint8Array(length));
        return;
      }
      if (offset < first * SB) await this.#write(offset, new Uint8Array(first * SB - offset));
      await this.#trimStripes(first, last - first);
      if (end > last * SB) await this.#write(last * SB, new Uint8Array(end - last * SB));
    });
  }

  /**
   * Marks a member away: silent, within its grace period. Reads and writes skip it and every
   * stripe written meanwhile is recorded for its catch-up ({@linkcode Pool.rejoin}).
   *
   * @param slot 0 to 7.
   * @param reason Why, for the status and events.
   * @throws {ConflictError} If the member is faulted or missing.
   */
  setAway(slot: number, reason: string): void {
    this.#checkOpen();
    checkSlot(slot);
    const m = this.#members[slot];
    if (m.state === "away") return;
    if (m.state === "faulted" || m.state === "missing") {
      throw new ConflictError(`Slot ${slot} is ${m.state}: it cannot be away`);
    }
    this.#setState(slot, "away", String(reason));
  }

  /**
   * Marks a member gone for good: it must be replaced ({@linkcode Pool.replace}).
   *
   * @param slot 0 to 7.
   * @param reason Why.
   * @throws {ConflictError} If the slot has no volume (missing).
   */
  fault(slot: number, reason: string): void {
    this.#checkOpen();
    checkSlot(slot);
    const m = this.#members[slot];
    if (m.state === "faulted") return;
    if (m.state === "missing") throw new ConflictError(`Slot ${slot} is missing: nothing to fault`);
    this.#setState(slot, "faulted", String(reason));
  }

  /**
   * Puts a new, empty device in a slot and starts rebuilding it in the background (a `replace`
   * resilver): the member is online once {@linkcode Pool.resilverDone} resolves.
   *
   * @param slot 0 to 7, in any state.
   * @param device The block size of the pool and at least {@linkcode Pool.stripes} blocks.
   * @throws {ValidationError} If the device does not fit or is another member's.
   */
  replace(slot: number, device: BlockDevice): void {
    this.#checkOpen();
    checkSlot(slot);
    this.#checkDevice(slot, device);
    const m = this.#members[slot];
    m.device = device;
    m.behind.clear();
    m.full = false;
    m.errors = { read: 0, write: 0, checksum: 0 }; // a new volume joins
    this.#setState(slot, "resilvering", "Being rebuilt");
    this.#startResilver(slot, "replace");
  }

  /**
   * Brings an away member back within its grace period (perhaps over a new connection): only the
   * stripes written while it was away are rebuilt on it (a `catch-up` resilver), then it is online.
   *
   * @param slot An away member.
   * @param device Its device, if it is a new connection (default: the one it had).
   * @throws {ConflictError} If the member is not away.
   * @throws {ValidationError} If the device does not fit.
   */
  rejoin(slot: number, device?: BlockDevice): void {
    this.#checkOpen();
    checkSlot(slot);
    const m = this.#members[slot];
    if (m.state !== "away") {
      throw new ConflictError(`Slot ${slot} is ${m.state}, not away: only an away member rejoins`);
    }
    const dev = device ?? m.device;
    if (!dev) throw new ValidationError(`Slot ${slot} has no device: give one`);
    this.#checkDevice(slot, dev);
    m.device = dev;
    const kind = m.full ? "replace" : "catch-up";
    this.#setState(slot, "resilvering", kind === "replace" ? "Being rebuilt" : "Catching up");
    this.#startResilver(slot, kind);
  }

  /**
   * The last resilver of a slot, or, when no slot is given, one running (else the last one).
   * @param slot 0 to 7.
   * @returns A snapshot, or `undefined` if there was none.
   */
  resilverStatus(slot?: number): ResilverStatus | undefined {
    const task = slot === undefined
      ? this.#resilvers.values().next().value ?? this.#lastResilver
      : this.#latest.get(slot);
    return task ? this.#progress(task) : undefined;
  }

  /**
   * Waits until the resilver of a slot, or every resilver, is no longer running.
   * @param slot 0 to 7.
   * @returns {@linkcode Pool.resilverStatus} then: `finished` is false if the resilver stopped
   * early (the member went away or faulted, or the pool closed); `undefined` if there was none.
   */
  async resilverDone(slot?: number): Promise<ResilverStatus | undefined> {
    for (;;) {
      const tasks = slot === undefined
        ? [...this.#resilvers.values()]
        : [this.#resilvers.get(slot)].filter((t) => t !== undefined);
      if (tasks.length === 0) return this.resilverStatus(slot);
      await Promise.all(tasks.map((t) => t.done));
    }
  }

  /**
   * Reads every stripe from every online member, verifies every tag and that each shard matches
   * the others (for a full stripe, the parity re-encoded from the data), and repairs what is
   * wrong. A scrub already running is joined.
   *
   * @returns The counts.
   * @throws {PoolError} `pool_closed` after close.
   */
  scrub(): Promise<ScrubResult> {
    if (this.#scrub?.running) return this.#scrub.done;
    try {
      this.#checkOpen();
    } catch (e) {
      return Promise.reject(e);
    }
    const status: ScrubStatus = {
      doneBytes: 0,
      totalBytes: this.size,
      repaired: 0,
      finished: false,
    };
    const scrub = { status, done: this.#runScrub(status), running: true };
    scrub.done.finally(() => scrub.running = false).catch(() => {});
    this.#scrub = scrub;
    return scrub.done;
  }

  /**
   * A spot check (`docs/protocol/pool.md`, "Spot checks"): `samples` random stripes in use, each read
   * from every online member, verified and repaired as a scrub does.
   * @param samples How many stripes.
   * @returns Per online member: the written stripes it answered, and its wrong shards among them.
   */
  audit(samples = 4): Promise<SpotCheck[]> {
    return this.#op(() => this.#audit(samples));
  }

  async #audit(samples: number): Promise<SpotCheck[]> {
    const runs = this.#inUse ? this.#inUseRuns() : [[0, this.stripes] as [number, number]];
    const total = runs.reduce((n, [, count]) => n + count, 0);
    const found = Array.from({ length: N }, () => ({ read: 0, wrong: 0 }));
    for (let i = 0; i < samples && total > 0 && !this.#closed; i++) {
      let pick = Math.floor(Math.random() * total), stripe = 0;
      for (const [first, count] of runs) {
        if (pick < count) {
          stripe = first + pick;
          break;
        }
        pick -= count;
      }
      const release = await this.#locks.lock(stripe, stripe + 1);
      try {
        const report = await this.#load(stripe, 1, "scrub", () => {});
        if (report.lost.length > 0) this.#lost(report.lost, "a spot check");
        report.bySlot.forEach((s, slot) => {
          found[slot].read += s.read;
          found[slot].wrong += s.wrong;
        });
      } finally {
        release();
      }
    }
    return found.flatMap((f, slot) =>
      this.#members[slot].state === "online" || f.read > 0
        ? [{ slot, checked: f.read, wrong: f.wrong }]
        : []
    );
  }

  /** The scrub running, or the last one. */
  scrubStatus(): ScrubStatus | undefined {
    return this.#scrub ? { ...this.#scrub.status } : undefined;
  }

  /** The pool's health, its members and its resilver and scrub. */
  status(): PoolStatus {
    const unavailable = this.#members.filter((m) => m.state !== "online").length;
    return {
      state: this.#poolState(),
      sizeBytes: this.size,
      lossesTolerated: Math.max(0, M - unavailable),
      generation: this.#generation,
      members: this.#members.map((m, slot) => ({
        slot,
        role: slot < K ? "data" : "parity",
        state: m.state,
        ...(m.reason === undefined ? {} : { reason: m.reason }),
        sizeBytes: m.device ? m.device.blockSize * m.device.blockCount : 0,
        errors: { ...m.errors },
        behindStripes: this.#behindCount(slot),
      })),
      resilver: this.resilverStatus(),
      scrub: this.scrubStatus(),
    };
  }

  /**
   * Stops the pool: new operations fail with `pool_closed`, resilvers and scrubs stop after their
   * current batch, and in-flight operations are waited for. The devices stay open and keep their
   * data: whoever attached them lets go of them.
   */
  async close(): Promise<void> {
    this.#closed = true;
    for (;;) {
      const pending = [
        ...this.#ops,
        ...[...this.#resilvers.values()].map((t) => t.done),
        ...(this.#scrub ? [this.#scrub.done] : []),
      ];
      if (pending.length === 0) break;
      await Promise.allSettled(pending);
      if (this.#ops.size === 0 && this.#resilvers.size === 0) break;
    }
  }

  // ——— operations ———

  #op<T>(run: () => Promise<T>): Promise<T> {
    let p: Promise<T>;
    try {
      this.#checkOpen();
      p = run();
    } catch (e) {
      return Promise.reject(e);
    }
    this.#ops.add(p);
    const forget = () => this.#ops.delete(p);
    p.then(forget, forget);
    return p;
  }

  #checkOpen(): void {
    if (this.#closed) throw new PoolError("The pool is closed", "pool_closed");
  }

  #needOnline(op: string, offset: number, length: number): void {
    const online = this.#members.filter((m) => m.state === "online").length;
    if (online < K) {
      throw new PoolError(
        `Cannot ${op}: only ${online} members are online and a stripe needs ${K}`,
        "pool_faulted",
        { offset, length },
      );
    }
  }

  async #read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    if (length === 0) return out;
    const SB = this.alignment, bs = this.blockSize, end = offset + length;
    const first = Math.floor(offset / SB), last = Math.ceil(end / SB);
    const copy: StripeUse = (stripe, generation, shards) => {
      if (generation === 0) return;
      const base = stripe * SB;
      for (let j = 0; j < K; j++) {
        const from = Math.max(offset, base + j * bs), to = Math.min(end, base + (j + 1) * bs);
        if (from >= to) continue;
        out.set(shards[j].subarray(from - base - j * bs, to - base - j * bs), from - offset);
      }
    };
    await this.#batches(first, last, async (s, count) => {
      const report = await this.#load(s, count, "data", copy);
      if (report.lost.length > 0) throw this.#lost(report.lost);
    });
    return out;
  }

  async #write(offset: number, data: Uint8Array): Promise<void> {
    const SB = this.alignment, end = offset + data.length;
    const first = Math.floor(offset / SB), last = Math.ceil(end / SB);
    await this.#batches(first, last, (s, count) => this.#writeBatch(s, count, offset, data));
  }

  /**
   * Runs `run` over stripes `first … last−1` in batches, each under its stripes' lock, several
   * batches in flight (so device latency overlaps the coding and MACs of the next batch). The
   * first failure stops new batches; it is thrown once those in flight have settled.
   */
  async #batches(
    first: number,
    last: number,
    run: (stripe: number, count: number) => Promise<void>,
  ): Promise<void> {
    let next = first;
    let failure: { error: unknown } | undefined;
    const worker = async () => {
      while (next < last && !failure) {
        const s = next, count = Math.min(this.#batch, last - s);
        next += count;
        const release = await this.#locks.lock(s, s + count);
        try {
          await run(s, count);
        } catch (error) {
          failure ??= { error };
        } finally {
          release();
        }
      }
    };
    const workers = Math.min(this.#parallel, Math.ceil((last - first) / this.#batch));
    await Promise.all(Array.from({ length: workers }, worker));
    if (failure) throw failure.error;
  }

  /** Writes stripes `first … first+count−1` with the bytes of `data` (at pool `offset`) in them. */
  // Write buffers of whole batches, kept for the next batch: allocating (and zeroing) eight of
  // them per batch costs a fifth of a write's time.
  readonly #buffers: { data: Uint8Array; tags: Uint8Array }[] = [];
  #inUse?: () => Iterable<readonly [number, number]>;

  #takeBuffer(count: number): { data: Uint8Array; tags: Uint8Array } {
    const b = this.#buffers.pop();
    if (b && b.tags.length === count * TAG_BYTES) return b;
    return {
      data: new Uint8Array(count * this.blockSize),
      tags: new Uint8Array(count * TAG_BYTES),
    };
  }

  #giveBuffer(b: { data: Uint8Array; tags: Uint8Array }): void {
    if (b.tags.length === this.#batch * TAG_BYTES && this.#buffers.length < 64) {
      this.#buffers.push(b);
    }
  }

  async #writeBatch(first: number, count: number, offset: number, data: Uint8Array): Promise<void> {
    const SB = this.alignment, bs = this.blockSize, end = offset + data.length;
    // Partial stripes: their current content, read under this batch's lock.
    const old = new Map<number, Uint8Array>();
    for (const s of new Set([first, first + count - 1])) {
      if (s * SB >= offset && (s + 1) * SB <= end) continue;
      const buf = new Uint8Array(SB);
      const report = await this.#load(s, 1, "data", (_s, generation, shards) => {
        if (generation === 0) return;
        for (let j = 0; j < K; j++) buf.set(shards[j], j * bs);
      });
      if (report.lost.length > 0) throw this.#lost(report.lost, "a partial write");
      old.set(s, buf);
    }
    this.#needOnline("write", offset, data.length);
    const targets = this.#writable();
    this.#markBehind(first, count);
    const bufs = new Map<number, { data: Uint8Array; tags: Uint8Array }>();
    for (const t of targets) bufs.set(t.slot, this.#takeBuffer(count));
    for (let i = 0; i < count; i++) {
      const s = first + i;
      let stripe = old.get(s);
      if (stripe) {
        const from = Math.max(offset, s * SB), to = Math.min(end, (s + 1) * SB);
        stripe.set(data.subarray(from - offset, to - offset), from - s * SB);
      } else {
        stripe = data.subarray(s * SB - offset, (s + 1) * SB - offset);
      }
      const generation = ++this.#generation;
      const shards = this.#coder.shards(bs);
      for (let j = 0; j < K; j++) shards[j].set(stripe.subarray(j * bs, (j + 1) * bs));
      this.#coder.encode(shards);
      for (const [slot, b] of bufs) {
        const at = i * bs;
        b.data.set(shards[slot], at);
        this.#tagger.sign(slot, s, generation, b.data.subarray(at, at + bs), b.tags, i * TAG_BYTES);
      }
    }
    const ok = await this.#toAll(targets, first, count, (d, slot) => {
      const b = bufs.get(slot)!;
      // Reused only once the device itself is done with it (not when the call is given up on: a
      // write may still be queued in its driver).
      const done = d.write(first, b.data, b.tags);
      done.then(() => this.#giveBuffer(b), () => this.#giveBuffer(b));
      return done;
    });
    if (ok < K) {
      const from = Math.max(offset, first * SB), to = Math.min(end, (first + count) * SB);
      throw new PoolError(
        `Stripes ${first} to ${
          first + count - 1
        } reached only ${ok} members (${K} needed): bytes ${from} to ${to - 1} may be unreadable`,
        "pool_faulted",
        { stripe: first, offset: from, length: to - from },
      );
    }
  }

  // Makes one change on every writable member at once; a member that fails it is failed over.
  // Returns how many online members took it.
  async #toAll(
    targets: WriteTarget[],
    first: number,
    count: number,
    change: (device: BlockDevice, slot: number) => Promise<void>,
  ): Promise<number> {
    const results = await Promise.allSettled(
      targets.map((t) => this.#call(t.slot, t.epoch, (d) => change(d, t.slot))),
    );
    let ok = 0;
    results.forEach((r, i) => {
      const t = targets[i];
      if (r.status === "rejected") this.#failed(t.slot, t.epoch, r.reason, "write", first, count);
      else if (t.online) ok++;
    });
    return ok;
  }

  async #trimStripes(first: number, count: number): Promise<void> {
    const release = await this.#locks.lock(first, first + count);
    try {
      this.#needOnline("trim", first * this.alignment, count * this.alignment);
      const targets = this.#writable();
      this.#markBehind(first, count);
      const ok = await this.#toAll(targets, first, count, (d) => d.trim(first, count));
      if (ok < K) {
        throw new PoolError(
          `Trim of stripes ${first} to ${
            first + count - 1
          } reached only ${ok} members (${K} needed)`,
          "pool_faulted",
          { stripe: first, offset: first * this.alignment, length: count * this.alignment },
        );
      }
    } finally {
      release();
    }
  }

  /** Members that take writes now: online (counted) and resilvering. */
  #writable(): WriteTarget[] {
    const out = [];
    for (let slot = 0; slot < N; slot++) {
      const m = this.#members[slot];
      if ((m.state === "online" || m.state === "resilvering") && m.device) {
        out.push({ slot, device: m.device, epoch: m.epoch, online: m.state === "online" });
      }
    }
    return out;
  }

  /**
   * Calls a member's device. The call fails at once if the member has changed state since
   * `epoch`, and as soon as it leaves (away, faulted, replaced), even if the device never answers.
   */
  #call<T>(
    slot: number,
    epoch: number,
    run: (device: BlockDevice, signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    const m = this.#members[slot];
    if (m.epoch !== epoch || !m.device) {
      return Promise.reject(
        new DeviceError(
          `Slot ${slot} is ${m.state} since the call was planned`,
          "device_unavailable",
        ),
      );
    }
    const device = m.device, signal = m.abort.signal, pending = m.pending;
    return new Promise<T>((resolve, reject) => {
      pending.add(reject);
      attempt(() => run(device, signal)).then((value) => {
        pending.delete(reject);
        resolve(value);
      }, (error) => {
        pending.delete(reject);
        reject(error);
      });
    });
  }

  #markBehind(first: number, count: number): void {
    for (const m of this.#members) if (m.state === "away") m.behind.addRange(first, count);
  }

  #lost(stripes: number[], during = "a read"): PoolError {
    const SB = this.alignment;
    const s = stripes[0];
    const more = stripes.length > 1 ? ` (and ${stripes.length - 1} more stripes)` : "";
    const message = `Data lost in stripe ${s}, bytes ${s * SB} to ${
      (s + 1) * SB - 1
    }${more}: no ${K} verified shards agree (during ${during})`;
    this.#event("error", message);
    return new PoolError(message, "data_lost", { stripe: s, offset: s * SB, length: SB });
  }

  // ——— reading stripes: consensus, reconstruction, self-healing ———

  /**
   * Reads stripes `first … first+count−1` under the caller's lock, decides each one's content by
   * consensus (`docs/protocol/pool.md`), calls `use` for each stripe that has one, and repairs
   * the shards that were read wrong.
   */
  async #load(first: number, count: number, mode: LoadMode, use: StripeUse): Promise<LoadReport> {
    const bs = this.blockSize;
    const target = typeof mode === "object" ? mode.target : -1;
    const readers: { slot: number; epoch: number }[] = [];
    for (let slot = 0; slot < N; slot++) {
      const m = this.#members[slot];
      if (m.state === "online" && m.device && slot !== target) {
        readers.push({ slot, epoch: m.epoch });
      }
    }
    const reads: ({ at: number; data: Uint8Array; tags: Uint8Array } | undefined)[] = [];
    // gens[i * N + slot]: NOT_READ, BAD_SHARD, or the generation of that shard.
    const gens = new Float64Array(count * N).fill(NOT_READ);
    const readSome = async (group: typeof readers, from: number, n: number) => {
      await Promise.all(group.map(async ({ slot, epoch }) => {
        const r = await this.#readMember(slot, epoch, from, n);
        if (!r) return;
        reads[slot] = { at: from, ...r };
        for (let s = from; s < from + n; s++) {
          const i = s - first, at = (s - from) * bs;
          gens[i * N + slot] = this.#tagger.verify(
            slot,
            s,
            r.data.subarray(at, at + bs),
            r.tags,
            (s - from) * TAG_BYTES,
          );
        }
      }));
    };
    const phase1 = mode === "scrub" ? readers : readers.slice(0, K);
    await readSome(phase1, first, count);
    let needFrom = -1, needTo = -1;
    for (let i = 0; i < count; i++) {
      if (consensus(gens, i) === undefined) {
        if (needFrom < 0) needFrom = i;
        needTo = i;
      }
    }
    if (needFrom >= 0 && readers.length > phase1.length) {
      await readSome(readers.slice(phase1.length), first + needFrom, needTo - needFrom + 1);
    }

    const report: LoadReport = {
      lost: [],
      written: 0,
      checksumErrors: 0,
      repaired: 0,
      bySlot: Array.from({ length: N }, () => ({ read: 0, wrong: 0 })),
    };
    const repairs: { slot: number; stripe: number; data?: Uint8Array; tag?: Uint8Array }[] = [];
    const present = new Array<boolean>(N);
    const shards = new Array<Uint8Array>(N);
    for (let i = 0; i < count; i++) {
      const stripe = first + i;
      const generation = consensus(gens, i);
      if (generation === undefined) {
        report.lost.push(stripe);
        continue;
      }
      if (generation > this.#generation) this.#generation = generation;
      const wrong: number[] = [];
      for (let slot = 0; slot < N; slot++) {
        const g = gens[i * N + slot];
        present[slot] = g === generation;
        if (g !== NOT_READ && g !== generation) wrong.push(slot);
      }
      if (generation === 0) {
        for (const slot of wrong) repairs.push({ slot, stripe });
        use(stripe, 0, this.#zeros);
        report.checksumErrors += wrong.length;
        this.#countChecksum(wrong);
        continue;
      }
      report.written++;
      for (let slot = 0; slot < N; slot++) {
        if (gens[i * N + slot] !== NOT_READ) report.bySlot[slot].read++;
      }
      let rebuild = mode === "scrub" || wrong.length > 0 || (target >= 0 && !present[target]);
      for (let j = 0; j < K && !rebuild; j++) rebuild = !present[j];
      if (!rebuild) {
        for (let slot = 0; slot < N; slot++) {
          const r = reads[slot];
          shards[slot] = present[slot] && r
            ? r.data.subarray((stripe - r.at) * bs, (stripe - r.at + 1) * bs)
            : this.#zeros[0];
        }
        use(stripe, generation, shards);
        continue;
      }
      // Rebuild every shard from the first five of the consensus generation, then compare the
      // others read against what they should be.
      const views = this.#coder.shards(bs);
      const basis = new Array<boolean>(N).fill(false);
      let taken = 0;
      for (let slot = 0; slot < N && taken < K; slot++) {
        if (!present[slot]) continue;
        const r = reads[slot]!;
        views[slot].set(r.data.subarray((stripe - r.at) * bs, (stripe - r.at + 1) * bs));
        basis[slot] = true;
        taken++;
      }
      this.#coder.reconstruct(views, basis);
      for (let slot = 0; slot < N; slot++) {
        if (!present[slot] || basis[slot]) continue;
        const r = reads[slot]!;
        const at = (stripe - r.at) * bs;
        if (!equalBytes(views[slot], r.data.subarray(at, at + bs))) wrong.push(slot);
      }
      use(stripe, generation, views);
      for (const slot of wrong) report.bySlot[slot].wrong++;
      for (const slot of wrong) {
        const data = views[slot].slice();
        const tag = new Uint8Array(TAG_BYTES);
        this.#tagger.sign(slot, stripe, generation, data, tag, 0);
        repairs.push({ slot, stripe, data, tag });
      }
      report.checksumErrors += wrong.length;
      this.#countChecksum(wrong);
    }
    if (repairs.length > 0) report.repaired = await this.#repair(repairs, readers);
    return report;
  }

  async #readMember(
    slot: number,
    epoch: number,
    first: number,
    count: number,
  ): Promise<{ data: Uint8Array; tags: Uint8Array } | undefined> {
    try {
      const r = await this.#call(slot, epoch, (d, signal) => d.read(first, count, signal));
      if (
        !(r?.data instanceof Uint8Array) || !(r.tags instanceof Uint8Array) ||
        r.data.length !== count * this.blockSize || r.tags.length !== count * TAG_BYTES
      ) {
        throw new DeviceError(
          `Slot ${slot} returned a malformed read of blocks ${first}+${count}`,
          "device_failed",
        );
      }
      return r;
    } catch (e) {
      this.#failed(slot, epoch, e, "read");
      const m = this.#members[slot];
      const local = e instanceof DeviceError && e.code === "device_failed";
      if (!local || m.epoch !== epoch || m.state !== "online") return undefined;
      // One bad block (disk rot the provider reports) fails a whole read: read block by block,
      // and mark the ones that fail as bad shards, so that they are rebuilt and rewritten.
      if (count > 1) return await this.#readBlocks(slot, epoch, first, count);
      return { data: new Uint8Array(this.blockSize), tags: new Uint8Array(TAG_BYTES).fill(0xff) };
    }
  }

  async #readBlocks(slot: number, epoch: number, first: number, count: number) {
    const bs = this.blockSize;
    const data = new Uint8Array(count * bs);
    const tags = new Uint8Array(count * TAG_BYTES);
    for (let i = 0; i < count; i++) {
      try {
        const r = await this.#call(slot, epoch, (d, signal) => d.read(first + i, 1, signal));
        if (r.data.length !== bs || r.tags.length !== TAG_BYTES) throw new Error("malformed");
        data.set(r.data, i * bs);
        tags.set(r.tags, i * TAG_BYTES);
      } catch (e) {
        if (!(e instanceof DeviceError && e.code === "device_failed")) {
          this.#failed(slot, epoch, e, "read");
          return undefined;
        }
        // A tag no writer makes: the shard fails verification (as in #readMember).
        tags.fill(0xff, i * TAG_BYTES, (i + 1) * TAG_BYTES);
      }
    }
    return { data, tags };
  }

  #countChecksum(slots: number[]): void {
    for (const slot of slots) this.#members[slot].errors.checksum++;
  }

  /** Rewrites wrong shards (or trims them, for generation 0) on members still online. */
  async #repair(
    repairs: { slot: number; stripe: number; data?: Uint8Array; tag?: Uint8Array }[],
    readers: { slot: number; epoch: number }[],
  ): Promise<number> {
    const epochs = new Map(readers.map((r) => [r.slot, r.epoch]));
    const bySlot = new Map<number, number[]>();
    const results = await Promise.all(repairs.map(async ({ slot, stripe, data, tag }) => {
      const m = this.#members[slot];
      const epoch = epochs.get(slot)!;
      if (m.epoch !== epoch || m.state !== "online" || !m.device) {
        if (m.state === "away") m.behind.add(stripe);
        return false;
      }
      try {
        if (data && tag) await this.#call(slot, epoch, (d) => d.write(stripe, data, tag));
        else await this.#call(slot, epoch, (d) => d.trim(stripe, 1));
      } catch (e) {
        this.#failed(slot, epoch, e, "write", stripe, 1);
        return false;
      }
      let list = bySlot.get(slot);
      if (!list) bySlot.set(slot, list = []);
      list.push(stripe);
      return true;
    }));
    for (const [slot, stripes] of bySlot) {
      stripes.sort((a, b) => a - b);
      this.#event(
        "warn",
        `Slot ${slot}: repaired ${stripes.length} ${
          stripes.length === 1 ? "shard" : "shards"
        } that failed verification or were stale (stripes ${stripes[0]} to ${stripes.at(-1)})`,
        slot,
      );
    }
    return results.filter(Boolean).length;
  }

  // ——— member states ———

  /** A device call failed: away when unavailable or timed out, faulted when a write is refused. */
  #failed(
    slot: number,
    epoch: number,
    error: unknown,
    op: "read" | "write",
    first = 0,
    count = 0,
  ): void {
    const m = this.#members[slot];
    const message = error instanceof Error ? error.message : String(error);
    if (m.epoch !== epoch) {
      if (m.state === "away" && count > 0) m.behind.addRange(first, count);
      return;
    }
    m.errors[op]++;
    const transient = error instanceof DeviceError &&
      (error.code === "device_unavailable" || error.code === "device_timeout");
    this.#log.warn("Device call failed", { slot, op, error });
    if (transient) {
      this.#setState(slot, "away", `${op === "read" ? "Read" : "Write"} failed: ${message}`);
      if (count > 0) m.behind.addRange(first, count);
    } else if (op === "write") {
      this.#setState(slot, "faulted", `Write failed: ${message}`);
    } else {
      this.#event("warn", `Slot ${slot}: read failed: ${message}`, slot);
    }
  }

  #setState(slot: number, state: MemberState, reason?: string): void {
    const m = this.#members[slot];
    const before = m.state;
    const task = this.#resilvers.get(slot);
    if (before === "resilvering" && task?.status.kind === "replace" && state !== "online") {
      m.full = true;
    }
    m.state = state;
    m.reason = state === "online" ? undefined : reason;
    m.epoch++;
    if (state !== "online") {
      // Calls in flight to the member as it was are abandoned: a hung device holds nothing up.
      const error = new DeviceError(`Slot ${slot} is ${state}`, "device_unavailable");
      for (const fail of m.pending) fail(error);
      m.abort.abort(error);
      m.pending = new Set();
      m.abort = new AbortController();
    }
    if (state === "faulted") {
      m.device = undefined;
      m.behind.clear();
      m.full = false;
    }
    const level = state === "faulted" ? "error" : state === "away" ? "warn" : "info";
    this.#event(level, `Slot ${slot}: ${before} → ${state}${reason ? ` (${reason})` : ""}`, slot);
    const pool = this.#poolState();
    if (pool !== this.#state) {
      const unavailable = this.#members.filter((x) => x.state !== "online").length;
      this.#event(
        pool === "faulted" ? "error" : pool === "degraded" ? "warn" : "info",
        `Pool ${pool}: ${unavailable} of ${N} members unavailable`,
      );
      this.#state = pool;
    }
  }

  #poolState(): PoolState {
    const unavailable = this.#members.filter((m) => m.state !== "online").length;
    return unavailable > M ? "faulted" : unavailable > 0 ? "degraded" : "online";
  }

  #behindCount(slot: number): number {
    const m = this.#members[slot];
    const task = this.#resilvers.get(slot);
    if (task?.status.kind === "replace") return task.stripesLeft;
    return m.behind.size;
  }

  #checkDevice(slot: number, device: BlockDevice): void {
    if (!isDevice(device)) throw new ValidationError(`Slot ${slot}: not a block device`);
    if (device.blockSize !== this.blockSize) {
      throw new ValidationError(
        `Slot ${slot}: block size ${device.blockSize} differs from the pool's ${this.blockSize}`,
      );
    }
    if (!Number.isSafeInteger(device.blockCount) || device.blockCount < this.stripes) {
      throw new ValidationError(
        `Slot ${slot}: ${device.blockCount} blocks, the pool needs ${this.stripes}`,
      );
    }
    const other = this.#members.findIndex((m, i) => i !== slot && m.device === device);
    if (other >= 0) throw new ValidationError(`Slot ${slot}: the device is slot ${other}'s`);
  }

  #event(level: CfsEvent["level"], message: string, slot?: number): void {
    this.#log[level](message, slot === undefined ? undefined : { slot });
    if (!this.#onEvent) return;
    try {
      this.#onEvent({
        at: this.#clock.now(),
        level,
        message,
        ...(slot === undefined ? {} : { slot }),
      });
    } catch (e) {
      this.#log.warn("Event listener failed", { error: e });
    }
  }

  // ——— resilver ———

  /**
   * Tells the pool which byte ranges hold anything (the file system's allocated space): a new
   * member is then rebuilt from those stripes only, as ZFS resilvers allocated blocks only. Space
   * outside them reads as zeros on the new member until written.
   * @param ranges Gives the `[offset, length]` ranges in use at the time a resilver starts.
   */
  useMap(ranges: () => Iterable<readonly [number, number]>): void {
    this.#inUse = ranges;
  }

  // Stripes of the ranges in use, as runs of at most `batch` stripes.
  #inUseRuns(): [number, number][] {
    const SB = this.alignment, stripes: [number, number][] = [];
    for (const [offset, length] of this.#inUse!()) {
      if (length <= 0) continue;
      const a = Math.floor(offset / SB);
      const b = Math.min(this.stripes, Math.ceil((offset + length) / SB));
      const last = stripes.at(-1);
      if (last && a <= last[0] + last[1]) last[1] = Math.max(last[1], b - last[0]);
      else if (b > a) stripes.push([a, b - a]);
    }
    const out: [number, number][] = [];
    for (const [first, count] of stripes) {
      for (let s = first; s < first + count; s += this.#batch) {
        out.push([s, Math.min(this.#batch, first + count - s)]);
      }
    }
    return out;
  }

  #startResilver(slot: number, kind: ResilverStatus["kind"]): void {
    const m = this.#members[slot];
    m.full = false;
    const ranges = kind === "replace"
      ? this.#inUse ? this.#inUseRuns() : [...wholeRuns(this.stripes, this.#batch)]
      : [...m.behind.runs(this.#batch)];
    const stripes = ranges.reduce((n, [, c]) => n + c, 0);
    const status: ResilverStatus = {
      slot,
      kind,
      doneBytes: 0,
      totalBytes: stripes * this.alignment,
      startedAt: this.#clock.now(),
      rate: 0,
      finished: false,
    };
    const task: ResilverTask = {
      slot,
      epoch: m.epoch,
      status,
      stripesLeft: stripes,
      unrepairable: 0,
      done: Promise.resolve(status),
    };
    task.done = this.#runResilver(task, ranges).catch((e) => {
      task.endedAt ??= this.#clock.now();
      this.#log.error("Resilver failed", { slot, error: e });
      return status;
    }).finally(() => {
      if (this.#resilvers.get(slot) === task) this.#resilvers.delete(slot);
    });
    this.#resilvers.set(slot, task);
    this.#latest.set(slot, task);
    this.#lastResilver = task;
    this.#event(
      "info",
      `Slot ${slot}: ${kind} resilver started (${status.totalBytes} bytes)`,
      slot,
    );
  }

  #alive(task: ResilverTask): boolean {
    return !this.#closed && this.#members[task.slot].epoch === task.epoch;
  }

  async #runResilver(task: ResilverTask, ranges: [number, number][]): Promise<ResilverStatus> {
    const { slot, status } = task;
    const m = this.#members[slot];
    if (status.kind === "replace" && this.#alive(task)) {
      m.behind.clear();
      const release = await this.#locks.lock(0, this.stripes);
      try {
        if (this.#alive(task)) await this.#call(slot, task.epoch, (d) => d.trim(0, this.stripes));
      } catch (e) {
        this.#failed(slot, task.epoch, e, "write");
      } finally {
        release();
      }
    }
    let next = 0;
    const worker = async () => {
      while (next < ranges.length && this.#alive(task)) {
        const [first, count] = ranges[next++];
        const release = await this.#locks.lock(first, first + count);
        try {
          if (!this.#alive(task)) return;
          await this.#resilverBatch(task, first, count);
        } finally {
          release();
        }
      }
    };
    await Promise.all(Array.from({ length: this.#parallel }, worker));
    task.endedAt = this.#clock.now();
    if (!this.#alive(task)) {
      this.#event(
        "warn",
        `Slot ${slot}: ${status.kind} resilver stopped at ${status.doneBytes} of ${status.totalBytes} bytes`,
        slot,
      );
      return this.#progress(task);
    }
    status.finished = true;
    Object.assign(status, this.#progress(task));
    if (status.kind === "replace") m.behind.clear();
    this.#setState(slot, "online");
    this.#event(
      task.unrepairable > 0 ? "error" : "info",
      `Slot ${slot}: ${status.kind} resilver finished (${status.doneBytes} bytes${
        task.unrepairable > 0 ? `, ${task.unrepairable} stripes could not be rebuilt` : ""
      })`,
      slot,
    );
    return { ...status };
  }

  async #resilverBatch(task: ResilverTask, first: number, count: number): Promise<void> {
    const { slot, status } = task;
    const bs = this.blockSize;
    const data = new Uint8Array(count * bs);
    const tags = new Uint8Array(count * TAG_BYTES);
    const kinds = new Uint8Array(count); // 0 lost, 1 written, 2 zero
    const report = await this.#load(
      first,
      count,
      { target: slot },
      (stripe, generation, shards) => {
        const i = stripe - first;
        if (generation === 0) {
          kinds[i] = 2;
          return;
        }
        kinds[i] = 1;
        data.set(shards[slot], i * bs);
        this.#tagger.sign(
          slot,
          stripe,
          generation,
          data.subarray(i * bs, (i + 1) * bs),
          tags,
          i * TAG_BYTES,
        );
      },
    );
    if (!this.#alive(task)) return;
    if (report.lost.length > 0) {
      task.unrepairable += report.lost.length;
      this.#lost(report.lost, `the resilver of slot ${slot}`);
    }
    const m = this.#members[slot];
    try {
      for (let i = 0; i < count;) {
        let j = i + 1;
        while (j < count && kinds[j] === kinds[i]) j++;
        const at = first + i, n = j - i;
        if (kinds[i] === 1) {
          const d = data.subarray(i * bs, j * bs), t = tags.subarray(i * TAG_BYTES, j * TAG_BYTES);
          await this.#call(slot, task.epoch, (device) => device.write(at, d, t));
        } else if (kinds[i] === 2 && status.kind === "catch-up") {
          await this.#call(slot, task.epoch, (device) => device.trim(at, n));
        }
        i = j;
      }
    } catch (e) {
      this.#failed(slot, task.epoch, e, "write", first, count);
      return;
    }
    for (let i = 0; i < count; i++) if (kinds[i] !== 0) m.behind.delete(first + i);
    task.stripesLeft -= count;
    status.doneBytes += count * this.alignment;
  }

  #progress(task: ResilverTask): ResilverStatus {
    const s = task.status;
    const seconds = ((task.endedAt ?? this.#clock.now()) - s.startedAt) / 1000;
    const rate = seconds > 0 ? s.doneBytes / seconds : 0;
    const out: ResilverStatus = { ...s, rate };
    delete out.etaSeconds;
    if (s.finished) out.etaSeconds = 0;
    else if (rate > 0) out.etaSeconds = (s.totalBytes - s.doneBytes) / rate;
    return out;
  }

  // ——— scrub ———

  async #runScrub(status: ScrubStatus): Promise<ScrubResult> {
    const result: ScrubResult = { stripes: 0, checksumErrors: 0, repaired: 0, unrepairable: 0 };
    this.#event("info", `Scrub started (${this.size} bytes)`);
    const ranges = [...wholeRuns(this.stripes, this.#batch)];
    let next = 0;
    const worker = async () => {
      while (next < ranges.length && !this.#closed) {
        const [first, count] = ranges[next++];
        const release = await this.#locks.lock(first, first + count);
        try {
          const report = await this.#load(first, count, "scrub", () => {});
          result.stripes += report.written;
          result.checksumErrors += report.checksumErrors;
          result.repaired += report.repaired;
          result.unrepairable += report.lost.length;
          status.repaired = result.repaired;
          status.doneBytes += count * this.alignment;
          if (report.lost.length > 0) this.#lost(report.lost, "a scrub");
        } finally {
          release();
        }
      }
    };
    const run = Promise.all(Array.from({ length: this.#parallel }, worker));
    this.#ops.add(run);
    try {
      await run;
    } finally {
      this.#ops.delete(run);
    }
    status.finished = status.doneBytes === status.totalBytes;
    this.#event(
      result.unrepairable > 0 ? "error" : result.checksumErrors > 0 ? "warn" : "info",
      `Scrub ${
        status.finished ? "finished" : "stopped"
      }: ${result.stripes} written stripes, ${result.checksumErrors} checksum errors, ${result.repaired} repaired, ${result.unrepairable} unrepairable`,
    );
    return result;
  }
}

// ——— helpers ———

interface CheckedOptions {
  devices: (BlockDevice | undefined)[];
  key: Uint8Array;
  poolId: Uint8Array;
  coder: ErasureCoder;
  log: Logger;
  clock: Clock;
  generationHint: number;
  onEvent?: (event: CfsEvent) => void;
  batchStripes: number;
  parallelBatches: number;
  blockSize: number;
  stripes: number;
}

function checkOptions(o: PoolOptions): CheckedOptions {
  if (typeof o !== "object" || o === null) throw new ValidationError("Pool options are missing");
  if (!Array.isArray(o.devices) || o.devices.length !== N) {
    throw new ValidationError(
      `A pool has ${N} members: give ${N} devices (undefined for a missing one), got ${
        Array.isArray(o.devices) ? o.devices.length : typeof o.devices
      }`,
      { path: "devices" },
    );
  }
  const devices = [...o.devices];
  const present = devices.filter((d) => d !== undefined && d !== null) as BlockDevice[];
  devices.forEach((d, slot) => {
    if (d !== undefined && d !== null && !isDevice(d)) {
      throw new ValidationError(`Slot ${slot}: not a block device`, { path: `devices.${slot}` });
    }
    if (d === null) devices[slot] = undefined;
  });
  if (present.length < K) {
    throw new ValidationError(
      `Only ${present.length} devices given: a pool needs at least ${K} of its ${N} members`,
      { path: "devices" },
    );
  }
  if (new Set(present).size !== present.length) {
    throw new ValidationError("The same device is given for two slots", { path: "devices" });
  }
  const blockSize = present[0].blockSize;
  if (!Number.isSafeInteger(blockSize) || blockSize < 1 || (blockSize & (blockSize - 1)) !== 0) {
    throw new ValidationError(`Block size must be a power of two, got ${blockSize}`, {
      path: "devices",
    });
  }
  devices.forEach((d, slot) => {
    if (!d) return;
    if (d.blockSize !== blockSize) {
      throw new ValidationError(
        `Slot ${slot} has blocks of ${d.blockSize} bytes but the first device has ${blockSize}: members share one block size`,
        { path: `devices.${slot}` },
      );
    }
    if (!Number.isSafeInteger(d.blockCount) || d.blockCount < 1) {
      throw new ValidationError(`Slot ${slot} has ${d.blockCount} blocks`, {
        path: `devices.${slot}`,
      });
    }
  });
  const stripes = Math.min(...present.map((d) => d.blockCount));
  if (!Number.isSafeInteger(stripes * K * blockSize)) {
    throw new ValidationError(
      `A pool of ${stripes} stripes of ${K * blockSize} bytes is too large`,
    );
  }
  if (!(o.key instanceof Uint8Array) || o.key.length !== POOL_KEY_BYTES) {
    throw new ValidationError(
      `The pool key must be ${POOL_KEY_BYTES} bytes, got ${
        o.key instanceof Uint8Array ? o.key.length : typeof o.key
      }`,
      { path: "key" },
    );
  }
  const poolId = parsePoolId(o.poolId);
  const hint = o.generationHint ?? 0;
  if (!Number.isSafeInteger(hint) || hint < 0) {
    throw new ValidationError(`Generation hint must be a whole number from 0, got ${hint}`, {
      path: "generationHint",
    });
  }
  const batchStripes = checkCount("batchStripes", o.batchStripes ?? 16, 256);
  const parallelBatches = checkCount("parallelBatches", o.parallelBatches ?? 4, 16);
  if (o.onEvent !== undefined && typeof o.onEvent !== "function") {
    throw new ValidationError("onEvent must be a function", { path: "onEvent" });
  }
  let coder = o.coder;
  if (coder) {
    if (coder.dataShards !== K || coder.parityShards !== M) {
      throw new ValidationError(
        `The coder must be ${K}+${M}, got ${coder.dataShards}+${coder.parityShards}`,
        { path: "coder" },
      );
    }
    if (coder.maxShardSize < blockSize) {
      throw new ValidationError(
        `The coder takes shards of at most ${coder.maxShardSize} bytes, the blocks have ${blockSize}`,
        { path: "coder" },
      );
    }
  } else {
    coder = new WasmCoder({ maxShardSize: blockSize });
  }
  return {
    devices,
    key: o.key.slice(),
    poolId,
    coder,
    log: o.log ?? discardLogger,
    clock: o.clock ?? systemClock,
    generationHint: hint,
    onEvent: o.onEvent,
    batchStripes,
    parallelBatches,
    blockSize,
    stripes,
  };
}

/** Calls a device, turning an exception thrown before its promise into a rejection. */
function attempt<T>(call: () => Promise<T>): Promise<T> {
  try {
    return call();
  } catch (e) {
    return Promise.reject(e);
  }
}

function checkCount(name: string, value: number, max: number): number {
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new ValidationError(`${name} must be a whole number from 1 to ${max}, got ${value}`, {
      path: name,
    });
  }
  return value;
}

function parsePoolId(id: Uint8Array | string): Uint8Array {
  if (id instanceof Uint8Array) {
    if (id.length !== POOL_ID_BYTES) {
      throw new ValidationError(`The pool id must be ${POOL_ID_BYTES} bytes, got ${id.length}`, {
        path: "poolId",
      });
    }
    return id.slice();
  }
  if (typeof id === "string" && isUuid(id)) return uuidToBytes(id);
  throw new ValidationError(
    `The pool id must be ${POOL_ID_BYTES} bytes or a lowercase UUID, got ${JSON.stringify(id)}`,
    { path: "poolId" },
  );
}

function checkSlot(slot: number): void {
  if (!Number.isInteger(slot) || slot < 0 || slot >= N) {
    throw new ValidationError(`Slot must be a whole number from 0 to ${N - 1}, got ${slot}`);
  }
}

function isDevice(d: unknown): d is BlockDevice {
  const x = d as BlockDevice;
  return typeof x === "object" && x !== null && typeof x.read === "function" &&
    typeof x.write === "function" && typeof x.trim === "function" &&
    typeof x.flush === "function";
}

/** The largest generation that at least five verified shards of stripe `i` carry. */
function consensus(gens: Float64Array, i: number): number | undefined {
  let best: number | undefined;
  for (let a = 0; a < N; a++) {
    const g = gens[i * N + a];
    if (g < 0 || (best !== undefined && g <= best)) continue;
    let n = 0;
    for (let b = 0; b < N; b++) if (gens[i * N + b] === g) n++;
    if (n >= K) best = g;
  }
  return best;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function* wholeRuns(stripes: number, batch: number): Generator<[number, number]> {
  for (let s = 0; s < stripes; s += batch) yield [s, Math.min(batch, stripes - s)];
}

/** A set of stripe indices as a bitmap. */
class StripeSet {
  readonly #bits: Uint8Array;
  #size = 0;

  constructor(stripes: number) {
    this.#bits = new Uint8Array(Math.ceil(stripes / 8));
  }

  get size(): number {
    return this.#size;
  }

  add(s: number): void {
    const bit = 1 << (s & 7);
    if (this.#bits[s >> 3] & bit) return;
    this.#bits[s >> 3] |= bit;
    this.#size++;
  }

  addRange(first: number, count: number): void {
    for (let s = first; s < first + count; s++) this.add(s);
  }

  delete(s: number): void {
    const bit = 1 << (s & 7);
    if (!(this.#bits[s >> 3] & bit)) return;
    this.#bits[s >> 3] &= ~bit;
    this.#size--;
  }

  clear(): void {
    this.#bits.fill(0);
    this.#size = 0;
  }

  /** Runs of consecutive members, each at most `max` long. */
  *runs(max: number): Generator<[number, number]> {
    const total = this.#bits.length * 8;
    let s = 0;
    while (s < total) {
      if (this.#bits[s >> 3] === 0) {
        s = (s | 7) + 1;
        continue;
      }
      if (!(this.#bits[s >> 3] & (1 << (s & 7)))) {
        s++;
        continue;
      }
      const first = s;
      while (s < total && s - first < max && this.#bits[s >> 3] & (1 << (s & 7))) s++;
      yield [first, s - first];
    }
  }
}

/**
 * Exclusive locks on ranges of stripes, granted in order of request: a request waits for every
 * earlier one that overlaps it, held or waiting, so a large range is not starved by small ones.
 */
class RangeLocks {
  readonly #queue: { first: number; end: number; held: boolean; grant: () => void }[] = [];

  lock(first: number, end: number): Promise<() => void> {
    const { promise, resolve } = Promise.withResolvers<() => void>();
    const entry = {
      first,
      end,
      held: false,
      grant: () =>
        resolve(() => {
          this.#queue.splice(this.#queue.indexOf(entry), 1);
          this.#pump();
        }),
    };
    this.#queue.push(entry);
    this.#pump();
    return promise;
  }

  #pump(): void {
    const q = this.#queue;
    for (let i = 0; i < q.length; i++) {
      const e = q[i];
      if (e.held) continue;
      let blocked = false;
      for (let j = 0; j < i && !blocked; j++) blocked = q[j].first < e.end && e.first < q[j].end;
      if (blocked) continue;
      e.held = true;
      e.grant();
    }
  }
}
