import assert from "node:assert/strict";
import fc from "fast-check";
import { newUuid, NodeIdentity } from "../../protocol/mod.ts";
import { foundVpn, jsonStream, vpnCredential, VpnNode } from "../overlay/mod.ts";
import { BandwidthProbe, PROBE_BOUNDS, PROBE_PROTOCOL } from "./probe.ts";

async function members(n: number) {
  const vpn = newUuid();
  const secret = await foundVpn();
  const nodes: VpnNode[] = [];
  const probes: BandwidthProbe[] = [];
  for (let i = 0; i < n; i++) {
    const identity = await NodeIdentity.generate();
    const credential = await vpnCredential(secret, vpn, identity.nodeId);
    const node = await VpnNode.start({ identity, vpn, secret, credential });
    const probe = new BandwidthProbe();
    await probe.attach(node);
    nodes.push(node);
    probes.push(probe);
  }
  for (let i = 1; i < n; i++) await nodes[i].connect(nodes[0].addrs[0]);
  return {
    nodes,
    probes,
    async [Symbol.asyncDispose]() {
      for (const node of nodes) await node.stop();
    },
  };
}

Deno.test("BandwidthProbe: measures the upload rate to members, once a minute per peer", async () => {
  await using m = await members(3);
  const [a, b] = m.nodes;
  await m.nodes[2].connect(b.addrs[0]);
  const rate = await m.probes[0].measure([a]);
  assert.ok(rate !== undefined && rate > 1e6, `a rate of ${rate} B/s over loopback`);
  // Both peers were probed: a second probe to either within the minute is refused.
  await assert.rejects(
    m.probes[0].send(a, b.nodeId),
    (e: Error & { code?: string }) => e.code === "too_soon",
  );
  // Another member may still probe b.
  assert.ok((await m.probes[2].send(m.nodes[2], b.nodeId, PROBE_BOUNDS[0])) > 0);
  // Nobody connected, nothing measured.
  await using lone = await members(1);
  assert.equal(await lone.probes[0].measure(lone.nodes), undefined);
});

Deno.test("BandwidthProbe: hostile probes get an error code and leave the member able to answer", async () => {
  await using m = await members(3);
  const [a, b, c] = m.nodes;
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.jsonValue({ maxDepth: 2 }).map((header) => ({ header, frames: [] as number[] })),
        fc.record({
          header: fc.record({
            t: fc.constant("probe"),
            bytes: fc.oneof(
              fc.integer({ min: -10, max: PROBE_BOUNDS[0] - 1 }),
              fc.integer({ min: PROBE_BOUNDS[1] + 1 }),
              fc.double(),
              fc.string(),
            ),
          }),
          frames: fc.constant([] as number[]),
        }),
        // More than announced: 64 KiB announced, 100 KiB sent.
        fc.constant({ header: { t: "probe", bytes: PROBE_BOUNDS[0] }, frames: [102_400] }),
      ),
      async ({ header, frames }) => {
        const stream = await b.openStream(a.nodeId, PROBE_PROTOCOL);
        const s = jsonStream(stream, 2000);
        try {
          await s.write(
            header && typeof header === "object" && !Array.isArray(header) ? header : { header },
          );
          for (const n of frames) await s.writeRaw(new Uint8Array(n));
          const answer = await s.read();
          assert.equal(answer.t, "error", JSON.stringify(answer));
          assert.match(String(answer.code), /^(invalid|too_soon)$/);
        } finally {
          await stream.close().catch(() => {});
        }
      },
    ),
    { numRuns: 25 },
  );
  // Not left busy: a genuine probe from another member is answered.
  assert.ok((await m.probes[2].send(c, a.nodeId, PROBE_BOUNDS[0])) > 0);
});
