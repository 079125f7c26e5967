/**
 * A TUF release repository on disk, laid out as the gateway serves it: `N.root.json` for every
 * root version, `targets.json`, `snapshot.json`, `timestamp.json`, and `targets/<path>`
 * (`consistent_snapshot` is false).
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { Metadata, Root, Snapshot, Targets, Timestamp } from "@tufjs/models";
import { ValidationError } from "../protocol/mod.ts";
import { metadataBytes, type TargetInfo } from "./tuf.ts";

const SAFE_PATH = /^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,127}\/){0,7}[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * Checks a target path: up to eight segments of letters, digits, dot, dash and underscore, none
 * starting with a dot — so no traversal, no hidden files, nothing a shell or a URL would mangle.
 * @param path The path under `targets/`.
 * @returns The path.
 * @throws {ValidationError} When it is not a safe target path.
 */
export function safeTargetPath(path: string): string {
  if (!SAFE_PATH.test(path) || path.split("/").some((s) => s === "." || s === "..")) {
    throw new ValidationError(`Not a target path: ${JSON.stringify(path.slice(0, 80))}`, {
      code: "invalid_path",
    });
  }
  return path;
}

/**
 * Describes a file as a target, hashing it as a stream.
 * @param file The file on disk.
 * @param path Its path in the repository.
 * @param custom Custom fields.
 */
export async function describeTarget(
  file: string,
  path: string,
  custom?: Record<string, string>,
): Promise<TargetInfo> {
  const h = createHash("sha256");
  let length = 0;
  const f = await Deno.open(file);
  for await (const chunk of f.readable) {
    h.update(chunk);
    length += chunk.length;
  }
  return { path: safeTargetPath(path), length, sha256: h.digest("hex"), custom };
}

/** Signed metadata of every role. */
export interface RepositoryMetadata {
  /** Every root version, oldest first. */
  roots: Metadata<Root>[];
  /** Targets. */
  targets: Metadata<Targets>;
  /** Snapshot. */
  snapshot: Metadata<Snapshot>;
  /** Timestamp. */
  timestamp: Metadata<Timestamp>;
}

/**
 * Writes the metadata into a repository directory (targets are copied in separately).
 * @param dir The repository directory.
 * @param md The signed metadata.
 */
export async function writeMetadata(dir: string, md: RepositoryMetadata): Promise<void> {
  await Deno.mkdir(`${dir}/targets`, { recursive: true });
  for (const root of md.roots) {
    await Deno.writeFile(`${dir}/${root.signed.version}.root.json`, metadataBytes(root));
  }
  await Deno.writeFile(`${dir}/targets.json`, metadataBytes(md.targets));
  await Deno.writeFile(`${dir}/snapshot.json`, metadataBytes(md.snapshot));
  await Deno.writeFile(`${dir}/timestamp.json`, metadataBytes(md.timestamp));
}

/**
 * Copies a file into the repository's targets.
 * @param dir The repository directory.
 * @param file The file.
 * @param path Its target path.
 */
export async function addTargetFile(dir: string, file: string, path: string): Promise<void> {
  const dest = `${dir}/targets/${safeTargetPath(path)}`;
  await Deno.mkdir(dest.slice(0, dest.lastIndexOf("/")), { recursive: true });
  await Deno.copyFile(file, dest);
}
