import assert from "node:assert/strict";
import {
  ConflictError,
  ManualClock,
  newUuid,
  NodeIdentity,
  SignatureError,
  TrueCloudError,
  ValidationError,
} from "../protocol/mod.ts";
import { signVpnRecord } from "./record.ts";
import { RECORDS_PER_GUARDIAN, RecordStore } from "./store.ts";
import { soliciting } from "./_test_util.ts";

const T0 = Date.UTC(2026, 10, 25, 12);

Deno.test("RecordStore.offer() stores a valid record, then answers unchanged for the same one", async () => {
  const store = await RecordStore.open(":memory:");
  try {
    const g = await NodeIdentity.generate();
    const jws = await soliciting(g);
    assert.equal((await store.offer(jws)).status, "stored");
    assert.equal((await store.offer(jws)).status, "unchanged");
    assert.equal(store.visible().length, 1);
    assert.equal(store.seq, 1);
  } finally {
    store.close();
  }
});

Deno.test("RecordStore.offer() replaces an older record of the same key and refuses a stale one", async () => {
  const clock = new ManualClock(T0);
  const store = await RecordStore.open(":memory:", { clock });
  try {
    const g = await NodeIdentity.generate();
    const vpn = newUuid();
    const old = await soliciting(g, { vpn, guestPort: 1000 }, { clock });
    clock.advance(2000);
    const newer = await soliciting(g, { vpn, guestPort: 2000 }, { clock });
    await store.offer(newer);
    await assert.rejects(
      store.offer(old),
      (e: ConflictError) => e.code === "stale" && e.status === 409,
    );
    const vis = store.visibleForVpn(vpn);
    assert.equal(vis.length, 1);
    assert.equal(vis[0].data.state === "soliciting" && vis[0].data.guestPort, 2000);
  } finally {
    store.close();
  }
});

Deno.test("RecordStore.visible() omits withdrawn and expired records", async () => {
  const clock = new ManualClock(T0);
  const store = await RecordStore.open(":memory:", { clock });
  try {
    const g = await NodeIdentity.generate();
    const vpn = newUuid();
    await store.offer(await soliciting(g, { vpn }, { clock }));
    await store.offer(await soliciting(g, {}, { clock, ttlSeconds: 60 }));
    assert.equal(store.visible().length, 2);
    clock.advance(1000);
    await store.offer(
      await signVpnRecord(g, { v: 1, vpn, state: "withdrawn", reason: "full" }, { clock }),
    );
    assert.equal(store.visible().length, 1);
    clock.advance(61_000);
    assert.equal(store.visible().length, 0);
    assert.equal(store.all().length, 2);
  } finally {
    store.close();
  }
});

Deno.test("RecordStore.collectGarbage() keeps a withdrawal as long as the record it replaced", async () => {
  const clock = new ManualClock(T0);
  const store = await RecordStore.open(":memory:", { clock });
  try {
    const g = await NodeIdentity.generate();
    const vpn = newUuid();
    const long = await soliciting(g, { vpn }, { clock, ttlSeconds: 3600 });
    await store.offer(long);
    clock.advance(1000);
    await store.offer(
      await signVpnRecord(g, { v: 1, vpn, state: "withdrawn", reason: "full" }, {
        clock,
        ttlSeconds: 60,
      }),
    );
    clock.advance(120_000); // the withdrawal has expired, the old record has not
    assert.equal(await store.collectGarbage(), 0);
    await assert.rejects(store.offer(long), (e: ConflictError) => e.code === "stale");
    clock.advance(3600_000);
    assert.equal(await store.collectGarbage(), 1);
    assert.equal(store.all().length, 0);
    const log = await store.logAfter(0, 100);
    assert.deepEqual(log.records, []);
  } finally {
    store.close();
  }
});

Deno.test("RecordStore.offer() refuses forged, expired and private-address records and stores nothing", async () => {
  const clock = new ManualClock(T0);
  const store = await RecordStore.open(":memory:", { clock });
  try {
    const g = await NodeIdentity.generate();
    const jws = await soliciting(g, {}, { clock });
    const [h, p, s] = jws.split(".");
    const sig = s.slice(0, 10) + (s[10] === "A" ? "B" : "A") + s.slice(11);
    await assert.rejects(store.offer(`${h}.${p}.${sig}`), SignatureError);
    await assert.rejects(
      store.offer(await soliciting(g, { ips: ["127.0.0.1"] }, { clock })),
      (e: ValidationError) => e.code === "address_not_public",
    );
    const expired = await soliciting(g, {}, { clock, ttlSeconds: 10 });
    clock.advance(400_000);
    await assert.rejects(store.offer(expired), (e: SignatureError) => e.code === "expired");
    assert.equal(store.all().length, 0);
    assert.equal(store.seq, 0);
  } finally {
    store.close();
  }
});

Deno.test("RecordStore.offer() enforces the per-guardian quota", async () => {
  const store = await RecordStore.open(":memory:");
  try {
    const g = await NodeIdentity.generate();
    for (let i = 0; i < RECORDS_PER_GUARDIAN; i++) await store.offer(await soliciting(g));
    await assert.rejects(
      store.offer(await soliciting(g)),
      (e: TrueCloudError) => e.code === "quota_exceeded" && e.status === 403,
    );
    const other = await NodeIdentity.generate();
    assert.equal((await store.offer(await soliciting(other))).status, "stored");
  } finally {
    store.close();
  }
});

Deno.test("RecordStore.logAfter() pages through the change log, replaced records leaving it", async () => {
  const clock = new ManualClock(T0);
  const store = await RecordStore.open(":memory:", { clock });
  try {
    const g = await NodeIdentity.generate();
    const vpn = newUuid();
    await store.offer(await soliciting(g, { vpn }, { clock }));
    for (let i = 0; i < 4; i++) await store.offer(await soliciting(g, {}, { clock }));
    clock.advance(1000);
    await store.offer(await soliciting(g, { vpn, guestPort: 9 }, { clock }));
    const p1 = await store.logAfter(0, 3);
    assert.deepEqual(p1.records.map((r) => r.seq), [2, 3, 4]);
    assert.equal(p1.more, true);
    const p2 = await store.logAfter(p1.last, 3);
    assert.deepEqual(p2.records.map((r) => r.seq), [5, 6]);
    assert.equal(p2.more, false);
    assert.equal((await store.logAfter(6, 3)).last, 6);
  } finally {
    store.close();
  }
});

Deno.test("RecordStore keeps its records and replica id across reopening, and concurrent writers never lose one", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = await RecordStore.open(`${dir}/kv`);
    const b = await RecordStore.open(`${dir}/kv`);
    assert.equal(a.replicaId, b.replicaId);
    const gs = await Promise.all(Array.from({ length: 8 }, () => NodeIdentity.generate()));
    const jwss = await Promise.all(gs.map((g) => soliciting(g)));
    await Promise.all(jwss.map((j, i) => (i % 2 ? a : b).offer(j)));
    await a.refresh();
    assert.equal(a.visible().length, 8);
    assert.equal(a.seq, 8);
    const id = a.replicaId;
    a.close();
    b.close();
    const again = await RecordStore.open(`${dir}/kv`);
    assert.equal(again.replicaId, id);
    assert.equal(again.visible().length, 8);
    again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("RecordStore.offer() refuses new keys past the store's limit but still takes known ones", async () => {
  const clock = new ManualClock(T0);
  const store = await RecordStore.open(":memory:", { clock, maxRecords: 2 });
  try {
    const g = await NodeIdentity.generate();
    const vpn = newUuid();
    await store.offer(await soliciting(g, { vpn }, { clock }));
    await store.offer(await soliciting(g, {}, { clock }));
    await assert.rejects(
      store.offer(await soliciting(g, {}, { clock })),
      (e: TrueCloudError) => e.code === "store_full" && e.status === 507,
    );
    clock.advance(1000);
    await store.offer(
      await signVpnRecord(g, { v: 1, vpn, state: "withdrawn", reason: "full" }, { clock }),
    );
    assert.equal(store.all().length, 2);
  } finally {
    store.close();
  }
});
