import assert from "node:assert/strict";
import fc from "fast-check";
import { shuffled } from "./random.ts";

Deno.test("shuffled() returns a permutation and leaves its input alone", () => {
  fc.assert(
    fc.property(fc.array(fc.integer()), (xs) => {
      const before = [...xs];
      const out = shuffled(xs);
      assert.deepEqual(xs, before);
      assert.deepEqual([...out].sort((a, b) => a - b), [...xs].sort((a, b) => a - b));
    }),
  );
});

Deno.test("shuffled() puts every item first about equally often", () => {
  const counts = [0, 0, 0, 0];
  for (let i = 0; i < 40_000; i++) counts[shuffled([0, 1, 2, 3])[0]]++;
  // Each is expected 10,000 times; 9,400 and 10,600 are about 7 standard deviations away.
  for (const c of counts) assert.ok(c > 9_400 && c < 10_600, `counts ${counts}`);
});
