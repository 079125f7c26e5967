// The file system against a model (a map of path → bytes or directory): random sequences of
// mkdir, write, delete, move, copy, read and stat, with reopening in the middle. Every result, every
// error code and the whole tree must match the model, and reopening must find the same space used.
import assert from "node:assert/strict";
import fc from "fast-check";
import { MemoryByteStore } from "./byte_store.ts";
import { FileError, type FileErrorCode, FileStore } from "./files.ts";

type Entry = Uint8Array | "dir";
type Model = Map<string, Entry>;
type Names = string[];

type Op =
  | { op: "mkdir"; p: Names }
  | { op: "write"; p: Names; size: number; seed: number }
  | { op: "delete"; p: Names; recursive: boolean }
  | { op: "move"; p: Names; to: Names; overwrite: boolean }
  | { op: "copy"; p: Names; to: Names; overwrite: boolean; shallow: boolean }
  | { op: "read"; p: Names; offset: number; length: number }
  | { op: "stat"; p: Names }
  | { op: "reopen" };

const UNIT = 4096;

function bytesOf(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + seed * 17 + (i >> 8)) & 0xff;
  return out;
}

function path(names: Names): string {
  return "/" + names.join("/");
}

function kind(m: Model, names: Names): Entry | undefined {
  return names.length === 0 ? "dir" : m.get(path(names));
}

/** The error `resolve` gives for a path, if any. */
function resolveError(m: Model, names: Names): FileErrorCode | undefined {
  for (let i = 0; i < names.length; i++) {
    if (kind(m, names.slice(0, i)) !== "dir") return "not_a_directory";
    if (!m.has(path(names.slice(0, i + 1)))) return "not_found";
  }
  return undefined;
}

function parentError(m: Model, names: Names): FileErrorCode | undefined {
  const parent = names.slice(0, -1);
  return resolveError(m, parent) ?? (kind(m, parent) !== "dir" ? "not_a_directory" : undefined);
}

function under(m: Model, names: Names): string[] {
  const p = path(names);
  return [...m.keys()].filter((k) => k === p || k.startsWith(p + "/"));
}

function isPrefix(a: Names, b: Names): boolean {
  return a.length <= b.length && a.every((n, i) => b[i] === n);
}

/** Applies an operation to the model: the error code, or the result. */
function model(m: Model, o: Op): { error?: FileErrorCode; value?: unknown } {
  switch (o.op) {
    case "mkdir": {
      if (o.p.length === 0) return { error: "exists" };
      const e = parentError(m, o.p);
      if (e) return { error: e };
      if (m.has(path(o.p))) return { error: "exists" };
      m.set(path(o.p), "dir");
      return {};
    }
    case "write": {
      if (o.p.length === 0) return { error: "is_a_directory" };
      const e = parentError(m, o.p);
      if (e) return { error: e };
      if (m.get(path(o.p)) === "dir") return { error: "is_a_directory" };
      const created = !m.has(path(o.p));
      m.set(path(o.p), bytesOf(o.size, o.seed));
      return { value: created };
    }
    case "delete": {
      if (o.p.length === 0) return { error: "invalid" };
      const e = resolveError(m, o.p);
      if (e) return { error: e };
      const all = under(m, o.p);
      if (m.get(path(o.p)) === "dir" && all.length > 1 && !o.recursive) {
        return { error: "not_empty" };
      }
      for (const k of all) m.delete(k);
      return {};
    }
    case "move":
    case "copy": {
      if (o.p.length === 0 || o.to.length === 0) return { error: "invalid" };
      const e = resolveError(m, o.p);
      if (e) return { error: e };
      if (isPrefix(o.p, o.to)) return { error: "invalid" };
      const pe = parentError(m, o.to);
      if (pe) return { error: pe };
      const existed = m.has(path(o.to));
      if (existed && !o.overwrite) return { error: "exists" };
      const moving = o.op === "copy" && o.shallow && m.get(path(o.p)) === "dir"
        ? [path(o.p)]
        : under(m, o.p);
      const entries = moving.map((k) => [k, m.get(k)!] as const);
      for (const k of under(m, o.to)) m.delete(k);
      if (o.op === "move") { for (const k of under(m, o.p)) m.delete(k); }
      const from = path(o.p), to = path(o.to);
      for (const [k, v] of entries) m.set(to + k.slice(from.length), v);
      return { value: { replaced: existed } };
    }
    case "read": {
      const e = resolveError(m, o.p);
      if (e) return { error: e };
      const v = kind(m, o.p)!;
      if (v === "dir") return { error: "is_a_directory" };
      if (o.offset > v.length) return { error: "invalid" };
      return { value: v.slice(o.offset, o.offset + o.length) };
    }
    case "stat": {
      const e = resolveError(m, o.p);
      if (e) return { error: e };
      const v = kind(m, o.p)!;
      return { value: v === "dir" ? ["directory", 0] : ["file", v.length] };
    }
    case "reopen":
      return {};
  }
}

async function real(fs: FileStore, o: Exclude<Op, { op: "reopen" }>): Promise<unknown> {
  switch (o.op) {
    case "mkdir":
      return void await fs.mkdir(path(o.p));
    case "write": {
      const data = bytesOf(o.size, o.seed);
      const chunks = [data.subarray(0, o.size >> 1), data.subarray(o.size >> 1)];
      return (await fs.write(path(o.p), chunks)).created;
    }
    case "delete":
      return void await fs.delete(path(o.p), { recursive: o.recursive });
    case "move":
      return await fs.move(path(o.p), path(o.to), { overwrite: o.overwrite });
    case "copy":
      return await fs.copy(path(o.p), path(o.to), { overwrite: o.overwrite, shallow: o.shallow });
    case "read":
      return await fs.readAll(path(o.p), { offset: o.offset, length: o.length });
    case "stat": {
      const s = await fs.stat(path(o.p));
      return [s.type, s.size];
    }
  }
}

async function snapshot(fs: FileStore): Promise<Map<string, Entry>> {
  const out = new Map<string, Entry>();
  const walk = async (p: string) => {
    for (const e of await fs.list(p)) {
      if (e.type === "directory") {
        out.set(e.path, "dir");
        await walk(e.path);
      } else out.set(e.path, await fs.readAll(e.path));
    }
  };
  await walk("/");
  return out;
}

const name = fc.constantFrom("a", "b", "c");
const names: fc.Arbitrary<Names> = fc.oneof(
  { arbitrary: fc.tuple(name), weight: 4 },
  { arbitrary: fc.tuple(name, name), weight: 4 },
  { arbitrary: fc.tuple(name, name, name), weight: 2 },
  { arbitrary: fc.constant<Names>([]), weight: 1 },
);

/** Paths of the starting tree's files, chosen often by reads, moves and copies. */
const known: fc.Arbitrary<Names> = fc.oneof(
  names,
  fc.constantFrom<Names>(["a", "c"], ["b"], ["a", "b", "a"], ["a", "b"]),
);

/** Every run starts from this tree, so that operations find things to work on. */
const SETUP: Op[] = [
  { op: "mkdir", p: ["a"] },
  { op: "mkdir", p: ["a", "b"] },
  { op: "write", p: ["a", "c"], size: 5000, seed: 1 },
  { op: "write", p: ["b"], size: 300, seed: 2 },
  { op: "mkdir", p: ["c"] },
  { op: "write", p: ["a", "b", "a"], size: 9000, seed: 3 },
];
const op: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant("mkdir" as const), p: names }), weight: 3 },
  {
    arbitrary: fc.record({
      op: fc.constant("write" as const),
      p: names,
      size: fc.oneof(fc.nat(600), fc.nat(3 * UNIT + 100)),
      seed: fc.nat(1000),
    }),
    weight: 4,
  },
  {
    arbitrary: fc.record({ op: fc.constant("delete" as const), p: names, recursive: fc.boolean() }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      op: fc.constant("move" as const),
      p: known,
      to: names,
      overwrite: fc.boolean(),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      op: fc.constant("copy" as const),
      p: known,
      to: names,
      overwrite: fc.boolean(),
      shallow: fc.boolean(),
    }),
    weight: 2,
  },
  {
    arbitrary: fc.record({
      op: fc.constant("read" as const),
      p: known,
      offset: fc.oneof(fc.nat(400), fc.nat(3 * UNIT)),
      length: fc.nat(3 * UNIT),
    }),
    weight: 2,
  },
  { arbitrary: fc.record({ op: fc.constant("stat" as const), p: names }), weight: 1 },
  { arbitrary: fc.constant({ op: "reopen" as const }), weight: 1 },
);

Deno.test("FileStore matches a model through random operations and reopening", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 40, size: "max" }), async (ops) => {
      const store = new MemoryByteStore(512 * UNIT, UNIT);
      let fs = await FileStore.format(store);
      const m: Model = new Map();
      try {
        for (const [i, o] of [...SETUP, ...ops].entries()) {
          const want = model(m, o);
          if (o.op === "reopen") {
            const usage = fs.usage();
            await fs.close();
            fs = await FileStore.open(store);
            assert.deepEqual(fs.usage(), usage, "reopening finds the same space used");
            continue;
          }
          let got: { error?: FileErrorCode; value?: unknown };
          try {
            got = { value: await real(fs, o) };
          } catch (err) {
            if (!(err instanceof FileError)) throw err;
            got = { error: err.code as FileErrorCode };
          }
          const norm = (r: typeof got) => r.error ? { error: r.error } : { value: r.value };
          assert.deepEqual(norm(got), norm(want), `operation ${i}: ${JSON.stringify(o)}`);
          assert.deepEqual(await snapshot(fs), new Map([...m].sort()), `tree after operation ${i}`);
        }
      } finally {
        await fs.close();
      }
    }),
    { numRuns: 100 },
  );
});

Deno.test("FileStore keeps usage consistent with what it holds after random operations", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 1, maxLength: 30, size: "max" }), async (ops) => {
      const store = new MemoryByteStore(512 * UNIT, UNIT);
      const fs = await FileStore.format(store);
      for (const o of [...SETUP, ...ops]) {
        if (o.op === "reopen") continue;
        await real(fs, o).catch((err) => {
          if (!(err instanceof FileError)) throw err;
        });
      }
      const usage = fs.usage();
      // Every unit in use is data of a distinct extent or metadata: count what the tree holds.
      const expected = Math.ceil(usage.metadataBytes / UNIT) * UNIT;
      const seen = new Set<string>();
      let data = 0;
      const walk = async (p: string) => {
        for (const e of await fs.list(p)) {
          if (e.type === "directory") await walk(e.path);
          else if (e.size > 512 && !seen.has(`${e.sha256}:${e.size}`)) {
            // Copies share units; distinct writes of equal content do not, so this is a lower bound.
            seen.add(`${e.sha256}:${e.size}`);
            data += Math.ceil(e.size / UNIT) * UNIT;
          }
        }
      };
      await walk("/");
      assert.ok(usage.usedBytes >= expected + data);
      await fs.close();
      const again = await FileStore.open(store);
      assert.deepEqual(again.usage(), usage);
      await again.close();
    }),
    { numRuns: 100 },
  );
});
