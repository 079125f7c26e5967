/**
 * minisign-compatible public keys and signatures (`docs/protocol/releases.md`): the stock
 * `minisign -V` verifies what this module signs, and this module verifies what minisign signs.
 * Files are hashed with BLAKE2b-512 (`hash-wasm`), streamed, never read whole into memory.
 *
 * @module
 */

import { createBLAKE2b } from "hash-wasm";
import { concatBytes, SignatureError, ValidationError } from "../protocol/mod.ts";
import { type Ed25519Key, ed25519Verify } from "./ed25519.ts";

/** A minisign public key. */
export interface MinisignPublicKey {
  /** The 8-byte key id. */
  keyId: Uint8Array;
  /** The Ed25519 public key. */
  publicKey: Uint8Array;
}

/** A parsed `.minisig` file. */
export interface MinisignSignature {
  /** `ED` (BLAKE2b-512 prehashed, what this module writes) or `Ed` (legacy, whole file). */
  algorithm: "ED" | "Ed";
  /** The signing key's id. */
  keyId: Uint8Array;
  /** The Ed25519 signature of the file (or of its hash). */
  signature: Uint8Array;
  /** The untrusted comment. */
  untrustedComment: string;
  /** The trusted comment (signed). */
  trustedComment: string;
  /** The signature over `signature ‖ trustedComment`. */
  globalSignature: Uint8Array;
}

const b64 = (b: Uint8Array) => btoa(String.fromCharCode(...b));
function unb64(s: string, what: string): Uint8Array {
  try {
    return Uint8Array.from(atob(s.trim()), (c) => c.charCodeAt(0));
  } catch (cause) {
    throw new ValidationError(`${what} is not base64`, { code: "malformed", cause });
  }
}
const keyIdHex = (id: Uint8Array) =>
  Array.from(id, (b) => b.toString(16).padStart(2, "0")).reverse().join("").toUpperCase();
const concat = (...parts: Uint8Array[]) => concatBytes(parts);

/**
 * Writes a public key in minisign's `.pub` format.
 * @param key The key id and public key.
 * @returns The file's text.
 */
export function formatPublicKey(key: MinisignPublicKey): string {
  const body = concat(new TextEncoder().encode("Ed"), key.keyId, key.publicKey);
  return `untrusted comment: minisign public key ${keyIdHex(key.keyId)}\n${b64(body)}\n`;
}

/**
 * Reads a public key in minisign's `.pub` format (or the bare base64 line).
 * @param text The file's text.
 * @returns The key.
 * @throws {ValidationError} When it is not a minisign Ed25519 public key.
 */
export function parsePublicKey(text: string): MinisignPublicKey {
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter(Boolean);
  const line = lines.find((l) => !l.startsWith("untrusted comment:"));
  if (!line) throw new ValidationError("Public key file has no key line", { code: "malformed" });
  const raw = unb64(line, "Public key");
  if (raw.length !== 42 || raw[0] !== 0x45 || raw[1] !== 0x64) {
    throw new ValidationError("Not a minisign Ed25519 public key", { code: "malformed" });
  }
  return { keyId: raw.slice(2, 10), publicKey: raw.slice(10) };
}

/**
 * Hashes a stream with BLAKE2b-512.
 * @param data The bytes, as a stream or an array.
 * @returns The 64-byte digest.
 */
export async function blake2b512(
  data: ReadableStream<Uint8Array> | Uint8Array,
): Promise<Uint8Array> {
  const h = await createBLAKE2b(512);
  h.init();
  if (data instanceof Uint8Array) h.update(data);
  else for await (const chunk of data) h.update(chunk);
  return h.digest("binary");
}

/**
 * Signs data in minisign's prehashed form.
 * @param key The signing key and its minisign key id.
 * @param data The file's bytes, as a stream or an array.
 * @param comments The trusted comment (signed) and the untrusted one.
 * @returns The `.minisig` file's text.
 * @throws {ValidationError} When a comment has a line break.
 */
export async function signMinisign(
  key: Ed25519Key & { keyId: Uint8Array },
  data: ReadableStream<Uint8Array> | Uint8Array,
  comments: { trusted: string; untrusted?: string },
): Promise<string> {
  const untrusted = comments.untrusted ?? "signature from True Cloud release key";
  if (/[\r\n]/.test(comments.trusted) || /[\r\n]/.test(untrusted)) {
    throw new ValidationError("A minisign comment must be one line", { code: "invalid" });
  }
  const digest = await blake2b512(data);
  const signature = await key.sign(digest);
  const trusted = new TextEncoder().encode(comments.trusted);
  const global = await key.sign(concat(signature, trusted));
  const sigLine = b64(concat(new TextEncoder().encode("ED"), key.keyId, signature));
  return `untrusted comment: ${untrusted}\n${sigLine}\ntrusted comment: ${comments.trusted}\n${
    b64(global)
  }\n`;
}

/**
 * Reads a `.minisig` file.
 * @param text The file's text.
 * @returns The parsed signature.
 * @throws {ValidationError} When it is not a minisign signature.
 */
export function parseSignature(text: string): MinisignSignature {
  const lines = text.split(/\r?\n/);
  if (
    lines.length < 4 || !lines[0].startsWith("untrusted comment:") ||
    !lines[2].startsWith("trusted comment: ")
  ) {
    throw new ValidationError("Not a minisign signature file", { code: "malformed" });
  }
  const raw = unb64(lines[1], "Signature");
  const alg = String.fromCharCode(raw[0] ?? 0, raw[1] ?? 0);
  if (raw.length !== 74 || (alg !== "ED" && alg !== "Ed")) {
    throw new ValidationError("Not a minisign Ed25519 signature", { code: "malformed" });
  }
  const globalSignature = unb64(lines[3], "Global signature");
  if (globalSignature.length !== 64) {
    throw new ValidationError("Global signature is not 64 bytes", { code: "malformed" });
  }
  return {
    algorithm: alg,
    keyId: raw.slice(2, 10),
    signature: raw.slice(10),
    untrustedComment: lines[0].slice("untrusted comment:".length).trim(),
    trustedComment: lines[2].slice("trusted comment: ".length),
    globalSignature,
  };
}

/**
 * Verifies a minisign signature as `minisign -V` does: key id, signature of the file (prehashed or
 * legacy), and the global signature over the trusted comment.
 *
 * @param key The public key.
 * @param signatureText The `.minisig` file's text.
 * @param data The file's bytes (a stream for prehashed signatures, an array for either).
 * @returns The trusted comment.
 * @throws {ValidationError} When the signature file is malformed.
 * @throws {SignatureError} When the key id differs or a signature does not verify.
 */
export async function verifyMinisign(
  key: MinisignPublicKey,
  signatureText: string,
  data: ReadableStream<Uint8Array> | Uint8Array,
): Promise<string> {
  const sig = parseSignature(signatureText);
  if (sig.keyId.some((b, i) => b !== key.keyId[i])) {
    throw new SignatureError(
      `Signature is by key ${keyIdHex(sig.keyId)}, not ${keyIdHex(key.keyId)}`,
      { code: "wrong_key" },
    );
  }
  let message: Uint8Array;
  if (sig.algorithm === "ED") message = await blake2b512(data);
  else if (data instanceof Uint8Array) message = data;
  else message = new Uint8Array(await new Response(data).arrayBuffer());
  if (!(await ed25519Verify(key.publicKey, sig.signature, message))) {
    throw new SignatureError("Signature verification failed", { code: "signature_invalid" });
  }
  const trusted = new TextEncoder().encode(sig.trustedComment);
  if (!(await ed25519Verify(key.publicKey, sig.globalSignature, concat(sig.signature, trusted)))) {
    throw new SignatureError("Trusted comment signature verification failed", {
      code: "signature_invalid",
    });
  }
  return sig.trustedComment;
}
