/**
 * CDN blocks between members (`docs/protocol/cdn.md`, "Between members"): a node serves the blocks
 * of its CDN store to members over its management VPNs, fetches blocks from other members — which is
 * how members reach members-only content — and audits holders with challenges that only a node
 * holding a block can answer.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { BlockNotFoundError, type BlockSource, CID, parseCid } from "../../cdn/mod.ts";
import { fromHex, toHex, TrueCloudError } from "../../protocol/mod.ts";
import { jsonStream, type VpnNode } from "../overlay/mod.ts";

/** The protocol. */
export const CDN_PROTOCOL = "/truecloud/cdn/1.0.0";

function sha256(...parts: Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

function matches(cid: CID, block: Uint8Array): boolean {
  const want = cid.multihash.digest;
  const got = sha256(block);
  return cid.multihash.code === 0x12 && got.length === want.length &&
    got.every((b, i) => b === want[i]);
}

/** What an audit found. */
export interface AuditResult {
  /** Whether the holder proved it holds the block. */
  holds: boolean;
  /** How long it took to answer, in milliseconds. */
  ms: number;
}

/** A node's side of the exchange, over every VPN it is in. */
export class CdnExchange {
  readonly #store?: BlockSource;

  /** @param store This node's CDN store, if it holds blocks for the cloud. */
  constructor(store?: BlockSource) {
    this.#store = store;
  }

  /**
   * Serves this node's blocks on a VPN.
   * @param node The membership.
   */
  async attach(node: VpnNode): Promise<void> {
    await node.libp2p.handle(CDN_PROTOCOL, async (stream) => {
      const s = jsonStream(stream);
      try {
        const m = await s.read();
        let cid: CID;
        try {
          cid = parseCid(String(m.cid));
        } catch (err) {
          throw new TrueCloudError((err as Error).message, { code: "invalid" });
        }
        const block = await this.#block(cid);
        if (m.t === "get") {
          if (!block) await s.write({ t: "missing" });
          else {
            await s.write({ t: "block", length: block.length });
            await s.writeRaw(block);
          }
        } else if (
          m.t === "challenge" && typeof m.nonce === "string" && /^[0-9a-f]{64}$/.test(m.nonce)
        ) {
          if (!block) await s.write({ t: "missing" });
          else await s.write({ t: "proof", sha256: toHex(sha256(fromHex(m.nonce), block)) });
        } else {
          throw new TrueCloudError("Expected get or challenge", { code: "invalid" });
        }
      } catch (err) {
        const code = err instanceof TrueCloudError ? err.code : "invalid";
        await s.write({ t: "error", code, reason: (err as Error).message }).catch(() => {});
      }
      await stream.close().catch(() => {});
    }, { maxInboundStreams: 32, runOnLimitedConnection: true });
  }

  async #block(cid: CID): Promise<Uint8Array | undefined> {
    if (!this.#store) return undefined;
    try {
      return await this.#store.getBlock(cid);
    } catch (err) {
      if (err instanceof BlockNotFoundError) return undefined;
      throw err;
    }
  }

  /**
   * Fetches a block from a member, checked against its CID.
   * @param node The VPN both are in.
   * @param peer The holder.
   * @param cid The block.
   * @throws {BlockNotFoundError} When the holder does not have it, or sends something else.
   */
  async fetchBlock(node: VpnNode, peer: string, cid: CID): Promise<Uint8Array> {
    const stream = await node.openStream(peer, CDN_PROTOCOL);
    const s = jsonStream(stream);
    try {
      await s.write({ t: "get", cid: cid.toString() });
      const head = await s.read();
      if (head.t !== "block" || typeof head.length !== "number") throw new BlockNotFoundError(cid);
      const block = await s.readRaw();
      if (block.length !== head.length || !matches(cid, block)) throw new BlockNotFoundError(cid);
      return block;
    } finally {
      await stream.close().catch(() => {});
    }
  }

  /**
   * A block source that fetches from members in turn: what a member reads an object with, with
   * `readContent` from the CDN.
   * @param node The VPN.
   * @param peers The holders, in the order to try them.
   */
  source(node: VpnNode, peers: readonly string[]): BlockSource {
    const getBlock = async (cid: CID): Promise<Uint8Array> => {
      for (const p of peers) {
        try {
          return await this.fetchBlock(node, p, cid);
        } catch {
          // the next holder
        }
      }
      throw new BlockNotFoundError(cid);
    };
    return {
      getBlock,
      async *get(cid: CID) {
        yield await getBlock(cid);
      },
      async has(cid: CID) {
        try {
          await getBlock(cid);
          return true;
        } catch {
          return false;
        }
      },
    };
  }

  /**
   * Audits a holder: a fresh nonce, and the proof checked against the block the auditor holds.
   * @param node The VPN both are in.
   * @param peer The holder.
   * @param cid The block.
   * @param block The block's bytes, as the auditor has them (checked against the CID).
   */
  async audit(node: VpnNode, peer: string, cid: CID, block: Uint8Array): Promise<AuditResult> {
    if (!matches(cid, block)) {
      throw new TrueCloudError("The auditor's copy does not match the CID", { code: "invalid" });
    }
    const nonce = crypto.getRandomValues(new Uint8Array(32));
    const t0 = performance.now();
    const stream = await node.openStream(peer, CDN_PROTOCOL);
    const s = jsonStream(stream);
    try {
      await s.write({ t: "challenge", cid: cid.toString(), nonce: toHex(nonce) });
      const a = await s.read();
      const want = toHex(sha256(nonce, block));
      return { holds: a.t === "proof" && a.sha256 === want, ms: performance.now() - t0 };
    } finally {
      await stream.close().catch(() => {});
    }
  }
}
