/**
 * Release attestations (`docs/protocol/join.md`): a node's signed statement of the release it
 * runs, which a guardian checks against the component library's verified TUF targets.
 *
 * @module
 */

import { describeTarget } from "../../library/mod.ts";
import {
  type Clock,
  NodeIdentity,
  SignatureError,
  signEnvelope,
  verifyEnvelope,
  z,
} from "../../protocol/mod.ts";

/** Envelope type of a release attestation. */
export const ATTESTATION_TYPE = "truecloud-release-attestation+jwt";
/** Audience of release attestations. */
export const ATTESTATION_AUDIENCE = "truecloud:vpn";
/** Longest life of an attestation, in seconds (1 day). */
export const MAX_ATTESTATION_TTL_S = 24 * 3600;

/** What a node says it runs: a TUF target, its SHA-256 and length. */
export const releaseSchema = z.strictObject({
  v: z.literal(1),
  release: z.string().min(1).max(256).regex(/^[A-Za-z0-9._/-]+$/, "Must be a target path"),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, "Must be 64 lowercase hex digits"),
  length: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
});
/** What a node says it runs. */
export type ReleaseClaim = z.infer<typeof releaseSchema>;

/** Looks a target up in the verified targets metadata: its SHA-256 and length, or `undefined`. */
export type ReleaseCatalog = (target: string) => { sha256: string; length: number } | undefined;

/**
 * A catalogue from verified TUF targets metadata (as `TufClient.update()` gives it).
 * @param targets The `signed.targets` map of the metadata.
 */
export function catalogFromTargets(
  targets: Record<string, { length: number; hashes: Record<string, string> }>,
): ReleaseCatalog {
  return (name) => {
    const t = Object.hasOwn(targets, name) ? targets[name] : undefined;
    const sha256 = t?.hashes?.sha256;
    return t && typeof sha256 === "string" ? { sha256, length: t.length } : undefined;
  };
}

/**
 * Measures a release file as a node attests it: streamed SHA-256 and length.
 * @param file The file the node was installed from.
 * @param target Its TUF target path.
 */
export async function measureRelease(file: string, target: string): Promise<ReleaseClaim> {
  const t = await describeTarget(file, target);
  return { v: 1, release: t.path, sha256: t.sha256, length: t.length };
}

/**
 * Signs an attestation.
 * @param node The node.
 * @param claim What it runs.
 * @param clock Time source.
 * @returns The compact JWS.
 */
export async function mintAttestation(
  node: NodeIdentity,
  claim: ReleaseClaim,
  clock?: Clock,
): Promise<string> {
  return await signEnvelope(node, releaseSchema.parse(claim), {
    type: ATTESTATION_TYPE,
    audience: ATTESTATION_AUDIENCE,
    ttlSeconds: MAX_ATTESTATION_TTL_S,
    clock,
  });
}

/**
 * Verifies an attestation: signed by `node`, unexpired, and naming a current release exactly.
 * @param jws The attestation, untrusted.
 * @param node The node it must come from.
 * @param catalog The current releases.
 * @param clock Time source.
 * @returns What the node runs.
 * @throws {SignatureError} With code `attestation` and the reason.
 */
export async function verifyAttestation(
  jws: string,
  node: string,
  catalog: ReleaseCatalog,
  clock?: Clock,
): Promise<ReleaseClaim> {
  let claim: ReleaseClaim;
  try {
    const v = await verifyEnvelope(jws, {
      type: ATTESTATION_TYPE,
      audience: ATTESTATION_AUDIENCE,
      schema: releaseSchema,
      what: "release attestation",
      clock,
      maxBytes: 4096,
      maxTtlSeconds: MAX_ATTESTATION_TTL_S,
    });
    if (v.issuer !== node) throw new Error("it is signed by another node");
    claim = v.data;
  } catch (err) {
    throw new SignatureError(`Release attestation refused: ${(err as Error).message}`, {
      code: "attestation",
      cause: err,
    });
  }
  const known = catalog(claim.release);
  if (!known) {
    throw new SignatureError(`${claim.release} is not a current release`, { code: "attestation" });
  }
  if (known.sha256 !== claim.sha256 || known.length !== claim.length) {
    throw new SignatureError(`${claim.release} does not match the released file`, {
      code: "attestation",
    });
  }
  return claim;
}
