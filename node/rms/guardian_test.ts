import assert from "node:assert/strict";
import fc from "fast-check";
import { createLibp2p } from "libp2p";
import { identify } from "@libp2p/identify";
import { multiaddr } from "@multiformats/multiaddr";
import { ManualClock, newUuid, NodeIdentity, signEnvelope } from "../../protocol/mod.ts";
import { until } from "../../protocol/_test_tools.ts";
import { baseConfig, libp2pKey } from "../overlay/_libp2p.ts";
import {
  foundVpn,
  GuestServer,
  JOIN_PROTOCOL,
  JOIN_REQUEST_TYPE,
  jsonStream,
  mintCredential,
  requestJoin,
  vpnAudience,
  vpnCredential,
  VpnNode,
} from "../overlay/mod.ts";
import { catalogFromTargets, mintAttestation, verifyAttestation } from "./attestation.ts";
import { guardianDecider } from "./guardian.ts";

const RELEASE = "truecloud-0.1.0.tar.gz";
const SHA = "ab".repeat(32);
const releases = catalogFromTargets({ [RELEASE]: { length: 1234, hashes: { sha256: SHA } } });
const GUEST_KEY = "c0".repeat(32);

async function fixture(refused: string[] = []) {
  const vpn = newUuid();
  const secret = await foundVpn({ maxMembers: 3, maxPerLocation: 2, maxPerNetwork: 2 });
  const founder = await NodeIdentity.generate();
  const location = newUuid();
  const credential = await mintCredential(await NodeIdentity.fromJwk(secret.vpnKey), {
    v: 1,
    vpn,
    member: founder.nodeId,
    location,
    network: newUuid(),
    guardian: founder.nodeId,
    addrs: [],
  });
  const member = await VpnNode.start({ identity: founder, vpn, secret, credential });
  const guest = await GuestServer.start({
    identity: founder,
    vpn,
    guestKey: GUEST_KEY,
    decide: guardianDecider(member, { releases, refused: new Set(refused) }),
    messageDeadlineMs: 2000,
    perAddressPerSecond: 1000, // every test client comes from 127.0.0.1
  });
  const target = {
    vpn,
    guardian: founder.nodeId,
    addr: guest.addrs[0].replace(/\/p2p\/.*$/, ""),
    guestKey: GUEST_KEY,
  };
  const nodes: VpnNode[] = [member];
  return {
    vpn,
    location,
    member,
    guest,
    target,
    nodes,
    async newcomer(o: { location?: string; attest?: (id: NodeIdentity) => Promise<string> } = {}) {
      const identity = await NodeIdentity.generate();
      const attestation = o.attest
        ? await o.attest(identity)
        : await mintAttestation(identity, { v: 1, release: RELEASE, sha256: SHA, length: 1234 });
      const outcome = await requestJoin(identity, target, {
        location: o.location ?? newUuid(),
        network: newUuid(),
        addrs: [],
        attestation,
      });
      return { identity, outcome };
    },
    async [Symbol.asyncDispose]() {
      await guest.stop();
      for (const n of nodes) await n.stop();
    },
  };
}

Deno.test("joining: a newcomer is admitted through the guest network, gets a credential, and enters the VPN", async () => {
  await using f = await fixture();
  const { identity, outcome } = await f.newcomer({ location: f.location });
  assert.ok(outcome.admitted, JSON.stringify(outcome));
  const { admission } = outcome;
  assert.equal(admission.members[0].id, f.member.nodeId);
  const node = await VpnNode.start({
    identity,
    vpn: f.vpn,
    secret: admission.secret,
    credential: admission.credential,
  });
  f.nodes.push(node);
  await node.connect(admission.members[0].addrs[0]);
  assert.ok(f.member.verifiedPeers().includes(identity.nodeId));
  assert.equal(f.member.roster().length, 2);
  // The guest connection is gone once the exchange is over.
  assert.equal(f.guest.libp2p.getConnections().length, 0);

  // A third at the same location breaks diversity (at most 2 per location): refused, with a reason.
  const third = await f.newcomer({ location: f.location });
  assert.equal(third.outcome.admitted, false);
  assert.ok(!third.outcome.admitted && third.outcome.refusal.code === "diversity");
  // Elsewhere, it fits; then the VPN is full (3).
  assert.ok((await f.newcomer()).outcome.admitted);
  const late = await f.newcomer();
  assert.ok(!late.outcome.admitted && late.outcome.refusal.code === "full");
});

Deno.test("joining: fake attestations, refused nodes and forged requests are turned away with their reason", async () => {
  const banned = await NodeIdentity.generate();
  await using f = await fixture([banned.nodeId]);
  const codeOf = (o: Awaited<ReturnType<typeof f.newcomer>>) =>
    o.outcome.admitted ? "admitted" : o.outcome.refusal.code;
  // A release that is not the released file.
  assert.equal(
    codeOf(
      await f.newcomer({
        attest: (id) =>
          mintAttestation(id, { v: 1, release: RELEASE, sha256: "00".repeat(32), length: 1234 }),
      }),
    ),
    "attestation",
  );
  // A release that does not exist.
  assert.equal(
    codeOf(
      await f.newcomer({
        attest: (id) =>
          mintAttestation(id, { v: 1, release: "evil.tar.gz", sha256: SHA, length: 1234 }),
      }),
    ),
    "attestation",
  );
  // Someone else's attestation.
  const other = await NodeIdentity.generate();
  assert.equal(
    codeOf(
      await f.newcomer({
        attest: () => mintAttestation(other, { v: 1, release: RELEASE, sha256: SHA, length: 1234 }),
      }),
    ),
    "attestation",
  );
  // The refusal list.
  const attestation = await mintAttestation(banned, {
    v: 1,
    release: RELEASE,
    sha256: SHA,
    length: 1234,
  });
  const r = await requestJoin(banned, f.target, {
    location: newUuid(),
    network: newUuid(),
    addrs: [],
    attestation,
  });
  assert.ok(!r.admitted && r.refusal.code === "refused");
  assert.equal(f.member.roster().length, 1, "nobody was admitted");
});

// A client that speaks the join protocol with whatever it is given.
async function raw(f: Awaited<ReturnType<typeof fixture>>, identity: NodeIdentity) {
  const libp2p = await createLibp2p({
    privateKey: await libp2pKey(identity),
    addresses: { listen: [] },
    ...baseConfig(GUEST_KEY),
    services: { identify: identify() },
  });
  const stream = await libp2p.dialProtocol(
    multiaddr(`${f.target.addr}/p2p/${f.target.guardian}`),
    JOIN_PROTOCOL,
  );
  const s = jsonStream(stream, 3000);
  const challenge = await s.read();
  return {
    challenge,
    s,
    async answer() {
      try {
        return await s.read();
      } finally {
        await libp2p.stop();
      }
    },
  };
}

Deno.test("joining: hostile join messages are refused with a code and admit nobody", async () => {
  await using f = await fixture();
  const id = await NodeIdentity.generate();
  const attestation = await mintAttestation(id, {
    v: 1,
    release: RELEASE,
    sha256: SHA,
    length: 1234,
  });
  const sign = (signer: NodeIdentity, data: Record<string, unknown>, aud = vpnAudience(f.vpn)) =>
    signEnvelope(signer, data, { type: JOIN_REQUEST_TYPE, audience: aud, ttlSeconds: 60 });
  const good = (nonce: string) => ({
    v: 1,
    vpn: f.vpn,
    guardian: f.member.nodeId,
    nonce,
    location: newUuid(),
    network: newUuid(),
    addrs: [],
    attestation,
  });
  // A replayed request (answers an earlier challenge), another node's request, another VPN's.
  const first = await raw(f, id);
  const replay = await sign(id, good(first.challenge.nonce as string));
  await first.s.write({ t: "join", request: await sign(id, good("11".repeat(32))) });
  assert.equal((await first.answer()).code, "identity");
  const second = await raw(f, id);
  await second.s.write({ t: "join", request: replay });
  assert.equal((await second.answer()).code, "identity");
  const third = await raw(f, id);
  const stranger = await NodeIdentity.generate();
  await third.s.write({
    t: "join",
    request: await sign(stranger, good(third.challenge.nonce as string)),
  });
  assert.equal((await third.answer()).code, "identity");
  const fourth = await raw(f, id);
  await fourth.s.write({
    t: "join",
    request: await sign(id, good(fourth.challenge.nonce as string), vpnAudience(newUuid())),
  });
  assert.equal((await fourth.answer()).code, "identity");

  // Anything at all as the message: a refusal with a code, never an admission, never a crash.
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }),
        fc.record({ t: fc.constant("join"), request: fc.string({ maxLength: 300 }) }),
        fc.record({
          t: fc.constant("join"),
          request: fc.constantFrom("a.b.c", replay, replay.slice(0, -3) + "AAA"),
        }),
      ),
      async (msg) => {
        const c = await raw(f, id);
        await c.s.write(msg as Record<string, unknown>);
        const a = await c.answer();
        assert.equal(a.t, "refuse");
        assert.ok(["malformed", "identity"].includes(a.code as string), JSON.stringify(a));
      },
    ),
    { numRuns: 25 },
  );
  // Silence: the guardian's deadline passes and it refuses.
  const silent = await raw(f, id);
  assert.equal((await silent.answer()).code, "malformed");
  assert.equal(f.member.roster().length, 1, "nobody was admitted");
  // And it still admits an honest newcomer.
  assert.ok((await f.newcomer()).outcome.admitted);
});

Deno.test("members check each other's release attestation on every connection, and renew their credentials past half-life", async () => {
  const vpn = newUuid();
  const secret = await foundVpn();
  const clock = new ManualClock(Date.now());
  const start = async (sha256: string) => {
    const identity = await NodeIdentity.generate();
    return await VpnNode.start({
      identity,
      vpn,
      secret,
      credential: await vpnCredential(secret, vpn, identity.nodeId),
      attest: {
        own: () => mintAttestation(identity, { v: 1, release: RELEASE, sha256, length: 1234 }),
        check: async (jws, peer) => void await verifyAttestation(jws, peer, releases),
      },
      clock,
      sweepMs: 50,
    });
  };
  const honest = await start(SHA);
  const other = await start(SHA);
  const modified = await start("00".repeat(32)); // a valid credential, but not a released build
  try {
    await other.connect(honest.addrs[0]);
    await assert.rejects(modified.connect(honest.addrs[0]));
    assert.ok(honest.isDenied(modified.nodeId));
    // Past half of its day, each member renews its own credential; peers take the new one.
    const before = other.credential.expiresAt;
    clock.advance(13 * 3600_000);
    await until("a renewed credential", () => other.credential.expiresAt > before);
    await until(
      "the peer to hold it",
      () => honest.roster().find((c) => c.data.member === other.nodeId)!.expiresAt > before,
    );
    assert.ok(honest.isVerified(other.nodeId));
  } finally {
    for (const n of [honest, other, modified]) await n.stop();
  }
});
