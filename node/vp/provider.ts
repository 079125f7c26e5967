/**
 * The Volume Provider of a node: it answers the volume messages of `docs/protocol/volumes.md`
 * (exports, renewals, lease ends), lends volumes only within what the node contributed and only to
 * consumers within their entitlement (checked by the broadcaster), serves them through their
 * tunnels, and wipes each volume when its lease ends.
 *
 * @module
 */

import { decodeProtectedHeader } from "jose";
import {
  type Clock,
  discardLogger,
  type Logger,
  type NodeIdentity,
  systemClock,
  TrueCloudError,
} from "../../protocol/mod.ts";
import {
  type Broadcaster,
  EXPORT_TYPE,
  type GrantData,
  LEASE_END_TYPE,
  type Ledger,
  type LedgerEntry,
  signVolume,
  type VerifiedRequest,
  verifyExport,
  verifyLeaseEnd,
  type VolumeHandler,
} from "../rms/mod.ts";
import { readJson, saveJson } from "../state.ts";

/** What a provider keeps of each volume it lends. */
export interface LentVolume {
  id: string;
  consumer: string;
  pool: string;
  /** The lease in force (its id changes with renewals). */
  leaseId: string;
  blockSize: number;
  blockCount: number;
  /** This side's tunnel keys and the consumer's public key, base64url. */
  keys: { publicKey: string; privateKey: string };
  consumerKey: string;
}

/** Where volumes live and how they are reached: the store and the tunnel of a block driver. */
export interface VolumeBackend {
  /** The tunnel endpoint, host:port. */
  readonly endpoint: string;
  /** Bytes of disk lent for volumes, and used. */
  readonly capacityBytes: number;
  readonly usedBytes: number;
  /** Makes a volume of zeros (nothing when it exists with this shape). */
  create(id: string, blockSize: number, blockCount: number): Promise<void>;
  /** Destroys a volume's data for good and closes its tunnels. */
  wipe(id: string): Promise<void>;
  /** Lets the consumer holding `v.consumerKey`'s private key reach the volume (again). */
  export(v: LentVolume): Promise<void>;
  /** A fresh tunnel key pair. */
  keys(): Promise<{ publicKey: string; privateKey: string }>;
}

/** Settings of {@linkcode VolumeProvider.start}. */
export interface VolumeProviderOptions {
  identity: NodeIdentity;
  broadcaster: Broadcaster;
  ledger: Ledger;
  backend: VolumeBackend;
  /** The JSON file where lent volumes are listed. */
  statePath: string;
  /** How often leases are checked for their end, ms (default 15 s). */
  sweepMs?: number;
  clock?: Clock;
  log?: Logger;
}

/** A node's Volume Provider. */
export class VolumeProvider implements VolumeHandler {
  readonly #o: VolumeProviderOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #lent = new Map<string, LentVolume>();
  #timer?: ReturnType<typeof setInterval>;
  #sweeping?: Promise<void>;
  #chain = Promise.resolve();

  private constructor(o: VolumeProviderOptions) {
    this.#o = o;
    this.#log = o.log ?? discardLogger;
    this.#clock = o.clock ?? systemClock;
  }

  /**
   * Starts the provider: reads its list of lent volumes, exports those whose lease is in force
   * again, wipes the others, and answers volume messages from now on.
   * @param o Settings.
   */
  static async start(o: VolumeProviderOptions): Promise<VolumeProvider> {
    const vp = new VolumeProvider(o);
    for (const v of await readJson<LentVolume[]>(o.statePath) ?? []) vp.#lent.set(v.id, v);
    for (const v of vp.#lent.values()) {
      if (vp.#inForce(v)) await o.backend.export(v);
    }
    await vp.sweep();
    o.broadcaster.serveVolumes(vp);
    vp.#timer = setInterval(() => void vp.sweep(), o.sweepMs ?? 15_000);
    return vp;
  }

  /** The volumes lent now. */
  volumes(): LentVolume[] {
    return [...this.#lent.values()];
  }

  get #now(): number {
    return Math.floor(this.#clock.now() / 1000);
  }

  #inForce(v: LentVolume): boolean {
    const lease = this.#o.ledger.get(v.leaseId);
    return !!lease && lease.until > this.#now;
  }

  // One change at a time to the list of lent volumes, saved before it is answered.
  #serial<T>(f: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(f);
    this.#chain = run.then(() => {}, () => {});
    return run;
  }

  async #save(): Promise<void> {
    await saveJson(this.#o.statePath, [...this.#lent.values()]);
  }

  /** Wipes every volume whose lease has ended. */
  sweep(): Promise<void> {
    this.#sweeping ??= this.#serial(async () => {
      for (const v of [...this.#lent.values()]) {
        if (this.#inForce(v)) continue;
        await this.#wipe(v, "its lease ended");
      }
    }).finally(() => (this.#sweeping = undefined));
    return this.#sweeping;
  }

  async #wipe(v: LentVolume, why: string): Promise<void> {
    await this.#o.backend.wipe(v.id);
    this.#lent.delete(v.id);
    await this.#save();
    this.#log.info("Volume wiped", { volume: v.id, consumer: v.consumer, why });
  }

  willServe(r: VerifiedRequest): boolean {
    // One volume per consumer; one whose lease has ended (wiped at the next sweep) does not count.
    if ([...this.#lent.values()].some((v) => v.consumer === r.requester && this.#inForce(v))) {
      return false;
    }
    return this.#o.backend.usedBytes + r.data.bytes <= this.#o.backend.capacityBytes;
  }

  renewal(g: GrantData): LedgerEntry | undefined {
    const v = this.#lent.get(g.request);
    if (!v || v.consumer !== g.consumer || !this.#inForce(v)) return undefined;
    return this.#o.ledger.get(v.leaseId);
  }

  renewed(previous: LedgerEntry, next: LedgerEntry): void {
    const v = [...this.#lent.values()].find((x) => x.leaseId === previous.id);
    if (!v) return;
    v.leaseId = next.id;
    void this.#serial(() => this.#save());
  }

  async message(jws: string): Promise<Record<string, unknown>> {
    let typ: string | undefined;
    try {
      typ = decodeProtectedHeader(jws).typ;
    } catch {
      throw new TrueCloudError("Not a JWS", { code: "invalid" });
    }
    if (typ === EXPORT_TYPE) return await this.#export(jws);
    if (typ === LEASE_END_TYPE) return await this.#end(jws);
    throw new TrueCloudError("Expected an export or a lease end", { code: "invalid" });
  }

  async #export(jws: string): Promise<Record<string, unknown>> {
    const me = this.#o.identity.nodeId;
    const { data, lease } = await verifyExport(jws, me, this.#clock);
    return await this.#serial(async () => {
      const held = this.#o.ledger.get(lease.id);
      if (!held) {
        throw new TrueCloudError("This provider made no such lease", { code: "unknown_lease" });
      }
      if (held.until <= this.#now) {
        throw new TrueCloudError("The lease has ended", { code: "lease_ended" });
      }
      if (held.bytes % data.blockSize) {
        throw new TrueCloudError("The block size does not divide the leased bytes", {
          code: "invalid",
        });
      }
      const other = [...this.#lent.values()].find((v) =>
        v.id !== data.volume && (v.pool === data.pool || v.consumer === lease.consumer) &&
        this.#inForce(v)
      );
      if (other) {
        throw new TrueCloudError("This provider already holds a volume of that pool", {
          code: "duplicate_provider",
        });
      }
      let v = this.#lent.get(data.volume);
      const blockCount = held.bytes / data.blockSize;
      if (v && (v.blockSize !== data.blockSize || v.pool !== data.pool)) {
        throw new TrueCloudError("The volume exists with another shape or pool", {
          code: "invalid",
        });
      }
      if (!v) {
        if (this.#o.backend.usedBytes + held.bytes > this.#o.backend.capacityBytes) {
          throw new TrueCloudError("This provider has no more room for volumes", {
            code: "no_capacity",
          });
        }
        v = {
          id: data.volume,
          consumer: lease.consumer,
          pool: data.pool,
          leaseId: lease.id,
          blockSize: data.blockSize,
          blockCount,
          keys: await this.#o.backend.keys(),
          consumerKey: data.tunnelKey,
        };
        await this.#o.backend.create(v.id, v.blockSize, v.blockCount);
      }
      v.consumerKey = data.tunnelKey;
      this.#lent.set(v.id, v);
      await this.#save();
      await this.#o.backend.export(v);
      this.#log.info("Volume exported", { volume: v.id, consumer: v.consumer });
      const exported = await signVolume(
        this.#o.identity,
        {
          v: 1,
          volume: v.id,
          consumer: v.consumer,
          endpoint: this.#o.backend.endpoint,
          tunnelKey: v.keys.publicKey,
          consumerKey: v.consumerKey,
          blockSize: v.blockSize,
          blockCount: v.blockCount,
        },
        held.until,
        this.#clock,
      );
      return { t: "exported", export: exported };
    });
  }

  async #end(jws: string): Promise<Record<string, unknown>> {
    const end = await verifyLeaseEnd(jws, this.#clock);
    if (end.provider !== this.#o.identity.nodeId) {
      throw new TrueCloudError("That lease is not this provider's", { code: "unknown_lease" });
    }
    await this.#o.ledger.end(end);
    await this.sweep();
    return { ok: true };
  }

  /** Stops sweeping (volumes stay on disk until their leases end). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#chain;
  }
}
