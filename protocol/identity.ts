/**
 * Node identity: an Ed25519 key pair and the printable node id derived from its public key.
 *
 * The node id is the libp2p peer id of the same key (identity multihash of the protobuf-encoded
 * public key, in base58btc), so one key names a node both in signed envelopes and on the
 * management VPNs, and anyone holding a node id holds the public key needed to verify what that
 * node signed. The format is specified in `docs/protocol/identity.md`.
 *
 * @module
 */

import { base58btc } from "multiformats/bases/base58";
import { ValidationError } from "./errors.ts";

/** A printable node id, such as `12D3KooW…`. */
export type NodeId = string;

/**
 * The bytes that precede the 32-byte Ed25519 public key in a node id: identity multihash code
 * (0x00), digest length (36), then the protobuf `PublicKey { Type: Ed25519, Data: bytes(32) }`.
 */
const NODE_ID_PREFIX = new Uint8Array([0x00, 0x24, 0x08, 0x01, 0x12, 0x20]);
const NODE_ID_BYTES = NODE_ID_PREFIX.length + 32;
const NODE_ID_RE = /^12D3KooW[1-9A-HJ-NP-Za-km-z]{44}$/;

/** The JSON form in which an identity is stored: a private Ed25519 JWK (RFC 8037). */
export interface IdentityJwk {
  kty: "OKP";
  crv: "Ed25519";
  /** Public key, base64url. */
  x: string;
  /** Private key, base64url. */
  d: string;
}

/**
 * Derives the node id of an Ed25519 public key.
 * @param publicKey The 32-byte raw public key.
 * @returns The node id.
 * @throws {ValidationError} When the key is not 32 bytes.
 */
export function nodeIdFromPublicKey(publicKey: Uint8Array): NodeId {
  if (publicKey.length !== 32) {
    throw new ValidationError(`Ed25519 public key must be 32 bytes, got ${publicKey.length}`);
  }
  const bytes = new Uint8Array(NODE_ID_BYTES);
  bytes.set(NODE_ID_PREFIX);
  bytes.set(publicKey, NODE_ID_PREFIX.length);
  return base58btc.baseEncode(bytes);
}

/**
 * Tells whether a string is a well-formed node id (without checking that the key is a valid point).
 * @param value Any string.
 * @returns `true` when `value` decodes to an Ed25519 node id.
 */
export function isNodeId(value: string): boolean {
  if (!NODE_ID_RE.test(value)) return false;
  try {
    publicKeyFromNodeId(value);
    return true;
  } catch {
    return false;
  }
}

/**
 * Extracts the Ed25519 public key from a node id.
 * @param nodeId A node id.
 * @returns The 32-byte raw public key.
 * @throws {ValidationError} When `nodeId` is not an Ed25519 node id.
 */
export function publicKeyFromNodeId(nodeId: string): Uint8Array {
  let bytes: Uint8Array;
  try {
    bytes = base58btc.baseDecode(nodeId);
  } catch (cause) {
    throw new ValidationError("Node id is not base58btc", { code: "node_id_invalid", cause });
  }
  if (
    bytes.length !== NODE_ID_BYTES || NODE_ID_PREFIX.some((b, i) => bytes[i] !== b)
  ) {
    throw new ValidationError("Node id is not an Ed25519 identity", { code: "node_id_invalid" });
  }
  return bytes.slice(NODE_ID_PREFIX.length);
}

/**
 * Imports a raw Ed25519 public key for verifying.
 * @param publicKey 32 raw bytes.
 * @returns A Web Crypto key usable with `crypto.subtle.verify` and `jose`.
 */
export function importPublicKey(publicKey: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey(
    "raw",
    publicKey as Uint8Array<ArrayBuffer>,
    { name: "Ed25519" },
    true,
    ["verify"],
  );
}

function b64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function fromB64url(text: string): Uint8Array {
  const s = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

/**
 * A node's Ed25519 key pair with its node id.
 *
 * @example
 * ```ts
 * import { NodeIdentity } from "./identity.ts";
 * const me = await NodeIdentity.generate();
 * console.log(me.nodeId); // 12D3KooW…
 * ```
 */
export class NodeIdentity {
  /** The node id derived from the public key. */
  readonly nodeId: NodeId;
  /** The raw 32-byte public key. */
  readonly publicKey: Uint8Array;
  /** The private key, usable only for signing. */
  readonly privateKey: CryptoKey;
  /** The public key as a Web Crypto key. */
  readonly verifyKey: CryptoKey;
  #jwk: IdentityJwk;

  private constructor(
    publicKey: Uint8Array,
    privateKey: CryptoKey,
    verifyKey: CryptoKey,
    jwk: IdentityJwk,
  ) {
    this.publicKey = publicKey;
    this.privateKey = privateKey;
    this.verifyKey = verifyKey;
    this.nodeId = nodeIdFromPublicKey(publicKey);
    this.#jwk = jwk;
  }

  /**
   * Makes a new random identity.
   * @returns The identity.
   */
  static async generate(): Promise<NodeIdentity> {
    const pair = (await crypto.subtle.generateKey({ name: "Ed25519" }, true, [
      "sign",
      "verify",
    ])) as CryptoKeyPair;
    const jwk = await crypto.subtle.exportKey("jwk", pair.privateKey);
    return NodeIdentity.fromJwk(jwk);
  }

  /**
   * Loads an identity from its stored JWK form.
   * @param jwk A private Ed25519 JWK with `x` and `d`.
   * @returns The identity.
   * @throws {ValidationError} When the JWK is not a private Ed25519 key or `x` does not match `d`.
   */
  static async fromJwk(jwk: unknown): Promise<NodeIdentity> {
    const j = jwk as Partial<IdentityJwk> | null;
    if (
      !j || typeof j !== "object" || j.kty !== "OKP" || j.crv !== "Ed25519" ||
      typeof j.x !== "string" || typeof j.d !== "string"
    ) {
      throw new ValidationError("Identity must be a private Ed25519 JWK", {
        code: "identity_invalid",
      });
    }
    const clean: IdentityJwk = { kty: "OKP", crv: "Ed25519", x: j.x, d: j.d };
    let privateKey: CryptoKey;
    try {
      privateKey = await crypto.subtle.importKey("jwk", { ...clean }, { name: "Ed25519" }, false, [
        "sign",
      ]);
    } catch (cause) {
      throw new ValidationError("Identity key does not import", {
        code: "identity_invalid",
        cause,
      });
    }
    const publicKey = fromB64url(clean.x);
    const verifyKey = await importPublicKey(publicKey);
    // Check that the public half belongs to the private half: sign and verify a probe.
    const probe = new TextEncoder().encode("truecloud identity check");
    const sig = await crypto.subtle.sign({ name: "Ed25519" }, privateKey, probe);
    if (!(await crypto.subtle.verify({ name: "Ed25519" }, verifyKey, sig, probe))) {
      throw new ValidationError("Identity public key does not match its private key", {
        code: "identity_invalid",
      });
    }
    return new NodeIdentity(publicKey, privateKey, verifyKey, clean);
  }

  /**
   * The identity in its storable form; contains the private key, so keep it secret.
   * @returns A private Ed25519 JWK.
   */
  toJwk(): IdentityJwk {
    return { ...this.#jwk };
  }

  /**
   * Signs bytes with Ed25519.
   * @param data The message.
   * @returns The 64-byte signature.
   */
  async sign(data: Uint8Array): Promise<Uint8Array> {
    return new Uint8Array(
      await crypto.subtle.sign(
        { name: "Ed25519" },
        this.privateKey,
        data as Uint8Array<ArrayBuffer>,
      ),
    );
  }

  /** @returns The node id (never the key). */
  toString(): string {
    return this.nodeId;
  }
}

/**
 * Verifies a raw Ed25519 signature by the node named `nodeId`.
 * @param nodeId The signer's node id.
 * @param signature The 64-byte signature.
 * @param data The signed message.
 * @returns `true` when the signature is valid.
 * @throws {ValidationError} When `nodeId` is malformed.
 */
export async function verifyBytes(
  nodeId: NodeId,
  signature: Uint8Array,
  data: Uint8Array,
): Promise<boolean> {
  const key = await importPublicKey(publicKeyFromNodeId(nodeId));
  return crypto.subtle.verify(
    { name: "Ed25519" },
    key,
    signature as Uint8Array<ArrayBuffer>,
    data as Uint8Array<ArrayBuffer>,
  );
}

export { b64url as base64url, fromB64url as fromBase64url };
