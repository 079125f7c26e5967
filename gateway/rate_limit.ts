/**
 * A per-client token-bucket rate limiter whose buckets live in a `SharedArrayBuffer`, so that every
 * serving thread of a gateway enforces one limit per client (the kernel spreads one client's
 * connections over the threads).
 *
 * Why not `rate-limiter-flexible`: its memory store lives in one isolate and arms one timer per
 * client; here buckets refill lazily on access, need no timer, and are shared between Workers.
 *
 * The table has a fixed number of slots. A client's slot is found by hashing its key and probing a
 * few neighbours; when all are taken by other clients, the one seen longest ago is reused (that
 * client starts again with a full bucket). Each slot has its own spin lock (`Atomics`).
 *
 * @module
 */

import { type Clock, systemClock } from "../protocol/mod.ts";

/** Settings of a {@linkcode RateLimiter}. */
export interface RateLimitOptions {
  /** Requests a client may make in a burst (bucket size). */
  burst: number;
  /** Sustained requests per second (refill rate). */
  perSecond: number;
  /** Slots in the table, a power of two (default 65 536). */
  slots?: number;
  /** Time source. */
  clock?: Clock;
}

/** The decision for one request. */
export interface RateDecision {
  /** Whether the request may proceed. */
  allowed: boolean;
  /** Whole tokens left after this request. */
  remaining: number;
  /** Seconds until a token is available (0 when allowed). */
  retryAfterS: number;
}

const PROBES = 8;

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) | 1; // never 0: 0 marks an empty slot
}

/**
 * Token buckets keyed by client, shareable between Workers.
 *
 * @example
 * ```ts
 * import { RateLimiter } from "./rate_limit.ts";
 * const rl = new RateLimiter({ burst: 2, perSecond: 1 });
 * console.log(rl.take("203.0.113.9").allowed); // true
 * // In a Worker: new RateLimiter(options, rl.buffer) uses the same buckets.
 * ```
 */
export class RateLimiter {
  /** The shared memory: post it to a Worker and build a limiter on it there. */
  readonly buffer: SharedArrayBuffer;
  readonly #burst: number;
  readonly #rate: number;
  readonly #mask: number;
  readonly #clock: Clock;
  readonly #i32: Int32Array; // per slot: [lock, keyHash]
  readonly #f64: Float64Array; // per slot: [tokens, lastMs]

  /**
   * @param options Burst, rate, table size and clock.
   * @param buffer The table of another limiter to share; a new one if not given.
   */
  constructor(options: RateLimitOptions, buffer?: SharedArrayBuffer) {
    const slots = options.slots ?? 65_536;
    if (!Number.isInteger(Math.log2(slots))) throw new RangeError("slots must be a power of two");
    this.#burst = options.burst;
    this.#rate = options.perSecond;
    this.#mask = slots - 1;
    this.#clock = options.clock ?? systemClock;
    this.buffer = buffer ?? new SharedArrayBuffer(slots * 24);
    if (this.buffer.byteLength !== slots * 24) throw new RangeError("buffer does not match slots");
    this.#f64 = new Float64Array(this.buffer, 0, slots * 2);
    this.#i32 = new Int32Array(this.buffer, slots * 16, slots * 2);
  }

  #lock(slot: number): void {
    while (
      Atomics.compareExchange(this.#i32, slot * 2, 0, 1) !== 0
    ) { /* spin: held for nanoseconds */ }
  }

  #unlock(slot: number): void {
    Atomics.store(this.#i32, slot * 2, 0);
  }

  /**
   * Takes one token from a client's bucket.
   * @param client The client's key, usually its address.
   * @returns Whether the request may proceed, and when to retry if not.
   */
  take(client: string): RateDecision {
    const now = this.#clock.now();
    const h = fnv1a(client);
    let slot = -1;
    let oldest = -1;
    let oldestAt = Infinity;
    for (let p = 0; p < PROBES; p++) {
      const s = (h + p) & this.#mask;
      const k = Atomics.load(this.#i32, s * 2 + 1);
      if (k === h || k === 0) {
        slot = s;
        break;
      }
      const at = this.#f64[s * 2 + 1];
      if (at < oldestAt) {
        oldestAt = at;
        oldest = s;
      }
    }
    if (slot < 0) slot = oldest;
    this.#lock(slot);
    try {
      let tokens: number;
      if (Atomics.load(this.#i32, slot * 2 + 1) === h) {
        const last = this.#f64[slot * 2 + 1];
        tokens = Math.min(
          this.#burst,
          this.#f64[slot * 2] + (Math.max(0, now - last) / 1000) * this.#rate,
        );
      } else {
        Atomics.store(this.#i32, slot * 2 + 1, h);
        tokens = this.#burst;
      }
      const allowed = tokens >= 1;
      if (allowed) tokens -= 1;
      this.#f64[slot * 2] = tokens;
      this.#f64[slot * 2 + 1] = now;
      return allowed
        ? { allowed, remaining: Math.floor(tokens), retryAfterS: 0 }
        : { allowed, remaining: 0, retryAfterS: Math.ceil((1 - tokens) / this.#rate) };
    } finally {
      this.#unlock(slot);
    }
  }
}
