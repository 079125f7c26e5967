// The file system on a byte store: operations, errors, reopening, crashes at every step of a
// commit, failed and aborted writes, running out of space, and a large file streamed in bounded
// memory.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fc from "fast-check";
import { ManualClock } from "../../protocol/mod.ts";
import { type ByteStore, MemoryByteStore } from "./byte_store.ts";
import {
  FileError,
  type FileErrorCode,
  FileStore,
  INLINE_MAX,
  MAX_NAME_BYTES,
  parsePath,
} from "./files.ts";

/** A store error raised on purpose. */
class InjectedError extends Error {}

/**
 * A store that keeps writes since the last flush apart, as a disk cache would: reads see them, a
 * flush makes them durable in `base`. It can be told to crash after a number of operations; what
 * the crash leaves of the unflushed writes is chosen afterwards with {@linkcode JournalStore.crash}.
 */
class JournalStore implements ByteStore {
  readonly base: MemoryByteStore;
  readonly size: number;
  readonly alignment: number;
  #pending: { offset: number; data: Uint8Array }[] = [];
  /** Operations (write, flush, trim) left before the crash; unlimited when undefined. */
  failAfter?: number;
  crashed = false;
  ops = 0;
  trims: [number, number][] = [];

  constructor(base: MemoryByteStore) {
    this.base = base;
    this.size = base.size;
    this.alignment = base.alignment;
  }

  #op(): void {
    if (this.crashed) throw new InjectedError("The store crashed");
    this.ops++;
    if (this.failAfter !== undefined && this.failAfter-- <= 0) {
      this.crashed = true;
      throw new InjectedError("The store crashed");
    }
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    if (this.crashed) throw new InjectedError("The store crashed");
    const out = await this.base.read(offset, length);
    for (const w of this.#pending) {
      const from = Math.max(offset, w.offset),
        to = Math.min(offset + length, w.offset + w.data.length);
      if (from < to) out.set(w.data.subarray(from - w.offset, to - w.offset), from - offset);
    }
    return out;
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    this.#op();
    this.#pending.push({ offset, data: data.slice() });
    return Promise.resolve();
  }

  async flush(): Promise<void> {
    this.#op();
    for (const w of this.#pending) await this.base.write(w.offset, w.data);
    this.#pending = [];
  }

  trim(offset: number, length: number): Promise<void> {
    this.#op();
    this.trims.push([offset, length]);
    this.#pending.push({ offset, data: new Uint8Array(length) });
    return Promise.resolve();
  }

  /**
   * Decides what the crash left of the unflushed writes: `none`, `all`, `torn` (all, the last
   * one only half), or a pseudo-random subset from a seed.
   */
  async crash(mode: "none" | "all" | "torn" | number): Promise<void> {
    const pending = this.#pending;
    this.#pending = [];
    this.crashed = true;
    let seed = typeof mode === "number" ? mode : 0;
    for (let i = 0; i < pending.length; i++) {
      const w = pending[i];
      if (mode === "none") break;
      if (typeof mode === "number") {
        seed = (seed * 1103515245 + 12345) >>> 0;
        if (seed & 0x100) continue;
      }
      const torn = mode === "torn" && i === pending.length - 1;
      await this.base.write(w.offset, torn ? w.data.subarray(0, w.data.length >> 1) : w.data);
    }
  }
}

/** A store that fails its writes past a number of bytes written, or on demand. */
class FailingStore implements ByteStore {
  readonly inner: ByteStore;
  readonly size: number;
  readonly alignment: number;
  /** Bytes that may still be written before writes fail. */
  budget = Infinity;
  failFlush = false;

  constructor(inner: ByteStore) {
    this.inner = inner;
    this.size = inner.size;
    this.alignment = inner.alignment;
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    return this.inner.read(offset, length);
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    if (data.length > this.budget) return Promise.reject(new InjectedError("Write failed"));
    this.budget -= data.length;
    return this.inner.write(offset, data);
  }

  flush(): Promise<void> {
    if (this.failFlush) return Promise.reject(new InjectedError("Flush failed"));
    return this.inner.flush();
  }

  trim(offset: number, length: number): Promise<void> {
    return this.inner.trim(offset, length);
  }
}

/** A store on a temporary file: nothing of it is kept in memory. */
class TempFileStore implements ByteStore {
  readonly size: number;
  readonly alignment: number;
  readonly #file: Deno.FsFile;
  #tail: Promise<unknown> = Promise.resolve();
  /** Bytes written and read so far. */
  written = 0;
  readBytes = 0;

  private constructor(file: Deno.FsFile, size: number, alignment: number) {
    this.#file = file;
    this.size = size;
    this.alignment = alignment;
  }

  static async create(path: string, size: number, alignment: number): Promise<TempFileStore> {
    const file = await Deno.open(path, { read: true, write: true, create: true, truncate: true });
    await file.truncate(size);
    return new TempFileStore(file, size, alignment);
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const r = this.#tail.then(fn);
    this.#tail = r.catch(() => {});
    return r;
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    return this.#serial(async () => {
      const out = new Uint8Array(length);
      this.readBytes += length;
      await this.#file.seek(offset, Deno.SeekMode.Start);
      for (let at = 0; at < length;) {
        const n = await this.#file.read(out.subarray(at));
        if (n === null) break;
        at += n;
      }
      return out;
    });
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    return this.#serial(async () => {
      await this.#file.seek(offset, Deno.SeekMode.Start);
      for (let at = 0; at < data.length;) at += await this.#file.write(data.subarray(at));
      this.written += data.length;
    });
  }

  flush(): Promise<void> {
    return this.#serial(() => this.#file.syncData());
  }

  trim(offset: number, length: number): Promise<void> {
    return this.write(offset, new Uint8Array(length));
  }

  close(): void {
    this.#file.close();
  }
}

/** Bytes as hex SHA-256. */
function hashOf(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Everything a file store holds: path → `dir` or the content's hash and size, with times.
 * @param files The store.
 * @param withTimes Include times.
 */
async function dump(files: FileStore, withTimes = true): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (path: string) => {
    for (const e of await files.list(path)) {
      const times = withTimes ? ` ${e.ctime} ${e.mtime}` : "";
      if (e.type === "directory") {
        out[e.path] = `dir${times}`;
        await walk(e.path);
      } else {
        const bytes = await files.readAll(e.path);
        out[e.path] = `${e.size} ${hashOf(bytes)}${times}`;
      }
    }
  };
  await walk("/");
  return out;
}

/**
 * Bytes of a pattern: deterministic, different for every seed.
 * @param length How many.
 * @param seed Which pattern.
 */
function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const T0 = 1_767_225_600_000;
function enc(s: string): Uint8Array {
  return new TextEncoder().encode(s);
}

function dec(b: Uint8Array): string {
  return new TextDecoder().decode(b);
}

async function rejectsWith(p: Promise<unknown>, code: FileErrorCode): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof FileError, `expected a FileError, got ${err}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, /^[A-Z/]/);
    assert.doesNotMatch(err.message, /\.$/);
    return true;
  });
}

async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.slice(at, at + size);
}

async function fresh(units = 256, alignment = 4096) {
  const clock = new ManualClock(T0);
  const store = new MemoryByteStore(units * alignment, alignment);
  const files = await FileStore.format(store, { clock });
  return { clock, store, files };
}

Deno.test("FileStore.format() makes an empty root that open() finds again", async () => {
  const { store, files, clock } = await fresh();
  assert.deepEqual(await files.list("/"), []);
  const root = await files.stat("/");
  assert.equal(root.type, "directory");
  assert.equal(root.path, "/");
  await files.close();
  const again = await FileStore.open(store, { clock });
  assert.deepEqual(await again.list("/"), []);
  assert.equal(again.generation, 1);
  await again.close();
});

Deno.test("FileStore writes, stats, lists and reads files and directories", async () => {
  const { files, clock } = await fresh();
  await files.mkdir("/docs");
  clock.advance(1000);
  const big = pattern(3 * 4096 + 17, 1);
  const r1 = await files.write("/docs/big.bin", chunked(big, 1000));
  assert.equal(r1.created, true);
  assert.equal(r1.info.size, big.length);
  assert.equal(r1.info.sha256, hashOf(big));
  assert.equal(r1.info.etag, `"${hashOf(big).slice(0, 32)}"`);
  assert.equal(r1.info.mtime, T0 + 1000);
  await files.write("/docs/small.txt", enc("hello"));
  await files.write("/empty", new Uint8Array(0));
  assert.deepEqual(
    (await files.list("/docs")).map((e) => [e.name, e.type, e.size]),
    [["big.bin", "file", big.length], ["small.txt", "file", 5]],
  );
  assert.deepEqual((await files.list("/")).map((e) => e.path), ["/docs", "/empty"]);
  assert.deepEqual(await files.readAll("/docs/big.bin"), big);
  assert.equal(dec(await files.readAll("/docs/small.txt")), "hello");
  assert.equal((await files.readAll("/empty")).length, 0);
  // Ranges, across units and clipped at the end.
  assert.deepEqual(
    await files.readAll("/docs/big.bin", { offset: 4000, length: 5000 }),
    big.slice(4000, 9000),
  );
  assert.deepEqual(await files.readAll("/docs/big.bin", { offset: 12000 }), big.slice(12000));
  assert.deepEqual(
    await files.readAll("/docs/big.bin", { offset: 12000, length: 1 << 20 }),
    big.slice(12000),
  );
  assert.equal(dec(await files.readAll("/docs/small.txt", { offset: 1, length: 3 })), "ell");
  assert.equal((await files.readAll("/docs/small.txt", { offset: 5 })).length, 0);
  // Trailing slashes name the same thing.
  assert.equal((await files.stat("/docs/")).path, "/docs");
  const docs = await files.stat("/docs");
  assert.equal(docs.mtime, T0 + 1000);
  assert.equal(docs.ctime, T0);
  await files.close();
});

Deno.test("FileStore refuses bad paths and impossible operations with clear errors", async () => {
  const { files } = await fresh();
  await files.mkdir("/d");
  await files.write("/d/f", enc("x"));
  await files.mkdir("/d/sub");
  const before = await dump(files);
  const long = "n".repeat(MAX_NAME_BYTES + 1);
  for (const path of ["", "d", "/d//f", "/./d", "/d/..", "/a\0b", `/${long}`, "/\ud800"]) {
    await rejectsWith(files.stat(path), "invalid");
    await rejectsWith(files.write(path, enc("x")), "invalid");
    await rejectsWith(files.mkdir(path), "invalid");
  }
  await rejectsWith(files.stat("/" + "a/".repeat(2100) + "b"), "invalid");
  await rejectsWith(files.stat("/nope"), "not_found");
  await rejectsWith(files.list("/d/f"), "not_a_directory");
  await rejectsWith(files.stat("/d/f/g"), "not_a_directory");
  await rejectsWith(files.write("/d/f/g", enc("x")), "not_a_directory");
  await rejectsWith(files.write("/nope/g", enc("x")), "not_found");
  await rejectsWith(files.write("/d", enc("x")), "is_a_directory");
  await rejectsWith(files.write("/", enc("x")), "is_a_directory");
  await rejectsWith(files.read("/d"), "is_a_directory");
  await rejectsWith(files.read("/d/f", { offset: 2 }), "invalid");
  await rejectsWith(files.read("/d/f", { offset: -1 }), "invalid");
  await rejectsWith(files.mkdir("/d"), "exists");
  await rejectsWith(files.mkdir("/"), "exists");
  await rejectsWith(files.mkdir("/x/y"), "not_found");
  await rejectsWith(files.delete("/d"), "not_empty");
  await rejectsWith(files.delete("/"), "invalid");
  await rejectsWith(files.delete("/nope"), "not_found");
  await rejectsWith(files.move("/d", "/d/sub/x"), "invalid");
  await rejectsWith(files.move("/d", "/d"), "invalid");
  await rejectsWith(files.move("/", "/x"), "invalid");
  await rejectsWith(files.move("/d/f", "/"), "invalid");
  await rejectsWith(files.move("/d/f", "/d/sub"), "exists");
  await rejectsWith(files.move("/d/f", "/nope/f"), "not_found");
  await rejectsWith(files.copy("/d", "/d/sub/x"), "invalid");
  await rejectsWith(files.copy("/nope", "/x"), "not_found");
  await rejectsWith(files.write("/d/g", [enc("a"), "b" as unknown as Uint8Array]), "invalid");
  assert.deepEqual(await dump(files), before);
  await files.close();
  await rejectsWith(files.stat("/d"), "closed");
  await rejectsWith(files.mkdir("/e"), "closed");
});

Deno.test("parsePath() accepts exactly the valid paths", () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.oneof(
          fc.string({ unit: "grapheme", maxLength: 12 }),
          fc.constantFrom("", ".", "..", "a\0", "x"),
        ).filter((n) => !n.includes("/")),
        { maxLength: 5 },
      ),
      (names) => {
        const path = "/" + names.join("/");
        let parsed: string[] | undefined;
        try {
          parsed = parsePath(path);
        } catch (err) {
          assert.ok(err instanceof FileError && err.code === "invalid");
        }
        const good = (ns: string[]) =>
          ns.every((n) => n !== "" && n !== "." && n !== ".." && !n.includes("\0"));
        if (names.length === 1 && names[0] === "") assert.deepEqual(parsed, []);
        else if (good(names)) assert.deepEqual(parsed, names);
        else if (names.at(-1) === "" && names.length > 1 && good(names.slice(0, -1))) {
          assert.deepEqual(parsed, names.slice(0, -1), "one trailing slash is forgiven");
        } else assert.equal(parsed, undefined, `${JSON.stringify(path)} is accepted`);
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("FileStore.open() gives back the same tree, contents and times", async () => {
  const { files, store, clock } = await fresh();
  await files.mkdir("/a");
  await files.mkdir("/a/b");
  for (let i = 0; i < 20; i++) {
    clock.advance(7);
    await files.write(`/a/${i % 2 ? "b/" : ""}f${i}`, pattern(i * 911, i));
  }
  await files.copy("/a/b", "/c");
  await files.move("/a/f0", "/a/b/moved");
  await files.delete("/a/f2");
  await files.write("/a/f4", pattern(9000, 99));
  const before = await dump(files);
  const usage = files.usage();
  await files.close();
  const again = await FileStore.open(store, { clock });
  assert.deepEqual(await dump(again), before);
  assert.deepEqual(again.usage(), usage);
  // And it keeps working: allocations after reopening do not clobber anything.
  await again.write("/new", pattern(20000, 5));
  await again.delete("/c", { recursive: true });
  const after = await dump(again);
  await again.close();
  const third = await FileStore.open(store, { clock });
  assert.deepEqual(await dump(third), after);
  await third.close();
});

Deno.test("FileStore.copy() shares units, and the copy survives its source", async () => {
  const { files } = await fresh();
  await files.mkdir("/src");
  await files.write("/src/a", pattern(40000, 1));
  await files.write("/src/b", pattern(100, 2));
  const used = files.usage().usedBytes;
  assert.deepEqual(await files.copy("/src", "/dst"), { replaced: false });
  assert.ok(files.usage().usedBytes - used <= 4096, "a copy costs only metadata");
  await files.delete("/src", { recursive: true });
  assert.deepEqual(await files.readAll("/dst/a"), pattern(40000, 1));
  assert.deepEqual(await files.readAll("/dst/b"), pattern(100, 2));
  // A shallow copy of a directory is empty.
  await files.copy("/dst", "/shallow", { shallow: true });
  assert.deepEqual(await files.list("/shallow"), []);
  // Overwrite replaces a whole directory.
  await files.write("/file", enc("f"));
  await rejectsWith(files.copy("/file", "/dst"), "exists");
  assert.deepEqual(await files.copy("/file", "/dst", { overwrite: true }), { replaced: true });
  assert.equal((await files.stat("/dst")).type, "file");
  assert.deepEqual(await files.move("/dst", "/file", { overwrite: true }), { replaced: true });
  await rejectsWith(files.stat("/dst"), "not_found");
  await files.close();
});

Deno.test("FileStore frees replaced and deleted units after the commit, trimming them", async () => {
  const base = new MemoryByteStore(128 * 4096, 4096);
  const store = new JournalStore(base);
  const files = await FileStore.format(store);
  const empty = files.usage().usedBytes;
  await files.write("/f", pattern(10 * 4096, 1));
  assert.equal(files.usage().usedBytes, empty + 10 * 4096);
  store.trims = [];
  await files.write("/f", pattern(5 * 4096, 2));
  assert.equal(files.usage().usedBytes, empty + 5 * 4096);
  assert.ok(store.trims.some(([, n]) => n === 10 * 4096), "the old version is trimmed");
  await files.delete("/f");
  assert.equal(files.usage().usedBytes, empty);
  await files.close();
});

Deno.test("FileStore.read() keeps reading the version it started with", async () => {
  const { files } = await fresh(512);
  const old = pattern(300_000, 1);
  await files.write("/f", old);
  const used = files.usage().usedBytes;
  const { info, body } = await files.read("/f");
  const reader = body.getReader();
  const first = await reader.read();
  await files.write("/f", pattern(300_000, 2));
  await files.write("/g", pattern(600_000, 3)); // may not land on the old version's units
  assert.ok(files.usage().usedBytes > used + 600_000, "the old version is still held");
  const parts = [first.value!];
  for (let r = await reader.read(); !r.done; r = await reader.read()) parts.push(r.value);
  const got = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) (got.set(p, at), at += p.length);
  assert.equal(hashOf(got), info.sha256);
  assert.deepEqual(got, old);
  await files.close(); // waits for the old version's units to be freed
  assert.equal(files.usage().usedBytes, used + Math.ceil(600_000 / 4096) * 4096);
});

Deno.test("FileStore.read() releases a cancelled stream's version", async () => {
  const { files } = await fresh(512);
  await files.write("/f", pattern(300_000, 1));
  const used = files.usage().usedBytes;
  const { body } = await files.read("/f");
  await files.delete("/f");
  assert.equal(files.usage().usedBytes, used, "still held by the reader");
  await body.cancel();
  await files.close();
  assert.ok(files.usage().usedBytes < used - 290_000);
});

Deno.test("FileStore.write() honours If-Match and If-None-Match when it commits", async () => {
  const { files } = await fresh();
  await files.write("/f", enc("one"));
  const { etag } = await files.stat("/f");
  await rejectsWith(files.write("/f", enc("x"), { ifNoneMatch: "*" }), "precondition_failed");
  await rejectsWith(files.write("/g", enc("x"), { ifMatch: "*" }), "precondition_failed");
  await rejectsWith(files.write("/f", enc("x"), { ifMatch: ['"nope"'] }), "precondition_failed");
  await rejectsWith(files.write("/f", enc("x"), { ifNoneMatch: [etag!] }), "precondition_failed");
  // Two writers that both saw version one: the second to commit fails.
  let release!: () => void;
  const gate = new Promise<void>((r) => release = r);
  async function* slow() {
    yield enc("thr");
    await gate;
    yield enc("ee");
  }
  const first = files.write("/f", slow(), { ifMatch: [etag!] });
  await files.write("/f", enc("two"), { ifMatch: [etag!] });
  release();
  await rejectsWith(first, "precondition_failed");
  assert.equal(dec(await files.readAll("/f")), "two");
  await files.write("/f", enc("three"), { ifMatch: [(await files.stat("/f")).etag!] });
  await files.write("/h", enc("new"), { ifNoneMatch: "*" });
  assert.equal(dec(await files.readAll("/h")), "new");
  await files.close();
});

Deno.test("FileStore serializes changes while reads and other writes go on", async () => {
  const { files } = await fresh(1024);
  await files.write("/keep", pattern(50_000, 9));
  const writes = Array.from(
    { length: 8 },
    (_, i) => files.write(`/f${i}`, chunked(pattern(20_000 + i, i), 3000)),
  );
  const reads = Array.from({ length: 8 }, () => files.readAll("/keep"));
  const dirs = Array.from({ length: 8 }, (_, i) => files.mkdir(`/d${i}`));
  await Promise.all([...writes, ...dirs]);
  for (const r of await Promise.all(reads)) assert.deepEqual(r, pattern(50_000, 9));
  for (let i = 0; i < 8; i++) {
    assert.deepEqual(await files.readAll(`/f${i}`), pattern(20_000 + i, i));
  }
  assert.equal((await files.list("/")).length, 17);
  await files.close();
});

// ---- crashes ----

type Step = (files: FileStore) => Promise<unknown>;

const SETUP: Step = async (files) => {
  await files.mkdir("/d");
  await files.write("/d/a", pattern(9000, 1));
  await files.write("/d/small", enc("small"));
  await files.write("/b", pattern(5000, 2));
};

const STEPS: Record<string, Step> = {
  "write a new file": (f) => f.write("/d/new", pattern(13_000, 3)),
  "overwrite a file": (f) => f.write("/d/a", pattern(7000, 4)),
  "overwrite a small file": (f) => f.write("/d/small", enc("other")),
  "make a directory": (f) => f.mkdir("/e"),
  "delete a file": (f) => f.delete("/b"),
  "delete a tree": (f) => f.delete("/d", { recursive: true }),
  "move": (f) => f.move("/d/a", "/moved"),
  "move over a file": (f) => f.move("/d/a", "/b", { overwrite: true }),
  "copy a tree": (f) => f.copy("/d", "/d2"),
};

async function crashCase(step: Step, failAfter: number, mode: "none" | "all" | "torn" | number) {
  const clock = new ManualClock(T0);
  const store = new JournalStore(new MemoryByteStore(96 * 4096, 4096));
  const files = await FileStore.format(store, { clock });
  await SETUP(files);
  const old = await dump(files);
  store.failAfter = failAfter;
  let crashed = false;
  try {
    await step(files);
  } catch (err) {
    assert.ok(
      err instanceof InjectedError || (err as Error).cause instanceof InjectedError,
      String(err),
    );
    crashed = true;
  }
  store.failAfter = undefined;
  if (!crashed) return { done: true };
  await store.crash(mode);
  const reopened = await FileStore.open(store.base, { clock });
  const after = await dump(reopened);
  // The same step on an undisturbed store gives the new state.
  const ref = await FileStore.format(new MemoryByteStore(96 * 4096, 4096), {
    clock: new ManualClock(T0),
  });
  await SETUP(ref);
  await step(ref);
  const next = await dump(ref);
  await ref.close();
  assert.ok(
    JSON.stringify(after) === JSON.stringify(old) || JSON.stringify(after) === JSON.stringify(next),
    `after a crash at operation ${failAfter} (${mode}) the state is neither the old nor the new one:\n` +
      JSON.stringify({ old, next, after }, null, 1),
  );
  // The reopened store still works and keeps what it holds.
  await reopened.write("/later", pattern(20_000, 7));
  assert.deepEqual(await reopened.readAll("/later"), pattern(20_000, 7));
  const kept = await dump(reopened);
  await reopened.close();
  const third = await FileStore.open(store.base, { clock });
  assert.deepEqual(await dump(third), kept);
  await third.close();
  return { done: false, same: JSON.stringify(after) === JSON.stringify(old) };
}

Deno.test("FileStore survives a crash at every operation of every kind of commit", async () => {
  for (const [name, step] of Object.entries(STEPS)) {
    let sawOld = false, sawNew = false;
    for (let n = 0;; n++) {
      let done = false;
      for (const mode of ["none", "all", "torn", 1, 2, 3] as const) {
        const r = await crashCase(step, n, mode);
        if (r.done) {
          done = true;
          break;
        }
        if (r.same) sawOld = true;
        else sawNew = true;
      }
      if (done) {
        assert.ok(n >= 4, `${name}: a commit takes at least 4 store operations, saw ${n}`);
        break;
      }
      assert.ok(n < 200, `${name}: too many store operations`);
    }
    assert.ok(
      sawOld && sawNew,
      `${name}: crashes should leave both outcomes (old ${sawOld}, new ${sawNew})`,
    );
  }
});

// ---- failures and space ----

Deno.test("FileStore.write() that fails mid-stream keeps the old version and frees its units", async () => {
  const inner = new MemoryByteStore(256 * 4096, 4096);
  const store = new FailingStore(inner);
  const files = await FileStore.format(store);
  await files.write("/f", pattern(50_000, 1));
  const usage = files.usage();
  const before = await dump(files);
  // A store error while writing data.
  store.budget = 100_000;
  await assert.rejects(files.write("/f", chunked(pattern(400_000, 2), 10_000)), InjectedError);
  store.budget = Infinity;
  assert.deepEqual(await dump(files), before);
  assert.deepEqual(files.usage(), usage);
  // A source that fails (a client going away).
  const broken = new ReadableStream<Uint8Array>({
    start(ctl) {
      ctl.enqueue(pattern(300_000, 3));
      ctl.error(new Error("Connection reset"));
    },
  });
  await assert.rejects(files.write("/f", broken), /Connection reset/);
  assert.deepEqual(await dump(files), before);
  assert.deepEqual(files.usage(), usage);
  // An abort signal.
  const ctl = new AbortController();
  async function* aborting() {
    yield pattern(200_000, 4);
    ctl.abort(new Error("Client gone"));
    yield pattern(10, 5);
  }
  await assert.rejects(files.write("/f", aborting(), { signal: ctl.signal }), /Client gone/);
  assert.deepEqual(await dump(files), before);
  assert.deepEqual(files.usage(), usage);
  // A flush that fails before the superblock: nothing is kept.
  store.failFlush = true;
  await assert.rejects(files.write("/f", pattern(30_000, 6)), InjectedError);
  store.failFlush = false;
  assert.deepEqual(files.usage(), usage);
  assert.deepEqual(await dump(files), before);
  await files.write("/f", pattern(30_000, 6));
  assert.deepEqual(await files.readAll("/f"), pattern(30_000, 6));
  await files.close();
  const again = await FileStore.open(inner);
  assert.deepEqual(await again.readAll("/f"), pattern(30_000, 6));
  await again.close();
});

Deno.test("FileStore.write() after a failed superblock write keeps its units until the next commit", async () => {
  const inner = new MemoryByteStore(64 * 4096, 4096);
  const store = new FailingStore(inner);
  const files = await FileStore.format(store);
  await files.write("/f", pattern(20_000, 1));
  const usage = files.usage();
  // Data (5 units) and metadata (1 unit) go through; the superblock write fails.
  store.budget = 6 * 4096;
  await assert.rejects(files.write("/f", pattern(20_000, 2)), InjectedError);
  store.budget = Infinity;
  assert.equal(files.usage().usedBytes, usage.usedBytes + 6 * 4096, "kept for now");
  assert.deepEqual(await files.readAll("/f"), pattern(20_000, 1));
  await files.mkdir("/d");
  assert.equal(files.usage().usedBytes, usage.usedBytes, "freed once a commit succeeded");
  await files.close();
});

Deno.test("FileStore runs out of space cleanly, and a full store can still delete", async () => {
  const { files, store } = await fresh(40);
  const empty = files.usage();
  assert.equal(empty.sizeBytes, 38 * 4096);
  await rejectsWith(files.write("/huge", chunked(pattern(200_000, 1), 8192)), "no_space");
  assert.deepEqual(files.usage(), empty);
  await rejectsWith(files.stat("/huge"), "not_found");
  // Fill it.
  let i = 0;
  for (;; i++) {
    try {
      await files.write(`/f${i}`, pattern(3 * 4096, i));
    } catch (err) {
      assert.ok(err instanceof FileError && err.code === "no_space");
      break;
    }
  }
  assert.ok(i >= 8, `only ${i} files fit`);
  const full = await dump(files);
  assert.ok(files.usage().freeBytes < 3 * 4096);
  await files.delete("/f0");
  await files.move("/f1", "/g1");
  await files.write("/f0", pattern(3 * 4096, 0));
  assert.deepEqual(await files.readAll("/f0"), pattern(3 * 4096, 0));
  delete full["/f1"];
  const after = await dump(files);
  assert.equal(after["/g1"].split(" ")[1], hashOf(pattern(3 * 4096, 1)));
  await files.close();
  const again = await FileStore.open(store);
  assert.deepEqual(await dump(again), after);
  await again.close();
});

Deno.test("FileStore.open() refuses a blank store and one whose superblocks are damaged", async () => {
  const blank = new MemoryByteStore(64 * 4096, 4096);
  await rejectsWith(FileStore.open(blank), "not_formatted");
  const { files, store } = await fresh(64);
  await files.write("/f", enc("x"));
  await files.close();
  for (const at of [100, 4096 + 100]) {
    const b = await store.read(at, 1);
    await store.write(at, Uint8Array.of(b[0] ^ 1));
  }
  await rejectsWith(FileStore.open(store), "corrupt");
  await rejectsWith(FileStore.format(new MemoryByteStore(7 * 4096, 4096)), "invalid");
  await rejectsWith(FileStore.format(new MemoryByteStore(1 << 20, 0)), "invalid");
});

Deno.test("FileStore streams a 64 MiB file in bounded memory, on pool-sized units", async () => {
  const dir = await Deno.makeTempDir();
  const store = await TempFileStore.create(`${dir}/store`, 80 << 20, 5 * 65536);
  try {
    const files = await FileStore.format(store);
    assert.equal(files.unit, 327_680);
    const total = 64 << 20, chunk = 1 << 20;
    const buf = new Uint8Array(chunk);
    const hash = createHash("sha256");
    // Bytes given by the source but not yet written to the store.
    let ahead = 0, yielded = 0;
    const source = async function* () {
      for (let i = 0; i < total / chunk; i++) {
        buf.fill(i & 0xff);
        buf[i % chunk] = 0x5a;
        hash.update(buf);
        ahead = Math.max(ahead, yielded - store.written);
        yielded += chunk;
        yield buf;
      }
    };
    const t0 = performance.now();
    const { info } = await files.write("/big", source());
    const ms = performance.now() - t0;
    assert.equal(info.size, total);
    assert.equal(info.sha256, hash.digest("hex"));
    assert.ok(ahead <= (4 << 20) + chunk, `${ahead} bytes were held before being written`);
    // Reading pulls from the store only as the reader asks.
    const check = createHash("sha256");
    const { body } = await files.read("/big");
    const readBase = store.readBytes;
    let consumed = 0, readAhead = 0;
    for await (const part of body) {
      readAhead = Math.max(readAhead, store.readBytes - readBase - consumed);
      consumed += part.length;
      check.update(part);
    }
    assert.equal(check.digest("hex"), info.sha256);
    assert.ok(readAhead <= 4 << 20, `${readAhead} bytes were read ahead of the reader`);
    console.log(
      `64 MiB written in ${ms.toFixed(0)} ms (${(total / 1e6 / (ms / 1000)).toFixed(0)} MB/s);` +
        ` at most ${(ahead / 2 ** 20).toFixed(1)} MiB held before writing; read ahead at most` +
        ` ${(readAhead / 2 ** 20).toFixed(1)} MiB`,
    );
    await files.close();
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

// A fresh process writes 256 MiB to a store that keeps nothing; its peak resident memory (VmHWM)
// must stay near where it started.
const CHILD = `
import { FileStore } from "FILES_URL";
const total = 256 << 20, chunk = 1 << 20;
const store = {
  size: 1 << 30,
  alignment: 5 * 65536,
  read: (_o, n) => Promise.resolve(new Uint8Array(n)),
  write: () => Promise.resolve(),
  flush: () => Promise.resolve(),
  trim: () => Promise.resolve(),
};
const vm = (field) =>
  Number(new RegExp(field + ":[ \\t]+([0-9]+) kB").exec(Deno.readTextFileSync("/proc/self/status"))[1]) * 1024;
const files = await FileStore.format(store);
const buf = new Uint8Array(chunk).fill(1);
await files.write("/warm", [buf, buf]);
const base = vm("VmRSS");
async function* source() {
  for (let i = 0; i < total / chunk; i++) {
    buf[0] = i;
    yield buf;
  }
}
const { info } = await files.write("/big", source());
console.log(JSON.stringify({ size: info.size, base, peak: vm("VmHWM") }));
`;

Deno.test("FileStore writes 256 MiB with a peak memory growth of a few MiB (fresh process)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/child.ts`;
    await Deno.writeTextFile(script, CHILD.replace("FILES_URL", import.meta.resolve("./files.ts")));
    const config = new URL("../../deno.json", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--quiet", "--config", config, "--allow-all", script],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    const r = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.equal(r.size, 256 << 20);
    const grown = r.peak - r.base;
    assert.ok(grown < 32 << 20, `peak memory grew by ${(grown / 2 ** 20).toFixed(1)} MiB`);
    console.log(
      `256 MiB written with peak resident memory ${
        (grown / 2 ** 20).toFixed(1)
      } MiB above the start`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("FileStore keeps files of at most INLINE_MAX bytes in the metadata", async () => {
  const { files } = await fresh();
  const data = () => {
    const u = files.usage();
    return u.usedBytes - Math.ceil(u.metadataBytes / 4096) * 4096;
  };
  assert.equal(data(), 0);
  for (let i = 0; i < 20; i++) await files.write(`/s${i}`, pattern(INLINE_MAX, i));
  assert.equal(data(), 0, "twenty small files take no unit of their own");
  assert.ok(files.usage().metadataBytes > 20 * INLINE_MAX);
  await files.write("/t", pattern(INLINE_MAX + 1, 1));
  assert.equal(data(), 4096);
  for (let i = 0; i < 20; i++) {
    assert.deepEqual(await files.readAll(`/s${i}`), pattern(INLINE_MAX, i));
  }
  await files.close();
});

Deno.test("FileStore.open() reads a store written by hand from the example in files.md", async () => {
  const md = await Deno.readTextFile(new URL("../../docs/protocol/files.md", import.meta.url));
  const json = md.split("## Metadata")[1].split("```\n")[1];
  const metadata = new TextEncoder().encode(json);
  JSON.parse(json);
  const unit = 65536;
  const store = new MemoryByteStore(16 * unit, unit);
  await store.write(2 * unit, new Uint8Array(70000).fill(0x61));
  await store.write(4 * unit, metadata);
  // The superblock, field by field as the table in files.md has it; generation 1 goes in slot 1.
  const sb = new Uint8Array(unit);
  const view = new DataView(sb.buffer);
  sb.set(new TextEncoder().encode("TCFILES1"), 0);
  view.setUint32(8, 1, true);
  view.setUint32(12, unit, true);
  view.setBigUint64(16, 1n, true);
  view.setBigUint64(24, 16n, true);
  view.setBigUint64(32, BigInt(metadata.length), true);
  sb.set(createHash("sha256").update(metadata).digest(), 40);
  view.setUint32(72, 1, true);
  view.setBigUint64(80, BigInt(4 * unit), true);
  view.setBigUint64(88, BigInt(unit), true);
  sb.set(createHash("sha256").update(sb.subarray(0, 96)).digest(), 96);
  await store.write(unit, sb);
  const files = await FileStore.open(store);
  assert.equal(files.generation, 1);
  assert.deepEqual(await dump(files), {
    "/notes.txt": `11 ${hashOf(enc("hello world"))} 1767225650000 1767225650000`,
    "/photos": "dir 1767225660000 1767225700000",
    "/photos/a.bin": `70000 ${
      hashOf(new Uint8Array(70000).fill(0x61))
    } 1767225700000 1767225700000`,
  });
  assert.equal((await files.stat("/notes.txt")).etag, '"b94d27b9934d3e08a52e52d7da7dabfa"');
  // A change goes to slot 0 as generation 2, and the hand-made units are kept.
  await files.write("/photos/b.bin", new Uint8Array(100_000).fill(1));
  assert.equal(files.generation, 2);
  await files.close();
  const again = await FileStore.open(store);
  assert.deepEqual(await again.readAll("/photos/a.bin"), new Uint8Array(70000).fill(0x61));
  assert.equal((await again.stat("/photos/b.bin")).size, 100_000);
  await again.close();
});

Deno.test("FileStore.inUse() covers what the store holds and none of its free space", async () => {
  const { files } = await fresh(64, 4096);
  const covered = () => files.inUse().reduce((n, [, length]) => n + length, 0);
  const empty = covered();
  assert.equal(empty + files.usage().freeBytes, files.usage().sizeBytes);
  await files.write("/a.bin", pattern(5 * 4096 + 7, 1));
  const withFile = covered();
  assert.ok(withFile >= empty + 6 * 4096, `${withFile} covers the file's six units`);
  assert.equal(withFile + files.usage().freeBytes, files.usage().sizeBytes);
  await files.delete("/a.bin");
  await files.write("/b.txt", enc("small"));
  assert.ok(covered() < withFile, "freed units leave the map");
  for (const [offset, length] of files.inUse()) {
    assert.ok(offset % 4096 === 0 && length % 4096 === 0 && length > 0);
  }
  await files.close();
});
