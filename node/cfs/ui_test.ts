// The CFS UI's server, in process: headers, host and origin checks, the scrub action, the event
// stream, and the page's formatting functions.
import assert from "node:assert/strict";
import fc from "fast-check";
import { CapturingLogger, TrueCloudError, ValidationError } from "../../protocol/mod.ts";
import type { CfsStatus } from "./status.ts";
import { createCfsUiApp, CSRF_HEADER, serveCfsUi } from "./ui.ts";
import { FORMAT_SOURCE, PAGE_SCRIPT, PAGE_SCRIPT_HASH, PAGE_STYLE_HASH } from "./_ui_page.ts";

const PORT = 8470;
const HOST = `127.0.0.1:${PORT}`;
const ORIGIN = `http://${HOST}`;
const GiB = 1024 ** 3;

function sampleStatus(): CfsStatus {
  return {
    pool: { state: "degraded", sizeBytes: 320 * GiB, usedBytes: 10 * GiB, lossesTolerated: 2 },
    entitlement: { storageBytes: 320 * GiB, usedBytes: 64 * GiB, freeBytes: 256 * GiB },
    volumes: Array.from({ length: 8 }, (_, slot) => ({
      slot,
      role: slot < 5 ? "data" as const : "parity" as const,
      state: slot === 2 ? "resilvering" as const : "online" as const,
      provider: `12D3KooWprovider${slot}`,
      location: crypto.randomUUID(),
      sizeBytes: 64 * GiB,
      lease: { id: crypto.randomUUID(), until: 1_900_000_000 },
      errors: { read: 0, write: 0, checksum: slot },
      behindStripes: 0,
    })),
    distribution: {
      providers: 8,
      locations: 8,
      networks: 8,
      vpns: 2,
      summary: "8 providers in 8 locations, 8 networks and 2 VPNs",
    },
    resilver: {
      slot: 2,
      kind: "replace",
      doneBytes: GiB,
      totalBytes: 64 * GiB,
      startedAt: 1_700_000_000_000,
      rate: 100 * 1024 * 1024,
      etaSeconds: 645,
      finished: false,
    },
    events: [{ at: 1_700_000_000_000, level: "warn", message: "Volume faulted", slot: 2 }],
  };
}

function get(app: { request: (p: string, i?: RequestInit) => Response | Promise<Response> }) {
  return (path: string, headers: Record<string, string> = { host: HOST }) =>
    app.request(path, { headers });
}

async function errorOf(res: Response): Promise<{ code: string; message: string }> {
  return (await res.json()).error;
}

function scrubRequest(headers: Record<string, string>, body = "{}"): RequestInit {
  return { method: "POST", headers, body };
}

const GOOD_POST = {
  host: HOST,
  origin: ORIGIN,
  [CSRF_HEADER]: "1",
  "content-type": "application/json",
};

async function sha256Base64(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

Deno.test("createCfsUiApp() serves one self-contained page under a strict CSP", async () => {
  const app = createCfsUiApp({ status: sampleStatus, port: PORT });
  const res = await get(app)("/", { host: HOST, "sec-fetch-site": "none" });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/html/);
  const csp = res.headers.get("content-security-policy") ?? "";
  for (
    const d of [
      "default-src 'none'",
      "connect-src 'self'",
      "frame-ancestors 'none'",
      "base-uri 'none'",
      "form-action 'none'",
      "require-trusted-types-for 'script'",
    ]
  ) assert.ok(csp.includes(d), `CSP has ${d}: ${csp}`);
  assert.ok(!csp.includes("unsafe-inline") && !csp.includes("unsafe-eval") && !csp.includes("*"));
  assert.equal(res.headers.get("x-frame-options"), "DENY");
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
  assert.equal(res.headers.get("referrer-policy"), "no-referrer");
  assert.equal(res.headers.get("cache-control"), "no-store");
  const html = await res.text();
  // Exactly one inline script and one inline style, whose hashes are the ones the CSP allows.
  const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
  const styles = [...html.matchAll(/<style\b([^>]*)>([\s\S]*?)<\/style>/g)];
  assert.equal(scripts.length, 1);
  assert.equal(styles.length, 1);
  assert.equal(scripts[0][1], "", "no src or other attribute on the script");
  assert.equal(`sha256-${await sha256Base64(scripts[0][2])}`, PAGE_SCRIPT_HASH);
  assert.equal(`sha256-${await sha256Base64(styles[0][2])}`, PAGE_STYLE_HASH);
  assert.ok(csp.includes(`script-src '${PAGE_SCRIPT_HASH}'`));
  assert.ok(csp.includes(`style-src '${PAGE_STYLE_HASH}'`));
  // Nothing from elsewhere, and no inline handlers or style attributes the CSP would block.
  assert.doesNotMatch(html, /\b(src|href)="(https?:)?\/\//i);
  assert.doesNotMatch(html, /@import|url\(/i);
  assert.doesNotMatch(html, /\son[a-z]+=|\sstyle=/i);
  assert.match(html, /role="status" aria-live="polite"[^>]*\s+data-testid="health"/);
  assert.match(html, /<progress id="resilver-progress"/);
  assert.match(html, /<meta name="truecloud-actions" content="">/);
});

Deno.test("createCfsUiApp() page offers the Scrub button only when the action exists", async () => {
  const app = createCfsUiApp({
    status: sampleStatus,
    port: PORT,
    actions: { scrub: async () => {} },
  });
  const html = await (await get(app)("/")).text();
  assert.match(html, /<meta name="truecloud-actions" content="scrub">/);
});

Deno.test("GET /api/status answers the status as JSON, not cached, with the security headers", async () => {
  const status = sampleStatus();
  const app = createCfsUiApp({ status: () => Promise.resolve(status), port: PORT });
  const res = await get(app)("/api/status", { host: HOST, "sec-fetch-site": "same-origin" });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^application\/json/);
  assert.equal(res.headers.get("cache-control"), "no-store");
  assert.equal(res.headers.get("x-content-type-options"), "nosniff");
  assert.equal(res.headers.get("cross-origin-resource-policy"), "same-origin");
  assert.ok(res.headers.get("content-security-policy")?.includes("frame-ancestors 'none'"));
  assert.deepEqual(await res.json(), status);
});

Deno.test("GET /api/status refuses a malformed status, naming the field", async () => {
  const bad = sampleStatus() as unknown as { volumes: { slot: number }[] };
  bad.volumes[3].slot = 9;
  const app = createCfsUiApp({ status: () => bad as unknown as CfsStatus, port: PORT });
  const res = await get(app)("/api/status");
  assert.equal(res.status, 500);
  const e = await errorOf(res);
  assert.equal(e.code, "bad_status");
  assert.match(e.message, /^The CFS reported a malformed status at volumes\.3\.slot: /);
});

Deno.test("GET /api/status answers 503 when the status source fails", async () => {
  const log = new CapturingLogger();
  const app = createCfsUiApp({
    status: () => Promise.reject(new Error("Pool is importing")),
    port: PORT,
    log,
  });
  const res = await get(app)("/api/status");
  assert.equal(res.status, 503);
  assert.deepEqual(await errorOf(res), {
    code: "unavailable",
    message: "The CFS status is unavailable: Pool is importing",
  });
});

Deno.test("createCfsUiApp() refuses a foreign, wrong-port or missing Host with 421", async () => {
  let calls = 0;
  const app = createCfsUiApp({
    status: () => (calls++, sampleStatus()),
    port: PORT,
  });
  const hosts = [
    "evil.example",
    `evil.example:${PORT}`,
    "127.0.0.1:8471",
    "127.0.0.1",
    `localhost.:${PORT}`,
    `127.0.0.1:${PORT}.evil.example`,
    `user@127.0.0.1:${PORT}`,
    `0.0.0.0:${PORT}`,
    `127.0.0.2:${PORT}`,
  ];
  for (const host of hosts) {
    for (const path of ["/", "/api/status", "/api/events"]) {
      const res = await get(app)(path, { host });
      assert.equal(res.status, 421, `${host} ${path}`);
      const e = await errorOf(res);
      assert.equal(e.code, "bad_host");
      assert.ok(e.message.includes(JSON.stringify(host)), e.message);
    }
  }
  const missing = await get(app)("/api/status", {});
  assert.equal(missing.status, 421);
  assert.match((await errorOf(missing)).message, /^The request has no Host header/);
  assert.equal(calls, 0, "the status was never read");
  for (const host of [HOST, `localhost:${PORT}`, `LOCALHOST:${PORT}`, `[::1]:${PORT}`]) {
    assert.equal((await get(app)("/api/status", { host })).status, 200, host);
  }
});

Deno.test("createCfsUiApp() on port 80 also takes a Host without a port", async () => {
  const app = createCfsUiApp({ status: sampleStatus, port: 80 });
  assert.equal((await get(app)("/api/status", { host: "localhost" })).status, 200);
  assert.equal((await get(app)("/api/status", { host: "127.0.0.1:80" })).status, 200);
  assert.equal((await get(app)("/api/status", { host: "127.0.0.1:8080" })).status, 421);
});

Deno.test("createCfsUiApp() refuses cross-origin and cross-site requests with 403", async () => {
  const app = createCfsUiApp({ status: sampleStatus, port: PORT });
  const cases: [Record<string, string>, string][] = [
    [{ origin: "http://evil.example" }, "cross_origin"],
    [{ origin: "null" }, "cross_origin"],
    [{ origin: "http://127.0.0.1:8471" }, "cross_origin"],
    [{ origin: `https://127.0.0.1:${PORT}` }, "cross_origin"],
    [{ origin: `${ORIGIN}/` }, "cross_origin"],
    [{ "sec-fetch-site": "cross-site" }, "cross_site"],
    [{ "sec-fetch-site": "same-site" }, "cross_site"],
    [{ "sec-fetch-site": "something-new" }, "cross_site"],
  ];
  for (const [extra, code] of cases) {
    for (const path of ["/", "/api/status", "/api/events"]) {
      const res = await get(app)(path, { host: HOST, ...extra });
      assert.equal(res.status, 403, `${JSON.stringify(extra)} ${path}`);
      assert.equal((await errorOf(res)).code, code);
    }
  }
  // The address bar, the page itself, and tools that send neither header.
  const fine: Record<string, string>[] = [
    { "sec-fetch-site": "none" },
    { "sec-fetch-site": "same-origin", origin: ORIGIN },
    { origin: `http://localhost:${PORT}` },
    {},
  ];
  for (const extra of fine) {
    assert.equal((await get(app)("/api/status", { host: HOST, ...extra })).status, 200);
  }
});

Deno.test("POST /api/scrub needs the CSRF header and a JSON request", async () => {
  let scrubs = 0;
  const app = createCfsUiApp({
    status: sampleStatus,
    port: PORT,
    actions: { scrub: () => (scrubs++, Promise.resolve()) },
  });
  const refusals: [Record<string, string>, number, string][] = [
    [{ ...GOOD_POST, [CSRF_HEADER]: "" }, 403, "csrf"],
    [{ ...GOOD_POST, [CSRF_HEADER]: "0" }, 403, "csrf"],
    [{ ...GOOD_POST, "content-type": "text/plain" }, 403, "csrf"],
    [{ ...GOOD_POST, "content-type": "application/x-www-form-urlencoded" }, 403, "csrf"],
    [{ ...GOOD_POST, origin: "http://evil.example" }, 403, "cross_origin"],
    [{ ...GOOD_POST, "sec-fetch-site": "cross-site" }, 403, "cross_site"],
    [{ ...GOOD_POST, host: "evil.example" }, 421, "bad_host"],
  ];
  const noHeader = { ...GOOD_POST } as Record<string, string>;
  delete noHeader[CSRF_HEADER];
  refusals.push([noHeader, 403, "csrf"]);
  for (const [headers, status, code] of refusals) {
    const res = await app.request("/api/scrub", scrubRequest(headers));
    assert.equal(res.status, status, JSON.stringify(headers));
    assert.equal((await errorOf(res)).code, code);
  }
  for (const body of ["[]", "nope", '{"deep":true}', "null"]) {
    const res = await app.request("/api/scrub", scrubRequest(GOOD_POST, body));
    assert.equal(res.status, 400, body);
  }
  const big = await app.request(
    "/api/scrub",
    scrubRequest(GOOD_POST, `{"x":"${"a".repeat(2000)}"}`),
  );
  assert.equal(big.status, 413);
  assert.equal(scrubs, 0, "nothing refused started a scrub");
  const get405 = await get(app)("/api/scrub");
  assert.equal(get405.status, 405);
  assert.equal(get405.headers.get("allow"), "POST");

  for (const body of ["{}", ""]) {
    const ok = await app.request(
      "/api/scrub",
      scrubRequest({ ...GOOD_POST, "content-type": "application/json; charset=utf-8" }, body),
    );
    assert.equal(ok.status, 202);
    assert.deepEqual(await ok.json(), { started: true });
  }
  assert.equal(scrubs, 2);
});

Deno.test("POST /api/scrub reports a missing, failing or busy action", async () => {
  const none = createCfsUiApp({ status: sampleStatus, port: PORT });
  const r1 = await none.request("/api/scrub", scrubRequest(GOOD_POST));
  assert.equal(r1.status, 501);
  assert.equal((await errorOf(r1)).code, "not_supported");

  const log = new CapturingLogger();
  const failing = createCfsUiApp({
    status: sampleStatus,
    port: PORT,
    log,
    actions: { scrub: () => Promise.reject(new Error("Pool is busy")) },
  });
  const r2 = await failing.request("/api/scrub", scrubRequest(GOOD_POST));
  assert.equal(r2.status, 500);
  assert.deepEqual(await errorOf(r2), {
    code: "scrub_failed",
    message: "The scrub did not start: Pool is busy",
  });

  const refusing = createCfsUiApp({
    status: sampleStatus,
    port: PORT,
    actions: {
      scrub: () =>
        Promise.reject(new TrueCloudError("A scrub is running", { code: "busy", status: 409 })),
    },
  });
  const r3 = await refusing.request("/api/scrub", scrubRequest(GOOD_POST));
  assert.equal(r3.status, 409);
  assert.equal((await errorOf(r3)).code, "busy");

  let release = () => {};
  let scrubs = 0;
  const slow = createCfsUiApp({
    status: sampleStatus,
    port: PORT,
    actions: { scrub: () => (scrubs++, new Promise<void>((r) => release = r)) },
  });
  const first = slow.request("/api/scrub", scrubRequest(GOOD_POST));
  const second = await slow.request("/api/scrub", scrubRequest(GOOD_POST));
  assert.equal(second.status, 409);
  release();
  assert.equal((await first).status, 202);
  assert.equal(scrubs, 1);
});

Deno.test("createCfsUiApp() never answers 200 nor 500 to a hostile Host or Origin", async () => {
  let scrubs = 0;
  let reads = 0;
  const app = createCfsUiApp({
    status: () => (reads++, sampleStatus()),
    port: PORT,
    actions: { scrub: () => (scrubs++, Promise.resolve()) },
  });
  const allowedHosts = [HOST, `localhost:${PORT}`, `[::1]:${PORT}`];
  const allowedOrigins = allowedHosts.map((h) => `http://${h}`);
  const near = fc.constantFrom(
    "127.0.0.1",
    "localhost",
    "[::1]",
    "127.0.0.1:",
    `:${PORT}`,
    `${PORT}`,
    ".",
    "@",
    "evil.example",
    "http://",
    "https://",
    "/",
    "%00",
    " ",
    "\t",
  );
  // Pieces of legitimate values mixed with noise, and plain random strings.
  const hostile = fc.oneof(
    fc.string({ maxLength: 60 }),
    fc.array(fc.oneof(near, fc.string({ maxLength: 6 })), { minLength: 1, maxLength: 6 })
      .map((parts) => parts.join("")),
    fc.integer({ min: 0, max: 70000 }).filter((p) => p !== PORT).map((p) => `127.0.0.1:${p}`),
    fc.domain().map((d) => `${d}:${PORT}`),
  );
  // The value a header really carries (trimmed), or undefined when it cannot be sent at all.
  const sent = (name: string, value: string): string | undefined => {
    try {
      return new Headers({ [name]: value }).get(name) ?? undefined;
    } catch {
      return undefined;
    }
  };
  await fc.assert(
    fc.asyncProperty(
      // A good Host with a hostile Origin, a hostile Host with a good Origin, or both hostile.
      fc.oneof(hostile, fc.constantFrom(...allowedHosts)),
      fc.oneof(hostile, fc.constantFrom(...allowedOrigins)),
      fc.constantFrom("/", "/api/status", "/api/events", "/api/scrub"),
      fc.constantFrom(undefined, "none", "same-origin", "same-site", "cross-site", "x"),
      async (host, origin, path, site) => {
        const h = sent("host", host);
        const o = sent("origin", origin);
        fc.pre(h !== undefined && o !== undefined);
        fc.pre(!allowedHosts.includes(h!.toLowerCase()) || !allowedOrigins.includes(o!));
        const headers: Record<string, string> = {
          host: h!,
          origin: o!,
          [CSRF_HEADER]: "1",
          "content-type": "application/json",
        };
        if (site) headers["sec-fetch-site"] = site;
        const method = path === "/api/scrub" ? "POST" : "GET";
        const res = await app.request(path, {
          method,
          headers,
          body: method === "POST" ? "{}" : null,
        });
        await res.body?.cancel();
        assert.ok(
          res.status === 421 || res.status === 403,
          `${res.status} for ${host} / ${origin}`,
        );
      },
    ),
    { numRuns: 400 },
  );
  assert.equal(scrubs, 0);
  assert.equal(reads, 0);
});

// Reads Server-Sent Events from a response body, one at a time.
function eventReader(res: Response) {
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  return {
    async next(): Promise<{ event?: string; data?: string; comment?: string } | undefined> {
      while (true) {
        const end = buffer.indexOf("\n\n");
        if (end >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const out: { event?: string; data?: string; comment?: string } = {};
          for (const line of block.split("\n")) {
            if (line.startsWith(":")) out.comment = line.slice(1).trim();
            else if (line.startsWith("event: ")) out.event = line.slice(7);
            else if (line.startsWith("data: ")) out.data = line.slice(6);
          }
          if (out.event || out.comment !== undefined) return out;
          continue; // retry: line
        }
        const { value, done } = await reader.read();
        if (done) return undefined;
        buffer += value;
      }
    },
    cancel: () => reader.cancel(),
  };
}

Deno.test("GET /api/events pushes the status at once and again when it changes", async () => {
  const status = sampleStatus();
  const app = createCfsUiApp({
    status: () => structuredClone(status),
    port: PORT,
    pushIntervalMs: 20,
  });
  const res = await get(app)("/api/events");
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
  assert.equal(res.headers.get("cache-control"), "no-store");
  const events = eventReader(res);
  const first = await events.next();
  assert.equal(first?.event, "status");
  assert.deepEqual(JSON.parse(first!.data!), status);
  status.resilver!.doneBytes += GiB;
  const second = await events.next();
  assert.equal(second?.event, "status");
  assert.equal(JSON.parse(second!.data!).resilver.doneBytes, 2 * GiB);
  // Cancelling the stream stops its timer (the test's sanitizer checks).
  await events.cancel();
});

Deno.test("GET /api/events tells the page when the status is unavailable", async () => {
  let fail = true;
  const log = new CapturingLogger();
  const app = createCfsUiApp({
    status: () => fail ? Promise.reject(new Error("Pool is importing")) : sampleStatus(),
    port: PORT,
    pushIntervalMs: 20,
    log,
  });
  const events = eventReader(await get(app)("/api/events"));
  for (let i = 0; i < 3; i++) {
    const e = await events.next();
    assert.equal(e?.event, "unavailable");
    assert.deepEqual(JSON.parse(e!.data!), {
      message: "The CFS status is unavailable: Pool is importing",
    });
  }
  assert.equal(log.records.filter((r) => r.level === "warn").length, 1, "logged once");
  fail = false;
  let next = await events.next();
  while (next?.event === "unavailable") next = await events.next();
  assert.equal(next?.event, "status");
  await events.cancel();
});

Deno.test("GET /api/events limits open streams, and the signal ends them", async () => {
  const closing = new AbortController();
  const app = createCfsUiApp({
    status: sampleStatus,
    port: PORT,
    maxStreams: 2,
    signal: closing.signal,
  });
  const a = eventReader(await get(app)("/api/events"));
  const b = eventReader(await get(app)("/api/events"));
  const third = await get(app)("/api/events");
  assert.equal(third.status, 503);
  assert.equal((await errorOf(third)).code, "too_many_streams");
  assert.equal((await a.next())?.event, "status");
  assert.equal((await b.next())?.event, "status");
  // A cancelled stream frees its place.
  await a.cancel();
  const c = eventReader(await get(app)("/api/events"));
  assert.equal((await c.next())?.event, "status");
  closing.abort();
  assert.equal(await b.next(), undefined, "the stream ended");
  assert.equal(await c.next(), undefined, "the stream ended");
  assert.equal((await get(app)("/api/events")).status, 503);
});

Deno.test("HEAD /api/events answers the headers and opens no stream", async () => {
  const app = createCfsUiApp({ status: sampleStatus, port: PORT, maxStreams: 1 });
  for (let i = 0; i < 3; i++) {
    const head = await app.request("/api/events", { method: "HEAD", headers: { host: HOST } });
    assert.equal(head.status, 200);
    assert.match(head.headers.get("content-type") ?? "", /^text\/event-stream/);
    assert.equal(head.body, null);
  }
  const events = eventReader(await get(app)("/api/events"));
  assert.equal((await events.next())?.event, "status");
  await events.cancel();
});

Deno.test("createCfsUiApp() refuses bad options", () => {
  const cases: [unknown, RegExp][] = [
    [{ port: PORT }, /needs a status function/],
    [{ status: sampleStatus }, /port must be an integer from 1 to 65535, not undefined/],
    [{ status: sampleStatus, port: 0 }, /port must be an integer/],
    [{ status: sampleStatus, port: 70000 }, /port must be an integer/],
    [{ status: sampleStatus, port: 80.5 }, /port must be an integer/],
    [{ status: sampleStatus, port: PORT, pushIntervalMs: 0 }, /pushIntervalMs/],
    [{ status: sampleStatus, port: PORT, maxStreams: 0 }, /maxStreams/],
    [{ status: sampleStatus, port: PORT, actions: { scrub: "yes" } }, /scrub action/],
  ];
  for (const [opts, message] of cases) {
    assert.throws(
      () => createCfsUiApp(opts as Parameters<typeof createCfsUiApp>[0]),
      (e: unknown) => e instanceof ValidationError && message.test(e.message),
      JSON.stringify(opts),
    );
  }
});

Deno.test("serveCfsUi() binds to 127.0.0.1 only", () => {
  for (const hostname of ["0.0.0.0", "::", "localhost", "192.168.1.10", "::1"]) {
    assert.throws(
      () => serveCfsUi({ status: sampleStatus, hostname: hostname as "127.0.0.1" }),
      (e: unknown) =>
        e instanceof ValidationError &&
        e.message ===
          `The CFS UI listens on the loopback address 127.0.0.1 only, not "${hostname}"`,
    );
  }
  assert.throws(() => serveCfsUi({ status: sampleStatus, port: -1 }), ValidationError);
  assert.throws(
    () => serveCfsUi({ status: undefined as unknown as () => CfsStatus }),
    ValidationError,
  );
});

// Sends a GET of /api/status with a given Host over a plain socket (fetch sets its own Host).
async function rawGet(port: number, host: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(
      new TextEncoder().encode(
        `GET /api/status HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`,
      ),
    );
    let text = "";
    const buf = new Uint8Array(4096);
    for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    return text;
  } finally {
    conn.close();
  }
}

Deno.test("serveCfsUi() serves on loopback and close() ends open event streams", async () => {
  let scrubs = 0;
  const ui = serveCfsUi({
    status: sampleStatus,
    actions: { scrub: () => (scrubs++, Promise.resolve()) },
  });
  try {
    assert.equal(ui.url, `http://127.0.0.1:${ui.port}/`);
    const page = await fetch(ui.url);
    assert.equal(page.status, 200);
    assert.match(await page.text(), /^<!doctype html>/);
    const status = await fetch(`${ui.url}api/status`);
    assert.deepEqual(Object.keys(await status.json()).sort(), Object.keys(sampleStatus()).sort());
    const scrub = await fetch(`${ui.url}api/scrub`, {
      method: "POST",
      headers: { [CSRF_HEADER]: "1", "content-type": "application/json" },
      body: "{}",
    });
    assert.equal(scrub.status, 202);
    await scrub.body?.cancel();
    assert.equal(scrubs, 1);
    // A rebinding name or another port is refused on the real socket too.
    assert.match(await rawGet(ui.port, "evil.example"), /^HTTP\/1\.1 421 /);
    assert.match(await rawGet(ui.port, "127.0.0.1:1"), /^HTTP\/1\.1 421 /);
    assert.match(await rawGet(ui.port, `localhost:${ui.port}`), /^HTTP\/1\.1 200 /);
    const events = eventReader(await fetch(`${ui.url}api/events`));
    assert.equal((await events.next())?.event, "status");
    const closed = ui.close();
    assert.equal(await events.next(), undefined);
    await closed;
    await ui.close();
  } finally {
    await ui.close();
  }
});

Deno.test("serveCfsUi() says when its port is taken, and a gone client frees its stream", async () => {
  const ui = serveCfsUi({ status: sampleStatus, maxStreams: 1, pushIntervalMs: 20 });
  try {
    assert.throws(
      () => serveCfsUi({ status: sampleStatus, port: ui.port }),
      (e: unknown) =>
        e instanceof TrueCloudError && e.code === "listen_failed" &&
        e.message.startsWith(`The CFS UI cannot listen on 127.0.0.1:${ui.port}: `),
    );
    const gone = new AbortController();
    const first = await fetch(`${ui.url}api/events`, { signal: gone.signal });
    const events = eventReader(first);
    assert.equal((await events.next())?.event, "status");
    gone.abort();
    await events.cancel().catch(() => {});
    // The server notices the closed connection and lets another client in.
    let again: Response | undefined;
    for (let i = 0; i < 100; i++) {
      again = await fetch(`${ui.url}api/events`);
      if (again.status === 200) break;
      await again.body?.cancel();
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(again?.status, 200);
    await again?.body?.cancel();
  } finally {
    await ui.close();
  }
});

// The page's formatting functions, evaluated as the browser does.
const fmt = new Function(
  `${FORMAT_SOURCE}; return { fmtBytes, fmtRate, fmtPercent, fmtDuration, fmtEta, fmtMs, ` +
    `fmtUntil, shortId, plural, lossesText };`,
)() as Record<string, (...args: unknown[]) => string>;

Deno.test("page formatting: sizes, rates and percentages", () => {
  assert.equal(fmt.fmtBytes(0), "0 B");
  assert.equal(fmt.fmtBytes(1023), "1023 B");
  assert.equal(fmt.fmtBytes(1536), "1.50 KiB");
  assert.equal(fmt.fmtBytes(64 * GiB), "64.0 GiB");
  assert.equal(fmt.fmtBytes(320 * GiB), "320 GiB");
  assert.equal(fmt.fmtBytes(1024 * 1024 - 1), "1.00 MiB");
  assert.equal(fmt.fmtBytes(5 * 1024 ** 4), "5.00 TiB");
  assert.equal(fmt.fmtBytes(-1), "?");
  assert.equal(fmt.fmtBytes(NaN), "?");
  assert.equal(fmt.fmtRate(200 * 1024 * 1024), "200 MiB/s");
  assert.equal(fmt.fmtPercent(1, 3), "33.3%");
  assert.equal(fmt.fmtPercent(999_999, 1_000_000), "99.9%", "never 100% before the end");
  assert.equal(fmt.fmtPercent(5, 5), "100.0%");
  assert.equal(fmt.fmtPercent(1, 0), "0.0%");
  assert.equal(fmt.fmtMs(0.4), "<1 ms");
  assert.equal(fmt.fmtMs(3.25), "3.3 ms");
  assert.equal(fmt.fmtMs(42.4), "42 ms");
  assert.equal(fmt.fmtMs(undefined), "\u2014");
});

Deno.test("page formatting: time left, ids and losses", () => {
  assert.equal(fmt.fmtEta(44.2), "45 s left");
  assert.equal(fmt.fmtEta(150), "3 min left");
  assert.equal(fmt.fmtEta(3599), "1 h left");
  assert.equal(fmt.fmtEta(3600 + 5 * 60), "1 h 5 min left");
  assert.equal(fmt.fmtEta(2 * 86400 + 3 * 3600), "2 d 3 h left");
  assert.equal(fmt.fmtEta(undefined), "time left unknown");
  assert.equal(fmt.fmtUntil(1000 + 30 * 86400_000, 1000), "in 30 d");
  assert.equal(fmt.fmtUntil(1000, 2000), "ended");
  assert.equal(fmt.shortId("12D3KooWAbCdEfGhIjKlMnOpQrStUvWxYz"), "\u2026StUvWxYz");
  assert.equal(fmt.shortId("0b1c2d3e-aaaa-4bbb-8ccc-123456789abc"), "0b1c2d3e\u2026");
  assert.equal(fmt.shortId("short"), "short");
  assert.equal(fmt.shortId(undefined), "\u2014");
  assert.equal(fmt.lossesText("online", 3), "Can lose 3 more volumes");
  assert.equal(fmt.lossesText("degraded", 1), "Can lose 1 more volume");
  assert.equal(fmt.lossesText("degraded", 0), "Cannot lose another volume");
  assert.equal(fmt.lossesText("faulted", 0), "More volumes are lost than the pool can bear");
});

Deno.test("page formatting: any finite size formats with a unit and at most 4 digits", () => {
  fc.assert(
    fc.property(fc.double({ min: 0, max: 2 ** 60, noNaN: true }), (n) => {
      assert.match(fmt.fmtBytes(n), /^\d{1,4}(\.\d{1,2})? (B|KiB|MiB|GiB|TiB|PiB|EiB)$/);
    }),
  );
  fc.assert(
    fc.property(fc.double({ min: 0, max: 1e9, noNaN: true }), (s) => {
      assert.match(fmt.fmtEta(s), /^\d+ (s|min|h( \d+ min)?|d( \d+ h)?) left$/);
    }),
  );
});

Deno.test("the page's script parses", () => {
  // Compiles without running: a syntax error would throw here, not only in a browser.
  assert.equal(typeof new Function(PAGE_SCRIPT), "function");
});
