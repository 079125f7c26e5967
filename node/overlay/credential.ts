/**
 * Member credentials and revocations of a management VPN (`docs/protocol/join.md`): envelopes signed
 * with the VPN key, which every member holds, binding a member's node id to the VPN's UUID with an
 * expiry.
 *
 * @module
 */

import {
  type Clock,
  NodeIdentity,
  nodeIdSchema,
  parseWith,
  SignatureError,
  signEnvelope,
  systemClock,
  uuidSchema,
  verifyEnvelope,
  z,
} from "../../protocol/mod.ts";

/** The longest life of a credential or a revocation, in seconds (7 days). */
export const MAX_CREDENTIAL_TTL_S = 7 * 24 * 3600;
/** The life of the credentials members mint (one day): a member that vanishes without a departure
 * leaves the roster within it, and live members renew theirs past half-life. */
export const CREDENTIAL_TTL_S = 24 * 3600;
/** The largest credential, in bytes. */
export const MAX_CREDENTIAL_BYTES = 4096;
/** Tolerated clock skew between members, in seconds: a credential is honoured this long past its
 * expiry, and may be issued this far in the future. */
export const CLOCK_TOLERANCE_S = 30;
/** Envelope type of a member credential. */
export const CREDENTIAL_TYPE = "truecloud-vpn-credential+jwt";
/** Envelope type of a revocation. */
export const REVOCATION_TYPE = "truecloud-vpn-revocation+jwt";
/** Envelope type of a departure. */
export const DEPARTURE_TYPE = "truecloud-vpn-departure+jwt";

/** The audience of everything addressed to one VPN. */
export function vpnAudience(vpn: string): string {
  return `truecloud:vpn:${vpn}`;
}

/** A libp2p multiaddr in text form, as a member lists where it listens. */
export const multiaddrTextSchema = z.string().min(2).max(256).regex(
  /^\/[A-Za-z0-9/._:%-]+$/,
  "Must be a multiaddr such as /ip4/198.51.100.7/tcp/4101",
);

/** The data of a member credential. */
export const credentialDataSchema = z.strictObject({
  v: z.literal(1),
  vpn: uuidSchema,
  member: nodeIdSchema,
  location: uuidSchema,
  network: uuidSchema,
  guardian: nodeIdSchema,
  addrs: z.array(multiaddrTextSchema).max(8),
});
/** The data of a member credential. */
export type CredentialData = z.infer<typeof credentialDataSchema>;

/** The data of a revocation. */
export const revocationDataSchema = z.strictObject({
  v: z.literal(1),
  vpn: uuidSchema,
  member: nodeIdSchema,
  reason: z.string().min(1).max(200),
  by: nodeIdSchema,
});
/** The data of a revocation. */
export type RevocationData = z.infer<typeof revocationDataSchema>;

/** The data of a departure: a member says it leaves a VPN. */
export const departureDataSchema = z.strictObject({
  v: z.literal(1),
  vpn: uuidSchema,
  member: nodeIdSchema,
  /** The `iat` of the newest credential the member holds: those issued until then are void. */
  until: z.number().int().min(0),
});

/** A verified departure. */
export interface Departure {
  /** The compact JWS. */
  jws: string;
  /** The member that left. */
  member: string;
  /** It voids the member's credentials issued at or before this time, seconds. */
  until: number;
  /** Time of issue, seconds. */
  issuedAt: number;
  /** Expiry, seconds. */
  expiresAt: number;
}

/** A verified credential. */
export interface Credential {
  /** The compact JWS. */
  jws: string;
  /** Its data. */
  data: CredentialData;
  /** Time of issue, seconds. */
  issuedAt: number;
  /** Expiry, seconds. */
  expiresAt: number;
}

/** A verified revocation. */
export interface Revocation {
  /** The compact JWS. */
  jws: string;
  /** Its data. */
  data: RevocationData;
  /** Time of issue, seconds: it revokes credentials issued before. */
  issuedAt: number;
  /** Expiry, seconds. */
  expiresAt: number;
}

/** What a verifier knows of a VPN. */
export interface VpnKeyRef {
  /** The VPN's UUID. */
  vpn: string;
  /** The node id of the VPN key. */
  keyId: string;
}

/**
 * Mints a member credential, signed with the VPN key.
 * @param vpnKey The VPN key.
 * @param data The credential's data.
 * @param options Lifetime (default one day, at most 7 days) and clock.
 * @returns The compact JWS.
 */
export async function mintCredential(
  vpnKey: NodeIdentity,
  data: CredentialData,
  options: { ttlSeconds?: number; clock?: Clock } = {},
): Promise<string> {
  const checked = parseWith(credentialDataSchema, data, "credential");
  return await signEnvelope(vpnKey, checked, {
    type: CREDENTIAL_TYPE,
    audience: vpnAudience(checked.vpn),
    ttlSeconds: Math.min(options.ttlSeconds ?? CREDENTIAL_TTL_S, MAX_CREDENTIAL_TTL_S),
    clock: options.clock,
  });
}

/**
 * Verifies a member credential of a VPN, and, if given, that it belongs to a peer.
 * @param jws The credential, untrusted.
 * @param ref The VPN and its key id.
 * @param options The peer the credential must name, and the clock.
 * @returns The verified credential.
 * @throws {SignatureError} Not signed by the VPN key, for another VPN or peer, or expired.
 * @throws {ValidationError} Malformed.
 */
export async function verifyCredential(
  jws: string,
  ref: VpnKeyRef,
  options: { peer?: string; clock?: Clock } = {},
): Promise<Credential> {
  const v = await verifyEnvelope(jws, {
    type: CREDENTIAL_TYPE,
    audience: vpnAudience(ref.vpn),
    schema: credentialDataSchema,
    what: "credential",
    clock: options.clock,
    maxBytes: MAX_CREDENTIAL_BYTES,
    maxTtlSeconds: MAX_CREDENTIAL_TTL_S,
    clockToleranceSeconds: CLOCK_TOLERANCE_S,
  });
  if (v.issuer !== ref.keyId) {
    throw new SignatureError("Credential is not signed by this VPN's key", {
      code: "claim_invalid",
    });
  }
  if (v.data.vpn !== ref.vpn) {
    throw new SignatureError("Credential is for another VPN", { code: "claim_invalid" });
  }
  if (options.peer !== undefined && v.data.member !== options.peer) {
    throw new SignatureError("Credential belongs to another node", { code: "claim_invalid" });
  }
  return { jws: v.jws, data: v.data, issuedAt: v.issuedAt, expiresAt: v.expiresAt };
}

/**
 * Mints a revocation of a member's credentials issued until now.
 * @param vpnKey The VPN key.
 * @param data Whom, why and by whom.
 * @param options Lifetime (default and most 7 days: as long as any credential it revokes) and clock.
 * @returns The compact JWS.
 */
export async function mintRevocation(
  vpnKey: NodeIdentity,
  data: RevocationData,
  options: { clock?: Clock } = {},
): Promise<string> {
  const checked = parseWith(revocationDataSchema, data, "revocation");
  return await signEnvelope(vpnKey, checked, {
    type: REVOCATION_TYPE,
    audience: vpnAudience(checked.vpn),
    ttlSeconds: MAX_CREDENTIAL_TTL_S,
    clock: options.clock,
  });
}

/**
 * Verifies a revocation of a VPN.
 * @param jws The revocation, untrusted.
 * @param ref The VPN and its key id.
 * @param clock Time source.
 * @returns The verified revocation.
 * @throws {SignatureError} Not signed by the VPN key, for another VPN, or expired.
 * @throws {ValidationError} Malformed.
 */
export async function verifyRevocation(
  jws: string,
  ref: VpnKeyRef,
  clock: Clock = systemClock,
): Promise<Revocation> {
  const v = await verifyEnvelope(jws, {
    type: REVOCATION_TYPE,
    audience: vpnAudience(ref.vpn),
    schema: revocationDataSchema,
    what: "revocation",
    clock,
    maxBytes: MAX_CREDENTIAL_BYTES,
    maxTtlSeconds: MAX_CREDENTIAL_TTL_S,
    clockToleranceSeconds: CLOCK_TOLERANCE_S,
  });
  if (v.issuer !== ref.keyId || v.data.vpn !== ref.vpn) {
    throw new SignatureError("Revocation is not this VPN's", { code: "claim_invalid" });
  }
  return { jws: v.jws, data: v.data, issuedAt: v.issuedAt, expiresAt: v.expiresAt };
}

/**
 * Signs this member's departure from a VPN, with its own node key.
 * @param member The member leaving.
 * @param vpn The VPN's UUID.
 * @param until The time of issue of its newest credential.
 * @param clock Time source.
 * @returns The compact JWS.
 */
export async function signDeparture(
  member: NodeIdentity,
  vpn: string,
  until: number,
  clock: Clock = systemClock,
): Promise<string> {
  return await signEnvelope(member, { v: 1, vpn, member: member.nodeId, until }, {
    type: DEPARTURE_TYPE,
    audience: vpnAudience(vpn),
    ttlSeconds: MAX_CREDENTIAL_TTL_S,
    clock,
  });
}

/**
 * Verifies a departure from a VPN: signed by the member that leaves, for this VPN.
 * @param jws The departure, untrusted.
 * @param vpn The VPN's UUID.
 * @param clock Time source.
 * @returns The verified departure.
 * @throws {SignatureError} Not signed by the member it names, for another VPN, or expired.
 * @throws {ValidationError} Malformed.
 */
export async function verifyDeparture(
  jws: string,
  vpn: string,
  clock: Clock = systemClock,
): Promise<Departure> {
  const v = await verifyEnvelope(jws, {
    type: DEPARTURE_TYPE,
    audience: vpnAudience(vpn),
    schema: departureDataSchema,
    what: "departure",
    clock,
    maxBytes: MAX_CREDENTIAL_BYTES,
    maxTtlSeconds: MAX_CREDENTIAL_TTL_S,
    clockToleranceSeconds: CLOCK_TOLERANCE_S,
  });
  if (v.issuer !== v.data.member || v.data.vpn !== vpn) {
    throw new SignatureError("The departure is not its member's own, or not for this VPN", {
      code: "claim_invalid",
    });
  }
  if (v.data.until > v.issuedAt + CLOCK_TOLERANCE_S) {
    throw new SignatureError("A departure cannot void credentials not issued yet", {
      code: "claim_invalid",
    });
  }
  return {
    jws: v.jws,
    member: v.data.member,
    until: v.data.until,
    issuedAt: v.issuedAt,
    expiresAt: v.expiresAt,
  };
}
