/**
 * One discovery replica, wired: its store, feed, HTTP sub-app, replication with its peers, and the
 * housekeeping timers (garbage collection of expired records, refresh of the in-memory view).
 *
 * @module
 */

import type { Hono } from "hono";
import { type Clock, discardLogger, type Logger, systemClock } from "../protocol/mod.ts";
import { createDiscoveryApp } from "./app.ts";
import { FeedRenderer } from "./feed.ts";
import { Replicator } from "./replication.ts";
import { type OfferSource, RecordStore } from "./store.ts";

/** What the threads serving one store tell each other. */
type ChannelMessage = { kind: "stored"; jws: string; source: OfferSource } | { kind: "gc" };

/** Settings and dependencies of a {@linkcode DiscoveryService}. */
export interface DiscoveryServiceOptions {
  /** Deno KV path of this replica's store, or `:memory:`. */
  kvPath: string;
  /** Absolute public URL of the discovery routes, used in the feed's links (or a function giving it). */
  publicBaseUrl: string | (() => string);
  /** Base URLs of the peer replicas' discovery APIs. */
  peers?: readonly string[];
  /** Accept records with non-public addresses (the local cloud). */
  allowPrivateAddresses?: boolean;
  /** Time between replication pulls, ms (default 1000). */
  pullIntervalMs?: number;
  /** Time between garbage collections, ms (default 60 000). */
  gcIntervalMs?: number;
  /** Time between checks for writes by other processes sharing the store, ms (default 1000). */
  refreshIntervalMs?: number;
  /** Whether this instance replicates and collects garbage (default true); other instances that
   * share the same store file only serve. */
  primary?: boolean;
  /** Fetch used to reach peers. */
  fetch?: typeof fetch;
  /** Name of a `BroadcastChannel` shared by the instances (Workers) that serve the same store:
   * each announces its writes there, and the others refresh at once. */
  channel?: string;
  /** Logger. */
  log?: Logger;
  /** Time source. */
  clock?: Clock;
}

/**
 * A running discovery replica.
 *
 * @example
 * ```ts
 * import { DiscoveryService } from "./service.ts";
 * const svc = await DiscoveryService.open({
 *   kvPath: ":memory:",
 *   publicBaseUrl: "https://127.0.0.1:8443/discovery",
 * });
 * svc.start();
 * const res = await svc.app.request("/feed.rss");
 * console.log(res.status); // 200
 * await svc.close();
 * ```
 */
export class DiscoveryService {
  /** The replica's store. */
  readonly store: RecordStore;
  /** The HTTP sub-app, to mount at `/discovery`. */
  readonly app: Hono;
  /** Replication with the peers. */
  readonly replicator: Replicator;
  /** Renders a feed of `count` random visible records (what `GET /discovery/feed.rss` serves). */
  readonly renderFeed: (count: number) => string;
  readonly #opts: DiscoveryServiceOptions;
  readonly #log: Logger;
  #timers: ReturnType<typeof setInterval>[] = [];
  #started = false;
  #channel?: BroadcastChannel;

  private constructor(store: RecordStore, opts: DiscoveryServiceOptions) {
    this.store = store;
    this.#opts = opts;
    this.#log = opts.log ?? discardLogger;
    this.replicator = new Replicator({
      store,
      peers: opts.peers ?? [],
      fetch: opts.fetch,
      intervalMs: opts.pullIntervalMs,
      log: this.#log.child("replication"),
    });
    const feed = new FeedRenderer({ baseUrl: opts.publicBaseUrl });
    this.renderFeed = (count) => feed.render(store.visible(), count);
    this.app = createDiscoveryApp({
      store,
      renderFeed: this.renderFeed,
      onStored: (r) => this.replicator.push(r),
    });
  }

  /**
   * Opens the replica's store.
   * @param opts Settings and dependencies.
   * @returns The service, not yet started.
   */
  static async open(opts: DiscoveryServiceOptions): Promise<DiscoveryService> {
    const store = await RecordStore.open(opts.kvPath, {
      clock: opts.clock ?? systemClock,
      log: (opts.log ?? discardLogger).child("store"),
      allowPrivateAddresses: opts.allowPrivateAddresses,
    });
    return new DiscoveryService(store, opts);
  }

  /** Starts replication and housekeeping. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    const primary = this.#opts.primary ?? true;
    if (this.#opts.channel) {
      const ch = new BroadcastChannel(this.#opts.channel);
      this.#channel = ch;
      ch.onmessage = (e: MessageEvent<ChannelMessage>) => {
        const m = e.data;
        this.store.refresh(m.kind === "gc").catch((err) =>
          this.#log.warn("Store refresh failed", { err })
        );
        // Another thread stored a guardian's submission: the primary passes it on to the peers.
        if (primary && m.kind === "stored" && m.source === "client") this.replicator.push(m);
      };
      this.store.onChange((r, source) => {
        ch.postMessage({ kind: "stored", jws: r.jws, source } satisfies ChannelMessage);
      });
    }
    if (primary) {
      this.replicator.start();
      this.#timers.push(setInterval(async () => {
        try {
          const deleted = await this.store.collectGarbage();
          if (deleted) this.#channel?.postMessage({ kind: "gc" } satisfies ChannelMessage);
        } catch (err) {
          this.#log.warn("Garbage collection failed", { err });
        }
      }, this.#opts.gcIntervalMs ?? 60_000));
    }
    this.#timers.push(setInterval(() => {
      this.store.refresh().catch((err) => this.#log.warn("Store refresh failed", { err }));
    }, this.#opts.refreshIntervalMs ?? 1000));
    this.#log.info("Discovery replica started", {
      replica: this.store.replicaId,
      peers: this.replicator.peers.length,
      records: this.store.all().length,
    });
  }

  /** Stops replication and timers and closes the store. */
  async close(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    this.#channel?.close();
    await this.replicator.stop();
    this.store.close();
  }
}
