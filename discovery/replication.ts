/**
 * Anti-entropy between discovery replicas: pull each peer's change log, push what clients submit
 * (`docs/protocol/discovery.md`, "Replication between replicas"). Only signed records move, and
 * each is verified by the receiving store, so a peer can delay records but never forge one.
 *
 * @module
 */

import {
  discardLogger,
  type Logger,
  readTextLimited,
  TrueCloudError,
  uuidSchema,
  z,
} from "../protocol/mod.ts";

/** Largest log page accepted from a peer: 500 records of at most 8 KiB, with room to spare. */
const MAX_LOG_PAGE_BYTES = 16 * 1024 * 1024;
import type { RecordStore, StoredRecord } from "./store.ts";

const logPageSchema = z.object({
  replica: uuidSchema,
  records: z.array(z.object({ seq: z.number().int().positive(), jws: z.string().max(16384) })).max(
    1000,
  ),
  last: z.number().int().nonnegative(),
  more: z.boolean(),
});

/** Dependencies and settings of a {@linkcode Replicator}. */
export interface ReplicatorDeps {
  /** The local store. */
  store: RecordStore;
  /** Base URLs of the peers' discovery APIs, such as `https://127.0.0.1:9102/discovery`. */
  peers: readonly string[];
  /** The fetch to use (for instance one whose client trusts the peers' CA). */
  fetch?: typeof fetch;
  /** Time between pulls, in milliseconds (default 1000). */
  intervalMs?: number;
  /** Time limit of each request, in milliseconds (default 5000). */
  timeoutMs?: number;
  /** Logger. */
  log?: Logger;
}

/** What one pull from one peer did. */
export interface PullReport {
  /** The peer's base URL. */
  peer: string;
  /** Records offered to the local store. */
  received: number;
  /** Of those, how many were stored (new to this replica). */
  stored: number;
  /** Of those, how many the local store refused (stale or invalid). */
  refused: number;
  /** Set when the peer could not be reached or answered wrongly. */
  error?: string;
}

/**
 * Keeps one replica in step with its peers.
 *
 * @example
 * ```ts
 * import { RecordStore, Replicator } from "./mod.ts";
 * const store = await RecordStore.open(":memory:");
 * const rep = new Replicator({ store, peers: [] });
 * console.log(await rep.pullAll()); // []
 * store.close();
 * ```
 */
export class Replicator {
  readonly #store: RecordStore;
  #peers: readonly string[];
  readonly #fetch: typeof fetch;
  readonly #interval: number;
  readonly #timeout: number;
  readonly #log: Logger;
  #timer?: ReturnType<typeof setTimeout>;
  #running?: Promise<unknown>;
  #stopped = true;
  readonly #aborts = new Set<AbortController>();
  readonly #lastError = new Map<string, string>();

  /** @param deps Store, peers, fetch, timing and logger. */
  constructor(deps: ReplicatorDeps) {
    this.#store = deps.store;
    this.#peers = deps.peers.map((p) => p.replace(/\/+$/, ""));
    this.#fetch = deps.fetch ?? fetch;
    this.#interval = deps.intervalMs ?? 1000;
    this.#timeout = deps.timeoutMs ?? 5000;
    this.#log = deps.log ?? discardLogger;
  }

  /** The peers' base URLs. */
  get peers(): readonly string[] {
    return this.#peers;
  }

  /**
   * Replaces the list of peers (for replicas that learn each other's addresses after starting).
   * @param peers Base URLs of the peers' discovery APIs.
   */
  setPeers(peers: readonly string[]): void {
    this.#peers = peers.map((p) => p.replace(/\/+$/, ""));
  }

  /** Starts pulling every interval, beginning now. */
  start(): void {
    if (!this.#stopped) return;
    this.#stopped = false;
    const tick = async () => {
      if (this.#stopped) return;
      this.#running = this.pullAll();
      await this.#running;
      if (!this.#stopped) this.#timer = setTimeout(tick, this.#interval);
    };
    tick();
  }

  /** Stops pulling and cancels requests in flight; resolves when the current pull has ended. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#timer);
    for (const a of this.#aborts) a.abort();
    await this.#running;
  }

  async #request(url: string, init: RequestInit = {}): Promise<Response> {
    const ac = new AbortController();
    this.#aborts.add(ac);
    const timer = setTimeout(() => ac.abort(new Error("timed out")), this.#timeout);
    try {
      return await this.#fetch(url, { ...init, signal: ac.signal });
    } finally {
      clearTimeout(timer);
      this.#aborts.delete(ac);
    }
  }

  /**
   * Pulls once from every peer, in parallel.
   * @returns One report per peer.
   */
  pullAll(): Promise<PullReport[]> {
    return Promise.all(this.#peers.map((p) => this.pull(p)));
  }

  /**
   * Pulls everything new from one peer.
   * @param peer The peer's base URL.
   * @returns What was received.
   */
  async pull(peer: string): Promise<PullReport> {
    const report: PullReport = { peer, received: 0, stored: 0, refused: 0 };
    try {
      let cursor = (await this.#store.getCursor(peer)) ?? { replica: "", last: 0 };
      for (let page = 0; page < 10_000; page++) {
        if (page > 0 && this.#stopped) break;
        const res = await this.#request(`${peer}/replication/log?after=${cursor.last}&limit=500`);
        if (!res.ok) {
          await res.body?.cancel();
          throw new TrueCloudError(`Peer answered ${res.status}`, { code: "peer_error" });
        }
        let json: unknown;
        try {
          json = JSON.parse(await readTextLimited(res, MAX_LOG_PAGE_BYTES));
        } catch (err) {
          throw new TrueCloudError(`Peer sent an unreadable log page: ${(err as Error).message}`, {
            code: "peer_error",
          });
        }
        const parsed = logPageSchema.safeParse(json);
        if (!parsed.success) {
          throw new TrueCloudError("Peer sent a malformed log page", { code: "peer_error" });
        }
        const body = parsed.data;
        if (body.replica !== cursor.replica) {
          if (cursor.last !== 0) {
            this.#log.info("Peer has a new store, pulling from the start", {
              peer,
              replica: body.replica,
            });
            cursor = { replica: body.replica, last: 0 };
            continue;
          }
          cursor = { replica: body.replica, last: 0 };
        }
        for (const { jws } of body.records) {
          report.received++;
          try {
            const r = await this.#store.offer(jws, "replica");
            if (r.status === "stored") report.stored++;
          } catch (err) {
            report.refused++;
            if (!(err instanceof TrueCloudError) || err.code !== "stale") {
              this.#log.warn("Refused a record from a peer", { peer, err });
            }
          }
        }
        cursor = { replica: body.replica, last: body.last };
        await this.#store.setCursor(peer, cursor);
        if (!body.more) break;
      }
      if (this.#lastError.delete(peer)) this.#log.info("Peer reachable again", { peer });
    } catch (err) {
      report.error = err instanceof Error ? err.message : String(err);
      if (this.#lastError.get(peer) !== report.error && !this.#stopped) {
        this.#log.warn("Pull from peer failed", { peer, error: report.error });
      }
      this.#lastError.set(peer, report.error);
    }
    if (report.stored) this.#log.debug("Pulled records", { ...report });
    return report;
  }

  /**
   * Offers a record to every peer at once; failures are left for the next pull to repair.
   * @param record A record this replica just stored.
   */
  push(record: Pick<StoredRecord, "jws">): void {
    for (const peer of this.#peers) {
      this.#request(`${peer}/records`, {
        method: "POST",
        headers: { "content-type": "application/jose" },
        body: record.jws,
      }).then((res) => res.body?.cancel()).catch(() => {});
    }
  }
}
