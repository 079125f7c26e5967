/**
 * Installer verification benchmark: verifying a 1 GiB installer through our TUF metadata (the
 * targets signature, then the file's length and SHA-256), side by side in the same run with
 * `sha256sum` plus `minisign -V` on the same file, and with `openssl dgst -sha256` (the hashing
 * limit of this CPU). Prints the times and the ratios.
 *
 *   deno task bench:verify [--size-mib 1024] [--rounds 3]
 *
 * Needs `sha256sum` (coreutils), `minisign` and `openssl`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Metadata, MetadataKind } from "@tufjs/models";
import { formatPublicKey, generateEd25519, signMinisign } from "../signing/mod.ts";
import { verifyFile } from "../library/client.ts";
import { buildTargets, metadataBytes, signWith, tufExpiry, tufSigner } from "../library/tuf.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    "size-mib": { type: "string", default: "1024" },
    rounds: { type: "string", default: "3" },
  },
});
const SIZE = Number(values["size-mib"]) * 1024 * 1024;
const ROUNDS = Number(values.rounds);
if (
  !Number.isInteger(SIZE) || SIZE <= 0 || !Number.isInteger(ROUNDS) || ROUNDS < 1 || ROUNDS > 20
) {
  console.error("bench: --size-mib and --rounds (1..20) must be positive whole numbers");
  Deno.exit(2);
}

async function run(cmd: string, args: string[]): Promise<number> {
  const t = performance.now();
  const out = await new Deno.Command(cmd, { args, stdout: "null", stderr: "piped" }).output();
  if (out.code !== 0) throw new Error(`${cmd} failed: ${new TextDecoder().decode(out.stderr)}`);
  return (performance.now() - t) / 1000;
}

const dir = await Deno.makeTempDir({ prefix: "truecloud-verify-" });
try {
  // The installer: 1 MiB of random bytes repeated (incompressible enough for hashing).
  const file = `${dir}/installer.bin`;
  const block = new Uint8Array(1024 * 1024);
  for (let i = 0; i < block.length; i += 65536) {
    crypto.getRandomValues(block.subarray(i, i + 65536));
  }
  const f = await Deno.open(file, { write: true, create: true });
  for (let written = 0; written < SIZE; written += block.length) {
    await f.write(block.subarray(0, Math.min(block.length, SIZE - written)));
  }
  f.close();

  // Its TUF targets metadata and its minisign signature, made once.
  const sha = new TextDecoder().decode(
    (await new Deno.Command("sha256sum", { args: [file], stdout: "piped" }).output()).stdout,
  ).split(" ")[0];
  const targetsKey = tufSigner(crypto.getRandomValues(new Uint8Array(32)));
  const targetsMd = signWith(
    buildTargets([{ path: "installers/installer.bin", length: SIZE, sha256: sha }], {
      version: 1,
      expires: tufExpiry(new Date(), 1),
    }),
    [targetsKey],
  );
  const targetsBytes = metadataBytes(targetsMd);
  const release = {
    ...(await generateEd25519()),
    keyId: crypto.getRandomValues(new Uint8Array(8)),
  };
  await Deno.writeTextFile(`${dir}/release.pub`, formatPublicKey(release));
  await Deno.writeTextFile(
    `${file}.minisig`,
    await signMinisign(release, (await Deno.open(file)).readable, { trusted: "bench" }),
  );

  const ours = async () => {
    const t = performance.now();
    const md = Metadata.fromJSON(
      MetadataKind.Targets,
      JSON.parse(new TextDecoder().decode(targetsBytes)),
    );
    targetsKey.key.verifySignature(md);
    const target = md.signed.targets["installers/installer.bin"];
    if (!(await verifyFile(file, { length: target.length, sha256: target.hashes.sha256 }))) {
      throw new Error("mismatch");
    }
    return (performance.now() - t) / 1000;
  };
  const theirs = async () =>
    (await run("sha256sum", [file])) +
    (await run("minisign", ["-Vq", "-p", `${dir}/release.pub`, "-m", file]));
  const openssl = () => run("openssl", ["dgst", "-sha256", file]);

  const times: Record<string, number[]> = {
    ours: [],
    "sha256sum + minisign -V": [],
    "openssl dgst -sha256": [],
  };
  await ours(); // warm the page cache and the JIT
  for (let r = 0; r < ROUNDS; r++) {
    times.ours.push(await ours());
    times["sha256sum + minisign -V"].push(await theirs());
    times["openssl dgst -sha256"].push(await openssl());
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const m = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, med(v)]));
  console.log(`file: ${SIZE / 1024 / 1024} MiB; ${ROUNDS} rounds, medians; page cache warm`);
  for (const [k, v] of Object.entries(m)) console.log(`${k.padEnd(26)} ${v.toFixed(2)} s`);
  console.log(
    `ours / openssl: ${(m.ours / m["openssl dgst -sha256"]).toFixed(2)}× (target: at most 1.3×)`,
  );
  console.log(
    `ours / (sha256sum + minisign -V): ${(m.ours / m["sha256sum + minisign -V"]).toFixed(2)}×`,
  );
} finally {
  await Deno.remove(dir, { recursive: true });
}
