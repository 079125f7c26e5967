// Fixtures shared by the discovery tests.
import { type Clock, newUuid, type NodeIdentity } from "../protocol/mod.ts";
import { signVpnRecord, type SolicitingData } from "./record.ts";

/** A random 64-hex-digit guest key. */
export function guestKey(): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(32)),
    (b) => b.toString(16).padStart(2, "0"),
  )
    .join("");
}

/** Signs a soliciting record with sensible defaults. */
export function soliciting(
  guardian: NodeIdentity,
  over: Partial<SolicitingData> = {},
  opts: { ttlSeconds?: number; clock?: Clock } = {},
): Promise<string> {
  return signVpnRecord(guardian, {
    v: 1,
    vpn: newUuid(),
    state: "soliciting",
    ips: ["8.8.8.8"],
    guestPort: 4001,
    guestKey: guestKey(),
    ...over,
  }, opts);
}
