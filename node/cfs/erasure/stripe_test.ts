import assert from "node:assert/strict";
import fc from "fast-check";
import { TooLargeError, ValidationError } from "../../../protocol/mod.ts";
import { readStripe, stripeShardSize, WasmCoder, writeStripe } from "./mod.ts";

Deno.test("stripeShardSize() is S for a full stripe and ceil(L / k) for a short one", () => {
  assert.equal(stripeShardSize(5 * 65536), 65536);
  assert.equal(stripeShardSize(7), 2);
  assert.equal(stripeShardSize(0), 1);
  assert.equal(stripeShardSize(1001, 5, 1024), 201);
  assert.throws(() => stripeShardSize(5 * 65536 + 1), ValidationError);
  assert.throws(() => stripeShardSize(-1), ValidationError);
});

Deno.test("writeStripe() splits data in order and pads with zeros, as erasure.md's example", () => {
  const shards = Array.from({ length: 5 }, () => new Uint8Array(2).fill(0xff));
  writeStripe(shards, Uint8Array.of(1, 2, 3, 4, 5, 6, 7));
  assert.deepEqual(shards.map((s) => [...s]), [[1, 2], [3, 4], [5, 6], [7, 0], [0, 0]]);
  assert.throws(() => writeStripe(shards, new Uint8Array(11)), TooLargeError);
});

Deno.test("readStripe() gives back what writeStripe() put, through encode and a rebuild", () => {
  const coder = new WasmCoder({ maxShardSize: 4096 });
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 5 * 4096 }), (data) => {
      const shards = coder.shards(stripeShardSize(data.length, 5, 4096));
      writeStripe(shards.slice(0, 5), data);
      coder.encode(shards);
      for (const i of [0, 2, 4]) shards[i].fill(0x5a);
      coder.reconstruct(shards, [false, true, false, true, false, true, true, true]);
      assert.deepEqual(readStripe(shards.slice(0, 5), data.length), data);
    }),
    { numRuns: 50 },
  );
  assert.throws(() => readStripe([new Uint8Array(2)], 3), ValidationError);
});
