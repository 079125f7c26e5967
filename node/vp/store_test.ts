// The volume store: volumes on disk, capacity, sparse zeros, tags and checks, trim and wipe.
import assert from "node:assert/strict";
import {
  ConflictError,
  NotFoundError,
  TrueCloudError,
  ValidationError,
} from "../../protocol/mod.ts";
import { TAG_BYTES } from "../drivers/mod.ts";
import { VOLUME_RECORD_BYTES, volumeFootprint, VolumeStore } from "./store.ts";
import { rejectsDevice } from "./_test_setup.ts";

const BS = 4096;

async function withStore(
  capacityBytes: number,
  f: (store: VolumeStore, dir: string) => Promise<void>,
): Promise<void> {
  // The store's directory is created inside a fresh one, so that nothing else lives beside it.
  const base = await Deno.makeTempDir({ prefix: "vp_store_" });
  const dir = `${base}/volumes`;
  const store = await VolumeStore.open({ dir, capacityBytes });
  try {
    await f(store, dir);
  } finally {
    await store.close();
    await Deno.remove(base, { recursive: true });
  }
}

function blocks(count: number, seed: number, bs = BS): { data: Uint8Array; tags: Uint8Array } {
  const data = new Uint8Array(count * bs), tags = new Uint8Array(count * TAG_BYTES);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + seed * 13 + (i >> 12)) & 0xff;
  for (let i = 0; i < tags.length; i++) tags[i] = (i * 3 + seed) & 0xff | 1;
  return { data, tags };
}

async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test("VolumeStore.create() makes a volume that reopens, lists and reads back", async () => {
  await withStore(2 ** 30, async (store, dir) => {
    const id = crypto.randomUUID();
    const v = await store.create(id, BS, 64);
    assert.equal(v.blockSize, BS);
    assert.equal(v.blockCount, 64);
    const { data, tags } = blocks(3, 1);
    await v.write(10, data, tags);
    await v.flush();
    assert.ok(store.has(id));
    assert.deepEqual(store.list().map((i) => [i.id, i.bytes, i.footprint]), [
      [id, 64 * BS, volumeFootprint(BS, 64)],
    ]);
    assert.deepEqual(await files(dir), [`${id}.data`, `${id}.json`, `${id}.tags`]);
    assert.equal(await store.open(id), v, "the open volume is shared");
    await store.close();
    await rejectsDevice(v.read(0, 1), "device_unavailable");

    const again = await VolumeStore.open({ dir, capacityBytes: 2 ** 30 });
    try {
      assert.deepEqual(again.list().map((i) => i.id), [id]);
      assert.equal(again.usedBytes, volumeFootprint(BS, 64));
      const w = await again.open(id);
      const r = await w.read(10, 3);
      assert.deepEqual(r.data, data);
      assert.deepEqual(r.tags, tags);
    } finally {
      await again.close();
    }
  });
});

Deno.test("VolumeStore never lends more than its capacity", async () => {
  const one = volumeFootprint(BS, 100);
  await withStore(2 * one + 10, async (store, dir) => {
    assert.equal(one, 100 * (BS + VOLUME_RECORD_BYTES));
    await store.create(crypto.randomUUID(), BS, 100);
    await store.create(crypto.randomUUID(), BS, 100);
    assert.equal(store.usedBytes, 2 * one);
    const before = await files(dir);
    const id = crypto.randomUUID();
    await assert.rejects(store.create(id, BS, 1), (err: TrueCloudError) => {
      assert.equal(err.code, "no_capacity");
      assert.match(err.message, /does not fit/);
      return true;
    });
    assert.deepEqual(await files(dir), before, "nothing is left of the refused volume");
    assert.ok(!store.has(id));
    // Concurrent creates are counted one after the other.
    await store.wipe(store.list()[0].id);
    const results = await Promise.allSettled(
      [1, 2, 3].map(() => store.create(crypto.randomUUID(), BS, 100)),
    );
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1);
    assert.ok(store.usedBytes <= store.capacityBytes);
  });
});

Deno.test("A new volume reads as zeros with zero tags and takes no disk space", async () => {
  await withStore(2 ** 40, async (store, dir) => {
    const id = crypto.randomUUID();
    const v = await store.create(id, 65536, 16384); // 1 GiB
    const r = await v.read(1000, 16);
    assert.ok(r.data.every((b) => b === 0));
    assert.ok(r.tags.every((b) => b === 0));
    const st = await Deno.stat(`${dir}/${id}.data`);
    assert.equal(st.size, 2 ** 30);
    assert.ok((st.blocks ?? 0) * 512 < 1024 * 1024, "the data file is sparse");
  });
});

Deno.test("Volume.write() keeps tags beside blocks, at any place and size", async () => {
  await withStore(2 ** 30, async (store) => {
    const v = await store.create(crypto.randomUUID(), BS, 32);
    const a = blocks(1, 1), b = blocks(5, 2), c = blocks(32, 3);
    await v.write(0, c.data, c.tags);
    await v.write(31, a.data, a.tags);
    await v.write(7, b.data, b.tags);
    const r = await v.read(0, 32);
    const expectData = c.data.slice(), expectTags = c.tags.slice();
    expectData.set(a.data, 31 * BS);
    expectTags.set(a.tags, 31 * TAG_BYTES);
    expectData.set(b.data, 7 * BS);
    expectTags.set(b.tags, 7 * TAG_BYTES);
    assert.deepEqual(r.data, expectData);
    assert.deepEqual(r.tags, expectTags);
  });
});

Deno.test("Volume calls outside the volume fail with device_range and change nothing", async () => {
  await withStore(2 ** 30, async (store) => {
    const v = await store.create(crypto.randomUUID(), BS, 8);
    const x = blocks(2, 4);
    await v.write(0, x.data, x.tags);
    await rejectsDevice(v.read(7, 2), "device_range");
    await rejectsDevice(v.read(-1, 1), "device_range");
    await rejectsDevice(v.read(0, 0), "device_range");
    await rejectsDevice(v.write(7, x.data, x.tags), "device_range");
    await rejectsDevice(v.write(0, x.data.subarray(1), x.tags), "device_range");
    await rejectsDevice(v.write(0, x.data, x.tags.subarray(1)), "device_range");
    await rejectsDevice(v.trim(5, 4), "device_range");
    await rejectsDevice(v.trim(0.5, 1), "device_range");
    const r = await v.read(0, 8);
    assert.deepEqual(r.data.subarray(0, 2 * BS), x.data);
    assert.ok(r.data.subarray(2 * BS).every((b) => b === 0));
  });
});

Deno.test("Volume.trim() zeros blocks in the middle and releases space at the end", async () => {
  await withStore(2 ** 30, async (store, dir) => {
    const id = crypto.randomUUID();
    const v = await store.create(id, 65536, 64);
    const x = blocks(64, 5, 65536);
    await v.write(0, x.data, x.tags);
    await v.trim(10, 5);
    await v.trim(40, 24); // to the end
    const r = await v.read(0, 64);
    for (let i = 0; i < 64; i++) {
      const gone = (i >= 10 && i < 15) || i >= 40;
      const d = r.data.subarray(i * 65536, (i + 1) * 65536);
      const t = r.tags.subarray(i * TAG_BYTES, (i + 1) * TAG_BYTES);
      if (gone) {
        assert.ok(d.every((b) => b === 0) && t.every((b) => b === 0), `block ${i} trimmed`);
      } else {
        assert.deepEqual(d, x.data.subarray(i * 65536, (i + 1) * 65536), `block ${i} kept`);
        assert.deepEqual(t, x.tags.subarray(i * TAG_BYTES, (i + 1) * TAG_BYTES));
      }
    }
    const st = await Deno.stat(`${dir}/${id}.data`);
    assert.equal(st.size, 64 * 65536);
    assert.ok((st.blocks ?? 0) * 512 <= 41 * 65536, `trim at the end freed space (${st.blocks})`);
    // Trimming what was never written writes nothing.
    const w = await store.create(crypto.randomUUID(), 65536, 64);
    await w.trim(0, 63);
    const st2 = await Deno.stat(`${dir}/${w.id}.data`);
    assert.ok((st2.blocks ?? 0) * 512 < 65536);
  });
});

Deno.test("Volume.trim() clears rot under a block never written", async () => {
  await withStore(2 ** 30, async (store, dir) => {
    const v = await store.create(crypto.randomUUID(), BS, 16);
    const f = await Deno.open(`${dir}/${v.id}.data`, { write: true });
    await f.seek(3 * BS + 100, Deno.SeekMode.Start);
    await f.write(new Uint8Array([1, 2, 3]));
    f.close();
    await rejectsDevice(v.read(3, 1), "device_failed");
    await v.trim(2, 4);
    const r = await v.read(0, 16);
    assert.ok(r.data.every((b) => b === 0) && r.tags.every((b) => b === 0));
  });
});

Deno.test("Volume.read() reports disk rot in data or tags as a checksum failure", async () => {
  await withStore(2 ** 30, async (store, dir) => {
    const id = crypto.randomUUID();
    const v = await store.create(id, BS, 16);
    const x = blocks(4, 6);
    await v.write(4, x.data, x.tags);
    await v.flush();
    const flip = async (file: string, at: number) => {
      const f = await Deno.open(`${dir}/${file}`, { read: true, write: true });
      const b = new Uint8Array(1);
      await f.seek(at, Deno.SeekMode.Start);
      await f.read(b);
      b[0] ^= 0x10;
      await f.seek(at, Deno.SeekMode.Start);
      await f.write(b);
      f.close();
    };
    await flip(`${id}.data`, 5 * BS + 100);
    const err = await rejectsDevice(v.read(4, 4), "device_failed");
    assert.match(err.message, /checksum mismatch in block 5/);
    assert.equal((err.cause as TrueCloudError).code, "checksum");
    // The other blocks still read.
    assert.deepEqual((await v.read(4, 1)).data, x.data.subarray(0, BS));
    await flip(`${id}.tags`, 6 * VOLUME_RECORD_BYTES + 3);
    await rejectsDevice(v.read(6, 1), "device_failed");
    // Rot in a never-written block is caught too.
    await flip(`${id}.data`, 12 * BS);
    await rejectsDevice(v.read(12, 1), "device_failed");
    // Rewriting a block heals it.
    await v.write(5, x.data.subarray(BS, 2 * BS), x.tags.subarray(TAG_BYTES, 2 * TAG_BYTES));
    assert.deepEqual((await v.read(5, 1)).data, x.data.subarray(BS, 2 * BS));
  });
});

Deno.test("VolumeStore refuses hostile ids and shapes and creates nothing", async () => {
  await withStore(2 ** 30, async (store, dir) => {
    const parent = `${dir}/..`;
    assert.deepEqual(await files(parent), ["volumes"]);
    const bad = [
      "../x",
      "../../etc/passwd",
      "a/b",
      "",
      "x".repeat(5000),
      crypto.randomUUID().toUpperCase(),
      crypto.randomUUID() + "/..",
      "8a4c6f52-3c1e-4f0e-9a53-8f6f2b3c1d2",
      "8a4c6f52-3c1e-4f0e-9a53-8f6f2b3c1d20\n",
    ];
    for (const id of bad) {
      assert.throws(
        () => store.create(id, BS, 1),
        ValidationError,
        JSON.stringify(id.slice(0, 40)),
      );
      assert.throws(() => store.open(id), ValidationError);
      assert.throws(() => store.wipe(id), ValidationError);
    }
    const id = crypto.randomUUID();
    for (
      const [bs, n] of [[1000, 1], [2048, 1], [BS * 3, 1], [2 ** 21, 1], [BS, 0], [BS, -1], [
        BS,
        1.5,
      ], [BS, 2 ** 41]]
    ) {
      assert.throws(() => store.create(id, bs, n), ValidationError, `${bs} × ${n}`);
    }
    assert.deepEqual(await files(dir), []);
    assert.deepEqual(await files(parent), ["volumes"]);
    await assert.rejects(VolumeStore.open({ dir, capacityBytes: -1 }), ValidationError);
    await assert.rejects(VolumeStore.open({ dir: "", capacityBytes: 1 }), ValidationError);
  });
});

Deno.test("VolumeStore.create() refuses an id it holds; open() and wipe() an id it does not", async () => {
  await withStore(2 ** 30, async (store) => {
    const id = crypto.randomUUID();
    await store.create(id, BS, 4);
    await assert.rejects(store.create(id, BS, 4), ConflictError);
    const other = crypto.randomUUID();
    await assert.rejects(store.open(other), NotFoundError);
    await assert.rejects(store.wipe(other), NotFoundError);
  });
});

Deno.test("VolumeStore.wipe() destroys a volume for good", async () => {
  await withStore(2 ** 30, async (store, dir) => {
    const id = crypto.randomUUID();
    const v = await store.create(id, BS, 8);
    const x = blocks(8, 7);
    x.data.fill(0x5a);
    await v.write(0, x.data, x.tags);
    await v.flush();
    const keep = await store.create(crypto.randomUUID(), BS, 8);
    const used = store.usedBytes;
    await store.wipe(id);
    assert.equal(store.usedBytes, used - volumeFootprint(BS, 8));
    assert.ok(!store.has(id));
    assert.deepEqual(await files(dir), [`${keep.id}.data`, `${keep.id}.json`, `${keep.id}.tags`]);
    await rejectsDevice(v.read(0, 1), "device_unavailable");
    await rejectsDevice(v.write(0, x.data, x.tags), "device_unavailable");
    await assert.rejects(store.open(id), NotFoundError);
    // A new volume with the same id starts all zeros.
    const again = await store.create(id, BS, 8);
    const r = await again.read(0, 8);
    assert.ok(r.data.every((b) => b === 0) && r.tags.every((b) => b === 0));
  });
});

Deno.test("VolumeStore.open() finishes a wipe cut short", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vp_store_" });
  try {
    const store = await VolumeStore.open({ dir, capacityBytes: 2 ** 30 });
    const a = crypto.randomUUID(), b = crypto.randomUUID(), c = crypto.randomUUID();
    for (const id of [a, b, c]) {
      const v = await store.create(id, BS, 4);
      await v.write(0, new Uint8Array(BS).fill(9), new Uint8Array(TAG_BYTES).fill(9));
    }
    await store.close();
    // a: crashed after marking; b: crashed after overwriting its metadata with zeros.
    const meta = JSON.parse(await Deno.readTextFile(`${dir}/${a}.json`));
    await Deno.writeTextFile(`${dir}/${a}.json`, JSON.stringify({ ...meta, state: "wiping" }));
    const size = (await Deno.stat(`${dir}/${b}.json`)).size;
    await Deno.writeFile(`${dir}/${b}.json`, new Uint8Array(size));
    await Deno.writeTextFile(`${dir}/${crypto.randomUUID()}.json.tmp`, "{");
    const again = await VolumeStore.open({ dir, capacityBytes: 2 ** 30 });
    assert.deepEqual(again.list().map((i) => i.id), [c]);
    assert.deepEqual(await files(dir), [`${c}.data`, `${c}.json`, `${c}.tags`]);
    await again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("VolumeStore keeps unreadable metadata's files and counts their bytes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vp_store_" });
  try {
    const store = await VolumeStore.open({ dir, capacityBytes: 2 ** 30 });
    const id = crypto.randomUUID();
    await store.create(id, BS, 16);
    await store.close();
    await Deno.writeTextFile(`${dir}/${id}.json`, '{"format":"something else"}');
    const again = await VolumeStore.open({ dir, capacityBytes: 2 ** 30 });
    assert.deepEqual(again.list(), []);
    assert.equal(again.usedBytes, volumeFootprint(BS, 16));
    await assert.rejects(again.create(id, BS, 1), ConflictError);
    assert.equal((await files(dir)).length, 3);
    await again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Volume serializes concurrent operations", async () => {
  await withStore(2 ** 30, async (store) => {
    const v = await store.create(crypto.randomUUID(), BS, 64);
    const writes = Array.from({ length: 64 }, (_, i) => blocks(1, i));
    await Promise.all(writes.map((x, i) => v.write(i, x.data, x.tags)));
    const reads = await Promise.all(writes.map((_, i) => v.read(i, 1)));
    for (const [i, r] of reads.entries()) {
      assert.deepEqual(r.data, writes[i].data);
      assert.deepEqual(r.tags, writes[i].tags);
    }
    // A write then a read issued together: the read sees the write.
    const y = blocks(1, 99);
    const [, r] = await Promise.all([v.write(3, y.data, y.tags), v.read(3, 1), v.flush()]);
    assert.deepEqual(r.data, y.data);
  });
});
