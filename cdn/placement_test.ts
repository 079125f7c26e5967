import assert from "node:assert/strict";
import fc from "fast-check";
import { BlockStore } from "./blockstore.ts";
import { exportCar, importCar } from "./car.ts";
import { addContent, readContent } from "./content.ts";
import { holders } from "./placement.ts";
import { repair } from "./repair.ts";
import { ValidationError } from "../protocol/mod.ts";

function random(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of it) parts.push(p);
  return new Uint8Array(await new Blob(parts as Uint8Array<ArrayBuffer>[]).arrayBuffer());
}

Deno.test("holders() picks k distinct nodes, and a departure moves only what the departed node held", () => {
  fc.assert(fc.property(
    fc.uniqueArray(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 4, maxLength: 12 }),
    fc.array(fc.string({ minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 20 }),
    fc.nat(),
    (nodes, cids, pick) => {
      const gone = nodes[pick % nodes.length];
      const after = nodes.filter((n) => n !== gone);
      for (const cid of cids) {
        const h = holders(cid, nodes, 3);
        assert.equal(new Set(h).size, Math.min(3, nodes.length));
        const h2 = holders(cid, after, 3);
        // Survivors keep their places; only the departed node's place changes hands.
        for (const n of h) if (n !== gone) assert.ok(h2.includes(n));
        assert.deepEqual(
          holders(cid, [...nodes].reverse(), 3),
          h,
          "order of the member list does not matter",
        );
      }
    },
  ));
});

Deno.test("a CAR round-trip carries an object whole, and a corrupt or partial archive is refused", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = await BlockStore.open(`${dir}/a`, 1 << 26);
    const b = await BlockStore.open(`${dir}/b`, 1 << 26);
    const data = random(2 * 1024 * 1024 + 100);
    const { cid } = await addContent(a, data);
    const car = await exportCar(a, cid);
    assert.equal((await importCar(b, car)).toString(), cid.toString());
    assert.deepEqual(await collect(readContent(b, cid)), data);
    const c = await BlockStore.open(`${dir}/c`, 1 << 26);
    const bad = car.slice();
    bad[bad.length - 100] ^= 0xff; // inside the last block's bytes
    await assert.rejects(importCar(c, bad), ValidationError);
    await assert.rejects(importCar(c, car.slice(0, car.length - 2000)), ValidationError);
    await assert.rejects(importCar(c, new TextEncoder().encode("not a car")), ValidationError);
    assert.equal(c.used, 0, "refused archives leave nothing behind");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("repair() re-replicates to a new holder when one goes away, and reports what no one holds", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const ids = ["node-a", "node-b", "node-c", "node-d", "node-e"];
    const stores = new Map<string, BlockStore>();
    for (const id of ids) stores.set(id, await BlockStore.open(`${dir}/${id}`, 1 << 26));
    const data = random(1536 * 1024);
    // Published on one node, then placed.
    const { cid } = await addContent(stores.get("node-a")!, data);
    const first = await repair([cid], stores);
    assert.equal(first.lost.length, 0);
    const want = holders(cid.toString(), ids);
    for (const id of want) {
      assert.deepEqual(await collect(readContent(stores.get(id)!, cid)), data, id);
    }
    // A holder goes away: its place passes to the next node by score, copied from a survivor.
    const gone = want[0];
    const live = new Map([...stores].filter(([id]) => id !== gone));
    const second = await repair([cid], live);
    const next = holders(cid.toString(), [...live.keys()]).find((id) => !want.includes(id))!;
    // (node-a, where it was published, keeps its copy: when it is the next holder nothing moves.)
    assert.deepEqual(second.copies.map((c) => c.to), next === "node-a" ? [] : [next]);
    for (const id of holders(cid.toString(), [...live.keys()])) {
      assert.deepEqual(await collect(readContent(live.get(id)!, cid)), data, id);
    }
    // Nobody left holding it: reported, not invented.
    const empty = new Map([["node-z", await BlockStore.open(`${dir}/z`, 1 << 20)]]);
    assert.deepEqual((await repair([cid], empty)).lost, [cid.toString()]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
