// End to end: a dozen node agents' RMSes on loopback form three overlapping management VPNs through
// discovery and guest networks; an unfit node is refused with its reason; a full VPN leaves the feed.
import assert from "node:assert/strict";
import { until } from "../protocol/_test_tools.ts";
import { Hono } from "hono";
import { DiscoveryService } from "../discovery/mod.ts";
import { CapturingLogger, NodeIdentity } from "../protocol/mod.ts";
import { catalogFromTargets, mintAttestation, Rms, type RmsOptions } from "../node/rms/mod.ts";

const RELEASE = {
  v: 1 as const,
  release: "truecloud-0.1.0-dev.tar.gz",
  sha256: "5e".repeat(32),
  length: 4321,
};
const releases = () =>
  catalogFromTargets({
    [RELEASE.release]: { length: RELEASE.length, hashes: { sha256: RELEASE.sha256 } },
  });

async function discovery() {
  const svc = await DiscoveryService.open({
    kvPath: ":memory:",
    publicBaseUrl: "http://discovery.test/discovery",
    allowPrivateAddresses: true,
  });
  const root = new Hono().route("/discovery", svc.app);
  const f =
    ((input: string | URL | Request, init?: RequestInit) =>
      root.request(input instanceof Request ? input : String(input), init)) as typeof fetch;
  return { svc, fetch: f };
}

Deno.test("RMS: a dozen nodes join three overlapping VPNs through guest networks; the unfit are refused with a reason", async () => {
  const d = await discovery();
  const log = new CapturingLogger();
  const locations = Array.from({ length: 4 }, () => crypto.randomUUID());
  const nodes: Rms[] = [];
  const base = (i: number): Omit<RmsOptions, "identity"> => ({
    location: locations[i % locations.length],
    network: crypto.randomUUID(),
    release: RELEASE,
    releases,
    feedUrl: "http://discovery.test/discovery/feed.rss?count=100",
    endpoints: ["http://discovery.test/discovery"],
    fetch: d.fetch,
    allowPrivateAddresses: true,
    retryMs: 300,
    log: log.child(`node${i}`),
  });
  try {
    // Three founders, each founding a VPN of at most 8, at most 3 per location.
    const vpns: string[] = [];
    for (let i = 0; i < 3; i++) {
      const rms = Rms.start({ ...base(i), identity: await NodeIdentity.generate(), maxVpns: 2 });
      nodes.push(rms);
      vpns.push(await rms.found({ maxMembers: 8, maxPerLocation: 3, maxPerNetwork: 3 }));
    }
    // Nine more: six hold one VPN, three hold two. With the founders' second VPNs that is 3 + 3 +
    // 6 + 6 = 18 places of 24.
    for (let i = 3; i < 12; i++) {
      nodes.push(
        Rms.start({ ...base(i), identity: await NodeIdentity.generate(), maxVpns: i < 9 ? 1 : 2 }),
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

    // A node with a fake attestation is refused by every guardian it tries, with the reason.
    const impostor = await NodeIdentity.generate();
    const fake = Rms.start({
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
      const r = Rms.start({
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
  } finally {
    for (const n of nodes) await n.stop();
    await d.svc.close();
  }
});
