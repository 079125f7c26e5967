/**
 * A per-client token-bucket rate limiter.
 *
 * Why not `rate-limiter-flexible`: its memory store arms one timer per client key to expire it,
 * which keeps a timer alive per client and trips Deno's test sanitizers; a token bucket that
 * refills lazily on access needs no timer at all. The table of clients is bounded: when full, the
 * least recently seen client is forgotten (a forgotten client starts with a full bucket).
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
  /** Most clients tracked at once (default 100 000). */
  maxClients?: number;
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

/**
 * Token buckets keyed by client.
 *
 * @example
 * ```ts
 * import { RateLimiter } from "./rate_limit.ts";
 * const rl = new RateLimiter({ burst: 2, perSecond: 1 });
 * console.log(rl.take("203.0.113.9").allowed); // true
 * ```
 */
export class RateLimiter {
  readonly #burst: number;
  readonly #rate: number;
  readonly #max: number;
  readonly #clock: Clock;
  // Map keeps insertion order; re-inserting on access makes it an LRU.
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  /** @param options Burst, rate, table size and clock. */
  constructor(options: RateLimitOptions) {
    this.#burst = options.burst;
    this.#rate = options.perSecond;
    this.#max = options.maxClients ?? 100_000;
    this.#clock = options.clock ?? systemClock;
  }

  /** How many clients are tracked. */
  get size(): number {
    return this.#buckets.size;
  }

  /**
   * Takes one token from a client's bucket.
   * @param client The client's key, usually its address.
   * @returns Whether the request may proceed, and when to retry if not.
   */
  take(client: string): RateDecision {
    const now = this.#clock.now();
    let b = this.#buckets.get(client);
    if (b) {
      this.#buckets.delete(client);
      b.tokens = Math.min(this.#burst, b.tokens + ((now - b.at) / 1000) * this.#rate);
      b.at = now;
    } else {
      b = { tokens: this.#burst, at: now };
      if (this.#buckets.size >= this.#max) {
        this.#buckets.delete(this.#buckets.keys().next().value!);
      }
    }
    this.#buckets.set(client, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return { allowed: true, remaining: Math.floor(b.tokens), retryAfterS: 0 };
    }
    return { allowed: false, remaining: 0, retryAfterS: Math.ceil((1 - b.tokens) / this.#rate) };
  }
}
