/**
 * The Cloud File System: the user's files (`files.ts`, served over WebDAV on loopback by
 * `webdav.ts`) on a pool that stripes them over eight leased volumes with Reed–Solomon 5+3
 * (`pool.ts`, `erasure/`), kept whole by `cfs.ts` through losses, and shown by the host-only UI
 * (`ui.ts`).
 *
 * @module
 */

export * from "./byte_store.ts";
export * from "./cfs.ts";
export * from "./erasure/mod.ts";
export * from "./files.ts";
export * from "./pool.ts";
export * from "./status.ts";
export * from "./ui.ts";
export * from "./webdav.ts";
