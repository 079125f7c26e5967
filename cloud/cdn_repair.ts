/**
 * The local cloud's CDN upkeep: every few seconds, the CDN nodes whose store is still there are the
 * live ones, and every published object is brought to the holders placement gives it among them.
 * Every few minutes each live store is scrubbed (every block hashed again), so that damage a read
 * would not notice is found and repaired from another holder.
 *
 * @module
 */

import { type BlockStore, type Catalogue, repair } from "../cdn/mod.ts";
import type { Logger } from "../protocol/mod.ts";

/** Keeps the local cloud's CDN objects on their holders. */
export class CdnRepairLoop {
  readonly #home: string;
  readonly #nodes: Map<string, BlockStore>;
  readonly #catalogue: Catalogue;
  readonly #log: Logger;
  #timer?: ReturnType<typeof setInterval>;
  #running?: Promise<void>;
  #lastScrub = Date.now();
  readonly #scrubEveryMs: number;
  readonly #isLive: (id: string) => boolean;

  /**
   * @param home The state directory.
   * @param nodes The CDN nodes' stores, by node id.
   * @param catalogue What is published.
   * @param log Logger.
   * @param scrubEveryMs How often the stores are scrubbed (default 10 minutes).
   * @param isLive Whether a node is running and a member (default: every node is).
   */
  constructor(
    home: string,
    nodes: Map<string, BlockStore>,
    catalogue: Catalogue,
    log: Logger,
    scrubEveryMs = 10 * 60_000,
    isLive: (id: string) => boolean = () => true,
  ) {
    this.#scrubEveryMs = scrubEveryMs;
    this.#isLive = isLive;
    this.#home = home;
    this.#nodes = nodes;
    this.#catalogue = catalogue;
    this.#log = log;
  }

  /** One round: find the live nodes, repair every object. */
  async run(): Promise<void> {
    const live = new Map<string, BlockStore>();
    for (const [id, store] of this.#nodes) {
      if (!this.#isLive(id)) continue;
      try {
        await Deno.stat(`${this.#home}/cdn/nodes/${id}`);
        live.set(id, store);
      } catch {
        // this node's store is gone: the node has left
      }
    }
    if (Date.now() - this.#lastScrub >= this.#scrubEveryMs) {
      this.#lastScrub = Date.now();
      for (const [id, store] of live) {
        const { checked, damaged } = await store.scrub();
        if (damaged.length) {
          this.#log.warn("Damaged blocks dropped", { node: id, checked, damaged });
        }
      }
    }
    const cids = (await this.#catalogue.list()).map((o) => o.cid);
    const { copies, lost } = await repair(cids, live);
    for (const c of copies) this.#log.info("Object re-replicated", { ...c });
    for (const c of lost) this.#log.error("Object lost: no live node holds it", { cid: c });
  }

  /** Runs every two seconds. */
  start(): void {
    this.#timer = setInterval(() => {
      this.#running ??= this.run().catch((err) => this.#log.warn("CDN repair failed", { err }))
        .finally(() => (this.#running = undefined));
    }, 2000);
  }

  /** Stops, after the round in progress. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
  }
}
