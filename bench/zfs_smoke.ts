/**
 * zfs-fuse smoke run: a raidz3 pool over eight sparse files in a temporary directory, one
 * sequential write (with fsync) and read of a file on it, figures printed in MB/s (10^6 bytes).
 * Between write and read the pool is exported and imported, so the read comes neither from ZFS's
 * ARC nor from the kernel's page cache of the mount; with `--cold` the member files are also
 * evicted from the host's page cache, so it comes from disk.
 *
 *   deno run --allow-all bench/zfs_smoke.ts [--bytes 512M] [--chunk 1M] [--recordsize 128K,32K]
 *     [--cold] [--verbose]
 *
 * Needs root and zfs-fuse (`apt-get install zfs-fuse`), and no other zfs-fuse daemon running.
 * The daemon started is stopped by its PID; pools and files are removed whatever happens.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { JsonLogger, TrueCloudError } from "../protocol/mod.ts";
import { runZfsSequential } from "./_zfs.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    bytes: { type: "string", default: "512M" },
    chunk: { type: "string", default: "1M" },
    recordsize: { type: "string", default: "128K" },
    cold: { type: "boolean", default: false },
    verbose: { type: "boolean", default: false },
  },
});

/** Parses `512M`, `128K`, `1G` or a plain number of bytes (binary units). */
function size(v: string): number {
  const m = v.match(/^(\d+)([KMG]?)$/i);
  if (!m) return NaN;
  return Number(m[1]) * ({ "": 1, K: 1024, M: 1 << 20, G: 1 << 30 })[
    m[2].toUpperCase() as "" | "K" | "M" | "G"
  ];
}

function label(n: number): string {
  return n % (1 << 20) === 0 ? `${n / (1 << 20)} MiB` : `${n / 1024} KiB`;
}

const BYTES = size(flags.bytes);
const CHUNK = size(flags.chunk);
const RECORDSIZES = flags.recordsize.split(",").map(size);
if (![BYTES, CHUNK, ...RECORDSIZES].every((n) => Number.isSafeInteger(n) && n > 0)) {
  console.error("zfs: --bytes, --chunk and --recordsize take sizes such as 512M, 1M or 128K");
  Deno.exit(2);
}

const log = new JsonLogger("zfs", flags.verbose ? "debug" : "info");
let results: Awaited<ReturnType<typeof runZfsSequential>>;
try {
  results = await runZfsSequential({
    bytes: BYTES,
    chunk: CHUNK,
    recordsizes: RECORDSIZES,
    dropMemberCache: flags.cold,
    log,
  });
} catch (err) {
  if (!(err instanceof TrueCloudError)) throw err;
  console.error(`zfs: ${err.message}`);
  Deno.exit(1);
}
console.log(
  `zfs-fuse raidz3 (8 sparse files, compression off), ${label(BYTES)} in ${label(CHUNK)} calls; ` +
    `read after export/import${flags.cold ? " and member files evicted from the page cache" : ""}`,
);
for (const r of results) {
  console.log(
    `recordsize ${label(r.recordsize).padStart(7)}  write+fsync ${
      r.writeMBps.toFixed(0).padStart(5)
    } MB/s (${r.writeSeconds.toFixed(2)} s)  read ${r.readMBps.toFixed(0).padStart(5)} MB/s (${
      r.readSeconds.toFixed(2)
    } s)  export+import ${r.remountSeconds.toFixed(2)} s  CPU write ${
      r.writeCpuSeconds.toFixed(2)
    } s read ${r.readCpuSeconds.toFixed(2)} s`,
  );
}
