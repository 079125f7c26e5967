// End to end: a node's Cloud File System over eleven other node agents in one VPN. It leases eight
// volumes through broadcast offers, keeps files on the pool, renews its short leases as they run;
// a provider away for less than the grace period is caught up with only what changed; three
// providers stopped at once lose nothing and are replaced and resilvered automatically; three
// others stopped later lose nothing either; one more loss is reported, never read as wrong data.
import assert from "node:assert/strict";
import { until } from "../protocol/_test_tools.ts";
import { JsonLogger, NodeIdentity } from "../protocol/mod.ts";
import {
  CloudFileSystem,
  Rms,
  serveCfsUi,
  userspaceAttacher,
  UserspaceVolumes,
  VolumeProvider,
} from "../node/mod.ts";
import { discovery, GiB, rmsOptions } from "./_rms.ts";
import { chromiumAvailable, launchChromium, watchPage } from "./_browser.ts";

interface Provider {
  rms: Rms;
  identity: NodeIdentity;
  dir: string;
  port: number;
  backend?: UserspaceVolumes;
  vp?: VolumeProvider;
}

Deno.test("CFS: eight leased volumes, catch-up within grace, three losses twice, replacement and resilver", async (t) => {
  const d = await discovery();
  const dir = await Deno.makeTempDir({ prefix: "truecloud-cfs-" });
  const all: Rms[] = [];
  const providers: Provider[] = [];
  let cfs: CloudFileSystem | undefined;
  const logs: string[] = []; // the CFS's log, shown when the test fails
  const startVp = async (p: Provider) => {
    p.backend = await UserspaceVolumes.start({
      dir: `${p.dir}/volumes`,
      capacityBytes: GiB,
      port: p.port,
    });
    p.port = p.backend.port;
    p.vp = await VolumeProvider.start({
      identity: p.identity,
      broadcaster: p.rms.broadcaster,
      ledger: p.rms.ledger,
      backend: p.backend,
      statePath: `${p.dir}/volumes.json`,
      sweepMs: 500,
    });
  };
  const stopVp = async (p: Provider) => {
    await p.vp?.stop();
    await p.backend?.close();
    p.vp = p.backend = undefined;
  };
  try {
    const consumerId = await NodeIdentity.generate();
    const consumer = await Rms.start({
      ...rmsOptions(d.fetch),
      identity: consumerId,
      maxVpns: 1,
      contribution: { diskBytes: 160 * 1024 * 1024, diskPath: Deno.cwd() },
    });
    all.push(consumer);
    const vpn = await consumer.found({ maxMembers: 12, maxPerLocation: 12, maxPerNetwork: 12 });
    for (let i = 0; i < 11; i++) {
      const identity = await NodeIdentity.generate();
      const rms = await Rms.start({
        ...rmsOptions(d.fetch),
        identity,
        maxVpns: 1,
        location: `00000000-0000-4000-8000-00000000000${i % 4}`,
        contribution: { diskBytes: GiB, diskPath: Deno.cwd() },
      });
      all.push(rms);
      const p: Provider = { rms, identity, dir: `${dir}/p${i}`, port: 0 };
      await Deno.mkdir(p.dir, { recursive: true });
      await startVp(p);
      rms.onStop(() => stopVp(p));
      providers.push(p);
    }
    await until("every node in the VPN", () => all.every((n) => n.memberships().length), 60_000);
    await until(
      "the roster to be known",
      () => consumer.memberships()[0].node.roster().length === 12,
      30_000,
    );
    assert.equal(consumer.memberships()[0].vpn, vpn);

    cfs = await CloudFileSystem.start({
      identity: consumerId,
      broadcaster: consumer.broadcaster,
      ledger: consumer.ledger,
      entitlementBytes: () => consumer.entitlement().entitlement.storageBytes,
      attacher: userspaceAttacher({ timeoutMs: 2000, heartbeatMs: 250, deadAfterMs: 1000 }),
      statePath: `${dir}/cfs.json`,
      leaseSeconds: 12,
      graceMs: 4000,
      tickMs: 200,
      offerWaitMs: 1500,
      log: new JsonLogger("cfs", "info", (l) => logs.push(l)),
    });
    const s0 = cfs.status();
    assert.equal(s0.pool.state, "online");
    assert.equal(s0.volumes.length, 8);
    assert.equal(new Set(s0.volumes.map((v) => v.provider)).size, 8, "eight distinct providers");
    assert.equal(s0.distribution.locations, 4, "as many locations as the offers allow");
    // Each volume is a fifth of the entitlement; the pool holds five of them.
    const volumeBytes = s0.volumes[0].sizeBytes;
    assert.ok(volumeBytes * 5 <= s0.entitlement.storageBytes);
    assert.ok(volumeBytes * 5 > s0.entitlement.storageBytes - 5 * 65536);
    assert.equal(s0.pool.sizeBytes, volumeBytes * 5);

    const files = new Map<string, Uint8Array>();
    const put = async (path: string, size: number) => {
      const bytes = crypto.getRandomValues(new Uint8Array(Math.min(size, 65536)));
      const data = new Uint8Array(size);
      for (let at = 0; at < size; at += bytes.length) {
        data.set(bytes.subarray(0, size - at), at);
        data[at] ^= at & 0xff;
      }
      await cfs!.files.write(path, data);
      files.set(path, data);
    };
    const checkAll = async (what: string) => {
      for (const [path, data] of files) {
        const got = await cfs!.files.readAll(path);
        assert.ok(
          got.length === data.length && got.every((b, i) => b === data[i]),
          `${path} reads back bit for bit ${what}`,
        );
      }
    };
    await cfs.files.mkdir("/photos");
    await put("/photos/a.jpg", 3 * 1024 * 1024 + 17);
    await put("/notes.txt", 1234);
    await put("/photos/b.raw", 5 * 1024 * 1024);
    await checkAll("after writing");

    // A provider's disk rots under a block: the provider reports it, the pool reads around it, and
    // a scrub rewrites it.
    const victim = providers.find((p) =>
      cfs!.status().volumes.some((v) => v.provider === p.rms.nodeId)
    )!;
    const victimSlot = cfs.status().volumes.findIndex((v) => v.provider === victim.rms.nodeId);
    const [dataFile] = [...Deno.readDirSync(`${victim.dir}/volumes`)].filter((e) =>
      e.name.endsWith(".data")
    );
    const rotten = await Deno.open(`${victim.dir}/volumes/${dataFile.name}`, {
      read: true,
      write: true,
    });
    const bs = 65536;
    for (const block of [2, 3, 7]) {
      await rotten.seek(block * bs + 1000, Deno.SeekMode.Start);
      await rotten.write(crypto.getRandomValues(new Uint8Array(64)));
    }
    rotten.close();
    await checkAll("with rotten blocks on one provider");
    await cfs.scrub();
    const scrubbed = cfs.status();
    assert.ok(scrubbed.scrub?.finished);
    const errors = scrubbed.volumes[victimSlot].errors;
    assert.ok(errors.read + errors.checksum >= 1, `the rot is counted: ${JSON.stringify(errors)}`);
    assert.equal(scrubbed.volumes[victimSlot].state, "online");
    await cfs.scrub();
    assert.equal(cfs.status().scrub?.repaired, 0, "nothing is left to repair");
    await checkAll("after the scrub");

    // Audits: a spot check of every volume passes; then the victim's disk rots everywhere the
    // files are, and the next spot checks catch it, rewrite what they read, and the consumer
    // stops trusting it.
    const audits = await cfs.audit();
    assert.equal(audits.length, 8, JSON.stringify(audits));
    assert.ok(audits.every((a) => a.ok && a.kind === "volume"), JSON.stringify(audits));
    assert.ok(cfs.status().volumes.every((v) => (v.audits?.passes ?? 0) >= 1));
    const rotAll = await Deno.open(`${victim.dir}/volumes/${dataFile.name}`, { write: true });
    for (let block = 0; block < 64; block++) {
      await rotAll.seek(block * bs + 5, Deno.SeekMode.Start);
      await rotAll.write(crypto.getRandomValues(new Uint8Array(16)));
    }
    rotAll.close();
    const now = () => Math.floor(Date.now() / 1000);
    for (let i = 0; i < 10 && !consumer.ledger.distrusts(victim.rms.nodeId, now()); i++) {
      const found = await cfs.audit();
      assert.ok(found.every((a) => a.ok || a.provider === victim.rms.nodeId));
    }
    assert.ok(consumer.ledger.distrusts(victim.rms.nodeId, now()), "the rot is found");
    assert.match(cfs.status().volumes[victimSlot].audits?.lastFailure ?? "", /shards wrong/);
    await cfs.scrub();
    await checkAll("after the audits");

    const slotOf = (p: Provider) =>
      cfs!.status().volumes.findIndex((v) => v.provider === p.rms.nodeId);
    const used = providers.filter((p) => slotOf(p) >= 0);
    assert.equal(used.length, 8);

    // A provider away for less than the grace period: caught up, not replaced.
    const brief = used[0];
    const briefSlot = slotOf(brief);
    await stopVp(brief);
    await until("the volume to be away", () => cfs!.status().volumes[briefSlot].state === "away");
    await put("/while-away.bin", 2 * 1024 * 1024);
    assert.ok(cfs.status().volumes[briefSlot].behindStripes > 0);
    await startVp(brief);
    await until(
      "the catch-up",
      () => cfs!.status().volumes[briefSlot].state === "online",
      15_000,
    );
    const caught = cfs.status();
    assert.equal(caught.volumes[briefSlot].provider, brief.rms.nodeId, "the same provider");
    assert.equal(caught.resilver?.kind, "catch-up");
    assert.ok(
      caught.resilver!.totalBytes < 4 * 1024 * 1024 &&
        caught.resilver!.totalBytes < [...files.values()].reduce((n, f) => n + f.length, 0) / 2,
      `only what changed is copied (${caught.resilver!.totalBytes} B of stripes)`,
    );
    await checkAll("after the catch-up");

    // Leases of 12 s have been renewed as they ran, and the volumes kept their data.
    await until("a renewal", () => consumer.ledger.entries().some((e) => e.ended === "renewed"));

    // Three providers stopped at once: nothing lost; replaced and resilvered from the others.
    const firstThree = used.slice(1, 4);
    const lostSlots = firstThree.map(slotOf);
    await Promise.all(firstThree.map((p) => p.rms.stop()));
    await until(
      "three volumes away",
      () => lostSlots.every((s) => cfs!.status().volumes[s].state !== "online"),
    );
    assert.equal(cfs.status().pool.state, "degraded");
    await checkAll("with three providers gone");
    await put("/degraded.bin", 1024 * 1024 + 5);
    await until(
      "replacements and resilver",
      () => {
        const s = cfs!.status();
        return s.pool.state === "online" &&
          lostSlots.every((slot) =>
            !firstThree.some((p) => p.rms.nodeId === s.volumes[slot].provider)
          );
      },
      60_000,
    );
    const replaced = cfs.status();
    assert.equal(new Set(replaced.volumes.map((v) => v.provider)).size, 8);
    assert.ok(replaced.events.some((e) => /replaced by a volume of/.test(e.message)));
    await checkAll("after replacement and resilver");

    // What the user sees of it, in a real browser.
    await t.step({
      name: "the CFS UI shows the healed pool in Chromium",
      ignore: !chromiumAvailable(),
      fn: async () => {
        const ui = serveCfsUi({ status: () => cfs!.status(), port: 0 });
        const browser = await launchChromium();
        try {
          const page = await browser.newPage();
          const problems = await watchPage(page);
          await page.goto(ui.url);
          const badge = page.getByTestId("health-badge");
          await badge.waitFor();
          for (let i = 0; i < 100 && await badge.getAttribute("data-state") !== "online"; i++) {
            await new Promise((r) => setTimeout(r, 50));
          }
          assert.equal(await badge.getAttribute("data-state"), "online");
          assert.equal(await page.getByTestId("volume-row").count(), 8);
          assert.match(await page.getByTestId("distribution").innerText(), /8 providers/);
          const events = await page.getByTestId("event").allInnerTexts();
          assert.ok(events.some((e) => /replaced by a volume of/.test(e)), events.join("\n"));
          assert.deepEqual([...problems.errors, ...problems.violations], []);
        } finally {
          await browser.close();
          await ui.close();
        }
      },
    });

    // Three other providers stopped: still nothing lost.
    const nextThree = used.slice(4, 7);
    await Promise.all(nextThree.map((p) => p.rms.stop()));
    const nextSlots = nextThree.map(slotOf);
    await until(
      "three more volumes away",
      () => nextSlots.every((s) => cfs!.status().volumes[s].state !== "online"),
    );
    await checkAll("with three other providers gone");

    // A fourth loss at once is reported, never read as wrong data.
    const fourth = providers.find((p) =>
      !p.rms.stopped &&
      cfs!.status().volumes.some((v) => v.provider === p.rms.nodeId && v.state === "online")
    )!;
    await fourth.rms.stop();
    await until("the pool to fail", () => cfs!.status().pool.state === "faulted", 15_000);
    await assert.rejects(cfs.files.readAll("/photos/b.raw"), /lost|faulted|unreadable/i);
  } catch (err) {
    console.error(logs.join("\n"));
    throw err;
  } finally {
    await cfs?.stop();
    for (const n of all) await n.stop().catch(() => {});
    d.svc.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
