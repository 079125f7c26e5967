/**
 * Guest networks and the join exchange (`docs/protocol/join.md`, "Joining"): the guardian's side
 * ({@linkcode GuestServer}), which challenges a newcomer, checks its signed join request and hands
 * the decision to its RMS; and the newcomer's side ({@linkcode requestJoin}), one guest connection
 * at a time.
 *
 * @module
 */

import "./_libp2p.ts";
import { identify } from "@libp2p/identify";
import type { Connection, Libp2p, Stream } from "@libp2p/interface";
import { ping } from "@libp2p/ping";
import { multiaddr } from "@multiformats/multiaddr";
import { createLibp2p } from "libp2p";
import {
  type Clock,
  discardLogger,
  hexKey32Schema,
  type IdentityJwk,
  type Logger,
  NodeIdentity,
  nodeIdSchema,
  parseWith,
  signEnvelope,
  TrueCloudError,
  uuidSchema,
  verifyEnvelope,
  z,
} from "../../protocol/mod.ts";
import { baseConfig, libp2pKey } from "./_libp2p.ts";
import { multiaddrTextSchema, verifyCredential, vpnAudience } from "./credential.ts";
import { vpnSecretSchema } from "./secret.ts";
import { jsonStream } from "./wire.ts";

/** The join protocol. */
export const JOIN_PROTOCOL = "/truecloud/join/1.0.0";
/** Envelope type of a join request. */
export const JOIN_REQUEST_TYPE = "truecloud-join-request+jwt";
/** Longest life of a join request, in seconds. */
export const JOIN_REQUEST_TTL_S = 300;
/** Refusal codes. */
export const REFUSAL_CODES = [
  "malformed",
  "identity",
  "attestation",
  "refused",
  "full",
  "diversity",
  "unavailable",
] as const;

/** The data of a join request. */
export const joinRequestDataSchema = z.strictObject({
  v: z.literal(1),
  vpn: uuidSchema,
  guardian: nodeIdSchema,
  nonce: hexKey32Schema,
  location: uuidSchema,
  network: uuidSchema,
  addrs: z.array(multiaddrTextSchema).max(8),
  attestation: z.string().min(1).max(4096),
});
/** The data of a join request. */
export type JoinRequestData = z.infer<typeof joinRequestDataSchema>;

const challengeSchema = z.strictObject({
  t: z.literal("challenge"),
  v: z.literal(1),
  vpn: uuidSchema,
  nonce: hexKey32Schema,
});

const memberAddrSchema = z.strictObject({
  id: nodeIdSchema,
  addrs: z.array(multiaddrTextSchema).max(8),
});

/** An admission, as the guardian sends it. */
export const admitSchema = z.strictObject({
  t: z.literal("admit"),
  v: z.literal(1),
  vpn: uuidSchema,
  credential: z.string().min(1).max(4096),
  secret: vpnSecretSchema,
  members: z.array(memberAddrSchema).max(32),
});
/** An admission. */
export type Admission = z.infer<typeof admitSchema>;

/** A refusal, as the guardian sends it. */
export const refuseSchema = z.strictObject({
  t: z.literal("refuse"),
  v: z.literal(1),
  code: z.enum(REFUSAL_CODES),
  reason: z.string().max(500),
});
/** A refusal. */
export type Refusal = z.infer<typeof refuseSchema>;

/** A join request whose signature, issuer and challenge have been checked. */
export interface JoinRequest {
  /** The newcomer, as the Noise handshake and the signature agree. */
  node: string;
  /** What it asks with. */
  data: JoinRequestData;
}

/** Decides a checked join request: the RMS's part (attestation, fit, credential). */
export type JoinDecider = (request: JoinRequest) => Promise<Admission | Refusal>;

function refusal(code: Refusal["code"], reason: string): Refusal {
  return { t: "refuse", v: 1, code, reason: reason.slice(0, 500) };
}

function randomHex32(): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(32)))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Settings of {@linkcode GuestServer.start}. */
export interface GuestServerOptions {
  /** The guardian. */
  identity: NodeIdentity;
  /** The VPN it admits to. */
  vpn: string;
  /** The guest network's key (public, from the discovery record), 64 hex digits. */
  guestKey: string;
  /** Where to listen (default: a free port on 127.0.0.1). */
  listen?: string[];
  /** The decision. */
  decide: JoinDecider;
  /** Most guest connections at once (default 16). */
  maxGuests?: number;
  /** Most new guest connections per second from one IP address (default 5). */
  perAddressPerSecond?: number;
  /** How long a guest connection may last, in milliseconds (default 30 s). */
  guestTimeoutMs?: number;
  /** Deadline of each message, in milliseconds (default 10 s). */
  messageDeadlineMs?: number;
  /** Time source for envelopes. */
  clock?: Clock;
  /** Logger. */
  log?: Logger;
}

/** A guardian's guest network for one VPN. */
export class GuestServer {
  /** The libp2p node of the guest network. */
  readonly libp2p: Libp2p;
  readonly #o: GuestServerOptions;
  readonly #log: Logger;
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  #joins = 0;

  private constructor(libp2p: Libp2p, o: GuestServerOptions) {
    this.libp2p = libp2p;
    this.#o = o;
    this.#log = o.log ?? discardLogger;
  }

  /**
   * Starts listening.
   * @param o Settings.
   */
  static async start(o: GuestServerOptions): Promise<GuestServer> {
    const maxGuests = o.maxGuests ?? 16;
    const holder: { self?: GuestServer } = {};
    const libp2p = await createLibp2p({
      privateKey: await libp2pKey(o.identity),
      addresses: { listen: o.listen ?? ["/ip4/127.0.0.1/tcp/0"] },
      ...baseConfig(o.guestKey),
      connectionGater: {
        // Guests only come in; a guest network dials no one.
        denyDialMultiaddr: () => true,
        denyInboundConnection: () =>
          (holder.self?.libp2p.getConnections().length ?? 0) >= maxGuests,
      },
      connectionManager: {
        maxConnections: maxGuests,
        maxIncomingPendingConnections: maxGuests,
        inboundConnectionThreshold: o.perAddressPerSecond ?? 5,
      },
      services: { identify: identify(), ping: ping() },
    });
    const self = new GuestServer(libp2p, o);
    holder.self = self;
    await libp2p.handle(JOIN_PROTOCOL, (s, c) => self.#serve(s, c), { maxInboundStreams: 1 });
    libp2p.addEventListener("connection:open", (e) => {
      const conn = e.detail;
      const t = setTimeout(() => {
        self.#timers.delete(t);
        conn.close().catch(() => {});
      }, o.guestTimeoutMs ?? 30_000);
      self.#timers.add(t);
    });
    return self;
  }

  /** Where the guest network listens. */
  get addrs(): string[] {
    return this.libp2p.getMultiaddrs().map(String);
  }

  /** Join exchanges served so far. */
  get joins(): number {
    return this.#joins;
  }

  /** Stops the guest network. */
  async stop(): Promise<void> {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    await this.libp2p.stop();
  }

  async #serve(stream: Stream, conn: Connection): Promise<void> {
    this.#joins++;
    const node = conn.remotePeer.toString();
    const s = jsonStream(stream, this.#o.messageDeadlineMs);
    const nonce = randomHex32();
    let answer: Admission | Refusal;
    try {
      await s.write({ t: "challenge", v: 1, vpn: this.#o.vpn, nonce });
      answer = await this.#check(await s.read(), node, nonce);
    } catch (err) {
      const code = err instanceof TrueCloudError && err.code === "identity"
        ? "identity"
        : "malformed";
      answer = refusal(code, (err as Error).message);
    }
    if (answer.t === "refuse") {
      this.#log.info("Newcomer refused", { node, code: answer.code, reason: answer.reason });
    } else this.#log.info("Newcomer admitted", { node, vpn: this.#o.vpn });
    try {
      await s.write(answer);
      await stream.close();
    } catch {
      // the newcomer left
    }
    await conn.close().catch(() => {});
  }

  async #check(
    msg: Record<string, unknown>,
    node: string,
    nonce: string,
  ): Promise<Admission | Refusal> {
    if (msg.t !== "join" || typeof msg.request !== "string") {
      return refusal("malformed", 'Expected {"t":"join","request":"<JWS>"}');
    }
    let data: JoinRequestData;
    try {
      const v = await verifyEnvelope(msg.request, {
        type: JOIN_REQUEST_TYPE,
        audience: vpnAudience(this.#o.vpn),
        schema: joinRequestDataSchema,
        what: "join request",
        clock: this.#o.clock,
        maxBytes: 8192,
        maxTtlSeconds: JOIN_REQUEST_TTL_S,
      });
      if (v.issuer !== node) {
        return refusal("identity", "The request is signed by another node than the connection's");
      }
      data = v.data;
    } catch (err) {
      const code = err instanceof TrueCloudError &&
          ["invalid", "malformed", "too_large"].includes(err.code)
        ? "malformed"
        : "identity";
      return refusal(code, (err as Error).message);
    }
    if (
      data.vpn !== this.#o.vpn || data.guardian !== this.#o.identity.nodeId || data.nonce !== nonce
    ) {
      return refusal("identity", "The request does not answer this guardian's challenge");
    }
    try {
      return await this.#o.decide({ node, data });
    } catch (err) {
      this.#log.error("Join decision failed", { node, err: String(err) });
      return refusal("unavailable", "The guardian could not decide; try another");
    }
  }
}

/** Where to join: a soliciting discovery record's guest network. */
export interface GuestTarget {
  /** The VPN. */
  vpn: string;
  /** The guardian's node id. */
  guardian: string;
  /** The guest network's multiaddr, without `/p2p/…`. */
  addr: string;
  /** The guest key, 64 hex digits. */
  guestKey: string;
}

/** What the newcomer sends. */
export interface JoinAsk {
  /** Geographic location UUID. */
  location: string;
  /** Network endpoint UUID. */
  network: string;
  /** Where it will listen on the VPN. */
  addrs: string[];
  /** Its release attestation. */
  attestation: string;
}

/** The outcome of {@linkcode requestJoin}. */
export type JoinOutcome =
  | { admitted: true; admission: Admission }
  | { admitted: false; refusal: Refusal };

/**
 * Asks a guardian to join its VPN, over its guest network; the guest connection is closed when it
 * returns, whatever the outcome.
 * @param identity The newcomer.
 * @param target The guest network.
 * @param ask Location, network, addresses and attestation.
 * @param options Clock and deadline.
 * @returns The admission (its credential checked against the VPN key it carries) or the refusal.
 * @throws {TrueCloudError} When the guest network cannot be reached or answers out of protocol.
 */
export async function requestJoin(
  identity: NodeIdentity,
  target: GuestTarget,
  ask: JoinAsk,
  options: { clock?: Clock; deadlineMs?: number } = {},
): Promise<JoinOutcome> {
  const libp2p = await createLibp2p({
    privateKey: await libp2pKey(identity),
    addresses: { listen: [] },
    ...baseConfig(target.guestKey),
    services: { identify: identify() },
  });
  try {
    const signal = AbortSignal.timeout(options.deadlineMs ?? 10_000);
    let stream: Stream;
    try {
      stream = await libp2p.dialProtocol(
        multiaddr(`${target.addr}/p2p/${target.guardian}`),
        JOIN_PROTOCOL,
        { signal },
      );
    } catch (cause) {
      throw new TrueCloudError(`Cannot reach the guest network at ${target.addr}`, {
        code: "unreachable",
        cause,
      });
    }
    const s = jsonStream(stream, options.deadlineMs);
    const challenge = parseWith(challengeSchema, await s.read(), "challenge");
    if (challenge.vpn !== target.vpn) {
      throw new TrueCloudError("The guest network is another VPN's", { code: "wrong_vpn" });
    }
    const request = await signEnvelope(
      identity,
      {
        v: 1,
        vpn: target.vpn,
        guardian: target.guardian,
        nonce: challenge.nonce,
        ...ask,
      } satisfies JoinRequestData,
      {
        type: JOIN_REQUEST_TYPE,
        audience: vpnAudience(target.vpn),
        ttlSeconds: JOIN_REQUEST_TTL_S,
        clock: options.clock,
      },
    );
    await s.write({ t: "join", request });
    const answer = await s.read();
    await stream.close().catch(() => {});
    if (answer.t === "refuse") {
      return { admitted: false, refusal: parseWith(refuseSchema, answer, "refusal") };
    }
    const admission = parseWith(admitSchema, answer, "admission");
    const key = await NodeIdentity.fromJwk(admission.secret.vpnKey as IdentityJwk);
    await verifyCredential(admission.credential, { vpn: target.vpn, keyId: key.nodeId }, {
      peer: identity.nodeId,
      clock: options.clock,
    });
    if (admission.vpn !== target.vpn) {
      throw new TrueCloudError("The admission is for another VPN", { code: "wrong_vpn" });
    }
    return { admitted: true, admission };
  } finally {
    await libp2p.stop();
  }
}
