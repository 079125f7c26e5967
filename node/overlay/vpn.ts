/**
 * One management VPN as a member sees it (`docs/protocol/join.md`): a libp2p private network
 * entered only with the network key, where every peer must show a member credential signed with
 * the VPN key, checked by this member's connection gater; the roster of members, revocations, and
 * the VPN's gossipsub topics.
 *
 * @module
 */

import "./_libp2p.ts";
import { gossipsub, TopicValidatorResult } from "@libp2p/gossipsub";
import { identify } from "@libp2p/identify";
import type { Connection, Libp2p, PeerId, Stream } from "@libp2p/interface";
import { ping } from "@libp2p/ping";
import { circuitRelayServer, circuitRelayTransport } from "@libp2p/circuit-relay-v2";
import { dcutr } from "@libp2p/dcutr";
import { multiaddr } from "@multiformats/multiaddr";
import { createLibp2p } from "libp2p";
import {
  type Clock,
  discardLogger,
  type IdentityJwk,
  type Logger,
  NodeIdentity,
  systemClock,
  TrueCloudError,
  z,
} from "../../protocol/mod.ts";
import { baseConfig, libp2pKey } from "./_libp2p.ts";
import {
  CLOCK_TOLERANCE_S,
  type Credential,
  type Departure,
  mintCredential,
  mintRevocation,
  multiaddrTextSchema,
  type Revocation,
  signDeparture,
  verifyCredential,
  verifyDeparture,
  verifyRevocation,
  type VpnKeyRef,
} from "./credential.ts";
import { jsonStream, MESSAGE_DEADLINE_MS } from "./wire.ts";
import type { VpnSecret } from "./secret.ts";
import { acceptRekey, makeRekey, type Rekey, REKEY_PROTOCOL } from "./rekey.ts";

export type { Rekey } from "./rekey.ts";

/** Protocol on which members show each other their credentials. */
export const CREDENTIAL_PROTOCOL = "/truecloud/vpn/credential/1.0.0";
/** How long a peer has to show a valid credential, in milliseconds. */
export const SHOW_CREDENTIAL_MS = 10_000;
/** Most messages of a roster sent after a credential is accepted. */
const MAX_ROSTER_MESSAGES = 8;
/** Verified connections a member keeps at least, dialling members of the roster. */
const MIN_PEERS = 3;
/** How long a peer that failed to show one is denied, in milliseconds. */
export const DENY_MS = 60_000;

/** Whether a connection goes through a circuit relay. */
function isRelayed(c: Connection): boolean {
  return c.remoteAddr.toString().includes("/p2p-circuit");
}

/** The topic of a VPN's roster and revocations. */
export function membersTopic(vpn: string): string {
  return `truecloud/vpn/${vpn}/members`;
}

/** Settings of {@linkcode VpnNode.start}. */
export interface VpnNodeOptions {
  /** This node. */
  identity: NodeIdentity;
  /** The VPN's UUID. */
  vpn: string;
  /** The VPN's secret. */
  secret: VpnSecret;
  /** This node's credential. */
  credential: string;
  /** Where to listen (default: a free port on 127.0.0.1). */
  listen?: string[];
  /** Whether other members can dial this node's addresses (default true). A reachable member
   * relays for members behind NAT; an unreachable one listens through such relays and upgrades
   * relayed connections by hole punching where the NATs allow. */
  reachable?: boolean;
  /** Time source for credentials (timers are real). */
  clock?: Clock;
  /** Logger. */
  log?: Logger;
  /** How often expiry and deadlines are checked, in milliseconds (default 1000). */
  sweepMs?: number;
  /** How long a peer has to show its credential, in milliseconds (default 10 s). */
  showCredentialMs?: number;
  /** Called when another member re-keys the VPN and this node has accepted: it must move to the
   * new network (`docs/protocol/join.md`, re-key). */
  onRekey?: (r: Rekey) => void;
  /** Release attestations on member connections: this node's own (made fresh on demand), and the
   * check of a peer's (throws when it does not hold). Without it, none are shown or asked for. */
  attest?: {
    own: () => Promise<string>;
    check: (jws: string, peer: string) => Promise<void>;
  };
}

/** A member of one management VPN. */
export class VpnNode {
  /** The VPN's UUID. */
  readonly vpn: string;
  /** The VPN and its key id, as credentials are checked against. */
  readonly ref: VpnKeyRef;
  /** The libp2p node. */
  readonly libp2p: Libp2p<{ pubsub: ReturnType<ReturnType<typeof gossipsub>> }>;
  readonly #identity: NodeIdentity;
  readonly #vpnKey: NodeIdentity;
  readonly #secret: VpnSecret;
  readonly #clock: Clock;
  readonly #log: Logger;
  #credential: Credential;
  // Peers that showed a valid credential on their current connections.
  readonly #verified = new Map<string, Credential>();
  // Peers denied until a time (ms): failed to show a credential.
  readonly #denied = new Map<string, number>();
  // Connections waiting for their peer's credential, with their deadline (ms).
  readonly #pending = new Map<Connection, number>();
  readonly #roster = new Map<string, Credential>();
  readonly #revoked = new Map<string, Revocation>();
  // Members that said they left, by member: their credentials issued until `until` are void.
  readonly #departed = new Map<string, Departure>();
  // Where members say they can be reached now (relay addresses of members behind NAT, say).
  readonly #addrs = new Map<string, string[]>();
  #sweep?: ReturnType<typeof setInterval>;
  #dialling?: Promise<void>;
  // Members last dialled to keep connected (seconds), so one that does not answer waits its turn.
  readonly #lastTried = new Map<string, number>();
  #announce?: ReturnType<typeof setInterval>;
  readonly #sweepMs: number;
  readonly #showMs: number;
  readonly #attest?: VpnNodeOptions["attest"];
  readonly #onRekey?: VpnNodeOptions["onRekey"];
  #renewing = false;
  // At most one re-key per VPN key: the one this node made or accepted.
  #rekeyed = false;

  private constructor(
    opts: VpnNodeOptions,
    vpnKey: NodeIdentity,
    credential: Credential,
    libp2p: VpnNode["libp2p"],
  ) {
    this.vpn = opts.vpn;
    this.ref = { vpn: opts.vpn, keyId: vpnKey.nodeId };
    this.#identity = opts.identity;
    this.#vpnKey = vpnKey;
    this.#secret = opts.secret;
    this.#clock = opts.clock ?? systemClock;
    this.#log = opts.log ?? discardLogger;
    this.#credential = credential;
    this.libp2p = libp2p;
    this.#sweepMs = opts.sweepMs ?? 1000;
    this.#attest = opts.attest;
    this.#onRekey = opts.onRekey;
    this.#showMs = opts.showCredentialMs ?? SHOW_CREDENTIAL_MS;
  }

  /**
   * Starts this node's member of the VPN.
   * @param opts Identity, VPN, secret, credential, addresses.
   * @returns The running member.
   * @throws {SignatureError} When the node's own credential is not valid for it.
   */
  static async start(opts: VpnNodeOptions): Promise<VpnNode> {
    const vpnKey = await NodeIdentity.fromJwk(opts.secret.vpnKey as IdentityJwk);
    const clock = opts.clock ?? systemClock;
    const own = await verifyCredential(opts.credential, { vpn: opts.vpn, keyId: vpnKey.nodeId }, {
      peer: opts.identity.nodeId,
      clock,
    });
    // The gater is built before the member it asks exists.
    const holder: { self?: VpnNode } = {};
    const denied = (peer: PeerId) => holder.self?.isDenied(peer.toString()) ?? false;
    const member = (peer: PeerId) => holder.self?.isVerified(peer.toString()) ?? false;
    const reachable = opts.reachable ?? true;
    const listen = opts.listen ?? ["/ip4/127.0.0.1/tcp/0"];
    const base = baseConfig(opts.secret.networkKey);
    const services = {
      identify: identify(),
      ping: ping(),
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false }),
      dcutr: dcutr(),
      // Only members may reserve and only between members; reservations of members are not
      // limited in time or bytes: relayed members must stay full members when hole punching fails.
      ...(reachable
        ? {
          relay: circuitRelayServer({
            reservations: { applyDefaultLimit: false, maxReservations: 128 },
          }),
        }
        : {}),
    };
    const libp2p = await createLibp2p({
      privateKey: await libp2pKey(opts.identity),
      addresses: { listen: reachable ? listen : [...listen, "/p2p-circuit"] },
      ...base,
      transports: [...base.transports, circuitRelayTransport()],
      connectionGater: {
        denyInboundRelayReservation: (source: PeerId) => !member(source),
        denyOutboundRelayedConnection: (src: PeerId, dst: PeerId) => !member(src) || !member(dst),
        denyDialPeer: denied,
        denyInboundEncryptedConnection: denied,
        denyOutboundEncryptedConnection: denied,
        denyInboundUpgradedConnection: denied,
        denyOutboundUpgradedConnection: denied,
        denyInboundRelayedConnection: (_relay: PeerId, remote: PeerId) => denied(remote),
      },
      // Members are few and known; many may come from one address (a NAT, or loopback here).
      connectionManager: { inboundConnectionThreshold: 100 },
      services: services as typeof services & { relay?: unknown },
    }) as unknown as VpnNode["libp2p"];
    const self = new VpnNode(opts, vpnKey, own, libp2p);
    holder.self = self;
    await self.#wire();
    return self;
  }

  /** This node's id. */
  get nodeId(): string {
    return this.#identity.nodeId;
  }

  /** Where this member listens. */
  get addrs(): string[] {
    return this.libp2p.getMultiaddrs().map(String);
  }

  /** This node's current credential. */
  get credential(): Credential {
    return this.#credential;
  }

  /** The VPN's rules. */
  get charter(): VpnSecret["charter"] {
    return this.#secret.charter;
  }

  /** The VPN's secret (for admitting others: every member can act as guardian). */
  get secret(): VpnSecret {
    return this.#secret;
  }

  /**
   * Tells whether a peer is kept out: revoked, or failed to show a credential lately.
   * @param peer A node id.
   */
  isDenied(peer: string): boolean {
    if (this.#revoked.has(peer)) return true;
    const until = this.#denied.get(peer);
    if (until === undefined) return false;
    if (Date.now() < until) return true;
    this.#denied.delete(peer);
    return false;
  }

  /**
   * Tells whether a peer has shown a valid credential on its current connections.
   * @param peer A node id.
   */
  isVerified(peer: string): boolean {
    return this.#verified.has(peer);
  }

  /**
   * Opens a stream to a member: on a connection if there is one, else dialling the addresses its
   * credential lists.
   * @param peer The member's node id.
   * @param protocol The protocol.
   * @throws {TrueCloudError} `unreachable` when it is not a member or cannot be reached.
   */
  async openStream(peer: string, protocol: string): Promise<Stream> {
    const conn = await this.reach(peer);
    // Opening a stream is a negotiation with the member: it has a deadline like every message.
    return await conn.newStream(protocol, {
      runOnLimitedConnection: true,
      signal: AbortSignal.timeout(MESSAGE_DEADLINE_MS),
    });
  }

  /**
   * A connection to a member on which it has shown its credential: one already open (direct ones
   * first), else one dialled to where it says it is — directly, or through a relay for a member
   * behind NAT.
   * @param peer The member's node id.
   * @throws {TrueCloudError} `unreachable` when it is not a member or cannot be reached.
   */
  async reach(peer: string): Promise<Connection> {
    const open = this.libp2p.getConnections().filter((c) =>
      c.remotePeer.toString() === peer && c.status === "open"
    ).sort((a, b) => Number(isRelayed(a)) - Number(isRelayed(b)));
    if (open.length && this.#verified.has(peer)) return open[0];
    const c = this.#roster.get(peer);
    for (const addr of [...(this.#addrs.get(peer) ?? []), ...(c?.data.addrs ?? [])]) {
      try {
        return await this.connect(addr.includes("/p2p/") ? addr : `${addr}/p2p/${peer}`);
      } catch {
        // try the next address
      }
    }
    throw new TrueCloudError(`Member ${peer} cannot be reached on VPN ${this.vpn}`, {
      code: "unreachable",
      status: 504,
    });
  }

  /**
   * Pings a member over the VPN.
   * @param peer The member's node id.
   * @returns The round-trip time and whether the connection goes through a relay.
   */
  async ping(peer: string): Promise<{ rttMs: number; relayed: boolean }> {
    const conn = await this.reach(peer);
    const svc = (this.libp2p.services as unknown as {
      ping: {
        ping(p: PeerId, o?: { runOnLimitedConnection?: boolean; signal?: AbortSignal }): Promise<
          number
        >;
      };
    }).ping;
    const rttMs = await svc.ping(conn.remotePeer, {
      runOnLimitedConnection: true,
      signal: AbortSignal.timeout(10_000),
    });
    const best = this.libp2p.getConnections(conn.remotePeer).some((c) => !isRelayed(c));
    return { rttMs, relayed: !best };
  }

  /** Peers connected now that showed a valid credential. */
  verifiedPeers(): string[] {
    return [...this.#verified.keys()];
  }

  /** The roster: every member with a valid credential seen, this node included. */
  roster(): Credential[] {
    this.#expire();
    return [...this.#roster.values()];
  }

  /**
   * Mints a credential for a member (this node acting as guardian).
   * @param data Who, where.
   * @param ttlSeconds Lifetime.
   */
  async mint(
    data: Omit<Credential["data"], "v" | "vpn" | "guardian">,
    ttlSeconds?: number,
  ): Promise<string> {
    return await mintCredential(this.#vpnKey, {
      v: 1,
      vpn: this.vpn,
      guardian: this.nodeId,
      ...data,
    }, { ttlSeconds, clock: this.#clock });
  }

  /**
   * Connects to a member.
   * @param addr Its multiaddr, with `/p2p/<id>`.
   * @returns The connection, once the peer has shown a valid credential.
   * @throws {TrueCloudError} `not_member` when it does not in time.
   */
  async connect(addr: string): Promise<Connection> {
    const conn = await this.libp2p.dial(multiaddr(addr), {
      signal: AbortSignal.timeout(this.#showMs),
    });
    const peer = conn.remotePeer.toString();
    const deadline = Date.now() + this.#showMs;
    while (!this.#verified.has(peer)) {
      if (conn.status !== "open" || Date.now() > deadline) {
        throw new TrueCloudError(`${peer} did not show a valid credential`, {
          code: "not_member",
        });
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    return conn;
  }

  /**
   * Revokes a member: every member learns it, denies the member and closes its connections.
   * @param member The node id.
   * @param reason Why.
   */
  async revoke(member: string, reason: string): Promise<void> {
    const jws = await mintRevocation(this.#vpnKey, {
      v: 1,
      vpn: this.vpn,
      member,
      reason,
      by: this.nodeId,
    }, { clock: this.#clock });
    await this.#applyRevocation(jws);
    await this.#publish({ t: "revoke", revocation: jws });
  }

  /**
   * Puts a credential on the roster at once (a guardian that has just minted it, so that admissions
   * made meanwhile count the newcomer).
   * @param jws The credential.
   */
  async learn(jws: string): Promise<void> {
    this.#remember(await verifyCredential(jws, this.ref, { clock: this.#clock }));
    await this.#publish({ t: "member", credential: jws }).catch(() => {});
  }

  /**
   * Re-keys the VPN after a revocation: a new network key and VPN key, handed with a new credential
   * to every member this node reaches (the revoked one excepted), vouched for by the old key.
   * @param revoked The revoked member.
   * @returns The new secret, this node's new credential, and where members listen; the caller moves
   * this node to the new network.
   * @throws {TrueCloudError} `stale` when this VPN key has already been re-keyed.
   */
  async rekey(revoked: string): Promise<Rekey> {
    if (this.#rekeyed) {
      throw new TrueCloudError("This VPN key has already been re-keyed", { code: "stale" });
    }
    this.#rekeyed = true;
    const made = await makeRekey({
      vpn: this.vpn,
      oldKey: this.#vpnKey,
      charter: this.charter,
      revoked,
      guardian: this.nodeId,
      clock: this.#clock,
      roster: this.roster().filter((c) => c.data.member !== revoked),
      addrsOf: (id) => id === this.nodeId ? this.addrs : (this.#addrs.get(id) ?? []),
    });
    for (const peer of this.verifiedPeers()) {
      if (peer === revoked) continue;
      try {
        const stream = await this.openStream(peer, REKEY_PROTOCOL);
        const s = jsonStream(stream);
        await s.write(made.messageFor(peer));
        const a = await s.read();
        await stream.close().catch(() => {});
        if (a.ok !== true) this.#log.warn("A member refused the re-key", { peer, code: a.code });
      } catch (err) {
        this.#log.warn("A member could not be re-keyed", { peer, err: String(err) });
      }
    }
    return made.own;
  }

  async #receiveRekey(stream: Stream, conn: Connection): Promise<void> {
    const peer = conn.remotePeer.toString();
    const s = jsonStream(stream);
    try {
      if (!this.#verified.has(peer)) {
        throw new TrueCloudError("Only a member may re-key", { code: "not_member" });
      }
      const msg = await s.read();
      if (this.#rekeyed) {
        throw new TrueCloudError("This VPN key has already been re-keyed", { code: "stale" });
      }
      const r = await acceptRekey(msg, {
        ref: this.ref,
        vpn: this.vpn,
        self: this.nodeId,
        clock: this.#clock,
      });
      this.#rekeyed = true;
      await s.write({ ok: true });
      await stream.close().catch(() => {});
      this.#log.info("VPN re-keyed", { by: peer, keyId: r.keyId });
      this.#onRekey?.(r);
    } catch (err) {
      const code = err instanceof TrueCloudError ? err.code : "invalid";
      await s.write({ ok: false, code, reason: (err as Error).message }).catch(() => {});
      await stream.close().catch(() => {});
    }
  }

  /** Replaces this node's credential (after a renewal) and announces it. */
  async setCredential(jws: string): Promise<void> {
    this.#credential = await verifyCredential(jws, this.ref, {
      peer: this.nodeId,
      clock: this.#clock,
    });
    this.#roster.set(this.nodeId, this.#credential);
    await this.#publish({ t: "member", credential: jws });
  }

  /** Stops the member. */
  async stop(): Promise<void> {
    clearInterval(this.#sweep);
    clearInterval(this.#announce);
    await this.libp2p.stop();
  }

  async #wire(): Promise<void> {
    const node = this.libp2p;
    this.#roster.set(this.nodeId, this.#credential);
    await node.handle(CREDENTIAL_PROTOCOL, (stream, conn) => this.#receive(stream, conn), {
      maxInboundStreams: 4,
      runOnLimitedConnection: true,
    });
    await node.handle(REKEY_PROTOCOL, (stream, conn) => this.#receiveRekey(stream, conn), {
      maxInboundStreams: 2,
      runOnLimitedConnection: true,
    });
    // Where this member can be reached changes (a relay reservation, a new address): tell the VPN.
    let debounce: ReturnType<typeof setTimeout> | undefined;
    node.addEventListener("self:peer:update", () => {
      clearTimeout(debounce);
      debounce = setTimeout(() => void this.#announceAddrs(), 200);
    });
    node.addEventListener("connection:open", (e) => {
      const conn = e.detail;
      this.#pending.set(conn, Date.now() + this.#showMs);
      this.#show(conn).catch((err) =>
        this.#log.debug("Showing the credential failed", {
          peer: conn.remotePeer.toString(),
          err: String(err),
        })
      );
    });
    node.addEventListener("connection:close", (e) => {
      const conn = e.detail;
      this.#pending.delete(conn);
      const peer = conn.remotePeer.toString();
      if (!node.getConnections(conn.remotePeer).length) this.#verified.delete(peer);
    });
    const topic = membersTopic(this.vpn);
    const pubsub = node.services.pubsub;
    pubsub.topicValidators.set(topic, async (from, msg) => {
      // Messages carry their own proof (signed credentials, revocations, authored addresses); the
      // peer that forwards one may not have finished showing its credential yet, and refusing the
      // message then would lose it (gossip remembers it as seen). Denied peers are refused.
      if (this.isDenied(from.toString())) return TopicValidatorResult.Reject;
      try {
        await this.#onMembersMessage(
          msg.data,
          msg.type === "signed" ? msg.from.toString() : undefined,
        );
        return TopicValidatorResult.Accept;
      } catch {
        return TopicValidatorResult.Reject;
      }
    });
    pubsub.subscribe(topic);
    this.#sweep = setInterval(() => this.#sweepNow(), this.#sweepMs);
    this.#announce = setInterval(() => {
      this.#publish({ t: "member", credential: this.#credential.jws }).catch(() => {});
      void this.#announceAddrs();
    }, 10 * 60_000);
  }

  async #publish(message: Record<string, unknown>): Promise<void> {
    await this.libp2p.services.pubsub.publish(
      membersTopic(this.vpn),
      new TextEncoder().encode(JSON.stringify(message)),
    );
  }

  async #announceAddrs(): Promise<void> {
    await this.#publish({ t: "addrs", member: this.nodeId, addrs: this.addrs.slice(0, 16) })
      .catch(() => {});
  }

  async #onMembersMessage(data: Uint8Array, author?: string): Promise<void> {
    if (data.length > 16 * 1024) throw new Error("too large");
    const msg = JSON.parse(new TextDecoder().decode(data)) as Record<string, unknown>;
    if (msg.t === "addrs") {
      // Only its author speaks for where a member is (gossipsub signs every message).
      const addrs = z.array(multiaddrTextSchema).max(16).parse(msg.addrs);
      if (!author || msg.member !== author || !this.#roster.has(author)) {
        throw new Error("not its own");
      }
      this.#addrs.set(author, addrs);
      return;
    }
    if (msg.t === "member" && typeof msg.credential === "string") {
      const c = await verifyCredential(msg.credential, this.ref, { clock: this.#clock });
      if (this.#isRevoked(c)) throw new Error("revoked");
      this.#remember(c);
    } else if (msg.t === "revoke" && typeof msg.revocation === "string") {
      await this.#applyRevocation(msg.revocation);
    } else if (msg.t === "leave" && typeof msg.departure === "string") {
      await this.#applyDeparture(msg.departure);
    } else {
      throw new Error("unknown message");
    }
  }

  #remember(c: Credential): void {
    const had = this.#roster.get(c.data.member);
    if (!had || had.expiresAt < c.expiresAt) this.#roster.set(c.data.member, c);
  }

  // Revoked, or issued before its member said it left.
  #isRevoked(c: Credential): boolean {
    const r = this.#revoked.get(c.data.member);
    const d = this.#departed.get(c.data.member);
    return (!!r && c.issuedAt <= r.issuedAt) || (!!d && c.issuedAt <= d.until);
  }

  async #applyDeparture(jws: string): Promise<void> {
    const d = await verifyDeparture(jws, this.vpn, this.#clock);
    if (d.member === this.nodeId) return; // this node's own, heard back: it is leaving
    const had = this.#departed.get(d.member);
    if (had && had.until >= d.until) return;
    this.#departed.set(d.member, d);
    const c = this.#roster.get(d.member);
    if (c && this.#isRevoked(c)) {
      this.#roster.delete(d.member);
      this.#addrs.delete(d.member);
      this.#log.info("Member left", { member: d.member });
    }
  }

  /**
   * Says on the members topic that this node leaves the VPN (`docs/protocol/join.md`), so that the
   * others take it off their rosters at once; the caller stops the node afterwards.
   */
  async depart(): Promise<void> {
    const departure = await signDeparture(
      this.#identity,
      this.vpn,
      this.#credential.issuedAt,
      this.#clock,
    );
    // Members just connected may not have told their subscriptions yet: wait for them, briefly.
    const pubsub = this.libp2p.services.pubsub;
    for (let i = 0; i < 20 && this.verifiedPeers().length; i++) {
      if (pubsub.getSubscribers(membersTopic(this.vpn)).length) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    await this.#publish({ t: "leave", departure }).catch(() => {});
    // Gossip sends at once, but the bytes must leave before the connections close.
    await new Promise((r) => setTimeout(r, 250));
  }

  async #applyRevocation(jws: string): Promise<void> {
    const r = await verifyRevocation(jws, this.ref, this.#clock);
    const had = this.#revoked.get(r.data.member);
    if (!had || had.issuedAt < r.issuedAt) this.#revoked.set(r.data.member, r);
    const member = r.data.member;
    const c = this.#roster.get(member);
    if (c && this.#isRevoked(c)) this.#roster.delete(member);
    this.#verified.delete(member);
    for (const conn of this.libp2p.getConnections()) {
      if (conn.remotePeer.toString() === member) await conn.close().catch(() => {});
    }
    this.#log.info("Member revoked", { member, reason: r.data.reason, by: r.data.by });
  }

  async #show(conn: Connection): Promise<void> {
    const stream = await conn.newStream(CREDENTIAL_PROTOCOL, {
      runOnLimitedConnection: true,
      signal: AbortSignal.timeout(MESSAGE_DEADLINE_MS),
    });
    const s = jsonStream(stream);
    await s.write({
      t: "credential",
      credential: this.#credential.jws,
      ...(this.#attest ? { attestation: await this.#attest.own() } : {}),
    });
    const answer = await s.read();
    if (answer.ok !== true) {
      await stream.close().catch(() => {});
      this.#log.warn("A peer refused our credential", {
        peer: conn.remotePeer.toString(),
        code: String(answer.code),
      });
      return;
    }
    // Then the peer's roster and revocations, each entry checked on its own.
    for (let i = 0; i < MAX_ROSTER_MESSAGES; i++) {
      const m = await s.read();
      const list = Array.isArray(m.credentials) ? m.credentials.slice(0, 256) : [];
      for (const jws of list) {
        if (typeof jws !== "string") continue;
        try {
          const c = await verifyCredential(jws, this.ref, { clock: this.#clock });
          if (!this.#isRevoked(c)) this.#remember(c);
        } catch {
          // a stale or bad entry: skip it
        }
      }
      if (m.t === "end") {
        const revocations = Array.isArray(m.revocations) ? m.revocations.slice(0, 256) : [];
        for (const jws of revocations) {
          if (typeof jws === "string") await this.#applyRevocation(jws).catch(() => {});
        }
        const departures = Array.isArray(m.departures) ? m.departures.slice(0, 256) : [];
        for (const jws of departures) {
          if (typeof jws === "string") await this.#applyDeparture(jws).catch(() => {});
        }
        break;
      }
    }
    await stream.close().catch(() => {});
  }

  // The roster as messages of at most about 48 KiB each, the last one carrying the revocations.
  #rosterMessages(): Record<string, unknown>[] {
    const out: Record<string, unknown>[] = [];
    let chunk: string[] = [];
    let size = 0;
    for (const c of this.roster()) {
      if (size + c.jws.length > 48 * 1024) {
        out.push({ t: "roster", credentials: chunk });
        chunk = [];
        size = 0;
      }
      chunk.push(c.jws);
      size += c.jws.length;
    }
    out.push({ t: "roster", credentials: chunk });
    out.push({
      t: "end",
      revocations: [...this.#revoked.values()].map((r) => r.jws),
      // The newest 64 (about 26 KiB): older ones have long reached the members that were there.
      departures: [...this.#departed.values()].sort((a, b) => b.until - a.until).slice(0, 64)
        .map((d) => d.jws),
    });
    return out.slice(-MAX_ROSTER_MESSAGES);
  }

  async #receive(stream: Stream, conn: Connection): Promise<void> {
    const peer = conn.remotePeer.toString();
    const s = jsonStream(stream);
    try {
      const msg = await s.read();
      if (msg.t !== "credential" || typeof msg.credential !== "string") {
        throw new TrueCloudError("Expected a credential", { code: "malformed" });
      }
      const c = await verifyCredential(msg.credential, this.ref, {
        peer,
        clock: this.#clock,
      });
      if (this.#isRevoked(c)) throw new TrueCloudError("Credential revoked", { code: "revoked" });
      if (this.#attest) {
        if (typeof msg.attestation !== "string") {
          throw new TrueCloudError("A release attestation is needed", { code: "attestation" });
        }
        try {
          await this.#attest.check(msg.attestation, peer);
        } catch (err) {
          throw new TrueCloudError((err as Error).message, { code: "attestation" });
        }
      }
      this.#verified.set(peer, c);
      this.#remember(c);
      for (const [pc] of this.#pending) {
        if (pc.remotePeer.toString() === peer) this.#pending.delete(pc);
      }
      await s.write({ ok: true });
      for (const m of this.#rosterMessages()) await s.write(m);
      await stream.close().catch(() => {});
    } catch (err) {
      const code = err instanceof TrueCloudError ? err.code : "malformed";
      await s.write({ ok: false, code, reason: (err as Error).message }).catch(() => {});
      this.#log.warn("Peer kept out", { peer, code, reason: (err as Error).message });
      await this.#keepOut(peer);
    }
  }

  async #keepOut(peer: string): Promise<void> {
    this.#denied.set(peer, Date.now() + DENY_MS);
    this.#verified.delete(peer);
    for (const conn of this.libp2p.getConnections()) {
      if (conn.remotePeer.toString() === peer) await conn.close().catch(() => {});
    }
  }

  // Seconds since the epoch, less the clock skew members tolerate: what is expired before it, is.
  #now(): number {
    return this.#clock.now() / 1000 - CLOCK_TOLERANCE_S;
  }

  #expire(): void {
    const now = this.#now();
    for (const [id, c] of this.#roster) {
      if (c.expiresAt <= now && id !== this.nodeId) this.#roster.delete(id);
    }
    for (const [id, r] of this.#revoked) if (r.expiresAt <= now) this.#revoked.delete(id);
    for (const [id, d] of this.#departed) if (d.expiresAt <= now) this.#departed.delete(id);
  }

  // Past half its life, a member's credential is renewed: every member holds the VPN key, so it
  // mints its own (asking another member would add nothing) and announces it.
  async #renewIfDue(): Promise<void> {
    const c = this.#credential;
    const now = this.#clock.now() / 1000;
    if (this.#renewing || now < c.issuedAt + (c.expiresAt - c.issuedAt) / 2) return;
    this.#renewing = true;
    try {
      const { member, location, network, addrs } = c.data;
      const jws = await this.mint({ member, location, network, addrs });
      await this.setCredential(jws);
      this.#log.info("Credential renewed", { until: new Date(this.#credential.expiresAt * 1000) });
    } catch (err) {
      this.#log.warn("Credential renewal failed", { err: String(err) });
    } finally {
      this.#renewing = false;
    }
  }

  #sweepNow(): void {
    void this.#renewIfDue();
    this.#expire();
    const now = this.#now();
    for (const [peer, c] of this.#verified) {
      const newer = this.#roster.get(peer);
      if (newer && newer.expiresAt > c.expiresAt) this.#verified.set(peer, newer);
      else if (c.expiresAt <= now) {
        this.#log.info("Peer's credential expired", { peer });
        void this.#keepOut(peer);
      }
    }
    for (const [conn, deadline] of this.#pending) {
      if (Date.now() > deadline) {
        this.#pending.delete(conn);
        const peer = conn.remotePeer.toString();
        if (!this.#verified.has(peer)) void this.#keepOut(peer);
      }
    }
    this.#keepConnected();
  }

  // A member whose peers went away would hear no gossip until someone dials it: it keeps a few
  // connections, dialling members of the roster it is not connected to, one at a time.
  #keepConnected(): void {
    if (this.#dialling || this.#verified.size >= MIN_PEERS) return;
    const now = this.#now();
    const candidates = [...this.#roster.keys()].filter((p) =>
      p !== this.nodeId && !this.#verified.has(p) && !this.isDenied(p) &&
      !this.#revoked.has(p) && (this.#lastTried.get(p) ?? 0) < now - 30
    );
    if (!candidates.length) return;
    const peer = candidates[Math.floor(Math.random() * candidates.length)];
    this.#lastTried.set(peer, now);
    this.#dialling = this.reach(peer).then(() => {}, () => {}).finally(() => {
      this.#dialling = undefined;
    });
  }
}
