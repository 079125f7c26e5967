// The pool against a plain byte array: random writes, reads, trims, flushes, scrubs, members
// lost and brought back, and blocks corrupted, never more than three shards of a stripe bad at
// once. With four members gone, a read returns the right bytes or fails with data_lost.
import assert from "node:assert/strict";
import { seededBytes } from "../../protocol/_test_tools.ts";
import fc from "fast-check";
import { type BlockRead, MemoryBlockDevice, TAG_BYTES } from "../drivers/mod.ts";
import { WasmCoder } from "./erasure/mod.ts";
import { Pool, PoolError } from "./pool.ts";

const BS = 4096;
const STRIPES = 16;
const SB = 5 * BS;
const SIZE = STRIPES * SB;
const KEY = crypto.getRandomValues(new Uint8Array(32));
const coder = new WasmCoder({ maxShardSize: BS });

type Op =
  | { t: "write"; offset: number; length: number; seed: number }
  | { t: "read"; offset: number; length: number }
  | { t: "trim"; offset: number; length: number }
  | { t: "flush" }
  | { t: "scrub" }
  | { t: "away"; slot: number }
  | { t: "fault"; slot: number }
  | { t: "back"; slot: number }
  | { t: "corrupt"; slot: number; stripe: number; byte: number }
  | { t: "replay"; slot: number; stripe: number }
  | { t: "overload"; slots: number[]; offset: number; length: number };

const range = fc.oneof(
  // Anywhere in the pool.
  fc.tuple(fc.nat(SIZE), fc.nat(SIZE)).map(([a, b]) => ({
    offset: Math.min(a, b),
    length: Math.abs(a - b),
  })),
  // Small, around stripe and shard boundaries.
  fc.tuple(fc.nat(STRIPES - 1), fc.integer({ min: -BS, max: SB }), fc.nat(3 * BS)).map(
    ([s, d, length]) => {
      const offset = Math.min(SIZE, Math.max(0, s * SB + d));
      return { offset, length: Math.min(length, SIZE - offset) };
    },
  ),
);
const slot = fc.nat(7);

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.tuple(range, fc.nat()).map(([r, seed]) => ({ t: "write", ...r, seed }) as Op),
  },
  { weight: 5, arbitrary: range.map((r) => ({ t: "read", ...r }) as Op) },
  { weight: 2, arbitrary: range.map((r) => ({ t: "trim", ...r }) as Op) },
  { weight: 1, arbitrary: fc.constant({ t: "flush" } as Op) },
  { weight: 1, arbitrary: fc.constant({ t: "scrub" } as Op) },
  { weight: 3, arbitrary: slot.map((slot) => ({ t: "away", slot }) as Op) },
  { weight: 1, arbitrary: slot.map((slot) => ({ t: "fault", slot }) as Op) },
  { weight: 3, arbitrary: slot.map((slot) => ({ t: "back", slot }) as Op) },
  {
    weight: 2,
    arbitrary: fc.tuple(slot, fc.nat(STRIPES - 1), fc.nat(BS - 1)).map(([slot, stripe, byte]) =>
      ({ t: "corrupt", slot, stripe, byte }) as Op
    ),
  },
  {
    weight: 3,
    arbitrary: fc.tuple(slot, fc.nat(STRIPES - 1)).map(([slot, stripe]) =>
      ({ t: "replay", slot, stripe }) as Op
    ),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(
      fc.shuffledSubarray([0, 1, 2, 3, 4, 5, 6, 7], { minLength: 4, maxLength: 4 }),
      range,
    )
      .map(([slots, r]) => ({ t: "overload", slots, ...r }) as Op),
  },
);

const bytes = seededBytes;

function same(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i]) assert.fail(`${what}: first difference at byte ${i}`);
  }
}

/** The state of the world the pool should see, and the checks. */
class World {
  readonly model = new Uint8Array(SIZE);
  readonly devices = Array.from({ length: 8 }, () => new MemoryBlockDevice(BS, STRIPES));
  /** Members not online. */
  readonly down = new Map<number, "away" | "faulted">();
  /** Corrupted shards not yet certainly rewritten: slot → stripes. */
  readonly corrupted = Array.from({ length: 8 }, () => new Set<number>());
  /** Old versions of every block of a slot, kept to be replayed. */
  readonly saved = new Map<number, BlockRead>();
  pool!: Pool;

  /** Shards of a stripe that may be bad if `extra` also goes down. */
  bad(stripe: number, extra = -1): number {
    let n = 0;
    for (let s = 0; s < 8; s++) {
      if (this.down.has(s) || s === extra || this.corrupted[s].has(stripe)) n++;
    }
    return n;
  }

  /** Whether every stripe stays readable with `extra` down too. */
  safeWithout(extra: number): boolean {
    for (let s = 0; s < STRIPES; s++) if (this.bad(s, extra) > 3) return false;
    return true;
  }

  /** A write or trim rewrote these stripes on every online member. */
  rewritten(offset: number, length: number): void {
    if (length === 0) return;
    for (let s = Math.floor(offset / SB); s < Math.ceil((offset + length) / SB); s++) {
      for (let slot = 0; slot < 8; slot++) {
        if (!this.down.has(slot)) this.corrupted[slot].delete(s);
      }
    }
  }

  async run(o: Op): Promise<void> {
    const p = this.pool;
    switch (o.t) {
      case "write": {
        const data = bytes(o.length, o.seed);
        await p.write(o.offset, data);
        this.model.set(data, o.offset);
        this.rewritten(o.offset, o.length);
        break;
      }
      case "read":
        same(
          await p.read(o.offset, o.length),
          this.model.subarray(o.offset, o.offset + o.length),
          `read ${o.offset}+${o.length}`,
        );
        break;
      case "trim":
        await p.trim(o.offset, o.length);
        this.model.fill(0, o.offset, o.offset + o.length);
        this.rewritten(o.offset, o.length);
        break;
      case "flush":
        await p.flush();
        break;
      case "scrub": {
        const r = await p.scrub();
        assert.equal(r.unrepairable, 0);
        for (let slot = 0; slot < 8; slot++) if (!this.down.has(slot)) this.corrupted[slot].clear();
        break;
      }
      case "away":
        if (this.down.has(o.slot) || !this.safeWithout(o.slot)) return;
        p.setAway(o.slot, "property test");
        this.down.set(o.slot, "away");
        break;
      case "fault":
        if (this.down.get(o.slot) === "faulted") return;
        if (!this.down.has(o.slot) && !this.safeWithout(o.slot)) return;
        p.fault(o.slot, "property test");
        this.down.set(o.slot, "faulted");
        break;
      case "back": {
        const state = this.down.get(o.slot);
        if (!state) return;
        if (state === "away") {
          p.rejoin(o.slot);
        } else {
          this.devices[o.slot] = new MemoryBlockDevice(BS, STRIPES);
          p.replace(o.slot, this.devices[o.slot]);
          this.corrupted[o.slot].clear();
        }
        const done = await p.resilverDone(o.slot);
        assert.equal(done?.finished, true);
        assert.equal(done?.doneBytes, done?.totalBytes);
        this.down.delete(o.slot);
        break;
      }
      case "corrupt": {
        if (
          this.bad(o.stripe) +
              (this.down.has(o.slot) || this.corrupted[o.slot].has(o.stripe) ? 0 : 1) > 3
        ) return;
        const dev = this.devices[o.slot];
        const r = await dev.read(o.stripe, 1);
        r.data[o.byte] ^= 0x5a;
        await dev.write(o.stripe, r.data, r.tags);
        this.corrupted[o.slot].add(o.stripe);
        break;
      }
      case "replay": {
        // The first time for a slot, keep its whole device as it is; later, give back one of those
        // old blocks in place of the current one (a provider replaying an old version, with its
        // valid tag).
        const old = this.saved.get(o.slot);
        if (!old) {
          this.saved.set(o.slot, await this.devices[o.slot].read(0, STRIPES));
          return;
        }
        if (
          this.bad(o.stripe) +
              (this.down.has(o.slot) || this.corrupted[o.slot].has(o.stripe) ? 0 : 1) > 3
        ) return;
        const data = old.data.subarray(o.stripe * BS, (o.stripe + 1) * BS);
        const tags = old.tags.subarray(o.stripe * TAG_BYTES, (o.stripe + 1) * TAG_BYTES);
        await this.devices[o.slot].write(o.stripe, data, tags);
        this.corrupted[o.slot].add(o.stripe);
        break;
      }
      case "overload": {
        const extra = o.slots.filter((s) => !this.down.has(s)).slice(0, 4 - this.down.size);
        for (const s of extra) p.setAway(s, "overload");
        assert.equal(p.status().state, "faulted");
        try {
          const got = await p.read(o.offset, o.length);
          same(got, this.model.subarray(o.offset, o.offset + o.length), "read with four down");
          assert.equal(o.length, 0, "with four members down only an empty read succeeds");
        } catch (e) {
          if (!(e instanceof PoolError) || e.code !== "data_lost") throw e;
        }
        if (o.length > 0) {
          await assert.rejects(p.write(o.offset, new Uint8Array(o.length)), {
            code: "pool_faulted",
          });
        }
        for (const s of extra) {
          p.rejoin(s);
          const done = await p.resilverDone(s);
          assert.equal(done?.totalBytes, 0, "nothing was written meanwhile");
        }
        break;
      }
    }
    const st = p.status();
    assert.equal(st.lossesTolerated, 3 - this.down.size);
    for (let s = 0; s < 8; s++) assert.equal(st.members[s].state, this.down.get(s) ?? "online");
  }
}

Deno.test("Pool behaves as a byte array through random operations and member losses", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 10, maxLength: 50, size: "max" }), async (ops) => {
      const w = new World();
      w.pool = await Pool.create({
        devices: w.devices,
        key: KEY,
        poolId: crypto.randomUUID(),
        coder,
        batchStripes: 3,
        parallelBatches: 2,
      });
      try {
        for (const o of ops) await w.run(o);
        same(await w.pool.read(0, SIZE), w.model, "whole pool at the end");
        // Bring everyone back, scrub, then any three members may go.
        for (const s of [...w.down.keys()]) await w.run({ t: "back", slot: s });
        await w.run({ t: "scrub" });
        for (const s of [1, 4, 6]) w.pool.setAway(s, "final");
        same(await w.pool.read(0, SIZE), w.model, "whole pool with 1, 4 and 6 away");
      } finally {
        await w.pool.close();
      }
    }),
    { numRuns: 60 },
  );
});
