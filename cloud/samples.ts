/**
 * The sample CDN content the local cloud publishes at start: public text, a multi-chunk binary,
 * and a members-only note that the gateway must never serve.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { addContent, type BlockStore, type Catalogue, signPublish } from "../cdn/mod.ts";
import type { NodeIdentity } from "../protocol/mod.ts";

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
 * Adds the samples to a block store and publishes them in a catalogue.
 * @param store The CDN node's blocks.
 * @param catalogue The catalogue.
 * @param publisher A member.
 */
export async function publishSamples(
  store: BlockStore,
  catalogue: Catalogue,
  publisher: NodeIdentity,
): Promise<PublishedSample[]> {
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
    const { cid, size } = await addContent(store, s.bytes);
    const jws = await signPublish(publisher, {
      v: 1,
      name: s.name,
      cid: cid.toString(),
      size,
      type: s.type,
      visibility: s.visibility,
    });
    try {
      await catalogue.publish(jws);
    } catch (err) {
      // Published at an earlier start within the same second: the catalogue already has it.
      if (!(err instanceof Error && "code" in err && err.code === "stale")) throw err;
    }
    out.push({ name: s.name, cid: cid.toString(), visibility: s.visibility });
  }
  return out;
}
