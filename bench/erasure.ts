/**
 * Erasure-coding benchmark: Reed–Solomon 5+3 with 64 KiB shards on one core — encoding (three
 * parity shards from five data shards) and decoding (three lost data shards rebuilt from the
 * other five) — for the WebAssembly kernel (relaxed-SIMD and standard-SIMD builds) and the plain
 * TypeScript reference, beside a memcpy (`Uint8Array.prototype.set`) of the same data bytes.
 * Prints GB/s of data (5 × 64 KiB per stripe) and the ratio to the 6 GB/s per core target.
 *
 *   deno task bench:erasure [--seconds 1] [--rounds 3] [--json FILE]
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  type ErasureCoder,
  ReferenceCoder,
  relaxedSimdSupported,
  WasmCoder,
} from "../node/cfs/erasure/mod.ts";
import { median } from "./_lib.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    seconds: { type: "string", default: "1" },
    rounds: { type: "string", default: "3" },
    json: { type: "string" },
  },
});
const SECONDS = Number(flags.seconds);
const ROUNDS = Number(flags.rounds);
if (!(SECONDS > 0 && SECONDS <= 60) || !Number.isInteger(ROUNDS) || ROUNDS < 1 || ROUNDS > 20) {
  console.error("bench: --seconds must be in (0, 60] and --rounds a whole number from 1 to 20");
  Deno.exit(2);
}

const K = 5;
const SHARD = 64 * 1024;
const TARGET = 6; // GB/s of data per core
const LOST = [false, false, false, true, true, true, true, true]; // shards 0, 1, 2 lost

/** Runs `op` (one stripe) for about SECONDS and returns GB/s of data. */
function throughput(op: () => void): number {
  let stripes = 0;
  const start = performance.now();
  let now = start;
  while (now - start < SECONDS * 1000) {
    for (let i = 0; i < 16; i++) op();
    stripes += 16;
    now = performance.now();
  }
  return (stripes * K * SHARD) / ((now - start) / 1000) / 1e9;
}

function setup(coder: ErasureCoder): { encode: () => void; decode: () => void } {
  const shards = coder.shards(SHARD);
  for (let i = 0; i < K; i++) crypto.getRandomValues(shards[i]);
  coder.encode(shards);
  return {
    encode: () => coder.encode(shards),
    decode: () => coder.reconstruct(shards, LOST),
  };
}

const data = Array.from({ length: K }, () => crypto.getRandomValues(new Uint8Array(SHARD)));
const copies = Array.from({ length: K }, () => new Uint8Array(SHARD));
const memcpy = () => {
  for (let i = 0; i < K; i++) copies[i].set(data[i]);
};

const contenders: { name: string; encode: () => void; decode?: () => void }[] = [
  { name: "wasm relaxed-simd (relaxed_swizzle)", ...setup(new WasmCoder({ kernel: "relaxed" })) },
  { name: "wasm simd (swizzle)", ...setup(new WasmCoder({ kernel: "standard" })) },
  { name: "reference (TypeScript)", ...setup(new ReferenceCoder()) },
  { name: "memcpy (Uint8Array.set)", encode: memcpy },
];

// Warm-up (tiers up the JIT), discarded; then rounds, contenders in turn, medians.
for (const c of contenders) {
  for (let i = 0; i < 50; i++) {
    c.encode();
    c.decode?.();
  }
}
const runs = contenders.map(() => ({ encode: [] as number[], decode: [] as number[] }));
for (let round = 0; round < ROUNDS; round++) {
  contenders.forEach((c, i) => {
    runs[i].encode.push(throughput(c.encode));
    if (c.decode) runs[i].decode.push(throughput(c.decode));
  });
}

console.log(
  `erasure: RS 5+3, 64 KiB shards (320 KiB of data per stripe), one core; ${ROUNDS} rounds of ` +
    `${SECONDS} s, medians; relaxed SIMD ${relaxedSimdSupported() ? "available" : "unavailable"}`,
);
console.log(
  `${"GB/s of data".padEnd(36)} ${"encode".padStart(7)} ${
    "decode".padStart(7)
  }   vs ${TARGET} GB/s`,
);
const rows = contenders.map((c, i) => {
  const encode = median(runs[i].encode);
  const decode = c.decode ? median(runs[i].decode) : undefined;
  const vs = c.decode
    ? `${(encode / TARGET).toFixed(2)}× / ${(decode! / TARGET).toFixed(2)}×`
    : `${(encode / TARGET).toFixed(2)}× (copy)`;
  console.log(
    `${c.name.padEnd(36)} ${encode.toFixed(2).padStart(7)} ${
      (decode?.toFixed(2) ?? "—").padStart(7)
    }   ${vs}`,
  );
  return { name: c.name, encode, decode, runs: runs[i] };
});
console.log("decode: shards 0, 1 and 2 lost, rebuilt from shards 3 to 7");
if (flags.json) {
  await Deno.writeTextFile(
    flags.json,
    JSON.stringify({ date: new Date().toISOString(), targetGBps: TARGET, rows }, null, 2),
  );
}
