// End to end: the CDN between node agents. Two VPNs linked by one node; a member publishes, the
// manifest crosses into the other VPN, the holders placement picks pull the object, a late joiner
// learns the catalogue by sync, a forged manifest is taken by nobody, when a holder stops the next
// one by placement pulls the object, and holders audit each other.
import assert from "node:assert/strict";
import { until } from "../protocol/_test_tools.ts";
import { BlockStore, type CID, dagBlocks, holders, signPublish } from "../cdn/mod.ts";
import { concatBytes, NodeIdentity } from "../protocol/mod.ts";
import { CDN_PROTOCOL, cdnTopic, jsonStream, Rms } from "../node/mod.ts";
import { discovery, GiB, rmsOptions } from "./_rms.ts";

async function holdsWhole(store: BlockStore, cid: CID): Promise<boolean> {
  try {
    for await (const _ of dagBlocks(store, cid)) { /* present and intact */ }
    return true;
  } catch {
    return false;
  }
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  for await (const p of it) parts.push(p);
  return concatBytes(parts);
}

Deno.test("CDN between agents: manifests cross VPNs, holders pull, a late joiner syncs, a stopped holder is replaced", async () => {
  const d = await discovery();
  const dir = await Deno.makeTempDir({ prefix: "truecloud-cdn-nodes-" });
  const nodes: Rms[] = [];
  const stores = new Map<string, BlockStore>();
  const ids = new Map<Rms, NodeIdentity>();
  const start = async (i: number, maxVpns: number) => {
    const identity = await NodeIdentity.generate();
    const store = await BlockStore.open(`${dir}/${i}`, 64 * 1024 * 1024);
    stores.set(identity.nodeId, store);
    const rms = await Rms.start({
      ...rmsOptions(d.fetch),
      identity,
      maxVpns,
      cdnStore: store,
      cdnRepairMs: 300,
      cdnAuditMs: 3_600_000, // audits run by hand below
      contribution: { diskBytes: 10 * GiB, diskPath: Deno.cwd() },
    });
    nodes.push(rms);
    ids.set(rms, identity);
    return rms;
  };
  const vpnOf = (n: Rms) => n.memberships().map((m) => m.vpn);
  try {
    // VPN A: n0 (founder), n1, n2, and n3, which then also joins VPN B: n4 (founder), n5.
    const n0 = await start(0, 1);
    const a = await n0.found({ maxMembers: 4, maxPerLocation: 4, maxPerNetwork: 4 });
    const n1 = await start(1, 1);
    const n2 = await start(2, 1);
    const n3 = await start(3, 2);
    await until("A to fill", () => [n1, n2, n3].every((n) => vpnOf(n).includes(a)), 30_000);
    const n4 = await start(4, 1);
    const b = await n4.found({ maxMembers: 8, maxPerLocation: 8, maxPerNetwork: 8 });
    const n5 = await start(5, 1);
    await until(
      "B to form",
      () => vpnOf(n5).includes(b) && vpnOf(n3).includes(b),
      30_000,
    );

    // n1 publishes a public object of three chunks and a members-only note.
    const bytes = crypto.getRandomValues(new Uint8Array(65536)).map((x, i) => x ^ i);
    const big = new Uint8Array(3 * 1024 * 1024 + 123);
    for (let at = 0; at < big.length; at += bytes.length) {
      big.set(bytes.subarray(0, big.length - at), at);
    }
    const pub = await n1.cdn.publish(big, {
      name: "data/big.bin",
      type: "application/octet-stream",
      visibility: "public",
    });
    const note = await n1.cdn.publish(new TextEncoder().encode("members only\n"), {
      name: "members/note.txt",
      type: "text/plain; charset=utf-8",
      visibility: "members",
    });
    // The manifests reach every node, B's members through n3 (who vouches for the publisher, whom
    // B's members do not know).
    await until("every catalogue to have both", async () => {
      for (const n of nodes) if ((await n.cdn.catalogue.list()).length !== 2) return false;
      return true;
    }, 30_000);
    assert.deepEqual(
      (await n5.cdn.publicObjects()).map((o) => o.name),
      ["data/big.bin"],
      "public content only, for a gateway",
    );

    // Placement holds: every node that is a holder in its own view of the live holders holds the
    // whole object, and so do the k holders placement gives over all live nodes (each of them is a
    // holder in its own, smaller, view too: there are never fewer than k copies).
    const whole = (n: string, cid: CID) => holdsWhole(stores.get(n)!, cid);
    const placed = async (cid: CID, live: Rms[]) => {
      for (const n of live) {
        const mine = holders(cid.toString(), n.cdn.liveHolders(), 3).includes(n.nodeId);
        if (mine && !(await whole(n.nodeId, cid))) return false;
      }
      for (const h of holders(cid.toString(), live.map((n) => n.nodeId), 3)) {
        if (!(await whole(h, cid))) return false;
      }
      return true;
    };
    await until("placement in every view", () => placed(pub.cid, nodes), 30_000);
    await until("placement of the note", () => placed(note.cid, nodes), 30_000);
    // Members in the other VPN read both, checked block by block.
    assert.deepEqual(await collect(n5.readCdn(pub.cid)), big);
    assert.equal(
      new TextDecoder().decode(await collect(n4.readCdn(note.cid))),
      "members only\n",
    );

    // A forged manifest (a member's signature over altered data) is taken by nobody.
    const honest = await signPublish(ids.get(n2)!, {
      v: 1,
      name: "forged.txt",
      cid: note.cid.toString(),
      size: 14,
      type: "text/plain",
      visibility: "public",
    });
    const [h, p, s] = honest.split(".");
    const payload = JSON.parse(new TextDecoder().decode(
      Uint8Array.from(atob(p.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0)),
    ));
    payload.dat.name = "other.txt";
    const forged = `${h}.${
      btoa(JSON.stringify(payload)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")
    }.${s}`;
    const m2 = n2.memberships()[0].node;
    await m2.libp2p.services.pubsub.publish(
      cdnTopic(m2.vpn),
      new TextEncoder().encode(JSON.stringify({ t: "publish", jws: forged })),
    ).catch(() => {});
    // ...while an honest one published at the same moment travels (so the wait means something).
    await n2.cdn.publish(new TextEncoder().encode("later\n"), {
      name: "later.txt",
      type: "text/plain; charset=utf-8",
      visibility: "members",
    });
    await until("the honest manifest to travel", async () => {
      for (const n of nodes) if (!(await n.cdn.catalogue.byName("later.txt"))) return false;
      return true;
    }, 30_000);
    for (const n of nodes) assert.equal(await n.cdn.catalogue.byName("other.txt"), undefined);

    // A late joiner learns the whole catalogue by sync (no gossip carries it any more).
    const n6 = await start(6, 1);
    await until("n6 to join B", () => vpnOf(n6).includes(b), 30_000);
    await until("n6 to sync", async () => (await n6.cdn.catalogue.list()).length === 3, 30_000);

    // A holder stops: the next by placement pulls the object; members still read it.
    await until("placement with n6", () => placed(pub.cid, nodes), 30_000);
    const key = pub.cid.toString();
    const before = holders(key, nodes.map((n) => n.nodeId), 3);
    const gone = nodes.find((n) => before.includes(n.nodeId) && n !== n1 && n !== n5)!;
    const rest = nodes.filter((n) => n !== gone);
    const next = holders(key, rest.map((n) => n.nodeId), 3).find((id) => !before.includes(id))!;
    const hadIt = await whole(next, pub.cid);
    await gone.stop();
    await until(
      "the stopped holder to drop out of every view",
      () => rest.every((n) => !n.cdn.liveHolders().includes(gone.nodeId)),
      30_000,
    );
    await until("placement in every remaining view", () => placed(pub.cid, rest), 30_000);
    assert.ok(
      await whole(next, pub.cid),
      `the next holder ${next} has it (had it before: ${hadIt})`,
    );
    assert.deepEqual(await collect(n5.readCdn(pub.cid)), big);

    // Audits: holders of the object that share a VPN challenge each other and pass. Then one turns
    // liar: it answers challenges without the blocks (a node claiming storage it does not keep),
    // and the other's challenges find it out. Nobody honest fails, though the VPNs may have split
    // (the stopped holder may have been their only bridge) and views of the holders differ: a
    // holder that says it lacks a block is not counted against.
    const placedOn = holders(key, rest.map((n) => n.nodeId), 3).map((id) =>
      rest.find((n) => n.nodeId === id)!
    );
    const [auditor, victim] = placedOn.flatMap((x) =>
      placedOn.filter((y) =>
        y !== x && vpnOf(y).some((v) => vpnOf(x).includes(v))
      ).map((y) => [x, y])
    )[0];
    const auditsOf = async (want: (r: { provider: string; ok: boolean }) => boolean) => {
      for (let i = 0; i < 200; i++) {
        const r = await auditor.cdn.audit();
        if (r && want(r)) {
          return r;
        }
      }
      assert.fail("no such audit in 200 tries");
    };
    const now = () =>
      Math.floor(Date.now() / 1000);
    const passed = await auditsOf((r) => r.provider === victim.nodeId);
    assert.equal(passed.ok, true, JSON.stringify(passed));
    assert.equal(auditor.ledger.distrusts(victim.nodeId, now()), false);
    for (const m of victim.memberships()) {
      await m.node.libp2p.unhandle(CDN_PROTOCOL);
      await m.node.libp2p.handle(CDN_PROTOCOL, async (stream) => {
        const s = jsonStream(stream);
        const asked = await s.read();
        await s.write(
          asked.t === "challenge" ? { t: "proof", sha256: "00".repeat(32) } : {
            t: "missing",
          },
        );
        await stream.close();
      });
    }
    const failed = await auditsOf((r) => r.provider === victim.nodeId && !r.ok);
    assert.match(failed.detail, /wrong proof/);
    assert.ok(auditor.ledger.distrusts(victim.nodeId, now()));
    const record = auditor.ledger.audits().find((r) => r.provider === victim.nodeId)!;
    assert.ok(record.passes >= 1 && record.failures >= 1, JSON.stringify(record));
    assert.ok(
      auditor.ledger.audits().every((r) => r.provider === victim.nodeId || r.failures === 0),
      `nobody else failed: ${JSON.stringify(auditor.ledger.audits())}`,
    );
  } finally {
    for (const n of nodes) await n.stop().catch(() => {});
    await d.svc.close();
    await Deno.remove(dir, { recursive: true });
  }
});
