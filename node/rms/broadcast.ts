/**
 * Broadcast resource requests, offers and grants (`docs/protocol/broadcast.md`): requests go out on
 * every connected VPN's gossipsub topic, signed, with an id, a time to live and de-duplication, and
 * may be relayed into other VPNs; offers come back hop by hop on encrypted streams; grants go to the
 * provider the same way and come back acknowledged or refused. Fair use is checked against the
 * ledger on both sides.
 *
 * @module
 */

import { TopicValidatorResult } from "@libp2p/gossipsub";
import { decodeJwt } from "jose";
import {
  type Clock,
  discardLogger,
  type Logger,
  newUuid,
  type NodeIdentity,
  nodeIdSchema,
  signEnvelope,
  systemClock,
  TrueCloudError,
  uuidSchema,
  verifyEnvelope,
  z,
} from "../../protocol/mod.ts";
import { jsonStream, type VpnNode } from "../overlay/mod.ts";
import {
  type Contribution,
  type Entitlement,
  entitlementOf,
  RMS_AUDIENCE,
  verifyContribution,
} from "./contribution.ts";
import {
  type GrantData,
  type Ledger,
  type LedgerEntry,
  nodeAudience,
  resourceSchema,
  signAck,
  signGrant,
  signLeaseEnd,
  type Totals,
  verifyAck,
  verifyGrant,
  verifyLeaseEnd,
} from "./ledger.ts";

/** The stream protocol for offers and grants. */
export const RMS_PROTOCOL = "/truecloud/rms/1.0.0";
/** Envelope type of a request. */
export const REQUEST_TYPE = "truecloud-resource-request+jwt";
/** Envelope type of an offer. */
export const OFFER_TYPE = "truecloud-resource-offer+jwt";
/** Raw bytes a pool keeps per byte stored: eight volumes, five of them data. */
export const RAW_PER_USABLE = 8 / 5;
/** Longest time to live of a request, in seconds. */
export const MAX_REQUEST_TTL_S = 60;

/** A request's topic on a VPN. */
export function requestsTopic(vpn: string): string {
  return `truecloud/vpn/${vpn}/requests`;
}

/** A VPN's topic of announced grants. */
export function grantsTopic(vpn: string): string {
  return `truecloud/vpn/${vpn}/grants`;
}

/** The data of a request. */
export const requestDataSchema = z.strictObject({
  v: z.literal(1),
  ...resourceSchema,
  count: z.number().int().min(1).max(32),
  maxHops: z.number().int().min(0).max(3),
  contribution: z.string().min(1).max(2048),
});
/** The data of a request. */
export type RequestData = z.infer<typeof requestDataSchema>;

/** The data of an offer. */
export const offerDataSchema = z.strictObject({
  v: z.literal(1),
  request: uuidSchema,
  requester: nodeIdSchema,
  ...resourceSchema,
  vpn: uuidSchema,
  location: uuidSchema,
  network: uuidSchema,
});
/** The data of an offer. */
export type OfferData = z.infer<typeof offerDataSchema>;

/** A request as a provider sees it, verified. */
export interface VerifiedRequest {
  id: string;
  requester: string;
  data: RequestData;
  contribution: Contribution;
  expiresAt: number;
}

/** An offer as the requester holds it. */
export interface ReceivedOffer {
  /** The offer's JWS. */
  jws: string;
  /** Its id. */
  id: string;
  /** Who offers. */
  provider: string;
  /** What. */
  data: OfferData;
  /** The VPN and peer it came through: where a grant goes. */
  via: { vpn: string; peer: string };
}

/** What a requester asks for. */
export interface Ask {
  kind: "storage" | "compute";
  bytes?: number;
  cpuMillicores?: number;
  memoryBytes?: number;
  leaseSeconds: number;
  /** Offers wanted (default 1). */
  count?: number;
  /** Relays into other VPNs allowed (default 1). */
  maxHops?: number;
  /** Time to live, seconds (default and most 60). */
  ttlSeconds?: number;
  /** How long to wait for offers, ms (default: until `count` offers, or the time to live). */
  waitMs?: number;
}

/** What a {@linkcode Broadcaster} has done since it started. */
export interface BroadcastStats {
  requests: number;
  duplicates: number;
  offers: number;
  relayed: number;
  grants: number;
}

/**
 * What serves volume messages on a node (`docs/protocol/volumes.md`): its Volume Provider.
 */
export interface VolumeHandler {
  /**
   * Answers a volume message addressed to this node.
   * @param jws The message (an export or a lease end), untrusted.
   */
  message(jws: string): Promise<Record<string, unknown>>;
  /**
   * The lease in force of a volume this node provides, when a grant renews it (its `request` and
   * `offer` are the volume id); undefined when it is not a renewal this node accepts.
   */
  renewal(g: GrantData): LedgerEntry | undefined;
  /** A renewal was acknowledged: `next` takes the place of `previous`. */
  renewed(previous: LedgerEntry, next: LedgerEntry): void;
  /** Whether it would lend a volume for this storage request (room, one volume per consumer). */
  willServe(r: VerifiedRequest): boolean;
}

/** Settings of a {@linkcode Broadcaster}. */
export interface BroadcasterOptions {
  identity: NodeIdentity;
  ledger: Ledger;
  /** This node's contribution statement (kept fresh by the RMS). */
  contribution: () => { jws: string; data: Contribution };
  /** Where this node is. */
  location: string;
  network: string;
  /** Bytes of the lent disk held for the cloud outside grants (the CDN store). */
  held?: () => number;
  /** Whether this node serves a request (besides fair use and capacity, which are checked here). */
  willServe?: (r: VerifiedRequest) => boolean;
  clock?: Clock;
  log?: Logger;
}

/** What a node may hold in grants: its entitlement, with storage counted raw (× 8/5). */
export function allowance(c: Contribution): Entitlement {
  const e = entitlementOf(c);
  return { ...e, storageBytes: Math.floor(e.storageBytes * RAW_PER_USABLE) };
}

function over(use: Totals, e: Entitlement): boolean {
  return use.storageBytes > e.storageBytes || use.cpuMillicores > e.cpuMillicores ||
    use.memoryBytes > e.memoryBytes;
}

function add(t: Totals, r: { bytes: number; cpuMillicores: number; memoryBytes: number }) {
  return {
    storageBytes: t.storageBytes + r.bytes,
    cpuMillicores: t.cpuMillicores + r.cpuMillicores,
    memoryBytes: t.memoryBytes + r.memoryBytes,
  };
}

/** Requests, offers and grants over every VPN a node is in. */
export class Broadcaster {
  readonly #o: BroadcasterOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #vpns = new Map<string, VpnNode>();
  readonly #seen = new Map<string, number>(); // request id -> expiry (s)
  readonly #routes = new Map<string, { vpn: string; peer: string; until: number }>();
  readonly #down = new Map<string, { vpn: string; peer: string; until: number }>();
  readonly #pending = new Map<string, { offers: ReceivedOffer[]; want: number; wake(): void }>();
  readonly #offered = new Map<string, { request: VerifiedRequest; until: number }>();
  // provider -> the member an offer from it came through, for volume messages after the grant
  readonly #toward = new Map<string, { vpn: string; peer: string; until: number }>();
  #volumes?: VolumeHandler;
  readonly #stats: BroadcastStats = {
    requests: 0,
    duplicates: 0,
    offers: 0,
    relayed: 0,
    grants: 0,
  };

  /** @param o Settings. */
  constructor(o: BroadcasterOptions) {
    this.#o = o;
    this.#clock = o.clock ?? systemClock;
    this.#log = o.log ?? discardLogger;
  }

  get #now(): number {
    return Math.floor(this.#clock.now() / 1000);
  }

  /**
   * Takes part in a VPN: its request and grant topics, and the stream protocol.
   * @param node The membership.
   */
  async attach(node: VpnNode): Promise<void> {
    this.#vpns.set(node.vpn, node);
    const pubsub = node.libp2p.services.pubsub;
    pubsub.topicValidators.set(requestsTopic(node.vpn), async (from, msg) => {
      // Signed content is checked below; see VpnNode for why the forwarding peer is not.
      if (node.isDenied(from.toString())) return TopicValidatorResult.Reject;
      try {
        return await this.#onRequest(node, from.toString(), msg.data);
      } catch (err) {
        this.#log.debug("Request refused", { err: String(err) });
        return TopicValidatorResult.Reject;
      }
    });
    pubsub.topicValidators.set(grantsTopic(node.vpn), async (from, msg) => {
      // Signed content is checked below; see VpnNode for why the forwarding peer is not.
      if (node.isDenied(from.toString())) return TopicValidatorResult.Reject;
      try {
        const m = JSON.parse(new TextDecoder().decode(msg.data));
        let news: boolean;
        if (m?.t === "end" && typeof m.end === "string") {
          news = await this.#o.ledger.end(await verifyLeaseEnd(m.end, this.#clock));
        } else if (m?.t === "grant" && typeof m.ack === "string") {
          news = await this.#o.ledger.record(await verifyAck(m.ack, this.#clock));
        } else throw new Error("not a grant or a lease end");
        // What is new to this node crosses into its other VPNs, so that providers there count
        // leases, and their ends, made where they are not (a lease end's provider may be gone).
        if (news) this.#publishGrants(msg.data, node.vpn);
        return TopicValidatorResult.Accept;
      } catch {
        return TopicValidatorResult.Reject;
      }
    });
    pubsub.subscribe(requestsTopic(node.vpn));
    pubsub.subscribe(grantsTopic(node.vpn));
    await node.libp2p.handle(RMS_PROTOCOL, async (stream, conn) => {
      const s = jsonStream(stream);
      let answer: Record<string, unknown>;
      try {
        answer = await this.#onMessage(node, conn.remotePeer.toString(), await s.read());
      } catch (err) {
        answer = {
          ok: false,
          code: err instanceof TrueCloudError ? err.code : "invalid",
          reason: (err as Error).message,
        };
      }
      await s.write(answer).catch(() => {});
      await stream.close().catch(() => {});
    }, { maxInboundStreams: 64 });
  }

  /** Counts since start: requests taken, duplicates ignored, offers made, relays, grants made. */
  stats(): BroadcastStats {
    return { ...this.#stats };
  }

  /** Stops taking part in a VPN. */
  detach(vpn: string): void {
    this.#vpns.delete(vpn);
  }

  /**
   * Serves volume messages addressed to this node.
   * @param handler The node's Volume Provider.
   */
  serveVolumes(handler: VolumeHandler): void {
    this.#volumes = handler;
  }

  /**
   * Sends a volume message to a node: straight to it when it is a member of a VPN this node is in,
   * else along the route of its last offer.
   * @param to The node.
   * @param jws The message (export, lease end).
   * @returns Its answer.
   * @throws {TrueCloudError} `unreachable` when there is no way to it.
   */
  async sendVolume(to: string, jws: string): Promise<Record<string, unknown>> {
    return await this.#deliver(to, { t: "volume", to, volume: jws });
  }

  /**
   * Renews a storage lease this node holds as consumer: a new grant for the same volume.
   * @param lease The lease in force.
   * @param volume The volume's id: the id of its first lease (renewals get ids of their own).
   * @returns The new lease (the old one ends where it starts).
   * @throws {TrueCloudError} With the provider's refusal code, or `unreachable`.
   */
  async renew(lease: LedgerEntry, volume: string = lease.id): Promise<LedgerEntry> {
    const grant = await signGrant(this.#o.identity, {
      v: 1,
      id: newUuid(),
      request: volume,
      offer: volume,
      provider: lease.provider,
      consumer: this.#o.identity.nodeId,
      kind: lease.kind,
      bytes: lease.bytes,
      cpuMillicores: lease.cpuMillicores,
      memoryBytes: lease.memoryBytes,
      leaseSeconds: lease.until - lease.from,
      contribution: this.#o.contribution().jws,
    }, this.#clock);
    const answer = await this.#deliver(lease.provider, { t: "grant", grant });
    if (answer.t !== "ack" || typeof answer.ack !== "string") {
      throw new TrueCloudError(`The provider refused: ${String(answer.reason ?? "no reason")}`, {
        code: String(answer.code ?? "refused"),
      });
    }
    const next = await verifyAck(answer.ack, this.#clock);
    if (next.provider !== lease.provider || next.consumer !== this.#o.identity.nodeId) {
      throw new TrueCloudError("The acknowledgement is not for this renewal", { code: "invalid" });
    }
    await this.#o.ledger.record(next);
    this.#announce(answer.ack);
    await this.endLease(lease, next.from, "renewed");
    return next;
  }

  /**
   * Ends a lease this node is a party to: signs a lease end, records it and announces it.
   * @param lease The lease.
   * @param at When it ends (seconds).
   * @param reason Why.
   * @returns The lease end's JWS, for sending to the other party.
   */
  async endLease(
    lease: LedgerEntry,
    at: number,
    reason: "released" | "replaced" | "renewed" | "withdrawn",
  ): Promise<string> {
    const data = {
      v: 1 as const,
      lease: lease.id,
      provider: lease.provider,
      consumer: lease.consumer,
      at,
      reason,
    };
    const jws = await signLeaseEnd(this.#o.identity, data, this.#clock);
    await this.#o.ledger.end(data);
    this.#publishGrants(new TextEncoder().encode(JSON.stringify({ t: "end", end: jws })));
    return jws;
  }

  async #deliver(to: string, msg: Record<string, unknown>): Promise<Record<string, unknown>> {
    let last: unknown;
    for (const node of this.#vpns.values()) {
      if (!node.roster().some((c) => c.data.member === to)) continue;
      try {
        return await this.#send(node.vpn, to, msg);
      } catch (err) {
        last = err;
      }
    }
    const r = this.#toward.get(to);
    if (r && r.until >= this.#now) return await this.#send(r.vpn, r.peer, msg);
    if (last) throw last;
    throw new TrueCloudError(`No route to node ${to}`, { code: "unreachable", status: 504 });
  }

  /** This node's entitlement. */
  entitlement(): Entitlement {
    return entitlementOf(this.#o.contribution().data);
  }

  /**
   * Broadcasts a request on every VPN and gathers offers.
   * @param ask What, how much, how long.
   * @returns The offers received.
   * @throws {TrueCloudError} `over_entitlement` when the request would take this node past its
   * entitlement; `no_vpn` when it is in no VPN.
   */
  async request(ask: Ask): Promise<ReceivedOffer[]> {
    if (!this.#vpns.size) {
      throw new TrueCloudError("This node is in no management VPN yet", { code: "no_vpn" });
    }
    const own = this.#o.contribution();
    const amounts = {
      bytes: ask.bytes ?? 0,
      cpuMillicores: ask.cpuMillicores ?? 0,
      memoryBytes: ask.memoryBytes ?? 0,
    };
    const count = ask.count ?? 1;
    const ent = allowance(own.data);
    const after = add(this.#o.ledger.use(this.#o.identity.nodeId, this.#now), amounts);
    if (over(after, ent)) {
      throw new TrueCloudError(
        `This request would take ${fmt(after)} against an entitlement of ${fmt(ent)}`,
        { code: "over_entitlement", status: 403 },
      );
    }
    const ttl = Math.min(ask.ttlSeconds ?? MAX_REQUEST_TTL_S, MAX_REQUEST_TTL_S);
    const id = newUuid();
    const data: RequestData = {
      v: 1,
      kind: ask.kind,
      ...amounts,
      leaseSeconds: ask.leaseSeconds,
      count,
      maxHops: ask.maxHops ?? 1,
      contribution: own.jws,
    };
    const jws = await signEnvelope(this.#o.identity, requestDataSchema.parse(data), {
      type: REQUEST_TYPE,
      audience: RMS_AUDIENCE,
      ttlSeconds: ttl,
      clock: this.#clock,
      id,
    });
    this.#seen.set(id, this.#now + ttl);
    let wake = () => {};
    const woken = new Promise<void>((r) => (wake = r));
    const pending = { offers: [] as ReceivedOffer[], want: count, wake };
    this.#pending.set(id, pending);
    try {
      const msg = new TextEncoder().encode(JSON.stringify({ t: "request", request: jws, hops: 0 }));
      for (const node of this.#vpns.values()) {
        await node.libp2p.services.pubsub.publish(requestsTopic(node.vpn), msg).catch((err) =>
          this.#log.warn("Publishing a request failed", { vpn: node.vpn, err: String(err) })
        );
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        woken,
        new Promise((r) => (timer = setTimeout(r, ask.waitMs ?? ttl * 1000))),
      ]);
      clearTimeout(timer);
      return pending.offers;
    } finally {
      this.#pending.delete(id);
    }
  }

  /**
   * Accepts an offer: sends a grant toward its provider and records the acknowledgement.
   * @param offer The offer.
   * @returns The lease, as the ledger keeps it.
   * @throws {TrueCloudError} With the provider's refusal code (`over_entitlement`, `no_capacity`…).
   */
  async accept(offer: ReceivedOffer): Promise<LedgerEntry> {
    const after = add(this.#o.ledger.use(this.#o.identity.nodeId, this.#now), offer.data);
    if (over(after, allowance(this.#o.contribution().data))) {
      throw new TrueCloudError(`Accepting would take ${fmt(after)}, over this node's allowance`, {
        code: "over_entitlement",
        status: 403,
      });
    }
    const grant = await signGrant(this.#o.identity, {
      v: 1,
      id: newUuid(),
      request: offer.data.request,
      offer: offer.id,
      provider: offer.provider,
      consumer: this.#o.identity.nodeId,
      kind: offer.data.kind,
      bytes: offer.data.bytes,
      cpuMillicores: offer.data.cpuMillicores,
      memoryBytes: offer.data.memoryBytes,
      leaseSeconds: offer.data.leaseSeconds,
      contribution: this.#o.contribution().jws,
    }, this.#clock);
    const answer = await this.#send(offer.via.vpn, offer.via.peer, { t: "grant", grant });
    if (answer.t !== "ack" || typeof answer.ack !== "string") {
      throw new TrueCloudError(`The provider refused: ${String(answer.reason ?? "no reason")}`, {
        code: String(answer.code ?? "refused"),
      });
    }
    const entry = await verifyAck(answer.ack, this.#clock);
    if (entry.provider !== offer.provider || entry.consumer !== this.#o.identity.nodeId) {
      throw new TrueCloudError("The acknowledgement is not for this grant", { code: "invalid" });
    }
    await this.#o.ledger.record(entry);
    // The consumer announces it too, in its own VPNs, which may not be the provider's.
    this.#announce(answer.ack);
    return entry;
  }

  #announce(ack: string): void {
    this.#publishGrants(new TextEncoder().encode(JSON.stringify({ t: "grant", ack })));
  }

  #publishGrants(msg: Uint8Array, except?: string): void {
    for (const n of this.#vpns.values()) {
      if (n.vpn === except) continue;
      n.libp2p.services.pubsub.publish(grantsTopic(n.vpn), msg).catch(() => {});
    }
  }

  async #send(vpn: string, peer: string, msg: Record<string, unknown>) {
    const node = this.#vpns.get(vpn);
    if (!node) throw new TrueCloudError(`Not in VPN ${vpn} any more`, { code: "unreachable" });
    const stream = await node.openStream(peer, RMS_PROTOCOL);
    const s = jsonStream(stream);
    await s.write(msg);
    const answer = await s.read();
    await stream.close().catch(() => {});
    return answer;
  }

  #prune(): void {
    const now = this.#now;
    for (const [k, exp] of this.#seen) if (exp < now) this.#seen.delete(k);
    for (const m of [this.#routes, this.#down, this.#offered, this.#toward]) {
      for (const [k, v] of m) if (v.until < now) m.delete(k);
    }
  }

  async #verifyRequest(jws: string): Promise<VerifiedRequest> {
    const v = await verifyEnvelope(jws, {
      type: REQUEST_TYPE,
      audience: RMS_AUDIENCE,
      schema: requestDataSchema,
      what: "resource request",
      clock: this.#clock,
      maxBytes: 8192,
      maxTtlSeconds: MAX_REQUEST_TTL_S,
    });
    const contribution = await verifyContribution(v.data.contribution, v.issuer, this.#clock);
    return { id: v.id, requester: v.issuer, data: v.data, contribution, expiresAt: v.expiresAt };
  }

  async #onRequest(node: VpnNode, from: string, bytes: Uint8Array) {
    if (bytes.length > 16 * 1024) return TopicValidatorResult.Reject;
    const m = JSON.parse(new TextDecoder().decode(bytes));
    if (
      m?.t !== "request" || typeof m.request !== "string" || !Number.isInteger(m.hops) ||
      m.hops < 0 || m.hops > 3
    ) {
      return TopicValidatorResult.Reject;
    }
    const r = await this.#verifyRequest(m.request);
    this.#prune();
    if (this.#seen.has(r.id) || r.requester === this.#o.identity.nodeId) {
      this.#stats.duplicates++;
      return TopicValidatorResult.Ignore;
    }
    this.#stats.requests++;
    this.#seen.set(r.id, r.expiresAt);
    this.#routes.set(r.id, { vpn: node.vpn, peer: from, until: r.expiresAt + 600 });
    // Answer, and relay, without holding up the gossip.
    queueMicrotask(() => {
      this.#answer(node, from, r).catch((err) =>
        this.#log.debug("Offer not delivered", { err: String(err) })
      );
      if (m.hops < r.data.maxHops) {
        const relayed = new TextEncoder().encode(
          JSON.stringify({ t: "request", request: m.request, hops: m.hops + 1 }),
        );
        for (const other of this.#vpns.values()) {
          if (other.vpn === node.vpn) continue;
          this.#stats.relayed++;
          other.libp2p.services.pubsub.publish(requestsTopic(other.vpn), relayed).catch(() => {});
        }
      }
    });
    return TopicValidatorResult.Accept;
  }

  // Whether this node can serve a request now: fair use for the requester, capacity for itself.
  #refusal(
    r: { requester: string; contribution: Contribution },
    amounts: { bytes: number; cpuMillicores: number; memoryBytes: number },
  ) {
    const use = add(this.#o.ledger.use(r.requester, this.#now), amounts);
    if (over(use, allowance(r.contribution))) {
      return { code: "over_entitlement", reason: "The consumer would exceed its entitlement" };
    }
    const mine = this.#o.contribution().data;
    const given = add(this.#o.ledger.given(this.#o.identity.nodeId, this.#now), amounts);
    given.storageBytes += this.#o.held?.() ?? 0;
    if (
      given.storageBytes > mine.diskBytes || given.cpuMillicores > mine.cpuMillicores ||
      given.memoryBytes > mine.memoryBytes
    ) {
      return { code: "no_capacity", reason: "This provider has no more to lend" };
    }
    return undefined;
  }

  async #answer(node: VpnNode, upstream: string, r: VerifiedRequest): Promise<void> {
    if (this.#o.willServe && !this.#o.willServe(r)) return;
    if (r.data.kind === "storage" && this.#volumes && !this.#volumes.willServe(r)) return;
    const refusal = this.#refusal(r, r.data);
    if (refusal) {
      this.#log.info("Request not served", { requester: r.requester, ...refusal });
      return;
    }
    const id = newUuid();
    const offer = await signEnvelope(
      this.#o.identity,
      {
        v: 1,
        request: r.id,
        requester: r.requester,
        kind: r.data.kind,
        bytes: r.data.bytes,
        cpuMillicores: r.data.cpuMillicores,
        memoryBytes: r.data.memoryBytes,
        leaseSeconds: r.data.leaseSeconds,
        vpn: node.vpn,
        location: this.#o.location,
        network: this.#o.network,
      } satisfies OfferData,
      {
        type: OFFER_TYPE,
        audience: nodeAudience(r.requester),
        ttlSeconds: 600,
        clock: this.#clock,
        id,
      },
    );
    this.#offered.set(id, { request: r, until: this.#now + 600 });
    this.#stats.offers++;
    await this.#send(node.vpn, upstream, { t: "offer", offer });
  }

  async #onMessage(node: VpnNode, from: string, m: Record<string, unknown>) {
    if (!node.isVerified(from)) {
      throw new TrueCloudError("Not a member", { code: "not_member" });
    }
    if (m.t === "offer" && typeof m.offer === "string") {
      return await this.#onOffer(node, from, m.offer);
    }
    if (m.t === "grant" && typeof m.grant === "string") return await this.#onGrant(m.grant);
    if (m.t === "volume" && typeof m.to === "string" && typeof m.volume === "string") {
      if (m.volume.length > 16 * 1024) {
        throw new TrueCloudError("The volume message is too long", { code: "invalid" });
      }
      if (m.to !== this.#o.identity.nodeId) {
        return await this.#deliver(nodeIdSchema.parse(m.to), {
          t: "volume",
          to: m.to,
          volume: m.volume,
        });
      }
      if (!this.#volumes) {
        throw new TrueCloudError("This node provides no volumes", { code: "no_capacity" });
      }
      return await this.#volumes.message(m.volume);
    }
    throw new TrueCloudError("Expected an offer, a grant or a volume message", { code: "invalid" });
  }

  async #onOffer(node: VpnNode, from: string, jws: string) {
    const claims = decodeJwt(jws);
    const requester = nodeIdSchema.parse(claims.aud?.toString().replace("truecloud:node:", ""));
    const v = await verifyEnvelope(jws, {
      type: OFFER_TYPE,
      audience: nodeAudience(requester),
      schema: offerDataSchema,
      what: "offer",
      clock: this.#clock,
      maxBytes: 8192,
      maxTtlSeconds: 600,
    });
    if (v.data.requester !== requester) {
      throw new TrueCloudError("The offer's requester and audience differ", { code: "invalid" });
    }
    if (requester === this.#o.identity.nodeId) {
      const p = this.#pending.get(v.data.request);
      if (!p) throw new TrueCloudError("No such open request", { code: "unknown_request" });
      if (this.#o.ledger.distrusts(v.issuer, this.#now)) {
        this.#log.info("Offer refused: its provider failed an audit", { provider: v.issuer });
        throw new TrueCloudError("This node failed an audit of the requester's in the last day", {
          code: "distrusted",
        });
      }
      this.#toward.set(v.issuer, { vpn: node.vpn, peer: from, until: this.#now + 600 });
      if (p.offers.some((o) => o.provider === v.issuer)) return { ok: true };
      p.offers.push({
        jws,
        id: v.id,
        provider: v.issuer,
        data: v.data,
        via: { vpn: node.vpn, peer: from },
      });
      if (p.offers.length >= p.want) p.wake();
      return { ok: true };
    }
    const up = this.#routes.get(v.data.request);
    if (!up) {
      throw new TrueCloudError("This node did not relay that request", { code: "unknown_request" });
    }
    this.#down.set(`${v.data.request}/${v.issuer}`, {
      vpn: node.vpn,
      peer: from,
      until: this.#now + 600,
    });
    this.#toward.set(v.issuer, { vpn: node.vpn, peer: from, until: this.#now + 600 });
    return await this.#send(up.vpn, up.peer, { t: "offer", offer: jws });
  }

  async #onGrant(jws: string) {
    const claims = decodeJwt(jws);
    const provider = nodeIdSchema.parse(claims.aud?.toString().replace("truecloud:node:", ""));
    const g = await verifyGrant(jws, provider, this.#clock);
    if (provider !== this.#o.identity.nodeId) {
      const down = this.#down.get(`${g.request}/${provider}`);
      if (down) return await this.#send(down.vpn, down.peer, { t: "grant", grant: jws });
      if (g.request === g.offer) return await this.#deliver(provider, { t: "grant", grant: jws });
      throw new TrueCloudError("No route to that provider", { code: "unknown_offer" });
    }
    const previous = g.request === g.offer ? this.#volumes?.renewal(g) : undefined;
    if (previous) return await this.#onRenewal(jws, g, previous);
    const made = this.#offered.get(g.offer);
    if (
      !made || made.request.requester !== g.consumer || made.request.id !== g.request ||
      made.request.data.kind !== g.kind || made.request.data.bytes !== g.bytes ||
      made.request.data.cpuMillicores !== g.cpuMillicores ||
      made.request.data.memoryBytes !== g.memoryBytes ||
      made.request.data.leaseSeconds !== g.leaseSeconds
    ) {
      throw new TrueCloudError("This provider made no such offer", { code: "unknown_offer" });
    }
    const contribution = await verifyContribution(g.contribution, g.consumer, this.#clock);
    const refusal = this.#refusal({ requester: g.consumer, contribution }, made.request.data);
    if (refusal) {
      this.#log.info("Grant refused", { consumer: g.consumer, ...refusal });
      return { ok: false, ...refusal };
    }
    this.#offered.delete(g.offer);
    const ack = await signAck(this.#o.identity, jws, g.leaseSeconds, this.#clock);
    const entry = await verifyAck(ack, this.#clock);
    await this.#o.ledger.record(entry);
    this.#announce(ack);
    this.#stats.grants++;
    this.#log.info("Grant made", { consumer: g.consumer, id: g.id, kind: g.kind });
    return { t: "ack", ack };
  }

  // A renewal: the same volume for a new term, counted instead of the lease it replaces.
  async #onRenewal(jws: string, g: GrantData, previous: LedgerEntry) {
    if (
      previous.consumer !== g.consumer || previous.bytes !== g.bytes || previous.kind !== g.kind ||
      previous.cpuMillicores !== g.cpuMillicores || previous.memoryBytes !== g.memoryBytes
    ) {
      throw new TrueCloudError("A renewal keeps the lease's consumer and amounts", {
        code: "invalid",
      });
    }
    const contribution = await verifyContribution(g.contribution, g.consumer, this.#clock);
    const none = { bytes: 0, cpuMillicores: 0, memoryBytes: 0 };
    const refusal = this.#refusal({ requester: g.consumer, contribution }, none);
    if (refusal) return { ok: false, ...refusal };
    const ack = await signAck(this.#o.identity, jws, g.leaseSeconds, this.#clock);
    const next = await verifyAck(ack, this.#clock);
    await this.#o.ledger.record(next);
    // The volume moves to the new lease before the old one ends, so it is never found leaseless.
    this.#volumes?.renewed(previous, next);
    await this.#o.ledger.end({
      v: 1,
      lease: previous.id,
      provider: previous.provider,
      consumer: previous.consumer,
      at: next.from,
      reason: "renewed",
    });
    this.#announce(ack);
    this.#log.info("Lease renewed", { consumer: g.consumer, volume: g.request, id: g.id });
    return { t: "ack", ack };
  }
}

function fmt(t: Totals | Entitlement): string {
  return `${t.storageBytes} B storage, ${t.cpuMillicores} mCPU, ${t.memoryBytes} B memory`;
}
