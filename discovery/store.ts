/**
 * The record store of one discovery replica, on Deno KV: keeps the newest record per
 * `(vpn, guardian)`, a change log for replication, quotas and retention
 * (`docs/protocol/discovery.md`).
 *
 * @module
 */

import {
  type Clock,
  ConflictError,
  discardLogger,
  type Logger,
  newUuid,
  type NodeId,
  systemClock,
  TrueCloudError,
} from "../protocol/mod.ts";
import {
  compareRecords,
  isVisible,
  verifyVpnRecord,
  type VpnRecord,
  type VpnRecordData,
} from "./record.ts";

/** Most unexpired records one guardian may have in a store. */
export const RECORDS_PER_GUARDIAN = 64;

/** Most records (of every guardian, withdrawals included) one store keeps, by default. */
export const MAX_RECORDS = 100_000;

/** A record as the store keeps it. */
export interface StoredRecord {
  /** The compact JWS, exactly as submitted. */
  jws: string;
  /** The verified data. */
  data: VpnRecordData;
  /** The guardian (issuer). */
  guardian: NodeId;
  /** Envelope id. */
  id: string;
  /** Time of issue, seconds. */
  issuedAt: number;
  /** Expiry, seconds. */
  expiresAt: number;
  /** Keep until this time (seconds): the greatest expiry of this record and those it replaced. */
  holdUntil: number;
  /** Position in this store's change log. */
  seq: number;
}

/** What happened to an offered record. */
export type OfferStatus = "stored" | "unchanged";

/** Where an offered record came from: a guardian's submission or another replica. */
export type OfferSource = "client" | "replica";

/** The result of {@linkcode RecordStore.offer}. */
export interface OfferResult {
  /** `stored` when it replaced what was there (or nothing), `unchanged` when identical. */
  status: OfferStatus;
  /** The record now stored for the key. */
  record: StoredRecord;
}

/** Dependencies of a {@linkcode RecordStore}. */
export interface StoreDeps {
  /** Time source. */
  clock?: Clock;
  /** Logger. */
  log?: Logger;
  /** Accept records with non-public addresses (local cloud). */
  allowPrivateAddresses?: boolean;
  /** Most records kept (default {@linkcode MAX_RECORDS}); a new key beyond it is refused. */
  maxRecords?: number;
}

type Key = readonly [vpn: string, guardian: string];

const K = {
  replica: ["meta", "replica"] as const,
  seq: ["meta", "seq"] as const,
  rec: (vpn: string, guardian: string) => ["rec", vpn, guardian] as const,
  log: (seq: number) => ["log", seq] as const,
  byGuardian: (guardian: string, vpn: string) => ["byg", guardian, vpn] as const,
};

function keyString(vpn: string, guardian: string): string {
  return `${vpn}/${guardian}`;
}

/**
 * One replica's store of VPN records.
 *
 * Every write is one atomic Deno KV operation that checks what it read, so concurrent writers (in
 * this process or another that opened the same file) never lose an update. An in-memory view of
 * all records serves reads; {@linkcode RecordStore.refresh} reloads it when another writer moved
 * the sequence on.
 *
 * @example
 * ```ts
 * import { RecordStore } from "./store.ts";
 * const store = await RecordStore.open(":memory:");
 * console.log(store.replicaId, store.visible().length);
 * store.close();
 * ```
 */
export class RecordStore {
  /** This store's replica id. */
  readonly replicaId: string;
  readonly #kv: Deno.Kv;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #allowPrivate: boolean;
  readonly #maxRecords: number;
  readonly #records = new Map<string, StoredRecord>();
  readonly #listeners = new Set<(r: StoredRecord, source: OfferSource) => void>();
  #seq = 0;
  #version = 0;
  #closed = false;

  private constructor(kv: Deno.Kv, replicaId: string, deps: StoreDeps) {
    this.#kv = kv;
    this.replicaId = replicaId;
    this.#clock = deps.clock ?? systemClock;
    this.#log = deps.log ?? discardLogger;
    this.#allowPrivate = deps.allowPrivateAddresses ?? false;
    this.#maxRecords = deps.maxRecords ?? MAX_RECORDS;
  }

  /**
   * Opens (or creates) a store.
   * @param path A file path for Deno KV, or `:memory:`.
   * @param deps Clock, logger and address policy.
   * @returns The store, with its records loaded.
   */
  static async open(path: string, deps: StoreDeps = {}): Promise<RecordStore> {
    const kv = await Deno.openKv(path);
    let replica = (await kv.get<string>(K.replica)).value;
    if (!replica) {
      const fresh = newUuid();
      const r = await kv.atomic().check({ key: K.replica, versionstamp: null }).set(
        K.replica,
        fresh,
      )
        .commit();
      replica = r.ok ? fresh : (await kv.get<string>(K.replica)).value!;
    }
    const store = new RecordStore(kv, replica, deps);
    await store.refresh(true);
    return store;
  }

  /** The last sequence number this store has assigned (as of the last refresh or write). */
  get seq(): number {
    return this.#seq;
  }

  /** A number that changes whenever the in-memory view changes; for caches. */
  get version(): number {
    return this.#version;
  }

  /**
   * Registers a listener called after every record this store writes itself.
   * @param fn Called with the stored record and where it came from.
   * @returns A function that removes the listener.
   */
  onChange(fn: (r: StoredRecord, source: OfferSource) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /**
   * Brings the in-memory view up to date with KV, for stores that other writers share: reads the
   * change log past the last sequence seen (cheap), or everything when `full` (after garbage
   * collection elsewhere, which leaves no trace in the log).
   * @param full Reload every record.
   * @returns Whether anything was read.
   */
  async refresh(full = false): Promise<boolean> {
    const seq = (await this.#kv.get<number>(K.seq)).value ?? 0;
    if (full) {
      const fresh = new Map<string, StoredRecord>();
      for await (const e of this.#kv.list<StoredRecord>({ prefix: ["rec"] })) {
        fresh.set(keyString(e.value.data.vpn, e.value.guardian), e.value);
      }
      this.#records.clear();
      for (const [k, v] of fresh) this.#records.set(k, v);
    } else {
      if (seq === this.#seq) return false;
      const keys: Key[] = [];
      for await (
        const e of this.#kv.list<Key>({ start: K.log(this.#seq + 1), end: K.log(seq + 1) })
      ) {
        keys.push(e.value);
      }
      for (let i = 0; i < keys.length; i += 10) {
        const batch = await this.#kv.getMany<StoredRecord[]>(
          keys.slice(i, i + 10).map(([v, g]) => K.rec(v, g)),
        );
        for (const e of batch) {
          if (e.value) this.#records.set(keyString(e.value.data.vpn, e.value.guardian), e.value);
        }
      }
    }
    this.#seq = Math.max(this.#seq, seq);
    this.#version++;
    return true;
  }

  /**
   * Verifies a record and stores it if it is newer than the stored one for its key.
   *
   * @param jws The compact JWS, untrusted.
   * @param source Where it came from, passed on to listeners.
   * @returns What happened.
   * @throws {ValidationError | SignatureError | TooLargeError} When the record does not verify.
   * @throws {ConflictError} Code `stale` when a newer record of its key is stored.
   * @throws {TrueCloudError} Code `quota_exceeded` (403) when the guardian has too many records.
   */
  async offer(jws: string, source: OfferSource = "client"): Promise<OfferResult> {
    this.#assertOpen();
    const record = await verifyVpnRecord(jws, {
      clock: this.#clock,
      allowPrivateAddresses: this.#allowPrivate,
    });
    for (let attempt = 0; attempt < 32; attempt++) {
      let result: OfferResult | undefined;
      try {
        result = await this.#tryStore(record);
      } catch (err) {
        // Another process holding the same file keeps SQLite's write lock for a moment.
        if (!(err instanceof Error && /database is locked/.test(err.message))) throw err;
        await new Promise((r) => setTimeout(r, 2 + Math.random() * 10 * (attempt + 1)));
        continue;
      }
      if (result) {
        if (result.status === "stored") {
          this.#log.debug("Record stored", {
            vpn: record.data.vpn,
            guardian: record.issuer,
            state: record.data.state,
            seq: result.record.seq,
          });
          for (const fn of this.#listeners) {
            try {
              fn(result.record, source);
            } catch (err) {
              this.#log.warn("Store listener failed", { err });
            }
          }
        }
        return result;
      }
    }
    throw new TrueCloudError("Store is too busy, try again", { code: "busy", status: 503 });
  }

  async #tryStore(record: VpnRecord): Promise<OfferResult | undefined> {
    const { vpn } = record.data;
    const guardian = record.issuer;
    const [cur, seqEntry] = await this.#kv.getMany<[StoredRecord, number]>([
      K.rec(vpn, guardian),
      K.seq,
    ]);
    const old = cur.value;
    if (old) {
      const order = compareRecords(record, old);
      if (order === 0) return { status: "unchanged", record: old };
      if (order < 0) {
        throw new ConflictError(
          `A newer record of VPN ${vpn} by this guardian is stored (issued ${
            new Date(old.issuedAt * 1000).toISOString()
          })`,
          { code: "stale" },
        );
      }
    } else {
      await this.#checkQuota(guardian);
    }
    const seq = (seqEntry.value ?? 0) + 1;
    const stored: StoredRecord = {
      jws: record.jws,
      data: record.data,
      guardian,
      id: record.id,
      issuedAt: record.issuedAt,
      expiresAt: record.expiresAt,
      holdUntil: Math.max(record.expiresAt, old?.holdUntil ?? 0),
      seq,
    };
    const op = this.#kv.atomic()
      .check(cur)
      .check(seqEntry)
      .set(K.rec(vpn, guardian), stored)
      .set(K.log(seq), [vpn, guardian] satisfies Key)
      .set(K.byGuardian(guardian, vpn), stored.holdUntil)
      .set(K.seq, seq);
    if (old) op.delete(K.log(old.seq));
    const res = await op.commit();
    if (!res.ok) return undefined;
    this.#records.set(keyString(vpn, guardian), stored);
    if (seq === this.#seq + 1) this.#seq = seq;
    else await this.refresh();
    this.#version++;
    return { status: "stored", record: stored };
  }

  async #checkQuota(guardian: string): Promise<void> {
    if (this.#records.size >= this.#maxRecords) {
      throw new TrueCloudError(
        `The store holds ${this.#records.size} records, its limit; new keys are refused until some expire`,
        { code: "store_full", status: 507 },
      );
    }
    const now = this.#clock.now() / 1000;
    let live = 0;
    for await (const e of this.#kv.list<number>({ prefix: ["byg", guardian] })) {
      if (e.value > now) live++;
    }
    if (live >= RECORDS_PER_GUARDIAN) {
      throw new TrueCloudError(
        `Guardian already has ${live} records, the most a replica keeps for one guardian`,
        { code: "quota_exceeded", status: 403 },
      );
    }
  }

  /**
   * The visible records: soliciting and unexpired.
   * @returns A new array, in no particular order.
   */
  visible(): StoredRecord[] {
    const now = this.#clock.now();
    const out: StoredRecord[] = [];
    for (const r of this.#records.values()) if (isVisible(r, now)) out.push(r);
    return out;
  }

  /**
   * The visible records of one VPN, newest first.
   * @param vpn The VPN's UUID.
   */
  visibleForVpn(vpn: string): StoredRecord[] {
    return this.visible().filter((r) => r.data.vpn === vpn)
      .sort((a, b) => compareRecords(b, a));
  }

  /**
   * Every stored record, withdrawals included, for inspection and tests.
   * @returns A new array.
   */
  all(): StoredRecord[] {
    return [...this.#records.values()];
  }

  /**
   * Reads the change log after a sequence number, leaving out expired records.
   * @param after Sequence number already seen.
   * @param limit Most entries to return.
   * @returns The entries in order, the greatest sequence returned and whether more follow.
   */
  async logAfter(
    after: number,
    limit: number,
  ): Promise<{ records: { seq: number; jws: string }[]; last: number; more: boolean }> {
    this.#assertOpen();
    const now = this.#clock.now() / 1000;
    const keys: Key[] = [];
    const seqs: number[] = [];
    const iter = this.#kv.list<Key>({
      start: K.log(after + 1),
      end: ["log", Number.MAX_SAFE_INTEGER],
    }, {
      limit: limit + 1,
    });
    for await (const e of iter) {
      keys.push(e.value);
      seqs.push(e.key[1] as number);
    }
    const more = keys.length > limit;
    if (more) {
      keys.pop();
      seqs.pop();
    }
    const records: { seq: number; jws: string }[] = [];
    for (let i = 0; i < keys.length; i += 10) {
      const batch = await this.#kv.getMany<StoredRecord[]>(
        keys.slice(i, i + 10).map(([vpn, g]) => K.rec(vpn, g)),
      );
      batch.forEach((e, j) => {
        const r = e.value;
        if (r && r.seq === seqs[i + j] && r.expiresAt > now) {
          records.push({ seq: r.seq, jws: r.jws });
        }
      });
    }
    return { records, last: seqs.length ? seqs[seqs.length - 1] : after, more };
  }

  /**
   * Deletes records whose retention has passed (`holdUntil` before now).
   * @returns How many were deleted.
   */
  async collectGarbage(): Promise<number> {
    this.#assertOpen();
    const now = this.#clock.now() / 1000;
    let deleted = 0;
    for await (const e of this.#kv.list<StoredRecord>({ prefix: ["rec"] })) {
      const r = e.value;
      if (r.holdUntil > now) continue;
      const res = await this.#kv.atomic().check(e)
        .delete(e.key)
        .delete(K.log(r.seq))
        .delete(K.byGuardian(r.guardian, r.data.vpn))
        .commit();
      if (res.ok) {
        deleted++;
        this.#records.delete(keyString(r.data.vpn, r.guardian));
      }
    }
    if (deleted) {
      this.#version++;
      this.#log.debug("Expired records deleted", { deleted });
    }
    return deleted;
  }

  /**
   * Reads a per-peer replication cursor.
   * @param peer The peer's URL.
   */
  async getCursor(peer: string): Promise<{ replica: string; last: number } | null> {
    return (await this.#kv.get<{ replica: string; last: number }>(["cursor", peer])).value;
  }

  /**
   * Saves a per-peer replication cursor.
   * @param peer The peer's URL.
   * @param cursor The peer's replica id and the last sequence pulled from it.
   */
  async setCursor(peer: string, cursor: { replica: string; last: number }): Promise<void> {
    await this.#kv.set(["cursor", peer], cursor);
  }

  /** Closes the underlying KV; further writes throw. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#kv.close();
  }

  #assertOpen(): void {
    if (this.#closed) {
      throw new TrueCloudError("Record store is closed", { code: "closed", status: 503 });
    }
  }
}
