/**
 * Pool benchmark: a sequential write (then a flush) and read through the whole userspace pool on
 * loopback, side by side in the same run with zfs-fuse raidz3 over eight local files.
 *
 * - Userspace: eight volumes in a {@linkcode VolumeStore} on real files under a temporary
 *   directory, served by {@linkcode BlockServer}s through a {@linkcode TunnelServer} in provider
 *   subprocesses (`bench/_pool_provider.ts`), so that providers and consumer do not share one
 *   JavaScript thread; in this process eight {@linkcode BlockClient}s, each through its own
 *   encrypted tunnel, under a {@linkcode Pool} (Reed–Solomon 5+3, every shard MACed). Measured at
 *   the pool (`write` calls of `--chunk` bytes, several in flight, then `flush()`, which fdatasyncs
 *   every volume's files on the provider: the data is on disk on all eight members), and through
 *   a {@linkcode FileStore} on the pool (one file written as a stream of chunks, committed with
 *   flushes, then read back as a stream).
 * - zfs-fuse: `runZfsSequential` of `bench/_zfs.ts`, same bytes and chunk: one file written
 *   with `--chunk` writes and fsynced, then read back, on a raidz3 pool of eight sparse files.
 *
 * Every measurement starts from new volumes (userspace) or a new pool (zfs-fuse). Before reading,
 * the userspace pool is closed, its tunnels are closed and opened again and the pool is reopened,
 * as zfs-fuse's pool is exported and imported: neither keeps a cache of its own, and the member
 * files stay in the host's page cache on both sides, unless `--cold` evicts them on both. Every
 * chunk read back is checked against what was written (16 bytes at every 4 KiB).
 *
 *   deno task bench:pool [--bytes 512M] [--chunk 5M] [--runs 1] [--quick] [--cold]
 *     [--depth 4] [--providers 1] [--batch-stripes 16] [--parallel-batches 4]
 *     [--max-in-flight 16] [--no-files] [--no-zfs] [--json FILE] [--verbose]
 *
 * `--quick` writes 64 MiB whatever `--bytes` says (a smoke run). With `--runs N` above 1 each figure is given as best and
 * median. zfs-fuse needs root and the `zfs-fuse` package, and no other zfs-fuse daemon running;
 * without them only the userspace figures are shown. All traffic stays on 127.0.0.1; every
 * process started is stopped by its PID, every file and pool made is removed.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { FileStore, Pool, type PoolOptions } from "../node/cfs/mod.ts";
import {
  BlockClient,
  type BlockClientOptions,
  decodeTunnelKey,
  encodeTunnelKey,
  generateTunnelKeys,
  type TunnelKeyPair,
} from "../node/vp/mod.ts";
import { DriverError, JsonLogger, TrueCloudError } from "../protocol/mod.ts";
import { median, which } from "./_lib.ts";
import type { ProviderAnnouncement } from "./_pool_provider.ts";
import {
  cpuSeconds,
  dropFileCache,
  hostAvailable,
  MB,
  offsetOf,
  runZfsSequential,
  samplesMatch,
  sourceData,
} from "./_zfs.ts";

const MIB = 1 << 20;
const MEMBERS = 8;
const BLOCK_SIZE = 65536;
const STRIPE = 5 * BLOCK_SIZE;
/** Deadlines of the block clients: long, so that a slow disk cannot make a member leave. */
const CLIENT_OPTIONS: BlockClientOptions = { timeoutMs: 60_000, deadAfterMs: 15_000 };
const STOP_GRACE_MS = 10_000;

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    bytes: { type: "string", default: "512M" },
    chunk: { type: "string", default: "5M" },
    runs: { type: "string", default: "1" },
    quick: { type: "boolean", default: false },
    cold: { type: "boolean", default: false },
    depth: { type: "string", default: "4" },
    providers: { type: "string", default: "1" },
    "batch-stripes": { type: "string", default: "16" },
    "parallel-batches": { type: "string", default: "4" },
    "max-in-flight": { type: "string", default: "16" },
    "no-files": { type: "boolean", default: false },
    "no-zfs": { type: "boolean", default: false },
    json: { type: "string" },
    verbose: { type: "boolean", default: false },
  },
});

/** Parses `512M`, `320K`, `1G` or a plain number of bytes (binary units). */
function size(v: string): number {
  const m = v.match(/^(\d+)([KMG]?)$/i);
  if (!m) return NaN;
  return Number(m[1]) * ({ "": 1, K: 1024, M: MIB, G: 1 << 30 })[
    m[2].toUpperCase() as "" | "K" | "M" | "G"
  ];
}

function label(n: number): string {
  return n % MIB === 0 ? `${n / MIB} MiB` : n % 1024 === 0 ? `${n / 1024} KiB` : `${n} B`;
}

function fail(message: string): never {
  console.error(`pool: ${message}`);
  Deno.exit(2);
}

function whole(name: string, min: number, max: number): number {
  const n = Number(flags[name as keyof typeof flags]);
  if (!Number.isInteger(n) || n < min || n > max) {
    fail(`--${name} must be a whole number from ${min} to ${max}`);
  }
  return n;
}

const BYTES = flags.quick ? 64 * MIB : size(flags.bytes);
const CHUNK = size(flags.chunk);
if (!Number.isSafeInteger(BYTES) || BYTES < STRIPE || BYTES > 64 * (1 << 30)) {
  fail(`--bytes takes a size such as 512M, from ${label(STRIPE)} to 64G`);
}
if (!Number.isSafeInteger(CHUNK) || CHUNK < STRIPE || CHUNK > 64 * MIB || CHUNK % STRIPE !== 0) {
  fail(
    `--chunk must be a whole number of pool stripes (${STRIPE} bytes = ${
      label(STRIPE)
    }) up to 64 MiB, such as 5M or 10M`,
  );
}
const RUNS = whole("runs", 1, 20);
const DEPTH = whole("depth", 1, 64);
const PROVIDERS = whole("providers", 1, MEMBERS);
const BATCH_STRIPES = whole("batch-stripes", 1, 256);
const PARALLEL_BATCHES = whole("parallel-batches", 1, 16);
const MAX_IN_FLIGHT = whole("max-in-flight", 1, 1024);

// Volumes: the bytes in whole stripes, a tenth more and 64 stripes for the file system's
// superblocks, metadata and reserve.
const BLOCKS = Math.ceil(BYTES / STRIPE * 1.1) + 64;
const ROOT = new URL("..", import.meta.url).pathname;
const log = new JsonLogger("pool", flags.verbose ? "debug" : "warn");

/** Bytes of disk the eight volumes take at most: blocks and tag records, with some room. */
const DISK_BYTES = Math.ceil(MEMBERS * BLOCKS * (BLOCK_SIZE + 36) * 1.05);

/** One provider subprocess. */
interface Provider {
  child: Deno.ChildProcess;
  announcement: ProviderAnnouncement;
}

/** Starts a provider subprocess serving one volume per consumer key, and reads its announcement. */
async function startProvider(dir: string, consumers: TunnelKeyPair[]): Promise<Provider> {
  await Deno.mkdir(dir);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-write",
      "--allow-net=127.0.0.1",
      "--allow-env",
      `${ROOT}bench/_pool_provider.ts`,
      "--dir",
      dir,
      "--block-size",
      String(BLOCK_SIZE),
      "--blocks",
      String(BLOCKS),
      // One argument each: a base64url key may start with "-".
      ...consumers.map((k) => `--consumer=${encodeTunnelKey(k.publicKey)}`),
    ],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  try {
    let text = "";
    while (!text.includes("\n")) {
      const r = await reader.read();
      if (r.done) throw new Error(`The provider process (PID ${child.pid}) exited before serving`);
      text += r.value;
    }
    const announcement = JSON.parse(text.slice(0, text.indexOf("\n"))) as ProviderAnnouncement;
    if (announcement.volumes?.length !== consumers.length) {
      throw new Error("The provider process announced the wrong volumes");
    }
    // Keep draining standard output so the provider never blocks on it.
    void (async () => {
      while (!(await reader.read().catch(() => ({ done: true }))).done) { /* discard */ }
    })();
    return { child, announcement };
  } catch (err) {
    await stopProvider(child);
    throw err;
  }
}

/** Stops a provider by its PID: SIGTERM, then SIGKILL if it has not exited within a grace time. */
async function stopProvider(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch { /* already exited */ }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited meanwhile */ }
  }, STOP_GRACE_MS);
  try {
    await child.status;
  } finally {
    clearTimeout(timer);
  }
  await child.stdin.close().catch(() => {});
}

/** How the consumer reaches one volume. */
interface VolumeParams {
  endpoint: string;
  volumeId: string;
  keys: TunnelKeyPair;
  /** The provider's public key for the volume, as text. */
  server: string;
}

/** Eight volumes on provider subprocesses, attached, with a pool on them. */
class Session {
  readonly dir: string;
  readonly #providers: Provider[];
  readonly #params: VolumeParams[];
  readonly #key = crypto.getRandomValues(new Uint8Array(32));
  readonly #poolId = crypto.randomUUID();
  #clients: BlockClient[] = [];
  #pool?: Pool;

  private constructor(dir: string, providers: Provider[], params: VolumeParams[]) {
    this.dir = dir;
    this.#providers = providers;
    this.#params = params;
  }

  /** Starts the providers, attaches the volumes and creates the pool. */
  static async start(): Promise<Session> {
    const dir = await Deno.makeTempDir({ prefix: "truecloud-bench-pool-" });
    const providers: Provider[] = [];
    try {
      const keys = Array.from({ length: MEMBERS }, () => generateTunnelKeys());
      // Volume i on provider i mod PROVIDERS.
      const groups = Array.from(
        { length: PROVIDERS },
        (_, p) => keys.filter((_, i) => i % PROVIDERS === p),
      );
      for (const [p, group] of groups.entries()) {
        providers.push(await startProvider(`${dir}/provider${p}`, group));
      }
      const params = keys.map((k, i) => {
        const a = providers[i % PROVIDERS].announcement;
        const v = a.volumes[Math.floor(i / PROVIDERS)];
        return { endpoint: a.endpoint, volumeId: v.id, keys: k, server: v.serverPublic };
      });
      const session = new Session(dir, providers, params);
      try {
        await session.#attach();
        session.#pool = await Pool.create(session.#poolOptions());
      } catch (err) {
        await session.close();
        throw err;
      }
      return session;
    } catch (err) {
      for (const p of providers) await stopProvider(p.child).catch(() => {});
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw err;
    }
  }

  /** The pool. */
  get pool(): Pool {
    if (!this.#pool) throw new Error("The session has no pool");
    return this.#pool;
  }

  /** CPU seconds used so far by this process and the providers. */
  async cpu(): Promise<number> {
    let total = await cpuSeconds("self");
    for (const p of this.#providers) total += await cpuSeconds(p.child.pid);
    return total;
  }

  /** The volumes' files on the providers' disks. */
  get files(): string[] {
    return this.#providers.flatMap((p) => p.announcement.volumes.flatMap((v) => v.files));
  }

  async #attach(): Promise<void> {
    const attached = await Promise.allSettled(
      this.#params.map((p) =>
        BlockClient.connect(p.endpoint, {
          volumeId: p.volumeId,
          clientStatic: p.keys,
          serverPublic: decodeTunnelKey(p.server),
        }, { ...CLIENT_OPTIONS, maxInFlight: MAX_IN_FLIGHT, log })
      ),
    );
    this.#clients = attached.flatMap((r) => r.status === "fulfilled" ? [r.value] : []);
    const failed = attached.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
  }

  #poolOptions(): PoolOptions {
    return {
      devices: this.#clients,
      key: this.#key,
      poolId: this.#poolId,
      batchStripes: BATCH_STRIPES,
      parallelBatches: PARALLEL_BATCHES,
      generationHint: this.#pool?.generation,
      log,
    };
  }

  /** Throws unless all eight members are online: a member that left would skew the figures. */
  checkHealthy(): void {
    const s = this.pool.status();
    const off = s.members.filter((m) => m.state !== "online");
    if (off.length > 0) {
      throw new Error(
        `Members not online: ${
          off.map((m) => `slot ${m.slot} ${m.state} (${m.reason})`).join("; ")
        }`,
      );
    }
  }

  /**
   * Closes the pool and the tunnels, optionally evicts the volume files from the page cache, then
   * attaches again and reopens the pool.
   * @returns Seconds taken.
   */
  async remount(cold: boolean): Promise<number> {
    const start = performance.now();
    await this.#pool?.close();
    await Promise.all(this.#clients.map((c) => c.close()));
    if (cold) { for (const f of this.files) await dropFileCache(f); }
    await this.#attach();
    this.#pool = await Pool.open(this.#poolOptions());
    return (performance.now() - start) / 1000;
  }

  /** Closes the pool and the tunnels, stops the providers and removes their files. */
  async close(): Promise<void> {
    await this.#pool?.close().catch(() => {});
    await Promise.all(this.#clients.map((c) => c.close().catch(() => {})));
    for (const p of this.#providers) await stopProvider(p.child).catch(() => {});
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** Runs `f(0)`, `f(1)` … `f(n − 1)` in order of start, `depth` at a time; stops at a failure. */
async function inFlight(n: number, depth: number, f: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  await Promise.all(Array.from({ length: Math.min(depth, n) }, async () => {
    while (next < n && !failed) {
      try {
        await f(next++);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  }));
}

/** One measurement: seconds and MB/s of the write (with its flush) and of the read. */
interface Figures {
  writeSeconds: number;
  readSeconds: number;
  /** Seconds of the remount between them (in neither figure). */
  remountSeconds: number;
  writeMBps: number;
  readMBps: number;
  /** CPU seconds of every process involved (user and system) during the write. */
  writeCpuSeconds: number;
  /** The same during the read. */
  readCpuSeconds: number;
}

function figures(
  seconds: { write: number; read: number; remount: number },
  cpu: { write: number; read: number },
): Figures {
  return {
    writeSeconds: seconds.write,
    readSeconds: seconds.read,
    remountSeconds: seconds.remount,
    writeMBps: BYTES / MB / seconds.write,
    readMBps: BYTES / MB / seconds.read,
    writeCpuSeconds: cpu.write,
    readCpuSeconds: cpu.read,
  };
}

/** Writes BYTES to the pool in CHUNK writes, DEPTH in flight, flushes; remounts; reads back. */
async function measurePool(): Promise<Figures> {
  const { data, span } = sourceData(CHUNK);
  const n = Math.ceil(BYTES / CHUNK);
  const length = (i: number) => Math.min(CHUNK, BYTES - i * CHUNK);
  const session = await Session.start();
  try {
    let cpuStart = await session.cpu();
    let start = performance.now();
    await inFlight(n, DEPTH, async (i) => {
      const off = offsetOf(i, span);
      await session.pool.write(i * CHUNK, data.subarray(off, off + length(i)));
    });
    const flushStart = performance.now();
    await session.pool.flush();
    const writeSeconds = (performance.now() - start) / 1000;
    const writeCpu = await session.cpu() - cpuStart;
    if (flags.verbose) {
      console.error(`pool: flush took ${((performance.now() - flushStart) / 1000).toFixed(2)} s`);
    }
    session.checkHealthy();

    const remountSeconds = await session.remount(flags.cold);

    cpuStart = await session.cpu();
    start = performance.now();
    await inFlight(n, DEPTH, async (i) => {
      const got = await session.pool.read(i * CHUNK, length(i));
      if (!samplesMatch(got, got.length, data, offsetOf(i, span))) {
        throw new Error(`Chunk ${i} of the pool reads back wrong`);
      }
    });
    const readSeconds = (performance.now() - start) / 1000;
    const readCpu = await session.cpu() - cpuStart;
    session.checkHealthy();
    return figures(
      { write: writeSeconds, read: readSeconds, remount: remountSeconds },
      { write: writeCpu, read: readCpu },
    );
  } finally {
    await session.close();
  }
}

/** Checks 16 bytes at every 4 KiB of the file within `piece`, which starts at file byte `pos`. */
function fileSamplesMatch(
  piece: Uint8Array,
  pos: number,
  data: Uint8Array,
  span: number,
): boolean {
  for (let at = Math.ceil(pos / 4096) * 4096; at < pos + piece.length; at += 4096) {
    for (let p = at; p < Math.min(at + 16, pos + piece.length); p++) {
      const i = Math.floor(p / CHUNK);
      if (piece[p - pos] !== data[offsetOf(i, span) + p - i * CHUNK]) return false;
    }
  }
  return true;
}

/** The chunks written: chunk `i` from its own offset of the source. */
function* chunksOf(data: Uint8Array, span: number, n: number): Generator<Uint8Array> {
  for (let i = 0; i < n; i++) {
    const off = offsetOf(i, span);
    yield data.subarray(off, off + Math.min(CHUNK, BYTES - i * CHUNK));
  }
}

/** Writes one file of BYTES through a FileStore on the pool (CHUNK pieces); remounts; reads it. */
async function measureFiles(): Promise<Figures> {
  const { data, span } = sourceData(CHUNK);
  const n = Math.ceil(BYTES / CHUNK);
  const session = await Session.start();
  let files: FileStore | undefined;
  try {
    files = await FileStore.format(session.pool, { log });
    let cpuStart = await session.cpu();
    let start = performance.now();
    const { info } = await files.write("/sequential.bin", chunksOf(data, span, n));
    const writeSeconds = (performance.now() - start) / 1000;
    const writeCpu = await session.cpu() - cpuStart;
    if (info.size !== BYTES) throw new Error(`The file has ${info.size} bytes, not ${BYTES}`);
    session.checkHealthy();

    await files.close();
    files = undefined;
    const remountSeconds = await session.remount(flags.cold);
    files = await FileStore.open(session.pool, { log });

    cpuStart = await session.cpu();
    start = performance.now();
    const { body } = await files.read("/sequential.bin");
    let pos = 0;
    for await (const piece of body) {
      if (!fileSamplesMatch(piece, pos, data, span)) {
        throw new Error(`Bytes ${pos} to ${pos + piece.length - 1} of the file read back wrong`);
      }
      pos += piece.length;
    }
    const readSeconds = (performance.now() - start) / 1000;
    const readCpu = await session.cpu() - cpuStart;
    if (pos !== BYTES) throw new Error(`Read ${pos} bytes of the file, wrote ${BYTES}`);
    session.checkHealthy();
    return figures(
      { write: writeSeconds, read: readSeconds, remount: remountSeconds },
      { write: writeCpu, read: readCpu },
    );
  } finally {
    await files?.close().catch(() => {});
    await session.close();
  }
}

/** Why zfs-fuse cannot be measured here, or `undefined` if it might. */
async function zfsMissing(): Promise<string | undefined> {
  if (flags["no-zfs"]) return "left out (--no-zfs)";
  for (const tool of ["zfs-fuse", "zpool", "zfs"]) {
    if (!(await which(tool))) {
      return `not measured: ${tool} is not installed (apt-get install zfs-fuse)`;
    }
  }
  return undefined;
}

/** The zfs-fuse side, or why it was left out. */
async function measureZfs(): Promise<Figures | string> {
  try {
    const [r] = await runZfsSequential({
      bytes: BYTES,
      chunk: CHUNK,
      dropMemberCache: flags.cold,
      log,
    });
    return figures(
      { write: r.writeSeconds, read: r.readSeconds, remount: r.remountSeconds },
      { write: r.writeCpuSeconds, read: r.readCpuSeconds },
    );
  } catch (err) {
    // The daemon could not start (not root, another daemon serving the machine): not measured.
    if (err instanceof DriverError && (err.op === "zfs-fuse.start" || err.op === "zfs.tools")) {
      return `not measured: ${err.message}`;
    }
    throw err;
  }
}

{
  const probe = await Deno.makeTempDir({ prefix: "truecloud-bench-pool-" });
  const free = await hostAvailable(probe).finally(() => Deno.remove(probe));
  if (DISK_BYTES > free) {
    fail(`The volumes need about ${DISK_BYTES} bytes of the temporary directory (${free} free)`);
  }
}

const rows: Record<"pool" | "files" | "zfs", Figures[]> = { pool: [], files: [], zfs: [] };
let zfsNote = await zfsMissing();
let failure: unknown;
try {
  for (let run = 0; run < RUNS; run++) {
    if (!zfsNote) {
      const z = await measureZfs();
      if (typeof z === "string") zfsNote = z;
      else rows.zfs.push(z);
    }
    rows.pool.push(await measurePool());
    if (!flags["no-files"]) rows.files.push(await measureFiles());
    if (flags.verbose) console.error(`run ${run + 1}:`, JSON.stringify(rows));
  }
} catch (err) {
  failure = err;
}

function best(xs: number[]): number {
  return Math.max(...xs);
}

function cell(xs: number[]): string {
  if (xs.length === 0) return "—";
  return xs.length === 1 ? xs[0].toFixed(0) : `${best(xs).toFixed(0)} / ${median(xs).toFixed(0)}`;
}

function ratio(a: number[], b: number[]): string {
  if (a.length === 0 || b.length === 0) return "—";
  return a.length === 1
    ? `${(a[0] / b[0]).toFixed(2)}×`
    : `${(best(a) / best(b)).toFixed(2)}× / ${(median(a) / median(b)).toFixed(2)}×`;
}

const w = (k: keyof typeof rows) => rows[k].map((f) => f.writeMBps);
const r = (k: keyof typeof rows) => rows[k].map((f) => f.readMBps);
console.log(
  `pool: ${label(BYTES)} written in ${label(CHUNK)} calls then flushed (fsync), and read back; ` +
    `${RUNS} ${RUNS === 1 ? "run" : "runs"}${RUNS > 1 ? " (best / median)" : ""}; ` +
    `${navigator.hardwareConcurrency} cores`,
);
console.log(
  `userspace: RS 5+3 over 8 volumes of ${label(BLOCKS * BLOCK_SIZE)} (64 KiB blocks) in ` +
    `${PROVIDERS} provider ${PROVIDERS === 1 ? "process" : "processes"}, 8 encrypted tunnels ` +
    `on 127.0.0.1; ${DEPTH} calls in flight, batches of ${BATCH_STRIPES} stripes × ` +
    `${PARALLEL_BATCHES}, ${MAX_IN_FLIGHT} requests in flight per volume`,
);
console.log(
  `read after ${
    flags.cold
      ? "remount with the member files evicted from the page cache (both sides)"
      : "remount (pool reopened / exported and imported); member files in the page cache"
  }`,
);
const cpu = (k: keyof typeof rows, phase: "write" | "read") => {
  const xs = rows[k].map((f) => phase === "write" ? f.writeCpuSeconds : f.readCpuSeconds);
  return xs.length ? median(xs).toFixed(2) : "—";
};
const col = 42;
const line = (name: string, cells: string[]) =>
  console.log(`${name.padEnd(col)}${cells.map((c, i) => c.padStart(i < 2 ? 14 : 11)).join("")}`);
line("", ["write+flush", "read", "CPU s", "CPU s"]);
line("MB/s (10^6 bytes/s); CPU s of all processes", ["MB/s", "MB/s", "write", "read"]);
line("userspace pool (Pool over BlockClients)", [
  cell(w("pool")),
  cell(r("pool")),
  cpu("pool", "write"),
  cpu("pool", "read"),
]);
if (!flags["no-files"]) {
  line("userspace files (FileStore on the pool)", [
    cell(w("files")),
    cell(r("files")),
    cpu("files", "write"),
    cpu("files", "read"),
  ]);
}
if (rows.zfs.length) {
  line("zfs-fuse raidz3 (8 files, 128 KiB records)", [
    cell(w("zfs")),
    cell(r("zfs")),
    cpu("zfs", "write"),
    cpu("zfs", "read"),
  ]);
  line("ratio pool / zfs-fuse", [ratio(w("pool"), w("zfs")), ratio(r("pool"), r("zfs"))]);
  if (!flags["no-files"]) {
    line("ratio files / zfs-fuse", [ratio(w("files"), w("zfs")), ratio(r("files"), r("zfs"))]);
  }
}
if (zfsNote) console.log(`zfs-fuse raidz3: ${zfsNote}`);
if (rows.zfs.length && rows.pool.length) {
  const x = median(w("pool")) / median(w("zfs"));
  console.log(
    `target: write ≥ 2.00× zfs-fuse: ${x >= 2 ? "met" : "not met"} (${x.toFixed(2)}×${
      RUNS > 1 ? ", medians" : ""
    })`,
  );
}
if (flags.json) {
  await Deno.writeTextFile(
    flags.json,
    JSON.stringify(
      {
        date: new Date().toISOString(),
        bytes: BYTES,
        chunk: CHUNK,
        cold: flags.cold,
        settings: {
          depth: DEPTH,
          providers: PROVIDERS,
          batchStripes: BATCH_STRIPES,
          parallelBatches: PARALLEL_BATCHES,
          maxInFlight: MAX_IN_FLIGHT,
        },
        zfs: zfsNote ?? null,
        rows,
      },
      null,
      2,
    ),
  );
}
if (failure) {
  console.error(
    `pool: ${
      failure instanceof TrueCloudError || failure instanceof Error ? failure.message : failure
    }`,
  );
  Deno.exit(1);
}
