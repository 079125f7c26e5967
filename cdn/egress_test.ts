import assert from "node:assert/strict";
import fc from "fast-check";
import { Hono } from "hono";
import { toHttpError } from "../protocol/mod.ts";
import { BlockStore } from "./blockstore.ts";
import { addContent, readContent } from "./content.ts";
import { type ContentSource, createCdnApp, type PublishedObject } from "./egress.ts";

function random(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) {
    crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  }
  return out;
}

async function fixture() {
  const dir = await Deno.makeTempDir();
  const store = await BlockStore.open(dir, 64 << 20);
  const catalogue: PublishedObject[] = [];
  const publish = async (
    name: string,
    bytes: Uint8Array,
    type: string,
    visibility: "public" | "members",
  ) => {
    const { cid, size } = await addContent(store, bytes);
    catalogue.push({ name, cid, size, type, visibility });
    return cid;
  };
  const source: ContentSource = {
    byName: (n) => Promise.resolve(catalogue.findLast((o) => o.name === n)),
    byCid: (c) => Promise.resolve(catalogue.find((o) => o.cid.equals(c))),
    list: () => Promise.resolve([...catalogue]),
    read: (cid, range) => readContent(store, cid, range),
  };
  const app = new Hono().route("/cdn", createCdnApp(source));
  app.onError((err, c) => c.json(toHttpError(err).body, toHttpError(err).status as 400));
  const big = random(3 * 1024 * 1024 + 777);
  const text = new TextEncoder().encode("<p>hello</p>\n".repeat(500));
  const bigCid = await publish("files/big.bin", big, "application/octet-stream", "public");
  const textCid = await publish("site/index.html", text, "text/html; charset=utf-8", "public");
  const secret = random(5000);
  const secretCid = await publish(
    "members/plans.bin",
    secret,
    "application/octet-stream",
    "members",
  );
  return {
    app,
    big,
    bigCid,
    text,
    textCid,
    secret,
    secretCid,
    [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
  };
}

Deno.test("GET /cdn/{name|CID} serves bytes with strong ETag, immutable caching by CID, and 304", async () => {
  await using f = await fixture();
  const byName = await f.app.request("/cdn/files/big.bin");
  assert.equal(byName.status, 200);
  assert.deepEqual(new Uint8Array(await byName.arrayBuffer()), f.big);
  assert.equal(byName.headers.get("etag"), `"${f.bigCid}"`);
  assert.equal(byName.headers.get("cache-control"), "public, max-age=60");
  const byCid = await f.app.request(`/cdn/${f.bigCid}`);
  assert.equal(byCid.headers.get("cache-control"), "public, max-age=31536000, immutable");
  assert.equal(byCid.headers.get("content-length"), String(f.big.length));
  await byCid.body?.cancel();
  const again = await f.app.request(`/cdn/${f.bigCid}`, {
    headers: { "if-none-match": `"${f.bigCid}"` },
  });
  assert.equal(again.status, 304);
  const head = await f.app.request("/cdn/files/big.bin", { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), "");
});

Deno.test("property: single ranges match the bytes; multi-range is multipart/byteranges; 416 beyond the end", async () => {
  await using f = await fixture();
  await fc.assert(
    fc.asyncProperty(
      fc.nat({ max: f.big.length + 10 }),
      fc.nat({ max: 2_000_000 }),
      async (start, len) => {
        const res = await f.app.request(`/cdn/${f.bigCid}`, {
          headers: { range: `bytes=${start}-${start + len}` },
        });
        if (start >= f.big.length) {
          assert.equal(res.status, 416);
          assert.equal(res.headers.get("content-range"), `bytes */${f.big.length}`);
          return;
        }
        const end = Math.min(start + len, f.big.length - 1);
        assert.equal(res.status, 206);
        assert.equal(res.headers.get("content-range"), `bytes ${start}-${end}/${f.big.length}`);
        assert.deepEqual(new Uint8Array(await res.arrayBuffer()), f.big.subarray(start, end + 1));
      },
    ),
    { numRuns: 25 },
  );
  const multi = await f.app.request(`/cdn/${f.bigCid}`, {
    headers: { range: "bytes=0-9, 2000000-2000004, -3" },
  });
  assert.equal(multi.status, 206);
  const type = multi.headers.get("content-type")!;
  assert.match(type, /^multipart\/byteranges; boundary=/);
  const body = new Uint8Array(await multi.arrayBuffer());
  assert.equal(Number(multi.headers.get("content-length")), body.length);
  const text = new TextDecoder("latin1").decode(body);
  for (const [s, e] of [[0, 9], [2000000, 2000004], [f.big.length - 3, f.big.length - 1]]) {
    const marker = `content-range: bytes ${s}-${e}/${f.big.length}\r\n\r\n`;
    const at = text.indexOf(marker) + marker.length;
    assert.ok(at > marker.length, marker);
    assert.deepEqual(body.subarray(at, at + e - s + 1), f.big.subarray(s, e + 1));
  }
  assert.equal(
    (await f.app.request(`/cdn/${f.bigCid}`, { headers: { range: "bytes=99999999-" } })).status,
    416,
  );
  const ignored = await f.app.request(`/cdn/${f.bigCid}`, { headers: { range: "bytes=5-1" } });
  assert.equal(ignored.status, 200, "an invalid range is ignored");
  await ignored.body?.cancel();
});

Deno.test("GET /cdn compresses text for clients that accept gzip", async () => {
  await using f = await fixture();
  const res = await f.app.request("/cdn/site/index.html", {
    headers: { "accept-encoding": "gzip, br" },
  });
  assert.equal(res.headers.get("content-encoding"), "gzip");
  assert.equal(res.headers.get("etag"), `"${f.textCid}-gzip"`);
  const plain = new Uint8Array(
    await new Response(res.body!.pipeThrough(new DecompressionStream("gzip"))).arrayBuffer(),
  );
  assert.deepEqual(plain, f.text);
  const raw = await f.app.request("/cdn/files/big.bin", { headers: { "accept-encoding": "gzip" } });
  assert.equal(raw.headers.get("content-encoding"), null, "binary content is sent as is");
  await raw.body?.cancel();
});

Deno.test("members-only content is never served: not by name, not by CID, not by range, not in the index", async () => {
  await using f = await fixture();
  for (const path of ["/cdn/members/plans.bin", `/cdn/${f.secretCid}`]) {
    for (
      const headers of [{}, { range: "bytes=0-10" }, {
        "if-none-match": `"${f.secretCid}"`,
      }] as Record<string, string>[]
    ) {
      const res = await f.app.request(path, { headers });
      assert.equal(res.status, 404, `${path} ${JSON.stringify(headers)}`);
      assert.ok(!(await res.text()).includes("plans"));
    }
  }
  const html = await (await f.app.request("/cdn/")).text();
  const json = await (await f.app.request("/cdn/", { headers: { accept: "application/json" } }))
    .json();
  assert.ok(
    html.includes("files/big.bin") && !html.includes("plans") &&
      !html.includes(f.secretCid.toString()),
  );
  assert.deepEqual(json.objects.map((o: { name: string }) => o.name).sort(), [
    "files/big.bin",
    "site/index.html",
  ]);
});

Deno.test("GET /cdn refuses hostile paths and methods with a 4xx", async () => {
  await using f = await fixture();
  for (
    const [path, status] of [
      ["/cdn/%2e%2e%2f%2e%2e%2fetc%2fpasswd", 400],
      ["/cdn/files%2f..%2f..%2fsecret", 400],
      ["/cdn/%E0%A4%A", 400],
      [`/cdn/${"a".repeat(600)}`, 400],
      ["/cdn/bafybeinotacidatallnotacidatallnotacidatall", 400],
      ["/cdn/nothing-here", 404],
    ] as const
  ) {
    const res = await f.app.request(path);
    assert.equal(res.status, status, path);
    assert.equal(typeof (await res.json()).error.code, "string");
  }
  const post = await f.app.request("/cdn/files/big.bin", { method: "POST" });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get("allow"), "GET, HEAD");
});
