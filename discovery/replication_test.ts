import assert from "node:assert/strict";
import { Hono } from "hono";
import { NodeIdentity, toHttpError } from "../protocol/mod.ts";
import { DiscoveryService } from "./service.ts";
import { soliciting } from "./_test_util.ts";

// Three replicas wired to each other through an in-process fetch that can cut any replica off.
async function cluster(n = 3) {
  const down = new Set<string>();
  const apps = new Map<string, Hono>();
  const urls = Array.from({ length: n }, (_, i) => `http://replica-${i}.test/discovery`);
  const fetchVia = (from: string): typeof fetch => (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const base = `${url.origin}/discovery`;
    if (down.has(base) || down.has(from)) {
      return Promise.reject(new TypeError("connection refused"));
    }
    return Promise.resolve(apps.get(base)!.request(url.pathname + url.search, init));
  };
  const services: DiscoveryService[] = [];
  for (const url of urls) {
    const svc = await DiscoveryService.open({
      kvPath: ":memory:",
      publicBaseUrl: url,
      peers: urls.filter((u) => u !== url),
      fetch: fetchVia(url),
    });
    const root = new Hono().route("/discovery", svc.app);
    root.onError((err, c) => {
      const { status, body } = toHttpError(err);
      return c.json(body, status as 400);
    });
    apps.set(url, root);
    services.push(svc);
  }
  return {
    urls,
    services,
    down,
    apps,
    async [Symbol.asyncDispose]() {
      for (const s of services) await s.close();
    },
  };
}

Deno.test("Replicator.pullAll() brings a record accepted by one replica to the others", async () => {
  await using c = await cluster();
  const g = await NodeIdentity.generate();
  const jws = await soliciting(g);
  assert.equal((await c.services[0].store.offer(jws)).status, "stored");
  await c.services[1].replicator.pullAll();
  await c.services[2].replicator.pullAll();
  for (const s of c.services) assert.deepEqual(s.store.visible().map((r) => r.jws), [jws]);
});

Deno.test("Replicator.push() delivers a submission to peers at once", async () => {
  await using c = await cluster();
  const g = await NodeIdentity.generate();
  const jws = await soliciting(g);
  const res = await c.apps.get(c.urls[0])!.request("/discovery/records", {
    method: "POST",
    headers: { "content-type": "application/jose" },
    body: jws,
  });
  assert.equal(res.status, 201);
  for (let i = 0; i < 50 && c.services.some((s) => s.store.visible().length === 0); i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  for (const s of c.services) assert.equal(s.store.visible().length, 1);
});

Deno.test("a replica that was cut off catches up, and one that lost its store pulls everything again", async () => {
  await using c = await cluster();
  const g = await NodeIdentity.generate();
  c.down.add(c.urls[2]);
  const jwss = [];
  for (let i = 0; i < 5; i++) {
    const j = await soliciting(g);
    jwss.push(j);
    await c.services[i % 2].store.offer(j);
  }
  await Promise.all(c.services.map((s) => s.replicator.pullAll()));
  assert.equal(c.services[0].store.visible().length, 5);
  assert.equal(c.services[1].store.visible().length, 5);
  assert.equal(c.services[2].store.visible().length, 0);
  c.down.delete(c.urls[2]);
  const reports = await c.services[2].replicator.pullAll();
  assert.ok(reports.every((r) => !r.error));
  assert.equal(c.services[2].store.visible().length, 5);
  // Replica 0 loses its store: a fresh one with a new replica id takes its place.
  const fresh = await DiscoveryService.open({
    kvPath: ":memory:",
    publicBaseUrl: c.urls[0],
    peers: c.urls.slice(1),
    fetch: (input, init) => {
      const url = new URL(String(input));
      return Promise.resolve(
        c.apps.get(`${url.origin}/discovery`)!.request(url.pathname + url.search, init),
      );
    },
  });
  try {
    assert.notEqual(fresh.store.replicaId, c.services[0].store.replicaId);
    await fresh.replicator.pullAll();
    assert.equal(fresh.store.visible().length, 5);
  } finally {
    await fresh.close();
  }
});

Deno.test("Replicator.pull() refuses forged records from a lying peer", async () => {
  const g = await NodeIdentity.generate();
  const good = await soliciting(g);
  const [h, p, s] = good.split(".");
  const forged = `${h}.${p}.${s.slice(0, -4)}AAAA`;
  const liar = new Hono().get(
    "/discovery/replication/log",
    (ctx) =>
      ctx.json({
        replica: crypto.randomUUID(),
        records: [{ seq: 1, jws: forged }, { seq: 2, jws: "junk" }],
        last: 2,
        more: false,
      }),
  );
  const svc = await DiscoveryService.open({
    kvPath: ":memory:",
    publicBaseUrl: "http://x/discovery",
    peers: ["http://liar.test/discovery"],
    fetch: (input, init) =>
      Promise.resolve(
        liar.request(new URL(String(input)).pathname + new URL(String(input)).search, init),
      ),
  });
  try {
    const [report] = await svc.replicator.pullAll();
    assert.equal(report.received, 2);
    assert.equal(report.refused, 2);
    assert.equal(svc.store.all().length, 0);
  } finally {
    await svc.close();
  }
});
