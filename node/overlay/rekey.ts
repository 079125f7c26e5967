/**
 * Re-keying a VPN after a revocation (`docs/protocol/join.md`, "Roster and revocation"): a new
 * network key and VPN key, vouched for by the old key, handed with a new credential to each
 * remaining member.
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  type Clock,
  fromHex,
  type IdentityJwk,
  NodeIdentity,
  nodeIdSchema,
  parseWith,
  SignatureError,
  signEnvelope,
  TrueCloudError,
  uuidSchema,
  verifyEnvelope,
  z,
} from "../../protocol/mod.ts";
import {
  type Credential,
  mintCredential,
  multiaddrTextSchema,
  verifyCredential,
  vpnAudience,
  type VpnKeyRef,
} from "./credential.ts";
import { type Charter, foundVpn, type VpnSecret, vpnSecretSchema } from "./secret.ts";

/** The re-key protocol. */
export const REKEY_PROTOCOL = "/truecloud/vpn/rekey/1.0.0";
/** Envelope type of the old key's proof. */
export const REKEY_TYPE = "truecloud-vpn-rekey+jwt";

/** A re-key, as the node that moves to the new network needs it. */
export interface Rekey {
  /** The new secret. */
  secret: VpnSecret;
  /** This node's credential under the new key. */
  credential: string;
  /** Where members listen. */
  members: { id: string; addrs: string[] }[];
  /** The new VPN key's id. */
  keyId: string;
}

const proofSchema = z.strictObject({
  v: z.literal(1),
  vpn: uuidSchema,
  keyId: nodeIdSchema,
  networkKeySha256: z.string().regex(/^[0-9a-f]{64}$/),
  revoked: nodeIdSchema,
});

const messageSchema = z.strictObject({
  t: z.literal("rekey"),
  v: z.literal(1),
  vpn: uuidSchema,
  secret: vpnSecretSchema,
  credential: z.string().min(1).max(4096),
  members: z.array(z.strictObject({
    id: nodeIdSchema,
    addrs: z.array(multiaddrTextSchema).max(16),
  })).max(32),
  proof: z.string().min(1).max(4096),
});

// The SHA-256 of the network key's 32 bytes.
function networkKeyHash(hex: string): string {
  return createHash("sha256").update(fromHex(hex)).digest("hex");
}

/**
 * Makes a re-key: the new secret, the proof, and each member's message.
 * @param o The VPN, its old key and charter, the revoked member, the roster left, addresses.
 */
export async function makeRekey(o: {
  vpn: string;
  oldKey: NodeIdentity;
  charter: Charter;
  revoked: string;
  guardian: string;
  clock: Clock;
  roster: Credential[];
  addrsOf: (id: string) => string[];
}): Promise<{ own: Rekey; messageFor(peer: string): Record<string, unknown> }> {
  const secret = await foundVpn(o.charter);
  const newKey = await NodeIdentity.fromJwk(secret.vpnKey as IdentityJwk);
  const proof = await signEnvelope(o.oldKey, {
    v: 1,
    vpn: o.vpn,
    keyId: newKey.nodeId,
    networkKeySha256: networkKeyHash(secret.networkKey),
    revoked: o.revoked,
  }, { type: REKEY_TYPE, audience: vpnAudience(o.vpn), ttlSeconds: 3600, clock: o.clock });
  const members = o.roster.map((c) => ({
    id: c.data.member,
    addrs: [...o.addrsOf(c.data.member), ...c.data.addrs].slice(0, 16),
  })).filter((m) => m.addrs.length).slice(0, 32);
  const credentials = new Map<string, string>();
  for (const c of o.roster) {
    const { member, location, network, addrs } = c.data;
    credentials.set(
      member,
      await mintCredential(newKey, {
        v: 1,
        vpn: o.vpn,
        member,
        location,
        network,
        guardian: o.guardian,
        addrs,
      }, { clock: o.clock }),
    );
  }
  const own = credentials.get(o.guardian);
  if (!own) {
    throw new TrueCloudError("The re-keying member is not on the roster", { code: "invalid" });
  }
  return {
    own: { secret, credential: own, members, keyId: newKey.nodeId },
    messageFor: (peer) => ({
      t: "rekey",
      v: 1,
      vpn: o.vpn,
      secret,
      credential: credentials.get(peer) ?? "",
      members,
      proof,
    }),
  };
}

/**
 * Checks a re-key a member received.
 * @param msg The message, untrusted.
 * @param o The VPN as the receiver knows it (its current key), and the receiver.
 * @returns The re-key.
 * @throws {SignatureError|ValidationError} When the proof, the new key or the credential do not hold.
 */
export async function acceptRekey(
  msg: Record<string, unknown>,
  o: { ref: VpnKeyRef; vpn: string; self: string; clock: Clock },
): Promise<Rekey> {
  const m = parseWith(messageSchema, msg, "re-key");
  if (m.vpn !== o.vpn) throw new SignatureError("A re-key of another VPN", { code: "invalid" });
  const p = await verifyEnvelope(m.proof, {
    type: REKEY_TYPE,
    audience: vpnAudience(o.vpn),
    schema: proofSchema,
    what: "re-key proof",
    clock: o.clock,
    maxBytes: 4096,
    maxTtlSeconds: 3600,
  });
  if (p.issuer !== o.ref.keyId || p.data.vpn !== o.vpn) {
    throw new SignatureError("The re-key is not vouched for by this VPN's key", {
      code: "signature_invalid",
    });
  }
  const newKey = await NodeIdentity.fromJwk(m.secret.vpnKey as IdentityJwk);
  if (
    newKey.nodeId !== p.data.keyId ||
    networkKeyHash(m.secret.networkKey) !== p.data.networkKeySha256
  ) {
    throw new SignatureError("The new secret is not the one vouched for", {
      code: "claim_invalid",
    });
  }
  if (p.data.revoked === o.self) {
    throw new SignatureError("This node is the one revoked", { code: "revoked" });
  }
  await verifyCredential(m.credential, { vpn: o.vpn, keyId: newKey.nodeId }, {
    peer: o.self,
    clock: o.clock,
  });
  return { secret: m.secret, credential: m.credential, members: m.members, keyId: newKey.nodeId };
}
