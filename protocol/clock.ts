/**
 * The `Clock` interface: every part of True Cloud reads time through one, so tests can control it.
 *
 * @module
 */

/** A source of the current time. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

/** The system's wall clock. */
export const systemClock: Clock = { now: () => Date.now() };

/**
 * A clock that moves only when told to; for tests.
 *
 * @example
 * ```ts
 * import { ManualClock } from "./clock.ts";
 * const clock = new ManualClock(1_700_000_000_000);
 * clock.advance(5_000);
 * console.log(clock.now()); // 1700000005000
 * ```
 */
export class ManualClock implements Clock {
  #now: number;

  /** @param start The initial time in milliseconds since the epoch (default: the real time). */
  constructor(start: number = Date.now()) {
    this.#now = start;
  }

  /** @returns The current manual time. */
  now(): number {
    return this.#now;
  }

  /**
   * Moves the clock forward.
   * @param ms Milliseconds to add; may be negative to go back.
   */
  advance(ms: number): void {
    this.#now += ms;
  }

  /**
   * Sets the clock.
   * @param ms Milliseconds since the epoch.
   */
  set(ms: number): void {
    this.#now = ms;
  }
}
