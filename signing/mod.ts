/**
 * The offline signing tool (`docs/protocol/releases.md`): Ed25519 keys from raw seeds, encrypted
 * key files (scrypt and XChaCha20-Poly1305), minisign-compatible signatures that the stock
 * `minisign -V` verifies, the airgap check, and signed ceremony transcripts. `main.ts` is the
 * `deno task sign` command line.
 *
 * @module
 */

export * from "./airgap.ts";
export * from "./ed25519.ts";
export * from "./keyfile.ts";
export * from "./minisign.ts";
export * from "./transcript.ts";
