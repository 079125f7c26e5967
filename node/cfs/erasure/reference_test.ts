// The field, the matrix and the worked example of docs/protocol/erasure.md, and the argument
// checks every coder shares.
import assert from "node:assert/strict";
import { TooLargeError, ValidationError } from "../../../protocol/mod.ts";
import { cauchyParity, type ErasureCoder, ReferenceCoder, WasmCoder } from "./mod.ts";
import { decodePlan, EXP, gfInv, invert, LOG, MUL } from "./_gf.ts";

// Multiplication the long way, shift and add with reduction: independent of the log tables.
function slowMul(a: number, b: number): number {
  let p = 0;
  for (let i = 0; i < 8; i++) {
    if (b & (1 << i)) p ^= a << i;
  }
  for (let bit = 14; bit >= 8; bit--) {
    if (p & (1 << bit)) p ^= 0x11d << (bit - 8);
  }
  return p;
}

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ");
}

function coders(): ErasureCoder[] {
  return [
    new ReferenceCoder(),
    new WasmCoder({ kernel: "relaxed" }),
    new WasmCoder({ kernel: "standard" }),
  ];
}

const doc = await Deno.readTextFile(new URL("../../../docs/protocol/erasure.md", import.meta.url));

function docBlock(after: string): string[] {
  const at = doc.indexOf(after);
  assert.ok(at >= 0, `erasure.md has no "${after}"`);
  return doc.slice(at).split("```\n")[1].trim().split("\n").map((l) =>
    l.trim().replace(/\s+/g, " ")
  );
}

Deno.test("GF(2^8): the product table is multiplication modulo 0x11d", () => {
  for (let a = 0; a < 256; a++) {
    for (let b = 0; b < 256; b++) assert.equal(MUL[a * 256 + b], slowMul(a, b), `${a}·${b}`);
  }
});

Deno.test("GF(2^8): 2 generates the field and every non-zero byte has an inverse", () => {
  assert.equal(new Set(EXP.subarray(0, 255)).size, 255);
  for (let a = 1; a < 256; a++) {
    assert.equal(EXP[LOG[a]], a);
    assert.equal(slowMul(a, gfInv(a)), 1);
  }
  assert.throws(() => gfInv(0), RangeError);
  assert.equal(hex(EXP.subarray(0, 16)), docBlock("The first sixteen are")[0]);
});

Deno.test("invert() inverts every k×k choice of generator rows of 5+3", () => {
  const p = cauchyParity(5, 3);
  const g = [
    ...Array.from({ length: 5 }, (_, i) => Uint8Array.from({ length: 5 }, (_, j) => +(i === j))),
    ...p,
  ];
  for (let mask = 0; mask < 256; mask++) {
    const rows = g.filter((_, i) => mask & (1 << i));
    if (rows.length !== 5) continue;
    const inv = invert(rows);
    for (let i = 0; i < 5; i++) {
      for (let j = 0; j < 5; j++) {
        let v = 0;
        for (let t = 0; t < 5; t++) v ^= slowMul(rows[i][t], inv[t][j]);
        assert.equal(v, i === j ? 1 : 0);
      }
    }
  }
  assert.throws(() => invert([Uint8Array.of(1, 2), Uint8Array.of(2, 4)]), /singular/);
});

Deno.test("cauchyParity() is 1/(x_i + y_j) with x_i = k + i, y_j = j, as erasure.md prints it", () => {
  const p = cauchyParity(5, 3);
  for (let i = 0; i < 3; i++) {
    for (let j = 0; j < 5; j++) assert.equal(slowMul(p[i][j], (5 + i) ^ j), 1);
  }
  const printed = docBlock("For 5+3 (").slice(1).map((l) => l.split("=")[1].trim());
  assert.deepEqual(printed, p.map(hex));
});

Deno.test("erasure.md test vector: every coder encodes it and rebuilds shards 0, 1, 2", () => {
  const data = docBlock("Data shards (").map((l) => l.split(":")[1].trim());
  const parity = docBlock("Parity shards:").map((l) => l.split(":")[1].trim());
  assert.deepEqual(data, [
    "00 01 02 03",
    "04 05 06 07",
    "08 09 0a 0b",
    "0c 0d 0e 0f",
    "10 11 12 13",
  ]);
  const rows = docBlock("rebuild them through").slice(1).map((l) => l.split(":")[1].trim());
  const plan = decodePlan(5, 3, [false, false, false, true, true, true, true, true]);
  assert.deepEqual(plan.inputs, [3, 4, 5, 6, 7]);
  assert.deepEqual(plan.rows.map(hex), rows);
  for (const coder of coders()) {
    const shards = coder.shards(4);
    data.forEach((h, i) => shards[i].set(h.split(" ").map((b) => parseInt(b, 16))));
    coder.encode(shards);
    assert.deepEqual(shards.slice(5).map(hex), parity, coder.kernel);
    for (let i = 0; i < 3; i++) shards[i].fill(0xee);
    coder.reconstruct(shards, [false, false, false, true, true, true, true, true]);
    assert.deepEqual(shards.slice(0, 5).map(hex), data, coder.kernel);
  }
});

Deno.test("ErasureCoder: wrong shard counts, sizes and flags are refused with what is wrong", () => {
  for (const coder of coders()) {
    const s = coder.shards(64);
    assert.throws(
      () => coder.encode(s.slice(0, 7)),
      (e: unknown) =>
        e instanceof ValidationError &&
        /Expected 8 shards \(5 data \+ 3 parity\), got 7/.test(e.message),
    );
    const mixed = [
      ...s.slice(0, 3).map((x) => x.slice()),
      new Uint8Array(63),
      ...s.slice(4).map((x) => x.slice()),
    ];
    assert.throws(
      () => coder.encode(mixed),
      (e: unknown) =>
        e instanceof ValidationError && /Shard 3 has 63 bytes but shard 0 has 64/.test(e.message),
    );
    assert.throws(
      () => coder.encode(s.map(() => new Uint8Array(0))),
      /Shard size must be .* from 1, got 0/,
    );
    assert.throws(
      () => coder.encode([...s.slice(0, 7), [1, 2] as unknown as Uint8Array]),
      /Shard 7 is not a Uint8Array/,
    );
    assert.throws(() => coder.reconstruct(s, [true, true]), /Expected 8 presence flags/);
  }
});

Deno.test("ErasureCoder.reconstruct() with more than m missing shards says so", () => {
  for (const coder of coders()) {
    const s = coder.shards(16);
    assert.throws(
      () => coder.reconstruct(s, [false, true, false, true, false, true, false, true]),
      (e: unknown) =>
        e instanceof ValidationError && e.code === "too_many_missing" &&
        e.message === "4 shards are missing (0, 2, 4, 6) but at most 3 can be rebuilt: " +
            "a stripe needs 5 of its 8 shards",
    );
  }
});

Deno.test("ErasureCoder: a shard size over the maximum is a TooLargeError", () => {
  for (
    const coder of [
      new ReferenceCoder({ maxShardSize: 1000 }),
      new WasmCoder({ maxShardSize: 1000 }),
    ]
  ) {
    assert.throws(
      () => coder.shards(1001),
      (e: unknown) =>
        e instanceof TooLargeError &&
        /Shard size 1001 is over this coder's maximum of 1000 bytes/.test(e.message),
    );
    assert.throws(
      () => coder.encode(Array.from({ length: 8 }, () => new Uint8Array(1001))),
      TooLargeError,
    );
    assert.equal(coder.shards(1000).length, 8);
  }
});

Deno.test("ErasureCoder: codes out of range are refused when built", () => {
  for (const make of [(o: object) => new ReferenceCoder(o), (o: object) => new WasmCoder(o)]) {
    assert.throws(
      () => make({ dataShards: 0 }),
      /Data shards must be a whole number from 1, got 0/,
    );
    assert.throws(() => make({ parityShards: 1.5 }), /Parity shards/);
    assert.throws(
      () => make({ dataShards: 20, parityShards: 13 }),
      /at most 32 shards, got 20 data \+ 13 parity/,
    );
    assert.throws(() => make({ maxShardSize: 0 }), /Maximum shard size/);
  }
  assert.throws(
    () => new WasmCoder({ kernel: "avx" as never }),
    /Kernel must be auto, relaxed or standard/,
  );
});
