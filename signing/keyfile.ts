/**
 * Encrypted key files: an Ed25519 seed sealed with XChaCha20-Poly1305 under a key derived from a
 * passphrase with scrypt (`@noble/hashes`, `@noble/ciphers`), as `docs/protocol/releases.md`
 * specifies. Nothing here prints or logs a secret.
 *
 * @module
 */

import { scryptAsync } from "@noble/hashes/scrypt.js";
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { canonicalize } from "./_canonical.ts";
import { ed25519FromSeed, type Ed25519Key } from "./ed25519.ts";
import { fromHex, SignatureError, toHex, ValidationError, z } from "../protocol/mod.ts";

/** scrypt cost the tool writes: 2^17 (about half a second here). */
export const DEFAULT_SCRYPT_N = 2 ** 17;
/** Lowest scrypt cost a key file may use. */
export const MIN_SCRYPT_N = 2 ** 14;

const hexOf = (bytes: number) => z.string().regex(new RegExp(`^[0-9a-f]{${bytes * 2}}$`));

/** The schema of a key file. */
export const keyFileSchema = z.strictObject({
  format: z.literal("truecloud-key-v1"),
  role: z.enum(["root", "targets", "snapshot", "timestamp", "release"]),
  comment: z.string().max(200),
  algorithm: z.literal("ed25519"),
  publicKey: hexOf(32),
  kdf: z.strictObject({
    name: z.literal("scrypt"),
    N: z.number().int().min(MIN_SCRYPT_N).max(2 ** 22).refine(
      (n) => Number.isInteger(Math.log2(n)),
      "Must be a power of two",
    ),
    r: z.number().int().min(1).max(32),
    p: z.number().int().min(1).max(16),
    salt: hexOf(32),
  }),
  cipher: z.strictObject({ name: z.literal("xchacha20-poly1305"), nonce: hexOf(24) }),
  ciphertext: hexOf(48),
});

/** A key file, as stored. */
export type KeyFile = z.output<typeof keyFileSchema>;
/** The role a key serves. */
export type KeyRole = KeyFile["role"];

function associatedData(f: Omit<KeyFile, "ciphertext">): Uint8Array {
  const { ciphertext: _, ...rest } = f as KeyFile;
  return new TextEncoder().encode(canonicalize(rest));
}

async function deriveKey(passphrase: string, kdf: KeyFile["kdf"]): Promise<Uint8Array> {
  return await scryptAsync(
    new TextEncoder().encode(passphrase.normalize("NFC")),
    fromHex(kdf.salt),
    {
      N: kdf.N,
      r: kdf.r,
      p: kdf.p,
      dkLen: 32,
    },
  );
}

/**
 * Seals a key into a key file.
 * @param key The key pair.
 * @param passphrase The passphrase (at least 8 characters).
 * @param meta Role and comment; scrypt cost (tests use less).
 * @returns The key file.
 * @throws {ValidationError} When the passphrase is too short.
 */
export async function sealKey(
  key: Ed25519Key,
  passphrase: string,
  meta: { role: KeyRole; comment: string; scryptN?: number },
): Promise<KeyFile> {
  if ([...passphrase].length < 8) {
    throw new ValidationError("Passphrase must have at least 8 characters", {
      code: "passphrase_too_short",
    });
  }
  const head: Omit<KeyFile, "ciphertext"> = {
    format: "truecloud-key-v1",
    role: meta.role,
    comment: meta.comment,
    algorithm: "ed25519",
    publicKey: toHex(key.publicKey),
    kdf: {
      name: "scrypt",
      N: meta.scryptN ?? DEFAULT_SCRYPT_N,
      r: 8,
      p: 1,
      salt: toHex(crypto.getRandomValues(new Uint8Array(32))),
    },
    cipher: {
      name: "xchacha20-poly1305",
      nonce: toHex(crypto.getRandomValues(new Uint8Array(24))),
    },
  };
  const k = await deriveKey(passphrase, head.kdf);
  const sealed = xchacha20poly1305(k, fromHex(head.cipher.nonce), associatedData(head)).encrypt(
    key.seed,
  );
  k.fill(0);
  return keyFileSchema.parse({ ...head, ciphertext: toHex(sealed) });
}

/**
 * Opens a key file.
 * @param file The key file, untrusted.
 * @param passphrase The passphrase.
 * @returns The key pair.
 * @throws {ValidationError} When the file is malformed.
 * @throws {SignatureError} When the passphrase is wrong or the file was altered (the same error).
 */
export async function openKey(
  file: unknown,
  passphrase: string,
): Promise<Ed25519Key & { file: KeyFile }> {
  const parsed = keyFileSchema.safeParse(file);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ValidationError(
      `Not a key file: ${issue.path.join(".") || "(root)"}: ${issue.message}`,
      {
        code: "key_file_invalid",
      },
    );
  }
  const f = parsed.data;
  const k = await deriveKey(passphrase, f.kdf);
  let seed: Uint8Array;
  try {
    seed = xchacha20poly1305(k, fromHex(f.cipher.nonce), associatedData(f)).decrypt(
      fromHex(f.ciphertext),
    );
  } catch {
    throw new SignatureError("Cannot open key file: wrong passphrase or damaged file", {
      code: "key_file_locked",
    });
  } finally {
    k.fill(0);
  }
  const key = await ed25519FromSeed(seed);
  seed.fill(0);
  if (toHex(key.publicKey) !== f.publicKey) {
    throw new SignatureError("Cannot open key file: wrong passphrase or damaged file", {
      code: "key_file_locked",
    });
  }
  return { ...key, file: f };
}
