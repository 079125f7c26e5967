// One serving thread of a gateway: builds the gateway app on its own discovery instance (which
// shares the store file with the main thread) and serves it on the shared port. Used by
// gateway.ts, both in the main thread (one serving thread) and in Workers (several).
import { DiscoveryService } from "../discovery/mod.ts";
import { createInstallersApp, createTufApp } from "../library/mod.ts";
import type { Logger } from "../protocol/mod.ts";
import { createGatewayApp } from "./app.ts";
import type { GatewayConfig } from "./config.ts";
import { GatewayMetrics } from "./metrics.ts";
import { type HttpsServer, serveHttps } from "./server.ts";
import type { TlsMaterial } from "./tls.ts";
import { openCdnEgress } from "./_cdn.ts";
import { AggregatorRegistry } from "prom-client";

type MetricJson = Awaited<ReturnType<GatewayMetrics["registry"]["getMetricsAsJSON"]>>;

/** What a serving thread needs; all of it can cross a `postMessage`. */
export interface ServingSetup {
  config: GatewayConfig;
  tls: TlsMaterial;
  /** Port to bind (the first thread may bind 0). */
  port: number;
  /** Unique per gateway: names the channels its threads share. */
  instance: string;
  /** The rate limiter's shared buckets. */
  rateLimitBuffer?: SharedArrayBuffer;
  /** How many parties keep metrics (serving threads and the main thread). */
  participants: number;
  /** Index of this thread. */
  index: number;
}

/** A message on a gateway's metrics channel. */
export type MetricsMessage =
  | { kind: "collect"; id: string }
  | { kind: "metrics"; id: string; json: MetricJson };

/**
 * Answers metric collection requests with this party's registry, and collects everyone's.
 * @param instance The gateway's instance id.
 * @param metrics This party's metrics.
 * @param participants How many parties keep metrics, this one included.
 */
export function metricsExchange(instance: string, metrics: GatewayMetrics, participants: number) {
  const ch = new BroadcastChannel(`truecloud-metrics:${instance}`);
  const waiting = new Map<string, { json: MetricJson[]; done: () => void }>();
  ch.onmessage = async (e: MessageEvent<MetricsMessage>) => {
    const m = e.data;
    if (m.kind === "collect") {
      ch.postMessage({
        kind: "metrics",
        id: m.id,
        json: await metrics.registry.getMetricsAsJSON(),
      });
    } else {
      const w = waiting.get(m.id);
      if (w) {
        w.json.push(m.json);
        if (w.json.length >= participants) w.done();
      }
    }
  };
  return {
    /** Every party's metrics added up, as Prometheus text (parties that do not answer within 1 s are left out). */
    async collect(): Promise<string> {
      const id = crypto.randomUUID();
      const json: MetricJson[] = [await metrics.registry.getMetricsAsJSON()];
      if (participants > 1) {
        const done = Promise.withResolvers<void>();
        waiting.set(id, { json, done: done.resolve });
        ch.postMessage({ kind: "collect", id } satisfies MetricsMessage);
        const timer = setTimeout(done.resolve, 1000);
        await done.promise;
        clearTimeout(timer);
        waiting.delete(id);
      }
      return await AggregatorRegistry.aggregate(json).metrics();
    },
    close(): void {
      ch.close();
    },
  };
}

/** A running serving thread. */
export interface Serving {
  server: HttpsServer;
  discovery: DiscoveryService;
  setPublicUrl(url: string): void;
  stop(): Promise<void>;
}

/**
 * Starts one serving thread.
 * @param s The setup.
 * @param log Logger.
 * @param publicUrl The public URL, when already known.
 */
export async function startServing(
  s: ServingSetup,
  log: Logger,
  publicUrl?: string,
): Promise<Serving> {
  let url = publicUrl;
  const discovery = await DiscoveryService.open({
    kvPath: s.config.kvPath,
    publicBaseUrl: () => `${url}/discovery`,
    allowPrivateAddresses: s.config.allowPrivateAddresses,
    primary: false,
    channel: `truecloud-discovery:${s.instance}`,
    channelMembers: s.participants,
    log: log.child("discovery"),
  });
  const cdn = await openCdnEgress(s.config.cdnDir, s.config.cdnUplink);
  const metrics = new GatewayMetrics();
  const exchange = metricsExchange(s.instance, metrics, s.participants);
  const app = createGatewayApp({
    discovery: discovery.app,
    feed: discovery.renderFeed,
    tuf: s.config.repository ? createTufApp(s.config.repository) : undefined,
    installers: s.config.repository ? createInstallersApp(s.config.repository) : undefined,
    cdn: cdn?.app,
    cdnFast: cdn?.fast,
    metrics,
    collectMetrics: () => exchange.collect(),
    log: log.child("http"),
    rateLimit: s.config.rateLimit,
    rateLimitBuffer: s.rateLimitBuffer,
    rateLimitExempt: s.config.rateLimitExempt,
    maxBodyBytes: s.config.maxBodyBytes,
    accessLog: s.config.accessLog,
    health: { discovery: () => true },
  });
  let server: HttpsServer;
  try {
    server = serveHttps(app.fetch, {
      hostname: s.config.host,
      port: s.port,
      cert: s.tls.cert,
      key: s.tls.key,
      reusePort: true,
      log: log.child("server"),
    });
  } catch (err) {
    cdn?.close();
    exchange.close();
    await discovery.close();
    throw err;
  }
  discovery.start();
  return {
    server,
    discovery,
    setPublicUrl(u: string) {
      url = u;
    },
    async stop() {
      await server.shutdown();
      cdn?.close();
      exchange.close();
      await discovery.close();
    },
  };
}
