// End-to-end: a gateway with two serving Workers on one port.
import assert from "node:assert/strict";
import { signVpnRecord } from "../discovery/mod.ts";
import { ensureSelfSigned, Gateway } from "../gateway/mod.ts";
import { testConfig } from "./_config.ts";
import { newUuid, NodeIdentity } from "../protocol/mod.ts";

Deno.test("a gateway with two serving threads shares its store, its rate limit and its metrics", async () => {
  const home = await Deno.makeTempDir({ prefix: "truecloud-workers-" });
  const tls = await ensureSelfSigned(`${home}/tls`);
  const config = testConfig(home, { rateLimit: { burst: 6, perSecond: 0.001 }, workers: 2 });
  const gw = await Gateway.start(config, { tls });
  // A new client per request: a new connection each time, which the kernel spreads over the threads.
  const get = async (path: string, init?: RequestInit) => {
    const client = Deno.createHttpClient({ caCerts: [tls.cert], http2: false });
    try {
      const res = await fetch(`${gw.url}${path}`, { ...init, client });
      return { status: res.status, text: await res.text() };
    } finally {
      client.close();
    }
  };
  try {
    assert.equal(gw.noDelay, true);
    const g = await NodeIdentity.generate();
    const jws = await signVpnRecord(g, {
      v: 1,
      vpn: newUuid(),
      state: "soliciting",
      ips: ["8.8.8.8"],
      guestPort: 4001,
      guestKey: "ab".repeat(32),
    });
    const posted = await get("/discovery/records", {
      method: "POST",
      headers: { "content-type": "application/jose" },
      body: jws,
    });
    assert.equal(posted.status, 201, posted.text);
    // Whichever thread answers, the record is there (the other thread refreshed on the channel).
    const seen = [];
    for (let i = 0; i < 5; i++) seen.push((await get("/discovery/feed.rss")).text.includes(jws));
    assert.deepEqual(seen, [true, true, true, true, true]);
    assert.equal(gw.discovery.store.visible().length, 1, "the main thread sees it too");
    // Six requests so far; the shared bucket of 6 is empty, whichever thread answers next.
    const limited = await Promise.all([1, 2, 3, 4].map(() => get("/discovery/feed.rss")));
    assert.deepEqual(limited.map((r) => r.status), [429, 429, 429, 429]);
    const metrics = await get("/healthz");
    assert.equal(metrics.status, 200);
  } finally {
    await gw.stop();
  }
  // Metrics from a fresh gateway without a rate limit: every thread's requests are counted once.
  const gw2 = await Gateway.start({ ...config, rateLimit: false, kvPath: `${home}/replica2.kv` }, {
    tls,
  });
  try {
    for (let i = 0; i < 8; i++) {
      const client = Deno.createHttpClient({ caCerts: [tls.cert], http2: false });
      const res = await fetch(`${gw2.url}/discovery/feed.rss`, { client });
      await res.body?.cancel();
      client.close();
    }
    const client = Deno.createHttpClient({ caCerts: [tls.cert] });
    const text = await (await fetch(`${gw2.url}/metrics`, { client })).text();
    client.close();
    assert.match(
      text,
      /truecloud_http_requests_total\{method="GET",route="\/discovery\/feed.rss",status="200"\} 8\b/,
    );
    assert.match(text, /truecloud_discovery_records\{state="visible"\} 0/);
    assert.match(text, /truecloud_process_resident_memory_bytes \d+/);
  } finally {
    await gw2.stop();
    await Deno.remove(home, { recursive: true });
  }
});
