/**
 * The CDN's HTTP egress, as a Hono sub-app for the gateway (`GET /cdn/{name-or-CID}`,
 * `docs/protocol/cdn.md`): strong ETags from CIDs, immutable caching for CIDs, `If-None-Match`,
 * single and multiple byte ranges (206, `multipart/byteranges`, 416), `HEAD`, content types, gzip
 * for text, and an index of public content. It serves only what its catalogue says is public:
 * members-only content is never found here, by name or by CID.
 *
 * @module
 */

import { type Context, Hono } from "hono";
import type { CID } from "multiformats/cid";
import {
  type ByteRange,
  escapeHtml,
  etagMatches,
  NotFoundError,
  parseRanges,
  TrueCloudError,
  ValidationError,
} from "../protocol/mod.ts";
import { parseCid } from "./content.ts";
import { EDGE_CACHE_OBJECT_LIMIT } from "./source.ts";

/** A published object as the egress sees it. */
export interface PublishedObject {
  /** Its name, if published under one. */
  name?: string;
  /** Its address. */
  cid: CID;
  /** Length in bytes. */
  size: number;
  /** Media type. */
  type: string;
  /** Who may see it. */
  visibility: "public" | "members";
}

/** Where the egress finds what is published, and its bytes. */
export interface ContentSource {
  /** The newest object published under a name, or `undefined`. */
  byName(name: string): Promise<PublishedObject | undefined>;
  /** The object with this CID, if published, or `undefined`. */
  byCid(cid: CID): Promise<PublishedObject | undefined>;
  /** Every named object, for the index. */
  list(): Promise<PublishedObject[]>;
  /** The bytes of an object, or of a range of it. */
  read(cid: CID, range?: { offset: number; length: number }): AsyncIterable<Uint8Array>;
  /** The whole object from memory when it is there (an edge cache), else `undefined`. */
  cached?(cid: CID): Uint8Array | undefined;
  /** Without waiting: the object with this CID (in its text form) and its bytes when the catalogue's
   * answer and the bytes are both in memory and fresh, else `undefined`. Feeds the fast path. */
  peek?(cid: string): { obj: PublishedObject; bytes: Uint8Array } | undefined;
}

/** The headers of an object's answers (before range, encoding and length). */
function objectHeaders(obj: PublishedObject, byAddress: boolean): Record<string, string> {
  return {
    etag: `"${obj.cid}"`,
    "accept-ranges": "bytes",
    "content-type": obj.type,
    "x-content-address": obj.cid.toString(),
    "cache-control": byAddress ? "public, max-age=31536000, immutable" : "public, max-age=60",
    vary: "accept-encoding",
  };
}

/** A CID in the text form the egress accepts in a path (base32, lower case). */
const CID_TEXT = /^b[a-z2-7]{20,}$/;

/**
 * The fast path of the hottest CDN request: a plain `GET /cdn/{CID}` (no range, no condition, no
 * compression wanted) of a public object already in the edge cache, answered synchronously without
 * the router. Anything else gives `undefined`, and goes the ordinary way. The answer is the one
 * {@linkcode createCdnApp} gives (a test compares the two); the caller adds the gateway's own
 * headers, as its middleware does for routed answers.
 *
 * @param source The same source as the egress app's.
 * @returns The fast path.
 */
export function cdnFastPath(source: ContentSource): (req: Request) => Response | undefined {
  const peek = source.peek?.bind(source);
  const prepared = new WeakMap<PublishedObject, [string, string][]>();
  return (req) => {
    if (!peek || req.method !== "GET") return undefined;
    const url = req.url;
    const start = url.indexOf("/", url.indexOf("//") + 2);
    if (start < 0 || !url.startsWith("/cdn/", start)) return undefined;
    const key = url.slice(start + 5);
    if (!CID_TEXT.test(key)) return undefined; // a name, a query, more path: routed
    const h = req.headers;
    if (h.has("range") || h.has("if-none-match") || h.has("if-range")) return undefined;
    const hit = peek(key);
    if (!hit || hit.obj.visibility !== "public") return undefined;
    const { obj, bytes } = hit;
    if (TEXT.test(obj.type) && obj.size > 256 && /\bgzip\b/.test(h.get("accept-encoding") ?? "")) {
      return undefined;
    }
    let headers = prepared.get(obj);
    if (!headers) {
      headers = Object.entries(objectHeaders(obj, true));
      headers.push(["content-length", String(obj.size)]);
      prepared.set(obj, headers);
    }
    // Headers are set after construction, as in the routed answer (see there).
    const res = new Response(bytes as Uint8Array<ArrayBuffer>);
    for (const [k, v] of headers) res.headers.set(k, v);
    return res;
  };
}

const TEXT = /^(text\/|application\/(json|xml|javascript|rss\+xml|atom\+xml)|image\/svg\+xml)/;

function stream(it: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const iter = it[Symbol.asyncIterator]();
  return new ReadableStream({
    async pull(c) {
      const { value, done } = await iter.next();
      if (done) c.close();
      else c.enqueue(value);
    },
    async cancel() {
      await iter.return?.();
    },
  });
}

/**
 * Builds the egress sub-app, to mount at `/cdn`.
 * @param source The catalogue and the bytes.
 * @returns The Hono app.
 */
export function createCdnApp(source: ContentSource): Hono {
  const app = new Hono();
  // The cache fills on the first full read of a small object.
  const warm = async (cid: CID, size: number): Promise<Uint8Array | undefined> => {
    if (!source.cached || size > EDGE_CACHE_OBJECT_LIMIT) return undefined;
    const hit = source.cached(cid);
    if (hit) return hit;
    for await (const _ of source.read(cid)) { /* reading fills the cache */ }
    return source.cached(cid);
  };

  const index = async (c: Context) => {
    const list = (await source.list()).filter((o) => o.visibility === "public" && o.name);
    const entries = list.map((o) => ({
      name: o.name!,
      cid: o.cid.toString(),
      size: o.size,
      type: o.type,
    }));
    if (
      (c.req.header("accept") ?? "").includes("application/json") ||
      c.req.query("format") === "json"
    ) {
      return c.json({ objects: entries });
    }
    const rows = entries.map((e) =>
      `<tr><td><a href="/cdn/${escapeHtml(encodeURIComponent(e.name))}">${
        escapeHtml(e.name)
      }</a></td><td>${e.size}</td>` +
      `<td>${
        escapeHtml(e.type)
      }</td><td><a href="/cdn/${e.cid}"><code>${e.cid}</code></a></td></tr>`
    ).join("\n");
    return c.html(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>True Cloud CDN</title></head>
<body><h1>Public content</h1>
<table><thead><tr><th>name</th><th>bytes</th><th>type</th><th>address</th></tr></thead>
<tbody>
${rows}
</tbody></table></body></html>`);
  };
  app.get("/", index);

  app.get("/*", async (c) => {
    const raw = c.req.path.slice(c.req.path.indexOf("/cdn/") + "/cdn/".length);
    if (raw === "") return index(c); // "/cdn/" as well as "/cdn"
    let key: string;
    try {
      key = decodeURIComponent(raw);
    } catch {
      throw new ValidationError("Malformed percent-encoding in the path", { code: "invalid" });
    }
    if (
      key.length > 512 || [...key].some((ch) => ch < " " || ch === "\\") ||
      key.split("/").some((s) => s === ".." || s === ".")
    ) {
      throw new ValidationError("Not a name or address", { code: "invalid" });
    }
    let obj: PublishedObject | undefined;
    let byAddress = false;
    if (CID_TEXT.test(key)) {
      byAddress = true;
      obj = await source.byCid(parseCid(key));
    } else {
      obj = await source.byName(key);
    }
    // Members-only content does not exist here: the same 404 as for nothing at all.
    if (!obj || obj.visibility !== "public") {
      throw new NotFoundError("Nothing public at this name or address");
    }

    const etag = `"${obj.cid}"`;
    const headers = objectHeaders(obj, byAddress);
    if (etagMatches(c.req.header("if-none-match"), etag)) {
      return new Response(null, { status: 304, headers });
    }
    const rangeHeader = c.req.header("range");
    const ifRange = c.req.header("if-range");
    const ranges = rangeHeader && (!ifRange || ifRange === etag)
      ? parseRanges(rangeHeader, obj.size)
      : undefined;
    if (ranges === "unsatisfiable") {
      return new Response(null, {
        status: 416,
        headers: { ...headers, "content-range": `bytes */${obj.size}` },
      });
    }
    const head = c.req.method === "HEAD";
    if (ranges && ranges.length === 1) {
      const [r] = ranges;
      const len = r.end - r.start + 1;
      return new Response(
        head ? null : stream(source.read(obj.cid, { offset: r.start, length: len })),
        {
          status: 206,
          headers: {
            ...headers,
            "content-range": `bytes ${r.start}-${r.end}/${obj.size}`,
            "content-length": String(len),
          },
        },
      );
    }
    if (ranges) {
      const boundary = `tc-${crypto.randomUUID()}`;
      const enc = new TextEncoder();
      const part = (r: ByteRange) =>
        enc.encode(
          `--${boundary}\r\ncontent-type: ${
            obj!.type
          }\r\ncontent-range: bytes ${r.start}-${r.end}/${obj!.size}\r\n\r\n`,
        );
      const tail = enc.encode(`--${boundary}--\r\n`);
      const total = ranges.reduce((n, r) => n + part(r).length + (r.end - r.start + 1) + 2, 0) +
        tail.length;
      const o = obj;
      const body = async function* () {
        for (const r of ranges as ByteRange[]) {
          yield part(r);
          yield* source.read(o.cid, { offset: r.start, length: r.end - r.start + 1 });
          yield enc.encode("\r\n");
        }
        yield tail;
      };
      return new Response(head ? null : stream(body()), {
        status: 206,
        headers: {
          ...headers,
          "content-type": `multipart/byteranges; boundary=${boundary}`,
          "content-length": String(total),
        },
      });
    }
    const gzip = TEXT.test(obj.type) && /\bgzip\b/.test(c.req.header("accept-encoding") ?? "") &&
      obj.size > 256;
    if (gzip) {
      const body = head
        ? null
        : (stream(source.read(obj.cid)) as ReadableStream<BufferSource>).pipeThrough(
          new CompressionStream("gzip"),
        );
      // A compressed representation is a different one: its ETag says so.
      return new Response(body, {
        headers: { ...headers, "content-encoding": "gzip", etag: `"${obj.cid}-gzip"` },
      });
    }
    // A cached object goes out as bytes, which Deno sends without a stream's per-chunk work; its
    // headers are set after construction (given to the constructor, Deno 2.9 copies the body
    // into a native response at once, which costs more than it saves here).
    const bytes = head ? undefined : (await warm(obj.cid, obj.size));
    const res = new Response(
      head ? null : (bytes as Uint8Array<ArrayBuffer> | undefined) ?? stream(source.read(obj.cid)),
    );
    for (const [k, v] of Object.entries(headers)) res.headers.set(k, v);
    res.headers.set("content-length", String(obj.size));
    return res;
  });

  app.all("/*", (c) => {
    c.header("allow", "GET, HEAD");
    throw new TrueCloudError(`Method ${c.req.method} is not allowed here; use GET, HEAD`, {
      code: "method_not_allowed",
      status: 405,
    });
  });
  return app;
}
