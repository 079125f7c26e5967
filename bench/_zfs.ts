// The zfs-fuse side of the pool benchmark: a private zfs-fuse daemon, a raidz3 pool over eight
// sparse files, and a timed sequential write (with fsync) and read of one file on it.
//
// zfs-fuse serves every pool of the machine through one socket (/var/run/zfs/zfs_socket), so only
// one daemon can run at a time: startZfsFuse() refuses to start beside another one and never
// touches it. The daemon forks; its PID is read from the pidfile and stop() signals exactly that
// PID. Every pool created here is destroyed before the daemon stops, so none is left in
// /var/lib/zfs/zpool.cache for the next daemon to import.

import { discardLogger, DriverError, type Logger, ValidationError } from "../protocol/mod.ts";
import { which } from "./_lib.ts";

/** The control socket every zfs-fuse daemon listens on. */
export const ZFS_SOCKET = "/var/run/zfs/zfs_socket";

/** Bytes per MB in the figures reported here (decimal, as `dd` prints them). */
export const MB = 1_000_000;

const MIB = 1 << 20;
/** The smallest member ZFS accepts (SPA_MINDEVSIZE). */
const MIN_MEMBER_BYTES = 64 * MIB;
const MAX_CHUNK = 64 * MIB;
const COMMAND_TIMEOUT_MS = 120_000;
const RESERVED_NAMES = /^(mirror|raidz|draid|spare|log|cache|c[0-9])/;

/** What a finished command left behind. */
export interface CommandOutput {
  /** Its exit code. */
  code: number;
  /** Its standard output. */
  stdout: string;
  /** Its standard error. */
  stderr: string;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function runCommand(
  path: string,
  args: string[],
  timeoutMs = COMMAND_TIMEOUT_MS,
): Promise<CommandOutput> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  try {
    const out = await new Deno.Command(path, {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: ac.signal,
    }).output();
    if (ac.signal.aborted) {
      throw new DriverError(path, `No answer within ${timeoutMs} ms`, { argv: [path, ...args] });
    }
    const dec = new TextDecoder();
    return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
  } finally {
    clearTimeout(timer);
  }
}

function commandError(op: string, argv: string[], out: CommandOutput): DriverError {
  const why = (out.stderr.trim() || out.stdout.trim()).split("\n").slice(-3).join("; ");
  return new DriverError(op, `${argv.join(" ")} exited with ${out.code}: ${why || "no output"}`, {
    argv,
    exitCode: out.code,
  });
}

async function findTool(name: string): Promise<string> {
  const path = await which(name);
  if (!path) {
    throw new DriverError(
      "zfs.tools",
      `${name} not found; install it with: apt-get install zfs-fuse`,
    );
  }
  return path;
}

/** The state letter of a process from /proc (R, S, D, Z…), or `undefined` when it is gone. */
async function processState(pid: number): Promise<string | undefined> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  } catch {
    return undefined;
  }
}

/** Whether `pid` is alive (a zombie has exited: it only waits to be reaped). */
async function alive(pid: number): Promise<boolean> {
  const state = await processState(pid);
  return state !== undefined && state !== "Z";
}

async function cmdline(pid: number): Promise<string[]> {
  try {
    return (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0").filter(Boolean);
  } catch {
    return [];
  }
}

/** The PIDs of every live zfs-fuse process on the machine (looked up to refuse, never to kill). */
async function zfsFuseProcesses(): Promise<number[]> {
  const pids: number[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    const pid = Number(e.name);
    try {
      if ((await Deno.readTextFile(`/proc/${pid}/comm`)).trim() !== "zfs-fuse") continue;
    } catch {
      continue; // exited meanwhile
    }
    if (await alive(pid)) pids.push(pid);
  }
  return pids;
}

/** Whether a daemon answers on the zfs-fuse socket. */
async function socketAnswers(): Promise<boolean> {
  try {
    if (!(await Deno.lstat(ZFS_SOCKET)).isSocket) return false;
  } catch {
    return false;
  }
  try {
    const conn = await Deno.connect({ transport: "unix", path: ZFS_SOCKET });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

async function requireDirectory(dir: string, what: string): Promise<string> {
  if (typeof dir !== "string" || !dir.startsWith("/")) {
    throw new ValidationError(`${what} must be an absolute path, not ${JSON.stringify(dir)}`);
  }
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(dir);
  } catch {
    throw new ValidationError(`${what} ${dir} does not exist`);
  }
  if (!info.isDirectory) throw new ValidationError(`${what} ${dir} is not a directory`);
  return dir.replace(/\/+$/, "") || "/";
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Whether something of type `fuse.zfs` is mounted at `path`. */
async function zfsMounted(path: string): Promise<boolean> {
  const mounts = await Deno.readTextFile("/proc/self/mounts");
  return mounts.split("\n").some((line) => {
    const [, at, type] = line.split(" ");
    return at === path && type === "fuse.zfs";
  });
}

function checkBytes(bytes: number): void {
  if (!Number.isSafeInteger(bytes) || bytes < 1) {
    throw new ValidationError(`bytes must be a positive whole number, not ${bytes}`);
  }
}

function checkChunk(chunk: number): void {
  if (!Number.isSafeInteger(chunk) || chunk < 1 || chunk > MAX_CHUNK) {
    throw new ValidationError(`chunk must be a whole number from 1 to ${MAX_CHUNK}, not ${chunk}`);
  }
}

function checkFileBytes(fileBytes: number): void {
  if (!Number.isSafeInteger(fileBytes) || fileBytes < MIN_MEMBER_BYTES) {
    throw new ValidationError(
      `fileBytes must be a whole number of at least ${MIN_MEMBER_BYTES}, not ${fileBytes}`,
    );
  }
}

function checkRecordsize(recordsize: number): void {
  if (
    !Number.isSafeInteger(recordsize) || recordsize < 4096 || recordsize > 131072 ||
    (recordsize & (recordsize - 1)) !== 0
  ) {
    throw new ValidationError(
      `recordsize must be a power of two from 4096 to 131072 (zfs-fuse's pool version 23), not ${recordsize}`,
    );
  }
}

/** Options of {@linkcode startZfsFuse}. */
export interface StartOptions {
  /** Where quirks (retries, a stale pidfile) are logged. */
  log?: Logger;
  /** How long to wait for `zpool list` to answer, in ms (default 15 000). */
  readyTimeoutMs?: number;
}

/**
 * A zfs-fuse daemon started by {@linkcode startZfsFuse}, and the pools created through it.
 *
 * Runs `zpool` and `zfs` against it, and stops exactly its PID.
 */
export class ZfsFuse {
  #pid: number;
  #pidfile: string;
  #tools: { zpool: string; zfs: string };
  #log: Logger;
  #pools = new Set<Raidz3Pool>();
  #stopped = false;

  /**
   * @param pid The daemon's PID, read from its pidfile.
   * @param pidfile Where the daemon wrote it.
   * @param tools Paths of `zpool` and `zfs`.
   * @param log Where quirks are logged.
   */
  constructor(pid: number, pidfile: string, tools: { zpool: string; zfs: string }, log: Logger) {
    this.#pid = pid;
    this.#pidfile = pidfile;
    this.#tools = tools;
    this.#log = log;
  }

  /** The daemon's PID. */
  get pid(): number {
    return this.#pid;
  }

  /** The daemon's pidfile. */
  get pidfile(): string {
    return this.#pidfile;
  }

  /** Whether {@linkcode ZfsFuse.stop} has run. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** The logger given at start. */
  get log(): Logger {
    return this.#log;
  }

  /**
   * Runs `zpool ARGS` and returns its output.
   * @throws {DriverError} When the daemon is stopped or the command fails.
   */
  zpool(args: string[], op = `zpool.${args[0]}`): Promise<string> {
    return this.#run(this.#tools.zpool, args, op);
  }

  /**
   * Runs `zfs ARGS` and returns its output.
   * @throws {DriverError} When the daemon is stopped or the command fails.
   */
  zfs(args: string[], op = `zfs.${args[0]}`): Promise<string> {
    return this.#run(this.#tools.zfs, args, op);
  }

  /**
   * Runs `zpool ARGS` and returns its exit code and output, whatever the code.
   * @throws {DriverError} When the daemon is stopped or the command does not answer in time.
   */
  zpoolTry(args: string[]): Promise<CommandOutput> {
    this.#requireRunning(`zpool.${args[0]}`);
    return runCommand(this.#tools.zpool, args);
  }

  /** Records a pool so that {@linkcode ZfsFuse.stop} destroys it if its owner has not. */
  track(pool: Raidz3Pool, live: boolean): void {
    if (live) this.#pools.add(pool);
    else this.#pools.delete(pool);
  }

  async #run(path: string, args: string[], op: string): Promise<string> {
    this.#requireRunning(op);
    const out = await runCommand(path, args);
    if (out.code !== 0) throw commandError(op, [path, ...args], out);
    return out.stdout;
  }

  #requireRunning(op: string): void {
    if (this.#stopped) throw new DriverError(op, "The zfs-fuse daemon is stopped");
  }

  /**
   * Destroys any pool still open through this daemon, then stops the daemon: SIGTERM to its PID,
   * SIGKILL after 30 s, and waits until it has exited (about 3 s here). Removes the pidfile: given
   * a stale one, the next zfs-fuse exits with 1 and no message. Calling it again does nothing.
   * @throws {DriverError} When the daemon does not exit, or a pool could not be destroyed (the
   *   daemon is stopped anyway).
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    let failure: unknown;
    for (const pool of [...this.#pools]) {
      try {
        await pool.destroy();
      } catch (err) {
        this.#log.error("Pool not destroyed before stopping zfs-fuse", { pool: pool.name, err });
        failure ??= err;
      }
    }
    this.#stopped = true;
    const argv = await cmdline(this.#pid);
    const ours = argv.length > 0 && argv[0].endsWith("zfs-fuse") && argv.includes(this.#pidfile);
    if (ours && (await alive(this.#pid))) {
      const started = performance.now();
      Deno.kill(this.#pid, "SIGTERM");
      let signal: Deno.Signal = "SIGTERM";
      while (await alive(this.#pid)) {
        const waited = performance.now() - started;
        if (signal === "SIGTERM" && waited > 30_000) {
          this.#log.warn("zfs-fuse ignored SIGTERM for 30 s; sending SIGKILL", { pid: this.#pid });
          signal = "SIGKILL";
          try {
            Deno.kill(this.#pid, "SIGKILL");
          } catch { /* exited meanwhile */ }
        } else if (waited > 40_000) {
          throw new DriverError("zfs-fuse.stop", `zfs-fuse (PID ${this.#pid}) did not exit`);
        }
        await sleep(50);
      }
      this.#log.debug("zfs-fuse stopped", {
        pid: this.#pid,
        ms: Math.round(performance.now() - started),
      });
    } else if (argv.length > 0 && !ours) {
      this.#log.warn("PID no longer belongs to this zfs-fuse; not signalled", { pid: this.#pid });
    }
    await Deno.remove(this.#pidfile).catch(() => {});
    if (failure) throw failure;
  }
}

/**
 * Starts a private zfs-fuse daemon: `zfs-fuse --pidfile DIR/zfs-fuse.pid --no-kstat-mount`.
 *
 * The command forks and its parent exits (0) once the child is set up; the child's PID is read
 * from the pidfile, and the daemon counts as ready when `zpool list` answers. A stale pidfile is
 * removed first.
 *
 * @param dir An existing directory for the pidfile.
 * @param options Logger and start-up deadline.
 * @returns The running daemon; call {@linkcode ZfsFuse.stop} when done.
 * @throws {ValidationError} When `dir` is not an existing directory.
 * @throws {DriverError} When zfs-fuse is not installed, another zfs-fuse daemon runs (it is left
 *   alone), or the daemon does not come up (it is stopped again).
 */
export async function startZfsFuse(dir: string, options: StartOptions = {}): Promise<ZfsFuse> {
  const log = options.log ?? discardLogger;
  const readyTimeoutMs = options.readyTimeoutMs ?? 15_000;
  if (!(readyTimeoutMs > 0)) {
    throw new ValidationError(`readyTimeoutMs must be positive, not ${readyTimeoutMs}`);
  }
  dir = await requireDirectory(dir, "The zfs-fuse directory");
  const daemon = await findTool("zfs-fuse");
  const tools = { zpool: await findTool("zpool"), zfs: await findTool("zfs") };
  const others = await zfsFuseProcesses();
  if (others.length > 0 || await socketAnswers()) {
    throw new DriverError(
      "zfs-fuse.start",
      `Another zfs-fuse daemon is running (${
        others.length ? `PID ${others.join(", ")}` : `${ZFS_SOCKET} answers`
      }); it serves every pool of the machine, so stop it before benchmarking`,
    );
  }
  const pidfile = `${dir}/zfs-fuse.pid`;
  if (await exists(pidfile)) {
    log.warn("Removing a stale zfs-fuse pidfile", { pidfile });
    await Deno.remove(pidfile);
  }
  const argv = [daemon, "--pidfile", pidfile, "--no-kstat-mount"];
  const out = await runCommand(daemon, argv.slice(1), readyTimeoutMs);
  if (out.code !== 0) throw commandError("zfs-fuse.start", argv, out);

  const deadline = performance.now() + readyTimeoutMs;
  let pid: number | undefined;
  while (pid === undefined) {
    const text = await Deno.readTextFile(pidfile).catch(() => "");
    if (/^\d+\s*$/.test(text)) pid = Number(text.trim());
    else if (performance.now() > deadline) {
      throw new DriverError("zfs-fuse.start", `zfs-fuse wrote no PID to ${pidfile}`, { argv });
    } else await sleep(20);
  }
  const handle = new ZfsFuse(pid, pidfile, tools, log);
  try {
    while (true) {
      if (!(await alive(pid))) {
        throw new DriverError(
          "zfs-fuse.start",
          `zfs-fuse (PID ${pid}) exited during start-up; see the system log`,
          { argv },
        );
      }
      const list = await runCommand(tools.zpool, ["list"]);
      if (list.code === 0) break;
      if (performance.now() > deadline) {
        throw commandError("zfs-fuse.start", [tools.zpool, "list"], list);
      }
      await sleep(50);
    }
  } catch (err) {
    await handle.stop().catch(() => {});
    throw err;
  }
  log.debug("zfs-fuse started", { pid, pidfile });
  return handle;
}

/** Options of {@linkcode createRaidz3}. */
export interface Raidz3Options {
  /** The pool's name: a letter, then letters, digits, `_` or `-` (at most 32 characters). */
  name: string;
  /** The size of each of the eight sparse member files (at least 64 MiB). */
  fileBytes: number;
  /** The dataset's recordsize: a power of two from 4 KiB to 128 KiB (the default). */
  recordsize?: number;
}

/**
 * A raidz3 pool over eight sparse files, made by {@linkcode createRaidz3}.
 *
 * Its members live in `DIR/NAME-members/m1…m8` and its root dataset is mounted at `DIR/NAME`,
 * with compression and atime off.
 */
export class Raidz3Pool {
  #zfs: ZfsFuse;
  #name: string;
  #mountpoint: string;
  #membersDir: string;
  #files: string[];
  #recordsize: number;
  #destroyed = false;

  /**
   * @param zfs The daemon serving it.
   * @param name The pool's name.
   * @param mountpoint Where its root dataset is mounted.
   * @param membersDir The directory of its member files.
   * @param files The eight member files.
   * @param recordsize The dataset's recordsize.
   */
  constructor(
    zfs: ZfsFuse,
    name: string,
    mountpoint: string,
    membersDir: string,
    files: string[],
    recordsize: number,
  ) {
    this.#zfs = zfs;
    this.#name = name;
    this.#mountpoint = mountpoint;
    this.#membersDir = membersDir;
    this.#files = files;
    this.#recordsize = recordsize;
  }

  /** The pool's name. */
  get name(): string {
    return this.#name;
  }

  /** Where the root dataset is mounted. */
  get mountpoint(): string {
    return this.#mountpoint;
  }

  /** The PID of the zfs-fuse daemon serving the pool. */
  get daemonPid(): number {
    return this.#zfs.pid;
  }

  /** The directory of the member files. */
  get membersDir(): string {
    return this.#membersDir;
  }

  /** The eight member files. */
  get files(): readonly string[] {
    return this.#files;
  }

  /** The dataset's recordsize in bytes. */
  get recordsize(): number {
    return this.#recordsize;
  }

  /** Whether {@linkcode Raidz3Pool.destroy} has run. */
  get destroyed(): boolean {
    return this.#destroyed;
  }

  /**
   * Bytes the root dataset can still take (`zfs get -Hp available`).
   * @throws {DriverError} When the pool is destroyed or `zfs get` fails.
   */
  async available(): Promise<number> {
    this.#requireLive("zfs.get");
    const out = await this.#zfs.zfs(["get", "-Hp", "-o", "value", "available", this.#name]);
    const n = Number(out.trim());
    if (!Number.isSafeInteger(n)) {
      throw new DriverError("zfs.get", `Unexpected available value ${JSON.stringify(out.trim())}`);
    }
    return n;
  }

  /**
   * Exports the pool and imports it again (`zpool export NAME`, `zpool import -d MEMBERS NAME`),
   * which empties ZFS's ARC of it and unmounts the dataset, so the kernel's page cache of the FUSE
   * mount goes too.
   * @param dropMemberCache Also flush and evict the member files from the host's page cache
   *   while the pool is exported, so the next reads come from disk.
   * @throws {DriverError} When a step fails, or the dataset is not mounted again.
   */
  async remount(dropMemberCache = false): Promise<void> {
    this.#requireLive("zpool.export");
    await this.#zfs.zpool(["export", this.#name]);
    try {
      if (dropMemberCache) { for (const f of this.#files) await dropFileCache(f); }
    } finally {
      await this.#zfs.zpool(["import", "-d", this.#membersDir, this.#name]);
    }
    if (!(await zfsMounted(this.#mountpoint))) {
      throw new DriverError("zpool.import", `${this.#name} is not mounted at ${this.#mountpoint}`);
    }
  }

  /**
   * Destroys the pool and removes its member files and directories. Calling it again does nothing.
   *
   * zfs-fuse sometimes answers `zpool destroy` with "pool is busy" just after a file on the pool
   * was closed or removed; a try a little later works (usually the second, after a second; seen
   * once here to need more than three). So after a failure it tries again after 1, 1, 2, 3 and
   * 5 seconds, then `zpool destroy -f`, and as a last resort `zpool export -f` (which also takes
   * the pool out of zpool.cache); failures after the first are logged as warnings.
   * @throws {DriverError} When the daemon is stopped or every try fails; the files are then kept.
   */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    const attempts = [
      ...Array.from({ length: 6 }, () => ["destroy", this.#name]),
      ["destroy", "-f", this.#name],
      ["export", "-f", this.#name],
    ];
    const waits = [1000, 1000, 2000, 3000, 5000, 1000, 1000];
    for (let i = 0;; i++) {
      const out = await this.#zfs.zpoolTry(attempts[i]);
      if (out.code === 0) break;
      const listed = await this.#zfs.zpoolTry(["list", this.#name]);
      if (listed.code !== 0 && /no such pool/i.test(listed.stderr + listed.stdout)) break;
      if (i === attempts.length - 1) {
        throw commandError("zpool.destroy", ["zpool", ...attempts[i]], out);
      }
      // The first "pool is busy" is routine with zfs-fuse; later ones are worth a warning.
      const say = i === 0 ? this.#zfs.log.debug : this.#zfs.log.warn;
      say.call(this.#zfs.log, `zpool ${attempts[i].join(" ")} failed; trying again`, {
        exitCode: out.code,
        stderr: out.stderr.trim(),
        next: `zpool ${attempts[i + 1].join(" ")}`,
      });
      await sleep(waits[i]);
    }
    this.#destroyed = true;
    this.#zfs.track(this, false);
    await Deno.remove(this.#membersDir, { recursive: true }).catch(() => {});
    await Deno.remove(this.#mountpoint).catch(() => {});
  }

  #requireLive(op: string): void {
    if (this.#destroyed) throw new DriverError(op, `Pool ${this.#name} is destroyed`);
  }
}

/**
 * Flushes a file's dirty pages and evicts it from the host's page cache
 * (`fsync`, then `dd if=FILE iflag=nocache count=0`, which advises the kernel to drop it).
 * @param path The file.
 * @throws {DriverError} When the file cannot be opened or `dd` fails.
 */
export async function dropFileCache(path: string): Promise<void> {
  try {
    using f = await Deno.open(path, { read: true });
    await f.sync();
  } catch (err) {
    throw new DriverError("cache.drop", `Cannot flush ${path}`, { cause: err });
  }
  const dd = await findTool("dd");
  const argv = [dd, `if=${path}`, "iflag=nocache", "count=0", "status=none"];
  const out = await runCommand(dd, argv.slice(1));
  if (out.code !== 0) throw commandError("cache.drop", argv, out);
}

/**
 * Creates a raidz3 pool over eight sparse files under `dir` and mounts it under `dir`.
 *
 * Runs `zpool create -f -m DIR/NAME -O compression=off -O atime=off -O recordsize=R NAME raidz3
 * DIR/NAME-members/m1 … m8` and checks with `zfs get` that the properties took.
 *
 * @param zfs The daemon.
 * @param dir An existing directory.
 * @param options The pool's name, member size and recordsize.
 * @returns The pool; call {@linkcode Raidz3Pool.destroy} when done (the daemon's stop does it
 *   otherwise).
 * @throws {ValidationError} On a bad name, size or recordsize, a missing `dir`, or when the name
 *   is taken or its paths exist; nothing is changed then.
 * @throws {DriverError} When `zpool create` fails; what was created is removed.
 */
export async function createRaidz3(
  zfs: ZfsFuse,
  dir: string,
  options: Raidz3Options,
): Promise<Raidz3Pool> {
  const { name, fileBytes, recordsize = 128 * 1024 } = options;
  if (typeof name !== "string" || !/^[A-Za-z][A-Za-z0-9_-]{0,31}$/.test(name)) {
    throw new ValidationError(
      `Pool name must be a letter then up to 31 letters, digits, _ or -, not ${
        JSON.stringify(name)
      }`,
    );
  }
  if (RESERVED_NAMES.test(name)) {
    throw new ValidationError(`Pool name ${name} starts with a word ZFS reserves`);
  }
  checkRecordsize(recordsize);
  checkFileBytes(fileBytes);
  if (zfs.stopped) throw new DriverError("zpool.create", "The zfs-fuse daemon is stopped");
  dir = await requireDirectory(dir, "The pool directory");
  const mountpoint = `${dir}/${name}`;
  const membersDir = `${dir}/${name}-members`;
  for (const p of [mountpoint, membersDir]) {
    if (await exists(p)) throw new ValidationError(`${p} already exists`);
  }
  const taken = await zfs.zpoolTry(["list", name]);
  if (taken.code === 0) throw new ValidationError(`A pool named ${name} already exists`);

  const files = Array.from({ length: 8 }, (_, i) => `${membersDir}/m${i + 1}`);
  const pool = new Raidz3Pool(zfs, name, mountpoint, membersDir, files, recordsize);
  await Deno.mkdir(membersDir);
  let created = false;
  try {
    for (const f of files) {
      using file = await Deno.open(f, { write: true, createNew: true });
      await file.truncate(fileBytes);
    }
    await zfs.zpool([
      "create",
      "-f",
      "-m",
      mountpoint,
      "-O",
      "compression=off",
      "-O",
      "atime=off",
      "-O",
      `recordsize=${recordsize}`,
      name,
      "raidz3",
      ...files,
    ]);
    created = true;
    zfs.track(pool, true);
    const props = await zfs.zfs([
      "get",
      "-Hp",
      "-o",
      "property,value",
      "compression,recordsize,mountpoint",
      name,
    ]);
    const got = Object.fromEntries(props.trim().split("\n").map((l) => l.split("\t")));
    if (
      got.compression !== "off" || Number(got.recordsize) !== recordsize ||
      got.mountpoint !== mountpoint
    ) {
      throw new DriverError("zpool.create", `Pool ${name} has unexpected properties`, {
        cause: got,
      });
    }
    if (!(await zfsMounted(mountpoint))) {
      throw new DriverError("zpool.create", `${name} is not mounted at ${mountpoint}`);
    }
    return pool;
  } catch (err) {
    if (created) await pool.destroy().catch(() => {});
    else {
      await Deno.remove(membersDir, { recursive: true }).catch(() => {});
      await Deno.remove(mountpoint).catch(() => {});
    }
    throw err;
  }
}

/** Clock ticks per second of the times in `/proc/PID/stat` (`USER_HZ`, 100 on Linux). */
const USER_HZ = 100;

/**
 * CPU time a process has used so far, all its threads, user and system (`/proc/PID/stat`).
 * @param pid A process, or `"self"`.
 * @returns Seconds.
 * @throws {DriverError} When the process is gone or its stat cannot be read.
 */
export async function cpuSeconds(pid: number | "self"): Promise<number> {
  let stat: string;
  try {
    stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  } catch (err) {
    throw new DriverError("cpu.read", `Cannot read /proc/${pid}/stat`, { cause: err });
  }
  // Fields after the command name (in parentheses, which may hold spaces): state is field 3,
  // utime and stime fields 14 and 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[11]) + Number(fields[12]);
  if (!Number.isFinite(ticks)) throw new DriverError("cpu.read", `Unexpected /proc/${pid}/stat`);
  return ticks / USER_HZ;
}

/** Options of {@linkcode zfsSequential}. */
export interface SequentialOptions {
  /** Also evict the member files from the host's page cache before reading (default false). */
  dropMemberCache?: boolean;
}

/** The outcome of {@linkcode zfsSequential}. */
export interface SequentialResult {
  /** Bytes written and read back. */
  bytes: number;
  /** Bytes per write and per read call. */
  chunk: number;
  /** Seconds from the first write to the end of the fsync. */
  writeSeconds: number;
  /** Seconds to read the file back after the pool was exported and imported. */
  readSeconds: number;
  /** Seconds the export and import took (not part of either figure). */
  remountSeconds: number;
  /** Write throughput including the fsync, in MB/s (10^6 bytes). */
  writeMBps: number;
  /** Read throughput, in MB/s (10^6 bytes). */
  readMBps: number;
  /** Whether the member files were also evicted from the host's page cache before reading. */
  dropMemberCache: boolean;
  /** CPU seconds the daemon and this process used for the write (with the fsync). */
  writeCpuSeconds: number;
  /** CPU seconds the daemon and this process used for the read. */
  readCpuSeconds: number;
}

/**
 * Random bytes from which every chunk is taken at its own offset ({@linkcode offsetOf}), so no
 * two records are alike and none compresses. The pool benchmark writes the same bytes.
 * @param chunk Bytes per write call.
 * @returns `span + chunk` random bytes, and `span` (16 MiB): chunk offsets lie below it.
 */
export function sourceData(chunk: number): { data: Uint8Array; span: number } {
  const span = 16 * MIB;
  const data = new Uint8Array(span + chunk);
  for (let i = 0; i < data.length; i += 65536) {
    crypto.getRandomValues(data.subarray(i, Math.min(data.length, i + 65536)));
  }
  return { data, span };
}

/**
 * The offset in the source of chunk `i` (1 000 003 is odd, so offsets differ for i < 2^24).
 * @param i The chunk's index.
 * @param span The `span` of {@linkcode sourceData}.
 */
export function offsetOf(i: number, span: number): number {
  return (i * 1_000_003) % span;
}

/**
 * Times a sequential write and read of one file on a pool.
 *
 * Writes `bytes` of incompressible data in `chunk`-sized writes to a new file, then fsyncs it
 * (timed together). Then exports and imports the pool ({@linkcode Raidz3Pool.remount}) so the
 * read is served neither by ZFS's ARC nor by the kernel's page cache of the mount, and reads the
 * file back in `chunk`-sized reads, timed, checking samples of every chunk. The file is removed
 * afterwards.
 *
 * @param pool The pool.
 * @param bytes How much to write and read (at most what the pool has available).
 * @param chunk Bytes per write and read call (1 to 64 MiB).
 * @param options Whether to evict the member files from the host's page cache too.
 * @returns The timings and MB/s figures.
 * @throws {ValidationError} On bad sizes, or when `bytes` does not fit; nothing is written then.
 * @throws {DriverError} When a step fails or the data read back differs.
 */
export async function zfsSequential(
  pool: Raidz3Pool,
  bytes: number,
  chunk: number,
  options: SequentialOptions = {},
): Promise<SequentialResult> {
  const dropMemberCache = options.dropMemberCache ?? false;
  checkBytes(bytes);
  checkChunk(chunk);
  if (pool.destroyed) throw new DriverError("zfs.sequential", `Pool ${pool.name} is destroyed`);
  const available = await pool.available();
  if (bytes > available * 0.95) {
    throw new ValidationError(
      `${bytes} bytes do not fit in pool ${pool.name} (${available} bytes available)`,
    );
  }
  // raidz3 stores 8 bytes for every 5 written, in the sparse member files on the host.
  const needed = Math.ceil(bytes * 8 / 5 * 1.05);
  const host = await hostAvailable(pool.membersDir);
  if (needed > host) {
    throw new ValidationError(
      `${bytes} bytes need about ${needed} bytes of host disk under ${pool.membersDir} (${host} free)`,
    );
  }
  const path = `${pool.mountpoint}/sequential.bin`;
  const { data, span } = sourceData(chunk);
  const n = Math.ceil(bytes / chunk);
  let written = false;
  const cpu = async () => await cpuSeconds(pool.daemonPid) + await cpuSeconds("self");
  try {
    let cpuStart = await cpu();
    let start = performance.now();
    {
      using f = await Deno.open(path, { write: true, createNew: true });
      written = true;
      for (let i = 0; i < n; i++) {
        const off = offsetOf(i, span);
        let part = data.subarray(off, off + Math.min(chunk, bytes - i * chunk));
        while (part.length > 0) part = part.subarray(await f.write(part));
      }
      await f.sync();
    }
    const writeSeconds = (performance.now() - start) / 1000;
    const writeCpuSeconds = await cpu() - cpuStart;

    start = performance.now();
    await pool.remount(dropMemberCache);
    const remountSeconds = (performance.now() - start) / 1000;

    const buf = new Uint8Array(chunk);
    cpuStart = await cpu();
    start = performance.now();
    let total = 0;
    {
      using f = await Deno.open(path, { read: true });
      for (let i = 0;; i++) {
        let filled = 0;
        while (filled < chunk) {
          const got = await f.read(buf.subarray(filled));
          if (got === null) break;
          filled += got;
        }
        if (filled === 0) break;
        const expect = Math.min(chunk, bytes - i * chunk);
        if (filled !== expect || !samplesMatch(buf, filled, data, offsetOf(i, span))) {
          throw new DriverError("zfs.sequential", `Chunk ${i} of ${path} reads back wrong`);
        }
        total += filled;
        if (filled < chunk) break;
      }
    }
    const readSeconds = (performance.now() - start) / 1000;
    const readCpuSeconds = await cpu() - cpuStart;
    if (total !== bytes) {
      throw new DriverError("zfs.sequential", `Read ${total} bytes of ${path}, wrote ${bytes}`);
    }
    return {
      bytes,
      chunk,
      writeSeconds,
      readSeconds,
      remountSeconds,
      writeMBps: bytes / MB / writeSeconds,
      readMBps: bytes / MB / readSeconds,
      dropMemberCache,
      writeCpuSeconds,
      readCpuSeconds,
    };
  } finally {
    if (written) await Deno.remove(path).catch(() => {});
  }
}

/**
 * Bytes free to unprivileged users on the file system holding `path` (`df -B1`).
 * @param path Any path on that file system.
 * @throws {DriverError} When `df` is missing or fails.
 */
export async function hostAvailable(path: string): Promise<number> {
  const df = await findTool("df");
  const argv = [df, "-B1", "--output=avail", path];
  const out = await runCommand(df, argv.slice(1));
  const n = Number(out.stdout.trim().split("\n").at(-1));
  if (out.code !== 0 || !Number.isSafeInteger(n)) throw commandError("df", argv, out);
  return n;
}

/**
 * Compares 16 bytes at each 4 KiB boundary and at the end of a chunk with the source.
 * @param buf The chunk as read.
 * @param len Its length.
 * @param src The source ({@linkcode sourceData}).
 * @param off Where the chunk starts in the source ({@linkcode offsetOf}).
 */
export function samplesMatch(buf: Uint8Array, len: number, src: Uint8Array, off: number): boolean {
  const check = (at: number) => {
    for (let k = at; k < Math.min(len, at + 16); k++) if (buf[k] !== src[off + k]) return false;
    return true;
  };
  for (let at = 0; at < len; at += 4096) if (!check(at)) return false;
  return check(Math.max(0, len - 16));
}

/** Options of {@linkcode runZfsSequential}. */
export interface RunOptions {
  /** Bytes to write and read back. */
  bytes: number;
  /** Bytes per write and read call (default 1 MiB). */
  chunk?: number;
  /** Size of each member file (default: enough for `bytes` twice over, at least 256 MiB). */
  fileBytes?: number;
  /** Recordsizes to measure, one pool each (default [131072]). */
  recordsizes?: number[];
  /** Also evict the member files from the host's page cache before reading. */
  dropMemberCache?: boolean;
  /** Where quirks are logged. */
  log?: Logger;
}

/**
 * Runs the whole zfs-fuse side in a temporary directory: starts a daemon, and for each recordsize
 * creates a raidz3 pool, runs {@linkcode zfsSequential} and destroys the pool; then stops the
 * daemon and removes the directory, whatever happened.
 *
 * @param options Sizes, recordsizes and logger.
 * @returns One result per recordsize, in order.
 * @throws {ValidationError} On bad sizes.
 * @throws {DriverError} As {@linkcode startZfsFuse}, {@linkcode createRaidz3} and
 *   {@linkcode zfsSequential}.
 */
export async function runZfsSequential(
  options: RunOptions,
): Promise<(SequentialResult & { recordsize: number })[]> {
  const chunk = options.chunk ?? MIB;
  const recordsizes = options.recordsizes ?? [131072];
  checkBytes(options.bytes);
  checkChunk(chunk);
  if (!Array.isArray(recordsizes) || recordsizes.length === 0) {
    throw new ValidationError("recordsizes must list at least one recordsize");
  }
  recordsizes.forEach(checkRecordsize);
  // Five data members of eight: twice `bytes` spread over five, with room for metadata.
  const fileBytes = options.fileBytes ??
    Math.max(256 * MIB, Math.ceil((options.bytes * 2) / 5 / MIB) * MIB);
  checkFileBytes(fileBytes);
  const dir = await Deno.makeTempDir({ prefix: "truecloud-bench-zfs-" });
  const results: (SequentialResult & { recordsize: number })[] = [];
  try {
    const zfs = await startZfsFuse(dir, { log: options.log });
    try {
      for (const [i, recordsize] of recordsizes.entries()) {
        const pool = await createRaidz3(zfs, dir, { name: `bench${i}`, fileBytes, recordsize });
        let r: SequentialResult;
        try {
          r = await zfsSequential(pool, options.bytes, chunk, {
            dropMemberCache: options.dropMemberCache,
          });
        } catch (err) {
          await pool.destroy().catch(() => {}); // the daemon's stop() tries again
          throw err;
        }
        results.push({ ...r, recordsize });
        try {
          await pool.destroy();
        } catch (err) {
          // The measurement stands: the daemon's stop() tries again, and throws if it fails.
          options.log?.warn("Pool not destroyed yet; trying again at the end", {
            pool: pool.name,
            err,
          });
        }
      }
    } finally {
      await zfs.stop();
    }
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  return results;
}
