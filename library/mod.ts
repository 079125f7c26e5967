/**
 * The release repository: TUF metadata written with `@tufjs/models`, the repository on disk, and
 * its read-only HTTP routes (`docs/protocol/releases.md`).
 *
 * @module
 */

export * from "./app.ts";
export * from "./repository.ts";
export * from "./tuf.ts";
export * from "./dev_release.ts";
export * from "./files.ts";
export * from "./client.ts";
export * from "./timestamp.ts";
