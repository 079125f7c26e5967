import assert from "node:assert/strict";
import fc from "fast-check";
import { parseRange, serveFile } from "./files.ts";

Deno.test("parseRange() follows RFC 9110 for one byte range", () => {
  assert.deepEqual(parseRange("bytes=0-9", 100), { start: 0, end: 9 });
  assert.deepEqual(parseRange("bytes=90-", 100), { start: 90, end: 99 });
  assert.deepEqual(parseRange("bytes=-10", 100), { start: 90, end: 99 });
  assert.deepEqual(parseRange("bytes=-1000", 100), { start: 0, end: 99 });
  assert.deepEqual(parseRange("bytes=50-5000", 100), { start: 50, end: 99 });
  assert.equal(parseRange("bytes=100-", 100), "unsatisfiable");
  assert.equal(parseRange("bytes=-0", 100), "unsatisfiable");
  for (
    const ignored of ["bytes=9-1", "bytes=0-1,5-6", "items=0-1", "bytes=", "bytes=-", "bytes=a-b"]
  ) {
    assert.equal(parseRange(ignored, 100), undefined, ignored);
  }
});

Deno.test("property: serveFile() answers every range with exactly the bytes of a model", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const data = new Uint8Array(200_000).map((_, i) => (i * 2654435761) >>> 24);
    await Deno.writeFile(`${dir}/f`, data);
    await fc.assert(
      fc.asyncProperty(
        fc.option(fc.nat({ max: 250_000 })),
        fc.option(fc.nat({ max: 250_000 })),
        async (a, b) => {
          const header = `bytes=${a ?? ""}-${b ?? ""}`;
          const res = await serveFile(
            new Request("http://x/f", { headers: { range: header } }),
            `${dir}/f`,
            "x/y",
          );
          const body = new Uint8Array(await res.arrayBuffer());
          const r = parseRange(header, data.length);
          if (r === undefined) {
            assert.equal(res.status, 200);
            assert.deepEqual(body, data);
          } else if (r === "unsatisfiable") {
            assert.equal(res.status, 416);
            assert.equal(res.headers.get("content-range"), `bytes */${data.length}`);
          } else {
            assert.equal(res.status, 206);
            assert.equal(
              res.headers.get("content-range"),
              `bytes ${r.start}-${r.end}/${data.length}`,
            );
            assert.deepEqual(body, data.subarray(r.start, r.end + 1));
            assert.equal(Number(res.headers.get("content-length")), body.length);
          }
        },
      ),
      { numRuns: 150 },
    );
    const head = await serveFile(new Request("http://x/f", { method: "HEAD" }), `${dir}/f`, "x/y");
    assert.equal(head.headers.get("content-length"), "200000");
    assert.equal(head.body, null);
    const tag = head.headers.get("etag")!;
    const again = await serveFile(
      new Request("http://x/f", { headers: { "if-none-match": tag } }),
      `${dir}/f`,
      "x/y",
    );
    assert.equal(again.status, 304);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
