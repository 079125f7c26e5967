/**
 * How user data is laid out across the data shards of a stripe (`docs/protocol/erasure.md`):
 * data shard i holds bytes `[i·S, (i+1)·S)` of the stripe, and the last one is padded with zeros.
 *
 * @module
 */

import { TooLargeError, ValidationError } from "../../../protocol/mod.ts";

/** The shard size of the Cloud File System pool: 64 KiB. */
export const POOL_SHARD_SIZE = 64 * 1024;

/**
 * The shard size for a stripe of `length` bytes: `shardSize` for a full stripe, and
 * `ceil(length / k)` (at least 1) for a shorter, last one.
 *
 * @param length Bytes of user data in the stripe.
 * @param dataShards k (default 5).
 * @param shardSize The full shard size (default {@linkcode POOL_SHARD_SIZE}).
 * @returns Bytes per shard.
 * @throws {ValidationError} If `length` is negative or over `k · shardSize`.
 *
 * @example
 * ```ts
 * import { stripeShardSize } from "./stripe.ts";
 * console.log(stripeShardSize(327680)); // 65536
 * console.log(stripeShardSize(1001)); // 201
 * ```
 */
export function stripeShardSize(
  length: number,
  dataShards = 5,
  shardSize: number = POOL_SHARD_SIZE,
): number {
  if (!Number.isInteger(length) || length < 0 || length > dataShards * shardSize) {
    throw new ValidationError(
      `A stripe holds 0 to ${dataShards * shardSize} bytes, got ${length}`,
    );
  }
  return Math.max(1, Math.ceil(length / dataShards));
}

/**
 * Copies a stripe's user data into its data shards, zero padding the rest.
 *
 * @param dataShards The k data shards of the stripe, of one size S.
 * @param data At most k · S bytes.
 * @throws {TooLargeError} If the data does not fit.
 *
 * @example
 * ```ts
 * import { writeStripe } from "./stripe.ts";
 * const shards = [new Uint8Array(2), new Uint8Array(2)];
 * writeStripe(shards, new Uint8Array([1, 2, 3]));
 * console.log(shards); // [ Uint8Array(2) [ 1, 2 ], Uint8Array(2) [ 3, 0 ] ]
 * ```
 */
export function writeStripe(dataShards: readonly Uint8Array[], data: Uint8Array): void {
  const size = dataShards[0]?.length ?? 0;
  if (data.length > dataShards.length * size) {
    throw new TooLargeError(
      `Stripe data of ${data.length} bytes does not fit in ${dataShards.length} shards of ${size}`,
    );
  }
  for (let i = 0; i < dataShards.length; i++) {
    const part = data.subarray(
      Math.min(i * size, data.length),
      Math.min((i + 1) * size, data.length),
    );
    dataShards[i].set(part);
    dataShards[i].fill(0, part.length);
  }
}

/**
 * Gathers the first `length` bytes of a stripe's user data from its data shards.
 *
 * @param dataShards The k data shards of the stripe, of one size S.
 * @param length Bytes of user data, at most k · S (the stripe's length is kept by the layer above;
 * the shards do not record it).
 * @returns A new array of `length` bytes.
 * @throws {ValidationError} If `length` is negative or over k · S.
 */
export function readStripe(dataShards: readonly Uint8Array[], length: number): Uint8Array {
  const size = dataShards[0]?.length ?? 0;
  if (!Number.isInteger(length) || length < 0 || length > dataShards.length * size) {
    throw new ValidationError(
      `${dataShards.length} shards of ${size} bytes hold 0 to ${
        dataShards.length * size
      } bytes, got ${length}`,
    );
  }
  const out = new Uint8Array(length);
  for (let i = 0; i * size < length; i++) {
    out.set(dataShards[i].subarray(0, Math.min(size, length - i * size)), i * size);
  }
  return out;
}
