/**
 * TUF metadata for the release repository, written with `@tufjs/models` (never by hand) and signed
 * over its canonical JSON (`docs/protocol/releases.md`).
 *
 * Signing goes through `@noble/curves`' Ed25519, which signs synchronously as `@tufjs/models`
 * requires; keys are the same 32-byte seeds the signing tool keeps in its encrypted key files.
 *
 * @module
 */

import { ed25519 } from "@noble/curves/ed25519.js";
import { sha256 } from "@noble/hashes/sha2.js";
import {
  Key,
  Metadata,
  MetaFile,
  Root,
  Signature,
  Snapshot,
  TargetFile,
  Targets,
  Timestamp,
} from "@tufjs/models";
import { canonicalize } from "@tufjs/canonical-json";
import { toHex } from "../protocol/mod.ts";

const DAY = 86_400_000;

/** A TUF signing key: its public `Key` and a synchronous signer. */
export interface TufSigner {
  /** The key id (SHA-256 of the key's canonical JSON). */
  keyId: string;
  /** The public key as TUF metadata carries it. */
  key: Key;
  /** Signs canonical bytes, as `Metadata.sign` wants. */
  sign(data: Uint8Array): Signature;
}

/**
 * Makes a TUF signer from an Ed25519 seed.
 * @param seed The 32-byte seed.
 * @returns The signer.
 */
export function tufSigner(seed: Uint8Array): TufSigner {
  const { keyId, key } = tufPublicKey(ed25519.getPublicKey(seed));
  const secret = seed.slice();
  return {
    keyId,
    key,
    sign: (data) => new Signature({ keyID: keyId, sig: toHex(ed25519.sign(data, secret)) }),
  };
}

/**
 * The TUF form of an Ed25519 public key and its key id (SHA-256 of the key's canonical JSON).
 * @param publicKey 32 bytes.
 */
export function tufPublicKey(publicKey: Uint8Array): { keyId: string; key: Key } {
  const keyJson = { keytype: "ed25519", scheme: "ed25519", keyval: { public: toHex(publicKey) } };
  const keyId = toHex(sha256(new TextEncoder().encode(canonicalize(keyJson))));
  const key = new Key({
    keyID: keyId,
    keyType: "ed25519",
    scheme: "ed25519",
    keyVal: keyJson.keyval,
  });
  return { keyId, key };
}

/** Expiry in the TUF form, `YYYY-MM-DDTHH:MM:SSZ`. */
export function tufExpiry(from: Date, days: number): string {
  return new Date(from.getTime() + days * DAY).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** The keys of a repository's roles. */
export interface RoleSigners {
  /** Root keys. */
  root: TufSigner[];
  /** How many root keys must sign root metadata. */
  rootThreshold: number;
  /** Targets keys (threshold 1). */
  targets: TufSigner[];
  /** The online snapshot key. */
  snapshot: TufSigner;
  /** The online timestamp key. */
  timestamp: TufSigner;
}

/** Marks metadata signed by development keys. */
const DEVELOPMENT = { "x-truecloud-development": true };

/**
 * Builds root metadata (unsigned).
 * @param signers The roles' keys.
 * @param options Version, expiry, and whether the keys are development keys.
 * @returns The metadata, to be signed by a threshold of root keys.
 */
export function buildRoot(
  signers: RoleSigners,
  options: { version: number; expires: string; development?: boolean },
): Metadata<Root> {
  // @tufjs/models does not export its Role class: build the root from its JSON form, which
  // Root.fromJSON validates.
  const keys: Record<string, unknown> = {};
  for (const s of [...signers.root, ...signers.targets, signers.snapshot, signers.timestamp]) {
    keys[s.keyId] = s.key.toJSON();
  }
  const role = (ids: string[], threshold: number) => ({ keyids: ids, threshold });
  const root = Root.fromJSON({
    _type: "root",
    spec_version: "1.0.31",
    version: options.version,
    expires: options.expires,
    keys,
    roles: {
      root: role(signers.root.map((s) => s.keyId), signers.rootThreshold),
      targets: role(signers.targets.map((s) => s.keyId), 1),
      snapshot: role([signers.snapshot.keyId], 1),
      timestamp: role([signers.timestamp.keyId], 1),
    },
    consistent_snapshot: false,
    ...(options.development ? DEVELOPMENT : {}),
  } as never);
  return new Metadata(root);
}

/** A target: its path in the repository and its bytes' length and SHA-256. */
export interface TargetInfo {
  /** Path under `targets/`, such as `installers/truecloud-0.1.0.sh`. */
  path: string;
  /** Length in bytes. */
  length: number;
  /** SHA-256, hex. */
  sha256: string;
  /** Custom fields, such as `{ "version": "0.1.0" }`. */
  custom?: Record<string, string>;
}

/**
 * Builds targets metadata (unsigned).
 * @param targets The targets.
 * @param options Version, expiry and development marking.
 */
export function buildTargets(
  targets: TargetInfo[],
  options: { version: number; expires: string; development?: boolean },
): Metadata<Targets> {
  const files: Record<string, TargetFile> = {};
  for (const t of targets) {
    files[t.path] = new TargetFile({
      path: t.path,
      length: t.length,
      hashes: { sha256: t.sha256 },
      unrecognizedFields: t.custom ? { custom: t.custom } : {},
    });
  }
  return new Metadata(
    new Targets({
      version: options.version,
      specVersion: "1.0.31",
      expires: options.expires,
      targets: files,
      unrecognizedFields: options.development ? DEVELOPMENT : {},
    }),
  );
}

/**
 * The bytes a metadata file is written as (and hashed over): canonical JSON.
 * @param md Signed metadata.
 */
export function metadataBytes(md: Metadata<Root | Targets | Snapshot | Timestamp>): Uint8Array {
  return new TextEncoder().encode(canonicalize(md.toJSON()));
}

/**
 * Builds snapshot metadata for the given targets metadata (unsigned).
 * @param targets Signed targets metadata.
 * @param options Version, expiry and development marking.
 */
export function buildSnapshot(
  targets: Metadata<Targets>,
  options: { version: number; expires: string; development?: boolean },
): Metadata<Snapshot> {
  const bytes = metadataBytes(targets);
  return new Metadata(
    new Snapshot({
      version: options.version,
      specVersion: "1.0.31",
      expires: options.expires,
      meta: {
        "targets.json": new MetaFile({
          version: targets.signed.version,
          length: bytes.length,
          hashes: { sha256: toHex(sha256(bytes)) },
        }),
      },
      unrecognizedFields: options.development ? DEVELOPMENT : {},
    }),
  );
}

/**
 * Builds timestamp metadata for the given snapshot (unsigned).
 * @param snapshot Signed snapshot metadata.
 * @param options Version, expiry and development marking.
 */
export function buildTimestamp(
  snapshot: Metadata<Snapshot>,
  options: { version: number; expires: string; development?: boolean },
): Metadata<Timestamp> {
  const bytes = metadataBytes(snapshot);
  return new Metadata(
    new Timestamp({
      version: options.version,
      specVersion: "1.0.31",
      expires: options.expires,
      snapshotMeta: new MetaFile({
        version: snapshot.signed.version,
        length: bytes.length,
        hashes: { sha256: toHex(sha256(bytes)) },
      }),
      unrecognizedFields: options.development ? DEVELOPMENT : {},
    }),
  );
}

/**
 * Signs metadata with each signer (appending to any signatures already there).
 * @param md The metadata.
 * @param signers The keys that sign.
 * @returns The same metadata.
 */
export function signWith<T extends Root | Targets | Snapshot | Timestamp>(
  md: Metadata<T>,
  signers: TufSigner[],
): Metadata<T> {
  for (const s of signers) md.sign((data) => s.sign(data), true);
  return md;
}

/** Default expiries of each role, in days. */
export const EXPIRY_DAYS = { root: 365, targets: 90, snapshot: 7, timestamp: 1 } as const;
