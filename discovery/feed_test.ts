import assert from "node:assert/strict";
import Parser from "rss-parser";
import { parseFeed } from "@rowanmanning/feed-parser";
import fc from "fast-check";
import { ManualClock, NodeIdentity } from "../protocol/mod.ts";
import { DISCOVERY_NS, FeedRenderer, sample } from "./feed.ts";
import { readFeed } from "./feed_reader.ts";
import { RecordStore } from "./store.ts";
import { soliciting } from "./_test_util.ts";

async function storeWith(n: number, clock = new ManualClock()) {
  const store = await RecordStore.open(":memory:", { clock });
  const gs = await Promise.all(
    Array.from({ length: Math.min(n, 4) }, () => NodeIdentity.generate()),
  );
  for (let i = 0; i < n; i++) {
    await store.offer(
      await soliciting(gs[i % gs.length], { ips: ["8.8.8.8", "2606:4700::1111"] }, { clock }),
    );
  }
  return store;
}

const base = "https://127.0.0.1:8443/discovery";

Deno.test("FeedRenderer.render() makes RSS 2.0 that rss-parser reads, with every tc: field", async () => {
  const store = await storeWith(5);
  try {
    const xml = new FeedRenderer({ baseUrl: base }).render(store.visible(), 20);
    const parser = new Parser({
      customFields: {
        item: [
          ["tc:vpn", "vpn"],
          ["tc:ip", "ips", { keepArray: true }],
          ["tc:guestPort", "port"],
          [
            "tc:guestKey",
            "key",
          ],
          ["tc:guardian", "guardian"],
          ["tc:signature", "sig"],
        ],
      },
    });
    const feed = await parser.parseString(xml);
    assert.equal(feed.title, "True Cloud: management VPNs soliciting members");
    assert.equal(feed.items.length, 5);
    const byJws = new Map(store.visible().map((r) => [r.jws, r]));
    for (const item of feed.items) {
      const it = item as unknown as Record<string, unknown>;
      const r = byJws.get(it.sig as string)!;
      assert.ok(r, "signature is a stored JWS byte for byte");
      assert.equal(r.data.state, "soliciting");
      if (r.data.state !== "soliciting") continue;
      assert.equal(it.vpn, r.data.vpn);
      assert.deepEqual(it.ips, r.data.ips);
      assert.equal(it.port, String(r.data.guestPort));
      assert.equal(it.key, r.data.guestKey);
      assert.equal(it.guardian, r.guardian);
      assert.equal(item.title, `VPN ${r.data.vpn}`);
      assert.equal(item.link, `${base}/vpns/${r.data.vpn}`);
      assert.equal(new Date(item.pubDate!).getTime(), r.issuedAt * 1000);
    }
  } finally {
    store.close();
  }
});

Deno.test("FeedRenderer.render() makes RSS 2.0 that @rowanmanning/feed-parser reads", async () => {
  const store = await storeWith(3);
  try {
    const xml = new FeedRenderer({ baseUrl: base }).render(store.visible(), 20);
    const feed = parseFeed(xml);
    assert.equal(feed.meta.type, "rss");
    assert.equal(feed.meta.version, "2.0");
    assert.equal(feed.url, `${base}/feed.rss`);
    assert.equal(feed.items.length, 3);
    const guids = new Set(
      store.visible().map((r) =>
        `urn:truecloud:vpn-record:${r.data.vpn}:${r.guardian}:${r.issuedAt}`
      ),
    );
    for (const item of feed.items) {
      assert.ok(guids.has(item.id!), item.id!);
      assert.ok(item.title?.startsWith("VPN "));
      assert.ok(item.published instanceof Date);
    }
  } finally {
    store.close();
  }
});

Deno.test("readFeed() verifies every item of a rendered feed", async () => {
  const store = await storeWith(7);
  try {
    const xml = new FeedRenderer({ baseUrl: base }).render(store.visible(), 100);
    const { records, rejected } = await readFeed(xml);
    assert.equal(rejected.length, 0);
    assert.equal(records.length, 7);
    assert.ok(xml.includes(`xmlns:tc="${DISCOVERY_NS}"`));
  } finally {
    store.close();
  }
});

Deno.test("readFeed() refuses items whose readable fields differ from the signed record", async () => {
  const store = await storeWith(2);
  try {
    const xml = new FeedRenderer({ baseUrl: base }).render(store.visible(), 100);
    const port = xml.match(/<tc:guestPort>(\d+)<\/tc:guestPort>/)![1];
    const tampered = xml.replace(
      `<tc:guestPort>${port}</tc:guestPort>`,
      "<tc:guestPort>1</tc:guestPort>",
    );
    const { records, rejected } = await readFeed(tampered);
    assert.equal(records.length, 1);
    assert.deepEqual(rejected.map((r) => r.code), ["mismatch"]);
    const forged = xml.replace(
      /<tc:signature>([^<]{20})/,
      (_m, p) => `<tc:signature>${p.slice(0, 19)}x`,
    );
    assert.equal((await readFeed(forged)).rejected.length, 1);
    await assert.rejects(readFeed('<rss version="2.0"><channel/></rss>'), /does not declare/);
    await assert.rejects(readFeed("<html>"), /not well-formed/);
    await assert.rejects(readFeed("<html></html>"), /not RSS/);
  } finally {
    store.close();
  }
});

Deno.test("FeedRenderer.render() draws a random selection bounded by count", async () => {
  const store = await storeWith(10);
  try {
    const feed = new FeedRenderer({ baseUrl: base });
    const seen = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const xml = feed.render(store.visible(), 3);
      const sigs = [...xml.matchAll(/<tc:signature>([^<]+)</g)].map((m) => m[1]);
      assert.equal(sigs.length, 3);
      assert.equal(new Set(sigs).size, 3);
      sigs.forEach((s) => seen.add(s));
    }
    assert.equal(seen.size, 10, "every record is drawn sooner or later");
    assert.equal([...feed.render([], 5).matchAll(/<item>/g)].length, 0);
  } finally {
    store.close();
  }
});

Deno.test("sample() returns min(k, n) distinct elements of the population", () => {
  fc.assert(fc.property(fc.uniqueArray(fc.integer()), fc.nat({ max: 50 }), (items, k) => {
    const s = sample(items, k);
    assert.equal(s.length, Math.min(k, items.length));
    assert.equal(new Set(s).size, s.length);
    assert.ok(s.every((x) => items.includes(x)));
  }));
});

Deno.test("property: readFeed() refuses hostile documents and items without crashing", async () => {
  const store = await storeWith(2);
  try {
    const xml = new FeedRenderer({ baseUrl: base }).render(store.visible(), 10);
    const mutation = fc.tuple(
      fc.nat({ max: xml.length - 1 }),
      fc.nat({ max: 200 }),
      fc.string({ maxLength: 40 }),
    )
      .map(([at, del, ins]) => xml.slice(0, at) + ins + xml.slice(at + del));
    const doc = fc.oneof(
      fc.string({ maxLength: 500 }),
      mutation,
      fc.constant('<!DOCTYPE x [<!ENTITY a "aaaa">]><rss/>'),
    );
    await fc.assert(
      fc.asyncProperty(doc, async (d) => {
        try {
          const { records, rejected } = await readFeed(d);
          // Whatever survives verification is a record the store really holds.
          for (const r of records) assert.ok(store.visible().some((s) => s.jws === r.jws));
          assert.ok(records.length + rejected.length >= 0);
        } catch (e) {
          assert.equal((e as Error).name, "ValidationError", String(e));
        }
      }),
      { numRuns: 300 },
    );
  } finally {
    store.close();
  }
});
