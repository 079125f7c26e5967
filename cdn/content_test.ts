import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fc from "fast-check";
import { CID } from "multiformats/cid";
import * as raw from "multiformats/codecs/raw";
import { sha256 } from "multiformats/hashes/sha2";
import { ValidationError } from "../protocol/mod.ts";
import { BlockNotFoundError, BlockStore } from "./blockstore.ts";
import { addContent, CHUNK_SIZE, parseCid, readContent } from "./content.ts";

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of it) parts.push(p);
  return new Uint8Array(await new Blob(parts as Uint8Array<ArrayBuffer>[]).arrayBuffer());
}

/** n random bytes (no two chunks alike, so nothing is deduplicated). */
function pattern(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

Deno.test("addContent() gives small content the IPFS raw-leaf CID whose digest is its SHA-256", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = await BlockStore.open(dir, 1 << 20);
    const bytes = new TextEncoder().encode("hello world\n");
    const { cid, size } = await addContent(store, bytes);
    assert.equal(cid.toString(), "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4");
    assert.equal(size, 12);
    const digest = createHash("sha256").update(bytes).digest("hex");
    assert.equal(
      Array.from(cid.multihash.digest, (b) => b.toString(16).padStart(2, "0")).join(""),
      digest,
    );
    assert.deepEqual(await collect(readContent(store, cid)), bytes);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("addContent() chunks large content into verified 1 MiB raw leaves under a dag-pb root", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = await BlockStore.open(dir, 64 << 20);
    const data = pattern(3 * CHUNK_SIZE + 12345);
    const stream = async function* () {
      for (let i = 0; i < data.length; i += 65536) yield data.subarray(i, i + 65536);
    };
    const { cid, size } = await addContent(store, stream());
    assert.equal(size, data.length);
    assert.match(cid.toString(), /^bafy/);
    // Each leaf is the raw CID of its chunk.
    for (let i = 0; i < 4; i++) {
      const chunk = data.subarray(i * CHUNK_SIZE, (i + 1) * CHUNK_SIZE);
      assert.ok(await store.has(CID.createV1(raw.code, await sha256.digest(chunk))), `leaf ${i}`);
    }
    assert.deepEqual(await collect(readContent(store, cid)), data);
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: data.length - 1 }),
        fc.nat({ max: 3 * CHUNK_SIZE }),
        async (offset, length) => {
          const want = data.subarray(offset, Math.min(data.length, offset + length));
          assert.deepEqual(
            await collect(readContent(store, cid, { offset, length: want.length })),
            want,
          );
        },
      ),
      { numRuns: 30 },
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("BlockStore keeps to its quota, refuses blocks that do not match their CID, and drops damaged ones", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = await BlockStore.open(dir, 2 * CHUNK_SIZE);
    await assert.rejects(
      addContent(store, pattern(3 * CHUNK_SIZE)),
      (e: Error & { code?: string }) => e.code === "quota_exceeded",
    );
    assert.equal(store.used, 0, "a refused add leaves nothing behind");
    const good = new TextEncoder().encode("good");
    const cid = CID.createV1(raw.code, await sha256.digest(good));
    await assert.rejects(store.put(cid, new TextEncoder().encode("evil")), ValidationError);
    await store.put(cid, good);
    // Damage on disk is caught on read, and the block is then missing.
    const key = cid.toString();
    await Deno.writeFile(`${dir}/${key.slice(-2)}/${key}`, new TextEncoder().encode("rot!"));
    await assert.rejects(store.getBlock(cid), BlockNotFoundError);
    assert.equal(await store.has(cid), false);
    // A reopened store counts what it holds.
    const again = await BlockStore.open(dir, 2 * CHUNK_SIZE);
    assert.equal(again.used, store.used);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("BlockStore hashes an unchanged block once, catches a changed one, and scrub() catches damage that hides its tracks", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const store = await BlockStore.open(dir, 1 << 20);
    const enc = new TextEncoder();
    const put = async (text: string) => {
      const cid = CID.createV1(raw.code, await sha256.digest(enc.encode(text)));
      await store.put(cid, enc.encode(text));
      const key = cid.toString();
      const path = `${dir}/${key.slice(-2)}/${key}`;
      const old = new Date(Date.now() - 60_000);
      await Deno.utime(path, old, old); // an old file: its stamp can be trusted
      return { cid, path, old };
    };
    const a = await put("block a");
    const b = await put("block b");
    for (const x of [a, b]) await store.getBlock(x.cid); // checked, and remembered
    // Changed in place (a new modification time): hashed again, refused, gone.
    await Deno.writeFile(a.path, enc.encode("block A"));
    await assert.rejects(store.getBlock(a.cid), BlockNotFoundError);
    // Changed with its time stamp put back (what bit rot under the file system looks like): the
    // remembered check lets it through, the scrub does not.
    await Deno.writeFile(b.path, enc.encode("block B"));
    await Deno.utime(b.path, b.old, b.old);
    assert.deepEqual(await store.getBlock(b.cid), enc.encode("block B"));
    const c = await put("block c");
    const report = await store.scrub();
    assert.deepEqual(report, { checked: 2, damaged: [b.cid.toString()] });
    await assert.rejects(store.getBlock(b.cid), BlockNotFoundError);
    assert.deepEqual(await store.getBlock(c.cid), enc.encode("block c"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseCid() takes CIDv1 raw or dag-pb with SHA-256 only", () => {
  assert.equal(
    parseCid("bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4").code,
    raw.code,
  );
  for (
    const bad of [
      "",
      "hello",
      "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",
      "bafyreigh2akiscaildc",
    ]
  ) {
    assert.throws(() => parseCid(bad), ValidationError, bad);
  }
});

Deno.test("BlockStore.openReadOnly() reads what another store wrote, without counting it, and refuses writes", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const writer = await BlockStore.open(dir, 1 << 22);
    const data = pattern(1.5 * CHUNK_SIZE);
    const { cid } = await addContent(writer, data);
    const reader = BlockStore.openReadOnly(dir);
    assert.equal(await reader.has(cid), true);
    assert.deepEqual(await collect(readContent(reader, cid)), data);
    await assert.rejects(
      addContent(reader, new Uint8Array(10)),
      (e: Error & { code?: string }) => e.code === "read_only",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readContent() reads DAGs of other layouts (dag-pb leaves, deep trees) as ipfs-unixfs-exporter does, and refuses lying ones", async () => {
  const { importer } = await import("ipfs-unixfs-importer");
  const { fixedSize } = await import("ipfs-unixfs-importer/chunker");
  const { balanced } = await import("ipfs-unixfs-importer/layout");
  const { exporter } = await import("ipfs-unixfs-exporter");
  const dagPb = await import("@ipld/dag-pb");
  const { UnixFS } = await import("ipfs-unixfs");
  const dir = await Deno.makeTempDir();
  try {
    const store = await BlockStore.open(dir, 8 << 20);
    const data = pattern(100_000);
    let root: CID | undefined;
    for await (
      const e of importer([{ content: data }], store as never, {
        cidVersion: 1,
        rawLeaves: false, // leaves are dag-pb nodes holding their bytes
        chunker: fixedSize({ chunkSize: 1000 }),
        layout: balanced({ maxChildrenPerNode: 3 }), // a deep tree
      })
    ) root = CID.parse(e.cid.toString());
    await fc.assert(
      fc.asyncProperty(
        fc.nat({ max: data.length }),
        fc.nat({ max: data.length }),
        async (offset, length) => {
          const len = Math.min(length, data.length - offset);
          const ours = await collect(readContent(store, root!, { offset, length: len }));
          const entry = await exporter(root! as never, store as never);
          assert.equal(entry.type, "file");
          if (entry.type !== "file") return;
          const theirs = await collect(entry.content({ offset, length: len }));
          assert.deepEqual(ours, data.subarray(offset, offset + len));
          assert.deepEqual(ours, theirs);
        },
      ),
      { numRuns: 25 },
    );
    // A node whose block sizes lie about its children is refused, not read wrongly.
    const leaf = CID.createV1(raw.code, await sha256.digest(data.subarray(0, 10)));
    await store.put(leaf, data.subarray(0, 10));
    const fs = new UnixFS({ type: "file", blockSizes: [20n] });
    const bytes = dagPb.encode({ Data: fs.marshal(), Links: [{ Hash: leaf as never, Tsize: 10 }] });
    const liar = CID.createV1(dagPb.code, await sha256.digest(bytes));
    await store.put(liar, bytes);
    await assert.rejects(collect(readContent(store, liar)), ValidationError);
    // Neither a directory nor a codec we do not read is a file.
    const dirNode = dagPb.encode({ Data: new UnixFS({ type: "directory" }).marshal(), Links: [] });
    const dirCid = CID.createV1(dagPb.code, await sha256.digest(dirNode));
    await store.put(dirCid, dirNode);
    await assert.rejects(collect(readContent(store, dirCid)), ValidationError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
