/**
 * VPN records: the signed statements a guardian publishes through discovery, their schema,
 * ordering and visibility (`docs/protocol/discovery.md`).
 *
 * @module
 */

import {
  type Clock,
  hexKey32Schema,
  ipSchema,
  type NodeIdentity,
  portSchema,
  signEnvelope,
  systemClock,
  uuidSchema,
  ValidationError,
  type VerifiedEnvelope,
  verifyEnvelope,
  z,
} from "../protocol/mod.ts";
import { isPublicAddress } from "./address.ts";

/** Envelope type of a VPN record. */
export const VPN_RECORD_TYPE = "truecloud-vpn-record+jwt";
/** Audience of a VPN record. */
export const DISCOVERY_AUDIENCE = "truecloud:discovery";
/** Largest VPN record, in bytes. */
export const MAX_RECORD_BYTES = 8 * 1024;
/** Longest lifetime of a VPN record (`exp - iat`), in seconds: 7 days. */
export const MAX_RECORD_TTL_S = 7 * 24 * 3600;

/** Data of a VPN that takes members through a guardian's guest network. */
export const solicitingSchema = z.strictObject({
  v: z.literal(1),
  vpn: uuidSchema,
  state: z.literal("soliciting"),
  ips: z.array(ipSchema).min(1).max(8).refine(
    (ips) => new Set(ips.map((ip) => ip.toLowerCase())).size === ips.length,
    "Addresses must be distinct",
  ),
  guestPort: portSchema,
  guestKey: hexKey32Schema,
});

/** Data of a withdrawal: the VPN is full or the guardian stops admitting. */
export const withdrawnSchema = z.strictObject({
  v: z.literal(1),
  vpn: uuidSchema,
  state: z.literal("withdrawn"),
  reason: z.enum(["full", "closing", "other"]),
});

/** The `dat` of a VPN record. */
export const vpnRecordDataSchema = z.discriminatedUnion("state", [
  solicitingSchema,
  withdrawnSchema,
]);

/** A soliciting record's data. */
export type SolicitingData = z.output<typeof solicitingSchema>;
/** A withdrawal's data. */
export type WithdrawnData = z.output<typeof withdrawnSchema>;
/** The data of any VPN record. */
export type VpnRecordData = z.output<typeof vpnRecordDataSchema>;
/** A VPN record that verified. */
export type VpnRecord = VerifiedEnvelope<VpnRecordData>;

/** Options for {@linkcode signVpnRecord}. */
export interface SignRecordOptions {
  /** Lifetime in seconds (default one day, at most 7 days). */
  ttlSeconds?: number;
  /** Time source. */
  clock?: Clock;
}

/**
 * Signs a VPN record as its guardian.
 *
 * @param guardian The guardian's identity.
 * @param data The record's data.
 * @param options Lifetime and clock.
 * @returns The compact JWS to submit.
 *
 * @example
 * ```ts
 * import { NodeIdentity, newUuid } from "../protocol/mod.ts";
 * import { signVpnRecord } from "./record.ts";
 * const guardian = await NodeIdentity.generate();
 * const jws = await signVpnRecord(guardian, {
 *   v: 1, vpn: newUuid(), state: "soliciting",
 *   ips: ["198.51.100.7"], guestPort: 4001, guestKey: "ab".repeat(32),
 * });
 * ```
 */
export function signVpnRecord(
  guardian: NodeIdentity,
  data: VpnRecordData,
  options: SignRecordOptions = {},
): Promise<string> {
  return signEnvelope(guardian, data, {
    type: VPN_RECORD_TYPE,
    audience: DISCOVERY_AUDIENCE,
    ttlSeconds: options.ttlSeconds ?? 24 * 3600,
    clock: options.clock,
  });
}

/** Options for {@linkcode verifyVpnRecord}. */
export interface VerifyRecordOptions {
  /** Time source. */
  clock?: Clock;
  /** Accept loopback, private and other non-public addresses (the local cloud). */
  allowPrivateAddresses?: boolean;
}

/**
 * Verifies a VPN record completely: envelope, schema, lifetime and address policy.
 *
 * @param jws The compact JWS, untrusted.
 * @param options Clock and address policy.
 * @returns The verified record.
 * @throws {ValidationError} `malformed`, `invalid`, `address_not_public`.
 * @throws {SignatureError} `signature_invalid`, `expired`, `claim_invalid`.
 * @throws {TooLargeError} `too_large`.
 */
export async function verifyVpnRecord(
  jws: string,
  options: VerifyRecordOptions = {},
): Promise<VpnRecord> {
  const record = await verifyEnvelope(jws, {
    type: VPN_RECORD_TYPE,
    audience: DISCOVERY_AUDIENCE,
    schema: vpnRecordDataSchema,
    what: "VPN record",
    clock: options.clock ?? systemClock,
    maxBytes: MAX_RECORD_BYTES,
    maxTtlSeconds: MAX_RECORD_TTL_S,
  });
  if (record.data.state === "soliciting" && !options.allowPrivateAddresses) {
    const bad = record.data.ips.find((ip) => !isPublicAddress(ip));
    if (bad !== undefined) {
      throw new ValidationError(`Address ${bad} is not publicly routable`, {
        code: "address_not_public",
        path: "ips",
      });
    }
  }
  return record;
}

/**
 * Compares two records of the same key by `(iat, state, jti, jws)`, where a withdrawal ranks above
 * a soliciting record of the same second: a total order, so that every replica keeps the same
 * record, and a guardian that withdraws right after publishing is not undone by chance.
 * @returns A negative number when `a` is older, positive when newer, 0 when identical.
 */
export function compareRecords(
  a: { issuedAt: number; id: string; jws: string; data: VpnRecordData },
  b: { issuedAt: number; id: string; jws: string; data: VpnRecordData },
): number {
  if (a.issuedAt !== b.issuedAt) return a.issuedAt - b.issuedAt;
  const rank = (r: { data: VpnRecordData }) => (r.data.state === "withdrawn" ? 1 : 0);
  if (rank(a) !== rank(b)) return rank(a) - rank(b);
  if (a.id !== b.id) return a.id < b.id ? -1 : 1;
  return a.jws < b.jws ? -1 : a.jws > b.jws ? 1 : 0;
}

/**
 * Tells whether a record may be shown: soliciting and not expired.
 * @param record The record.
 * @param nowMs The current time in milliseconds.
 */
export function isVisible(
  record: { data: VpnRecordData; expiresAt: number },
  nowMs: number,
): boolean {
  return record.data.state === "soliciting" && nowMs < record.expiresAt * 1000;
}
