/**
 * The reference erasure coder: plain TypeScript, one byte at a time through a 64 KiB
 * multiplication table built from log/exp tables. Slow and obviously correct; the WebAssembly
 * coder is checked against it byte for byte.
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

/**
 * Reed–Solomon over GF(2^8) in plain TypeScript, about 0.5 GB/s.
 *
 * @example
 * ```ts
 * import { ReferenceCoder } from "./reference.ts";
 * const coder = new ReferenceCoder({ dataShards: 5, parityShards: 3 });
 * const shards = coder.shards(4);
 * shards[0].set([1, 2, 3, 4]);
 * coder.encode(shards);
 * ```
 */
export class ReferenceCoder implements ErasureCoder {
  /** k. */
  readonly dataShards: number;
  /** m. */
  readonly parityShards: number;
  /** k + m. */
  readonly totalShards: number;
  /** The largest shard size accepted. */
  readonly maxShardSize: number;
  /** Always `reference`. */
  readonly kernel: ErasureKernel = "reference";
  readonly #shape: CodeShape;
  readonly #plans: PlanCache<Plan>;

  /**
   * Builds a coder for a k + m code.
   *
   * @param options k (default 5), m (default 3) and the largest shard size (default 64 KiB).
   * @throws {ValidationError} If the options are out of range.
   */
  constructor(options: ErasureOptions = {}) {
    this.#shape = codeShape(options);
    this.dataShards = this.#shape.k;
    this.parityShards = this.#shape.m;
    this.totalShards = this.#shape.k + this.#shape.m;
    this.maxShardSize = this.#shape.maxShardSize;
    this.#plans = new PlanCache(this.#shape.k, this.#shape.m, (plan) => plan);
  }

  /** {@inheritDoc ErasureCoder.shards} */
  shards(shardSize: number): Uint8Array[] {
    checkShardSize(this.#shape, shardSize);
    return Array.from({ length: this.totalShards }, () => new Uint8Array(shardSize));
  }

  /** {@inheritDoc ErasureCoder.encode} */
  encode(shards: readonly Uint8Array[]): void {
    checkShards(this.#shape, shards);
    apply(this.#plans.encode, shards);
  }

  /** {@inheritDoc ErasureCoder.reconstruct} */
  reconstruct(shards: readonly Uint8Array[], present: readonly boolean[]): void {
    checkShards(this.#shape, shards);
    const mask = checkPresent(this.#shape, present);
    if (mask === 2 ** this.totalShards - 1) return;
    apply(this.#plans.decode(mask), shards);
  }
}

function apply(plan: Plan, shards: readonly Uint8Array[]): void {
  for (let r = 0; r < plan.outputs.length; r++) {
    const out = shards[plan.outputs[r]];
    out.fill(0);
    for (let c = 0; c < plan.inputs.length; c++) {
      const row = plan.rows[r][c] * 256;
      const input = shards[plan.inputs[c]];
      for (let i = 0; i < out.length; i++) out[i] ^= MUL[row + input[i]];
    }
  }
}
