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
type ChannelMessage =
  | { kind: "stored"; jws: string; source: OfferSource; seq: number; from: string }
  | { kind: "applied"; seq: number; from: string }
  | { kind: "gc" };

/** How long a submission waits for the other threads to see it before it is answered anyway. */
const SETTLE_MS = 2000;

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
  /** How many instances share the channel, this one included (default 1). A client's submission
   * is answered once every other instance has it in view, so a read that follows the answer sees
   * it whichever thread serves the read. */
  channelMembers?: number;
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
  readonly #id = crypto.randomUUID();
  /** Per other instance, the highest sequence number it has said it has in view. */
  readonly #applied = new Map<string, number>();
  readonly #settleWaiters = new Set<(force?: boolean) => void>();

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
      onStored: (r) => {
        this.replicator.push(r);
        return this.#settled(store.seq);
      },
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
        if (m.kind === "applied") {
          this.#applied.set(m.from, Math.max(this.#applied.get(m.from) ?? 0, m.seq));
          for (const wake of this.#settleWaiters) wake();
          return;
        }
        this.store.refresh(m.kind === "gc").then(() => {
          if (m.kind === "stored") {
            ch.postMessage(
              { kind: "applied", seq: this.store.seq, from: this.#id } satisfies ChannelMessage,
            );
          }
        }).catch((err) => this.#log.warn("Store refresh failed", { err }));
        // Another thread stored a guardian's submission: the primary passes it on to the peers.
        if (primary && m.kind === "stored" && m.source === "client") this.replicator.push(m);
      };
      this.store.onChange((r, source) => {
        ch.postMessage(
          {
            kind: "stored",
            jws: r.jws,
            source,
            seq: this.store.seq,
            from: this.#id,
          } satisfies ChannelMessage,
        );
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

  /**
   * Resolves once every other instance on the channel has the store up to `seq` in view, or after
   * {@linkcode SETTLE_MS} (a thread that is stuck must not hold submissions back for good).
   */
  #settled(seq: number): Promise<void> {
    const others = (this.#opts.channelMembers ?? 1) - 1;
    const done = () => [...this.#applied.values()].filter((s) => s >= seq).length >= others;
    if (!this.#channel || others <= 0 || done()) return Promise.resolve();
    return new Promise((resolve) => {
      const finish = () => {
        clearTimeout(timer);
        this.#settleWaiters.delete(check);
        resolve();
      };
      const check = (force?: boolean) => (force || done()) && finish();
      const timer = setTimeout(() => {
        this.#log.warn("Other threads did not confirm a stored record in time", { seq });
        finish();
      }, SETTLE_MS);
      this.#settleWaiters.add(check);
    });
  }

  /** Stops replication and timers and closes the store. */
  async close(): Promise<void> {
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    this.#channel?.close();
    for (const wake of [...this.#settleWaiters]) wake(true);
    await this.replicator.stop();
    this.store.close();
  }
}
