/**
 * The local cloud's development release: development keys (clearly marked as such everywhere they
 * show), an installer built from this source tree, TUF metadata and minisign signatures, written
 * as a repository that the gateway serves at `/tuf` and `/installers`.
 *
 * The keys are kept in encrypted key files under a passphrase that is public on purpose
 * (`DEVELOPMENT_PASSPHRASE`): these keys protect nothing and must never sign a real release.
 *
 * @module
 */

import { createTarGzip } from "nanotar";
import {
  type Ed25519Key,
  formatPublicKey,
  generateEd25519,
  MIN_SCRYPT_N,
  openKey,
  sealKey,
  signMinisign,
} from "../signing/mod.ts";
import { addTargetFile, describeTarget, writeMetadata } from "./repository.ts";
import {
  buildRoot,
  buildSnapshot,
  buildTargets,
  buildTimestamp,
  EXPIRY_DAYS,
  signWith,
  tufExpiry,
  type TufSigner,
  tufSigner,
} from "./tuf.ts";

/** The passphrase of development key files: public, because development keys protect nothing. */
export const DEVELOPMENT_PASSPHRASE = "development keys protect nothing";

const KEY_NAMES = [
  "root-1",
  "root-2",
  "root-3",
  "targets",
  "snapshot",
  "timestamp",
  "release-1",
  "release-2",
] as const;
type KeyName = typeof KEY_NAMES[number];

const SKIP = new Set(["node_modules", ".git", ".truecloud"]);

async function sourceFiles(root: string, rel = ""): Promise<{ name: string; data: Uint8Array }[]> {
  const out: { name: string; data: Uint8Array }[] = [];
  for await (const e of Deno.readDir(`${root}/${rel}`)) {
    const path = rel ? `${rel}/${e.name}` : e.name;
    if (
      SKIP.has(e.name) || (e.name.startsWith(".") && e.name !== ".ci" && e.name !== ".gitignore")
    ) continue;
    if (e.isDirectory) out.push(...await sourceFiles(root, path));
    else if (e.isFile) {
      out.push({ name: `truecloud/${path}`, data: await Deno.readFile(`${root}/${path}`) });
    }
  }
  return out;
}

async function developmentKeys(
  dir: string,
  scryptN?: number,
): Promise<Record<KeyName, Ed25519Key>> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const keys = {} as Record<KeyName, Ed25519Key>;
  for (const name of KEY_NAMES) {
    const path = `${dir}/${name}.key.json`;
    try {
      keys[name] = await openKey(JSON.parse(await Deno.readTextFile(path)), DEVELOPMENT_PASSPHRASE);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      const key = await generateEd25519();
      const role = name.startsWith("root")
        ? "root"
        : name.startsWith("release")
        ? "release"
        : name as "targets";
      const file = await sealKey(key, DEVELOPMENT_PASSPHRASE, {
        role,
        comment: `DEVELOPMENT ${name} key of the local cloud — never use for a real release`,
        scryptN,
      });
      await Deno.writeTextFile(path, JSON.stringify(file, null, 2), { mode: 0o600 });
      keys[name] = key;
    }
  }
  return keys;
}

/** What {@linkcode buildDevelopmentRelease} made. */
export interface DevelopmentRelease {
  /** The version, such as `0.1.0-dev`. */
  version: string;
  /** The installers' file names. */
  installers: string[];
  /** The repository directory. */
  repository: string;
  /** The online timestamp key, for re-signing the timestamp while the cloud runs. */
  timestampSigner: TufSigner;
  /** The online snapshot key, likewise. */
  snapshotSigner: TufSigner;
}

/**
 * Builds (or rebuilds) the development release.
 * @param options Repository and key directories, the source tree and the version.
 * @returns What was built.
 */
export async function buildDevelopmentRelease(options: {
  repository: string;
  keysDir: string;
  sourceRoot: string;
  version?: string;
  /** scrypt cost of new key files; the least allowed by default, since the passphrase is public. */
  scryptN?: number;
}): Promise<DevelopmentRelease> {
  const version = options.version ?? "0.1.0-dev";
  const keys = await developmentKeys(options.keysDir, options.scryptN ?? MIN_SCRYPT_N);
  const work = await Deno.makeTempDir({ prefix: "truecloud-release-" });
  try {
    const tarball = `truecloud-${version}.tar.gz`;
    const files = await sourceFiles(options.sourceRoot);
    await Deno.writeFile(
      `${work}/${tarball}`,
      await createTarGzip(files, { attrs: { mtime: 0, mode: "644" } }),
    );
    const script = `install-truecloud-${version}.sh`;
    await Deno.writeTextFile(
      `${work}/${script}`,
      `#!/bin/sh
# True Cloud ${version} installer (DEVELOPMENT release, signed with development keys).
# Verify first:  minisign -V -p release-1.pub -m ${tarball}
# Then unpack and start the local cloud; needs Node.js (Deno comes from npm).
set -eu
tar -xzf "\${1:-${tarball}}"
cd truecloud
exec npx --yes deno@2.9.6 task start
`,
    );
    const installers = [tarball, script];
    const now = new Date();
    const targets = [];
    for (const name of installers) {
      const info = await describeTarget(`${work}/${name}`, `installers/${name}`, { version });
      targets.push(info);
      await addTargetFile(options.repository, `${work}/${name}`, info.path);
    }
    const s = (k: KeyName) => tufSigner(keys[k].seed);
    const signers = {
      root: [s("root-1"), s("root-2"), s("root-3")],
      rootThreshold: 2,
      targets: [s("targets")],
      snapshot: s("snapshot"),
      timestamp: s("timestamp"),
    };
    const dev = { development: true };
    const root = signWith(
      buildRoot(signers, { version: 1, expires: tufExpiry(now, EXPIRY_DAYS.root), ...dev }),
      signers.root.slice(0, 2),
    );
    const targetsMd = signWith(
      buildTargets(targets, { version: 1, expires: tufExpiry(now, EXPIRY_DAYS.targets), ...dev }),
      signers.targets,
    );
    const snapshot = signWith(
      buildSnapshot(targetsMd, {
        version: 1,
        expires: tufExpiry(now, EXPIRY_DAYS.snapshot),
        ...dev,
      }),
      [signers.snapshot],
    );
    const timestamp = signWith(
      buildTimestamp(snapshot, {
        version: 1,
        expires: tufExpiry(now, EXPIRY_DAYS.timestamp),
        ...dev,
      }),
      [signers.timestamp],
    );
    await writeMetadata(options.repository, {
      roots: [root],
      targets: targetsMd,
      snapshot,
      timestamp,
    });

    // minisign: the release key signs, the second one countersigns; key ids are fixed per key.
    await Deno.mkdir(`${options.repository}/minisign/keys`, { recursive: true });
    const release = (k: KeyName) => ({ ...keys[k], keyId: keys[k].publicKey.slice(0, 8) });
    for (const [i, k] of (["release-1", "release-2"] as const).entries()) {
      const pub = formatPublicKey(release(k)).replace(
        /^untrusted comment: minisign public key (\w+)/,
        "untrusted comment: minisign public key $1 (True Cloud DEVELOPMENT key)",
      );
      await Deno.writeTextFile(`${options.repository}/minisign/keys/${k}.pub`, pub);
      for (const name of installers) {
        const sig = await signMinisign(release(k), await Deno.readFile(`${work}/${name}`), {
          trusted: `truecloud ${version} file:${name} development`,
          untrusted: i === 0
            ? "signature from True Cloud DEVELOPMENT release key"
            : "countersignature by True Cloud DEVELOPMENT key",
        });
        await Deno.writeTextFile(
          `${options.repository}/minisign/${name}.minisig${i === 0 ? "" : "2"}`,
          sig,
        );
      }
    }
    return {
      version,
      installers,
      repository: options.repository,
      timestampSigner: signers.timestamp,
      snapshotSigner: signers.snapshot,
    };
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}
