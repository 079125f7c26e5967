/**
 * The discovery HTTP API as a Hono sub-app (`docs/protocol/discovery.md`): record submission,
 * the RSS feed, per-VPN JSON, and the replication log.
 *
 * Errors are thrown as {@linkcode TrueCloudError}s and turned into JSON by the root app's
 * `onError` (the gateway's, or the standalone replica's).
 *
 * @module
 */

import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { etag } from "hono/etag";
import {
  isUuid,
  methodNotAllowed,
  TooLargeError,
  TrueCloudError,
  ValidationError,
} from "../protocol/mod.ts";
import { DEFAULT_FEED_COUNT, MAX_FEED_COUNT, rfc3339 } from "./feed.ts";
import { MAX_RECORD_BYTES } from "./record.ts";
import type { RecordStore, StoredRecord } from "./store.ts";

/** Headers of a feed answer: each request draws anew, so shared caches must not keep it. */
export const FEED_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "application/rss+xml; charset=utf-8",
  "cache-control": "private, max-age=60",
};

/**
 * Reads the `count` of a plain feed request (`GET …/feed.rss` or `…/feed.rss?count=N`) without
 * parsing the URL; anything else — other parameters, a bad count — gives `undefined`, and such a
 * request takes the ordinary route, which validates and answers it.
 *
 * @param url The request URL.
 * @param path The feed's path, such as `/discovery/feed.rss`.
 * @returns The count, or `undefined`.
 */
export function plainFeedCount(url: string, path: string): number | undefined {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0 || !url.startsWith(path, start)) return undefined;
  const rest = url.slice(start + path.length);
  if (rest === "") return DEFAULT_FEED_COUNT;
  const m = /^\?count=([1-9]\d{0,2})$/.exec(rest);
  if (!m) return undefined;
  const n = Number(m[1]);
  return n <= MAX_FEED_COUNT ? n : undefined;
}

/** Dependencies of {@linkcode createDiscoveryApp}. */
export interface DiscoveryAppDeps {
  /** The replica's store. */
  store: RecordStore;
  /** Renders a feed of at most `count` random visible records. */
  renderFeed: (count: number) => string;
  /** Called after a submission is stored, to push it to peers; the answer waits for what it
   * returns (the other threads serving the store having it in view). */
  onStored?: (r: StoredRecord) => void | Promise<void>;
}

function intParam(
  value: string | undefined,
  name: string,
  min: number,
  max: number,
  dflt: number,
): number {
  if (value === undefined) return dflt;
  if (!/^\d{1,16}$/.test(value)) {
    throw new ValidationError(
      `Query parameter ${name} must be a whole number from ${min} to ${max}`,
      {
        path: name,
      },
    );
  }
  const n = Number(value);
  if (n < min || n > max) {
    throw new ValidationError(`Query parameter ${name} must be from ${min} to ${max}, got ${n}`, {
      path: name,
    });
  }
  return n;
}

function recordJson(r: StoredRecord) {
  if (r.data.state !== "soliciting") throw new TypeError("Only soliciting records are shown");
  return {
    guardian: r.guardian,
    state: r.data.state,
    ips: r.data.ips,
    guestPort: r.data.guestPort,
    guestKey: r.data.guestKey,
    issuedAt: rfc3339(r.issuedAt),
    expiresAt: rfc3339(r.expiresAt),
    jws: r.jws,
  };
}

/**
 * Builds the discovery sub-app, to be mounted at `/discovery`.
 *
 * @param deps The store, the feed renderer and the push hook.
 * @returns The Hono app.
 *
 * @example
 * ```ts
 * import { Hono } from "hono";
 * import { createDiscoveryApp, FeedRenderer, RecordStore } from "./mod.ts";
 * const store = await RecordStore.open(":memory:");
 * const feed = new FeedRenderer({ baseUrl: "https://127.0.0.1:8443/discovery" });
 * const renderFeed = (count: number) => feed.render(store.visible(), count);
 * const app = new Hono().route("/discovery", createDiscoveryApp({ store, renderFeed }));
 * const res = await app.request("/discovery/feed.rss");
 * console.log(res.status); // 200
 * store.close();
 * ```
 */
export function createDiscoveryApp(deps: DiscoveryAppDeps): Hono {
  const { store, renderFeed } = deps;
  const app = new Hono();

  app.post(
    "/records",
    bodyLimit({
      maxSize: MAX_RECORD_BYTES,
      onError: () => {
        throw new TooLargeError(`Record is over the limit of ${MAX_RECORD_BYTES} bytes`);
      },
    }),
    async (c) => {
      const type = (c.req.header("content-type") ?? "").split(";")[0].trim().toLowerCase();
      if (type !== "application/jose") {
        throw new TrueCloudError(
          "Submit a record as a compact JWS with Content-Type application/jose",
          {
            code: "unsupported_media_type",
            status: 415,
          },
        );
      }
      const jws = (await c.req.text()).trim();
      const { status, record } = await store.offer(jws, "client");
      if (status === "stored") await deps.onStored?.(record);
      return c.json({
        status,
        vpn: record.data.vpn,
        guardian: record.guardian,
        state: record.data.state,
        issuedAt: rfc3339(record.issuedAt),
        expiresAt: rfc3339(record.expiresAt),
      }, status === "stored" ? 201 : 200);
    },
  );

  app.get("/feed.rss", (c) => {
    const count = intParam(c.req.query("count"), "count", 1, MAX_FEED_COUNT, DEFAULT_FEED_COUNT);
    return c.body(renderFeed(count), 200, FEED_HEADERS);
  });

  app.get("/vpns/:uuid", etag(), (c) => {
    const vpn = c.req.param("uuid");
    if (!isUuid(vpn)) {
      throw new ValidationError("VPN id must be a lowercase UUID", { path: "uuid" });
    }
    const records = store.visibleForVpn(vpn);
    if (records.length === 0) {
      throw new TrueCloudError(`No soliciting VPN ${vpn}`, { code: "not_found", status: 404 });
    }
    return c.json({ vpn, records: records.map(recordJson) }, 200, {
      "cache-control": "public, max-age=60",
    });
  });

  app.get("/replication/log", async (c) => {
    const after = intParam(c.req.query("after"), "after", 0, Number.MAX_SAFE_INTEGER, 0);
    const limit = intParam(c.req.query("limit"), "limit", 1, 1000, 500);
    const page = await store.logAfter(after, limit);
    return c.json({ replica: store.replicaId, ...page }, 200, { "cache-control": "no-store" });
  });

  app.all("/records", methodNotAllowed("POST"));
  app.all("/feed.rss", methodNotAllowed("GET, HEAD"));
  app.all("/vpns/:uuid", methodNotAllowed("GET, HEAD"));
  app.all("/replication/log", methodNotAllowed("GET, HEAD"));

  return app;
}
