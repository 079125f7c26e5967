import assert from "node:assert/strict";
import fc from "fast-check";
import { NodeIdentity, systemClock, TrueCloudError } from "../../protocol/mod.ts";
import { verifyCredential } from "./credential.ts";
import { acceptRekey, makeRekey } from "./rekey.ts";
import { defaultCharter, foundVpn, vpnCredential } from "./secret.ts";

async function setup() {
  const vpn = crypto.randomUUID();
  const secret = await foundVpn();
  const oldKey = await NodeIdentity.fromJwk(secret.vpnKey);
  const ids = await Promise.all([0, 1, 2].map(() => NodeIdentity.generate()));
  const roster = await Promise.all(
    ids.map(async (id) =>
      await verifyCredential(await vpnCredential(secret, vpn, id.nodeId), {
        vpn,
        keyId: oldKey.nodeId,
      })
    ),
  );
  const [guardian, member, revoked] = ids;
  const made = await makeRekey({
    vpn,
    oldKey,
    charter: defaultCharter(),
    revoked: revoked.nodeId,
    guardian: guardian.nodeId,
    clock: systemClock,
    roster: roster.slice(0, 2),
    addrsOf: () => ["/ip4/127.0.0.1/tcp/4101"],
  });
  const ref = { vpn, keyId: oldKey.nodeId };
  return { vpn, ref, made, member, revoked, guardian, oldKey };
}

Deno.test("acceptRekey() takes a re-key vouched for by the old key, and refuses forged, tampered and misdirected ones", async () => {
  const s = await setup();
  const accept = (msg: Record<string, unknown>, self = s.member.nodeId) =>
    acceptRekey(msg, { ref: s.ref, vpn: s.vpn, self, clock: systemClock });
  const good = s.made.messageFor(s.member.nodeId);
  const r = await accept(good);
  assert.equal(r.keyId, s.made.own.keyId);
  assert.notEqual(r.keyId, s.oldKey.nodeId);

  const reject = (p: Promise<unknown>) => assert.rejects(p, (e) => e instanceof TrueCloudError);
  // Vouched for by a key that is not this VPN's.
  const other = await setup();
  await reject(accept({ ...good, proof: other.made.messageFor(other.member.nodeId).proof }));
  // The secret swapped for another one.
  const swapped = await foundVpn();
  await reject(accept({ ...good, secret: swapped }));
  await reject(
    accept({ ...good, secret: { ...good.secret as object, networkKey: "00".repeat(32) } }),
  );
  // Another member's credential, and the revoked member itself.
  await reject(accept(s.made.messageFor(s.guardian.nodeId)));
  await reject(accept(good, s.revoked.nodeId));
  // Another VPN's.
  await reject(accept({ ...good, vpn: crypto.randomUUID() }));
  // Anything at all.
  await fc.assert(
    fc.asyncProperty(
      fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 8 }),
      async (junk) => {
        await reject(accept(junk));
        await reject(accept({ ...good, ...junk, t: "rekey", v: 1, proof: String(junk.proof) }));
      },
    ),
    { numRuns: 50 },
  );
});
