/**
 * A running gateway: TLS material, its discovery replica, the Hono app and the HTTPS server, built
 * from a validated {@linkcode GatewayConfig}. `gateway/main.ts` and the local cloud both use it.
 *
 * With one serving thread, everything runs in the calling thread. With several (`workers`, one per
 * core by default), the calling thread keeps the replica's primary role — replication with peers,
 * garbage collection, process metrics — and each Worker serves HTTPS on the same port
 * (`SO_REUSEPORT`) from its own view of the same store. The Workers tell each other of writes on a
 * `BroadcastChannel`, share the rate limiter's buckets in a `SharedArrayBuffer`, and add up every
 * thread's metrics at `/metrics`.
 *
 * @module
 */

import { DiscoveryService } from "../discovery/mod.ts";
import {
  createInstallersApp,
  createTufApp,
  TimestampRefresher,
  tufSigner,
} from "../library/mod.ts";
import { openKey } from "../signing/mod.ts";
import { ConfigError, discardLogger, type Logger, newUuid } from "../protocol/mod.ts";
import { createGatewayApp } from "./app.ts";
import type { GatewayConfig } from "./config.ts";
import { GatewayMetrics } from "./metrics.ts";
import { RateLimiter } from "./rate_limit.ts";
import { type HttpsServer, serveHttps } from "./server.ts";
import { ensureSelfSigned, loadTls, type TlsMaterial } from "./tls.ts";
import { metricsExchange, type ServingSetup } from "./_serving.ts";
import { openCdnEgress } from "./_cdn.ts";

/** Dependencies of {@linkcode Gateway.start}. */
export interface GatewayDeps {
  /** Logger. */
  log?: Logger;
  /** TLS material to use instead of the configured files (the local cloud shares one). */
  tls?: TlsMaterial;
  /** A PEM CA to trust when reaching peer replicas, instead of `peerCaFile`. */
  peerCa?: string;
}

/** The serving side of a gateway: in this thread, or a pool of Workers. */
interface Front {
  port: number;
  noDelay: boolean;
  setPublicUrl(url: string): void;
  stop(): Promise<void>;
}

function inThread(server: HttpsServer): Front {
  return {
    port: server.port,
    noDelay: server.noDelay,
    setPublicUrl() {},
    stop: () => server.shutdown(),
  };
}

async function workerPool(
  setup: Omit<ServingSetup, "port" | "index">,
  port: number,
  count: number,
  log: Logger,
): Promise<Front> {
  // Workers by index. A Worker that dies after it started serving is replaced (at most 10 times in
  // all): the port stays served by the others meanwhile.
  const workers = new Map<number, Worker>();
  let publicUrl: string | undefined;
  let stopping = false;
  let restarts = 0;
  const start = (index: number, bindPort: number) => {
    const w = new Worker(new URL("./_worker.ts", import.meta.url), {
      type: "module",
      name: `gateway-${index}`,
    });
    const ready = Promise.withResolvers<{ port: number; noDelay: boolean }>();
    let serving = false;
    w.onmessage = (e) => {
      if (e.data.type === "listening") {
        serving = true;
        ready.resolve(e.data);
      } else if (e.data.type === "failed") ready.reject(new Error(e.data.message));
    };
    w.onerror = (e) => {
      e.preventDefault();
      log.error("Serving worker failed", { index, error: e.message });
      ready.reject(new Error(e.message));
      w.terminate();
      if (workers.get(index) === w) workers.delete(index);
      if (serving && !stopping && restarts++ < 10) {
        setTimeout(() => {
          if (stopping) return;
          start(index, bindPort).then(
            () => log.info("Serving worker replaced", { index }),
            (err) =>
              log.error("Serving worker could not be replaced", { index, error: err.message }),
          );
        }, 1000);
      }
    };
    w.postMessage({ type: "start", setup: { ...setup, port: bindPort, index }, publicUrl });
    workers.set(index, w);
    return ready.promise;
  };
  try {
    const first = await start(0, port);
    let noDelay = first.noDelay;
    for (let i = 1; i < count; i++) noDelay = (await start(i, first.port)).noDelay && noDelay;
    return {
      port: first.port,
      noDelay,
      setPublicUrl(url) {
        publicUrl = url;
        for (const w of workers.values()) w.postMessage({ type: "public-url", url });
      },
      async stop() {
        stopping = true;
        await Promise.all([...workers.values()].map((w) => {
          const stopped = Promise.withResolvers<void>();
          w.onmessage = (e) => e.data.type === "stopped" && stopped.resolve();
          w.onerror = (e) => {
            e.preventDefault();
            stopped.resolve();
          };
          w.postMessage({ type: "stop" });
          const t = setTimeout(stopped.resolve, 10_000);
          return stopped.promise.then(() => {
            clearTimeout(t);
            w.terminate();
          });
        }));
      },
    };
  } catch (err) {
    stopping = true;
    for (const w of workers.values()) w.terminate();
    throw err;
  }
}

/**
 * The gateway: public HTTPS front of one discovery replica.
 *
 * @example
 * ```ts ignore
 * const gw = await Gateway.start(config, { log });
 * console.log(gw.url); // https://127.0.0.1:8443
 * await gw.stop();
 * ```
 */
export class Gateway {
  /** The discovery replica this gateway fronts (its primary instance). */
  readonly discovery: DiscoveryService;
  /** The public base URL, such as `https://127.0.0.1:8443`. */
  readonly url: string;
  /** The port it listens on. */
  readonly port: number;
  /** Whether `TCP_NODELAY` is set on its listeners. */
  readonly noDelay: boolean;
  /** The TLS material in use. */
  readonly tls: TlsMaterial;
  readonly #front: Front;
  readonly #log: Logger;
  readonly #cleanup: () => void;

  private constructor(
    discovery: DiscoveryService,
    front: Front,
    url: string,
    tls: TlsMaterial,
    log: Logger,
    cleanup: () => void,
  ) {
    this.discovery = discovery;
    this.#front = front;
    this.port = front.port;
    this.noDelay = front.noDelay;
    this.url = url;
    this.tls = tls;
    this.#log = log;
    this.#cleanup = cleanup;
  }

  /**
   * Builds and starts a gateway.
   * @param config Validated configuration.
   * @param deps Logger, TLS material and peer CA.
   * @returns The running gateway.
   * @throws {ConfigError} When TLS files or the peer CA cannot be used.
   */
  static async start(config: GatewayConfig, deps: GatewayDeps = {}): Promise<Gateway> {
    const log = deps.log ?? discardLogger;
    let tls = deps.tls;
    if (!tls) {
      if (config.certFile && config.keyFile) tls = await loadTls(config.certFile, config.keyFile);
      else {
        tls = await ensureSelfSigned(`${config.home}/tls`);
        log.warn("Serving with a self-signed development certificate", {
          dir: `${config.home}/tls`,
        });
      }
    }
    // The online keys, opened before anything starts: a wrong passphrase stops start-up at once.
    let refresher: TimestampRefresher | undefined;
    if (config.onlineKeys && config.repository) {
      const k = config.onlineKeys;
      const passphrase = (await Deno.readTextFile(k.passphraseFile)).replace(/\r?\n$/, "");
      const open = async (file: string) =>
        tufSigner((await openKey(JSON.parse(await Deno.readTextFile(file)), passphrase)).seed);
      refresher = new TimestampRefresher({
        repository: config.repository,
        signer: await open(k.timestamp),
        snapshotSigner: await open(k.snapshot),
        log: log.child("online-roles"),
      });
    }
    let ca = deps.peerCa;
    if (!ca && config.peerCaFile) {
      const caFile = config.peerCaFile;
      ca = await Deno.readTextFile(caFile).catch((cause) => {
        throw new ConfigError(`Cannot read peer CA ${caFile}: ${cause.message}`, { cause });
      });
      if (!ca.includes("-----BEGIN CERTIFICATE-----")) {
        throw new ConfigError(`Peer CA ${caFile} is not a PEM certificate`);
      }
    }
    const client = ca ? Deno.createHttpClient({ caCerts: [ca] }) : undefined;
    const peerFetch: typeof fetch | undefined = client
      ? (input, init) => fetch(input, { ...init, client })
      : undefined;
    if (config.kvPath !== ":memory:" && config.kvPath.includes("/")) {
      await Deno.mkdir(config.kvPath.slice(0, config.kvPath.lastIndexOf("/")), { recursive: true });
    }
    const pool = config.workers > 1 && config.kvPath !== ":memory:";
    const instance = newUuid();

    let publicUrl = config.publicUrl;
    const discovery = await DiscoveryService.open({
      kvPath: config.kvPath,
      publicBaseUrl: () => `${publicUrl}/discovery`,
      peers: config.peers,
      allowPrivateAddresses: config.allowPrivateAddresses,
      fetch: peerFetch,
      channel: pool ? `truecloud-discovery:${instance}` : undefined,
      channelMembers: pool ? config.workers + 1 : 1,
      log: log.child("discovery"),
    });
    const metrics = new GatewayMetrics({ defaultMetrics: true });
    metrics.gauge("truecloud_discovery_records", "Records in this replica's store, by state.", [
      "state",
    ], () => [
      { labels: { state: "visible" }, value: discovery.store.visible().length },
      { labels: { state: "stored" }, value: discovery.store.all().length },
    ]);
    const limiter = config.rateLimit ? new RateLimiter(config.rateLimit) : undefined;

    const cdn = pool ? undefined : await openCdnEgress(config.cdnDir, config.cdnUplink);
    let front: Front;
    let exchange: ReturnType<typeof metricsExchange> | undefined;
    try {
      if (pool) {
        exchange = metricsExchange(instance, metrics, config.workers + 1);
        front = await workerPool(
          {
            config,
            tls,
            instance,
            rateLimitBuffer: limiter?.buffer,
            participants: config.workers + 1,
          },
          config.port,
          config.workers,
          log,
        );
      } else {
        const app = createGatewayApp({
          discovery: discovery.app,
          feed: discovery.renderFeed,
          tuf: config.repository ? createTufApp(config.repository) : undefined,
          installers: config.repository ? createInstallersApp(config.repository) : undefined,
          cdn: cdn?.app,
          cdnFast: cdn?.fast,
          metrics,
          log: log.child("http"),
          rateLimit: config.rateLimit,
          rateLimitBuffer: limiter?.buffer,
          rateLimitExempt: config.rateLimitExempt,
          maxBodyBytes: config.maxBodyBytes,
          accessLog: config.accessLog,
          health: { discovery: () => true },
        });
        front = inThread(serveHttps(app.fetch, {
          hostname: config.host,
          port: config.port,
          cert: tls.cert,
          key: tls.key,
          log: log.child("server"),
        }));
      }
    } catch (err) {
      cdn?.close();
      exchange?.close();
      await discovery.close();
      client?.close();
      throw err;
    }
    const host = config.host.includes(":") ? `[${config.host}]` : config.host;
    publicUrl ??= `https://${
      host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host
    }:${front.port}`;
    front.setPublicUrl(publicUrl);
    discovery.start();
    refresher?.start();
    log.info("Gateway listening", {
      url: publicUrl,
      port: front.port,
      threads: pool ? config.workers : 1,
      noDelay: front.noDelay,
    });
    return new Gateway(discovery, front, publicUrl, tls, log, () => {
      refresher?.stop();
      cdn?.close();
      exchange?.close();
      client?.close();
    });
  }

  /** Stops serving, then replication, then closes the store. */
  async stop(): Promise<void> {
    await this.#front.stop();
    await this.discovery.close();
    this.#cleanup();
    this.#log.info("Gateway stopped");
  }
}
