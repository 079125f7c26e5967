/**
 * The fast erasure coder: WebAssembly SIMD built from `assembly/kernel.ts`, GF(2^8) products by
 * split-nibble table lookups, sixteen bytes at a time. The shards of a stripe live in the
 * module's memory, so callers write data and read parity in place.
 *
 * @module
 */

import {
  checkPresent,
  checkShards,
  checkShardSize,
  type CodeShape,
  codeShape,
  type ErasureCoder,
  type ErasureKernel,
  type ErasureOptions,
} from "./coder.ts";
import { MUL, type Plan, PlanCache } from "./_gf.ts";
import { KERNEL_RELAXED_BASE64, KERNEL_SIMD_BASE64 } from "./_wasm_binaries.ts";
import { ValidationError } from "../../../protocol/mod.ts";

/** Which build of the kernel to load: `auto` takes the relaxed one where the runtime has it. */
export type WasmKernelChoice = "auto" | "relaxed" | "standard";

/** Options of {@linkcode WasmCoder}. */
export interface WasmCoderOptions extends ErasureOptions {
  /** The kernel build (default `auto`). */
  kernel?: WasmKernelChoice;
}

interface KernelExports {
  memory: WebAssembly.Memory;
  heapBase(): number;
  dot(
    tables: number,
    inputs: number,
    nIn: number,
    outputs: number,
    nOut: number,
    len: number,
  ): void;
}

// Memory layout, from the end of the module's own data: the input shards' addresses (up to 32
// u32), the output shards' addresses (up to 32 u32), 32 bytes of tables per (input, output)
// pair of the current plan, then the shards, each on a cache line.
const INPUTS = 0;
const OUTPUTS = 128;
const TABLES = 256;
const ALIGN = 64;
const PAGE = 65536;
const GROUP = 4; // the kernel takes at most four outputs per call

let relaxedModule: WebAssembly.Module | undefined;
let simdModule: WebAssembly.Module | undefined;
let relaxedValid: boolean | undefined;

/**
 * Whether this runtime accepts the relaxed-SIMD build (`WebAssembly.validate`).
 *
 * @returns `true` if {@linkcode WasmCoder} with kernel `auto` uses `i8x16.relaxed_swizzle`.
 */
export function relaxedSimdSupported(): boolean {
  relaxedValid ??= WebAssembly.validate(Uint8Array.fromBase64(KERNEL_RELAXED_BASE64));
  return relaxedValid;
}

function kernelModule(relaxed: boolean): WebAssembly.Module {
  if (relaxed) {
    relaxedModule ??= new WebAssembly.Module(Uint8Array.fromBase64(KERNEL_RELAXED_BASE64));
    return relaxedModule;
  }
  simdModule ??= new WebAssembly.Module(Uint8Array.fromBase64(KERNEL_SIMD_BASE64));
  return simdModule;
}

/** A plan as the kernel takes it: shard places and split-nibble tables. */
interface KernelPlan {
  inputs: number[];
  outputs: number[];
  /** For each group of up to four outputs, for each input, for each output of the group: lo, hi. */
  tables: Uint8Array;
}

function kernelPlan(plan: Plan): KernelPlan {
  const k = plan.inputs.length;
  const tables = new Uint8Array(plan.outputs.length * k * 32);
  for (let g = 0; g < plan.outputs.length; g += GROUP) {
    const size = Math.min(GROUP, plan.outputs.length - g);
    for (let c = 0; c < k; c++) {
      for (let r = 0; r < size; r++) {
        const at = g * k * 32 + (c * size + r) * 32;
        const row = plan.rows[g + r][c] * 256;
        for (let i = 0; i < 16; i++) {
          tables[at + i] = MUL[row + i];
          tables[at + 16 + i] = MUL[row + (i << 4)];
        }
      }
    }
  }
  return { inputs: plan.inputs, outputs: plan.outputs, tables };
}

/**
 * Reed–Solomon over GF(2^8) in WebAssembly SIMD: about 9 GB/s of data per core with the relaxed
 * build, 6 GB/s with the standard one.
 *
 * Each coder has its own module instance whose memory holds one stripe of up to
 * `maxShardSize`-byte shards; it grows that memory once, when built, so the views from
 * {@linkcode WasmCoder.shards} stay valid for the coder's life. Use one coder per concurrent
 * stripe. Decoding plans are cached per loss pattern.
 *
 * @example
 * ```ts
 * import { WasmCoder } from "./wasm.ts";
 * const coder = new WasmCoder({ maxShardSize: 65536 });
 * const shards = coder.shards(65536);
 * crypto.getRandomValues(shards[0]); // …and the other data shards
 * coder.encode(shards); // parity now in shards[5], shards[6], shards[7]
 * ```
 */
export class WasmCoder implements ErasureCoder {
  /** k. */
  readonly dataShards: number;
  /** m. */
  readonly parityShards: number;
  /** k + m. */
  readonly totalShards: number;
  /** The largest shard size accepted. */
  readonly maxShardSize: number;
  /** The kernel build in use. */
  readonly kernel: ErasureKernel;
  readonly #shape: CodeShape;
  readonly #plans: PlanCache<KernelPlan>;
  readonly #dot: KernelExports["dot"];
  readonly #buffer: ArrayBuffer;
  readonly #bytes: Uint8Array;
  readonly #words: Uint32Array;
  readonly #slots: number[];
  readonly #base: number;
  #loaded: KernelPlan | undefined;
  #views: Uint8Array[] = [];

  /**
   * Builds a coder for a k + m code: instantiates the kernel and grows its memory, once.
   *
   * @param options k (default 5), m (default 3), the largest shard size (default 64 KiB) and
   * the kernel build (default `auto`).
   * @throws {ValidationError} If the options are out of range.
   * @throws {Error} If the chosen build does not load in this runtime.
   */
  constructor(options: WasmCoderOptions = {}) {
    this.#shape = codeShape(options);
    const { k, m, maxShardSize } = this.#shape;
    this.dataShards = k;
    this.parityShards = m;
    this.totalShards = k + m;
    this.maxShardSize = maxShardSize;
    const choice = options.kernel ?? "auto";
    if (choice !== "auto" && choice !== "relaxed" && choice !== "standard") {
      throw new ValidationError(`Kernel must be auto, relaxed or standard, got ${choice}`);
    }
    const relaxed = choice === "relaxed" || (choice === "auto" && relaxedSimdSupported());
    this.kernel = relaxed ? "wasm-relaxed-simd" : "wasm-simd";
    const exports = new WebAssembly.Instance(kernelModule(relaxed))
      .exports as unknown as KernelExports;
    this.#base = align(exports.heapBase(), ALIGN);
    const first = align(this.#base + TABLES + m * k * 32, ALIGN);
    const stride = align(maxShardSize, ALIGN);
    this.#slots = Array.from({ length: k + m }, (_, i) => first + i * stride);
    const pages = Math.ceil((first + (k + m) * stride) / PAGE);
    const have = exports.memory.buffer.byteLength / PAGE;
    if (pages > have) exports.memory.grow(pages - have); // the only grow: views stay attached
    this.#buffer = exports.memory.buffer as ArrayBuffer;
    this.#bytes = new Uint8Array(this.#buffer);
    this.#words = new Uint32Array(this.#buffer);
    this.#dot = exports.dot;
    this.#plans = new PlanCache(k, m, kernelPlan);
  }

  /** {@inheritDoc ErasureCoder.shards} */
  shards(shardSize: number): Uint8Array[] {
    checkShardSize(this.#shape, shardSize);
    if (this.#views[0]?.length !== shardSize) {
      this.#views = this.#slots.map((at) => new Uint8Array(this.#buffer, at, shardSize));
    }
    return [...this.#views];
  }

  /** {@inheritDoc ErasureCoder.encode} */
  encode(shards: readonly Uint8Array[]): void {
    const size = checkShards(this.#shape, shards);
    this.#run(this.#plans.encode, shards, size);
  }

  /** {@inheritDoc ErasureCoder.reconstruct} */
  reconstruct(shards: readonly Uint8Array[], present: readonly boolean[]): void {
    const size = checkShards(this.#shape, shards);
    const mask = checkPresent(this.#shape, present);
    if (mask === 2 ** this.totalShards - 1) return;
    this.#run(this.#plans.decode(mask), shards, size);
  }

  #run(plan: KernelPlan, shards: readonly Uint8Array[], size: number): void {
    const own = shards.map((s, i) => this.#isOwn(s, i, size));
    const k = plan.inputs.length;
    const base = this.#base;
    for (let c = 0; c < k; c++) {
      const i = plan.inputs[c];
      if (!own[i]) this.#bytes.set(shards[i], this.#slots[i]);
      this.#words[(base + INPUTS) / 4 + c] = this.#slots[i];
    }
    for (let r = 0; r < plan.outputs.length; r++) {
      this.#words[(base + OUTPUTS) / 4 + r] = this.#slots[plan.outputs[r]];
    }
    if (this.#loaded !== plan) {
      this.#bytes.set(plan.tables, base + TABLES);
      this.#loaded = plan;
    }
    for (let g = 0; g < plan.outputs.length; g += GROUP) {
      const n = Math.min(GROUP, plan.outputs.length - g);
      this.#dot(base + TABLES + g * k * 32, base + INPUTS, k, base + OUTPUTS + g * 4, n, size);
    }
    for (const o of plan.outputs) {
      if (!own[o]) shards[o].set(this.#bytes.subarray(this.#slots[o], this.#slots[o] + size));
    }
  }

  // Whether shard i is this coder's own view of its place; a view of elsewhere in its memory
  // would be overwritten while it is read, so it is refused.
  #isOwn(shard: Uint8Array, i: number, size: number): boolean {
    if (shard.buffer !== this.#buffer) return false;
    if (shard.byteOffset === this.#slots[i] && shard.length === size) return true;
    throw new ValidationError(
      `Shard ${i} is a view of this coder's memory at another place than shard ${i}'s: pass the views from shards() in order`,
    );
  }
}

function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}
