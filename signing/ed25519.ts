/**
 * Ed25519 from a raw 32-byte seed, through Web Crypto: what the signing tool's key files hold.
 *
 * @module
 */

const PKCS8_ED25519_PREFIX = Uint8Array.from([
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x70,
  0x04,
  0x22,
  0x04,
  0x20,
]);

/** An Ed25519 key pair held in memory. */
export interface Ed25519Key {
  /** The 32-byte seed (secret). */
  seed: Uint8Array;
  /** The 32-byte public key. */
  publicKey: Uint8Array;
  /** Signs a message. */
  sign(message: Uint8Array): Promise<Uint8Array>;
}

/**
 * Builds a key pair from a seed.
 * @param seed 32 secret bytes.
 * @returns The key pair.
 */
export async function ed25519FromSeed(seed: Uint8Array): Promise<Ed25519Key> {
  if (seed.length !== 32) throw new RangeError("An Ed25519 seed is 32 bytes");
  const pkcs8 = new Uint8Array(48);
  pkcs8.set(PKCS8_ED25519_PREFIX);
  pkcs8.set(seed, 16);
  const priv = await crypto.subtle.importKey("pkcs8", pkcs8, { name: "Ed25519" }, true, ["sign"]);
  pkcs8.fill(0);
  const jwk = await crypto.subtle.exportKey("jwk", priv);
  const publicKey = Uint8Array.from(
    atob(jwk.x!.replaceAll("-", "+").replaceAll("_", "/")),
    (c) => c.charCodeAt(0),
  );
  return {
    seed: seed.slice(),
    publicKey,
    async sign(message) {
      return new Uint8Array(
        await crypto.subtle.sign({ name: "Ed25519" }, priv, message as Uint8Array<ArrayBuffer>),
      );
    },
  };
}

/**
 * Makes a new random key pair.
 * @returns The key pair.
 */
export function generateEd25519(): Promise<Ed25519Key> {
  return ed25519FromSeed(crypto.getRandomValues(new Uint8Array(32)));
}

/**
 * Verifies an Ed25519 signature.
 * @param publicKey 32 bytes.
 * @param signature 64 bytes.
 * @param message The signed message.
 * @returns Whether it verifies.
 */
export async function ed25519Verify(
  publicKey: Uint8Array,
  signature: Uint8Array,
  message: Uint8Array,
): Promise<boolean> {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  const key = await crypto.subtle.importKey(
    "raw",
    publicKey as Uint8Array<ArrayBuffer>,
    { name: "Ed25519" },
    false,
    ["verify"],
  );
  return await crypto.subtle.verify(
    { name: "Ed25519" },
    key,
    signature as Uint8Array<ArrayBuffer>,
    message as Uint8Array<ArrayBuffer>,
  );
}
