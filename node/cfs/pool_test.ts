import assert from "node:assert/strict";
import { seededBytes } from "../../protocol/_test_tools.ts";
import { ConflictError, fromHex, toHex, ValidationError } from "../../protocol/mod.ts";
import {
  type BlockDevice,
  type BlockRead,
  DeviceError,
  type DeviceErrorCode,
  MemoryBlockDevice,
  TAG_BYTES,
} from "../drivers/mod.ts";
import { ReferenceCoder, WasmCoder } from "./erasure/mod.ts";
import { Pool, type PoolOptions } from "./pool.ts";
import { ShardTagger } from "./_tags.ts";
import type { CfsEvent } from "./status.ts";

const BS = 4096;
const SB = 5 * BS;
const KEY = Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff);
const ID = "6f0d5a52-7c3e-4b8e-9a41-2d5c7e9b3f10";
const coder = new WasmCoder({ maxShardSize: BS });
const tagger = new ShardTagger(KEY, fromHex(ID.replaceAll("-", "")));

/** A memory device that counts calls, can fail, delay, or tamper with what it returns. */
class TestDevice implements BlockDevice {
  readonly inner: MemoryBlockDevice;
  readonly blockSize: number;
  readonly blockCount: number;
  /** Blocks written through `write`. */
  written: number[] = [];
  fail?: { code: DeviceErrorCode; on: "read" | "write" | "all" };
  tamper?: (first: number, r: BlockRead) => void;
  delayMs = 0;
  /** Calls never answer (a dead tunnel); reads give up only when their signal is aborted. */
  hang = false;
  signals: AbortSignal[] = [];
  onWrite?: (first: number) => void;

  constructor(blockSize = BS, blockCount = 8) {
    this.inner = new MemoryBlockDevice(blockSize, blockCount);
    this.blockSize = blockSize;
    this.blockCount = blockCount;
  }

  /** Waits up to `delayMs`, a random time for each call, so calls overtake one another. */
  async #delay(): Promise<void> {
    if (!this.delayMs) return;
    const ms = Math.floor(Math.random() * (this.delayMs + 1));
    await new Promise((resolve) => setTimeout(resolve, ms));
  }

  #check(op: "read" | "write"): void {
    if (this.fail && (this.fail.on === op || this.fail.on === "all")) {
      throw new DeviceError(`Injected ${this.fail.code}`, this.fail.code);
    }
  }

  async read(first: number, count: number, signal?: AbortSignal): Promise<BlockRead> {
    if (signal) this.signals.push(signal);
    if (this.hang) {
      await new Promise((_, reject) =>
        signal?.addEventListener("abort", () => reject(signal.reason))
      );
    }
    await this.#delay();
    this.#check("read");
    const r = await this.inner.read(first, count);
    this.tamper?.(first, r);
    return r;
  }

  async write(first: number, data: Uint8Array, tags: Uint8Array): Promise<void> {
    if (this.hang) await new Promise(() => {});
    await this.#delay();
    this.#check("write");
    this.onWrite?.(first);
    for (let i = 0; i < data.length / this.blockSize; i++) this.written.push(first + i);
    await this.inner.write(first, data, tags);
  }

  flush(): Promise<void> {
    this.#check("write");
    return this.inner.flush();
  }

  trim(first: number, count: number): Promise<void> {
    this.#check("write");
    return this.inner.trim(first, count);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function makeDevices(stripes = 8): TestDevice[] {
  return Array.from({ length: 8 }, () => new TestDevice(BS, stripes));
}

function options(devices: (BlockDevice | undefined)[], extra: Partial<PoolOptions> = {}) {
  return { devices, key: KEY, poolId: ID, coder, ...extra };
}

/** Opens the pool again over the same devices, with the slots in `lost` given as missing. */
function openWithout(devices: BlockDevice[], lost: number[], extra: Partial<PoolOptions> = {}) {
  return Pool.open(options(devices.map((d, i) => lost.includes(i) ? undefined : d), extra));
}

const bytes = seededBytes;

function combinations(from: number[], k: number): number[][] {
  if (k === 0) return [[]];
  const out: number[][] = [];
  from.forEach((x, i) => {
    for (const rest of combinations(from.slice(i + 1), k - 1)) out.push([x, ...rest]);
  });
  return out;
}

function assertSame(actual: Uint8Array, expected: Uint8Array, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i]) assert.fail(`${what}: first difference at byte ${i}`);
  }
}

/** The shard a slot should hold for a stripe of `model`. */
function expectedShard(model: Uint8Array, slot: number, stripe: number): Uint8Array {
  const shards = Array.from({ length: 8 }, () => new Uint8Array(BS));
  for (let j = 0; j < 5; j++) {
    shards[j].set(model.subarray(stripe * SB + j * BS, stripe * SB + (j + 1) * BS));
  }
  new ReferenceCoder({ maxShardSize: BS }).encode(shards);
  return shards[slot];
}

/** Checks that a device holds the right shard, with a tag that verifies. */
async function assertHolds(dev: TestDevice, model: Uint8Array, slot: number, stripe: number) {
  const r = await dev.inner.read(stripe, 1);
  assertSame(r.data, expectedShard(model, slot, stripe), `slot ${slot} stripe ${stripe}`);
  assert.ok(tagger.verify(slot, stripe, r.data, r.tags, 0) > 0, "the tag verifies");
}

async function filled(stripes = 8, extra: Partial<PoolOptions> = {}) {
  const devices = makeDevices(stripes);
  const pool = await Pool.create(options(devices, extra));
  const model = bytes(pool.size, stripes);
  await pool.write(0, model);
  return { devices, pool, model };
}

Deno.test("pool.md: the tag test vector matches the implementation", async () => {
  const md = await Deno.readTextFile(new URL("../../docs/protocol/pool.md", import.meta.url));
  const hex = md.match(/```\n([0-9a-f]{64})\n```/)![1];
  const key = Uint8Array.from({ length: 32 }, (_, i) => i);
  const t = new ShardTagger(key, fromHex("6f0d5a527c3e4b8e9a412d5c7e9b3f10"));
  const shard = Uint8Array.from({ length: 4096 }, (_, i) => i % 251);
  const tags = new Uint8Array(TAG_BYTES);
  t.sign(2, 7, 1_700_000_000_000_000, shard, tags, 0);
  assert.equal(toHex(tags), hex);
  assert.equal(t.verify(2, 7, shard, tags, 0), 1_700_000_000_000_000);
  assert.equal(t.verify(3, 7, shard, tags, 0), -1, "another slot");
  assert.equal(t.verify(2, 8, shard, tags, 0), -1, "another stripe");
  shard[100] ^= 1;
  assert.equal(t.verify(2, 7, shard, tags, 0), -1, "altered bytes");
  assert.equal(t.verify(2, 7, new Uint8Array(4096), new Uint8Array(32), 0), 0, "never written");
  assert.equal(t.verify(2, 7, shard, new Uint8Array(32), 0), -1, "zero tag over data");
});

Deno.test("Pool.create() has size, alignment and reads never-written space as zeros", async () => {
  const devices = makeDevices(10);
  devices[3] = new TestDevice(BS, 12); // a larger member: the smallest decides
  const pool = await Pool.create(options(devices));
  assert.equal(pool.stripes, 10);
  assert.equal(pool.size, 10 * SB);
  assert.equal(pool.alignment, SB);
  assert.equal(pool.blockSize, BS);
  assertSame(await pool.read(0, pool.size), new Uint8Array(pool.size), "whole pool");
  assertSame(await pool.read(12345, 7), new Uint8Array(7), "a few bytes");
  assert.equal((await pool.read(pool.size, 0)).length, 0);
  const s = pool.status();
  assert.equal(s.state, "online");
  assert.equal(s.lossesTolerated, 3);
  assert.deepEqual(
    s.members.map((m) => m.role),
    [..."ddddd"].map(() => "data").concat(
      ["parity", "parity", "parity"],
    ),
  );
  assert.equal(s.members[3].sizeBytes, 12 * BS);
  await pool.close();
});

Deno.test("Pool.write() and Pool.read() round-trip at odd offsets and lengths", async () => {
  const devices = makeDevices(12);
  const pool = await Pool.create(options(devices, { batchStripes: 3 }));
  const model = new Uint8Array(pool.size);
  const writes: [number, number][] = [
    [0, 1],
    [1, SB - 2],
    [SB - 3, 7],
    [BS - 1, BS + 2],
    [7 * SB + 13, 4 * SB + 100],
    [3 * SB, 3 * SB],
    [2 * SB + 1, SB - 1],
    [pool.size - 1, 1],
    [5, pool.size - 10],
  ];
  let seed = 1;
  for (const [offset, length] of writes) {
    const data = bytes(length, seed++);
    await pool.write(offset, data);
    model.set(data, offset);
    assertSame(await pool.read(offset, length), data, `write at ${offset}+${length}`);
    for (const [o, l] of [[0, pool.size], [offset - 1, length + 2], [SB - 1, 2 * SB + 3]]) {
      const from = Math.max(0, o), to = Math.min(pool.size, o + l);
      assertSame(await pool.read(from, to - from), model.subarray(from, to), `read ${from}..${to}`);
    }
  }
  // Shards are where pool.md puts them: data shard j of stripe s is block s of slot j.
  for (let s = 0; s < pool.stripes; s++) {
    for (const slot of [0, 4, 5, 7]) await assertHolds(devices[slot], model, slot, s);
  }
  // Whole aligned stripes are written without reading first.
  const before = devices.map((d) => d.written.length);
  await pool.write(SB, bytes(2 * SB, 99));
  assert.deepEqual(devices.map((d, i) => d.written.length - before[i]), Array(8).fill(2));
  await pool.close();
});

Deno.test("Pool.read() returns every byte with any three members lost, and data_lost with four", async () => {
  const { devices, pool, model } = await filled(6);
  await pool.close();
  const slots = [0, 1, 2, 3, 4, 5, 6, 7];
  const threes = combinations(slots, 3);
  assert.equal(threes.length, 56);
  for (const lost of threes) {
    const p = await openWithout(devices, lost);
    assert.equal(p.status().state, "degraded");
    assert.equal(p.status().lossesTolerated, 0);
    assertSame(await p.read(0, p.size), model, `lost ${lost}`);
    assertSame(await p.read(SB + 3, 2 * BS), model.subarray(SB + 3, SB + 3 + 2 * BS), `${lost}`);
    await p.close();
  }
  const fours = combinations(slots, 4);
  assert.equal(fours.length, 70);
  for (const lost of fours) {
    const events: CfsEvent[] = [];
    const p = await openWithout(devices, lost.slice(0, 3), { onEvent: (e) => events.push(e) });
    p.setAway(lost[3], "test");
    assert.equal(p.status().state, "faulted");
    await assert.rejects(p.read(100, 10), { code: "data_lost" }, `lost ${lost}`);
    await assert.rejects(p.write(100, new Uint8Array(10)), { code: "pool_faulted" });
    assert.ok(events.some((e) => e.level === "error" && /Data lost in stripe 0/.test(e.message)));
    await p.close();
  }
  // Nothing was changed by the failed writes: the full pool reads the same.
  const p = await openWithout(devices, []);
  assertSame(await p.read(0, p.size), model, "after");
  await p.close();
});

Deno.test("Pool.read() detects a corrupted block, returns the right data and repairs the device", async () => {
  const events: CfsEvent[] = [];
  const { devices, pool, model } = await filled(6, { onEvent: (e) => events.push(e) });
  // Corrupt the stored data of slot 2, stripe 1, keeping its tag.
  const stored = await devices[2].inner.read(1, 1);
  const bad = stored.data.slice();
  bad[77] ^= 0x10;
  await devices[2].inner.write(1, bad, stored.tags);
  devices[2].written = [];
  assertSame(await pool.read(SB, SB), model.subarray(SB, 2 * SB), "stripe 1");
  assert.equal(pool.status().members[2].errors.checksum, 1);
  assert.deepEqual(devices[2].written, [1], "one repair write");
  await assertHolds(devices[2], model, 2, 1);
  assert.ok(
    events.some((e) => e.slot === 2 && e.level === "warn" && /repaired 1 shard/.test(e.message)),
  );

  // A device that flips bits on every read: detected each time, data still right, and the
  // rewrite reaches the device.
  devices[0].tamper = (first, r) => {
    if (first <= 3 && first + r.data.length / BS > 3) r.data[(3 - first) * BS + 5] ^= 0xff;
  };
  devices[0].written = [];
  assertSame(await pool.read(3 * SB, 2 * SB), model.subarray(3 * SB, 5 * SB), "stripes 3, 4");
  assert.equal(pool.status().members[0].errors.checksum, 1);
  assert.deepEqual(devices[0].written, [3]);
  await assertHolds(devices[0], model, 0, 3);
  await pool.close();
});

Deno.test("Pool.read() detects replayed, swapped and foreign blocks", async () => {
  const { devices, pool, model } = await filled(6);
  // Replay: slot 1 gives back its old version of stripe 2 after it was rewritten.
  const old = await devices[1].inner.read(2, 1);
  const update = bytes(SB, 1234);
  await pool.write(2 * SB, update);
  model.set(update, 2 * SB);
  await devices[1].inner.write(2, old.data, old.tags);
  assertSame(await pool.read(2 * SB, SB), update, "the new version");
  assert.equal(pool.status().members[1].errors.checksum, 1);
  await assertHolds(devices[1], model, 1, 2);

  // Swap: slot 0 returns its block 4 (with its valid tag) for block 3.
  const other = await devices[0].inner.read(4, 1);
  await devices[0].inner.write(3, other.data, other.tags);
  // Another member's block: slot 4 holds slot 3's block 3.
  const neighbour = await devices[3].inner.read(3, 1);
  await devices[4].inner.write(3, neighbour.data, neighbour.tags);
  // Another pool's block with a tag valid under the same key.
  const foreign = new ShardTagger(KEY, new Uint8Array(16).fill(9));
  const junk = bytes(BS, 5);
  const junkTag = new Uint8Array(TAG_BYTES);
  foreign.sign(6, 3, pool.generation, junk, junkTag, 0);
  await devices[6].inner.write(3, junk, junkTag);
  assertSame(await pool.read(3 * SB, SB), model.subarray(3 * SB, 4 * SB), "stripe 3");
  const s = pool.status();
  assert.deepEqual([0, 4, 6].map((i) => s.members[i].errors.checksum), [1, 1, 1]);
  for (const slot of [0, 4, 6]) await assertHolds(devices[slot], model, slot, 3);
  await pool.close();

  // With three members gone, one replayed block leaves four agreeing shards: data_lost, never
  // the old data.
  const old5 = await devices[0].inner.read(5, 1);
  const p = await Pool.open(options([...devices.slice(0, 5), undefined, undefined, undefined]));
  await p.write(5 * SB, bytes(SB, 77));
  await devices[0].inner.write(5, old5.data, old5.tags);
  await assert.rejects(p.read(5 * SB, 10), (e: Error & { code?: string }) => {
    assert.equal(e.code, "data_lost");
    assert.match(e.message, /stripe 5, bytes 102400 to 122879/);
    return true;
  });
  await p.close();
});

Deno.test("Pool.rejoin() rewrites only the stripes written while the member was away", async () => {
  const events: CfsEvent[] = [];
  const { devices, pool, model } = await filled(10, { onEvent: (e) => events.push(e) });
  pool.setAway(3, "no heartbeat");
  assert.equal(pool.status().state, "degraded");
  assert.equal(pool.status().members[3].reason, "no heartbeat");
  const a = bytes(SB, 1), b = bytes(2 * SB - 100, 2);
  await pool.write(SB, a); // stripe 1
  await pool.write(6 * SB + 50, b); // stripes 6, 7 (read-modify-write)
  model.set(a, SB);
  model.set(b, 6 * SB + 50);
  await pool.trim(9 * SB, SB); // stripe 9, trimmed
  model.fill(0, 9 * SB);
  assert.equal(pool.status().members[3].behindStripes, 4);
  assert.deepEqual(
    devices[3].written,
    Array.from({ length: 10 }, (_, i) => i),
    "no writes meanwhile",
  );
  devices[3].written = [];
  pool.rejoin(3);
  assert.equal(pool.status().members[3].state, "resilvering");
  const done = await pool.resilverDone();
  assert.equal(done?.kind, "catch-up");
  assert.equal(done?.finished, true);
  assert.equal(done?.totalBytes, 4 * SB);
  assert.equal(done?.doneBytes, 4 * SB);
  assert.deepEqual(devices[3].written, [1, 6, 7], "only the stripes behind");
  assert.equal((await devices[3].inner.read(9, 1)).tags.every((x) => x === 0), true, "trimmed");
  const s = pool.status();
  assert.equal(s.state, "online");
  assert.equal(s.members[3].behindStripes, 0);
  assert.ok(events.some((e) => /away → resilvering/.test(e.message)));
  assert.ok(events.some((e) => /catch-up resilver finished/.test(e.message)));
  // The caught-up member carries the data: lose three others.
  pool.setAway(0, "test");
  pool.setAway(5, "test");
  pool.setAway(7, "test");
  assertSame(await pool.read(0, pool.size), model, "with 0, 5, 7 away");
  await pool.close();
  for (let s = 0; s < 9; s++) await assertHolds(devices[3], model, 3, s);
});

Deno.test("Pool.replace() resilvers under concurrent writes; then any other three may be lost", async () => {
  const stripes = 24;
  const devices = makeDevices(stripes);
  const pool = await Pool.create(options(devices, { batchStripes: 1, parallelBatches: 2 }));
  const model = bytes(pool.size, 3);
  model.fill(0, 20 * SB); // stripes 20..23 never written: skipped by the resilver
  await pool.write(0, model.subarray(0, 20 * SB));
  pool.fault(5, "provider left");
  assert.equal(pool.status().members[5].state, "faulted");
  assert.equal(pool.status().members[5].sizeBytes, 0);
  assert.throws(() => pool.rejoin(5), ConflictError);

  const fresh = new TestDevice(BS, stripes);
  fresh.delayMs = 2;
  const progress: number[] = [];
  fresh.onWrite = () => {
    const r = pool.resilverStatus(5)!;
    if (!r.finished) progress.push(r.doneBytes);
  };
  pool.replace(5, fresh);
  devices[5] = fresh;
  assert.equal(pool.status().members[5].state, "resilvering");
  let concurrent = 0;
  for (let i = 0; i < 12; i++) {
    const offset = ((i * 7919) % (20 * SB - 3000)) + i;
    const data = bytes(2500 + i * 300, 100 + i);
    await pool.write(offset, data);
    model.set(data, offset);
    if (!pool.resilverStatus(5)!.finished) concurrent++;
  }
  const done = await pool.resilverDone(5);
  assert.ok(concurrent >= 2, `writes during the resilver: ${concurrent}`);
  assert.equal(done?.finished, true);
  assert.equal(done?.kind, "replace");
  assert.equal(done?.totalBytes, stripes * SB);
  assert.equal(done?.doneBytes, done?.totalBytes);
  assert.ok(progress.length > 3);
  for (let i = 1; i < progress.length; i++) assert.ok(progress[i] >= progress[i - 1]);
  assert.ok(progress.at(-1)! < done!.totalBytes && progress[0] < progress.at(-1)!);
  assert.equal(pool.status().members[5].state, "online");
  assert.equal(fresh.inner.used, 20, "the never-written stripes were not copied");
  assertSame(await pool.read(0, pool.size), model, "after the resilver");
  await pool.close();

  const others = [0, 1, 2, 3, 4, 6, 7];
  for (const lost of combinations(others, 3)) {
    const p = await openWithout(devices, lost);
    assertSame(await p.read(0, p.size), model, `lost ${lost}`);
    await p.close();
  }
});

Deno.test("Pool keeps every byte right under concurrent writes, reads, a scrub, a resilver and a catch-up", async () => {
  const stripes = 32;
  const devices = makeDevices(stripes);
  for (const d of devices) d.delayMs = 2;
  const pool = await Pool.create(options(devices, { batchStripes: 2, parallelBatches: 3 }));
  const model = new Uint8Array(pool.size);
  const quarter = pool.size / 4;
  let writing = 4;
  const writer = async (w: number) => {
    for (let i = 0; i < 8; i++) {
      const offset = w * quarter + ((i * 4099 + w * 977) % (quarter - 9000));
      const data = bytes(3000 + i * 700, w * 100 + i);
      await pool.write(offset, data);
      model.set(data, offset);
      assertSame(await pool.read(offset, data.length), data, `writer ${w} write ${i}`);
    }
    writing--;
  };
  // Readers over the stripes being written: they may see either version, but always one.
  const reader = async (r: number) => {
    for (let i = 0; writing > 0; i++) {
      const offset = (i * 7001 + r * 31337) % (pool.size - 2 * SB);
      await pool.read(offset, 2 * SB);
    }
  };
  const churn = async () => {
    pool.fault(2, "test");
    devices[2] = new TestDevice(BS, stripes);
    pool.replace(2, devices[2]);
    pool.setAway(6, "test");
    await new Promise((resolve) => setTimeout(resolve, 5));
    pool.rejoin(6);
  };
  const [scrub] = await Promise.all([
    pool.scrub(),
    churn(),
    ...[0, 1, 2, 3].map(writer),
    ...[0, 1].map(reader),
  ]);
  assert.equal(scrub.unrepairable, 0);
  await pool.resilverDone();
  const s = pool.status();
  assert.equal(s.state, "online");
  assert.deepEqual(
    s.members.map((m) => m.errors),
    Array(8).fill({ read: 0, write: 0, checksum: 0 }),
  );
  await pool.close();
  for (const lost of [[0, 1, 3], [4, 5, 7], [2, 6, 0], [6, 7, 2], [1, 3, 4]]) {
    const p = await openWithout(devices, lost);
    assertSame(await p.read(0, p.size), model, `lost ${lost}`);
    await p.close();
  }
  const p = await openWithout(devices, []);
  assert.deepEqual(await p.scrub(), {
    stripes: await countWritten(devices[0], stripes),
    checksumErrors: 0,
    repaired: 0,
    unrepairable: 0,
  });
  await p.close();
});

async function countWritten(device: TestDevice, stripes: number): Promise<number> {
  const r = await device.inner.read(0, stripes);
  let n = 0;
  for (let s = 0; s < stripes; s++) {
    if (r.tags.subarray(s * TAG_BYTES, (s + 1) * TAG_BYTES).some((x) => x !== 0)) n++;
  }
  return n;
}

Deno.test("Pool.scrub() finds and repairs corrupted data and parity shards", async () => {
  const { devices, pool, model } = await filled(8);
  await pool.trim(7 * SB, SB); // one stripe not written
  model.fill(0, 7 * SB);
  const corrupt = async (slot: number, stripe: number) => {
    const r = await devices[slot].inner.read(stripe, 1);
    r.data[BS - 1] ^= 0x01;
    await devices[slot].inner.write(stripe, r.data, r.tags);
  };
  await corrupt(1, 0); // data
  await corrupt(6, 2); // parity
  // Parity with a valid tag that does not match the data (a writer's bug): found by re-encoding.
  const r7 = await devices[7].inner.read(4, 1);
  const wrong = r7.data.slice();
  wrong[9] ^= 0x80;
  const tag = new Uint8Array(TAG_BYTES);
  tagger.sign(7, 4, Number(new DataView(r7.tags.buffer).getBigUint64(0)), wrong, tag, 0);
  await devices[7].inner.write(4, wrong, tag);
  // A stray block with a zero tag on the trimmed stripe.
  await devices[2].inner.write(7, bytes(BS, 8), new Uint8Array(TAG_BYTES));

  const result = await pool.scrub();
  assert.deepEqual(result, { stripes: 7, checksumErrors: 4, repaired: 4, unrepairable: 0 });
  const s = pool.scrubStatus()!;
  assert.equal(s.finished, true);
  assert.equal(s.doneBytes, s.totalBytes);
  assert.equal(s.repaired, 4);
  await assertHolds(devices[1], model, 1, 0);
  await assertHolds(devices[6], model, 6, 2);
  await assertHolds(devices[7], model, 7, 4);
  assert.equal(devices[2].inner.used, 7, "the stray block on the trimmed stripe is trimmed");
  assert.deepEqual(await pool.scrub(), {
    stripes: 7,
    checksumErrors: 0,
    repaired: 0,
    unrepairable: 0,
  });
  assert.deepEqual(pool.status().members.map((m) => m.errors.checksum), [0, 1, 1, 0, 0, 0, 1, 1]);
  await pool.close();
});

Deno.test("A device that times out makes its member away; the pool serves degraded and catches up", async () => {
  const events: CfsEvent[] = [];
  const { devices, pool, model } = await filled(6, { onEvent: (e) => events.push(e) });
  devices[4].fail = { code: "device_timeout", on: "all" };
  assertSame(await pool.read(0, pool.size), model, "degraded read");
  let s = pool.status();
  assert.equal(s.members[4].state, "away");
  assert.equal(s.members[4].errors.read, 1);
  assert.match(s.members[4].reason!, /Read failed: Injected device_timeout/);
  assert.ok(events.some((e) => e.slot === 4 && /online → away/.test(e.message)));
  const data = bytes(SB, 9);
  await pool.write(2 * SB, data);
  model.set(data, 2 * SB);
  assert.equal(pool.status().members[4].behindStripes, 1);
  devices[4].fail = undefined;
  pool.rejoin(4);
  await pool.resilverDone();
  s = pool.status();
  assert.equal(s.members[4].state, "online");
  pool.setAway(0, "t");
  pool.setAway(1, "t");
  pool.setAway(2, "t");
  assertSame(await pool.read(0, pool.size), model, "after the catch-up");
  await pool.close();
});

Deno.test("A device that never answers holds nothing up once its member is set away", async () => {
  const { devices, pool, model } = await filled(4);
  devices[1].hang = true;
  const data = bytes(SB, 3);
  let settled = 0;
  const writing = pool.write(2 * SB, data).finally(() => settled++); // slot 1 never answers
  const reading = pool.read(0, SB).finally(() => settled++); // nor does its read
  await new Promise((resolve) => setTimeout(resolve, 5));
  assert.equal(settled, 0, "both wait for slot 1");
  pool.setAway(1, "no heartbeat");
  assert.equal(devices[1].signals.at(-1)?.aborted, true, "the read was aborted");
  assertSame(await reading, model.subarray(0, SB), "the read completes without slot 1");
  await writing;
  model.set(data, 2 * SB);
  await pool.write(3 * SB, data); // planned with slot 1 away: not sent to it
  model.set(data, 3 * SB);
  assert.equal(pool.status().members[1].behindStripes, 2, "both writes are behind for slot 1");
  devices[1].hang = false;
  pool.rejoin(1);
  await pool.resilverDone();
  for (const slot of [0, 2, 3]) pool.setAway(slot, "test");
  assertSame(await pool.read(0, pool.size), model, "slot 1 caught up");
  await pool.close();
});

Deno.test("A write refused by a device faults its member; a write failing mid-way is recorded as behind", async () => {
  const { devices, pool, model } = await filled(6);
  devices[6].fail = { code: "device_failed", on: "write" };
  const data = bytes(SB, 10);
  await pool.write(0, data);
  model.set(data, 0);
  let s = pool.status();
  assert.equal(s.members[6].state, "faulted");
  assert.equal(s.members[6].errors.write, 1);
  assert.equal(s.state, "degraded");
  devices[2].fail = { code: "device_unavailable", on: "write" };
  await pool.write(SB, data);
  model.set(data, SB);
  s = pool.status();
  assert.equal(s.members[2].state, "away");
  assert.equal(s.members[2].behindStripes, 1);
  assert.equal(s.lossesTolerated, 1);
  devices[2].fail = undefined;
  pool.rejoin(2);
  await pool.resilverDone();
  assert.deepEqual(devices[2].written.slice(-1), [1]);
  assertSame(await pool.read(0, pool.size), model, "after");
  await pool.close();
});

Deno.test("A device that throws before returning a promise (closed) makes its member away", async () => {
  const devices = Array.from({ length: 8 }, () => new MemoryBlockDevice(BS, 4));
  const pool = await Pool.create(options(devices));
  const model = bytes(pool.size, 4);
  await pool.write(0, model);
  await devices[6].close();
  await pool.write(SB, model.subarray(SB, 2 * SB));
  assert.equal(pool.status().members[6].state, "away");
  assert.match(pool.status().members[6].reason!, /Write failed: The device is closed/);
  await devices[2].close();
  await pool.trim(3 * SB, SB);
  model.fill(0, 3 * SB);
  assert.equal(pool.status().members[2].state, "away");
  await devices[0].close();
  await pool.flush();
  assert.equal(pool.status().members[0].state, "away");
  assert.deepEqual(pool.status().members.map((m) => m.behindStripes), [0, 0, 1, 0, 0, 0, 2, 0]);
  assertSame(await pool.read(0, pool.size), model, "degraded");
  await pool.close();
});

Deno.test("Pool.write() needs five online members and changes nothing without them", async () => {
  const { devices, pool, model } = await filled(4);
  for (const slot of [0, 2, 5, 7]) pool.setAway(slot, "t");
  const s = pool.status();
  assert.equal(s.state, "faulted");
  assert.equal(s.lossesTolerated, 0);
  const counts = devices.map((d) => d.written.length);
  await assert.rejects(pool.write(10, bytes(100, 1)), { code: "pool_faulted" });
  await assert.rejects(pool.trim(0, SB), { code: "pool_faulted" });
  await assert.rejects(pool.flush(), { code: "pool_faulted" });
  await assert.rejects(pool.read(0, 1), { code: "data_lost" });
  assert.deepEqual(devices.map((d) => d.written.length), counts);
  assert.deepEqual(pool.status().members.map((m) => m.behindStripes), Array(8).fill(0));
  pool.rejoin(7);
  await pool.resilverDone();
  assertSame(await pool.read(0, pool.size), model, "back to four lost: readable again");
  await pool.flush();
  // Five online, and one of them refuses the write: it reached four, so it fails.
  devices[3].fail = { code: "device_failed", on: "write" };
  await assert.rejects(pool.write(2 * SB, bytes(SB, 5)), (e: Error & { code?: string }) => {
    assert.equal(e.code, "pool_faulted");
    assert.match(
      e.message,
      /Stripes 2 to 2 reached only 4 members \(5 needed\): bytes 40960 to 61439/,
    );
    return true;
  });
  assert.equal(pool.status().members[3].state, "faulted");
  await pool.close();
});

Deno.test("Pool.trim() reads as zeros; whole stripes are trimmed on the devices", async () => {
  const { devices, pool, model } = await filled(8);
  await pool.trim(SB + 100, 3 * SB); // partial 1, whole 2 and 3, partial 4
  model.fill(0, SB + 100, 4 * SB + 100);
  await pool.trim(6 * SB + 10, 20); // inside one stripe
  model.fill(0, 6 * SB + 10, 6 * SB + 30);
  assertSame(await pool.read(0, pool.size), model, "after trims");
  for (const d of devices) assert.equal(d.inner.used, 6);
  await pool.trim(0, pool.size);
  assertSame(await pool.read(0, pool.size), new Uint8Array(pool.size), "all trimmed");
  for (const d of devices) assert.equal(d.inner.used, 0);
  await pool.close();
});

Deno.test("Pool generations continue above the hint and above any generation read", async () => {
  const clock = { now: () => 1_000_000 };
  const devices = makeDevices(4);
  const pool = await Pool.create(options(devices, { clock, generationHint: 5_000_000_000 }));
  assert.equal(pool.generation, 5_000_000_000);
  await pool.write(0, bytes(SB, 1));
  assert.equal(pool.generation, 5_000_000_001);
  const tags = (await devices[0].inner.read(0, 1)).tags;
  assert.equal(new DataView(tags.buffer).getBigUint64(0), 5_000_000_001n);
  await pool.close();
  // Reopened with no hint and a clock far behind: reading raises the counter, so new writes win.
  const again = await Pool.open(options(devices, { clock }));
  assert.equal(again.generation, 1_000_000_000);
  await again.read(0, SB);
  assert.equal(again.generation, 5_000_000_001);
  again.setAway(1, "t");
  const data = bytes(SB, 2);
  await again.write(0, data);
  await again.close();
  const third = await Pool.open(options(devices, { clock }));
  assertSame(await third.read(0, SB), data, "the newest write wins");
  assert.equal(third.status().members[1].errors.checksum, 1, "the stale member is repaired");
  await third.close();
});

Deno.test("Pool.close() waits for operations in flight and refuses new ones", async () => {
  const devices = makeDevices(4);
  for (const d of devices) d.delayMs = 5;
  const pool = await Pool.create(options(devices));
  const write = pool.write(0, bytes(SB, 1));
  await pool.close();
  await write;
  assert.equal(devices[0].written.length, 1);
  await assert.rejects(pool.read(0, 1), { code: "pool_closed" });
  await assert.rejects(pool.write(0, new Uint8Array(1)), { code: "pool_closed" });
  await assert.rejects(pool.scrub(), { code: "pool_closed" });
  assert.throws(() => pool.setAway(0, "x"), { code: "pool_closed" });
  assert.equal((await devices[0].read(0, 1)).data.length, BS, "the devices stay open");
});

Deno.test("Pool rejects bad inputs with clear errors and changes nothing", async () => {
  const devices = makeDevices(4);
  const bad: [Partial<PoolOptions>, RegExp][] = [
    [{ devices: devices.slice(0, 7) }, /give 8 devices/],
    [{ key: new Uint8Array(31) }, /key must be 32 bytes, got 31/],
    [{ poolId: new Uint8Array(15) }, /pool id must be 16 bytes/],
    [{ poolId: "not-a-uuid" }, /pool id must be 16 bytes or a lowercase UUID/],
    [{ devices: [...devices.slice(0, 7), new TestDevice(2 * BS, 4)] }, /Slot 7 has blocks of 8192/],
    [{ devices: [...devices.slice(0, 4), undefined, undefined, undefined, undefined] }, /Only 4/],
    [{ devices: [...devices.slice(0, 7), devices[0]] }, /same device/],
    [{ generationHint: -1 }, /Generation hint/],
    [{ batchStripes: 0 }, /batchStripes must be a whole number from 1 to 256/],
    [{ coder: new WasmCoder({ maxShardSize: 1024 }) }, /at most 1024 bytes/],
    [{ coder: new WasmCoder({ dataShards: 4, maxShardSize: BS }) }, /must be 5\+3/],
  ];
  for (const [extra, message] of bad) {
    await assert.rejects(Pool.create(options(devices, extra)), (e: Error) => {
      assert.ok(e instanceof ValidationError, String(e));
      assert.match(e.message, message);
      return true;
    });
  }
  assert.deepEqual(devices.map((d) => d.written.length), Array(8).fill(0));

  const { devices: own, pool, model } = await filled(4);
  const before = JSON.stringify(pool.status());
  for (const [o, l] of [[-1, 1], [0, pool.size + 1], [pool.size, 1], [1.5, 1], [0, -1]]) {
    await assert.rejects(pool.read(o, l), { code: "out_of_range" });
    await assert.rejects(pool.trim(o, l), { code: "out_of_range" });
  }
  await assert.rejects(pool.write(pool.size - 1, new Uint8Array(2)), { code: "out_of_range" });
  await assert.rejects(pool.write(0, "text" as unknown as Uint8Array), ValidationError);
  assert.throws(() => pool.setAway(8, "x"), /Slot must be a whole number from 0 to 7, got 8/);
  assert.throws(() => pool.rejoin(2), ConflictError);
  assert.throws(() => pool.replace(2, new TestDevice(2 * BS, 4)), /block size 8192 differs/);
  assert.throws(() => pool.replace(2, new TestDevice(BS, 3)), /3 blocks, the pool needs 4/);
  assert.throws(() => pool.replace(2, own[3]), /the device is slot 3's/);
  assert.equal(JSON.stringify(pool.status()), before);
  assertSame(await pool.read(0, pool.size), model, "unchanged");
  await pool.close();
});

Deno.test("Pool.read() reads block by block around a block the provider reports rotten, and rewrites it", async () => {
  const devices = makeDevices(8);
  const pool = await Pool.create(options(devices));
  const model = bytes(pool.size, 41);
  await pool.write(0, model);
  // Slot 2's provider finds block 3 rotten: any read covering it fails, until it is rewritten.
  const sick = devices[2];
  let rotten = true;
  const read = sick.read.bind(sick);
  sick.read = (first, count, signal) =>
    rotten && first <= 3 && 3 < first + count
      ? Promise.reject(new DeviceError("Checksum mismatch in block 3", "device_failed"))
      : read(first, count, signal);
  sick.onWrite = (first) => {
    if (first === 3) rotten = false;
  };
  assertSame(await pool.read(0, pool.size), model, "every byte");
  assert.equal(rotten, false, "block 3 was rewritten");
  const m = pool.status().members[2];
  assert.equal(m.state, "online");
  assert.ok(m.errors.checksum >= 1 && m.errors.read >= 1);
  assertSame((await sick.inner.read(3, 1)).data, expectedShard(model, 2, 3), "its true content");
  await pool.close();
});

Deno.test("Pool.replace() with a use map rebuilds only the stripes in use", async () => {
  const devices = makeDevices(16);
  const pool = await Pool.create(options(devices));
  const used: [number, number][] = [[0, SB], [5 * SB + 100, 2 * SB]]; // stripes 0, 5–7
  const model = new Uint8Array(pool.size);
  for (const [offset, length] of used) {
    const b = bytes(length, offset);
    model.set(b, offset);
    await pool.write(offset, b);
  }
  pool.useMap(() => used);
  pool.fault(4, "gone");
  const fresh = new TestDevice(BS, 16);
  pool.replace(4, fresh);
  const done = await pool.resilverDone(4);
  assert.ok(done?.finished);
  assert.equal(done.totalBytes, 4 * SB, "stripes 0 and 5 to 7 only");
  assert.deepEqual([...new Set(fresh.written)].sort((a, b) => a - b), [0, 5, 6, 7]);
  // The new member holds its part: any three others may go.
  const reopened = await openWithout(devices.map((d, i) => i === 4 ? fresh : d), [0, 1, 2]);
  for (const [offset, length] of used) {
    assertSame(
      await reopened.read(offset, length),
      model.subarray(offset, offset + length),
      "used",
    );
  }
  await reopened.close();
  await pool.close();
});

Deno.test("Pool.audit() spot-checks stripes in use on every member, names the wrong ones and repairs them", async () => {
  const devices = makeDevices(16);
  const pool = await Pool.create(options(devices));
  const model = bytes(2 * SB, 9);
  await pool.write(3 * SB, model); // stripes 3 and 4
  pool.useMap(() => [[3 * SB, 2 * SB]]);
  // A provider that lost a shard (rot), and one that returns an old shard under its old tag.
  const rotten = await devices[2].inner.read(3, 1);
  rotten.data[17] ^= 0x40;
  await devices[2].inner.write(3, rotten.data, rotten.tags);
  const before = await devices[6].inner.read(4, 1);
  await pool.write(4 * SB, model.subarray(SB)); // stripe 4 again: a newer generation
  await devices[6].inner.write(4, before.data, before.tags);

  // Enough samples to draw both stripes (each is missed by 20 draws with odds of 2^-20).
  const found = await pool.audit(20);
  assert.equal(found.length, 8);
  const by = new Map(found.map((f) => [f.slot, f]));
  assert.ok(found.every((f) => f.checked === 20), JSON.stringify(found));
  assert.ok(by.get(2)!.wrong >= 1 && by.get(6)!.wrong >= 1, JSON.stringify(found));
  assert.ok(found.every((f) => f.slot === 2 || f.slot === 6 || f.wrong === 0));
  await assertHolds(devices[2], new Uint8Array([...new Uint8Array(3 * SB), ...model]), 2, 3);
  await assertHolds(devices[6], new Uint8Array([...new Uint8Array(3 * SB), ...model]), 6, 4);
  // Repaired: the next spot check finds nothing, and it never looks outside the stripes in use.
  const reads = devices.map((d) => d.written.length);
  assert.ok((await pool.audit(10)).every((f) => f.checked === 10 && f.wrong === 0));
  assert.deepEqual(devices.map((d) => d.written.length), reads);
  // A member away is not checked; a pool with nothing in use checks nothing.
  pool.setAway(5, "gone");
  assert.deepEqual((await pool.audit(2)).map((f) => f.slot), [0, 1, 2, 3, 4, 6, 7]);
  pool.useMap(() => []);
  assert.ok((await pool.audit(4)).every((f) => f.checked === 0));
  await pool.close();
  await assert.rejects(pool.audit(), /closed/);
});
