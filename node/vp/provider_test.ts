import assert from "node:assert/strict";
import { ManualClock, NodeIdentity } from "../../protocol/mod.ts";
import {
  Broadcaster,
  Ledger,
  type LedgerEntry,
  signAck,
  signContribution,
  signExport,
  signGrant,
  signLeaseEnd,
  verifyAck,
  verifyVolume,
} from "../rms/mod.ts";
import { VolumeProvider } from "./provider.ts";
import { userspaceAttacher, UserspaceVolumes } from "./userspace.ts";

const MiB = 1024 * 1024;
const contribution = {
  v: 1 as const,
  diskBytes: 1024 * MiB,
  cpuMillicores: 1000,
  memoryBytes: 1024 * MiB,
  bandwidthBps: 0,
  ratio: 0.4,
};

async function setup(capacityBytes = 64 * MiB) {
  const clock = new ManualClock(Date.now());
  const provider = await NodeIdentity.generate();
  const ledger = await Ledger.open(":memory:");
  const statement = {
    jws: await signContribution(provider, contribution, clock),
    data: contribution,
  };
  const broadcaster = new Broadcaster({
    identity: provider,
    ledger,
    contribution: () => statement,
    location: crypto.randomUUID(),
    network: crypto.randomUUID(),
    clock,
  });
  const dir = await Deno.makeTempDir({ prefix: "vp_provider_" });
  const backend = await UserspaceVolumes.start({ dir: `${dir}/volumes`, capacityBytes });
  const vp = await VolumeProvider.start({
    identity: provider,
    broadcaster,
    ledger,
    backend,
    statePath: `${dir}/volumes.json`,
    sweepMs: 60_000,
    clock,
  });
  // A consumer's lease of `bytes`, acknowledged by the provider and in its ledger.
  const lease = async (consumer: NodeIdentity, bytes: number, seconds = 3600) => {
    const grant = await signGrant(consumer, {
      v: 1,
      id: crypto.randomUUID(),
      request: crypto.randomUUID(),
      offer: crypto.randomUUID(),
      provider: provider.nodeId,
      consumer: consumer.nodeId,
      kind: "storage",
      bytes,
      cpuMillicores: 0,
      memoryBytes: 0,
      leaseSeconds: seconds,
      contribution: await signContribution(consumer, contribution, clock),
    }, clock);
    const entry = await verifyAck(await signAck(provider, grant, seconds, clock), clock);
    await ledger.record(entry);
    return entry;
  };
  const exportOf = async (consumer: NodeIdentity, entry: LedgerEntry, pool: string) => {
    const keys = await userspaceAttacher().keys();
    const jws = await signExport(consumer, provider.nodeId, {
      v: 1,
      volume: entry.id,
      lease: entry.ack,
      pool,
      blockSize: 65536,
      tunnelKey: keys.publicKey,
    }, clock);
    return { jws, keys };
  };
  const close = async () => {
    await vp.stop();
    await backend.close();
    ledger.close();
    await Deno.remove(dir, { recursive: true });
  };
  return { clock, provider, ledger, backend, vp, lease, exportOf, close, dir };
}

Deno.test("VolumeProvider exports a leased volume through its tunnel, and wipes it when the consumer ends the lease", async () => {
  const t = await setup();
  try {
    const consumer = await NodeIdentity.generate();
    const entry = await t.lease(consumer, 4 * MiB);
    const { jws, keys } = await t.exportOf(consumer, entry, crypto.randomUUID());
    const answer = await t.vp.message(jws);
    assert.equal(answer.t, "exported");
    const volume = await verifyVolume(
      answer.export as string,
      t.provider.nodeId,
      consumer.nodeId,
      t.clock,
    );
    assert.equal(volume.blockCount, 64);
    assert.equal(volume.endpoint, t.backend.endpoint);
    // The consumer reaches it through the tunnel, with its key only.
    const dev = await userspaceAttacher().attach(volume, keys, () => {});
    await dev.write(5, new Uint8Array(65536).fill(7), new Uint8Array(32).fill(1));
    assert.equal((await dev.read(5, 1)).data[9], 7);
    await dev.close();
    const stranger = await userspaceAttacher({ timeoutMs: 1000 }).keys();
    await assert.rejects(userspaceAttacher({ timeoutMs: 1000 }).attach(volume, stranger, () => {}));
    // Exporting again keeps the data (a consumer that restarted).
    const again = await t.exportOf(
      consumer,
      entry,
      JSON.parse(
        await Deno.readTextFile(`${t.dir}/volumes.json`),
      )[0].pool,
    );
    const answer2 = await t.vp.message(again.jws);
    const v2 = await verifyVolume(
      answer2.export as string,
      t.provider.nodeId,
      consumer.nodeId,
      t.clock,
    );
    const dev2 = await userspaceAttacher().attach(v2, again.keys, () => {});
    assert.equal((await dev2.read(5, 1)).data[9], 7, "the data stays");
    // The consumer ends the lease: the volume is wiped and its tunnel closed.
    const end = await signLeaseEnd(consumer, {
      v: 1,
      lease: entry.id,
      provider: t.provider.nodeId,
      consumer: consumer.nodeId,
      at: Math.floor(t.clock.now() / 1000),
      reason: "released",
    }, t.clock);
    assert.deepEqual(await t.vp.message(end), { ok: true });
    assert.equal(t.vp.volumes().length, 0);
    assert.equal(t.backend.usedBytes, 0);
    await assert.rejects(dev2.read(5, 1));
    await dev2.close();
    assert.equal(t.ledger.get(entry.id)?.ended, "released");
  } finally {
    await t.close();
  }
});

Deno.test("VolumeProvider wipes a volume whose lease expired", async () => {
  const t = await setup();
  try {
    const consumer = await NodeIdentity.generate();
    const entry = await t.lease(consumer, 2 * MiB, 60);
    await t.vp.message((await t.exportOf(consumer, entry, crypto.randomUUID())).jws);
    await t.vp.sweep();
    assert.equal(t.vp.volumes().length, 1, "in force: kept");
    t.clock.advance(61_000);
    await t.vp.sweep();
    assert.equal(t.vp.volumes().length, 0, "ended: wiped");
    assert.equal(t.backend.usedBytes, 0);
  } finally {
    await t.close();
  }
});

Deno.test("VolumeProvider refuses exports it must not serve, and changes nothing", async () => {
  const t = await setup(8 * MiB);
  try {
    const consumer = await NodeIdentity.generate();
    const other = await NodeIdentity.generate();
    const pool = crypto.randomUUID();
    const refused = async (jws: string, code: string) => {
      await assert.rejects(t.vp.message(jws), (err: { code?: string }) => err.code === code);
      assert.equal(t.vp.volumes().length, 0);
      assert.equal(t.backend.usedBytes, 0);
    };
    // Beyond what the node lends for volumes.
    const big = await t.lease(consumer, 16 * MiB);
    await refused((await t.exportOf(consumer, big, pool)).jws, "no_capacity");
    // A lease this provider's ledger does not hold.
    const stray = await t.lease(consumer, MiB);
    await t.ledger.end({
      v: 1,
      lease: stray.id,
      provider: t.provider.nodeId,
      consumer: consumer.nodeId,
      at: stray.from,
      reason: "released",
    });
    await refused((await t.exportOf(consumer, stray, pool)).jws, "lease_ended");
    // Signed by another than the lease's consumer.
    const theirs = await t.lease(other, MiB);
    await refused((await t.exportOf(consumer, theirs, pool)).jws, "claim_invalid");
    await refused("not a jws", "invalid");
    // One volume per pool and consumer.
    const first = await t.lease(consumer, MiB);
    await t.vp.message((await t.exportOf(consumer, first, pool)).jws);
    const second = await t.lease(consumer, MiB);
    await assert.rejects(
      t.vp.message((await t.exportOf(consumer, second, pool)).jws),
      (err: { code?: string }) => err.code === "duplicate_provider",
    );
    assert.equal(t.vp.volumes().length, 1);
  } finally {
    await t.close();
  }
});
