// Random sequences of calls through a BlockClient behave as the in-memory model device does.
import assert from "node:assert/strict";
import fc from "fast-check";
import { type BlockDevice, DeviceError, MemoryBlockDevice, TAG_BYTES } from "../drivers/mod.ts";
import { setupVolume, testBlocks } from "./_test_setup.ts";

const BS = 4096;
const N = 48;

type Call =
  | { kind: "write"; first: number; count: number; seed: number }
  | { kind: "read"; first: number; count: number }
  | { kind: "trim"; first: number; count: number }
  | { kind: "flush" };

// Ranges mostly inside the device, sometimes past its end or empty.
const range = { first: fc.integer({ min: 0, max: N + 2 }), count: fc.integer({ min: 0, max: 9 }) };
const call: fc.Arbitrary<Call> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant("write" as const), ...range, seed: fc.nat(255) }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("read" as const), ...range }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("trim" as const), ...range }) },
  { weight: 1, arbitrary: fc.constant({ kind: "flush" as const }) },
);

/** What a call gives: its read data, or the code it failed with. */
async function outcome(dev: BlockDevice, c: Call): Promise<unknown> {
  try {
    switch (c.kind) {
      case "write": {
        const x = testBlocks(c.count, c.seed);
        await dev.write(c.first, x.data, x.tags);
        return "ok";
      }
      case "read": {
        const r = await dev.read(c.first, c.count);
        return { data: r.data.slice(), tags: r.tags.slice() };
      }
      case "trim":
        await dev.trim(c.first, c.count);
        return "ok";
      case "flush":
        await dev.flush();
        return "ok";
    }
  } catch (err) {
    assert.ok(err instanceof DeviceError, String(err));
    return err.code;
  }
}

Deno.test("BlockClient behaves as MemoryBlockDevice for random calls", async () => {
  const s = await setupVolume({ blockSize: BS, blockCount: N });
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(call, { maxLength: 24 }), async (calls) => {
        await s.client.trim(0, N); // a fresh volume
        const model = new MemoryBlockDevice(BS, N);
        for (const [i, c] of calls.entries()) {
          const [got, want] = [await outcome(s.client, c), await outcome(model, c)];
          assert.deepEqual(got, want, `call ${i}: ${JSON.stringify(c)}`);
        }
        const [got, want] = [await s.client.read(0, N), await model.read(0, N)];
        assert.deepEqual(got.data, want.data);
        assert.deepEqual(got.tags, want.tags);
      }),
      { numRuns: 60 },
    );
  } finally {
    await s.cleanup();
  }
});

Deno.test("BlockClient behaves as MemoryBlockDevice for concurrent calls on distinct blocks", async () => {
  const s = await setupVolume({ blockSize: BS, blockCount: N });
  try {
    // Each call gets its own blocks, so the order in which they are served does not matter.
    const batch = fc.array(
      fc.record({
        kind: fc.constantFrom("write" as const, "read" as const, "trim" as const),
        count: fc.integer({ min: 1, max: 4 }),
        seed: fc.nat(255),
      }),
      { maxLength: 10 },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(batch, { maxLength: 4 }), async (batches) => {
        await s.client.trim(0, N);
        const model = new MemoryBlockDevice(BS, N);
        for (const b of batches) {
          let at = 0;
          const calls: Call[] = b.map((c) => {
            const first = at;
            at += c.count;
            return { ...c, first };
          }).filter((c) => c.first + c.count <= N);
          const got = await Promise.all(calls.map((c) => outcome(s.client, c)));
          for (const [i, c] of calls.entries()) {
            assert.deepEqual(got[i], await outcome(model, c), JSON.stringify(c));
          }
        }
        const [got, want] = [await s.client.read(0, N), await model.read(0, N)];
        assert.deepEqual(got.data, want.data);
        assert.deepEqual(got.tags.length, N * TAG_BYTES);
        assert.deepEqual(got.tags, want.tags);
      }),
      { numRuns: 40 },
    );
  } finally {
    await s.cleanup();
  }
});
