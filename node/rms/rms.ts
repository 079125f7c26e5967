/**
 * The Resource Management Service of a node agent: it keeps the node in 1 to 4 management VPNs,
 * joining through guest networks found by discovery (one guest connection at a time, trying other
 * records when one fails), founds a VPN when asked, and acts as a guardian of every VPN it is in
 * when it has an address others can reach: a guest network, and a discovery record that solicits
 * while the VPN has room and is withdrawn when it is full (`docs/protocol/join.md`).
 *
 * @module
 */

import { readFeed, RecordPublisher } from "../../discovery/mod.ts";
import {
  type Clock,
  discardLogger,
  type Logger,
  NodeIdentity,
  shuffled,
  systemClock,
  toHex,
  TrueCloudError,
} from "../../protocol/mod.ts";
import {
  type Charter,
  defaultCharter,
  foundVpn,
  GuestServer,
  type Rekey,
  requestJoin,
  vpnCredential,
  VpnNode,
  type VpnSecret,
} from "../overlay/mod.ts";
import {
  mintAttestation,
  type ReleaseCatalog,
  type ReleaseClaim,
  verifyAttestation,
} from "./attestation.ts";
import { type BlockStore, Catalogue, type CID } from "../../cdn/mod.ts";
import { allowance, Broadcaster } from "./broadcast.ts";
import { CdnNode } from "./cdn_node.ts";
import {
  type Contribution,
  type ContributionConfig,
  type Entitlement,
  entitlementOf,
  measureContribution,
  signContribution,
} from "./contribution.ts";
import { guardianDecider } from "./guardian.ts";
import { Ledger, type Totals } from "./ledger.ts";
import { BandwidthProbe } from "./probe.ts";

/**
 * After a burst of traffic (joining, a bandwidth probe), collects what it left behind: V8 would keep
 * those buffers for long on a node that then idles. Only when the agent runs with `--expose-gc`, as
 * shipped (a node meant to run in 100 MB).
 */
function collectAfterBurst(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/** How long a node that left a VPN on purpose stays out of it (ms). */
export const REJOIN_AFTER_LEAVE_MS = 3600_000;

/** Settings of {@linkcode Rms.start}. */
export interface RmsOptions {
  /** This node. */
  identity: NodeIdentity;
  /** The UUID of its geographic location. */
  location: string;
  /** The UUID of its network endpoint. */
  network: string;
  /** How many management VPNs to hold, 1 to 4 (default 2). */
  maxVpns?: number;
  /** The release this node runs (its attestation says so). */
  release: ReleaseClaim;
  /** The current releases, for judging newcomers' attestations. */
  releases: () => ReleaseCatalog;
  /** The discovery feed's URL. */
  feedUrl: string;
  /** Discovery endpoints to publish records to (`…/discovery`). */
  endpoints: readonly string[];
  /** Fetch for discovery (one that trusts the gateway's certificate). */
  fetch?: typeof fetch;
  /** Accept private addresses in records (the local cloud). */
  allowPrivateAddresses?: boolean;
  /** The address to listen on (default 127.0.0.1). */
  host?: string;
  /** Whether others can reach this node's address, so that it acts as a guardian (default true). */
  reachable?: boolean;
  /** New guest connections taken per second from one IP address (default 5). */
  guestPerAddressPerSecond?: number;
  /** Nodes this node refuses as guardian. */
  refused?: ReadonlySet<string>;
  /** What this node lends. */
  contribution: ContributionConfig;
  /** Deno KV path of the ledger (default: in memory). */
  ledgerPath?: string;
  /** Bytes of the lent disk held for the cloud outside grants (default: what `cdnStore` holds). */
  held?: () => number;
  /** The node's CDN store: it holds the objects placement gives it and serves their blocks. */
  cdnStore?: BlockStore;
  /** Deno KV path of the node's CDN catalogue (default: in memory). */
  cataloguePath?: string;
  /** Time between CDN repair rounds, in milliseconds (default 10 s). */
  cdnRepairMs?: number;
  /** Time between audits of other CDN holders, in milliseconds (default a minute). */
  cdnAuditMs?: number;
  /** Whether this node serves a request it is asked (default: every one within fair use). */
  willServe?: ConstructorParameters<typeof Broadcaster>[0]["willServe"];
  /** Time between attempts to fill up to `maxVpns`, in milliseconds (default 5 s). */
  retryMs?: number;
  /** Time source. */
  clock?: Clock;
  /** Logger. */
  log?: Logger;
}

/** One VPN this node is in. */
export interface Membership {
  /** The VPN's UUID. */
  vpn: string;
  /** The member. */
  node: VpnNode;
  /** Its guest network, when this node is a guardian. */
  guest?: GuestServer;
  /** The guest key it advertises. */
  guestKey?: string;
  /** Whether its record is soliciting now. */
  soliciting: boolean;
  /** Keeps the record in step with the roster. */
  timer?: ReturnType<typeof setInterval>;
}

/** A VPN as `status` shows it. */
export interface VpnStatus {
  vpn: string;
  members: number;
  maxMembers: number;
  connected: number;
  guardian: boolean;
  soliciting: boolean;
  credentialExpires: string;
}

/** A node's resources as `deno task node entitlement` shows them. */
export interface EntitlementStatus {
  contribution: Contribution;
  entitlement: Entitlement;
  /** What it may hold in grants: storage counted raw, × 8/5 for a pool's parity. */
  allowance: Entitlement;
  use: Totals;
  given: Totals;
  /** Bytes of the lent disk held for the cloud outside grants (the CDN store). */
  held: number;
}

/** The RMS of one node. */
export class Rms {
  /** Requests, offers and grants. */
  readonly broadcaster: Broadcaster;
  /** Every grant made, received or seen. */
  readonly ledger: Ledger;
  /** The node's part in the CDN. */
  readonly cdn: CdnNode;
  readonly #o: RmsOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #vpns = new Map<string, Membership>();
  /** VPNs this node is moving to new keys: still held, though between networks. */
  readonly #moving = new Set<string>();
  readonly #publisher: RecordPublisher;
  readonly #tried = new Map<string, number>(); // record key -> when it last failed (ms)
  // VPNs this node left on purpose, with when it may join them again (ms): not at the next pass.
  readonly #left = new Map<string, number>();
  #timer?: ReturnType<typeof setInterval>;
  #filling?: Promise<void>;
  #stopped = false;
  readonly #onStop: (() => Promise<void>)[] = [];
  #statement: { jws: string; data: Contribution; at: number };
  #attested?: { jws: string; at: number };
  readonly #probe: BandwidthProbe;
  // The last measurement of the upload bandwidth (bytes per second), and when it was made (ms).
  #bandwidth?: { bps: number; at: number; count: number };
  #measuring = false;
  #measureTried = 0; // when a measurement last found no member to answer (ms): 15 s till the next

  private constructor(
    o: RmsOptions,
    ledger: Ledger,
    catalogue: Catalogue,
    statement: { jws: string; data: Contribution; at: number },
  ) {
    this.ledger = ledger;
    this.#probe = new BandwidthProbe((o.log ?? discardLogger).child("probe"));
    this.cdn = new CdnNode({
      identity: o.identity,
      catalogue,
      store: o.cdnStore,
      repairMs: o.cdnRepairMs,
      auditMs: o.cdnAuditMs,
      onAudit: (r) => ledger.audited(r),
      clock: o.clock,
      log: (o.log ?? discardLogger).child("cdn"),
    });
    this.#statement = statement;
    const max = o.maxVpns ?? 2;
    if (!Number.isInteger(max) || max < 1 || max > 4) {
      throw new TrueCloudError("A node holds 1 to 4 management VPNs", { code: "invalid" });
    }
    this.#o = { ...o, held: o.held ?? (o.cdnStore && (() => o.cdnStore!.used)) };
    this.#log = o.log ?? discardLogger;
    this.#clock = o.clock ?? systemClock;
    this.#publisher = new RecordPublisher({
      guardian: o.identity,
      endpoints: o.endpoints,
      fetch: o.fetch,
      clock: o.clock,
      log: this.#log.child("discovery"),
    });
    this.broadcaster = new Broadcaster({
      identity: o.identity,
      ledger,
      contribution: () => this.#statement,
      location: o.location,
      network: o.network,
      willServe: o.willServe,
      held: this.#o.held,
      clock: o.clock,
      log: this.#log.child("broadcast"),
    });
  }

  /**
   * Starts the RMS: measures what the node lends, opens the ledger, and tries to fill its VPNs
   * every `retryMs`.
   * @param o Settings.
   */
  static async start(o: RmsOptions): Promise<Rms> {
    const data = await measureContribution(o.contribution);
    const jws = await signContribution(o.identity, data, o.clock);
    const ledger = await Ledger.open(o.ledgerPath ?? ":memory:");
    // A publisher is a member when it is on the roster of a VPN this node is in.
    const self: { rms?: Rms } = {};
    const catalogue = await Catalogue.open(o.cataloguePath ?? ":memory:", {
      isMember: (id) =>
        !!self.rms?.memberships().some((m) => m.node.roster().some((c) => c.data.member === id)),
      has: o.cdnStore && ((cid) => o.cdnStore!.has(cid)),
      clock: o.clock,
    });
    const rms = new Rms(o, ledger, catalogue, { jws, data, at: Date.now() });
    self.rms = rms;
    rms.cdn.start();
    rms.#timer = setInterval(() => {
      void rms.fill();
      void rms.#refreshStatement();
      void rms.#measureBandwidth();
    }, o.retryMs ?? 5000);
    return rms;
  }

  /** What this node lends, may take, takes and gives. */
  entitlement(): EntitlementStatus {
    const now = Math.floor(this.#clock.now() / 1000);
    const c = this.#statement.data;
    return {
      contribution: c,
      entitlement: entitlementOf(c),
      allowance: allowance(c),
      use: this.ledger.use(this.nodeId, now),
      given: this.ledger.given(this.nodeId, now),
      held: this.#o.held?.() ?? 0,
    };
  }

  // An attestation lives a day: a fresh one is signed every twelve hours.
  async #attestation(): Promise<string> {
    if (!this.#attested || Date.now() - this.#attested.at > 12 * 3600_000) {
      const jws = await mintAttestation(this.#o.identity, this.#o.release, this.#clock);
      this.#attested = { jws, at: Date.now() };
    }
    return this.#attested.jws;
  }

  // The statement lives a day: it is measured and signed again every twelve hours.
  async #refreshStatement(force = false): Promise<void> {
    if (!force && Date.now() - this.#statement.at < 12 * 3600_000) return;
    const data = await measureContribution(this.#o.contribution, this.#bandwidth?.bps);
    const jws = await signContribution(this.#o.identity, data, this.#o.clock);
    this.#statement = { jws, data, at: Date.now() };
  }

  // Upload bandwidth, measured against members once the node holds a VPN, again 10 minutes later
  // (the first one often comes while the node is busy joining), then every 6 hours; the statement
  // is signed again with it.
  async #measureBandwidth(): Promise<void> {
    if (this.#measuring || this.#stopped || !this.#vpns.size) return;
    const b = this.#bandwidth;
    if (b && Date.now() - b.at < (b.count === 1 ? 600_000 : 6 * 3600_000)) return;
    if (Date.now() - this.#measureTried < 15_000) return;
    this.#measuring = true;
    try {
      const bps = await this.#probe.measure([...this.#vpns.values()].map((m) => m.node));
      if (bps === undefined) {
        this.#measureTried = Date.now();
        return;
      }
      collectAfterBurst();
      if (this.#stopped) return;
      this.#bandwidth = { bps, at: Date.now(), count: (b?.count ?? 0) + 1 };
      await this.#refreshStatement(true);
      this.#log.info("Upload bandwidth measured", { bps });
    } finally {
      this.#measuring = false;
    }
  }

  /**
   * Runs `f` first when the RMS stops (the node's Volume Provider and file system stop with it).
   * @param f What to stop.
   */
  onStop(f: () => Promise<void>): void {
    this.#onStop.push(f);
  }

  /** Whether the node has been stopped. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** This node's id. */
  get nodeId(): string {
    return this.#o.identity.nodeId;
  }

  /** The most VPNs this node holds. */
  get maxVpns(): number {
    return this.#o.maxVpns ?? 2;
  }

  /** The VPNs this node is in. */
  memberships(): Membership[] {
    return [...this.#vpns.values()];
  }

  /** The VPNs as the node's status shows them. */
  status(): VpnStatus[] {
    return this.memberships().map((m) => ({
      vpn: m.vpn,
      members: m.node.roster().length,
      maxMembers: m.node.charter.maxMembers,
      connected: m.node.verifiedPeers().length,
      guardian: !!m.guest,
      soliciting: m.soliciting,
      credentialExpires: new Date(m.node.credential.expiresAt * 1000).toISOString(),
    }));
  }

  /**
   * Founds a new VPN, with this node as its first member and guardian.
   * @param charter Its rules.
   * @returns Its UUID.
   */
  async found(charter: Charter = defaultCharter()): Promise<string> {
    if (this.#held() >= this.maxVpns) {
      throw new TrueCloudError(`This node already holds ${this.maxVpns} VPNs`, { code: "full" });
    }
    const vpn = crypto.randomUUID();
    const secret = await foundVpn(charter);
    const port = freePort(this.#host);
    const credential = await vpnCredential(secret, vpn, this.nodeId, {
      location: this.#o.location,
      network: this.#o.network,
      addrs: [`/ip4/${this.#host}/tcp/${port}`],
    });
    await this.#enter(vpn, secret, credential, [], port);
    this.#log.info("VPN founded", { vpn });
    return vpn;
  }

  /**
   * One pass of joining: reads the feed and tries soliciting records of VPNs this node is not in,
   * one guest connection at a time, until it holds `maxVpns` or runs out of records.
   * @returns How many VPNs it joined.
   */
  fill(): Promise<number> {
    if (this.#filling) return this.#filling.then(() => 0);
    const run = this.#fillOnce().finally(() => (this.#filling = undefined));
    this.#filling = run.then(() => {});
    return run;
  }

  /**
   * Reads a CDN object from this node's store or the members that hold it, over this node's VPNs
   * (members-only content included), every block checked against its CID.
   * @param cid The object.
   * @returns Its bytes, streamed.
   * @throws {BlockNotFoundError} When no member reachable holds a block.
   */
  readCdn(cid: CID): AsyncGenerator<Uint8Array> {
    return this.cdn.read(cid);
  }

  /**
   * Revokes a member of a VPN and re-keys the VPN: every member learns of the revocation, the members
   * this node reaches get the new keys, and this node moves to the new network.
   * @param vpn The VPN.
   * @param member The member to revoke.
   * @param reason Why.
   */
  async revoke(vpn: string, member: string, reason: string): Promise<void> {
    const m = this.#vpns.get(vpn);
    if (!m) throw new TrueCloudError(`Not in VPN ${vpn}`, { code: "not_found", status: 404 });
    if (member === this.nodeId) {
      throw new TrueCloudError("A node does not revoke itself; it leaves", { code: "invalid" });
    }
    await m.node.revoke(member, reason);
    await this.#move(vpn, await m.node.rekey(member));
  }

  // Leaves the old network of a VPN for its new one after a re-key, on the same address.
  async #move(vpn: string, r: Rekey): Promise<void> {
    const m = this.#vpns.get(vpn);
    if (!m || this.#stopped) return;
    // Held all the while: joining it (or another VPN in its place) through a guest network now
    // would hand this node the old keys again, from a guardian that has not moved (or was revoked).
    this.#moving.add(vpn);
    try {
      await this.#moveOnce(vpn, m, r);
    } finally {
      this.#moving.delete(vpn);
    }
  }

  async #moveOnce(vpn: string, m: Membership, r: Rekey): Promise<void> {
    this.#log.info("Moving to the VPN's new keys", { vpn, keyId: r.keyId });
    this.#vpns.delete(vpn);
    this.broadcaster.detach(vpn);
    this.cdn.detach(vpn);
    clearInterval(m.timer);
    await m.guest?.stop();
    const own = m.node.credential.data.addrs[0] ?? "";
    await m.node.stop();
    const port = Number(/\/tcp\/(\d+)/.exec(own)?.[1]) || freePort(this.#host);
    try {
      const peers = r.members.filter((x) => x.id !== this.nodeId).flatMap((x) =>
        x.addrs.map((a) => a.includes("/p2p/") ? a : `${a}/p2p/${x.id}`)
      );
      await this.#enter(vpn, r.secret, r.credential, peers, port, true);
      this.#log.info("Moved to the VPN's new keys", { vpn, keyId: r.keyId });
    } catch (err) {
      this.#log.warn("Could not enter the re-keyed VPN", { vpn, err: String(err) });
    }
  }

  /**
   * Leaves a VPN: says so to its members (who take this node off their rosters), withdraws this
   * node's record, stops its guest network and its member, and does not join that VPN again for an
   * hour. A stopping node leaves every VPN: agents do not keep memberships across restarts.
   * @param vpn The VPN's UUID.
   */
  async leave(vpn: string): Promise<void> {
    const m = this.#vpns.get(vpn);
    if (!m) throw new TrueCloudError(`Not in VPN ${vpn}`, { code: "not_found", status: 404 });
    this.#vpns.delete(vpn);
    this.#left.set(vpn, Date.now() + REJOIN_AFTER_LEAVE_MS);
    await m.node.depart().catch((err) =>
      this.#log.warn("Could not announce the departure", { vpn, err: String(err) })
    );
    this.broadcaster.detach(vpn);
    this.cdn.detach(vpn);
    clearInterval(m.timer);
    if (m.guest) {
      await this.#publisher.withdraw(vpn, "closing").catch(() => {});
      await m.guest.stop();
    }
    await m.node.stop();
    this.#log.info("Left VPN", { vpn });
  }

  /** Stops everything. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const f of this.#onStop.splice(0)) await f().catch(() => {});
    clearInterval(this.#timer);
    await this.#filling?.catch(() => {});
    await this.cdn.stop();
    for (const vpn of [...this.#vpns.keys()]) await this.leave(vpn);
    this.#publisher.stop();
    this.ledger.close();
    this.cdn.catalogue.close();
  }

  // How many VPNs this node holds, those it is moving included.
  #held(): number {
    return new Set([...this.#vpns.keys(), ...this.#moving]).size;
  }

  #holds(vpn: string): boolean {
    return this.#vpns.has(vpn) || this.#moving.has(vpn);
  }

  get #host(): string {
    return this.#o.host ?? "127.0.0.1";
  }

  async #fillOnce(): Promise<number> {
    let joined = 0;
    if (this.#stopped || this.#held() >= this.maxVpns) return 0;
    let records;
    try {
      const f = this.#o.fetch ?? fetch;
      const res = await f(this.#o.feedUrl, { signal: AbortSignal.timeout(15_000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      records = (await readFeed(await res.text(), {
        clock: this.#clock,
        allowPrivateAddresses: this.#o.allowPrivateAddresses,
      })).records;
    } catch (err) {
      this.#log.warn("Cannot read the discovery feed", { err: String(err) });
      return 0;
    }
    const now = Date.now();
    const candidates = shuffled(
      records
        .filter((r) => !this.#holds(r.data.vpn) && r.guardian !== this.nodeId)
        .filter((r) => (this.#left.get(r.data.vpn) ?? 0) < now)
        .filter((r) => now - (this.#tried.get(`${r.data.vpn}/${r.guardian}`) ?? 0) > 30_000),
    );
    for (const r of candidates) {
      if (this.#stopped || this.#held() >= this.maxVpns) break;
      if (this.#holds(r.data.vpn)) continue;
      const key = `${r.data.vpn}/${r.guardian}`;
      try {
        if (
          await this.#join(r.data.vpn, r.guardian, r.data.ips, r.data.guestPort, r.data.guestKey)
        ) {
          joined++;
        } else this.#tried.set(key, Date.now());
      } catch (err) {
        this.#tried.set(key, Date.now());
        this.#log.warn("Joining failed", {
          vpn: r.data.vpn,
          guardian: r.guardian,
          err: String(err),
        });
      }
    }
    return joined;
  }

  // One guest connection: returns whether the node was admitted.
  async #join(
    vpn: string,
    guardian: string,
    ips: string[],
    guestPort: number,
    guestKey: string,
  ): Promise<boolean> {
    const port = freePort(this.#host);
    const ip = ips[0];
    const addr = ip.includes(":") ? `/ip6/${ip}/tcp/${guestPort}` : `/ip4/${ip}/tcp/${guestPort}`;
    const outcome = await requestJoin(this.#o.identity, { vpn, guardian, addr, guestKey }, {
      location: this.#o.location,
      network: this.#o.network,
      addrs: this.#o.reachable === false ? [] : [`/ip4/${this.#host}/tcp/${port}`],
      attestation: await this.#attestation(),
    }, { clock: this.#clock });
    if (!outcome.admitted) {
      this.#log.info("Refused by a guardian", {
        vpn,
        guardian,
        code: outcome.refusal.code,
        reason: outcome.refusal.reason,
      });
      return false;
    }
    const a = outcome.admission;
    await this.#enter(vpn, a.secret, a.credential, a.members.flatMap((m) => m.addrs), port);
    this.#log.info("Joined VPN", { vpn, guardian });
    collectAfterBurst();
    return true;
  }

  async #enter(
    vpn: string,
    secret: VpnSecret,
    credential: string,
    peers: string[],
    port: number,
    moving = false,
  ): Promise<void> {
    const start = (listenPort: number) =>
      VpnNode.start({
        identity: this.#o.identity,
        vpn,
        secret,
        credential,
        listen: [`/ip4/${this.#host}/tcp/${listenPort}`],
        reachable: this.#o.reachable,
        // Members check each other's release on every connection, as guardians do at the door.
        attest: {
          own: () => this.#attestation(),
          check: async (jws, peer) => {
            await verifyAttestation(jws, peer, this.#o.releases(), this.#clock);
          },
        },
        clock: this.#o.clock,
        log: this.#log.child(`vpn ${vpn.slice(0, 8)}`),
        // Another member re-keyed the VPN: move to the new network, once this handler has answered.
        onRekey: (r) => setTimeout(() => void this.#move(vpn, r), 0),
      });
    let node: VpnNode;
    try {
      node = await start(port);
    } catch (err) {
      // The port picked ahead (it is in this node's credential) was taken meanwhile: listen on any
      // other; members learn the address from this node's announcements.
      const e = err as Error;
      if (e?.name !== "UnsupportedListenAddressesError" && !/EADDRINUSE/.test(String(e))) throw err;
      node = await start(0);
    }
    const m: Membership = { vpn, node, soliciting: false };
    let connected = 0;
    for (const p of peers.slice(0, 8)) {
      try {
        await node.connect(p);
        connected++;
      } catch (err) {
        this.#log.debug("Member unreachable", { addr: p, err: String(err) });
      }
    }
    if (moving) {
      // Members move to the new keys one after another: reach those not there yet a little later.
      for (const ms of [500, 2000, 5000]) {
        setTimeout(() => {
          if (this.#vpns.get(vpn)?.node !== node) return;
          for (const p of peers.slice(0, 8)) {
            const id = p.split("/p2p/").pop() ?? "";
            if (!node.isVerified(id)) node.connect(p).catch(() => {});
          }
        }, ms);
      }
    } else if (peers.length && !connected) {
      await node.stop();
      throw new TrueCloudError("No member of the VPN could be reached", { code: "unreachable" });
    }
    // A member only once it is connected: `memberships()` never shows one half-entered.
    this.#vpns.set(vpn, m);
    await this.broadcaster.attach(node);
    await this.cdn.attach(node);
    await this.#probe.attach(node);
    await node.setCredential(credential); // announces this node on the roster
    if (this.#o.reachable !== false) await this.#guard(m);
  }

  // Runs the guest network and keeps the record in step with the roster.
  async #guard(m: Membership): Promise<void> {
    m.guestKey = toHex(crypto.getRandomValues(new Uint8Array(32)));
    m.guest = await GuestServer.start({
      identity: this.#o.identity,
      vpn: m.vpn,
      guestKey: m.guestKey,
      listen: [`/ip4/${this.#host}/tcp/0`],
      decide: guardianDecider(m.node, {
        releases: (target) => this.#o.releases()(target),
        refused: this.#o.refused,
        clock: this.#o.clock,
      }),
      perAddressPerSecond: this.#o.guestPerAddressPerSecond,
      clock: this.#o.clock,
      log: this.#log.child("guest"),
    });
    const check = async () => {
      if (!this.#vpns.has(m.vpn) || this.#stopped) return;
      const full = m.node.roster().length >= m.node.charter.maxMembers;
      if (full && m.soliciting) {
        await this.#publisher.withdraw(m.vpn, "full");
        m.soliciting = false;
        this.#log.info("VPN full: record withdrawn", { vpn: m.vpn });
      } else if (!full && !m.soliciting) {
        const port = Number(m.guest!.addrs[0].match(/\/tcp\/(\d+)/)![1]);
        await this.#publisher.solicit({
          v: 1,
          vpn: m.vpn,
          state: "soliciting",
          ips: [this.#host],
          guestPort: port,
          guestKey: m.guestKey!,
        });
        m.soliciting = true;
        this.#log.info("VPN solicits members", { vpn: m.vpn });
      }
    };
    const tick = () =>
      check().catch((err) =>
        this.#log.warn("Discovery record update failed", { err: String(err) })
      );
    await tick();
    m.timer = setInterval(tick, 1000);
  }
}

function freePort(host: string): number {
  const l = Deno.listen({ hostname: host, port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}
