/**
 * The Cloud File System of a node: it leases eight volumes through its RMS
 * (`docs/protocol/volumes.md`), attaches each through its own tunnel, stitches them into a pool that
 * survives three losses (`docs/protocol/pool.md`), keeps the user's files on it
 * (`docs/protocol/files.md`), watches every volume, catches up the ones that come back within the
 * grace period and replaces the ones that do not.
 *
 * @module
 */

import {
  type Clock,
  discardLogger,
  fromHex,
  type Logger,
  type NodeIdentity,
  systemClock,
  toHex,
  TrueCloudError,
} from "../../protocol/mod.ts";
import type { BlockDevice } from "../drivers/mod.ts";
import {
  type AuditResult,
  type Broadcaster,
  type Ledger,
  type LedgerEntry,
  rankOffers,
  type ReceivedOffer,
  signExport,
  spreadOf,
  verifyVolume,
  VOLUME_BLOCK_SIZE,
  type VolumeData,
  type VolumePlace,
  volumePlaceOf,
} from "../rms/mod.ts";
import { readJson, saveJson } from "../state.ts";
import { FileStore } from "./files.ts";
import { Pool } from "./pool.ts";
import type { CfsEvent, CfsStatus, VolumeStatus } from "./status.ts";

/** Volumes in a pool. */
export const POOL_VOLUMES = 8;
/** Data volumes among them. */
export const POOL_DATA = 5;

/** A tunnel key pair for one volume, base64url. */
export interface TunnelKeys {
  publicKey: string;
  privateKey: string;
}

/** A volume attached through its tunnel. */
export interface AttachedVolume extends BlockDevice {
  /** Round trip of the last heartbeat, ms. */
  readonly latencyMs?: number;
}

/**
 * How volumes are attached: the tunnel and block driver (userspace: `node/vp/`'s block protocol).
 */
export interface VolumeAttacher {
  /** A fresh tunnel key pair. */
  keys(): Promise<TunnelKeys>;
  /**
   * Attaches an exported volume.
   * @param volume Where and how (the provider's signed statement).
   * @param keys This side's keys for it.
   * @param onDead Called once when the volume goes silent or its tunnel drops.
   */
  attach(volume: VolumeData, keys: TunnelKeys, onDead: (reason: string) => void): Promise<
    AttachedVolume
  >;
}

/** One slot of the pool as the CFS keeps it on disk. */
interface SlotState {
  lease: string; // the acknowledgement JWS
  leaseId: string;
  placement: VolumePlace;
  volume: VolumeData;
  keys: TunnelKeys;
}

/** What the CFS keeps on disk (mode 0600: it holds the pool's key). */
interface CfsState {
  v: 1;
  pool: string;
  key: string; // hex
  volumeBytes: number;
  /** The pool's last generation, so that new writes are always newer. */
  generation: number;
  slots: (SlotState | null)[];
}

/** Settings of {@linkcode CloudFileSystem.start}. */
export interface CfsOptions {
  identity: NodeIdentity;
  broadcaster: Broadcaster;
  ledger: Ledger;
  /** The node's storage entitlement, bytes. */
  entitlementBytes: () => number;
  attacher: VolumeAttacher;
  /** Where the CFS keeps its state (a JSON file). */
  statePath: string;
  /** Lease length, seconds (default 30 days). */
  leaseSeconds?: number;
  /** How long a silent volume is waited for before it is replaced, ms (default 10 minutes). */
  graceMs?: number;
  /** How often silent volumes are retried and leases checked, ms (default 1 s). */
  tickMs?: number;
  /** How long to gather offers, ms (default 3 s). */
  offerWaitMs?: number;
  /** Time between audits of the providers, ms (default a minute; 0: none). */
  auditMs?: number;
  clock?: Clock;
  log?: Logger;
}

interface Live {
  state: SlotState;
  device?: AttachedVolume;
  awaySince?: number;
  busy?: boolean;
}

/** A node's Cloud File System. */
export class CloudFileSystem {
  readonly #o: CfsOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #events: CfsEvent[] = [];
  readonly #slots: (Live | null)[] = [];
  #state!: CfsState;
  #pool!: Pool;
  #files!: FileStore;
  #timer?: ReturnType<typeof setInterval>;
  #auditTimer?: ReturnType<typeof setInterval>;
  #auditing?: Promise<AuditResult[]>;
  #ticking = false;
  #stopped = false;
  #scrub?: CfsStatus["scrub"];
  #saving = Promise.resolve();
  #leasing = Promise.resolve();

  private constructor(o: CfsOptions) {
    this.#o = o;
    this.#log = o.log ?? discardLogger;
    this.#clock = o.clock ?? systemClock;
  }

  /**
   * Starts the CFS: resumes the pool kept in `statePath`, or leases eight volumes and builds one.
   * @param o Settings.
   * @throws {TrueCloudError} `no_offers` when not enough providers answer; `over_entitlement`.
   */
  static async start(o: CfsOptions): Promise<CloudFileSystem> {
    const cfs = new CloudFileSystem(o);
    const saved = await readJson<CfsState>(o.statePath);
    if (saved) await cfs.#resume(saved);
    else await cfs.#build();
    cfs.#timer = setInterval(() => void cfs.#tick(), o.tickMs ?? 1000);
    const auditMs = o.auditMs ?? 60_000;
    if (auditMs > 0) {
      cfs.#auditTimer = setInterval(() => {
        cfs.audit().catch((err) => cfs.#log.warn("Audit failed", { err: String(err) }));
      }, auditMs);
    }
    return cfs;
  }

  /** The user's files. */
  get files(): FileStore {
    return this.#files;
  }

  /** The pool under them. */
  get pool(): Pool {
    return this.#pool;
  }

  #event(level: CfsEvent["level"], message: string, slot?: number): void {
    this.#events.push({ at: this.#clock.now(), level, message, slot });
    if (this.#events.length > 500) this.#events.splice(0, this.#events.length - 500);
    this.#log[level](message, slot === undefined ? {} : { slot });
  }

  #save(): Promise<void> {
    const run = this.#saving.then(() => this.#saveNow());
    this.#saving = run.catch(() => {});
    return run;
  }

  async #saveNow(): Promise<void> {
    this.#state.slots = this.#slots.map((s) => s?.state ?? null);
    if (this.#pool) this.#state.generation = this.#pool.generation;
    await saveJson(this.#o.statePath, this.#state);
  }

  async #build(): Promise<void> {
    const entitlement = this.#o.entitlementBytes();
    const volumeBytes = Math.floor(entitlement / POOL_DATA / VOLUME_BLOCK_SIZE) *
      VOLUME_BLOCK_SIZE;
    if (volumeBytes < 16 * VOLUME_BLOCK_SIZE) {
      throw new TrueCloudError(
        `A storage entitlement of ${entitlement} B is too small for a pool (volumes of at least 1 MiB)`,
        { code: "too_small" },
      );
    }
    const key = crypto.getRandomValues(new Uint8Array(32));
    this.#state = {
      v: 1,
      pool: crypto.randomUUID(),
      key: toHex(key),
      volumeBytes,
      generation: 0,
      slots: [],
    };
    const got = await this.#lease(POOL_VOLUMES, () => []);
    got.forEach((l, i) => (this.#slots[i] = l));
    const spread = spreadOf(got.map((l) => l.state.placement));
    this.#event("info", `Leased ${POOL_VOLUMES} volumes: ${spread.summary}`);
    try {
      this.#pool = await Pool.create({
        devices: this.#slots.map((s) => s!.device),
        key,
        poolId: this.#state.pool,
        onEvent: (e: CfsEvent) => this.#events.push(e),
        log: this.#log.child("pool"),
      });
      this.#files = await FileStore.format(this.#pool);
      this.#pool.useMap(() => this.#files.inUse());
      await this.#save();
    } catch (err) {
      // Nothing is kept of a pool that could not be made: its leases go back.
      this.#stopped = true;
      await this.#pool?.close().catch(() => {});
      for (const s of got) {
        await s.device?.close().catch(() => {});
        await this.#release(s.state, "released").catch(() => {});
      }
      throw err;
    }
  }

  async #resume(saved: CfsState): Promise<void> {
    this.#state = saved;
    for (const [i, s] of saved.slots.entries()) {
      if (!s) {
        this.#slots[i] = null;
        continue;
      }
      const live: Live = { state: s };
      this.#slots[i] = live;
      try {
        live.device = await this.#o.attacher.attach(s.volume, s.keys, (r) => this.#dead(live, r));
      } catch (err) {
        live.awaySince = this.#clock.now();
        this.#event("warn", `Volume ${i} is away at start: ${(err as Error).message}`, i);
      }
    }
    this.#pool = await Pool.open({
      devices: this.#slots.map((s) => s?.device),
      key: fromHex(saved.key),
      poolId: saved.pool,
      generationHint: saved.generation,
      onEvent: (e: CfsEvent) => this.#events.push(e),
      log: this.#log.child("pool"),
    });
    for (const [i, s] of this.#slots.entries()) if (s && !s.device) this.#pool.setAway(i, "away");
    this.#files = await FileStore.open(this.#pool);
    this.#pool.useMap(() => this.#files.inUse());
    this.#event("info", "Pool resumed");
  }

  // Leases `need` volumes from providers not in `pool`, best spread first; one lease at a time, so
  // that concurrent replacements do not pick the same providers.
  #lease(need: number, pool: () => VolumePlace[]): Promise<Live[]> {
    const run = this.#leasing.then(() => this.#leaseNow(need, pool()));
    this.#leasing = run.then(() => {}, () => {});
    return run;
  }

  async #leaseNow(need: number, pool: VolumePlace[]): Promise<Live[]> {
    const got: Live[] = [];
    const tried = new Set<string>(pool.map((p) => p.provider));
    const rounds: string[] = [];
    for (let round = 0; got.length < need && round < 5 && !this.#stopped; round++) {
      const offers = await this.#o.broadcaster.request({
        kind: "storage",
        bytes: this.#state.volumeBytes,
        leaseSeconds: this.#o.leaseSeconds ?? 30 * 24 * 3600,
        count: Math.min(32, need * 2),
        maxHops: 2,
        waitMs: this.#o.offerWaitMs ?? 3000,
      });
      const fresh = offers.filter((o) => !tried.has(o.provider));
      rounds.push(`${offers.length} (${fresh.length} new)`);
      for (const offer of rankOffers(fresh, [...pool, ...got.map((g) => g.state.placement)])) {
        if (got.length >= need) break;
        tried.add(offer.provider);
        try {
          got.push(await this.#take(offer));
        } catch (err) {
          this.#log.warn("Offer not taken", { provider: offer.provider, err: String(err) });
        }
      }
    }
    if (got.length < need) {
      for (const g of got) await this.#release(g.state, "released");
      throw new TrueCloudError(
        `Only ${got.length} of ${need} volumes could be leased: not enough providers answered ` +
          `(offers per round: ${rounds.join(", ")})`,
        { code: "no_offers" },
      );
    }
    return got;
  }

  // Accepts one offer, asks for the export and attaches the volume.
  async #take(offer: ReceivedOffer): Promise<Live> {
    const entry = await this.#o.broadcaster.accept(offer);
    const state: Partial<SlotState> = {
      lease: entry.ack,
      leaseId: entry.id,
      placement: volumePlaceOf(offer),
    };
    try {
      const keys = await this.#o.attacher.keys();
      const jws = await signExport(this.#o.identity, offer.provider, {
        v: 1,
        volume: entry.id,
        lease: entry.ack,
        pool: this.#state.pool,
        blockSize: VOLUME_BLOCK_SIZE,
        tunnelKey: keys.publicKey,
      }, this.#clock);
      const answer = await this.#o.broadcaster.sendVolume(offer.provider, jws);
      if (answer.t !== "exported" || typeof answer.export !== "string") {
        throw new TrueCloudError(`Export refused: ${String(answer.reason ?? "no reason")}`, {
          code: String(answer.code ?? "refused"),
        });
      }
      const volume = await verifyVolume(
        answer.export,
        offer.provider,
        this.#o.identity.nodeId,
        this.#clock,
      );
      if (volume.consumerKey !== keys.publicKey || volume.volume !== entry.id) {
        throw new TrueCloudError("The exported volume is not the one asked for", {
          code: "invalid",
        });
      }
      Object.assign(state, { volume, keys });
      const live: Live = { state: state as SlotState };
      live.device = await this.#o.attacher.attach(
        volume,
        keys,
        (r) => this.#dead(live, r),
      );
      return live;
    } catch (err) {
      await this.#release({ ...state, lease: entry.ack } as SlotState, "released").catch(() => {});
      throw err;
    }
  }

  async #release(s: SlotState, reason: "released" | "replaced"): Promise<void> {
    const entry = this.#o.ledger.get(s.leaseId);
    if (!entry) return;
    const now = Math.floor(this.#clock.now() / 1000);
    const jws = await this.#o.broadcaster.endLease(entry, now, reason);
    await this.#o.broadcaster.sendVolume(entry.provider, jws).catch((err) =>
      this.#log.info("Lease end not delivered (announced anyway)", {
        provider: entry.provider,
        err: String(err),
      })
    );
  }

  // A volume went silent or its tunnel dropped (one not placed in the pool yet is left to the pool:
  // its first call fails and makes the member away).
  #dead(live: Live, reason: string): void {
    const slot = this.#slots.indexOf(live);
    if (slot < 0 || live.awaySince !== undefined || this.#stopped) return;
    live.awaySince = this.#clock.now();
    const device = live.device;
    live.device = undefined;
    void device?.close().catch(() => {});
    if (this.#pool.status().members[slot].state === "online") this.#pool.setAway(slot, reason);
    this.#event("warn", `Volume ${slot} is away: ${reason}`, slot);
  }

  // Once a tick: silent volumes are retried, then replaced after the grace period; leases renewed.
  async #tick(): Promise<void> {
    if (this.#ticking || this.#stopped) return;
    this.#ticking = true;
    try {
      const grace = this.#o.graceMs ?? 600_000;
      const now = this.#clock.now();
      const members = this.#pool.status().members;
      await Promise.all(this.#slots.map(async (live, slot) => {
        if (!live || live.busy) return;
        live.busy = true;
        try {
          // The pool itself sets a member away when a call times out, or faulted when it refuses
          // writes: the same upkeep follows.
          const member = members[slot];
          if (member.state === "away" && live.awaySince === undefined) {
            this.#dead(live, member.reason ?? "away");
          }
          if (member.state === "faulted" && live.awaySince === undefined) {
            this.#dead(live, member.reason ?? "faulted");
            live.awaySince = -Infinity; // no grace: replace now
          }
          if (live.awaySince !== undefined) {
            if (now - live.awaySince > grace) await this.#replace(slot, live);
            else await this.#retry(slot, live);
          } else await this.#renewIfDue(slot, live);
        } catch (err) {
          this.#log.warn("Volume upkeep failed", { slot, err: String(err) });
        } finally {
          live.busy = false;
        }
      }));
    } finally {
      this.#ticking = false;
    }
  }

  async #retry(slot: number, live: Live): Promise<void> {
    let device: AttachedVolume;
    try {
      device = await this.#o.attacher.attach(
        live.state.volume,
        live.state.keys,
        (r) => this.#dead(live, r),
      );
    } catch {
      return; // still away
    }
    live.awaySince = undefined;
    live.device = device;
    this.#event("info", `Volume ${slot} is back: catching up what changed while it was away`, slot);
    this.#pool.rejoin(slot, device);
  }

  async #replace(slot: number, live: Live): Promise<void> {
    this.#event("warn", `Volume ${slot} stayed away past the grace period: replacing it`, slot);
    this.#pool.fault(slot, "away past the grace period");
    await this.#release(live.state, "replaced").catch(() => {});
    // The pool as it is when this lease's turn comes (other replacements may land first).
    const [fresh] = await this.#lease(1, () => [
      ...this.#slots.filter((s, i) => s && i !== slot).map((s) => s!.state.placement),
      live.state.placement,
    ]);
    this.#slots[slot] = fresh;
    await this.#save();
    this.#event(
      "info",
      `Volume ${slot} replaced by a volume of ${fresh.state.placement.provider}: resilvering`,
      slot,
    );
    this.#pool.replace(slot, fresh.device!);
  }

  async #renewIfDue(slot: number, live: Live): Promise<void> {
    const entry = this.#o.ledger.get(live.state.leaseId);
    const now = Math.floor(this.#clock.now() / 1000);
    if (!entry || now < entry.from + (entry.until - entry.from) * 2 / 3) return;
    const next: LedgerEntry = await this.#o.broadcaster.renew(entry, live.state.volume.volume);
    live.state = { ...live.state, lease: next.ack, leaseId: next.id };
    await this.#save();
    this.#event("info", `Lease of volume ${slot} renewed until ${iso(next.until)}`, slot);
  }

  /**
   * Audits the providers (`docs/protocol/volumes.md` § 10): a spot check of four random stripes in
   * use on every online volume; each provider's result goes to the ledger's audit record.
   * @returns What each provider answered (none for a volume with no written stripe sampled).
   */
  audit(): Promise<AuditResult[]> {
    this.#auditing ??= this.#auditOnce().finally(() => (this.#auditing = undefined));
    return this.#auditing;
  }

  async #auditOnce(): Promise<AuditResult[]> {
    if (this.#stopped) return [];
    const checks = await this.#pool.audit(4);
    const at = Math.floor(this.#clock.now() / 1000);
    const results: AuditResult[] = [];
    for (const c of checks) {
      const live = this.#slots[c.slot];
      if (!live || c.checked === 0) continue;
      const provider = live.state.placement.provider;
      const ok = c.wrong === 0;
      const r: AuditResult = {
        provider,
        kind: "volume",
        ok,
        at,
        detail: ok
          ? `volume ${c.slot}: ${c.checked} sampled stripes verified`
          : `volume ${c.slot}: ${c.wrong} of ${c.checked} sampled shards wrong (rewritten)`,
      };
      await this.#o.ledger.audited(r);
      if (!ok) this.#event("warn", `Provider ${provider} failed an audit: ${r.detail}`, c.slot);
      results.push(r);
    }
    return results;
  }

  /** Checks every stripe and repairs what is wrong. */
  async scrub(): Promise<void> {
    if (this.#scrub && !this.#scrub.finished) return;
    this.#scrub = { doneBytes: 0, totalBytes: this.#pool.size, repaired: 0, finished: false };
    this.#event("info", "Scrub started");
    const r = await this.#pool.scrub();
    this.#scrub = {
      doneBytes: this.#pool.size,
      totalBytes: this.#pool.size,
      repaired: r.repaired,
      finished: true,
    };
    this.#event(
      r.unrepairable ? "error" : "info",
      `Scrub finished: ${r.checksumErrors} checksum errors, ${r.repaired} repaired, ${r.unrepairable} unrepairable`,
    );
  }

  /** What the UI shows. */
  status(): CfsStatus {
    const p = this.#pool.status();
    const audits = new Map(this.#o.ledger.audits().map((a) => [a.provider, a]));
    const volumes: VolumeStatus[] = this.#slots.map((live, slot) => {
      const m = p.members[slot];
      const lease = live && this.#o.ledger.get(live.state.leaseId);
      const audit = live && audits.get(live.state.placement.provider);
      return {
        slot,
        role: slot < POOL_DATA ? "data" : "parity",
        state: m.state,
        provider: live?.state.placement.provider,
        location: live?.state.placement.location,
        network: live?.state.placement.network,
        vpn: live?.state.placement.vpn,
        latencyMs: live?.device?.latencyMs,
        sizeBytes: live ? live.state.volume.blockCount * live.state.volume.blockSize : 0,
        lease: lease ? { id: lease.id, until: lease.until } : undefined,
        errors: m.errors,
        behindStripes: m.behindStripes,
        audits: audit
          ? {
            passes: audit.passes,
            failures: audit.failures,
            lastAt: audit.last.at,
            lastFailure: audit.lastFailure &&
              `${iso(audit.lastFailure.at)}: ${audit.lastFailure.detail}`,
          }
          : undefined,
      };
    });
    const usage = this.#files.usage();
    const entitlement = this.#o.entitlementBytes();
    const spread = spreadOf(
      this.#slots.filter((s) => s).map((s) => s!.state.placement),
    );
    return {
      pool: {
        state: p.state,
        sizeBytes: this.#pool.size,
        usedBytes: usage.usedBytes,
        lossesTolerated: p.lossesTolerated,
      },
      entitlement: {
        storageBytes: entitlement,
        usedBytes: usage.usedBytes,
        freeBytes: Math.max(0, entitlement - usage.usedBytes),
      },
      volumes,
      distribution: spread,
      resilver: this.#pool.resilverStatus(),
      scrub: this.#scrub,
      events: [...this.#events].reverse().slice(0, 100),
    };
  }

  /** Stops watching, flushes and closes the pool and detaches every volume (they keep data). */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    clearInterval(this.#auditTimer);
    await this.#auditing?.catch(() => {});
    await this.#files?.close().catch(() => {});
    await this.#pool?.close().catch(() => {});
    for (const s of this.#slots) await s?.device?.close().catch(() => {});
  }
}

function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}
