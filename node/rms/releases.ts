/**
 * What a node knows of releases: the component library's targets, verified through TUF against a
 * pinned root and refreshed, for judging newcomers' attestations; and its own release, fetched and
 * verified the same way and measured, for its own attestation.
 *
 * @module
 */

import { TufClient } from "../../library/mod.ts";
import type { Logger } from "../../protocol/mod.ts";
import {
  catalogFromTargets,
  measureRelease,
  type ReleaseCatalog,
  type ReleaseClaim,
} from "./attestation.ts";

/** The releases a node trusts, kept fresh. */
export interface TrustedReleases {
  /** This node's own release, measured. */
  claim: ReleaseClaim;
  /** The current releases. */
  catalog(): ReleaseCatalog;
  /** Stops refreshing. */
  stop(): void;
}

/**
 * Pins the root (on first use), updates the metadata, downloads and measures this node's release.
 * @param o Repository URL, trusted-metadata directory, root to pin, release target, fetch, logger.
 */
export async function trustReleases(o: {
  tufUrl: string;
  dir: string;
  root: string;
  release: string;
  fetch?: typeof fetch;
  log: Logger;
  refreshMs?: number;
}): Promise<TrustedReleases> {
  await Deno.mkdir(o.dir, { recursive: true, mode: 0o700 });
  try {
    await Deno.stat(`${o.dir}/root.json`);
  } catch {
    await Deno.copyFile(o.root, `${o.dir}/root.json`);
  }
  const tuf = new TufClient({ metadataUrl: o.tufUrl, dir: o.dir, fetch: o.fetch });
  let catalog = catalogFromTargets((await tuf.update()).signed.targets);
  const file = `${o.dir}/${o.release.split("/").pop()}`;
  await tuf.download(o.release, file);
  const claim = await measureRelease(file, o.release);
  const timer = setInterval(async () => {
    try {
      catalog = catalogFromTargets((await tuf.update()).signed.targets);
    } catch (err) {
      o.log.warn("Release catalogue refresh failed", { err: String(err) });
    }
  }, o.refreshMs ?? 10 * 60_000);
  return { claim, catalog: () => catalog, stop: () => clearInterval(timer) };
}
