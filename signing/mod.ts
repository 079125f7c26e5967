/**
 * The offline signing tool's building blocks (`docs/protocol/releases.md`): Ed25519 keys from raw
 * seeds, encrypted key files (scrypt and XChaCha20-Poly1305), and minisign-compatible signatures
 * that the stock `minisign -V` verifies. The TUF ceremonies are built on these.
 *
 * @module
 */

export * from "./ed25519.ts";
export * from "./keyfile.ts";
export * from "./minisign.ts";
