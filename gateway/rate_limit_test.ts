import assert from "node:assert/strict";
import fc from "fast-check";
import { ManualClock } from "../protocol/mod.ts";
import { RateLimiter } from "./rate_limit.ts";

Deno.test("RateLimiter.take() allows a burst, then refuses until tokens refill", () => {
  const clock = new ManualClock(0);
  const rl = new RateLimiter({ burst: 3, perSecond: 2, clock });
  assert.deepEqual([1, 2, 3, 4].map(() => rl.take("a").allowed), [true, true, true, false]);
  assert.equal(rl.take("a").retryAfterS, 1);
  assert.equal(rl.take("b").allowed, true, "clients are independent");
  clock.advance(500);
  assert.equal(rl.take("a").allowed, true);
  assert.equal(rl.take("a").allowed, false);
  clock.advance(10_000);
  assert.equal(rl.take("a").remaining, 2, "refill stops at the burst size");
});

Deno.test("RateLimiter never lets through more than burst + rate × time", () => {
  fc.assert(fc.property(
    fc.array(fc.nat({ max: 2000 }), { minLength: 1, maxLength: 200 }),
    fc.integer({ min: 1, max: 10 }),
    fc.integer({ min: 1, max: 20 }),
    (gaps, burst, rate) => {
      const clock = new ManualClock(0);
      const rl = new RateLimiter({ burst, perSecond: rate, clock, slots: 16 });
      let allowed = 0;
      for (const g of gaps) {
        clock.advance(g);
        if (rl.take("x").allowed) allowed++;
      }
      assert.ok(allowed <= burst + (rate * clock.now()) / 1000 + 1e-9);
    },
  ));
});

Deno.test("RateLimiter reuses the least recently seen slot when a client's neighbourhood is full", () => {
  const clock = new ManualClock(0);
  const rl = new RateLimiter({ burst: 1, perSecond: 0.001, slots: 8, clock });
  for (let i = 0; i < 8; i++) {
    clock.advance(1);
    assert.equal(rl.take(`client-${i}`).allowed, true);
  }
  clock.advance(1);
  assert.equal(rl.take("client-7").allowed, false, "a tracked client stays limited");
  assert.equal(rl.take("newcomer").allowed, true, "a new client takes the stalest slot");
});

Deno.test("RateLimiter built on another's buffer shares its buckets (as Workers do)", () => {
  const clock = new ManualClock(0);
  const a = new RateLimiter({ burst: 4, perSecond: 0.001, clock });
  const b = new RateLimiter({ burst: 4, perSecond: 0.001, clock }, a.buffer);
  assert.deepEqual([a, b, a, b, a].map((rl) => rl.take("c").allowed), [
    true,
    true,
    true,
    true,
    false,
  ]);
  assert.throws(() => new RateLimiter({ burst: 1, perSecond: 1, slots: 16 }, a.buffer), RangeError);
});
