/**
 * A running gateway: TLS material, its discovery replica, the Hono app and the HTTPS server, built
 * from a validated {@linkcode GatewayConfig}. `gateway/main.ts` and the local cloud both use it.
 *
 * @module
 */

import { DiscoveryService } from "../discovery/mod.ts";
import { ConfigError, discardLogger, type Logger } from "../protocol/mod.ts";
import { createGatewayApp } from "./app.ts";
import type { GatewayConfig } from "./config.ts";
import { GatewayMetrics } from "./metrics.ts";
import { type HttpsServer, serveHttps } from "./server.ts";
import { ensureSelfSigned, loadTls, type TlsMaterial } from "./tls.ts";

/** Dependencies of {@linkcode Gateway.start}. */
export interface GatewayDeps {
  /** Logger. */
  log?: Logger;
  /** TLS material to use instead of the configured files (the local cloud shares one). */
  tls?: TlsMaterial;
  /** Fetch used to reach peer replicas (default: one trusting `peerCaFile` if set). */
  fetch?: typeof fetch;
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
  /** The discovery replica this gateway fronts. */
  readonly discovery: DiscoveryService;
  /** The HTTPS server. */
  readonly server: HttpsServer;
  /** The public base URL, such as `https://127.0.0.1:8443`. */
  readonly url: string;
  /** The TLS material in use. */
  readonly tls: TlsMaterial;
  readonly #log: Logger;
  readonly #client?: Deno.HttpClient;

  private constructor(
    discovery: DiscoveryService,
    server: HttpsServer,
    url: string,
    tls: TlsMaterial,
    log: Logger,
    client?: Deno.HttpClient,
  ) {
    this.discovery = discovery;
    this.server = server;
    this.url = url;
    this.tls = tls;
    this.#log = log;
    this.#client = client;
  }

  /**
   * Builds and starts a gateway.
   * @param config Validated configuration.
   * @param deps Logger, TLS material and peer fetch.
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
    let client: Deno.HttpClient | undefined;
    let peerFetch = deps.fetch;
    if (!peerFetch && config.peerCaFile) {
      const caFile = config.peerCaFile;
      const ca = await Deno.readTextFile(caFile).catch((cause) => {
        throw new ConfigError(`Cannot read peer CA ${caFile}: ${cause.message}`, { cause });
      });
      if (!ca.includes("-----BEGIN CERTIFICATE-----")) {
        throw new ConfigError(`Peer CA ${caFile} is not a PEM certificate`);
      }
      client = Deno.createHttpClient({ caCerts: [ca] });
      const c = client;
      peerFetch = (input, init) => fetch(input, { ...init, client: c });
    }
    const kvDir = config.kvPath.includes("/")
      ? config.kvPath.slice(0, config.kvPath.lastIndexOf("/"))
      : "";
    if (kvDir && config.kvPath !== ":memory:") await Deno.mkdir(kvDir, { recursive: true });

    let publicUrl = config.publicUrl;
    const discovery = await DiscoveryService.open({
      kvPath: config.kvPath,
      publicBaseUrl: () => `${publicUrl}/discovery`,
      peers: config.peers,
      allowPrivateAddresses: config.allowPrivateAddresses,
      fetch: peerFetch,
      log: log.child("discovery"),
    });
    const metrics = new GatewayMetrics({ defaultMetrics: true });
    metrics.gauge(
      "truecloud_discovery_records",
      "Records in this replica's store, by state and visibility.",
      [
        "state",
      ],
      () => {
        const all = discovery.store.all();
        const visible = discovery.store.visible().length;
        return [
          { labels: { state: "visible" }, value: visible },
          { labels: { state: "stored" }, value: all.length },
        ];
      },
    );
    const app = createGatewayApp({
      discovery: discovery.app,
      metrics,
      log: log.child("http"),
      rateLimit: config.rateLimit,
      rateLimitExempt: config.rateLimitExempt,
      maxBodyBytes: config.maxBodyBytes,
      health: { discovery: () => true },
    });
    let server: HttpsServer;
    try {
      server = serveHttps(app.fetch, {
        hostname: config.host,
        port: config.port,
        cert: tls.cert,
        key: tls.key,
        log: log.child("server"),
      });
    } catch (err) {
      await discovery.close();
      client?.close();
      throw err;
    }
    const host = config.host.includes(":") ? `[${config.host}]` : config.host;
    publicUrl ??= `https://${
      host === "0.0.0.0" || host === "[::]" ? "127.0.0.1" : host
    }:${server.port}`;
    discovery.start();
    log.info("Gateway listening", { url: publicUrl, port: server.port, noDelay: server.noDelay });
    return new Gateway(discovery, server, publicUrl, tls, log, client);
  }

  /** Stops serving, then replication, then closes the store. */
  async stop(): Promise<void> {
    await this.server.shutdown();
    await this.discovery.close();
    this.#client?.close();
    this.#log.info("Gateway stopped");
  }
}
