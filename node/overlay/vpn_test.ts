import assert from "node:assert/strict";
import { until } from "../../protocol/_test_tools.ts";
import { ManualClock, newUuid, NodeIdentity } from "../../protocol/mod.ts";
import { mintCredential } from "./credential.ts";
import { foundVpn, type VpnSecret } from "./secret.ts";
import { VpnNode } from "./vpn.ts";

async function member(
  vpn: string,
  secret: VpnSecret,
  opts: { clock?: ManualClock; ttl?: number; signer?: NodeIdentity } = {},
) {
  const identity = await NodeIdentity.generate();
  const signer = opts.signer ?? await NodeIdentity.fromJwk(secret.vpnKey);
  const credential = await mintCredential(signer, {
    v: 1,
    vpn,
    member: identity.nodeId,
    location: newUuid(),
    network: newUuid(),
    guardian: identity.nodeId,
    addrs: [],
  }, { ttlSeconds: opts.ttl, clock: opts.clock });
  return { identity, credential };
}

// Three members, all connected, that know each other; `nodes` is where they are kept for stopping.
async function three(vpn: string, secret: VpnSecret, nodes: VpnNode[]) {
  for (let i = 0; i < 3; i++) {
    const m = await member(vpn, secret);
    nodes.push(await VpnNode.start({ ...m, vpn, secret, sweepMs: 100 }));
  }
  const [a, b, c] = nodes;
  await b.connect(a.addrs[0]);
  await c.connect(a.addrs[0]);
  await c.connect(b.addrs[0]);
  await until("a to verify b and c", () => a.verifiedPeers().length === 2);
  await until("rosters of three", () => nodes.every((n) => n.roster().length === 3));
  return [a, b, c];
}

Deno.test("VpnNode: members show credentials, learn the roster, and keep out forged credentials and revoked members", async () => {
  const vpn = newUuid();
  const secret = await foundVpn();
  const nodes: VpnNode[] = [];
  try {
    const [a, b, c] = await three(vpn, secret, nodes);

    // A node with the network key but a credential signed by another key: kept out.
    const forger = await NodeIdentity.generate();
    const m = await member(vpn, secret, { signer: forger });
    const forgedSecret = { ...secret, vpnKey: forger.toJwk() as VpnSecret["vpnKey"] };
    const f = await VpnNode.start({ ...m, vpn, secret: forgedSecret, sweepMs: 100 });
    nodes.push(f);
    await assert.rejects(f.connect(a.addrs[0]), (e: Error & { code?: string }) => !!e.code);
    await until("a to deny the forger", () => a.isDenied(f.nodeId));
    assert.ok(!a.verifiedPeers().includes(f.nodeId));
    assert.equal(
      a.libp2p.getConnections().filter((x) => x.remotePeer.toString() === f.nodeId)
        .length,
      0,
    );

    // Revocation: c is revoked by b; a learns it by gossip, drops c and refuses it again.
    await b.revoke(c.nodeId, "left the cloud");
    await until("a to drop c", () => a.isDenied(c.nodeId) && !a.verifiedPeers().includes(c.nodeId));
    await until("roster without c", () => a.roster().every((x) => x.data.member !== c.nodeId));
    await assert.rejects(c.connect(a.addrs[0]));
  } finally {
    for (const n of nodes) await n.stop();
  }
});

Deno.test("VpnNode: a peer whose credential expires is disconnected; one without the network key never connects", async () => {
  const vpn = newUuid();
  const secret = await foundVpn();
  const clock = new ManualClock(Date.now());
  const nodes: VpnNode[] = [];
  try {
    const a = await VpnNode.start({
      ...(await member(vpn, secret)),
      vpn,
      secret,
      clock,
      sweepMs: 50,
    });
    nodes.push(a);
    const b = await VpnNode.start({
      ...(await member(vpn, secret, { clock, ttl: 120 })),
      vpn,
      secret,
      sweepMs: 50,
    });
    nodes.push(b);
    await b.connect(a.addrs[0]);
    assert.ok(a.verifiedPeers().includes(b.nodeId));
    // Past b's expiry and the tolerated skew, on a's clock: a drops b and keeps it out.
    clock.advance(200_000);
    await until("a to drop b", () => a.isDenied(b.nodeId) && !a.verifiedPeers().includes(b.nodeId));
    await until(
      "b's connections closed",
      () => a.libp2p.getConnections().every((x) => x.remotePeer.toString() !== b.nodeId),
    );
    // Dialling again: a's gater refuses it (the dial fails, or the connection is closed at once,
    // before b is verified), and a holds nothing from b.
    await b.connect(a.addrs[0]).catch(() => {});
    await until(
      "a to refuse b again",
      () =>
        !a.isVerified(b.nodeId) &&
        a.libp2p.getConnections().every((x) => x.remotePeer.toString() !== b.nodeId),
    );

    // Another VPN's network key: the TCP connection fails before any libp2p byte.
    const other = await foundVpn();
    const stranger = await VpnNode.start({
      ...(await member(vpn, other)),
      vpn,
      secret: other,
    });
    nodes.push(stranger);
    await assert.rejects(stranger.connect(a.addrs[0]));
    assert.equal(a.verifiedPeers().includes(stranger.nodeId), false);
  } finally {
    for (const n of nodes) await n.stop();
  }
});

Deno.test("VpnNode: a member that departs leaves every roster, a member that missed it learns it on connecting, and it counts again with a new credential", async () => {
  const vpn = newUuid();
  const secret = await foundVpn();
  const nodes: VpnNode[] = [];
  try {
    const [a, b, c] = await three(vpn, secret, nodes);
    await c.depart();
    await c.stop();
    await until("a and b to drop c", () => [a, b].every((n) => n.roster().length === 2));

    // A fourth member that knew c's credential but missed the departure: the roster exchange on its
    // first connection carries the departure, so it does not bring c back to the others.
    const m4 = await member(vpn, secret);
    const d = await VpnNode.start({ ...m4, vpn, secret, sweepMs: 100 });
    nodes.push(d);
    await d.learn(c.credential.jws);
    assert.equal(d.roster().length, 2);
    await d.connect(a.addrs[0]);
    const members = () => d.roster().map((x) => x.data.member).sort();
    const want = [a.nodeId, b.nodeId, d.nodeId].sort().join();
    await until("d to learn of the departure", () => members().join() === want);
    await new Promise((r) => setTimeout(r, 300));
    assert.ok([a, b].every((n) => n.roster().every((x) => x.data.member !== c.nodeId)));

    // c comes back later with a credential minted after its departure: it counts again.
    await new Promise((r) => setTimeout(r, 1100)); // issued in a later second than the departure
    const again = await mintCredential(await NodeIdentity.fromJwk(secret.vpnKey), {
      ...c.credential.data,
      addrs: [],
    });
    await a.learn(again);
    assert.ok(a.roster().some((x) => x.data.member === c.nodeId));
  } finally {
    for (const n of nodes) await n.stop().catch(() => {});
  }
});
