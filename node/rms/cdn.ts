/**
 * CDN blocks between members (`docs/protocol/cdn.md`, "Between members"): a node serves the blocks
 * of its CDN store to members over its management VPNs, fetches blocks from other members — which is
 * how members reach members-only content — and audits holders with challenges that only a node
 * holding a block can answer.
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  BlockNotFoundError,
  type BlockSource,
  type Catalogue,
  CID,
  parseCid,
} from "../../cdn/mod.ts";
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

/** What a challenge found. */
export interface ChallengeResult {
  /** Whether the holder proved it holds the block. */
  holds: boolean;
  /** Whether it said it does not have the block (rather than answer with a wrong proof). */
  missing: boolean;
  /** How long it took to answer, in milliseconds. */
  ms: number;
}

/** A page of another member's catalogue. */
export interface CataloguePage {
  /** Whether that member keeps a CDN store. */
  store: boolean;
  /** Manifests, in name order. */
  manifests: string[];
  /** Whether there are more after the last. */
  more: boolean;
}

/** Most relays a `get` may ask for. */
export const MAX_RELAY = 2;

/** Fetches a block this node does not hold from its other VPNs, for a relayed `get`. */
export type RelayFetch = (cid: CID, relay: number, fromVpn: string) => Promise<Uint8Array>;

/** A node's side of the exchange, over every VPN it is in. */
export class CdnExchange {
  readonly #store?: BlockSource;
  readonly #catalogue?: Catalogue;
  readonly #relay?: RelayFetch;

  /**
   * @param store This node's CDN store, if it holds blocks for the cloud.
   * @param catalogue This node's catalogue, which it lists to members that ask.
   * @param relay How this node passes on a relayed `get` for a block it lacks (none: it does not).
   */
  constructor(store?: BlockSource, catalogue?: Catalogue, relay?: RelayFetch) {
    this.#store = store;
    this.#catalogue = catalogue;
    this.#relay = relay;
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
        if (m.t === "list") {
          if (typeof m.after !== "string" || m.after.length > 2048) {
            throw new TrueCloudError('list needs after: a name or ""', { code: "invalid" });
          }
          const page = this.#catalogue
            ? await this.#catalogue.manifests(m.after)
            : { jws: [], more: false };
          await s.write({ t: "list", store: !!this.#store, manifests: page.jws, more: page.more });
          await stream.close().catch(() => {});
          return;
        }
        let cid: CID;
        try {
          cid = parseCid(String(m.cid));
        } catch (err) {
          throw new TrueCloudError((err as Error).message, { code: "invalid" });
        }
        const relay = (m.relay ?? 0) as number;
        if (m.t === "get" && !(Number.isInteger(relay) && relay >= 0 && relay <= MAX_RELAY)) {
          throw new TrueCloudError(`relay must be 0 to ${MAX_RELAY}`, { code: "invalid" });
        }
        let block = await this.#block(cid);
        if (!block && m.t === "get" && relay > 0 && this.#relay) {
          block = await this.#relay(cid, relay - 1, node.vpn).catch(() => undefined);
        }
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
   * @param relay How many more hops the member may pass the request on (0 to {@linkcode MAX_RELAY})
   * when it does not hold the block.
   * @throws {BlockNotFoundError} When the holder does not have it, or sends something else.
   */
  async fetchBlock(node: VpnNode, peer: string, cid: CID, relay = 0): Promise<Uint8Array> {
    const stream = await node.openStream(peer, CDN_PROTOCOL);
    const s = jsonStream(stream);
    try {
      await s.write(
        relay ? { t: "get", cid: cid.toString(), relay } : { t: "get", cid: cid.toString() },
      );
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
   * Asks a member for a page of its catalogue.
   * @param node The VPN both are in.
   * @param peer The member.
   * @param after The last name already had ("" for the start).
   * @throws {TrueCloudError} `invalid` when the answer is not a page.
   */
  async list(node: VpnNode, peer: string, after: string): Promise<CataloguePage> {
    const stream = await node.openStream(peer, CDN_PROTOCOL);
    const s = jsonStream(stream);
    try {
      await s.write({ t: "list", after });
      const a = await s.read();
      if (
        a.t !== "list" || typeof a.store !== "boolean" || typeof a.more !== "boolean" ||
        !Array.isArray(a.manifests) || !a.manifests.every((j) => typeof j === "string")
      ) {
        throw new TrueCloudError(`${peer} did not answer with a catalogue page`, {
          code: "invalid",
        });
      }
      return { store: a.store, manifests: a.manifests as string[], more: a.more };
    } finally {
      await stream.close().catch(() => {});
    }
  }

  /**
   * A block source that fetches from members in turn: what a member reads an object with, with
   * `readContent` from the CDN.
   * @param node The VPN.
   * @param peers The holders, in the order to try them.
   * @param relay How many hops they may pass a request on for a block they lack.
   */
  source(node: VpnNode, peers: readonly string[], relay = 0): BlockSource {
    const getBlock = async (cid: CID): Promise<Uint8Array> => {
      for (const p of peers) {
        try {
          return await this.fetchBlock(node, p, cid, relay);
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
  async audit(node: VpnNode, peer: string, cid: CID, block: Uint8Array): Promise<ChallengeResult> {
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
      return {
        holds: a.t === "proof" && a.sha256 === want,
        missing: a.t === "missing",
        ms: performance.now() - t0,
      };
    } finally {
      await stream.close().catch(() => {});
    }
  }
}
