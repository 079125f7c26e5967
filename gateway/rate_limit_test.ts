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
      const rl = new RateLimiter({ burst, perSecond: rate, clock });
      let allowed = 0;
      for (const g of gaps) {
        clock.advance(g);
        if (rl.take("x").allowed) allowed++;
      }
      assert.ok(allowed <= burst + (rate * clock.now()) / 1000 + 1e-9);
    },
  ));
});

Deno.test("RateLimiter forgets the least recently seen client when its table is full", () => {
  const rl = new RateLimiter({
    burst: 1,
    perSecond: 0.001,
    maxClients: 2,
    clock: new ManualClock(0),
  });
  rl.take("a");
  rl.take("b");
  rl.take("a");
  rl.take("c"); // evicts b
  assert.equal(rl.size, 2);
  assert.equal(rl.take("a").allowed, false, "a is still tracked");
  assert.equal(rl.take("b").allowed, true, "b was forgotten and starts afresh");
});
