import assert from "node:assert/strict";
import fc from "fast-check";
import { ManualClock, NodeIdentity } from "../../protocol/mod.ts";
import type { ReceivedOffer } from "./broadcast.ts";
import { signAck, signGrant } from "./ledger.ts";
import { signContribution } from "./contribution.ts";
import {
  rankOffers,
  signExport,
  signVolume,
  spreadOf,
  verifyExport,
  verifyVolume,
  type VolumePlace,
} from "./volumes.ts";

function offer(i: number, p: VolumePlace): ReceivedOffer {
  return {
    jws: "",
    id: crypto.randomUUID(),
    provider: p.provider,
    via: { vpn: p.vpn, peer: p.provider },
    data: {
      v: 1,
      request: crypto.randomUUID(),
      requester: "x",
      kind: "storage",
      bytes: 1 << 20,
      cpuMillicores: 0,
      memoryBytes: 0,
      leaseSeconds: 60 + i,
      vpn: p.vpn,
      location: p.location,
      network: p.network,
    },
  };
}

Deno.test("rankOffers() puts new locations, networks and VPNs first, one offer per provider", () => {
  const offers = [
    offer(0, { provider: "a", location: "L1", network: "N1", vpn: "V1" }),
    offer(1, { provider: "a", location: "L9", network: "N9", vpn: "V9" }),
    offer(2, { provider: "b", location: "L1", network: "N1", vpn: "V1" }),
    offer(3, { provider: "c", location: "L2", network: "N1", vpn: "V1" }),
    offer(4, { provider: "d", location: "L2", network: "N2", vpn: "V2" }),
    offer(5, { provider: "e", location: "L1", network: "N1", vpn: "V1" }),
  ];
  const ranked = rankOffers(offers, [{ provider: "e", location: "L0", network: "N0", vpn: "V0" }]);
  assert.deepEqual(ranked.map((o) => o.provider), ["a", "d", "b", "c"]);
  assert.equal(ranked[0].data.location, "L1", "the provider's first offer is the one kept");
});

Deno.test("rankOffers() never repeats a provider and picks as many locations as the offers allow", () => {
  const place = fc.record({
    provider: fc.constantFrom("a", "b", "c", "d", "e", "f", "g", "h", "i", "j"),
    location: fc.constantFrom("L1", "L2", "L3", "L4", "L5"),
    network: fc.constantFrom("N1", "N2", "N3"),
    vpn: fc.constantFrom("V1", "V2"),
  });
  fc.assert(
    fc.property(
      fc.array(place, { maxLength: 30 }),
      fc.array(place, { maxLength: 4 }),
      (ps, pool) => {
        const ranked = rankOffers(ps.map((p, i) => offer(i, p)), pool);
        const providers = ranked.map((o) => o.provider);
        assert.equal(new Set(providers).size, providers.length);
        for (const p of pool) assert.ok(!providers.includes(p.provider));
        // Greedy on locations first: the first k picks cover as many new locations as exist.
        const fresh = new Set(
          ps.filter((p) => !pool.some((q) => q.provider === p.provider)).map((p) => p.location)
            .filter((l) => !pool.some((q) => q.location === l)),
        );
        const firstK = new Set(ranked.slice(0, fresh.size).map((o) => o.data.location));
        for (const l of fresh) {
          // Every fresh location reachable through some provider is covered unless its only
          // providers were used up by an earlier pick of theirs.
          if (!firstK.has(l)) {
            assert.ok(
              ps.filter((p) => p.location === l).every((p) =>
                ranked.some((o) => o.provider === p.provider && o.data.location !== l) ||
                pool.some((q) => q.provider === p.provider)
              ),
            );
          }
        }
      },
    ),
  );
});

Deno.test("spreadOf() counts distinct places and says when volumes share one", () => {
  const s = spreadOf([
    { provider: "a", location: "L1", network: "N1", vpn: "V1" },
    { provider: "b", location: "L2", network: "N1", vpn: "V2" },
  ]);
  assert.deepEqual([s.providers, s.locations, s.networks, s.vpns], [2, 2, 1, 2]);
  assert.match(
    s.summary,
    /^2 providers in 2 locations, 1 network and 2 VPNs: some volumes share networks/,
  );
});

Deno.test("verifyExport() takes the consumer's export of its own lease and nothing else", async () => {
  const clock = new ManualClock(Date.parse("2026-11-26T00:00:00Z"));
  const [consumer, provider, other] = await Promise.all(
    [1, 2, 3].map(() => NodeIdentity.generate()),
  );
  const contribution = await signContribution(consumer, {
    v: 1,
    diskBytes: 1 << 30,
    cpuMillicores: 1000,
    memoryBytes: 1 << 30,
    bandwidthBps: 1e6,
    ratio: 0.4,
  }, clock);
  const id = crypto.randomUUID();
  const grant = await signGrant(consumer, {
    v: 1,
    id,
    request: crypto.randomUUID(),
    offer: crypto.randomUUID(),
    provider: provider.nodeId,
    consumer: consumer.nodeId,
    kind: "storage",
    bytes: 1 << 20,
    cpuMillicores: 0,
    memoryBytes: 0,
    leaseSeconds: 3600,
    contribution,
  }, clock);
  const lease = await signAck(provider, grant, 3600, clock);
  const data = {
    v: 1 as const,
    volume: id,
    lease,
    pool: crypto.randomUUID(),
    blockSize: 65536,
    tunnelKey: "A".repeat(43),
  };
  const ok = await verifyExport(
    await signExport(consumer, provider.nodeId, data, clock),
    provider.nodeId,
    clock,
  );
  assert.equal(ok.lease.id, id);
  await assert.rejects(
    verifyExport(await signExport(other, provider.nodeId, data, clock), provider.nodeId, clock),
    /not the lease's consumer/,
  );
  await assert.rejects(
    verifyExport(await signExport(consumer, other.nodeId, data, clock), other.nodeId, clock),
    /not the lease's consumer's, or not for this lease/,
  );
  await assert.rejects(
    signExport(consumer, provider.nodeId, { ...data, blockSize: 5000 }, clock),
    /power of two/,
  );
  const vol = {
    v: 1 as const,
    volume: id,
    consumer: consumer.nodeId,
    endpoint: "127.0.0.1:7410",
    tunnelKey: "B".repeat(43),
    consumerKey: "A".repeat(43),
    blockSize: 65536,
    blockCount: 16,
  };
  const until = Math.floor(clock.now() / 1000) + 3600;
  const jws = await signVolume(provider, vol, until, clock);
  assert.deepEqual(await verifyVolume(jws, provider.nodeId, consumer.nodeId, clock), vol);
  await assert.rejects(
    verifyVolume(jws, other.nodeId, consumer.nodeId, clock),
    /not from this provider/,
  );
  await assert.rejects(
    signVolume(provider, { ...vol, endpoint: "127.0.0.1:7410/x" }, until, clock),
    /host:port/,
  );
});
