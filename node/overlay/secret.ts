/**
 * What a member holds of its VPN (`docs/protocol/join.md`): the network key, the VPN key and the
 * charter; founding a VPN; minting a credential with the VPN key.
 *
 * @module
 */

import { hexKey32Schema, type IdentityJwk, NodeIdentity, z } from "../../protocol/mod.ts";
import { mintCredential } from "./credential.ts";

/** A VPN's size and diversity rules. */
export const charterSchema = z.strictObject({
  maxMembers: z.number().int().min(2).max(256),
  maxPerLocation: z.number().int().min(1).max(256),
  maxPerNetwork: z.number().int().min(1).max(256),
});
/** A VPN's size and diversity rules. */
export type Charter = z.infer<typeof charterSchema>;

/** The default charter of a VPN of `maxMembers` members. */
export function defaultCharter(maxMembers = 16): Charter {
  const per = Math.ceil(maxMembers / 4);
  return { maxMembers, maxPerLocation: per, maxPerNetwork: per };
}

/** What a member holds of its VPN: network key, VPN key and charter. */
export const vpnSecretSchema = z.strictObject({
  networkKey: hexKey32Schema,
  vpnKey: z.strictObject({
    kty: z.literal("OKP"),
    crv: z.literal("Ed25519"),
    x: z.string().max(64),
    d: z.string().max(64),
  }),
  charter: charterSchema,
});
/** What a member holds of its VPN. */
export type VpnSecret = z.infer<typeof vpnSecretSchema>;

/**
 * Founds a new VPN: a random network key and VPN key.
 * @param charter Its rules (default: 16 members).
 * @returns The secret.
 */
export async function foundVpn(charter: Charter = defaultCharter()): Promise<VpnSecret> {
  const networkKey = Array.from(crypto.getRandomValues(new Uint8Array(32)))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
  const key = await NodeIdentity.generate();
  const { kty, crv, x, d } = key.toJwk();
  return { networkKey, vpnKey: { kty, crv, x, d }, charter };
}

/**
 * Mints a member credential with a VPN's key (held in its secret): what a founder gives itself, and
 * any member acting as guardian gives a newcomer.
 * @param secret The VPN's secret.
 * @param vpn The VPN's UUID.
 * @param member The member's node id.
 * @param place Location and network UUIDs (random if not given), where it listens, who admitted it.
 * @param ttlSeconds Lifetime (default one day).
 */
export async function vpnCredential(
  secret: VpnSecret,
  vpn: string,
  member: string,
  place: { location?: string; network?: string; addrs?: string[]; guardian?: string } = {},
  ttlSeconds?: number,
): Promise<string> {
  return await mintCredential(await NodeIdentity.fromJwk(secret.vpnKey as IdentityJwk), {
    v: 1,
    vpn,
    member,
    location: place.location ?? crypto.randomUUID(),
    network: place.network ?? crypto.randomUUID(),
    guardian: place.guardian ?? member,
    addrs: place.addrs ?? [],
  }, { ttlSeconds });
}
