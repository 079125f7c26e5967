// End to end: a dozen node agents' RMSes on loopback form three overlapping management VPNs through
// discovery and guest networks; an unfit node is refused with its reason; a full VPN leaves the feed,
// and solicits again when a member leaves.
import assert from "node:assert/strict";
import { until } from "../protocol/_test_tools.ts";
import { CapturingLogger, NodeIdentity } from "../protocol/mod.ts";
import { Rms, type RmsOptions } from "../node/mod.ts";
import { discovery, GiB, RELEASE, rmsOptions } from "./_rms.ts";

Deno.test("RMS: a dozen nodes join three overlapping VPNs through guest networks; the unfit are refused with a reason", async () => {
  const d = await discovery();
  const log = new CapturingLogger();
  const locations = Array.from({ length: 4 }, () => crypto.randomUUID());
  const nodes: Rms[] = [];
  const base = (i: number): Omit<RmsOptions, "identity"> => ({
    ...rmsOptions(d.fetch),
    location: locations[i % locations.length],
    contribution: { diskBytes: 10 * GiB, diskPath: Deno.cwd(), cpuMillicores: 1000 },
    log: log.child(`node${i}`),
  });
  try {
    // Three founders, each founding a VPN of at most 8, at most 3 per location.
    const vpns: string[] = [];
    for (let i = 0; i < 3; i++) {
      const rms = await Rms.start({
        ...base(i),
        identity: await NodeIdentity.generate(),
        maxVpns: 2,
      });
      nodes.push(rms);
      vpns.push(await rms.found({ maxMembers: 8, maxPerLocation: 3, maxPerNetwork: 3 }));
    }
    // Nine more: six hold one VPN, three hold two. With the founders' second VPNs that is 3 + 3 +
    // 6 + 6 = 18 places of 24.
    for (let i = 3; i < 12; i++) {
      nodes.push(
        await Rms.start({
          ...base(i),
          identity: await NodeIdentity.generate(),
          maxVpns: i < 9 ? 1 : 2,
        }),
      );
    }
    await until(
      "every node to hold its VPNs",
      () => nodes.every((n) => n.memberships().length === n.maxVpns),
      60_000,
    );
    // Overlap: nodes in two VPNs link them; every VPN has members in another.
    const byVpn = new Map(
      vpns.map((v) => [v, nodes.filter((n) => n.memberships().some((m) => m.vpn === v))]),
    );
    for (const [vpn, members] of byVpn) {
      assert.ok(members.length >= 3, `VPN ${vpn} has ${members.length} members`);
      assert.ok(members.length <= 8, `VPN ${vpn} is within its size`);
      assert.ok(members.some((n) => n.maxVpns === 2), `VPN ${vpn} overlaps another`);
    }
    // Rosters agree: every member of a VPN knows every other (by gossip), and diversity holds.
    await until(
      "rosters to agree",
      () =>
        [...byVpn].every(([vpn, members]) =>
          members.every((n) =>
            n.memberships().find((m) => m.vpn === vpn)!.node.roster().length === members.length
          )
        ),
      60_000,
    );
    for (const [vpn, members] of byVpn) {
      const roster = members[0].memberships().find((m) => m.vpn === vpn)!.node.roster();
      for (const loc of locations) {
        assert.ok(
          roster.filter((c) => c.data.location === loc).length <= 3,
          "at most 3 per location",
        );
      }
    }

    // Each node measured its upload bandwidth against members, and states it.
    await until(
      "every node to measure its bandwidth",
      () => nodes.every((n) => n.entitlement().contribution.bandwidthBps > 1e6),
      60_000, // a node that found no member to answer tries again 15 s later
    );

    // A request broadcast on one VPN is answered, also from VPNs it is relayed into.
    const asker = nodes.find((n) => n.maxVpns === 1 && n.memberships().length === 1)!;
    const askerVpn = asker.memberships()[0].vpn;
    const offers = await asker.broadcaster.request({
      kind: "storage",
      bytes: GiB,
      leaseSeconds: 3600,
      count: 11,
      maxHops: 1,
      waitMs: 10_000,
    });
    assert.ok(offers.length >= 5, `${offers.length} offers`);
    const inMine = (id: string) =>
      nodes.find((n) => n.nodeId === id)!.memberships().some((m) => m.vpn === askerVpn);
    assert.ok(offers.some((o) => !inMine(o.provider)), "offers relayed from another VPN");
    assert.ok(offers.every((o) => o.data.bytes === GiB && o.data.requester === asker.nodeId));
    // Grants: one near provider, one through a relay; both ledgers and a bystander's record them.
    // Grants: two near providers, one through a relay; both ledgers and a bystander's record them.
    const [near, near2] = offers.filter((o) => inMine(o.provider));
    const far = offers.find((o) => !inMine(o.provider))!;
    assert.ok(near2, "two offers from the asker's own VPN");
    for (const o of [near, near2, far]) {
      const lease = await asker.broadcaster.accept(o);
      assert.equal(lease.consumer, asker.nodeId);
      const provider = nodes.find((n) => n.nodeId === o.provider)!;
      assert.ok(provider.ledger.entries().some((e) => e.id === lease.id));
      assert.equal(provider.entitlement().given.storageBytes >= GiB, true);
    }
    assert.equal(asker.entitlement().use.storageBytes, 3 * GiB);
    // Members of the asker's VPN other than the near providers: they saw both near grants announced.
    const bystanders = nodes.filter((n) =>
      n !== asker && n.nodeId !== near.provider && n.nodeId !== near2.provider &&
      n.memberships().some((m) => m.vpn === askerVpn)
    );
    const seen = (n: Rms) => n.ledger.use(asker.nodeId, Math.floor(Date.now() / 1000)).storageBytes;
    await until("bystanders to see both grants", () => bystanders.every((n) => seen(n) >= 2 * GiB));
    // Past its allowance (4 GiB of entitlement from 10 GiB lent, 6.4 GiB raw): refused at home,
    // with the reason.
    await assert.rejects(
      asker.broadcaster.request({ kind: "storage", bytes: 5 * GiB, leaseSeconds: 3600 }),
      (e: Error & { code?: string }) =>
        e.code === "over_entitlement" && /entitlement/.test(e.message),
    );
    // A node that forgets its grants (a fresh ledger) still gets no more: providers count what they
    // saw announced, and refuse.
    // Those that have counted 2 GiB or more before the request must refuse 5 GiB more.
    const counted = new Set(
      nodes.filter((n) => n !== asker && seen(n) >= 2 * GiB).map((n) => n.nodeId),
    );
    assert.ok(bystanders.length && bystanders.every((n) => counted.has(n.nodeId)));
    await asker.ledger.prune(Number.MAX_SAFE_INTEGER / 2); // drops every entry
    const again = await asker.broadcaster.request({
      kind: "storage",
      bytes: 5 * GiB,
      leaseSeconds: 3600,
      count: 11,
      maxHops: 0,
      waitMs: 3000,
    });
    assert.ok(
      again.every((o) => !counted.has(o.provider)),
      "no offer from a provider that counted",
    );
    assert.ok(
      log.records.some((r) => r.msg === "Request not served" && r.code === "over_entitlement"),
    );

    // A node with a fake attestation is refused by every guardian it tries, with the reason.
    const impostor = await NodeIdentity.generate();
    const fake = await Rms.start({
      ...base(12),
      identity: impostor,
      release: { ...RELEASE, sha256: "00".repeat(32) },
      maxVpns: 1,
    });
    nodes.push(fake);
    assert.equal(await fake.fill(), 0);
    assert.equal(fake.memberships().length, 0);
    const refusals = log.records.filter((r) =>
      r.msg === "Refused by a guardian" && r.component.startsWith("node12")
    );
    assert.ok(refusals.length >= 1);
    assert.ok(
      refusals.every((r) =>
        r.code === "attestation" && String(r.reason).includes("does not match")
      ),
    );
    await fake.stop();
    nodes.pop();

    // Fill one VPN to its size: its records leave the feed.
    const target = vpns[0];
    const extra: Rms[] = [];
    while ((byVpn.get(target)!.length + extra.length) < 8) {
      const r = await Rms.start({
        ...base(20 + extra.length),
        location: crypto.randomUUID(),
        identity: await NodeIdentity.generate(),
        maxVpns: 4,
      });
      extra.push(r);
      nodes.push(r);
    }
    await until(
      "the VPN to be full and its records withdrawn",
      () =>
        d.svc.store.visible().every((rec) => rec.data.vpn !== target) &&
        byVpn.get(target)![0].memberships().find((m) => m.vpn === target)!.node.roster().length ===
          8,
      60_000,
    );
    // One member leaves: it says so, the others take it off their rosters, and the VPN, below its
    // size again, solicits members again.
    const leaver = extra.find((r) => r.memberships().some((m) => m.vpn === target))!;
    await leaver.leave(target);
    const founder = byVpn.get(target)![0].memberships().find((m) => m.vpn === target)!.node;
    await until(
      "the VPN to solicit again",
      () =>
        founder.roster().length === 7 &&
        d.svc.store.visible().some((rec) =>
          rec.data.vpn === target && rec.data.state === "soliciting"
        ),
      30_000,
    );
  } finally {
    for (const n of nodes) await n.stop();
    await d.svc.close();
  }
});

Deno.test("RMS: revoking a member re-keys the VPN; the others move to the new keys and the revoked one is left outside", async () => {
  const d = await discovery();
  const nodes: Rms[] = [];
  const start = async () => {
    const rms = await Rms.start({
      ...rmsOptions(d.fetch),
      identity: await NodeIdentity.generate(),
      maxVpns: 1,
    });
    nodes.push(rms);
    return rms;
  };
  try {
    const founder = await start();
    const vpn = await founder.found({ maxMembers: 8, maxPerLocation: 8, maxPerNetwork: 8 });
    for (let i = 1; i < 4; i++) await start();
    const inVpn = (n: Rms) => n.memberships().find((m) => m.vpn === vpn);
    await until("all four in the VPN", () => nodes.every((n) => inVpn(n)), 30_000);
    await until("rosters of four", () => nodes.every((n) => inVpn(n)!.node.roster().length === 4));
    const oldKey = inVpn(founder)!.node.ref.keyId;
    const [, a, b, revoked] = nodes;
    await founder.revoke(vpn, revoked.nodeId, "caught misbehaving");
    const stayed = [founder, a, b];
    await until(
      "the others on the new keys",
      () =>
        stayed.every((n) => {
          const m = inVpn(n);
          return !!m && m.node.ref.keyId !== oldKey &&
            m.node.ref.keyId === inVpn(founder)!.node.ref.keyId;
        }),
      20_000,
    );
    await until(
      "rosters of three, talking on the new network",
      () =>
        stayed.every((n) =>
          inVpn(n)!.node.roster().length === 3 && inVpn(n)!.node.verifiedPeers().length >= 1
        ),
      20_000,
    );
    // The revoked node still holds the old keys, which open nothing any more.
    const left = inVpn(revoked)!;
    assert.equal(left.node.ref.keyId, oldKey);
    // Nobody stays with it on the old network (a member moving to the new keys is never taken back
    // there through the revoked node's guest network), and its old key opens nothing on the new
    // network: no member there takes it.
    await until("the revoked node alone", () => left.node.verifiedPeers().length === 0, 20_000);
    await left.node.connect(inVpn(a)!.node.addrs[0]).catch(() => {});
    await until(
      "the members on the new keys to hold nothing from the revoked node",
      () =>
        stayed.every((n) =>
          !inVpn(n)!.node.isVerified(revoked.nodeId) &&
          inVpn(n)!.node.libp2p.getConnections().every((x) =>
            x.remotePeer.toString() !== revoked.nodeId
          )
        ),
      20_000,
    );
  } finally {
    for (const n of nodes) await n.stop();
    await d.svc.close();
  }
});
