/**
 * The erasure-coder interface shared by the reference and the WebAssembly implementations, and
 * the checks both apply to their arguments.
 *
 * @module
 */

import { TooLargeError, ValidationError } from "../../../protocol/mod.ts";

/** Which implementation does the arithmetic. */
export type ErasureKernel = "reference" | "wasm-simd" | "wasm-relaxed-simd";

/** The shape of a code and the largest shard it takes. */
export interface ErasureOptions {
  /** k, the number of data shards (default 5). */
  dataShards?: number;
  /** m, the number of parity shards, and so of shards that may be lost (default 3). */
  parityShards?: number;
  /** The largest shard size in bytes the coder accepts (default 64 KiB). */
  maxShardSize?: number;
}

/** The most shards (data plus parity) a code may have. */
export const MAX_TOTAL_SHARDS = 32;
/** The largest `maxShardSize` a coder may be built with: 64 MiB. */
export const MAX_SHARD_SIZE_LIMIT = 64 * 1024 * 1024;

/**
 * A systematic Reed–Solomon code over GF(2^8) with k data and m parity shards
 * (`docs/protocol/erasure.md`): any k of the k + m shards of a stripe rebuild the others.
 *
 * A stripe is `totalShards` shards of one size: data shards `0..k-1`, then parity shards
 * `k..k+m-1`. Shards are passed as an array in that order.
 *
 * @example
 * ```ts
 * import { WasmCoder } from "./wasm.ts";
 * const coder = new WasmCoder();
 * const shards = coder.shards(4096); // views into the coder's memory
 * for (let i = 0; i < 5; i++) shards[i].fill(i + 1); // the data, written in place
 * coder.encode(shards); // parity in shards[5..7]
 * const present = [false, true, true, false, true, true, false, true];
 * shards[0].fill(0);
 * coder.reconstruct(shards, present); // shards 0, 3 and 6 rebuilt
 * console.log(shards[0][0]); // 1
 * ```
 */
export interface ErasureCoder {
  /** k, the number of data shards. */
  readonly dataShards: number;
  /** m, the number of parity shards. */
  readonly parityShards: number;
  /** k + m. */
  readonly totalShards: number;
  /** The largest shard size in bytes this coder accepts. */
  readonly maxShardSize: number;
  /** The implementation doing the arithmetic. */
  readonly kernel: ErasureKernel;

  /**
   * The shards of a stripe of `shardSize` bytes each, ready to be filled in place.
   *
   * The WebAssembly coder hands out views into its own memory, always the same places: there is
   * one stripe per coder, and passing these views to {@linkcode encode} and
   * {@linkcode reconstruct} copies nothing. Their contents are unspecified until written.
   *
   * @param shardSize Bytes per shard, 1 to {@linkcode maxShardSize}.
   * @returns `totalShards` arrays of `shardSize` bytes.
   * @throws {ValidationError} If the size is not a positive whole number.
   * @throws {TooLargeError} If the size is over {@linkcode maxShardSize}.
   */
  shards(shardSize: number): Uint8Array[];

  /**
   * Computes the parity shards from the data shards, in place.
   *
   * @param shards `totalShards` arrays of one size; the data shards are read, the parity shards
   * overwritten. Any `Uint8Array`s work; the coder's own views from {@linkcode shards} are fastest.
   * @throws {ValidationError} On a wrong number of shards or shards of different sizes.
   * @throws {TooLargeError} If the shards are larger than {@linkcode maxShardSize}.
   */
  encode(shards: readonly Uint8Array[]): void;

  /**
   * Rebuilds every missing shard, data and parity, from the present ones, in place.
   *
   * The first k present shards (by index) are read; every shard not present is overwritten.
   *
   * @param shards `totalShards` arrays of one size.
   * @param present `present[i]` tells whether shard `i` holds its true contents.
   * @throws {ValidationError} On a wrong number of shards or flags, shards of different sizes, or
   * more than m missing shards (code `too_many_missing`).
   * @throws {TooLargeError} If the shards are larger than {@linkcode maxShardSize}.
   */
  reconstruct(shards: readonly Uint8Array[], present: readonly boolean[]): void;
}

/** The shape of a code, checked, with defaults filled in. */
export interface CodeShape {
  /** k. */
  k: number;
  /** m. */
  m: number;
  /** The largest shard size. */
  maxShardSize: number;
}

/**
 * Checks a code's options and fills in the defaults (5 + 3, 64 KiB).
 *
 * @param options The options given to a coder's constructor.
 * @returns k, m and the largest shard size.
 * @throws {ValidationError} If k or m is not a positive whole number, k + m is over
 * {@linkcode MAX_TOTAL_SHARDS}, or the shard size is not 1 to {@linkcode MAX_SHARD_SIZE_LIMIT}.
 */
export function codeShape(options: ErasureOptions = {}): CodeShape {
  const k = options.dataShards ?? 5;
  const m = options.parityShards ?? 3;
  const maxShardSize = options.maxShardSize ?? 64 * 1024;
  if (!Number.isInteger(k) || k < 1) {
    throw new ValidationError(`Data shards must be a whole number from 1, got ${k}`);
  }
  if (!Number.isInteger(m) || m < 1) {
    throw new ValidationError(`Parity shards must be a whole number from 1, got ${m}`);
  }
  if (k + m > MAX_TOTAL_SHARDS) {
    throw new ValidationError(
      `A code has at most ${MAX_TOTAL_SHARDS} shards, got ${k} data + ${m} parity`,
    );
  }
  if (!Number.isInteger(maxShardSize) || maxShardSize < 1 || maxShardSize > MAX_SHARD_SIZE_LIMIT) {
    throw new ValidationError(
      `Maximum shard size must be a whole number of bytes from 1 to ${MAX_SHARD_SIZE_LIMIT}, got ${maxShardSize}`,
    );
  }
  return { k, m, maxShardSize };
}

/**
 * Checks a shard size against a code.
 *
 * @param shape The code.
 * @param size Bytes per shard.
 * @throws {ValidationError} If the size is not a positive whole number.
 * @throws {TooLargeError} If it is over the code's maximum.
 */
export function checkShardSize(shape: CodeShape, size: number): void {
  if (!Number.isInteger(size) || size < 1) {
    throw new ValidationError(`Shard size must be a whole number of bytes from 1, got ${size}`);
  }
  if (size > shape.maxShardSize) {
    throw new TooLargeError(
      `Shard size ${size} is over this coder's maximum of ${shape.maxShardSize} bytes`,
    );
  }
}

/**
 * Checks a stripe's shards against a code.
 *
 * @param shape The code.
 * @param shards The shards passed to `encode` or `reconstruct`.
 * @returns The shard size.
 * @throws {ValidationError} On a wrong number of shards, something not a `Uint8Array`, shards of
 * different sizes or empty shards.
 * @throws {TooLargeError} If the shards are larger than the code's maximum.
 */
export function checkShards(shape: CodeShape, shards: readonly Uint8Array[]): number {
  const n = shape.k + shape.m;
  if (!Array.isArray(shards) || shards.length !== n) {
    throw new ValidationError(
      `Expected ${n} shards (${shape.k} data + ${shape.m} parity), got ${
        Array.isArray(shards) ? shards.length : typeof shards
      }`,
    );
  }
  for (let i = 0; i < n; i++) {
    if (!(shards[i] instanceof Uint8Array)) {
      throw new ValidationError(`Shard ${i} is not a Uint8Array`);
    }
  }
  const size = shards[0].length;
  for (let i = 1; i < n; i++) {
    if (shards[i].length !== size) {
      throw new ValidationError(
        `Shard ${i} has ${
          shards[i].length
        } bytes but shard 0 has ${size}: the shards of a stripe have one size`,
      );
    }
  }
  checkShardSize(shape, size);
  return size;
}

/**
 * Checks the presence flags of a stripe to reconstruct.
 *
 * @param shape The code.
 * @param present One flag per shard.
 * @returns A bit mask of the present shards (bit i for shard i).
 * @throws {ValidationError} On a wrong number of flags, or (code `too_many_missing`) when more
 * than m shards are missing.
 */
export function checkPresent(shape: CodeShape, present: readonly boolean[]): number {
  const n = shape.k + shape.m;
  if (!Array.isArray(present) || present.length !== n) {
    throw new ValidationError(
      `Expected ${n} presence flags, one per shard, got ${
        Array.isArray(present) ? present.length : typeof present
      }`,
    );
  }
  let mask = 0;
  const missing: number[] = [];
  for (let i = 0; i < n; i++) {
    if (present[i]) mask |= 1 << i;
    else missing.push(i);
  }
  if (missing.length > shape.m) {
    throw new ValidationError(
      `${missing.length} shards are missing (${
        missing.join(", ")
      }) but at most ${shape.m} can be rebuilt: a stripe needs ${shape.k} of its ${n} shards`,
      { code: "too_many_missing" },
    );
  }
  return mask >>> 0;
}
