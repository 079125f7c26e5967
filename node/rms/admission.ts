/**
 * Whether a newcomer fits a VPN (`docs/protocol/join.md`, the guardian's checks after identity and
 * attestation): not refused, within the VPN's size, and within its diversity rules for geographic
 * locations and network endpoints.
 *
 * @module
 */

import type { Charter } from "../overlay/mod.ts";

/** A member or candidate as admission sees it. */
export interface Placement {
  /** Node id. */
  member: string;
  /** Geographic location UUID. */
  location: string;
  /** Network endpoint UUID. */
  network: string;
}

/** The verdict. */
export type Verdict =
  | { ok: true }
  | { ok: false; code: "refused" | "full" | "diversity"; reason: string };

/**
 * Judges a candidate.
 * @param roster The VPN's members now.
 * @param candidate The newcomer.
 * @param charter The VPN's rules.
 * @param refused Nodes this guardian refuses (and revoked ones).
 * @returns Whether it fits, and if not, why.
 */
export function judge(
  roster: readonly Placement[],
  candidate: Placement,
  charter: Charter,
  refused: ReadonlySet<string> = new Set(),
): Verdict {
  if (refused.has(candidate.member)) {
    return { ok: false, code: "refused", reason: "This node is on the guardian's refusal list" };
  }
  // A member coming back is judged without its own old place.
  const others = roster.filter((m) => m.member !== candidate.member);
  if (others.length + 1 > charter.maxMembers) {
    return {
      ok: false,
      code: "full",
      reason: `The VPN has its ${charter.maxMembers} members`,
    };
  }
  const rules = [
    ["location", charter.maxPerLocation, "at this location"],
    ["network", charter.maxPerNetwork, "on this network"],
  ] as const;
  for (const [field, most, where] of rules) {
    const same = others.filter((m) => m[field] === candidate[field]).length;
    if (same + 1 > most) {
      return {
        ok: false,
        code: "diversity",
        reason: `The VPN already has ${same} members ${where} (at most ${most})`,
      };
    }
  }
  return { ok: true };
}
