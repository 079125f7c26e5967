import assert from "node:assert/strict";
import { createGatewayApp } from "../gateway/app.ts";
import { NodeIdentity } from "../protocol/mod.ts";
import { BlockStore } from "./blockstore.ts";
import { Catalogue, signPublish } from "./catalogue.ts";
import { addContent } from "./content.ts";
import { cdnFastPath, createCdnApp } from "./egress.ts";
import { gatewaySource } from "./source.ts";

async function fixture() {
  const dir = await Deno.makeTempDir();
  const store = await BlockStore.open(`${dir}/blocks`, 1 << 24);
  const member = await NodeIdentity.generate();
  const catalogue = await Catalogue.open(":memory:", {
    isMember: (id) => id === member.nodeId,
    has: (cid) => store.has(cid),
  });
  const publish = async (
    o: { name: string; bytes: Uint8Array; type: string; visibility: "public" | "members" },
  ) => {
    const { name, bytes, type, visibility } = o;
    const { cid } = await addContent(store, bytes);
    await catalogue.publish(
      await signPublish(member, {
        v: 1,
        name,
        cid: cid.toString(),
        size: bytes.length,
        type,
        visibility,
      }),
    );
    return cid.toString();
  };
  const source = gatewaySource(catalogue, store);
  const fast = cdnFastPath(source);
  let fastAnswers = 0;
  const app = createGatewayApp({
    cdn: createCdnApp(source),
    cdnFast: (req) => {
      const res = fast(req);
      if (res) fastAnswers++;
      return res;
    },
    rateLimit: false,
  });
  return {
    app,
    publish,
    source,
    fastAnswers: () => fastAnswers,
    async [Symbol.asyncDispose]() {
      catalogue.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const headers = (r: Response) => [...r.headers].filter(([k]) => k !== "date").sort();

Deno.test("the CDN's fast path answers a cached object exactly as the routed answer does", async () => {
  await using f = await fixture();
  const bytes = crypto.getRandomValues(new Uint8Array(4096));
  const cid = await f.publish({
    name: "bench/4k.bin",
    bytes,
    type: "application/octet-stream",
    visibility: "public",
  });
  const routed = await f.app.request(`/cdn/${cid}`); // fills the edge cache
  assert.equal(f.fastAnswers(), 0);
  const fast = await f.app.request(`/cdn/${cid}`);
  assert.equal(f.fastAnswers(), 1);
  assert.equal(fast.status, 200);
  assert.deepEqual(headers(fast), headers(routed));
  assert.deepEqual(new Uint8Array(await fast.arrayBuffer()), bytes);
  assert.deepEqual(new Uint8Array(await routed.arrayBuffer()), bytes);
  // Anything but a plain GET of the address goes the ordinary way, and is still right.
  const cases: [string, RequestInit, number][] = [
    [`/cdn/${cid}`, { method: "HEAD" }, 200],
    [`/cdn/${cid}`, { headers: { range: "bytes=0-9" } }, 206],
    [`/cdn/${cid}`, { headers: { "if-none-match": `"${cid}"` } }, 304],
    [`/cdn/${cid}?x=1`, {}, 200],
    ["/cdn/bench/4k.bin", {}, 200],
  ];
  for (const [path, init, status] of cases) {
    const res = await f.app.request(path, init);
    assert.equal(res.status, status, `${path} ${JSON.stringify(init)}`);
    await res.body?.cancel();
  }
  assert.equal(f.fastAnswers(), 1);
  const m = await (await f.app.request("/metrics")).text();
  assert.match(m, /truecloud_http_requests_total\{method="GET",route="\/cdn\/\*",status="200"\} 4/);
});

Deno.test("the CDN's fast path never answers for members-only content, nor for text a client wants compressed", async () => {
  await using f = await fixture();
  const secret = await f.publish({
    name: "team/secret.bin",
    bytes: crypto.getRandomValues(new Uint8Array(100)),
    type: "application/octet-stream",
    visibility: "members",
  });
  const text = await f.publish({
    name: "docs/readme.txt",
    bytes: new TextEncoder().encode("hello ".repeat(200)),
    type: "text/plain; charset=utf-8",
    visibility: "public",
  });
  for (let i = 0; i < 3; i++) {
    const res = await f.app.request(`/cdn/${secret}`);
    assert.equal(res.status, 404);
    await res.body?.cancel();
  }
  // Even with its bytes in the edge cache (as a node on the VPN could have filled it), the
  // catalogue says members: no answer.
  for await (const _ of f.source.read((await import("./content.ts")).parseCid(secret))) { /* */ }
  const res = await f.app.request(`/cdn/${secret}`);
  assert.equal(res.status, 404);
  await res.body?.cancel();
  // Text a client wants compressed never takes the fast path, cached or not.
  for (let i = 0; i < 2; i++) {
    const plain = await f.app.request(`/cdn/${text}`); // fills the edge cache
    await plain.arrayBuffer();
  }
  const before = f.fastAnswers();
  assert.ok(before >= 1, "cached text, uncompressed, came by the fast path");
  for (let i = 0; i < 3; i++) {
    const gz = await f.app.request(`/cdn/${text}`, { headers: { "accept-encoding": "gzip" } });
    assert.equal(gz.headers.get("content-encoding"), "gzip");
    await gz.body?.cancel();
  }
  assert.equal(f.fastAnswers(), before, "no compressed answer came by the fast path");
});
