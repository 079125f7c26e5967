import assert from "node:assert/strict";
import fc from "fast-check";
import { identify } from "@libp2p/identify";
import { peerIdFromString } from "@libp2p/peer-id";
import { multiaddr } from "@multiformats/multiaddr";
import { createLibp2p } from "libp2p";
import { newUuid, NodeIdentity, signEnvelope } from "../../protocol/mod.ts";
import { until } from "../../protocol/_test_tools.ts";
import { baseConfig, libp2pKey } from "../overlay/_libp2p.ts";
import {
  CREDENTIAL_PROTOCOL,
  foundVpn,
  jsonStream,
  membersTopic,
  mintRevocation,
  signDeparture,
  vpnCredential,
  VpnNode,
} from "../overlay/mod.ts";
import {
  Broadcaster,
  grantsTopic,
  OFFER_TYPE,
  REQUEST_TYPE,
  requestsTopic,
  RMS_PROTOCOL,
} from "./broadcast.ts";
import { RMS_AUDIENCE, signContribution } from "./contribution.ts";
import { Ledger, nodeAudience, signAck, signGrant, signLeaseEnd, verifyAck } from "./ledger.ts";

const GiB = 1024 ** 3;
const contribution = {
  v: 1 as const,
  diskBytes: 10 * GiB,
  cpuMillicores: 1000,
  memoryBytes: GiB,
  bandwidthBps: 0,
  ratio: 0.4,
};

async function cluster(n = 3) {
  const vpn = newUuid();
  const secret = await foundVpn();
  const members: { id: NodeIdentity; node: VpnNode; b: Broadcaster; ledger: Ledger }[] = [];
  for (let i = 0; i < n; i++) {
    const id = await NodeIdentity.generate();
    const credential = await vpnCredential(secret, vpn, id.nodeId);
    const node = await VpnNode.start({ identity: id, vpn, secret, credential });
    const ledger = await Ledger.open(":memory:");
    const statement = { jws: await signContribution(id, contribution), data: contribution };
    const b = new Broadcaster({
      identity: id,
      ledger,
      contribution: () => statement,
      location: newUuid(),
      network: newUuid(),
    });
    await b.attach(node);
    members.push({ id, node, b, ledger });
  }
  for (let i = 1; i < n; i++) await members[i].node.connect(members[0].node.addrs[0]);
  await members[2]?.node.connect(members[1].node.addrs[0]);
  // Wait for the gossip mesh of the requests topic.
  await until(
    "the requests mesh",
    () =>
      members.every((m) =>
        m.node.libp2p.services.pubsub.getSubscribers(requestsTopic(vpn)).length >= n - 1
      ),
  );
  return {
    vpn,
    secret,
    members,
    async [Symbol.asyncDispose]() {
      for (const m of members) {
        await m.node.stop();
        m.ledger.close();
      }
    },
  };
}

/** A grant of 1 GiB for an hour from `consumer` to `provider`, for no request in particular. */
async function grantOf(consumer: NodeIdentity, provider: NodeIdentity): Promise<string> {
  return await signGrant(consumer, {
    v: 1,
    id: newUuid(),
    request: newUuid(),
    offer: newUuid(),
    provider: provider.nodeId,
    consumer: consumer.nodeId,
    kind: "storage",
    bytes: GiB,
    cpuMillicores: 0,
    memoryBytes: 0,
    leaseSeconds: 3600,
    contribution: await signContribution(consumer, contribution),
  });
}

async function ask(stream: ReturnType<typeof jsonStream>, msg: Record<string, unknown>) {
  await stream.write(msg);
  return await stream.read();
}

Deno.test("Broadcaster: malformed, forged and replayed requests on the topic are rejected or answered once", async () => {
  await using c = await cluster();
  const [a, b, cc] = c.members;
  const topic = requestsTopic(c.vpn);
  const publish = (msg: unknown) =>
    a.node.libp2p.services.pubsub.publish(topic, new TextEncoder().encode(JSON.stringify(msg)));
  const other = await NodeIdentity.generate();
  const statementOf = async (who: NodeIdentity) => await signContribution(who, contribution);
  const requestBy = async (signer: NodeIdentity, over: Record<string, unknown> = {}) =>
    await signEnvelope(signer, {
      v: 1,
      kind: "storage",
      bytes: GiB,
      cpuMillicores: 0,
      memoryBytes: 0,
      leaseSeconds: 3600,
      count: 1,
      maxHops: 0,
      contribution: await statementOf(signer),
      ...over,
    }, { type: REQUEST_TYPE, audience: RMS_AUDIENCE, ttlSeconds: 60 });
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.jsonValue({ maxDepth: 2 }),
        fc.record({ t: fc.constant("request"), request: fc.string(), hops: fc.integer() }),
        fc.constantFrom(
          // another node's contribution inside a request
          requestBy(a.id, { contribution: "x" }),
          statementOf(other).then((s) => requestBy(a.id, { contribution: s })),
          // an unknown field, a lease too long, a lifetime too long
          requestBy(a.id, { extra: 1 }),
          requestBy(a.id, { leaseSeconds: 10 ** 9 }),
          signEnvelope(a.id, {}, { type: REQUEST_TYPE, audience: RMS_AUDIENCE, ttlSeconds: 3600 }),
        ).chain((p) => fc.constant(p)),
      ),
      async (m) => {
        const msg = m instanceof Promise ? { t: "request", request: await m, hops: 0 } : m;
        await publish(msg).catch(() => {});
      },
    ),
    { numRuns: 30 },
  );
  await new Promise((r) => setTimeout(r, 300));
  for (const m of [b, cc]) assert.equal(m.ledger.entries().length, 0);

  // A genuine request is answered by each other member once, even when the same message is
  // published again (a replay): the id was seen.
  const offers = await a.b.request({
    kind: "storage",
    bytes: GiB,
    leaseSeconds: 3600,
    count: 5,
    waitMs: 1500,
  });
  assert.deepEqual(offers.map((o) => o.provider).sort(), [b.id.nodeId, cc.id.nodeId].sort());
  const before = b.b.stats();
  const replay = await requestBy(a.id);
  await publish({ t: "request", request: replay, hops: 0 });
  await until("b to take it", () => b.b.stats().requests === before.requests + 1);
  await publish({ t: "request", request: replay, hops: 0 }); // a new gossip message, the same request
  await until("b to ignore the replay", () => b.b.stats().duplicates > before.duplicates);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(b.b.stats().offers, before.offers + 1, "one offer for one request");

  // A provider that failed one of a's audits: its offers are refused, the other's taken.
  const now = Math.floor(Date.now() / 1000);
  await a.ledger.audited({
    provider: cc.id.nodeId,
    kind: "cdn",
    ok: false,
    at: now,
    detail: "wrong proof",
  });
  const trusted = await a.b.request({
    kind: "storage",
    bytes: GiB,
    leaseSeconds: 3600,
    count: 5,
    waitMs: 1500,
  });
  assert.deepEqual(trusted.map((o) => o.provider), [b.id.nodeId]);
});

Deno.test("Broadcaster: hostile offers and grants on the stream get a refusal code and change no ledger", async () => {
  await using c = await cluster();
  const [a, b] = c.members;
  const open = async () => jsonStream(await a.node.openStream(b.id.nodeId, RMS_PROTOCOL), 3000);
  const offer = await signEnvelope(a.id, {
    v: 1,
    request: newUuid(),
    requester: b.id.nodeId,
    kind: "storage",
    bytes: GiB,
    cpuMillicores: 0,
    memoryBytes: 0,
    leaseSeconds: 3600,
    vpn: c.vpn,
    location: newUuid(),
    network: newUuid(),
  }, { type: OFFER_TYPE, audience: nodeAudience(b.id.nodeId), ttlSeconds: 600 });
  const grant = await grantOf(a.id, b.id);
  // A grant b acknowledged once, for another consumer, sent again: b made no such offer now.
  const ack = await signAck(b.id, grant, 3600);
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
        fc.record({ t: fc.constantFrom("offer", "grant"), offer: fc.string(), grant: fc.string() }),
        fc.constantFrom(
          { t: "offer", offer }, // for a request b never made
          { t: "grant", grant }, // for an offer b never made
          { t: "grant", grant: ack }, // not a grant at all
          { t: "offer", offer: grant },
          { t: "grant", grant: grant.slice(0, -4) + "AAAA" }, // signature broken
        ),
      ),
      async (msg) => {
        const s = await open();
        const answer = await ask(s, msg as Record<string, unknown>);
        assert.equal(answer.ok, false, JSON.stringify(answer));
        assert.equal(typeof answer.code, "string");
      },
    ),
    { numRuns: 40 },
  );
  assert.equal(b.ledger.entries().length, 0);
  assert.equal(a.ledger.entries().length, 0);
});

Deno.test("VpnNode: anything but a valid credential on the credential protocol keeps the peer out", async () => {
  await using c = await cluster(2);
  const [a] = c.members;
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.jsonValue({ maxDepth: 2 }).map((v) => ({ t: "credential", credential: v })),
        fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }),
        fc.constant({ t: "credential", credential: a.node.credential.jws }), // someone else's
      ),
      async (msg) => {
        const id = await NodeIdentity.generate();
        const libp2p = await createLibp2p({
          privateKey: await libp2pKey(id),
          addresses: { listen: [] },
          ...baseConfig(c.secret.networkKey), // it has the network key, not a credential
          services: { identify: identify() },
        });
        try {
          const stream = await libp2p.dialProtocol(multiaddr(a.node.addrs[0]), CREDENTIAL_PROTOCOL);
          const s = jsonStream(stream, 3000);
          const answer = await ask(s, msg as Record<string, unknown>).catch(() => ({ ok: false }));
          assert.equal(answer.ok, false);
          await until("the peer to be kept out", () => a.node.isDenied(id.nodeId), 3000);
          assert.equal(a.node.isVerified(id.nodeId), false);
          const aId = peerIdFromString(a.id.nodeId);
          await until("the connection closed", () => !libp2p.getConnections(aId).length, 3000);
          // Dialling again: refused by a's gater (the dial fails, or its connection is closed at
          // once), and a holds no connection from it.
          const again = await libp2p.dial(multiaddr(a.node.addrs[0])).catch(() => undefined);
          if (again) await until("a to close it", () => again.status !== "open", 3000);
          assert.equal(a.node.libp2p.getConnections(peerIdFromString(id.nodeId)).length, 0);
        } finally {
          await libp2p.stop();
        }
      },
    ),
    { numRuns: 15 },
  );
  assert.equal(a.node.roster().length, 2);
});

Deno.test("VpnNode: junk, forged and replayed messages on the members topic change no roster", async () => {
  await using c = await cluster();
  const [a, b, cc] = c.members;
  const topic = membersTopic(c.vpn);
  const publish = (msg: unknown) =>
    a.node.libp2p.services.pubsub.publish(topic, new TextEncoder().encode(JSON.stringify(msg)));
  await until("rosters of three", () => b.node.roster().length === 3);
  const stranger = await NodeIdentity.generate();
  const otherVpnKey = await NodeIdentity.generate();
  const forgedRevocation = await mintRevocation(otherVpnKey, {
    v: 1,
    vpn: c.vpn,
    member: cc.id.nodeId,
    reason: "forged",
    by: a.id.nodeId,
  });
  const foreignCredential = await vpnCredential(await foundVpn(), c.vpn, stranger.nodeId);
  // Departures that are not cc's own: a stranger's key naming cc, and cc's own for another VPN;
  // and cc's own voiding credentials not issued yet.
  const [strangerSays, otherVpn, ahead] = await Promise.all([
    signEnvelope(stranger, { v: 1, vpn: c.vpn, member: cc.id.nodeId, until: 0 }, {
      type: "truecloud-vpn-departure+jwt",
      audience: `truecloud:vpn:${c.vpn}`,
      ttlSeconds: 3600,
    }),
    signDeparture(cc.id, newUuid(), cc.node.credential.issuedAt),
    signDeparture(cc.id, c.vpn, Math.floor(Date.now() / 1000) + 3600),
  ]);
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.jsonValue({ maxDepth: 2 }),
        fc.record({
          t: fc.constantFrom("member", "revoke", "addrs", "leave"),
          credential: fc.string(),
          departure: fc.string(),
        }),
        fc.constantFrom(
          { t: "revoke", revocation: forgedRevocation }, // not signed with this VPN's key
          { t: "member", credential: foreignCredential }, // another VPN key's credential
          { t: "addrs", member: cc.id.nodeId, addrs: ["/ip4/203.0.113.9/tcp/1"] }, // not its own
          { t: "member", credential: a.node.credential.jws }, // a replay: changes nothing
          { t: "leave", departure: strangerSays }, // only a member may say it leaves
          { t: "leave", departure: otherVpn }, // cc leaving another VPN
          { t: "leave", departure: ahead }, // voiding the future
        ),
      ),
      async (msg) => {
        await publish(msg).catch(() => {});
      },
    ),
    { numRuns: 40 },
  );
  await new Promise((r) => setTimeout(r, 300));
  for (const m of [b, cc]) {
    assert.deepEqual(
      m.node.roster().map((x) => x.data.member).sort(),
      c.members.map((x) => x.id.nodeId).sort(),
    );
    assert.equal(m.node.isDenied(cc.id.nodeId), false);
  }
  assert.ok(b.node.isVerified(cc.id.nodeId) || cc.node.isVerified(b.id.nodeId));
});

Deno.test("Broadcaster: forged, foreign and replayed leases and lease ends on the grants topic change no ledger", async () => {
  await using c = await cluster();
  const [a, b, cc] = c.members;
  const publish = (msg: unknown) =>
    a.node.libp2p.services.pubsub.publish(
      grantsTopic(c.vpn),
      new TextEncoder().encode(JSON.stringify(msg)),
    );
  const stranger = await NodeIdentity.generate();
  // A genuine lease: a's grant, acknowledged by b.
  const grant = await grantOf(a.id, b.id);
  const lease = await signAck(b.id, grant, 3600);
  const { id } = await verifyAck(lease);
  const end = (by: NodeIdentity, reason: "released" | "withdrawn" = "released") =>
    signLeaseEnd(by, {
      v: 1,
      lease: id,
      provider: b.id.nodeId,
      consumer: a.id.nodeId,
      at: Math.floor(Date.now() / 1000),
      reason,
    });
  const [strangerAck, strangerEnd, foreignEnd] = await Promise.all([
    signAck(stranger, grant, 3600), // a grant addressed to b, acknowledged by someone else
    end(stranger), // a lease end signed by neither party
    signLeaseEnd(stranger, { // a lease end between other parties, for the same lease id
      v: 1,
      lease: id,
      provider: stranger.nodeId,
      consumer: a.id.nodeId,
      at: 0,
      reason: "withdrawn",
    }),
  ]);
  await publish({ t: "grant", ack: lease });
  await until("b and c to record the lease", () => [b, cc].every((m) => m.ledger.get(id)));
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.jsonValue({ maxDepth: 2 }),
        fc.record({ t: fc.constantFrom("grant", "end"), ack: fc.string(), end: fc.string() }),
        fc.constantFrom(
          { t: "grant", ack: strangerAck },
          { t: "end", end: strangerEnd },
          { t: "end", end: foreignEnd },
          { t: "grant", ack: lease }, // a replay: recorded once
          { t: "grant", ack: grant }, // a grant is not a lease
        ),
      ),
      async (msg) => {
        await publish(msg).catch(() => {});
      },
    ),
    { numRuns: 40 },
  );
  await new Promise((r) => setTimeout(r, 300));
  for (const m of [b, cc]) {
    assert.deepEqual(m.ledger.entries().map((e) => e.id), [id]);
    assert.equal(m.ledger.get(id)!.ended, undefined, "still in force");
  }
  // The consumer's own lease end is taken.
  await publish({ t: "end", end: await end(a.id) });
  await until(
    "the lease to end",
    () => [b, cc].every((m) => m.ledger.get(id)!.ended === "released"),
  );
});
