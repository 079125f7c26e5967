/**
 * The file system of the Cloud File System: directories and files on a {@linkcode ByteStore} (the
 * pool, or memory in tests), crash-consistent through copy-on-write and two alternating
 * superblocks. The on-store format is specified in `docs/protocol/files.md`.
 *
 * @example
 * ```ts
 * import { FileStore } from "./files.ts";
 * import { MemoryByteStore } from "./byte_store.ts";
 * const files = await FileStore.format(new MemoryByteStore(16 << 20));
 * await files.mkdir("/notes");
 * await files.write("/notes/hello.txt", new TextEncoder().encode("hello"));
 * console.log((await files.stat("/notes/hello.txt")).size); // 5
 * await files.close();
 * ```
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  type Clock,
  concatBytes,
  discardLogger,
  type Logger,
  systemClock,
  TrueCloudError,
} from "../../protocol/mod.ts";
import type { ByteStore } from "./byte_store.ts";

/** Magic bytes at the start of a superblock. */
export const SUPERBLOCK_MAGIC = "TCFILES1";
/** Version of the on-store format. */
export const FORMAT_VERSION = 1;
/** Files of at most this many bytes are kept inside the metadata. */
export const INLINE_MAX = 512;
/** Longest name, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 255;
/** Longest path, in UTF-8 bytes. */
export const MAX_PATH_BYTES = 4096;
/** Largest metadata document, in bytes. */
export const MAX_METADATA_BYTES = 64 << 20;
/** Most extents the metadata may be written in. */
export const MAX_METADATA_EXTENTS = 64;
/** Fewest units a store must hold to be formatted. */
export const MIN_UNITS = 8;

const SB_FIXED = 80;
const SB_MAX = SB_FIXED + 16 * MAX_METADATA_EXTENTS + 32;
const BUFFER_TARGET = 4 << 20;
const RUN_MAX = 256 << 20;
const READ_CHUNK = 4 << 20;

/** Why a file operation failed. */
export type FileErrorCode =
  | "invalid"
  | "not_found"
  | "exists"
  | "not_a_directory"
  | "is_a_directory"
  | "not_empty"
  | "precondition_failed"
  | "no_space"
  | "closed"
  | "corrupt"
  | "not_formatted";

const STATUS: Record<FileErrorCode, number> = {
  invalid: 400,
  not_found: 404,
  exists: 409,
  not_a_directory: 409,
  is_a_directory: 409,
  not_empty: 409,
  precondition_failed: 412,
  no_space: 507,
  closed: 503,
  corrupt: 500,
  not_formatted: 500,
};

/** A file operation that failed, with its code and HTTP status. */
export class FileError extends TrueCloudError {
  /**
   * Makes the error.
   * @param code Which kind of failure; it decides the HTTP status.
   * @param message What failed.
   * @param cause The underlying error.
   */
  constructor(code: FileErrorCode, message: string, cause?: unknown) {
    super(message, { code, status: STATUS[code], cause });
  }
}

/** What {@linkcode FileStore.stat} and {@linkcode FileStore.list} tell of an entry. */
export interface FileInfo {
  /** The normalised path, `/` for the root. */
  path: string;
  /** The last segment; empty for the root. */
  name: string;
  /** A file or a directory. */
  type: "file" | "directory";
  /** Bytes of content (0 for a directory). */
  size: number;
  /** Modification time, Unix ms. */
  mtime: number;
  /** Creation time, Unix ms. */
  ctime: number;
  /** Files only: a strong HTTP entity tag derived from the content, quoted. */
  etag?: string;
  /** Files only: SHA-256 of the content, hex. */
  sha256?: string;
}

/** What the store holds and how much room is left. */
export interface FileStoreUsage {
  /** Bytes of the data area (the store less its two superblocks). */
  sizeBytes: number;
  /** Bytes taken by file data and metadata, in whole units. */
  usedBytes: number;
  /** Bytes a new file may still take (the reserve kept for metadata excluded). */
  freeBytes: number;
  /** Bytes of the metadata document. */
  metadataBytes: number;
  /** Files held. */
  files: number;
  /** Directories held, the root included. */
  directories: number;
}

/** Dependencies of a {@linkcode FileStore}. */
export interface FileStoreDeps {
  /** Where to log (nothing by default). */
  log?: Logger;
  /** Times of files and directories (the system clock by default). */
  clock?: Clock;
}

/** An entity-tag precondition: `"*"` (any current version) or a list of quoted tags. */
export type EtagCondition = "*" | readonly string[];

/** Options of {@linkcode FileStore.write}. */
export interface WriteOptions {
  /** The write commits only if the file exists with one of these tags (`*`: exists at all). */
  ifMatch?: EtagCondition;
  /** The write commits only if the file does not exist (`*`) or has none of these tags. */
  ifNoneMatch?: EtagCondition;
  /** Gives up when aborted, freeing what was written. */
  signal?: AbortSignal;
}

/** What {@linkcode FileStore.write} did. */
export interface WriteResult {
  /** The new version. */
  info: FileInfo;
  /** True when the file did not exist before. */
  created: boolean;
}

/** A range of a file to read: from `offset`, `length` bytes (clipped at the end). */
export interface ReadRange {
  /** First byte (default 0). */
  offset?: number;
  /** Bytes (default: to the end). */
  length?: number;
}

/** A file being read: its description and its bytes. */
export interface FileRead {
  /** The version being read. */
  info: FileInfo;
  /** The bytes of the range. Read it to the end or cancel it: it holds the file's units. */
  body: ReadableStream<Uint8Array>;
}

/** Where file bytes may come from. */
export type FileSource =
  | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array>
  | Iterable<Uint8Array>
  | Uint8Array;

interface Extent {
  readonly offset: number;
  readonly length: number;
}

interface DirNode {
  readonly kind: "dir";
  readonly ctime: number;
  readonly mtime: number;
  readonly entries: ReadonlyMap<string, Node>;
}

interface FileNode {
  readonly kind: "file";
  readonly ctime: number;
  readonly mtime: number;
  readonly size: number;
  readonly sha256: string;
  readonly inline?: Uint8Array;
  readonly extents?: readonly Extent[];
}

type Node = DirNode | FileNode;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

function fail(code: FileErrorCode, message: string, cause?: unknown): never {
  throw new FileError(code, message, cause);
}

/**
 * Checks one name of a path.
 * @param name The name.
 * @throws {FileError} `invalid` when it is empty, `.` or `..`, holds NUL or `/`, is not
 * well-formed Unicode, or is longer than {@linkcode MAX_NAME_BYTES} bytes.
 */
export function checkName(name: string): void {
  if (typeof name !== "string" || name === "") fail("invalid", "A name may not be empty");
  if (name === "." || name === "..") fail("invalid", `The name ${name} is reserved`);
  if (name.includes("\0")) fail("invalid", "A name may not contain NUL");
  if (name.includes("/")) fail("invalid", "A name may not contain /");
  if (!name.isWellFormed()) fail("invalid", "A name must be well-formed Unicode");
  const bytes = encoder.encode(name).length;
  if (bytes > MAX_NAME_BYTES) {
    fail("invalid", `A name may have at most ${MAX_NAME_BYTES} bytes, not ${bytes}`);
  }
}

/**
 * Splits a path into checked names.
 * @param path `/` or `/name/…`, one trailing `/` allowed.
 * @returns The names; empty for the root.
 * @throws {FileError} `invalid` when the path or one of its names is not valid.
 */
export function parsePath(path: string): string[] {
  if (typeof path !== "string" || !path.startsWith("/")) {
    fail("invalid", "A path must start with /");
  }
  const bytes = encoder.encode(path).length;
  if (bytes > MAX_PATH_BYTES) {
    fail("invalid", `A path may have at most ${MAX_PATH_BYTES} bytes, not ${bytes}`);
  }
  if (path === "/") return [];
  const names = (path.endsWith("/") ? path.slice(1, -1) : path.slice(1)).split("/");
  for (const n of names) checkName(n);
  return names;
}

/**
 * The normalised path of a list of names.
 * @param names Checked names.
 */
export function joinPath(names: readonly string[]): string {
  return "/" + names.join("/");
}

/**
 * The entity tag of content with a given SHA-256.
 * @param sha256 Hex digest.
 */
export function etagOf(sha256: string): string {
  return `"${sha256.slice(0, 32)}"`;
}

function info(names: readonly string[], node: Node): FileInfo {
  const base = {
    path: joinPath(names),
    name: names.at(-1) ?? "",
    mtime: node.mtime,
    ctime: node.ctime,
  };
  if (node.kind === "dir") return { ...base, type: "directory", size: 0 };
  return { ...base, type: "file", size: node.size, etag: etagOf(node.sha256), sha256: node.sha256 };
}

function tagHolds(cond: EtagCondition | undefined, node: Node | undefined): boolean {
  if (cond === undefined) return true;
  if (!node) return false;
  if (cond === "*") return true;
  return node.kind === "file" && cond.includes(etagOf(node.sha256));
}

function checkPreconditions(opts: WriteOptions, node: Node | undefined): void {
  if (opts.ifMatch !== undefined && !tagHolds(opts.ifMatch, node)) {
    fail("precondition_failed", "The file is not at the expected version (If-Match)");
  }
  if (opts.ifNoneMatch !== undefined && tagHolds(opts.ifNoneMatch, node)) {
    fail(
      "precondition_failed",
      opts.ifNoneMatch === "*"
        ? "The file exists (If-None-Match: *)"
        : "The file is at an excluded version (If-None-Match)",
    );
  }
}

// ---- tree helpers (nodes are immutable; a change clones the path from the root) ----

/** Resolves a path, failing with the right code. */
function resolve(root: DirNode, names: readonly string[]): Node {
  let node: Node = root;
  for (let i = 0; i < names.length; i++) {
    if (node.kind !== "dir") {
      fail("not_a_directory", `${joinPath(names.slice(0, i))} is not a directory`);
    }
    const next: Node | undefined = node.entries.get(names[i]);
    if (!next) fail("not_found", `${joinPath(names.slice(0, i + 1))} does not exist`);
    node = next;
  }
  return node;
}

/** The directory that is to hold `names`' last element. */
function parentDir(root: DirNode, names: readonly string[]): DirNode {
  const parent = resolve(root, names.slice(0, -1));
  if (parent.kind !== "dir") {
    fail("not_a_directory", `${joinPath(names.slice(0, -1))} is not a directory`);
  }
  return parent;
}

/** A new root where the entry at `names` is `node` (or removed), its parent touched at `now`. */
function withEntry(
  root: DirNode,
  names: readonly string[],
  node: Node | undefined,
  now: number,
): DirNode {
  if (names.length === 0) throw new Error("The root has no parent");
  const rebuild = (dir: DirNode, depth: number): DirNode => {
    const entries = new Map(dir.entries);
    const name = names[depth];
    if (depth === names.length - 1) {
      if (node) entries.set(name, node);
      else entries.delete(name);
      return { kind: "dir", ctime: dir.ctime, mtime: now, entries };
    }
    const child = dir.entries.get(name);
    if (!child || child.kind !== "dir") throw new Error("Path vanished during an update");
    entries.set(name, rebuild(child, depth + 1));
    return { kind: "dir", ctime: dir.ctime, mtime: dir.mtime, entries };
  };
  return rebuild(root, 0);
}

function isPrefix(a: readonly string[], b: readonly string[]): boolean {
  return a.length <= b.length && a.every((n, i) => b[i] === n);
}

interface TreeScan {
  refs: Map<number, Extent>;
  files: number;
  directories: number;
}

function scanTree(root: DirNode): TreeScan {
  const out: TreeScan = { refs: new Map(), files: 0, directories: 0 };
  const walk = (node: Node): void => {
    if (node.kind === "dir") {
      out.directories++;
      for (const child of node.entries.values()) walk(child);
      return;
    }
    out.files++;
    for (const e of node.extents ?? []) out.refs.set(e.offset, e);
  };
  walk(root);
  return out;
}

// ---- metadata encoding ----

type JsonNode =
  | { t: "d"; c: number; m: number; e: [string, JsonNode][] }
  | { t: "f"; c: number; m: number; s: number; h: string; i?: string; x?: [number, number][] };

function toBase64(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

function fromBase64(text: string): Uint8Array {
  if (!/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) {
    throw new Error("Inline content is not base64");
  }
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function toJson(node: Node): JsonNode {
  if (node.kind === "dir") {
    const names = [...node.entries.keys()].sort();
    return {
      t: "d",
      c: node.ctime,
      m: node.mtime,
      e: names.map((n) => [n, toJson(node.entries.get(n)!)]),
    };
  }
  const out: JsonNode = { t: "f", c: node.ctime, m: node.mtime, s: node.size, h: node.sha256 };
  if (node.inline) out.i = toBase64(node.inline);
  else out.x = (node.extents ?? []).map((e) => [e.offset, e.length]);
  return out;
}

/**
 * Encodes a tree as the metadata document.
 * @param root The root directory.
 */
function encodeMetadata(root: DirNode): Uint8Array {
  return encoder.encode(JSON.stringify({ v: FORMAT_VERSION, root: toJson(root) }));
}

function isTime(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

function decodeNode(json: unknown, unit: number, units: number, where: string): Node {
  const bad = (what: string): never => {
    throw new Error(`${where || "/"}: ${what}`);
  };
  if (typeof json !== "object" || json === null || Array.isArray(json)) bad("not an object");
  const o = json as Record<string, unknown>;
  if (!isTime(o.c) || !isTime(o.m)) bad("bad times");
  if (o.t === "d") {
    if (!Array.isArray(o.e)) bad("entries are not a list");
    const entries = new Map<string, Node>();
    for (const pair of o.e as unknown[]) {
      if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string") {
        bad("an entry is not a [name, node] pair");
      }
      const [name, child] = pair as [string, unknown];
      try {
        checkName(name);
      } catch (err) {
        bad((err as Error).message);
      }
      if (entries.has(name)) bad(`${name} appears twice`);
      entries.set(name, decodeNode(child, unit, units, `${where}/${name}`));
    }
    return { kind: "dir", ctime: o.c as number, mtime: o.m as number, entries };
  }
  if (o.t !== "f") bad("unknown node type");
  if (!isTime(o.s)) bad("bad size");
  const size = o.s as number;
  if (typeof o.h !== "string" || !/^[0-9a-f]{64}$/.test(o.h)) bad("bad SHA-256");
  const base = { kind: "file" as const, ctime: o.c as number, mtime: o.m as number, size };
  if (o.i !== undefined) {
    if (o.x !== undefined) bad("both inline and extents");
    if (typeof o.i !== "string") bad("inline content is not a string");
    let inline: Uint8Array;
    try {
      inline = fromBase64(o.i as string);
    } catch (err) {
      return bad((err as Error).message);
    }
    if (inline.length !== size || size > INLINE_MAX) bad("inline content does not match its size");
    return { ...base, sha256: o.h as string, inline };
  }
  if (!Array.isArray(o.x)) bad("neither inline nor extents");
  const extents: Extent[] = [];
  let total = 0;
  for (const x of o.x as unknown[]) {
    if (!Array.isArray(x) || x.length !== 2) bad("an extent is not [offset, length]");
    const [offset, length] = x as [unknown, unknown];
    if (!checkExtent(offset, length, unit, units)) bad(`extent ${offset}+${length} is not valid`);
    extents.push({ offset: offset as number, length: length as number });
    total += length as number;
  }
  if (total !== Math.ceil(size / unit) * unit) bad("extents do not match the size");
  if (size <= INLINE_MAX) bad("a small file is not inline");
  return { ...base, sha256: o.h as string, extents };
}

function checkExtent(offset: unknown, length: unknown, unit: number, units: number): boolean {
  return Number.isSafeInteger(offset) && Number.isSafeInteger(length) &&
    (offset as number) % unit === 0 && (length as number) % unit === 0 &&
    (length as number) > 0 && (offset as number) >= 2 * unit &&
    (offset as number) + (length as number) <= units * unit;
}

function decodeMetadata(bytes: Uint8Array, unit: number, units: number): DirNode {
  const json = JSON.parse(decoder.decode(bytes));
  if (typeof json !== "object" || json === null || json.v !== FORMAT_VERSION) {
    throw new Error(`Metadata version ${json?.v} is not ${FORMAT_VERSION}`);
  }
  const root = decodeNode(json.root, unit, units, "");
  if (root.kind !== "dir") throw new Error("The root is not a directory");
  return root;
}

/** Checks that extents are pairwise identical or disjoint. */
function checkOverlaps(extents: readonly Extent[]): void {
  const sorted = [...extents].sort((a, b) => a.offset - b.offset || a.length - b.length);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1], b = sorted[i];
    if (a.offset === b.offset && a.length === b.length) continue;
    if (a.offset + a.length > b.offset) {
      throw new Error(`Extents ${a.offset}+${a.length} and ${b.offset}+${b.length} overlap`);
    }
  }
}

// ---- superblock ----

interface Superblock {
  generation: number;
  units: number;
  metaLength: number;
  metaSha256: Uint8Array;
  extents: Extent[];
}

function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function encodeSuperblock(sb: Superblock, unit: number): Uint8Array {
  const out = new Uint8Array(unit);
  const view = new DataView(out.buffer);
  out.set(encoder.encode(SUPERBLOCK_MAGIC), 0);
  view.setUint32(8, FORMAT_VERSION, true);
  view.setUint32(12, unit, true);
  view.setBigUint64(16, BigInt(sb.generation), true);
  view.setBigUint64(24, BigInt(sb.units), true);
  view.setBigUint64(32, BigInt(sb.metaLength), true);
  out.set(sb.metaSha256, 40);
  view.setUint32(72, sb.extents.length, true);
  sb.extents.forEach((e, i) => {
    view.setBigUint64(SB_FIXED + 16 * i, BigInt(e.offset), true);
    view.setBigUint64(SB_FIXED + 16 * i + 8, BigInt(e.length), true);
  });
  const end = SB_FIXED + 16 * sb.extents.length;
  out.set(sha256(out.subarray(0, end)), end);
  return out;
}

/** Decodes a superblock; throws with the reason it is not valid. */
function decodeSuperblock(bytes: Uint8Array, unit: number, storeUnits: number): Superblock {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (new TextDecoder().decode(bytes.subarray(0, 8)) !== SUPERBLOCK_MAGIC) {
    throw new Error("no superblock magic");
  }
  if (view.getUint32(8, true) !== FORMAT_VERSION) {
    throw new Error(`format version ${view.getUint32(8, true)} is not ${FORMAT_VERSION}`);
  }
  if (view.getUint32(12, true) !== unit) {
    throw new Error(`formatted with units of ${view.getUint32(12, true)} bytes, not ${unit}`);
  }
  const n = view.getUint32(72, true);
  if (n < 1 || n > MAX_METADATA_EXTENTS) throw new Error(`bad extent count ${n}`);
  const end = SB_FIXED + 16 * n;
  if (!equalBytes(sha256(bytes.subarray(0, end)), bytes.subarray(end, end + 32))) {
    throw new Error("superblock checksum does not match");
  }
  const u64 = (at: number) => {
    const v = view.getBigUint64(at, true);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error("a number is too large");
    return Number(v);
  };
  const sb: Superblock = {
    generation: u64(16),
    units: u64(24),
    metaLength: u64(32),
    metaSha256: bytes.slice(40, 72),
    extents: [],
  };
  if (sb.units < MIN_UNITS || sb.units > storeUnits) {
    throw new Error(`formatted for ${sb.units} units, the store has ${storeUnits}`);
  }
  let total = 0;
  for (let i = 0; i < n; i++) {
    const offset = u64(SB_FIXED + 16 * i), length = u64(SB_FIXED + 16 * i + 8);
    if (!checkExtent(offset, length, unit, sb.units)) throw new Error("bad metadata extent");
    sb.extents.push({ offset, length });
    total += length;
  }
  if (sb.metaLength < 2 || sb.metaLength > total || total - sb.metaLength >= unit) {
    throw new Error("metadata length does not match its extents");
  }
  return sb;
}

// ---- free space ----

/** Free units, as sorted disjoint runs `[start, count]`. */
class UnitAllocator {
  #runs: [number, number][] = [];
  #free = 0;

  /** Free units. */
  get free(): number {
    return this.#free;
  }

  /** The free runs, `[start, count]`, in order. */
  runs(): readonly (readonly [number, number])[] {
    return this.#runs;
  }

  /** Gives back units (they must not be free already). */
  give(start: number, count: number): void {
    if (count <= 0) return;
    const runs = this.#runs;
    let lo = 0, hi = runs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (runs[mid][0] < start) lo = mid + 1;
      else hi = mid;
    }
    const prev = runs[lo - 1], next = runs[lo];
    if (prev && prev[0] + prev[1] > start || next && start + count > next[0]) {
      throw new Error(`Units ${start}+${count} are free already`);
    }
    this.#free += count;
    if (prev && prev[0] + prev[1] === start) {
      prev[1] += count;
      if (next && prev[0] + prev[1] === next[0]) {
        prev[1] += next[1];
        runs.splice(lo, 1);
      }
    } else if (next && start + count === next[0]) {
      next[0] = start;
      next[1] += count;
    } else {
      runs.splice(lo, 0, [start, count]);
    }
  }

  /**
   * Takes one run of up to `want` units (first fit of `want`, else the largest run), leaving at
   * least `keep` units free.
   */
  take(want: number, keep: number): [number, number] | undefined {
    const can = Math.min(want, this.#free - keep);
    if (can < 1) return undefined;
    let best = -1;
    for (let i = 0; i < this.#runs.length; i++) {
      if (this.#runs[i][1] >= can) {
        best = i;
        break;
      }
      if (best < 0 || this.#runs[i][1] > this.#runs[best][1]) best = i;
    }
    const run = this.#runs[best];
    const n = Math.min(can, run[1]);
    const start = run[0];
    run[0] += n;
    run[1] -= n;
    if (run[1] === 0) this.#runs.splice(best, 1);
    this.#free -= n;
    return [start, n];
  }

  /** Takes exactly `count` units in at most `pieces` runs, or nothing. */
  takeExact(count: number, pieces: number): [number, number][] | undefined {
    if (count > this.#free) return undefined;
    const got: [number, number][] = [];
    let left = count;
    while (left > 0 && got.length < pieces) {
      const r = this.take(left, 0);
      if (!r) break;
      got.push(r);
      left -= r[1];
    }
    if (left > 0) {
      for (const [s, n] of got) this.give(s, n);
      return undefined;
    }
    return got;
  }
}

// ---- a mutex ----

class Mutex {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.catch(() => {});
    return result;
  }
}

async function* chunksOf(source: FileSource): AsyncGenerator<Uint8Array> {
  if (source instanceof Uint8Array) {
    yield source;
    return;
  }
  yield* source as AsyncIterable<Uint8Array>;
}

/** A file being written, not yet committed. */
interface Staged {
  size: number;
  sha256: string;
  inline?: Uint8Array;
  extents: Extent[];
}

/**
 * A small crash-consistent file system on a {@linkcode ByteStore}: directories and files with
 * sizes, times and entity tags, written copy-on-write and committed through two alternating
 * superblocks (`docs/protocol/files.md`).
 *
 * Changes are serialized by a mutex; a file's bytes are streamed to the store before its turn, and
 * reads run alongside everything. Nothing is cached: every read goes to the store.
 */
export class FileStore {
  readonly #store: ByteStore;
  readonly #unit: number;
  readonly #units: number;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #mutex = new Mutex();
  readonly #alloc = new UnitAllocator();
  #root: DirNode;
  #generation = 0;
  #meta: Extent[] = [];
  #metaLength = 0;
  #scan: TreeScan;
  #closed = false;
  /** Readers' pins, by extent offset. */
  readonly #pins = new Map<number, number>();
  /** Extents no longer in the tree, to free when their last reader is done. */
  readonly #orphans = new Map<number, Extent>();
  /** Extents of a commit that failed while its superblock was being written. */
  #limbo: Extent[] = [];
  readonly #background = new Set<Promise<void>>();

  private constructor(store: ByteStore, unit: number, units: number, deps: FileStoreDeps) {
    this.#store = store;
    this.#unit = unit;
    this.#units = units;
    this.#log = deps.log ?? discardLogger;
    this.#clock = deps.clock ?? systemClock;
    const now = this.#now();
    this.#root = { kind: "dir", ctime: now, mtime: now, entries: new Map() };
    this.#scan = scanTree(this.#root);
  }

  /**
   * The allocation unit of a store: its alignment, times the least whole number that reaches 4096
   * bytes.
   * @param alignment The store's alignment.
   * @throws {FileError} `invalid` when the alignment is not a positive integer up to 64 MiB.
   */
  static unitOf(alignment: number): number {
    if (!Number.isSafeInteger(alignment) || alignment < 1 || alignment > 64 << 20) {
      fail("invalid", `Store alignment ${alignment} is not an integer from 1 to 64 MiB`);
    }
    return alignment >= 4096 ? alignment : alignment * Math.ceil(4096 / alignment);
  }

  /**
   * Makes an empty file system on a store, forgetting what it held.
   * @param store The store.
   * @param deps Logger and clock.
   * @returns The open file store.
   * @throws {FileError} `invalid` when the store is too small or its alignment unusable.
   */
  static async format(store: ByteStore, deps: FileStoreDeps = {}): Promise<FileStore> {
    const unit = FileStore.unitOf(store.alignment);
    const units = Math.floor(store.size / unit);
    if (!Number.isSafeInteger(store.size) || units < MIN_UNITS) {
      fail(
        "invalid",
        `A store of ${store.size} bytes holds fewer than ${MIN_UNITS} units of ${unit}`,
      );
    }
    const zeros = new Uint8Array(unit);
    await store.write(0, zeros);
    await store.write(unit, zeros);
    await store.flush();
    const fs = new FileStore(store, unit, units, deps);
    fs.#alloc.give(2, units - 2);
    await fs.#mutex.run(() => fs.#commit(fs.#root, []));
    fs.#log.info("Formatted", { units, unit });
    return fs;
  }

  /**
   * Opens the file system on a store: the newest valid superblock and its tree.
   * @param store The store.
   * @param deps Logger and clock.
   * @returns The open file store.
   * @throws {FileError} `not_formatted` when neither slot holds a superblock, `corrupt` when no
   * superblock and its metadata verify.
   */
  static async open(store: ByteStore, deps: FileStoreDeps = {}): Promise<FileStore> {
    const unit = FileStore.unitOf(store.alignment);
    const units = Math.floor(store.size / unit);
    const readLen = Math.min(SB_MAX, unit);
    const found: Superblock[] = [];
    const reasons: string[] = [];
    for (const slot of [0, 1]) {
      try {
        if (units < 2) throw new Error("the store is too small");
        const bytes = await store.read(slot * unit, readLen);
        const sb = decodeSuperblock(bytes, unit, units);
        if (sb.generation % 2 !== slot) throw new Error("generation in the wrong slot");
        found.push(sb);
      } catch (err) {
        reasons.push(`slot ${slot}: ${(err as Error).message}`);
      }
    }
    found.sort((a, b) => b.generation - a.generation);
    for (const sb of found) {
      try {
        const parts: Uint8Array[] = [];
        for (const e of sb.extents) parts.push(await store.read(e.offset, e.length));
        const bytes = concatBytes(parts).subarray(0, sb.metaLength);
        if (!equalBytes(sha256(bytes), sb.metaSha256)) {
          throw new Error("metadata checksum does not match");
        }
        const root = decodeMetadata(bytes, unit, sb.units);
        const fs = new FileStore(store, unit, sb.units, deps);
        fs.#load(sb, root);
        fs.#log.info("Opened", { generation: sb.generation, files: fs.#scan.files });
        return fs;
      } catch (err) {
        reasons.push(`generation ${sb.generation}: ${(err as Error).message}`);
      }
    }
    const none = reasons.filter((r) => r.includes("no superblock magic")).length === 2;
    fail(
      none ? "not_formatted" : "corrupt",
      `${none ? "No file system on this store" : "No valid superblock"} (${reasons.join("; ")})`,
    );
  }

  #load(sb: Superblock, root: DirNode): void {
    const scan = scanTree(root);
    const all = [...sb.extents, ...scan.refs.values()];
    checkOverlaps(all);
    for (const e of sb.extents) {
      if (scan.refs.has(e.offset)) throw new Error("Metadata and data share an extent");
    }
    this.#root = root;
    this.#scan = scan;
    this.#generation = sb.generation;
    this.#meta = sb.extents;
    this.#metaLength = sb.metaLength;
    const used = all.map((e) => [e.offset / this.#unit, e.length / this.#unit] as const)
      .sort((a, b) => a[0] - b[0]);
    let at = 2;
    for (const [start, count] of used) {
      if (start > at) this.#alloc.give(at, start - at);
      at = Math.max(at, start + count);
    }
    if (at < this.#units) this.#alloc.give(at, this.#units - at);
  }

  /** Bytes of an allocation unit. */
  get unit(): number {
    return this.#unit;
  }

  /** The generation of the last commit. */
  get generation(): number {
    return this.#generation;
  }

  #now(): number {
    return Math.max(0, Math.floor(this.#clock.now()));
  }

  #ensureOpen(): void {
    if (this.#closed) fail("closed", "The file store is closed");
  }

  /** Units kept free for the next metadata. */
  #reserve(): number {
    return Math.ceil(1.1 * this.#metaLength / this.#unit) + 1;
  }

  /**
   * Describes a file or directory.
   * @param path Its path.
   * @throws {FileError} `invalid`, `not_found`, `not_a_directory`.
   */
  stat(path: string): Promise<FileInfo> {
    return Promise.resolve().then(() => {
      this.#ensureOpen();
      const names = parsePath(path);
      return info(names, resolve(this.#root, names));
    });
  }

  /**
   * Lists a directory, sorted by name.
   * @param path The directory.
   * @throws {FileError} `invalid`, `not_found`, `not_a_directory`.
   */
  list(path: string): Promise<FileInfo[]> {
    return Promise.resolve().then(() => {
      this.#ensureOpen();
      const names = parsePath(path);
      const node = resolve(this.#root, names);
      if (node.kind !== "dir") fail("not_a_directory", `${joinPath(names)} is not a directory`);
      return [...node.entries.keys()].sort().map((n) => info([...names, n], node.entries.get(n)!));
    });
  }

  /**
   * Makes a directory.
   * @param path The new directory; its parent must exist.
   * @returns The new directory.
   * @throws {FileError} `exists`, `not_found` (parent), `not_a_directory`, `invalid`, `no_space`.
   */
  mkdir(path: string): Promise<FileInfo> {
    return this.#change(async () => {
      const names = parsePath(path);
      if (names.length === 0) fail("exists", "The root exists");
      const parent = parentDir(this.#root, names);
      if (parent.entries.has(names.at(-1)!)) fail("exists", `${joinPath(names)} exists`);
      const now = this.#now();
      const dir: DirNode = { kind: "dir", ctime: now, mtime: now, entries: new Map() };
      await this.#commit(withEntry(this.#root, names, dir, now), []);
      return info(names, dir);
    });
  }

  /**
   * Writes a whole file from a stream of chunks, replacing any previous version only when the new
   * one is complete and committed. Memory use is bounded (a few MiB) whatever the size.
   * @param path The file; its parent must exist.
   * @param source Its bytes.
   * @param opts Preconditions and an abort signal.
   * @returns The new version and whether the file is new.
   * @throws {FileError} `not_found` (parent), `not_a_directory`, `is_a_directory`, `invalid`,
   * `precondition_failed`, `no_space`; or the store's or the source's error. On failure the
   * previous version is intact and nothing written is kept.
   */
  async write(path: string, source: FileSource, opts: WriteOptions = {}): Promise<WriteResult> {
    this.#ensureOpen();
    const names = parsePath(path);
    const check = () => {
      if (names.length === 0) fail("is_a_directory", "The root is a directory");
      const parent = parentDir(this.#root, names);
      const old = parent.entries.get(names.at(-1)!);
      if (old?.kind === "dir") fail("is_a_directory", `${joinPath(names)} is a directory`);
      checkPreconditions(opts, old);
      return old;
    };
    try {
      check();
    } catch (err) {
      await cancelSource(source, err);
      throw err;
    }
    const staged = await this.#stage(source, opts.signal);
    let handed = false;
    try {
      return await this.#change(async () => {
        const old = check();
        const now = this.#now();
        const file: FileNode = {
          kind: "file",
          ctime: old?.ctime ?? now,
          mtime: now,
          size: staged.size,
          sha256: staged.sha256,
          ...(staged.inline ? { inline: staged.inline } : { extents: staged.extents }),
        };
        handed = true;
        await this.#commit(withEntry(this.#root, names, file, now), staged.extents);
        return { info: info(names, file), created: !old };
      });
    } catch (err) {
      if (!handed) await this.#release(staged.extents, true);
      throw err;
    }
  }

  /** Streams a source into fresh units. */
  async #stage(source: FileSource, signal?: AbortSignal): Promise<Staged> {
    const unit = this.#unit;
    const bufUnits = Math.max(1, Math.floor(BUFFER_TARGET / unit));
    const buf = new Uint8Array(bufUnits * unit);
    const hash = createHash("sha256");
    const runs: Extent[] = [];
    let used = 0; // bytes written in the last run
    let pending = 0; // bytes of a write under way in the last run
    let nextRun = bufUnits;
    let fill = 0, size = 0;
    const put = async (data: Uint8Array) => {
      for (let at = 0; at < data.length;) {
        let run = runs.at(-1);
        if (!run || used === run.length) {
          this.#ensureOpen();
          // Runs grow with the stream, but never take more than half of what is free at once.
          const need = Math.ceil((data.length - at) / unit);
          const room = Math.floor((this.#alloc.free - this.#reserve()) / 2);
          const got = this.#alloc.take(Math.max(need, Math.min(nextRun, room)), this.#reserve());
          if (!got) {
            fail(
              "no_space",
              `No space left for ${size} bytes and more (${this.#alloc.free} units free)`,
            );
          }
          nextRun = Math.min(nextRun * 2, Math.max(bufUnits, Math.floor(RUN_MAX / unit)));
          run = { offset: got[0] * unit, length: got[1] * unit };
          runs.push(run);
          used = 0;
        }
        const n = Math.min(run.length - used, data.length - at);
        pending = n;
        await this.#store.write(run.offset + used, data.subarray(at, at + n));
        pending = 0;
        used += n;
        at += n;
      }
    };
    const it = chunksOf(source);
    try {
      for await (const chunk of it) {
        signal?.throwIfAborted();
        if (!(chunk instanceof Uint8Array)) fail("invalid", "A file's chunks must be bytes");
        hash.update(chunk);
        size += chunk.length;
        if (size > Number.MAX_SAFE_INTEGER / 2) fail("invalid", "The file is too large");
        for (let at = 0; at < chunk.length;) {
          const n = Math.min(buf.length - fill, chunk.length - at);
          buf.set(chunk.subarray(at, at + n), fill);
          fill += n;
          at += n;
          if (fill === buf.length) {
            await put(buf);
            fill = 0;
          }
        }
      }
      signal?.throwIfAborted();
      const sha = hash.digest("hex");
      if (size <= INLINE_MAX) return { size, sha256: sha, inline: buf.slice(0, fill), extents: [] };
      const tail = Math.ceil(fill / unit) * unit;
      buf.fill(0, fill, tail);
      await put(buf.subarray(0, tail));
      const last = runs.pop();
      if (last) {
        if (used > 0) runs.push({ offset: last.offset, length: used });
        this.#alloc.give((last.offset + used) / unit, (last.length - used) / unit);
      }
      return { size, sha256: sha, extents: mergeExtents(runs) };
    } catch (err) {
      const last = runs.pop();
      if (last) {
        const dirty = Math.min(last.length, Math.ceil((used + pending) / unit) * unit);
        if (dirty > 0) runs.push({ offset: last.offset, length: dirty });
        this.#alloc.give((last.offset + dirty) / unit, (last.length - dirty) / unit);
      }
      await this.#release(runs, true);
      await it.return(undefined).catch(() => {});
      throw err;
    }
  }

  /**
   * Reads a file, or a range of it, as a stream. The version read stays readable until the stream
   * ends, even if the file is replaced or deleted meanwhile.
   * @param path The file.
   * @param range The range; the whole file by default.
   * @returns The version's description and its bytes.
   * @throws {FileError} `not_found`, `is_a_directory`, `invalid` (a range past the end).
   */
  read(path: string, range: ReadRange = {}): Promise<FileRead> {
    return Promise.resolve().then(() => {
      this.#ensureOpen();
      const names = parsePath(path);
      const node = resolve(this.#root, names);
      if (node.kind !== "file") fail("is_a_directory", `${joinPath(names)} is a directory`);
      const offset = range.offset ?? 0;
      if (!Number.isSafeInteger(offset) || offset < 0 || offset > node.size) {
        fail("invalid", `Offset ${offset} is outside the file (${node.size} bytes)`);
      }
      const want = range.length ?? node.size - offset;
      if (!Number.isSafeInteger(want) || want < 0) fail("invalid", `Length ${want} is not valid`);
      const end = Math.min(node.size, offset + want);
      return { info: info(names, node), body: this.#body(node, offset, end) };
    });
  }

  /**
   * Reads a file, or a range of it, into memory (for small files).
   * @param path The file.
   * @param range The range.
   * @throws {FileError} As {@linkcode FileStore.read}.
   */
  async readAll(path: string, range: ReadRange = {}): Promise<Uint8Array> {
    const { body } = await this.read(path, range);
    const parts: Uint8Array[] = [];
    for await (const p of body) parts.push(p);
    return concatBytes(parts);
  }

  #body(node: FileNode, start: number, end: number): ReadableStream<Uint8Array> {
    if (node.inline) {
      const bytes = node.inline.slice(start, end);
      return new ReadableStream({
        start(ctl) {
          if (bytes.length) ctl.enqueue(bytes);
          ctl.close();
        },
      });
    }
    const extents = node.extents ?? [];
    for (const e of extents) this.#pins.set(e.offset, (this.#pins.get(e.offset) ?? 0) + 1);
    let released = false;
    const unpin = () => {
      if (released) return;
      released = true;
      this.#unpin(extents);
    };
    let pos = start;
    const chunk = Math.max(1, Math.floor(READ_CHUNK / this.#unit)) * this.#unit;
    return new ReadableStream<Uint8Array>({
      pull: async (ctl) => {
        try {
          if (pos >= end) {
            unpin();
            ctl.close();
            return;
          }
          // Find the extent holding `pos`, and read up to a chunk within it.
          let base = 0;
          for (const e of extents) {
            if (pos < base + e.length) {
              const within = pos - base;
              const n = Math.min(chunk - (within % chunk), e.length - within, end - pos);
              const bytes = await this.#store.read(e.offset + within, n);
              pos += n;
              ctl.enqueue(bytes);
              return;
            }
            base += e.length;
          }
          throw new FileError("corrupt", "A file's extents are shorter than its size");
        } catch (err) {
          unpin();
          throw err;
        }
      },
      cancel: () => unpin(),
    }, { highWaterMark: 0 });
  }

  #unpin(extents: readonly Extent[]): void {
    const free: Extent[] = [];
    for (const e of extents) {
      const n = (this.#pins.get(e.offset) ?? 1) - 1;
      if (n > 0) {
        this.#pins.set(e.offset, n);
        continue;
      }
      this.#pins.delete(e.offset);
      const orphan = this.#orphans.get(e.offset);
      if (orphan) {
        this.#orphans.delete(e.offset);
        free.push(orphan);
      }
    }
    if (free.length === 0) return;
    const p = this.#release(free, true).finally(() => this.#background.delete(p));
    this.#background.add(p);
  }

  /**
   * Deletes a file or a directory.
   * @param path What to delete (not the root).
   * @param opts `recursive`: delete a directory with everything in it.
   * @throws {FileError} `not_found`, `not_empty`, `invalid`.
   */
  delete(path: string, opts: { recursive?: boolean } = {}): Promise<void> {
    return this.#change(async () => {
      const names = parsePath(path);
      if (names.length === 0) fail("invalid", "The root cannot be deleted");
      const node = resolve(this.#root, names);
      if (node.kind === "dir" && node.entries.size > 0 && !opts.recursive) {
        fail("not_empty", `${joinPath(names)} is not empty`);
      }
      await this.#commit(withEntry(this.#root, names, undefined, this.#now()), []);
    });
  }

  /**
   * Moves or renames a file or directory, in one commit.
   * @param from What to move (not the root).
   * @param to Where; its parent must exist.
   * @param opts `overwrite`: replace what is at `to` (a file or a whole directory).
   * @returns Whether something was replaced.
   * @throws {FileError} `not_found`, `exists`, `not_a_directory`, `invalid` (onto itself or into
   * itself).
   */
  move(
    from: string,
    to: string,
    opts: { overwrite?: boolean } = {},
  ): Promise<{ replaced: boolean }> {
    return this.#change(async () => {
      const src = parsePath(from), dst = parsePath(to);
      const node = this.#checkTransfer(src, dst);
      const existing = parentDir(this.#root, dst).entries.get(dst.at(-1)!);
      if (existing && !opts.overwrite) fail("exists", `${joinPath(dst)} exists`);
      const now = this.#now();
      const root = withEntry(withEntry(this.#root, src, undefined, now), dst, node, now);
      await this.#commit(root, []);
      return { replaced: existing !== undefined };
    });
  }

  /**
   * Copies a file or directory, in one commit. Copies share the source's units (nothing is
   * modified in place, so the copy costs no space until one of them changes) and keep its times.
   * @param from What to copy.
   * @param to Where; its parent must exist.
   * @param opts `overwrite`: replace what is at `to`; `shallow`: copy a directory without its
   * content.
   * @returns Whether something was replaced.
   * @throws {FileError} As {@linkcode FileStore.move}.
   */
  copy(
    from: string,
    to: string,
    opts: { overwrite?: boolean; shallow?: boolean } = {},
  ): Promise<{ replaced: boolean }> {
    return this.#change(async () => {
      const src = parsePath(from), dst = parsePath(to);
      let node = this.#checkTransfer(src, dst);
      const existing = parentDir(this.#root, dst).entries.get(dst.at(-1)!);
      if (existing && !opts.overwrite) fail("exists", `${joinPath(dst)} exists`);
      const now = this.#now();
      if (node.kind === "dir" && opts.shallow) {
        node = { kind: "dir", ctime: now, mtime: now, entries: new Map() };
      }
      await this.#commit(withEntry(this.#root, dst, node, now), []);
      return { replaced: existing !== undefined };
    });
  }

  #checkTransfer(src: string[], dst: string[]): Node {
    if (src.length === 0) fail("invalid", "The root cannot be moved or copied");
    if (dst.length === 0) fail("invalid", "The root cannot be replaced");
    const node = resolve(this.#root, src);
    if (isPrefix(src, dst)) {
      fail(
        "invalid",
        src.length === dst.length
          ? `${joinPath(src)} is the source and the destination`
          : `${joinPath(src)} cannot go inside itself`,
      );
    }
    parentDir(this.#root, dst);
    return node;
  }

  /** How much the store holds and has left. */
  /**
   * The byte ranges of the store that hold anything (metadata, files, writes under way): all but
   * the free space. What a pool needs to rebuild on a new member.
   * @returns `[offset, length]` ranges, in order.
   */
  inUse(): [number, number][] {
    const unit = this.unit, out: [number, number][] = [];
    let at = 0;
    for (const [start, count] of this.#alloc.runs()) {
      if (start > at) out.push([at * unit, (start - at) * unit]);
      at = start + count;
    }
    if (at < this.#units) out.push([at * unit, (this.#units - at) * unit]);
    return out;
  }

  usage(): FileStoreUsage {
    const free = this.#alloc.free;
    return {
      sizeBytes: (this.#units - 2) * this.#unit,
      usedBytes: (this.#units - 2 - free) * this.#unit,
      freeBytes: Math.max(0, free - this.#reserve()) * this.#unit,
      metadataBytes: this.#metaLength,
      files: this.#scan.files,
      directories: this.#scan.directories,
    };
  }

  /**
   * Closes the file store: waits for the change under way, then refuses everything. The store
   * itself is left open.
   */
  async close(): Promise<void> {
    await this.#mutex.run(() => {
      this.#closed = true;
      return Promise.resolve();
    });
    while (this.#background.size) await Promise.all([...this.#background]);
  }

  #change<T>(fn: () => Promise<T>): Promise<T> {
    return this.#mutex.run(() => {
      this.#ensureOpen();
      return fn();
    });
  }

  /**
   * Commits a new tree (under the mutex). Takes ownership of `data`, the units newly written for it:
   * on failure they are freed, or kept until the next commit when the new superblock may be on the
   * store.
   */
  async #commit(root: DirNode, data: readonly Extent[]): Promise<void> {
    const unit = this.#unit;
    let meta: Extent[] = [];
    let metaLength = 0;
    let superblockStarted = false;
    try {
      await this.#store.flush();
      const bytes = encodeMetadata(root);
      if (bytes.length > MAX_METADATA_BYTES) {
        fail(
          "no_space",
          `The metadata would take ${bytes.length} bytes, over ${MAX_METADATA_BYTES}`,
        );
      }
      const runs = this.#alloc.takeExact(Math.ceil(bytes.length / unit), MAX_METADATA_EXTENTS);
      if (!runs) fail("no_space", `No space left for ${bytes.length} bytes of metadata`);
      meta = runs.map(([s, n]) => ({ offset: s * unit, length: n * unit }));
      let at = 0;
      for (const e of meta) {
        const part = new Uint8Array(e.length);
        part.set(bytes.subarray(at, at + e.length));
        await this.#store.write(e.offset, part);
        at += e.length;
      }
      await this.#store.flush();
      const generation = this.#generation + 1;
      const sb = encodeSuperblock({
        generation,
        units: this.#units,
        metaLength: bytes.length,
        metaSha256: sha256(bytes),
        extents: meta,
      }, unit);
      superblockStarted = true;
      await this.#store.write((generation % 2) * unit, sb);
      await this.#store.flush();
      metaLength = bytes.length;
    } catch (err) {
      if (superblockStarted) {
        this.#limbo.push(...meta, ...data);
        this.#log.warn("A commit failed while writing its superblock", { error: err });
      } else {
        await this.#release(meta, true);
        await this.#release(data, true);
      }
      throw err;
    }
    // Durable: the new tree is the current one, and what only the old one used may go.
    const oldMeta = this.#meta, oldRefs = this.#scan.refs, limbo = this.#limbo;
    this.#generation++;
    this.#root = root;
    this.#meta = meta;
    this.#metaLength = metaLength;
    this.#scan = scanTree(root);
    this.#limbo = [];
    const freed: Extent[] = [...oldMeta, ...limbo];
    for (const [offset, e] of oldRefs) {
      if (this.#scan.refs.has(offset)) continue;
      if (this.#pins.has(offset)) this.#orphans.set(offset, e);
      else freed.push(e);
    }
    await this.#release(freed, true);
  }

  /** Trims extents and gives them back for reuse. */
  async #release(extents: readonly Extent[], trim: boolean): Promise<void> {
    for (const e of extents) {
      if (trim) {
        try {
          await this.#store.trim(e.offset, e.length);
        } catch (err) {
          this.#log.warn("Trim failed", { offset: e.offset, length: e.length, error: err });
        }
      }
      this.#alloc.give(e.offset / this.#unit, e.length / this.#unit);
    }
  }
}

function mergeExtents(extents: readonly Extent[]): Extent[] {
  const out: Extent[] = [];
  for (const e of extents) {
    const last = out.at(-1);
    if (last && last.offset + last.length === e.offset) {
      out[out.length - 1] = { offset: last.offset, length: last.length + e.length };
    } else out.push(e);
  }
  return out;
}

async function cancelSource(source: FileSource, reason: unknown): Promise<void> {
  try {
    if (source instanceof ReadableStream) await source.cancel(reason);
    else if (Symbol.asyncIterator in source) {
      await (source as AsyncIterable<Uint8Array>)[Symbol.asyncIterator]().return?.();
    }
  } catch {
    // The source is gone already.
  }
}
