/**
 * The CDN between node agents (`docs/protocol/cdn.md`): every node keeps a catalogue of publish
 * manifests, learnt by gossip on each VPN's `cdn` topic and by sync with members it meets; a node
 * with a CDN store pulls the objects placement gives it from the other holders, every block checked;
 * members read any object, members-only content included, from its holders over their VPNs; and a
 * node hands its gateway public content only.
 *
 * @module
 */

import { TopicValidatorResult } from "@libp2p/gossipsub";
import { decodeJwt } from "jose";
import {
  addContent,
  BlockNotFoundError,
  type BlockSource,
  type BlockStore,
  type Catalogue,
  CDN_AUDIENCE,
  type CID,
  dagBlocks,
  holders,
  parseCid,
  type PublishData,
  type PublishedObject,
  randomBlock,
  readContent,
  signPublish,
  StoreSet,
} from "../../cdn/mod.ts";
import {
  type Clock,
  discardLogger,
  type Logger,
  type NodeIdentity,
  NotFoundError,
  shuffled,
  signEnvelope,
  systemClock,
  TrueCloudError,
  verifyEnvelope,
  z,
} from "../../protocol/mod.ts";
import type { VpnNode } from "../overlay/mod.ts";
import { CdnExchange, MAX_RELAY } from "./cdn.ts";
import type { AuditResult } from "./ledger.ts";

/** The gossipsub topic of a VPN's publish manifests. */
export function cdnTopic(vpn: string): string {
  return `truecloud/vpn/${vpn}/cdn`;
}

/** Envelope type of a holder statement: "I keep a CDN store and am alive". */
export const HOLDER_TYPE = "truecloud-cdn-holder+jwt";
/** How long a holder statement lives, in seconds; one is signed every third of that. */
export const HOLDER_TTL_S = 30;
const holderSchema = z.strictObject({ v: z.literal(1), leaving: z.boolean().optional() });

/** Settings of a {@linkcode CdnNode}. */
export interface CdnNodeOptions {
  /** This node. */
  identity: NodeIdentity;
  /** The node's catalogue. */
  catalogue: Catalogue;
  /** The node's CDN store, when it holds content for the cloud. */
  store?: BlockStore;
  /** Holders per object (default 3). */
  k?: number;
  /** Time between repair rounds, in milliseconds (default 10 s). */
  repairMs?: number;
  /** Time between syncs with one member of each VPN, in milliseconds (default 5 minutes). */
  syncMs?: number;
  /** Time between scrubs of the store, in milliseconds (default 10 minutes). */
  scrubMs?: number;
  /** Time between audits of other holders, in milliseconds (default a minute). */
  auditMs?: number;
  /** Where audit results go (the ledger). */
  onAudit?: (r: AuditResult) => Promise<void>;
  /** Time source. */
  clock?: Clock;
  /** Logger. */
  log?: Logger;
}

/** What one repair round did. */
export interface RepairRound {
  /** Objects this node now holds whole that it did not before. */
  fetched: string[];
  /** Objects it should hold but could not get (no live holder had them, or its store is full). */
  failed: { cid: string; reason: string }[];
}

/** A node's part in the CDN. */
export class CdnNode {
  /** Blocks, audits and catalogue pages between members. */
  readonly exchange: CdnExchange;
  /** The node's catalogue. */
  readonly catalogue: Catalogue;
  readonly #o: CdnNodeOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #vpns = new Map<string, VpnNode>();
  /** Per member, whether it said it keeps a store. */
  readonly #keepsStore = new Map<string, boolean>();
  /** Per VPN, the members seen passing on messages from other VPNs: they are in several VPNs. */
  readonly #bridges = new Map<string, Set<string>>();
  /** Per VPN, the members synced with since they were last verified. */
  readonly #synced = new Map<string, Set<string>>();
  /** Objects found whole in the store since the last scrub. */
  readonly #whole = new Set<string>();
  /** Objects that could not be pulled, with why (logged once while it stays so). */
  readonly #failing = new Map<string, string>();
  /** Holder statements heard, by node: when each ends, and whether it said it was leaving. */
  readonly #statements = new Map<string, { iat: number; exp: number; leaving: boolean }>();
  #timers: ReturnType<typeof setInterval>[] = [];
  #stopped = false;
  #repairing?: Promise<RepairRound>;
  #syncing?: Promise<void>;
  #soon?: ReturnType<typeof setTimeout>;
  #repairingSince?: number;

  /** @param o Settings. */
  constructor(o: CdnNodeOptions) {
    this.#o = o;
    this.catalogue = o.catalogue;
    this.exchange = new CdnExchange(
      o.store,
      o.catalogue,
      (cid, relay, fromVpn) => this.#remote(cid, relay, fromVpn).getBlock(cid),
    );
    this.#log = o.log ?? discardLogger;
    this.#clock = o.clock ?? systemClock;
  }

  /** This node's id. */
  get nodeId(): string {
    return this.#o.identity.nodeId;
  }

  /** Whether this node keeps a CDN store. */
  get keepsStore(): boolean {
    return !!this.#o.store;
  }

  /** Starts syncing, repairing and scrubbing. */
  start(): void {
    if (this.#timers.length) return;
    // A round still running when the node stops may find the catalogue closed: it only logs.
    const every = (f: () => Promise<unknown>, ms: number) =>
      this.#timers.push(setInterval(() => {
        if (this.#stopped) return;
        f().catch((err) => this.#log.debug("CDN upkeep failed", { err: String(err) }));
      }, ms));
    every(() => this.#syncNew(), 2000);
    every(() => this.#syncOne(), this.#o.syncMs ?? 300_000);
    every(() => this.repair(), this.#o.repairMs ?? 10_000);
    every(() => this.#scrub(), this.#o.scrubMs ?? 600_000);
    every(() => this.audit(), this.#o.auditMs ?? 60_000);
    every(() => this.#announce(), (HOLDER_TTL_S * 1000) / 3);
  }

  // Tells every VPN that this node keeps a store and is alive (or is leaving).
  async #announce(leaving = false): Promise<void> {
    if (!this.#o.store || !this.#vpns.size) return;
    const jws = await signEnvelope(this.#o.identity, leaving ? { v: 1, leaving } : { v: 1 }, {
      type: HOLDER_TYPE,
      audience: CDN_AUDIENCE,
      ttlSeconds: HOLDER_TTL_S,
      clock: this.#clock,
    });
    this.#send({ t: "holder", jws });
  }

  // Takes a holder statement; says whether it was new here (and so is passed on).
  async #takeStatement(jws: string, knows: (id: string) => boolean): Promise<boolean> {
    const env = await verifyEnvelope(jws, {
      type: HOLDER_TYPE,
      audience: CDN_AUDIENCE,
      schema: holderSchema,
      what: "holder statement",
      clock: this.#clock,
      maxBytes: 2048,
      maxTtlSeconds: HOLDER_TTL_S,
    });
    if (!knows(env.issuer)) {
      throw new TrueCloudError("A holder statement from a stranger", { code: "not_member" });
    }
    if (env.issuer === this.nodeId) return false;
    const known = this.#statements.get(env.issuer);
    if (known && known.iat >= env.issuedAt) return false;
    const leaving = env.data.leaving ?? false;
    this.#statements.set(env.issuer, { iat: env.issuedAt, exp: env.expiresAt, leaving });
    if (!leaving) this.#keepsStore.set(env.issuer, true);
    // The view of the holders changed (a node came, or is leaving): placement may now differ.
    if (leaving || !known || known.leaving) this.#repairSoon();
    return true;
  }

  /** Stops, after the round in progress. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timers.length) await this.#announce(true).catch(() => {});
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    clearTimeout(this.#soon);
    await this.#repairing?.catch(() => {});
    await this.#syncing?.catch(() => {});
  }

  /**
   * Takes part in a VPN: its `cdn` topic and the exchange.
   * @param node The membership.
   */
  async attach(node: VpnNode): Promise<void> {
    this.#vpns.set(node.vpn, node);
    this.#synced.set(node.vpn, new Set());
    this.#bridges.set(node.vpn, new Set());
    const pubsub = node.libp2p.services.pubsub;
    pubsub.topicValidators.set(cdnTopic(node.vpn), async (from, msg) => {
      // Judged by the message's own signature; see VpnNode for why the forwarding peer is not.
      if (node.isDenied(from.toString())) return TopicValidatorResult.Reject;
      try {
        const m = JSON.parse(new TextDecoder().decode(msg.data));
        if (typeof m?.jws !== "string") throw new Error("no jws");
        // A member that passed the message on from another VPN vouches for its issuer.
        const author = msg.type === "signed" ? msg.from.toString() : "";
        const vouched = node.roster().some((c) => c.data.member === author);
        if (m.t === "holder") {
          const knows = (id: string) => vouched || node.roster().some((c) => c.data.member === id);
          if (await this.#takeStatement(m.jws, knows)) this.#send(m, node.vpn);
        } else if (m.t === "publish") {
          const { fresh } = await this.catalogue.take(m.jws, { vouched });
          if (fresh) {
            this.#gossip(m.jws, node.vpn);
            this.#repairSoon();
          }
        } else throw new Error("neither publish nor holder");
        // A member passing on another node's message is in another VPN too: a way to relay.
        if (vouched && author !== decodeJwt(m.jws).iss) this.#bridges.get(node.vpn)?.add(author);
        return TopicValidatorResult.Accept;
      } catch (err) {
        this.#log.debug("CDN message refused", { err: String(err) });
        return TopicValidatorResult.Reject;
      }
    });
    pubsub.subscribe(cdnTopic(node.vpn));
    await this.exchange.attach(node);
    setTimeout(() => void this.#announce().catch(() => {}), 500);
  }

  /**
   * Stops taking part in a VPN.
   * @param vpn The VPN.
   */
  detach(vpn: string): void {
    this.#vpns.delete(vpn);
    this.#synced.delete(vpn);
    this.#bridges.delete(vpn);
  }

  // Publishes a manifest on the cdn topic of every VPN but `except`.
  #gossip(jws: string, except?: string): void {
    this.#send({ t: "publish", jws }, except);
  }

  // Publishes a message on the cdn topic of every VPN but `except`.
  #send(message: Record<string, unknown>, except?: string): void {
    const data = new TextEncoder().encode(JSON.stringify(message));
    for (const [vpn, node] of this.#vpns) {
      if (vpn === except) continue;
      node.libp2p.services.pubsub.publish(cdnTopic(vpn), data).catch((err) =>
        this.#log.debug("CDN message not gossiped", { vpn, err: String(err) })
      );
    }
  }

  /**
   * Publishes content from this node: stores it, signs a manifest, takes it into the catalogue and
   * gossips it to every VPN. The holders placement picks then pull it.
   * @param content The bytes.
   * @param meta Name, media type, visibility and optional expiry.
   * @returns The publication.
   * @throws {TrueCloudError} `no_store` (409) when this node keeps no CDN store; `quota_exceeded`.
   */
  async publish(
    content: AsyncIterable<Uint8Array> | Uint8Array,
    meta: Omit<PublishData, "v" | "cid" | "size">,
  ): Promise<PublishedObject & { jws: string }> {
    const store = this.#o.store;
    if (!store) {
      throw new TrueCloudError("This node keeps no CDN store to publish from", {
        code: "no_store",
        status: 409,
      });
    }
    const { cid, size } = await addContent(store, content);
    const jws = await signPublish(this.#o.identity, {
      v: 1,
      ...meta,
      cid: cid.toString(),
      size,
    }, this.#clock);
    const obj = await this.catalogue.publish(jws);
    this.#whole.add(obj.cid.toString());
    this.#gossip(jws);
    this.#repairSoon();
    return { ...obj, jws };
  }

  /** Members reached in any VPN. */
  #members(): Set<string> {
    return new Set([...this.#vpns.values()].flatMap((node) => node.verifiedPeers()));
  }

  /**
   * The live holders: this node when it keeps a store; the members it reaches that keep one; and
   * every node whose holder statement is current, in any VPN (one that said it is leaving is not).
   */
  liveHolders(): string[] {
    const live = new Set([...this.#members()].filter((p) => this.#keepsStore.get(p) === true));
    const now = this.#clock.now() / 1000;
    for (const [id, s] of this.#statements) {
      if (s.exp <= now) this.#statements.delete(id);
      else if (s.leaving) live.delete(id);
      else live.add(id);
    }
    live.delete(this.nodeId);
    return this.#o.store ? [this.nodeId, ...live] : [...live];
  }

  // Whether this node knows, of every member it reaches, whether it keeps a store: until then its
  // view of the holders is too small, and it would pull objects that others hold.
  #viewComplete(): boolean {
    return [...this.#members()].every((p) => this.#keepsStore.has(p));
  }

  // Where to fetch an object's blocks from other members: every VPN's members on its roster (but
  // `except`'s), connected or not (a stream to one dials it), in the order placement gives holders,
  // so that the first asked usually has the block; then, when none has it, the members known to be
  // in other VPNs too (else the first three), asking them to pass the request on to their other
  // VPNs (an object's holders may sit in a VPN this node is not in).
  #remote(cid: CID, relay: number, except?: string): BlockSource {
    const key = cid.toString();
    const direct: BlockSource[] = [];
    const relayed: BlockSource[] = [];
    for (const [vpn, node] of this.#vpns) {
      if (vpn === except) continue;
      const peers = node.roster().map((c) => c.data.member).filter((id) => id !== this.nodeId);
      const ordered = holders(key, peers, peers.length);
      direct.push(this.exchange.source(node, ordered));
      if (relay > 0) {
        const bridges = ordered.filter((p) => this.#bridges.get(vpn)?.has(p));
        relayed.push(
          this.exchange.source(node, bridges.length ? bridges : ordered.slice(0, 3), relay),
        );
      }
    }
    return new StoreSet([...direct, ...relayed]);
  }

  // This node's store, then the other members.
  #source(cid: CID): BlockSource {
    const remote = this.#remote(cid, MAX_RELAY);
    return new StoreSet(this.#o.store ? [this.#o.store, remote] : [remote]);
  }

  /**
   * Reads an object, members-only content included: from this node's store, else from the members
   * that hold it, every block checked against its CID.
   * @param cid The object.
   * @param range A byte range of it.
   */
  async *read(cid: CID, range?: { offset: number; length: number }): AsyncGenerator<Uint8Array> {
    if (!this.#vpns.size && !this.#o.store) {
      throw new TrueCloudError("This node is in no VPN", { code: "no_vpn" });
    }
    yield* readContent(this.#source(cid), cid, range);
  }

  /** The newest live public version of every name: what the gateway may serve. */
  async publicObjects(): Promise<PublishedObject[]> {
    return (await this.catalogue.list()).filter((o) => o.visibility === "public");
  }

  /**
   * A live public publication of a CID, for the gateway.
   * @param cid The object.
   * @throws {NotFoundError} When the CID is not a live public publication.
   */
  async publicObject(cid: CID): Promise<PublishedObject> {
    const obj = await this.catalogue.byCid(cid);
    if (!obj || obj.visibility !== "public") throw new NotFoundError(`No public object ${cid}`);
    return obj;
  }

  /**
   * One repair round: every object placement gives this node and that it does not hold whole is
   * pulled from the other live holders.
   * @returns What it did.
   */
  repair(): Promise<RepairRound> {
    // Once stopped, the catalogue may be closed: no round starts.
    if (this.#stopped) return Promise.resolve({ fetched: [], failed: [] });
    if (!this.#repairing) {
      this.#repairingSince = Date.now();
      this.#repairing = this.#repairOnce().finally(() => {
        this.#repairing = undefined;
        this.#repairingSince = undefined;
      });
    }
    return this.#repairing;
  }

  /** What the operator sees of the repair: objects not pulled yet and why, and a round running. */
  repairStatus(): { failing: Record<string, string>; roundRunningMs?: number } {
    return {
      failing: Object.fromEntries(this.#failing),
      roundRunningMs: this.#repairingSince && Date.now() - this.#repairingSince,
    };
  }

  #repairSoon(): void {
    if (this.#soon || !this.#o.store || this.#stopped) return;
    this.#soon = setTimeout(() => {
      this.#soon = undefined;
      this.repair().catch((err) => this.#log.warn("Repair failed", { err: String(err) }));
    }, 200);
  }

  async #repairOnce(): Promise<RepairRound> {
    const round: RepairRound = { fetched: [], failed: [] };
    const store = this.#o.store;
    if (!store || !this.#viewComplete()) return round;
    const live = this.liveHolders();
    for (const cid of await this.catalogue.objects()) {
      const key = cid.toString();
      if (this.#whole.has(key)) continue;
      if (!holders(key, live, this.#o.k ?? 3).includes(this.nodeId)) continue;
      try {
        const fetched = await this.#pull(store, cid);
        this.#whole.add(key);
        this.#failing.delete(key);
        if (fetched) {
          round.fetched.push(key);
          this.#log.info("Object replicated here", { cid: key, blocks: fetched });
        }
      } catch (err) {
        const reason = err instanceof BlockNotFoundError
          ? "no live holder has it"
          : (err as Error).message;
        round.failed.push({ cid: key, reason });
        if (this.#failing.get(key) !== reason) {
          this.#failing.set(key, reason);
          this.#log.info("Object not replicated here yet", { cid: key, reason });
        }
      }
    }
    return round;
  }

  // Walks an object's DAG, fetching into the store every block it lacks. Returns how many it fetched.
  async #pull(store: BlockStore, cid: CID): Promise<number> {
    let fetched = 0;
    let remote: BlockSource | undefined;
    const source: BlockSource = {
      getBlock: async (c) => {
        try {
          return await store.getBlock(c);
        } catch (err) {
          if (!(err instanceof BlockNotFoundError)) throw err;
        }
        remote ??= this.#remote(cid, MAX_RELAY);
        const bytes = await remote.getBlock(c);
        await store.put(c, bytes);
        fetched++;
        return bytes;
      },
      async *get(c) {
        yield await source.getBlock(c);
      },
      has: (c) => store.has(c),
    };
    for await (const _ of dagBlocks(source, cid)) { /* each block here and intact */ }
    return fetched;
  }

  /**
   * One audit (`docs/protocol/entitlement.md`, "Audits"): a random block of an object this node
   * holds whole, challenged at another node that placement gives the object to.
   * @returns What it found; undefined when there was nothing to audit, the holder could not be
   * reached, or it says it does not have the block (not a failure: in its own view of the live
   * holders placement may give the object to others, as when a cloud has split).
   */
  async audit(): Promise<AuditResult | undefined> {
    const store = this.#o.store;
    if (!store || this.#stopped || !this.#viewComplete()) return undefined;
    const live = this.liveHolders();
    const now = this.#clock.now();
    for (const object of shuffled([...this.#whole])) {
      const others = holders(object, live, this.#o.k ?? 3).filter((h) => h !== this.nodeId);
      for (const peer of shuffled(others)) {
        const node = [...this.#vpns.values()].find((n) =>
          n.roster().some((c) => c.data.member === peer)
        );
        if (!node) continue;
        const { cid, bytes } = await randomBlock(store, parseCid(object));
        const r = await this.exchange.audit(node, peer, cid, bytes).catch(() => undefined);
        // Out of reach: liveness is the holder statements' business.
        if (!r || r.missing) return undefined;
        const what = `block ${cid} of ${object}`;
        const result: AuditResult = {
          provider: peer,
          kind: "cdn",
          ok: r.holds,
          at: Math.floor(now / 1000),
          detail: r.holds ? what : `${what}: a wrong proof`,
        };
        if (!r.holds) this.#log.warn("A holder failed an audit", { ...result });
        await this.#o.onAudit?.(result);
        return result;
      }
    }
    return undefined;
  }

  async #scrub(): Promise<void> {
    if (!this.#o.store) return;
    const { checked, damaged } = await this.#o.store.scrub();
    this.#whole.clear();
    if (damaged.length) this.#log.warn("Damaged blocks dropped", { checked, damaged });
  }

  /**
   * Syncs the catalogue with a member: every page of its catalogue.
   * @param node The VPN both are in.
   * @param peer The member.
   * @returns How many manifests were new here.
   */
  async sync(node: VpnNode, peer: string): Promise<number> {
    let after = "";
    let fresh = 0;
    for (let pages = 0; pages < 10_000; pages++) {
      const page = await this.exchange.list(node, peer, after);
      if (this.#keepsStore.get(peer) !== page.store) this.#repairSoon(); // the view changed
      this.#keepsStore.set(peer, page.store);
      for (const jws of page.manifests) {
        try {
          const taken = await this.catalogue.take(jws, { synced: true });
          if (taken.fresh) fresh++;
        } catch (err) {
          this.#log.debug("Synced manifest refused", { peer, err: String(err) });
        }
      }
      if (!page.more || !page.manifests.length) break;
      const last = lastName(page.manifests);
      if (last === undefined || last <= after) break; // a page that does not move on
      after = last;
    }
    if (fresh) this.#repairSoon();
    return fresh;
  }

  // Syncs with members verified since the last look, a few at a time.
  #syncNew(): Promise<void> {
    this.#syncing ??= (async () => {
      for (const [vpn, node] of this.#vpns) {
        const done = this.#synced.get(vpn);
        if (!done) continue;
        const peers = new Set(node.verifiedPeers());
        for (const p of done) if (!peers.has(p)) done.delete(p);
        for (const p of peers) {
          if (done.has(p)) continue;
          done.add(p);
          await this.sync(node, p).catch((err) => {
            done.delete(p);
            // Until it answers, a member that cannot list its catalogue counts as keeping no store.
            if (!this.#keepsStore.has(p)) this.#keepsStore.set(p, false);
            this.#log.debug("Catalogue sync failed", { peer: p, err: String(err) });
          });
        }
      }
    })().finally(() => (this.#syncing = undefined));
    return this.#syncing;
  }

  // Anti-entropy: one random member of each VPN.
  async #syncOne(): Promise<void> {
    for (const node of this.#vpns.values()) {
      const peers = node.verifiedPeers();
      const p = peers[Math.floor(Math.random() * peers.length)];
      if (p) await this.sync(node, p).catch(() => {});
    }
  }
}

/** The name in the last manifest of a page (read unverified: only to page on). */
function lastName(manifests: string[]): string | undefined {
  try {
    const name = (decodeJwt(manifests[manifests.length - 1]).dat as { name?: unknown })?.name;
    return typeof name === "string" ? name : undefined;
  } catch {
    return undefined;
  }
}
