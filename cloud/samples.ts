/**
 * The sample CDN content the local cloud publishes at start: public text, a multi-chunk binary,
 * and a members-only note that the gateway must never serve.
 *
 * @module
 */

import { createHash } from "node:crypto";
import type { CdnNode } from "../node/rms/mod.ts";

/** Deterministic bytes (SHA-256 in counter mode), so the sample's CID is the same at every start. */
function deterministic(n: number, label: string): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0, at = 0; at < n; i++) {
    const block = createHash("sha256").update(`${label}:${i}`).digest();
    out.set(block.subarray(0, Math.min(32, n - at)), at);
    at += 32;
  }
  return out;
}

/** What was published. */
export interface PublishedSample {
  name: string;
  cid: string;
  visibility: "public" | "members";
}

/**
 * Publishes the samples from a node: it stores them, and the holders placement picks pull them.
 * @param cdn The publishing node's part in the CDN (a member, with a store).
 */
export async function publishSamples(cdn: CdnNode): Promise<PublishedSample[]> {
  const samples: {
    name: string;
    type: string;
    visibility: "public" | "members";
    bytes: Uint8Array;
  }[] = [
    {
      name: "welcome.txt",
      type: "text/plain; charset=utf-8",
      visibility: "public",
      bytes: new TextEncoder().encode(
        "Welcome to True Cloud: a cloud owned by everyone and nobody.\n".repeat(20) +
          "This file is stored by content address on contributed disk and served by the gateway.\n",
      ),
    },
    {
      name: "sample/4mib.bin",
      type: "application/octet-stream",
      visibility: "public",
      bytes: deterministic(4 << 20, "sample"),
    },
    {
      name: "members/roadmap.txt",
      type: "text/plain; charset=utf-8",
      visibility: "members",
      bytes: new TextEncoder().encode(
        "Members only: reachable across the management VPNs, never through the gateway.\n",
      ),
    },
  ];
  const out: PublishedSample[] = [];
  for (const s of samples) {
    const { cid } = await cdn.publish(s.bytes, {
      name: s.name,
      type: s.type,
      visibility: s.visibility,
    });
    out.push({ name: s.name, cid: cid.toString(), visibility: s.visibility });
  }
  return out;
}
