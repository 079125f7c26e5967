/**
 * Signed envelopes: everything a node asserts travels as a compact JWS (RFC 7515) signed with
 * EdDSA over Ed25519, whose payload is a JWT claims set (RFC 7519) carrying the data.
 *
 * The signer's node id is both `kid` and `iss`, so the verifier needs nothing but the envelope
 * to check it offline. The format is specified in `docs/protocol/envelope.md`.
 *
 * @module
 */

import { errors as joseErrors, jwtVerify, SignJWT } from "jose";
import type { z } from "zod";
import { SignatureError, TooLargeError, ValidationError } from "./errors.ts";
import { type Clock, systemClock } from "./clock.ts";
import {
  importPublicKey,
  type NodeId,
  type NodeIdentity,
  publicKeyFromNodeId,
} from "./identity.ts";
import { parseWith } from "./schema.ts";
import { isUuid, newUuid } from "./uuid.ts";

/** Default bound on the size of an envelope, in bytes. */
export const DEFAULT_MAX_ENVELOPE_BYTES = 16 * 1024;
/** Default tolerance for clock skew between signer and verifier, in seconds. */
export const DEFAULT_CLOCK_TOLERANCE_S = 300;

const COMPACT_JWS_RE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const TYPE_RE = /^[a-z0-9][a-z0-9.-]{0,62}\+jwt$/;

/** Options for {@linkcode signEnvelope}. */
export interface SignOptions {
  /** The envelope type, carried in the `typ` header, such as `truecloud-vpn-record+jwt`. */
  type: string;
  /** Who the envelope is for (`aud`), such as `truecloud:discovery`. */
  audience: string | string[];
  /** Lifetime in seconds from the time of issue. */
  ttlSeconds: number;
  /** Time source; defaults to the system clock. */
  clock?: Clock;
  /** Envelope id (`jti`); a new UUID by default. */
  id?: string;
}

/**
 * Signs data as an envelope.
 *
 * @param signer The node that asserts the data.
 * @param data Any JSON-serialisable value; it becomes the `dat` claim.
 * @param options Type, audience, lifetime, clock and id.
 * @returns The compact JWS.
 * @throws {ValidationError} When the type or lifetime is invalid.
 *
 * @example
 * ```ts
 * import { NodeIdentity } from "./identity.ts";
 * import { signEnvelope } from "./envelope.ts";
 * const me = await NodeIdentity.generate();
 * const jws = await signEnvelope(me, { hello: "world" }, {
 *   type: "truecloud-example+jwt",
 *   audience: "truecloud:example",
 *   ttlSeconds: 60,
 * });
 * ```
 */
export async function signEnvelope(
  signer: NodeIdentity,
  data: unknown,
  options: SignOptions,
): Promise<string> {
  if (!TYPE_RE.test(options.type)) {
    throw new ValidationError(`Envelope type must match ${TYPE_RE}, got ${options.type}`);
  }
  if (!Number.isInteger(options.ttlSeconds) || options.ttlSeconds <= 0) {
    throw new ValidationError("Envelope lifetime must be a positive whole number of seconds");
  }
  const iat = Math.floor((options.clock ?? systemClock).now() / 1000);
  return await new SignJWT({ dat: data })
    .setProtectedHeader({ alg: "EdDSA", typ: options.type, kid: signer.nodeId })
    .setIssuer(signer.nodeId)
    .setAudience(options.audience)
    .setIssuedAt(iat)
    .setExpirationTime(iat + options.ttlSeconds)
    .setJti(options.id ?? newUuid())
    .sign(signer.privateKey);
}

/** Options for {@linkcode verifyEnvelope}. */
export interface VerifyOptions<S extends z.ZodType> {
  /** The expected `typ` header. */
  type: string;
  /** The audience that must appear in `aud`. */
  audience: string;
  /** The schema of the `dat` claim. */
  schema: S;
  /** What the data is, for error messages, such as `VPN record`. */
  what?: string;
  /** Time source; defaults to the system clock. */
  clock?: Clock;
  /** Largest accepted envelope in bytes (default 16 KiB). */
  maxBytes?: number;
  /** Largest accepted `exp - iat`, in seconds; unbounded if not set. */
  maxTtlSeconds?: number;
  /** Tolerated clock skew in seconds (default 300). */
  clockToleranceSeconds?: number;
}

/** An envelope that verified, with its claims. */
export interface VerifiedEnvelope<T> {
  /** The compact JWS, exactly as received. */
  jws: string;
  /** The signer (`iss`, equal to `kid`). */
  issuer: NodeId;
  /** The envelope id (`jti`). */
  id: string;
  /** The type (`typ`). */
  type: string;
  /** The audiences (`aud`). */
  audience: string[];
  /** Time of issue, seconds since the epoch (`iat`). */
  issuedAt: number;
  /** Expiry, seconds since the epoch (`exp`). */
  expiresAt: number;
  /** The validated data (`dat`). */
  data: T;
}

/**
 * Verifies an envelope: size, form, signature by the node named in `kid`, `iss` equal to `kid`,
 * type, audience, time of issue, expiry, lifetime and the data's schema.
 *
 * @param jws The compact JWS, untrusted.
 * @param options What to expect.
 * @returns The verified envelope.
 * @throws {TooLargeError} Over `maxBytes` (code `too_large`).
 * @throws {ValidationError} Malformed (code `malformed`) or data not matching the schema (`invalid`).
 * @throws {SignatureError} Bad signature (`signature_invalid`), expired (`expired`), or a claim
 * that does not hold (`claim_invalid`).
 */
export async function verifyEnvelope<S extends z.ZodType>(
  jws: string,
  options: VerifyOptions<S>,
): Promise<VerifiedEnvelope<z.output<S>>> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_ENVELOPE_BYTES;
  if (typeof jws !== "string") {
    throw new ValidationError("Envelope must be a string", { code: "malformed" });
  }
  if (jws.length > maxBytes) {
    throw new TooLargeError(`Envelope is ${jws.length} bytes, over the limit of ${maxBytes}`);
  }
  if (!COMPACT_JWS_RE.test(jws)) {
    throw new ValidationError("Envelope is not a compact JWS", { code: "malformed" });
  }
  const clock = options.clock ?? systemClock;
  const tolerance = options.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_S;
  let kid = "";
  let result;
  try {
    result = await jwtVerify(jws, async (header) => {
      if (typeof header.kid !== "string") {
        throw new ValidationError("Envelope header has no kid", { code: "malformed" });
      }
      kid = header.kid;
      return await importPublicKey(publicKeyFromNodeId(header.kid));
    }, {
      algorithms: ["EdDSA"],
      typ: options.type,
      audience: options.audience,
      currentDate: new Date(clock.now()),
      clockTolerance: tolerance,
      requiredClaims: ["iss", "aud", "iat", "exp", "jti"],
    });
  } catch (err) {
    throw mapJoseError(err);
  }
  const { payload, protectedHeader } = result;
  if (payload.iss !== kid) {
    throw new SignatureError("Envelope issuer differs from its signing key id", {
      code: "claim_invalid",
    });
  }
  const iat = payload.iat as number;
  const exp = payload.exp as number;
  if (!Number.isInteger(iat) || !Number.isInteger(exp) || exp <= iat) {
    throw new ValidationError("Envelope times must be whole seconds with exp after iat", {
      code: "malformed",
    });
  }
  if (iat > clock.now() / 1000 + tolerance) {
    throw new SignatureError("Envelope is issued in the future", { code: "claim_invalid" });
  }
  if (options.maxTtlSeconds !== undefined && exp - iat > options.maxTtlSeconds) {
    throw new SignatureError(
      `Envelope lifetime ${exp - iat} s is over the limit of ${options.maxTtlSeconds} s`,
      { code: "claim_invalid" },
    );
  }
  if (typeof payload.jti !== "string" || !isUuid(payload.jti)) {
    throw new ValidationError("Envelope id (jti) must be a UUID", { code: "malformed" });
  }
  if (!("dat" in payload)) {
    throw new ValidationError("Envelope has no data (dat)", { code: "malformed" });
  }
  const data = parseWith(options.schema, payload.dat, options.what ?? "envelope data");
  return {
    jws,
    issuer: kid,
    id: payload.jti,
    type: protectedHeader.typ as string,
    audience: Array.isArray(payload.aud) ? payload.aud : [payload.aud as string],
    issuedAt: iat,
    expiresAt: exp,
    data,
  };
}

function mapJoseError(err: unknown): Error {
  if (err instanceof ValidationError || err instanceof SignatureError) return err;
  if (err instanceof joseErrors.JWTExpired) {
    return new SignatureError("Envelope has expired", { code: "expired", cause: err });
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) {
    return new SignatureError("Envelope signature does not verify", { cause: err });
  }
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    return new SignatureError(`Envelope claim "${err.claim}" is not acceptable: ${err.reason}`, {
      code: "claim_invalid",
      cause: err,
    });
  }
  if (err instanceof joseErrors.JOSEAlgNotAllowed) {
    return new SignatureError("Envelope algorithm is not EdDSA", {
      code: "claim_invalid",
      cause: err,
    });
  }
  if (err instanceof joseErrors.JOSEError) {
    return new ValidationError(`Envelope is malformed: ${err.message}`, {
      code: "malformed",
      cause: err,
    });
  }
  return new SignatureError("Envelope does not verify", { cause: err });
}
