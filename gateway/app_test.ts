import assert from "node:assert/strict";
import fc from "fast-check";
import { SignJWT } from "jose";
import { newUuid, NodeIdentity } from "../protocol/mod.ts";
import { DiscoveryService, signVpnRecord } from "../discovery/mod.ts";
import { createGatewayApp, type GatewayAppDeps } from "./app.ts";

async function gateway(over: Partial<GatewayAppDeps> = {}) {
  const svc = await DiscoveryService.open({
    kvPath: ":memory:",
    publicBaseUrl: "https://127.0.0.1:8443/discovery",
  });
  const app = createGatewayApp({
    discovery: svc.app,
    feed: svc.renderFeed,
    rateLimit: false,
    ...over,
  });
  const client = { remoteAddr: { hostname: "198.51.100.1" } };
  const req = (path: string, init?: RequestInit) => app.request(path, init, client);
  return { svc, app, req, [Symbol.asyncDispose]: () => svc.close() };
}

const guestKey = () => "ab".repeat(32);
async function record(g: NodeIdentity, over: Record<string, unknown> = {}) {
  return await signVpnRecord(g, {
    v: 1,
    vpn: newUuid(),
    state: "soliciting",
    ips: ["8.8.8.8"],
    guestPort: 4001,
    guestKey: guestKey(),
    ...over,
  } as never);
}
const post = (body: BodyInit, type = "application/jose"): RequestInit => ({
  method: "POST",
  headers: { "content-type": type },
  body,
});

Deno.test("POST /discovery/records stores a signed record: 201, then 200 unchanged, then in the feed and JSON", async () => {
  await using gw = await gateway();
  const g = await NodeIdentity.generate();
  const jws = await record(g);
  const r1 = await gw.req("/discovery/records", post(jws));
  assert.equal(r1.status, 201);
  const b1 = await r1.json();
  assert.equal(b1.status, "stored");
  assert.equal(b1.guardian, g.nodeId);
  const r2 = await gw.req("/discovery/records", post(jws + "\n"));
  assert.equal(r2.status, 200);
  assert.equal((await r2.json()).status, "unchanged");
  const feed = await gw.req("/discovery/feed.rss");
  assert.equal(feed.status, 200);
  assert.equal(feed.headers.get("content-type"), "application/rss+xml; charset=utf-8");
  assert.ok((await feed.text()).includes(jws));
  const vpn = await gw.req(`/discovery/vpns/${b1.vpn}`);
  assert.equal(vpn.status, 200);
  const tag = vpn.headers.get("etag")!;
  assert.ok(tag, "the JSON answer has an ETag");
  const again = await gw.req(`/discovery/vpns/${b1.vpn}`, { headers: { "if-none-match": tag } });
  assert.equal(again.status, 304);
  const body = await vpn.json();
  assert.equal(body.records[0].jws, jws);
  assert.equal(body.records[0].guardian, g.nodeId);
});

Deno.test("POST /discovery/records refuses bad submissions with a 4xx and a reason", async () => {
  await using gw = await gateway();
  const g = await NodeIdentity.generate();
  const good = await record(g);
  const cases: [string, RequestInit, number, string][] = [
    ["wrong type", post(good, "text/plain"), 415, "unsupported_media_type"],
    ["not a JWS", post("hello"), 400, "malformed"],
    ["oversized", post("a".repeat(9000)), 413, "too_large"],
    ["private address", post(await record(g, { ips: ["10.0.0.1"] })), 400, "address_not_public"],
    ["bad port", post(await record(g, { guestPort: 70000 })), 400, "invalid"],
    ["unknown member", post(await record(g, { extra: 1 })), 400, "invalid"],
    ["bad key", post(await record(g, { guestKey: "xyz" })), 400, "invalid"],
    ["duplicate ips", post(await record(g, { ips: ["8.8.8.8", "8.8.8.8"] })), 400, "invalid"],
    [
      "expired",
      post(
        await signVpnRecord(
          g,
          JSON.parse(atob(good.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).dat,
          {
            clock: { now: () => Date.now() - 3 * 86_400_000 },
            ttlSeconds: 3600,
          },
        ),
      ),
      401,
      "expired",
    ],
    [
      "tampered",
      post(good.replace(/\.(.)/, (_m, c) => `.${c === "e" ? "f" : "e"}`)),
      401,
      "signature_invalid",
    ],
  ];
  for (const [what, init, status, code] of cases) {
    const res = await gw.req("/discovery/records", init);
    const body = await res.json();
    assert.equal(res.status, status, `${what}: ${JSON.stringify(body)}`);
    assert.equal(body.error.code, code, what);
    assert.ok(body.error.message.length > 0);
  }
  // Signed by one key, claiming another's kid and iss.
  const other = await NodeIdentity.generate();
  const forged = await new SignJWT({
    dat: { v: 1, vpn: newUuid(), state: "withdrawn", reason: "full" },
  })
    .setProtectedHeader({ alg: "EdDSA", typ: "truecloud-vpn-record+jwt", kid: other.nodeId })
    .setIssuer(other.nodeId).setAudience("truecloud:discovery").setIssuedAt().setExpirationTime(
      "1h",
    )
    .setJti(newUuid()).sign(g.privateKey);
  const res = await gw.req("/discovery/records", post(forged));
  assert.equal(res.status, 401);
  assert.equal((await res.json()).error.code, "signature_invalid");
  assert.equal(gw.svc.store.all().length, 0, "nothing was stored");
});

Deno.test("GET /discovery routes validate their parameters", async () => {
  await using gw = await gateway();
  for (const q of ["0", "101", "-1", "abc", "1e3", "99999999999999999999"]) {
    const res = await gw.req(`/discovery/feed.rss?count=${q}`);
    assert.equal(res.status, 400, q);
    assert.equal((await res.json()).error.code, "invalid");
  }
  assert.equal((await gw.req("/discovery/vpns/not-a-uuid")).status, 400);
  assert.equal((await gw.req("/discovery/vpns/6F1C0B6E-5A52-4F0E-9A41-3F6B2B8F3C11")).status, 400);
  const missing = await gw.req(`/discovery/vpns/${newUuid()}`);
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).error.code, "not_found");
  assert.equal((await gw.req("/discovery/replication/log?after=x")).status, 400);
  assert.equal((await gw.req("/nope")).status, 404);
  for (
    const [method, path, allow] of [
      ["DELETE", "/discovery/feed.rss", "GET, HEAD"],
      ["GET", "/discovery/records", "POST"],
      ["PUT", `/discovery/vpns/${newUuid()}`, "GET, HEAD"],
      ["POST", "/healthz", "GET, HEAD"],
    ]
  ) {
    const res = await gw.req(path, { method });
    assert.equal(res.status, 405, `${method} ${path}`);
    assert.equal(res.headers.get("allow"), allow);
    assert.equal((await res.json()).error.code, "method_not_allowed");
  }
  const head = await gw.req("/discovery/feed.rss", { method: "HEAD" });
  assert.equal(head.status, 200);
  assert.equal(await head.text(), "");
});

Deno.test("the gateway answers /healthz and /metrics in Prometheus text format", async () => {
  await using gw = await gateway();
  const h = await gw.req("/healthz");
  assert.equal(h.status, 200);
  assert.equal((await h.json()).status, "ok");
  await gw.req("/discovery/feed.rss");
  const m = await gw.req("/metrics");
  assert.equal(m.status, 200);
  assert.match(m.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
  const text = await m.text();
  assert.match(
    text,
    /truecloud_http_requests_total\{method="GET",route="\/discovery\/feed.rss",status="200"\} 1/,
  );
  assert.match(text, /# TYPE truecloud_http_request_duration_seconds histogram/);
});

Deno.test("the gateway sets security headers on every answer", async () => {
  await using gw = await gateway();
  for (const path of ["/healthz", "/discovery/feed.rss", "/nope"]) {
    const res = await gw.req(path);
    await res.body?.cancel();
    assert.match(res.headers.get("strict-transport-security")!, /max-age=63072000/);
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    assert.equal(
      res.headers.get("content-security-policy"),
      "default-src 'none'; frame-ancestors 'none'",
    );
  }
});

Deno.test("the gateway limits each client's rate with 429 and Retry-After, loopback exempt", async () => {
  await using gw = await gateway({ rateLimit: { burst: 3, perSecond: 0.01 } });
  const codes = [];
  for (let i = 0; i < 5; i++) {
    const res = await gw.req("/discovery/feed.rss");
    codes.push(res.status);
    if (res.status === 429) {
      assert.equal((await res.json()).error.code, "rate_limited");
      assert.equal(res.headers.get("x-content-type-options"), "nosniff");
      assert.ok(Number(res.headers.get("retry-after")) > 0);
    } else await res.body?.cancel();
  }
  assert.deepEqual(codes, [200, 200, 200, 429, 429]);
  const other = await gw.app.request("/discovery/feed.rss", {}, {
    remoteAddr: { hostname: "198.51.100.2" },
  });
  assert.equal(other.status, 200);
  await other.body?.cancel();
  for (let i = 0; i < 5; i++) {
    const local = await gw.app.request("/discovery/feed.rss", {}, {
      remoteAddr: { hostname: "127.0.0.1" },
    });
    assert.equal(local.status, 200);
    await local.body?.cancel();
  }
});

Deno.test("the gateway refuses a request body over its limit with 413", async () => {
  await using gw = await gateway({ maxBodyBytes: 2048 });
  const res = await gw.req("/discovery/records", post("a".repeat(4096)));
  assert.equal(res.status, 413);
  assert.equal((await res.json()).error.code, "too_large");
});

Deno.test("property: random and mutated submissions never crash the API and store only valid records", async () => {
  await using gw = await gateway();
  const guardians = await Promise.all([1, 2, 3].map(() => NodeIdentity.generate()));
  const valid = await Promise.all(guardians.map((g) => record(g)));
  const b64 = (o: unknown) =>
    btoa(JSON.stringify(o)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const accepted = new Set<string>();
  const body = fc.oneof(
    fc.string({ maxLength: 300 }),
    fc.constantFrom(...valid),
    // one-character mutation of a valid record
    fc.tuple(fc.constantFrom(...valid), fc.nat(), fc.string({ minLength: 1, maxLength: 1 })).map(
      ([j, i, c]) => {
        const k = i % j.length;
        return j.slice(0, k) + c + j.slice(k + 1);
      },
    ),
    // a valid record with a segment swapped from another
    fc.tuple(fc.constantFrom(...valid), fc.constantFrom(...valid), fc.nat({ max: 2 })).map(
      ([a, b, seg]) => {
        const pa = a.split(".");
        pa[seg] = b.split(".")[seg];
        return pa.join(".");
      },
    ),
    // attacker-made JWS with random header and claims, unsigned or signed with garbage
    fc.tuple(fc.jsonValue(), fc.jsonValue(), fc.string({ maxLength: 90 })).map(([h, p, s]) =>
      `${b64(h)}.${b64(p)}.${btoa(s).replace(/=+$/, "")}`
    ),
    fc.tuple(fc.jsonValue()).map(([p]) =>
      `${b64({ alg: "none", typ: "truecloud-vpn-record+jwt", kid: guardians[0].nodeId })}.${
        b64(p)
      }.`
    ),
  );
  const type = fc.constantFrom(
    "application/jose",
    "application/jose; charset=utf-8",
    "text/plain",
    "",
  );
  await fc.assert(
    fc.asyncProperty(body, type, async (b, t) => {
      const res = await gw.req("/discovery/records", post(b, t));
      assert.ok(res.status < 500, `status ${res.status}`);
      const json = await res.json();
      if (res.status < 300) {
        assert.ok(valid.includes(b.trim()), "only a validly signed record is accepted");
        accepted.add(b.trim());
      } else {
        assert.equal(typeof json.error.code, "string");
        assert.equal(typeof json.error.message, "string");
      }
    }),
    { numRuns: 400 },
  );
  for (const r of gw.svc.store.all()) {
    assert.ok(valid.includes(r.jws), "store holds only valid records");
  }
  assert.equal(gw.svc.store.all().length, accepted.size);
});

Deno.test("the feed's fast path answers exactly as the routed answer does", async () => {
  await using gw = await gateway();
  const g = await NodeIdentity.generate();
  for (let i = 0; i < 3; i++) await gw.svc.store.offer(await record(g));
  const app = createGatewayApp({
    discovery: gw.svc.app,
    feed: gw.svc.renderFeed,
    rateLimit: false,
  });
  const fast = await app.request("/discovery/feed.rss?count=5");
  const routed = await app.request("/discovery/feed.rss?count=5&via=router"); // not plain: routed
  assert.equal(fast.status, 200);
  assert.equal(routed.status, 200);
  const headers = (r: Response) =>
    [...r.headers].filter(([k]) => k !== "date" && k !== "content-length").sort();
  assert.deepEqual(headers(fast), headers(routed));
  const [a, b] = [await fast.text(), await routed.text()];
  assert.equal([...a.matchAll(/<item>/g)].length, 3);
  assert.equal([...b.matchAll(/<item>/g)].length, 3);
  for (const q of ["?count=0", "?count=101", "?count=abc", "?count=5&count=6"]) {
    const res = await app.request(`/discovery/feed.rss${q}`);
    assert.equal(res.status, q === "?count=5&count=6" ? 200 : 400, q);
    await res.body?.cancel();
  }
  const m = await (await app.request("/metrics")).text();
  assert.match(
    m,
    /truecloud_http_requests_total\{method="GET",route="\/discovery\/feed.rss",status="200"\} 3/,
  );
});
