/**
 * The guardian's decision on a join request (`docs/protocol/join.md`): the release attestation,
 * then fit (refusal list, size, diversity) against the roster, then a freshly minted credential
 * and the VPN's secret — or a refusal with its reason. Every member can be a guardian.
 *
 * @module
 */

import type { Admission, JoinDecider, Refusal, VpnNode } from "../overlay/mod.ts";
import type { Clock } from "../../protocol/mod.ts";
import { judge } from "./admission.ts";
import { type ReleaseCatalog, verifyAttestation } from "./attestation.ts";

/** Settings of {@linkcode guardianDecider}. */
export interface GuardianOptions {
  /** The current releases, from the library's verified targets. */
  releases: ReleaseCatalog;
  /** Nodes refused whatever they bring. */
  refused?: ReadonlySet<string>;
  /** Lifetime of the credentials minted, in seconds (default 7 days). */
  credentialTtlSeconds?: number;
  /** Time source. */
  clock?: Clock;
}

/**
 * Builds the decision of one member acting as guardian of its VPN.
 * @param member The guardian's membership of the VPN.
 * @param o Releases, refusal list, credential lifetime.
 * @returns The decider a guest network calls.
 */
export function guardianDecider(member: VpnNode, o: GuardianOptions): JoinDecider {
  const refuse = (code: Refusal["code"], reason: string): Refusal => ({
    t: "refuse",
    v: 1,
    code,
    reason,
  });
  return async ({ node, data }) => {
    try {
      await verifyAttestation(data.attestation, node, o.releases, o.clock);
    } catch (err) {
      return refuse("attestation", (err as Error).message);
    }
    if (member.isDenied(node)) return refuse("refused", "This node is kept out of the VPN");
    const roster = member.roster();
    const verdict = judge(
      roster.map((c) => c.data),
      { member: node, location: data.location, network: data.network },
      member.charter,
      o.refused,
    );
    if (!verdict.ok) return refuse(verdict.code, verdict.reason);
    const credential = await member.mint({
      member: node,
      location: data.location,
      network: data.network,
      addrs: data.addrs,
    }, o.credentialTtlSeconds);
    await member.learn(credential);
    const members = [
      { id: member.nodeId, addrs: member.addrs.slice(0, 8) },
      ...roster.filter((c) => c.data.member !== member.nodeId && c.data.member !== node)
        .filter((c) => c.data.addrs.length)
        .map((c) => ({ id: c.data.member, addrs: c.data.addrs })),
    ].slice(0, 32);
    return {
      t: "admit",
      v: 1,
      vpn: member.vpn,
      credential,
      secret: member.secret,
      members,
    } satisfies Admission;
  };
}
