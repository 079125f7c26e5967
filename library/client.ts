/**
 * Our TUF client (specification 1.0, §5 "Detailed client workflow"), for `deno task
 * fetch-installer` and the node agent: it updates root through every version, then timestamp,
 * snapshot and targets, and downloads a target, refusing each of the attacks TUF names —
 * rollback, freeze, mix-and-match, arbitrary software, endless data, a threshold not met, one key
 * counted twice, a key rotated out. Trusted metadata persists in a directory between runs, which is
 * what makes rollback detectable.
 *
 * Metadata is parsed and signatures are checked with `@tufjs/models`; thresholds are counted here,
 * over distinct public keys whose key ids match their content, which `Metadata.verifyDelegate`
 * does not do.
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  Metadata,
  MetadataKind,
  type Root,
  type Snapshot,
  type Targets,
  type Timestamp,
} from "@tufjs/models";
import { canonicalize } from "@tufjs/canonical-json";
import {
  type Clock,
  concatBytes,
  discardLogger,
  type Logger,
  systemClock,
  TrueCloudError,
} from "../protocol/mod.ts";
import { safeTargetPath } from "./repository.ts";

/** An update or download refused, with the attack or fault it stands for. */
export class TufError extends TrueCloudError {
  /**
   * @param message What was refused and why.
   * @param code `rollback`, `expired`, `mix_and_match`, `bad_hash`, `too_long`, `threshold`,
   * `bad_version`, `fetch_failed`, `malformed`, `not_found`.
   */
  constructor(message: string, code: string) {
    super(message, { code });
  }
}

const LIMITS = {
  root: 512 * 1024,
  timestamp: 16 * 1024,
  snapshot: 2 * 1024 * 1024,
  targets: 16 * 1024 * 1024,
};
const MAX_ROOT_ROTATIONS = 256;

/** Settings of a {@linkcode TufClient}. */
export interface TufClientOptions {
  /** Base URL of the metadata (`…/tuf`). */
  metadataUrl: string;
  /** Base URL of the targets (default `metadataUrl + "/targets"`). */
  targetsUrl?: string;
  /** Directory for trusted metadata; must hold the pinned `root.json` before the first update. */
  dir: string;
  /** Fetch to use. */
  fetch?: typeof fetch;
  /** Time source. */
  clock?: Clock;
  /** Logger. */
  log?: Logger;
}

type AnyMeta = Metadata<Root> | Metadata<Timestamp> | Metadata<Snapshot> | Metadata<Targets>;

function keyIdOf(key: { toJSON(): unknown }): string {
  return createHash("sha256").update(canonicalize(key.toJSON())).digest("hex");
}

/**
 * Counts a role's valid signatures on metadata: by keys listed for the role, whose key id matches
 * the key, each distinct public key once.
 * @throws {TufError} `threshold` when fewer than the role's threshold.
 */
function checkThreshold(root: Root, role: string, md: AnyMeta, what: string): void {
  const r = root.roles[role];
  if (!r) throw new TufError(`Root has no ${role} role`, "malformed");
  const counted = new Set<string>();
  for (const id of r.keyIDs) {
    const key = root.keys[id];
    if (!key || keyIdOf(key) !== id) continue;
    try {
      key.verifySignature(md);
    } catch {
      continue;
    }
    counted.add(`${key.keyType}:${JSON.stringify(key.keyVal)}`);
  }
  if (counted.size < r.threshold) {
    throw new TufError(
      `${what} is signed by ${counted.size} of the ${r.threshold} ${role} keys it needs`,
      "threshold",
    );
  }
}

function sha256Hex(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/**
 * A TUF client with persistent trusted metadata.
 *
 * @example
 * ```ts ignore
 * const client = new TufClient({ metadataUrl: "https://127.0.0.1:8443/tuf", dir: "trusted" });
 * await client.update();
 * await client.download("installers/truecloud-0.1.0.tar.gz", "truecloud.tar.gz");
 * ```
 */
export class TufClient {
  readonly #o: TufClientOptions;
  readonly #fetch: typeof fetch;
  readonly #clock: Clock;
  readonly #log: Logger;
  #root?: Metadata<Root>;
  #timestamp?: Metadata<Timestamp>;
  #snapshot?: Metadata<Snapshot>;
  #targets?: Metadata<Targets>;

  /** @param options URLs, directory, fetch, clock and logger. */
  constructor(options: TufClientOptions) {
    this.#o = options;
    this.#fetch = options.fetch ?? fetch;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.log ?? discardLogger;
  }

  get #now(): Date {
    return new Date(this.#clock.now());
  }

  async #load<T extends AnyMeta>(kind: MetadataKind, name: string): Promise<T | undefined> {
    try {
      const text = await Deno.readTextFile(`${this.#o.dir}/${name}`);
      return Metadata.fromJSON(kind as MetadataKind.Root, JSON.parse(text)) as unknown as T;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return undefined;
      throw new TufError(`Trusted ${name} is unreadable: ${(err as Error).message}`, "malformed");
    }
  }

  async #persist(name: string, bytes: Uint8Array): Promise<void> {
    const tmp = `${this.#o.dir}/.${name}.tmp`;
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, `${this.#o.dir}/${name}`);
  }

  async #fetchBytes(url: string, limit: number, what: string): Promise<Uint8Array | undefined> {
    let res: Response;
    try {
      res = await this.#fetch(url, { signal: AbortSignal.timeout(60_000) });
    } catch (err) {
      throw new TufError(`Cannot fetch ${what}: ${(err as Error).message}`, "fetch_failed");
    }
    if (res.status === 404 || res.status === 403) {
      await res.body?.cancel();
      return undefined;
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw new TufError(`Cannot fetch ${what}: HTTP ${res.status}`, "fetch_failed");
    }
    const chunks: Uint8Array[] = [];
    let total = 0;
    for await (const c of res.body ?? new ReadableStream()) {
      total += c.length;
      if (total > limit) {
        await res.body?.cancel().catch(() => {});
        throw new TufError(
          `${what} is longer than the ${limit} bytes allowed (endless data)`,
          "too_long",
        );
      }
      chunks.push(c);
    }
    return concatBytes(chunks);
  }

  #parse<T extends AnyMeta>(kind: MetadataKind, bytes: Uint8Array, what: string): T {
    try {
      const md = Metadata.fromJSON(
        kind as MetadataKind.Root,
        JSON.parse(new TextDecoder().decode(bytes)),
      );
      return md as unknown as T;
    } catch (err) {
      throw new TufError(
        `${what} is not valid ${kind} metadata: ${(err as Error).message}`,
        "malformed",
      );
    }
  }

  #notExpired(md: AnyMeta, what: string): void {
    if (md.signed.isExpired(this.#now)) {
      throw new TufError(
        `${what} expired on ${md.signed.expires} (freeze attack, or a stale mirror)`,
        "expired",
      );
    }
  }

  /**
   * Updates trusted metadata: root (every new version in turn), timestamp, snapshot, targets.
   * @returns The targets metadata now trusted.
   * @throws {TufError} Naming the refused attack or fault.
   */
  async update(): Promise<Metadata<Targets>> {
    const base = this.#o.metadataUrl.replace(/\/+$/, "");
    // 1. Root: the pinned one, then each next version, signed by the old and the new thresholds.
    const pinned = await this.#load<Metadata<Root>>(MetadataKind.Root, "root.json");
    if (!pinned) {
      throw new TufError(`No trusted root.json in ${this.#o.dir}: pin one first`, "not_found");
    }
    let root: Metadata<Root> = pinned;
    for (let i = 0; i < MAX_ROOT_ROTATIONS; i++) {
      const next: number = root.signed.version + 1;
      const bytes = await this.#fetchBytes(
        `${base}/${next}.root.json`,
        LIMITS.root,
        `root v${next}`,
      );
      if (!bytes) break;
      const md: Metadata<Root> = this.#parse<Metadata<Root>>(
        MetadataKind.Root,
        bytes,
        `root v${next}`,
      );
      checkThreshold(root.signed, "root", md, `root v${next}`);
      checkThreshold(md.signed, "root", md, `root v${next}`);
      if (md.signed.version !== next) {
        throw new TufError(`${next}.root.json holds version ${md.signed.version}`, "bad_version");
      }
      const rotated = (role: string) =>
        JSON.stringify(root.signed.roles[role]?.keyIDs) !==
          JSON.stringify(md.signed.roles[role]?.keyIDs);
      await this.#persist("root.json", bytes);
      // Keys of timestamp or snapshot rotated out: what they signed is no longer trusted.
      if (rotated("timestamp") || rotated("snapshot")) {
        await Deno.remove(`${this.#o.dir}/timestamp.json`).catch(() => {});
        await Deno.remove(`${this.#o.dir}/snapshot.json`).catch(() => {});
      }
      if (rotated("targets")) await Deno.remove(`${this.#o.dir}/targets.json`).catch(() => {});
      this.#log.info("Root updated", { version: next });
      root = md;
    }
    this.#notExpired(root, "Root");
    this.#root = root;

    // 2. Timestamp.
    const oldTs = await this.#load<Metadata<Timestamp>>(MetadataKind.Timestamp, "timestamp.json");
    const tsBytes = await this.#fetchBytes(`${base}/timestamp.json`, LIMITS.timestamp, "timestamp");
    if (!tsBytes) throw new TufError("The repository has no timestamp.json", "not_found");
    const ts = this.#parse<Metadata<Timestamp>>(MetadataKind.Timestamp, tsBytes, "timestamp");
    checkThreshold(root.signed, "timestamp", ts, "timestamp");
    if (oldTs) {
      if (ts.signed.version < oldTs.signed.version) {
        throw new TufError(
          `Timestamp version ${ts.signed.version} is older than the trusted ${oldTs.signed.version} (rollback)`,
          "rollback",
        );
      }
      if (ts.signed.snapshotMeta.version < oldTs.signed.snapshotMeta.version) {
        throw new TufError(
          "Timestamp points at an older snapshot than the trusted one (rollback)",
          "rollback",
        );
      }
    }
    this.#notExpired(ts, "Timestamp");
    await this.#persist("timestamp.json", tsBytes);
    this.#timestamp = ts;

    // 3. Snapshot: exactly the one the timestamp names.
    const snapMeta = ts.signed.snapshotMeta;
    const oldSnap = await this.#load<Metadata<Snapshot>>(MetadataKind.Snapshot, "snapshot.json");
    const snapBytes = await this.#fetchBytes(
      `${base}/snapshot.json`,
      snapMeta.length ?? LIMITS.snapshot,
      "snapshot",
    );
    if (!snapBytes) throw new TufError("The repository has no snapshot.json", "not_found");
    if (snapMeta.hashes?.sha256 && sha256Hex(snapBytes) !== snapMeta.hashes.sha256) {
      throw new TufError(
        "Snapshot does not match the hash the timestamp gives (mix-and-match)",
        "mix_and_match",
      );
    }
    const snap = this.#parse<Metadata<Snapshot>>(MetadataKind.Snapshot, snapBytes, "snapshot");
    checkThreshold(root.signed, "snapshot", snap, "snapshot");
    if (snap.signed.version !== snapMeta.version) {
      throw new TufError(
        `Snapshot version ${snap.signed.version} is not the ${snapMeta.version} the timestamp names (mix-and-match)`,
        "mix_and_match",
      );
    }
    if (oldSnap) {
      for (const [name, meta] of Object.entries(oldSnap.signed.meta)) {
        const now = snap.signed.meta[name];
        if (!now) throw new TufError(`Snapshot dropped ${name} (rollback)`, "rollback");
        if (now.version < meta.version) {
          throw new TufError(`Snapshot rolls ${name} back (rollback)`, "rollback");
        }
      }
    }
    this.#notExpired(snap, "Snapshot");
    await this.#persist("snapshot.json", snapBytes);
    this.#snapshot = snap;

    // 4. Targets: exactly the one the snapshot names.
    const tMeta = snap.signed.meta["targets.json"];
    if (!tMeta) throw new TufError("Snapshot does not list targets.json", "malformed");
    const tBytes = await this.#fetchBytes(
      `${base}/targets.json`,
      tMeta.length ?? LIMITS.targets,
      "targets",
    );
    if (!tBytes) throw new TufError("The repository has no targets.json", "not_found");
    if (tMeta.hashes?.sha256 && sha256Hex(tBytes) !== tMeta.hashes.sha256) {
      throw new TufError(
        "Targets does not match the hash the snapshot gives (mix-and-match)",
        "mix_and_match",
      );
    }
    const targets = this.#parse<Metadata<Targets>>(MetadataKind.Targets, tBytes, "targets");
    checkThreshold(root.signed, "targets", targets, "targets");
    if (targets.signed.version !== tMeta.version) {
      throw new TufError(
        `Targets version ${targets.signed.version} is not the ${tMeta.version} the snapshot names (mix-and-match)`,
        "mix_and_match",
      );
    }
    this.#notExpired(targets, "Targets");
    await this.#persist("targets.json", tBytes);
    this.#targets = targets;
    return targets;
  }

  /**
   * Downloads a target to a file, streaming it through SHA-256 and a length limit; the file appears
   * only when it verified.
   * @param path The target path.
   * @param dest Where to write it.
   * @param onProgress Called with bytes so far and the total.
   * @returns The target's length and SHA-256.
   * @throws {TufError} `not_found`, `too_long`, `bad_hash`, `fetch_failed`.
   */
  async download(
    path: string,
    dest: string,
    onProgress?: (done: number, total: number) => void,
  ): Promise<{ length: number; sha256: string }> {
    const targets = this.#targets ?? await this.update();
    const t = targets.signed.targets[safeTargetPath(path)];
    if (!t) throw new TufError(`No target ${path} in the trusted targets`, "not_found");
    const expected = t.hashes.sha256;
    if (!expected) throw new TufError(`Target ${path} has no SHA-256`, "malformed");
    const base = (this.#o.targetsUrl ?? `${this.#o.metadataUrl.replace(/\/+$/, "")}/targets`)
      .replace(/\/+$/, "");
    let res: Response;
    try {
      res = await this.#fetch(`${base}/${path}`);
    } catch (err) {
      throw new TufError(`Cannot fetch ${path}: ${(err as Error).message}`, "fetch_failed");
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw new TufError(`Cannot fetch ${path}: HTTP ${res.status}`, "fetch_failed");
    }
    const tmp = `${dest}.partial`;
    const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
    const hash = createHash("sha256");
    let done = 0;
    try {
      for await (const chunk of res.body) {
        done += chunk.length;
        if (done > t.length) {
          await res.body.cancel().catch(() => {});
          throw new TufError(
            `${path} is longer than its ${t.length} bytes (endless data)`,
            "too_long",
          );
        }
        hash.update(chunk);
        let off = 0;
        while (off < chunk.length) off += await file.write(chunk.subarray(off));
        onProgress?.(done, t.length);
      }
    } catch (err) {
      file.close();
      await Deno.remove(tmp).catch(() => {});
      throw err;
    }
    file.close();
    const digest = hash.digest("hex");
    if (done !== t.length || digest !== expected) {
      await Deno.remove(tmp).catch(() => {});
      throw new TufError(
        `${path} does not match its trusted length and hash (arbitrary software)`,
        "bad_hash",
      );
    }
    await Deno.rename(tmp, dest);
    return { length: done, sha256: digest };
  }

  /** The trusted root version, once updated. */
  get rootVersion(): number | undefined {
    return this.#root?.signed.version;
  }

  /** The trusted timestamp and snapshot versions, once updated. */
  get versions(): { timestamp?: number; snapshot?: number; targets?: number } {
    return {
      timestamp: this.#timestamp?.signed.version,
      snapshot: this.#snapshot?.signed.version,
      targets: this.#targets?.signed.version,
    };
  }
}

/**
 * Checks a file on disk against a target's length and SHA-256, reading it in 8 MiB blocks: the
 * block size is what lets Deno hash at the speed of the CPU's SHA instructions (64 KiB blocks
 * take twice as long).
 *
 * @param path The file.
 * @param expected The trusted length and SHA-256 (hex).
 * @returns Whether the file matches.
 */
export async function verifyFile(
  path: string,
  expected: { length: number; sha256: string },
): Promise<boolean> {
  const file = await Deno.open(path);
  try {
    if ((await file.stat()).size !== expected.length) return false;
    const hash = createHash("sha256");
    const buf = new Uint8Array(8 * 1024 * 1024);
    for (;;) {
      const n = await file.read(buf);
      if (n === null) break;
      hash.update(n === buf.length ? buf : buf.subarray(0, n));
    }
    return hash.digest("hex") === expected.sha256;
  } finally {
    file.close();
  }
}
