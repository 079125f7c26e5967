// End-to-end: three discovery replicas over real HTTPS, each with its own Deno KV on disk.
import assert from "node:assert/strict";
import { RecordPublisher } from "../discovery/mod.ts";
import { ensureSelfSigned, Gateway } from "../gateway/mod.ts";
import { testConfig } from "./_config.ts";
import { newUuid, NodeIdentity } from "../protocol/mod.ts";

const guestKey = () => "cd".repeat(32);

Deno.test("replicas: submit to one, stop two, still served; a restarted one catches up, a wiped one too", async () => {
  const home = await Deno.makeTempDir({ prefix: "truecloud-replicas-" });
  const tls = await ensureSelfSigned(`${home}/tls`);
  const client = Deno.createHttpClient({ caCerts: [tls.cert] });
  const f: typeof fetch = (i, init) => fetch(i, { ...init, client });
  const config = (i: number, port = 0) =>
    testConfig(home, { port, kvPath: `${home}/replica-${i}.kv` });
  const start = (i: number, port = 0) => Gateway.start(config(i, port), { tls, peerCa: tls.cert });
  const link = (rs: Gateway[]) => {
    for (const r of rs) {
      r.discovery.replicator.setPeers(rs.filter((p) => p !== r).map((p) => `${p.url}/discovery`));
    }
  };
  const until = async (cond: () => boolean, what: string) => {
    for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 25));
    assert.ok(cond(), what);
  };
  const feedCount = async (gw: Gateway) => {
    const xml = await (await f(`${gw.url}/discovery/feed.rss?count=100`)).text();
    return [...xml.matchAll(/<item>/g)].length;
  };

  let r = [await start(1), await start(2), await start(3)];
  const running = new Set(r);
  try {
    link(r);
    const g = await NodeIdentity.generate();
    const pub = new RecordPublisher({
      guardian: g,
      endpoints: [`${r[0].url}/discovery`],
      fetch: f,
    });
    const first = {
      v: 1 as const,
      state: "soliciting" as const,
      ips: ["8.8.8.8"],
      guestPort: 4001,
      guestKey: guestKey(),
    };
    for (let i = 0; i < 3; i++) await pub.publish({ ...first, vpn: newUuid() });
    await until(
      () => r.every((x) => x.discovery.store.visible().length === 3),
      "all replicas have the records",
    );

    // Stop two; the one left still serves everything it had.
    const port2 = r[1].port;
    await r[0].stop();
    running.delete(r[0]);
    await r[1].stop();
    running.delete(r[1]);
    assert.equal(await feedCount(r[2]), 3);

    // Submissions go on at the survivor while replica 2 is down.
    const pub3 = new RecordPublisher({
      guardian: g,
      endpoints: [`${r[2].url}/discovery`],
      fetch: f,
    });
    for (let i = 0; i < 2; i++) await pub3.publish({ ...first, vpn: newUuid() });

    // Replica 2 comes back on its old store and port, and catches up.
    const back = await start(2, port2);
    running.add(back);
    r = [back, r[2]];
    link(r);
    await until(() => back.discovery.store.visible().length === 5, "restarted replica caught up");
    assert.equal(await feedCount(back), 5);

    // Replica 1 comes back with its store wiped: a new replica id, and it pulls everything.
    await Deno.remove(`${home}/replica-1.kv`);
    await Deno.remove(`${home}/replica-1.kv-shm`).catch(() => {});
    await Deno.remove(`${home}/replica-1.kv-wal`).catch(() => {});
    const wiped = await start(1);
    running.add(wiped);
    r = [wiped, ...r];
    link(r);
    await until(() => wiped.discovery.store.visible().length === 5, "wiped replica caught up");
  } finally {
    for (const x of running) await x.stop();
    client.close();
    await Deno.remove(home, { recursive: true });
  }
});
