// The WebAssembly coder, both builds, against the reference byte for byte.
import assert from "node:assert/strict";
import fc from "fast-check";
import { ValidationError } from "../../../protocol/mod.ts";
import { ReferenceCoder, relaxedSimdSupported, WasmCoder, type WasmKernelChoice } from "./mod.ts";

const KERNELS: WasmKernelChoice[] = ["relaxed", "standard"];

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

function assertSame(actual: Uint8Array, expected: Uint8Array, what: string): void {
  const at = firstDifference(actual, expected);
  assert.equal(at, -1, `${what}: first difference at byte ${at} of ${expected.length}`);
}

/** Every set of at most `max` indices out of `n`, as presence flags. */
function lossPatterns(n: number, max: number): boolean[][] {
  const out: boolean[][] = [];
  for (let mask = 0; mask < 2 ** n; mask++) {
    let lost = 0;
    for (let i = 0; i < n; i++) lost += (mask >> i) & 1;
    if (lost >= 1 && lost <= max) out.push(Array.from({ length: n }, (_, i) => !((mask >> i) & 1)));
  }
  return out;
}

const PATTERNS = lossPatterns(8, 3);
const MAX = 65536;

// One coder of each kind for all runs: the WebAssembly ones keep their memory, as in use.
const coders = Object.fromEntries(
  KERNELS.map((k) => [k, new WasmCoder({ kernel: k, maxShardSize: MAX })]),
);
const reference = new ReferenceCoder({ maxShardSize: MAX });

function checkStripe(kernel: WasmKernelChoice, size: number, seed: Uint8Array): void {
  const coder = coders[kernel];
  const shards = coder.shards(size);
  const expected = reference.shards(size);
  for (let i = 0; i < 5; i++) {
    for (let b = 0; b < size; b++) {
      shards[i][b] = seed[(i * 7919 + b * 31 + (b >> 8)) % seed.length] ^ (b * 13);
    }
    expected[i].set(shards[i]);
  }
  coder.encode(shards);
  reference.encode(expected);
  for (let i = 5; i < 8; i++) {
    assertSame(shards[i], expected[i], `${kernel} encode, size ${size}, shard ${i}`);
  }
  for (const present of PATTERNS) {
    for (let i = 0; i < 8; i++) if (!present[i]) shards[i].fill(0xa5);
    coder.reconstruct(shards, present);
    for (let i = 0; i < 8; i++) {
      assertSame(
        shards[i],
        expected[i],
        `${kernel} rebuild without ${
          present.flatMap((p, j) => p ? [] : [j])
        }, size ${size}, shard ${i}`,
      );
    }
  }
}

Deno.test("relaxedSimdSupported(): this runtime takes the relaxed build, and auto picks it", () => {
  assert.equal(relaxedSimdSupported(), true);
  assert.equal(new WasmCoder().kernel, "wasm-relaxed-simd");
  assert.equal(new WasmCoder({ kernel: "standard" }).kernel, "wasm-simd");
});

for (const kernel of KERNELS) {
  Deno.test(`WasmCoder (${kernel}) matches the reference for 1, 15, 16, 17, 31, 33 bytes and 64 KiB, every loss of up to 3`, () => {
    const seed = crypto.getRandomValues(new Uint8Array(4099));
    for (const size of [1, 15, 16, 17, 31, 32, 33, 63, 64, 65, MAX]) {
      checkStripe(kernel, size, seed);
    }
  });

  Deno.test(`WasmCoder (${kernel}) matches the reference for random shard sizes, every loss of up to 3`, () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.integer({ min: 1, max: 300 }), fc.integer({ min: 1, max: MAX })),
        fc.uint8Array({ minLength: 1, maxLength: 64 }),
        (size, seed) => checkStripe(kernel, size, seed),
      ),
      { numRuns: 25 },
    );
  });

  Deno.test(`WasmCoder (${kernel}) matches the reference for other shapes of code`, () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 12 }),
        fc.integer({ min: 1, max: 10 }),
        fc.integer({ min: 1, max: 200 }),
        fc.infiniteStream(fc.boolean()),
        fc.uint8Array({ minLength: 1, maxLength: 300 }),
        (k, m, size, coins, seed) => {
          const n = k + m;
          const coder = new WasmCoder({
            kernel,
            dataShards: k,
            parityShards: m,
            maxShardSize: 256,
          });
          const ref = new ReferenceCoder({ dataShards: k, parityShards: m, maxShardSize: 256 });
          const shards = coder.shards(size);
          const expected = ref.shards(size);
          for (let i = 0; i < k; i++) {
            for (let b = 0; b < size; b++) shards[i][b] = seed[(i * size + b) % seed.length] + i;
            expected[i].set(shards[i]);
          }
          coder.encode(shards);
          ref.encode(expected);
          for (let i = k; i < n; i++) {
            assertSame(shards[i], expected[i], `${k}+${m} encode, shard ${i}`);
          }
          // Lose a random set of up to m shards.
          const it = coins[Symbol.iterator]();
          const present = Array.from({ length: n }, () => it.next().value as boolean);
          for (let i = 0, lost = present.filter((p) => !p).length; lost > m; i++) {
            if (!present[i]) {
              present[i] = true;
              lost--;
            }
          }
          for (let i = 0; i < n; i++) if (!present[i]) shards[i].fill(0);
          coder.reconstruct(shards, present);
          for (let i = 0; i < n; i++) {
            assertSame(shards[i], expected[i], `${k}+${m} rebuild, shard ${i}`);
          }
        },
      ),
      { numRuns: 60 },
    );
  });
}

Deno.test("WasmCoder takes arrays of its own, views of its memory and a mix, with the same result", () => {
  const coder = new WasmCoder({ maxShardSize: 1000 });
  const own = coder.shards(1000);
  for (let i = 0; i < 5; i++) crypto.getRandomValues(own[i]);
  const foreign = own.map((s) => s.slice());
  coder.encode(foreign);
  const mixed = own.map((s, i) => (i % 2 ? s : s.slice()));
  coder.encode(mixed);
  coder.encode(own);
  for (let i = 5; i < 8; i++) {
    assertSame(foreign[i], own[i], `foreign shard ${i}`);
    assertSame(mixed[i], own[i], `mixed shard ${i}`);
  }
  const lost = [true, false, true, true, false, true, true, false];
  const copy = own.map((s) => s.slice());
  for (const i of [1, 4, 7]) copy[i].fill(0);
  coder.reconstruct(copy, lost);
  for (let i = 0; i < 8; i++) assertSame(copy[i], own[i], `rebuilt foreign shard ${i}`);
});

Deno.test("WasmCoder refuses a view of its memory passed at another shard's place", () => {
  const coder = new WasmCoder({ maxShardSize: 100 });
  const s = coder.shards(100);
  assert.throws(
    () => coder.encode([s[1], s[0], ...s.slice(2)]),
    (e: unknown) =>
      e instanceof ValidationError && /Shard 0 is a view of this coder's memory/.test(e.message),
  );
  const short = coder.shards(50);
  assert.throws(() => coder.encode([...short.slice(0, 7), s[7].subarray(1, 51)]), ValidationError);
});

Deno.test("WasmCoder.shards() views stay attached: the memory grows only when the coder is built", () => {
  const coder = new WasmCoder();
  const views = coder.shards(65536);
  const small = coder.shards(17);
  for (let round = 0; round < 3; round++) {
    coder.encode(views);
    coder.reconstruct(views, [false, true, true, true, true, false, true, false]);
    coder.encode(small);
  }
  for (const v of [...views, ...small]) {
    assert.ok(v.byteLength > 0 && !(v.buffer as ArrayBuffer).detached);
  }
  assert.equal(views[3].buffer, small[3].buffer);
  assert.equal(small[3].byteOffset, views[3].byteOffset);
});
