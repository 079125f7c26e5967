/**
 * Placement by rendezvous (highest random weight) hashing: an object is held by the `k` live
 * members whose score SHA-256(node id ‖ CID) is highest, so every node computes the same holders
 * and a departure moves only the objects that node held (`docs/protocol/cdn.md`).
 *
 * @module
 */

import { createHash } from "node:crypto";

/**
 * The score of a node for an object.
 * @param nodeId The node.
 * @param cid The object's CID, as text.
 * @returns 64 hex digits; higher wins.
 */
export function score(nodeId: string, cid: string): string {
  return createHash("sha256").update(nodeId).update(cid).digest("hex");
}

/**
 * The holders of an object.
 * @param cid The object's CID, as text.
 * @param live The live members' node ids.
 * @param k How many holders (default 3).
 * @returns Node ids, best first.
 */
export function holders(cid: string, live: readonly string[], k = 3): string[] {
  return [...new Set(live)]
    .map((id) => ({ id, s: score(id, cid) }))
    .sort((a, b) => (a.s < b.s ? 1 : a.s > b.s ? -1 : 0))
    .slice(0, k)
    .map((x) => x.id);
}
