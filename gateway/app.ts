/**
 * The public gateway as a Hono app: it composes the sub-apps of the other parts (discovery now;
 * installers and the CDN later) behind security headers, a request size limit, a per-client rate
 * limit, metrics and structured access logs, and answers `/healthz` and `/metrics`.
 *
 * @module
 */

import { Hono } from "hono";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { routePath } from "hono/route";
import ipaddr from "ipaddr.js";
import { FEED_HEADERS, plainFeedCount } from "../discovery/mod.ts";
import {
  discardLogger,
  type Logger,
  methodNotAllowed,
  toHttpError,
  TooLargeError,
  TrueCloudError,
} from "../protocol/mod.ts";
import { GatewayMetrics } from "./metrics.ts";
import { RateLimiter, type RateLimitOptions } from "./rate_limit.ts";

/** Headers on every answer: HTTPS only, no content sniffing, nothing may run or frame. */
const SECURITY_HEADERS: readonly (readonly [string, string])[] = [
  ["strict-transport-security", "max-age=63072000; includeSubDomains"],
  ["x-content-type-options", "nosniff"],
  ["content-security-policy", "default-src 'none'; frame-ancestors 'none'"],
];

interface FastPath {
  answer: (req: Request) => Response | undefined;
  counted: { inc(): void };
  timed: { observe(v: number): void };
}

function fastPath(
  metrics: GatewayMetrics,
  route: string,
  answer: (req: Request) => Response | undefined,
): FastPath {
  return {
    answer,
    counted: metrics.requests.labels("GET", route, "200"),
    timed: metrics.duration.labels("GET", route),
  };
}

/** Dependencies and settings of {@linkcode createGatewayApp}. */
export interface GatewayAppDeps {
  /** The discovery sub-app, mounted at `/discovery`. */
  discovery?: Hono;
  /** The release repository's TUF routes, mounted at `/tuf`. */
  tuf?: Hono;
  /** The installers' routes, mounted at `/installers`. */
  installers?: Hono;
  /** The CDN's egress, mounted at `/cdn`. */
  cdn?: Hono;
  /** Renders the discovery feed: given, plain feed requests take a fast path (see below). */
  feed?: (count: number) => string;
  /** The CDN's fast path (`cdnFastPath`): answers a plain `GET /cdn/{CID}` of an object in the edge
   * cache without the router, or gives `undefined`. */
  cdnFast?: (req: Request) => Response | undefined;
  /** Metrics (a fresh registry if not given). */
  metrics?: GatewayMetrics;
  /** Logger for access and error logs. */
  log?: Logger;
  /** Per-client rate limit; `false` turns it off. */
  rateLimit?: RateLimitOptions | false;
  /** Buckets shared with the gateway's other serving threads (from the main thread's limiter). */
  rateLimitBuffer?: SharedArrayBuffer;
  /** Produces the `/metrics` text; by default this app's registry. A gateway with several serving
   * threads passes one that adds up every thread's metrics. */
  collectMetrics?: () => Promise<string>;
  /** Client networks exempt from the rate limit, in CIDR form (default: loopback). */
  rateLimitExempt?: readonly string[];
  /** Largest request body in bytes (default 64 KiB). */
  maxBodyBytes?: number;
  /** Log every request at level info (default: only failures, at level error). */
  accessLog?: boolean;
  /** Extra checks for `/healthz`; each returns `true` when healthy. */
  health?: Record<string, () => boolean>;
}

/**
 * The address of the client that sent a request, from the server adapter's connection info:
 * `Deno.serve` passes `{ remoteAddr }`, the `node:http` adapter passes `{ incoming }`.
 *
 * @param c The request context.
 * @returns The address, or `unknown`.
 */
export function clientAddress(c: Context): string {
  const env = c.env as
    | { remoteAddr?: { hostname?: string }; incoming?: { socket?: { remoteAddress?: string } } }
    | undefined;
  const addr = env?.remoteAddr?.hostname ?? env?.incoming?.socket?.remoteAddress;
  return addr ?? "unknown";
}

function parseCidrs(cidrs: readonly string[]): [ipaddr.IPv4 | ipaddr.IPv6, number][] {
  return cidrs.map((c) => ipaddr.parseCIDR(c));
}

function inAny(addr: string, nets: [ipaddr.IPv4 | ipaddr.IPv6, number][]): boolean {
  if (!ipaddr.isValid(addr)) return false;
  let a = ipaddr.parse(addr);
  if (a.kind() === "ipv6" && (a as ipaddr.IPv6).isIPv4MappedAddress()) {
    a = (a as ipaddr.IPv6).toIPv4Address();
  }
  return nets.some(([net, bits]) => net.kind() === a.kind() && a.match(net, bits));
}

/**
 * Builds the gateway's root app.
 *
 * @param deps Sub-apps, metrics, logger and limits.
 * @returns The Hono app; serve it with `serveHttps`.
 *
 * @example
 * ```ts
 * import { createGatewayApp } from "./app.ts";
 * const app = createGatewayApp({});
 * const res = await app.request("/healthz");
 * console.log(res.status); // 200
 * ```
 */
export function createGatewayApp(deps: GatewayAppDeps): Hono {
  const log = deps.log ?? discardLogger;
  const metrics = deps.metrics ?? new GatewayMetrics();
  const limiter = deps.rateLimit === false
    ? undefined
    : new RateLimiter(deps.rateLimit ?? { burst: 120, perSecond: 20 }, deps.rateLimitBuffer);
  const exempt = parseCidrs(deps.rateLimitExempt ?? ["127.0.0.0/8", "::1/128"]);
  const exemptCache = new Map<string, boolean>();
  const isExempt = (client: string): boolean => {
    let e = exemptCache.get(client);
    if (e === undefined) {
      e = inAny(client, exempt);
      if (exemptCache.size >= 4096) exemptCache.clear();
      exemptCache.set(client, e);
    }
    return e;
  };
  const maxBody = deps.maxBodyBytes ?? 64 * 1024;
  const accessLog = deps.accessLog ?? false;
  // Not strict: "/installers/" is the listing's address, as much as "/installers".
  const app = new Hono({ strict: false });

  // Metrics and access log around everything, including refusals.
  app.use(async (c, next) => {
    const start = performance.now();
    metrics.inFlight.inc();
    try {
      await next();
    } finally {
      metrics.inFlight.dec();
      const route = c.res.status === 404 ? "unmatched" : routePath(c, -1);
      const seconds = (performance.now() - start) / 1000;
      metrics.requests.inc({ method: c.req.method, route, status: String(c.res.status) });
      metrics.duration.observe({ method: c.req.method, route }, seconds);
      if (accessLog || c.res.status >= 500) {
        const fields = {
          method: c.req.method,
          path: c.req.path,
          status: c.res.status,
          ms: Math.round(seconds * 10_000) / 10,
          client: clientAddress(c),
        };
        if (c.res.status >= 500) log.error("Request failed", fields);
        else log.info("Request", fields);
      }
    }
  });

  // Security headers go on before the handler builds its response (Hono carries them into it):
  // Hono's secureHeaders middleware sets them on the finished response instead, which measured here
  // cut feed throughput by about 30%. Only the headers that protect an API and feeds are sent;
  // browser-page ones (X-XSS-Protection, X-Download-Options, …) would protect nothing here and
  // each costs time on every response.
  app.use(async (c, next) => {
    for (const [k, v] of SECURITY_HEADERS) c.header(k, v);
    if (limiter && c.req.path !== "/healthz") {
      const client = clientAddress(c);
      if (!isExempt(client)) {
        const d = limiter.take(client);
        if (!d.allowed) {
          metrics.rateLimited.inc();
          c.header("retry-after", String(d.retryAfterS));
          throw new TrueCloudError(
            `Too many requests from ${client}, retry in ${d.retryAfterS} s`,
            {
              code: "rate_limited",
              status: 429,
            },
          );
        }
      }
    }
    await next();
    // A sub-app that answers with a `Response` of its own (the CDN, the installers' files) does not
    // carry the headers set above: they go onto its answer here.
    const h = c.res.headers;
    if (!h.has(SECURITY_HEADERS[0][0])) {
      for (const [k, v] of SECURITY_HEADERS) h.set(k, v);
    }
  });

  app.use(bodyLimit({
    maxSize: maxBody,
    onError: () => {
      throw new TooLargeError(`Request body is over the limit of ${maxBody} bytes`);
    },
  }));

  app.get("/healthz", (c) => {
    const checks = Object.fromEntries(
      Object.entries(deps.health ?? {}).map(([k, f]) => {
        try {
          return [k, f()];
        } catch {
          return [k, false];
        }
      }),
    );
    const ok = Object.values(checks).every(Boolean);
    return c.json({ status: ok ? "ok" : "degraded", checks }, ok ? 200 : 503, {
      "cache-control": "no-store",
    });
  });

  app.get("/metrics", async (c) => {
    const text = deps.collectMetrics
      ? await deps.collectMetrics()
      : await metrics.registry.metrics();
    return c.body(text, 200, {
      "content-type": metrics.registry.contentType,
      "cache-control": "no-store",
    });
  });

  app.all("/healthz", methodNotAllowed("GET, HEAD"));
  app.all("/metrics", methodNotAllowed("GET, HEAD"));

  if (deps.discovery) app.route("/discovery", deps.discovery);
  if (deps.tuf) app.route("/tuf", deps.tuf);
  if (deps.installers) app.route("/installers", deps.installers);
  if (deps.cdn) app.route("/cdn", deps.cdn);

  app.notFound((c) => {
    return c.json({
      error: { code: "not_found", message: `No route for ${c.req.method} ${c.req.path}` },
    }, 404);
  });

  app.onError((err, c) => {
    const { status, body } = toHttpError(err);
    if (status >= 500) log.error("Unhandled error", { path: c.req.path, err });
    return c.json(body, status as 400);
  });

  // Fast paths of the hottest public routes: a plain `GET /discovery/feed.rss[?count=N]`, and a
  // plain `GET /cdn/{CID}` of an object in the edge cache, are answered without Hono's middleware
  // chain, with the same headers, rate limit and metrics as the routed answer (the tests compare
  // the two). Anything else, and a client over its rate, goes the ordinary way.
  const fast: FastPath[] = [];
  if (deps.feed) {
    const render = deps.feed;
    const contentType: [string, string][] = [["content-type", FEED_HEADERS["content-type"]]];
    const others = [...SECURITY_HEADERS, ...Object.entries(FEED_HEADERS)]
      .filter(([k]) => k !== "content-type");
    fast.push(fastPath(metrics, "/discovery/feed.rss", (req) => {
      const count = req.method === "GET"
        ? plainFeedCount(req.url, "/discovery/feed.rss")
        : undefined;
      if (count === undefined) return undefined;
      // Headers beyond Content-Type are added after construction: given to the constructor,
      // Deno 2.9 copies the body into a native response at once and registers it for
      // finalisation, about 20 µs per response here; added afterwards, they cost about 1 µs.
      const res = new Response(render(count), { headers: contentType });
      for (const [k, v] of others) res.headers.set(k, v);
      return res;
    }));
  }
  if (deps.cdnFast) {
    const answer = deps.cdnFast;
    fast.push(fastPath(metrics, "/cdn/*", (req) => {
      const res = answer(req);
      if (res) { for (const [k, v] of SECURITY_HEADERS) res.headers.set(k, v); }
      return res;
    }));
  }
  if (fast.length) {
    const honoFetch = app.fetch;
    const allowed = (env: unknown): boolean => {
      if (!limiter) return true;
      const client = clientAddress({ env } as Context);
      return isExempt(client) || limiter.take(client).allowed;
    };
    app.fetch = (req, env, ctx) => {
      for (const f of fast) {
        const start = performance.now();
        const res = f.answer(req);
        if (!res) continue;
        if (!allowed(env)) break;
        const seconds = (performance.now() - start) / 1000;
        f.counted.inc();
        f.timed.observe(seconds);
        if (accessLog) {
          log.info("Request", {
            method: "GET",
            path: new URL(req.url).pathname,
            status: 200,
            ms: Math.round(seconds * 10_000) / 10,
            client: clientAddress({ env } as Context),
          });
        }
        return res;
      }
      return honoFetch(req, env, ctx);
    };
  }

  return app;
}
