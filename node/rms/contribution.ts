/**
 * What a node lends, what it may take, and the signed statement of it (`docs/protocol/entitlement.md`).
 *
 * @module
 */

import { statfs } from "node:fs/promises";
import {
  type Clock,
  type NodeIdentity,
  SignatureError,
  signEnvelope,
  verifyEnvelope,
  z,
} from "../../protocol/mod.ts";

/** Envelope type of a contribution statement. */
export const CONTRIBUTION_TYPE = "truecloud-contribution+jwt";
/** Audience of RMS-to-RMS envelopes. */
export const RMS_AUDIENCE = "truecloud:rms";
/** The default share of a contribution a node may take. */
export const DEFAULT_RATIO = 0.4;
/** The policy's bounds on the ratio. */
export const RATIO_BOUNDS = [1 / 3, 1 / 2] as const;

const amount = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** What a node lends. */
export const contributionSchema = z.strictObject({
  v: z.literal(1),
  diskBytes: amount,
  cpuMillicores: amount,
  memoryBytes: amount,
  bandwidthBps: amount,
  ratio: z.number().min(0).max(1),
});
/** What a node lends. */
export type Contribution = z.infer<typeof contributionSchema>;

/** What a node may take. */
export interface Entitlement {
  /** Bytes of storage. */
  storageBytes: number;
  /** CPU, 1000 per core. */
  cpuMillicores: number;
  /** Bytes of memory. */
  memoryBytes: number;
}

/** A ratio within the policy's bounds. */
export function clampRatio(ratio: number): number {
  if (!Number.isFinite(ratio)) return DEFAULT_RATIO;
  return Math.min(RATIO_BOUNDS[1], Math.max(RATIO_BOUNDS[0], ratio));
}

/**
 * The entitlement a contribution gives.
 * @param c The contribution.
 */
export function entitlementOf(c: Contribution): Entitlement {
  const r = clampRatio(c.ratio);
  return {
    storageBytes: Math.floor(c.diskBytes * r),
    cpuMillicores: Math.floor(c.cpuMillicores * r),
    memoryBytes: Math.floor(c.memoryBytes * r),
  };
}

/** What the operator says the node lends. */
export interface ContributionConfig {
  /** Bytes of disk. */
  diskBytes: number;
  /** Where the lent disk is (its file system's free space bounds the disk lent). */
  diskPath: string;
  /** CPU, 1000 per core (default: half the cores). */
  cpuMillicores?: number;
  /** Memory (default: a quarter of the total). */
  memoryBytes?: number;
  /** Upload bandwidth, bytes per second (default: as measured). */
  bandwidthBps?: number;
  /** The cloud's ratio (default 0.4, clamped). */
  ratio?: number;
}

/**
 * Measures the node and bounds what the operator configured by what it has.
 * @param cfg The configuration.
 * @param bandwidthBps The upload bandwidth measured (`BandwidthProbe`), if it has been.
 * @returns The contribution.
 */
export async function measureContribution(
  cfg: ContributionConfig,
  bandwidthBps?: number,
): Promise<Contribution> {
  const fs = await statfs(cfg.diskPath);
  const freeDisk = Number(fs.bavail) * Number(fs.bsize);
  const cores = navigator.hardwareConcurrency * 1000;
  const memory = Deno.systemMemoryInfo().total;
  // As measured, capped by what the operator lends; as configured (or 0) until measured.
  const upload = bandwidthBps === undefined
    ? cfg.bandwidthBps ?? 0
    : Math.min(bandwidthBps, cfg.bandwidthBps ?? bandwidthBps);
  return {
    v: 1,
    diskBytes: Math.max(0, Math.min(cfg.diskBytes, freeDisk)),
    cpuMillicores: Math.max(0, Math.min(cfg.cpuMillicores ?? cores / 2, cores)),
    memoryBytes: Math.max(0, Math.min(cfg.memoryBytes ?? Math.floor(memory / 4), memory)),
    bandwidthBps: Math.max(0, Math.floor(upload)),
    ratio: clampRatio(cfg.ratio ?? DEFAULT_RATIO),
  };
}

/**
 * Signs a contribution statement (lifetime one day).
 * @param node The node.
 * @param c Its contribution.
 * @param clock Time source.
 */
export async function signContribution(
  node: NodeIdentity,
  c: Contribution,
  clock?: Clock,
): Promise<string> {
  return await signEnvelope(node, contributionSchema.parse(c), {
    type: CONTRIBUTION_TYPE,
    audience: RMS_AUDIENCE,
    ttlSeconds: 24 * 3600,
    clock,
  });
}

/**
 * Verifies a contribution statement of a node.
 * @param jws The statement, untrusted.
 * @param node Whose it must be.
 * @param clock Time source.
 * @returns The contribution.
 * @throws {SignatureError} When it does not verify or is another node's.
 */
export async function verifyContribution(
  jws: string,
  node: string,
  clock?: Clock,
): Promise<Contribution> {
  const v = await verifyEnvelope(jws, {
    type: CONTRIBUTION_TYPE,
    audience: RMS_AUDIENCE,
    schema: contributionSchema,
    what: "contribution statement",
    clock,
    maxBytes: 2048,
    maxTtlSeconds: 24 * 3600,
  });
  if (v.issuer !== node) {
    throw new SignatureError("The contribution statement is another node's", {
      code: "claim_invalid",
    });
  }
  return v.data;
}
