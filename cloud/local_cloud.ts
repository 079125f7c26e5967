/**
 * The local cloud: a whole True Cloud on one host, for trying it and for end-to-end tests: the public
 * gateway and three discovery replicas (the gateway fronts the first), a development release of
 * this source tree (TUF repository and minisign signatures, development keys), a dozen node agents
 * in three overlapping management VPNs that they found and join through discovery, and the CDN with
 * sample content.
 *
 * @module
 */

import { buildDevelopmentRelease, TimestampRefresher } from "../library/mod.ts";
import { BlockStore } from "../cdn/mod.ts";
import { type LocalNodes, nodeIdentity, startNodes } from "./nodes.ts";
import { type PublishedSample, publishSamples } from "./samples.ts";
import { Gateway, type GatewayConfig } from "../gateway/mod.ts";
import { ensureSelfSigned } from "../gateway/mod.ts";
import {
  discardLogger,
  type Logger,
  type LogLevel,
  toHex,
  TrueCloudError,
} from "../protocol/mod.ts";
import { createControlApp, type RunningFileSystem, startFileSystem } from "../node/mod.ts";

/** The CDN share of each CDN holder's lent disk: the most its block store holds. */
const CDN_QUOTA = 256 * 1024 * 1024;

/** Settings of a {@linkcode LocalCloud}. */
export interface LocalCloudOptions {
  /** State directory. */
  home: string;
  /** The gateway's port (0 for any free one). */
  gatewayPort: number;
  /** How many discovery replicas, the gateway's included (default 3). */
  replicas?: number;
  /** How many node agents (default 12). */
  nodes?: number;
  /** Serving threads of the public gateway (default one per core, at most 4). */
  gatewayWorkers?: number;
  /** Logger. */
  log?: Logger;
  /** Level of the logs that serving Workers write (they cannot share `log`). */
  logLevel?: LogLevel;
  /** Ports of node-1's CFS UI and WebDAV endpoint, on loopback (default: any free ones). */
  cfsUiPort?: number;
  webdavPort?: number;
  /** How long node-1's CFS waits for a silent volume before replacing it, ms (default 60 s). */
  cfsGraceMs?: number;
}

/** node-1's Cloud File System and its two loopback endpoints. */
export interface LocalCfs extends RunningFileSystem {
  /** The node that keeps it. */
  node: string;
}

// Builds node-1's CFS as soon as eight providers answer (they may still be joining), and serves it.
async function startCfs(
  home: string,
  nodes: LocalNodes,
  options: LocalCloudOptions,
  log: Logger,
): Promise<LocalCfs> {
  const node = "node-1";
  const running = await startFileSystem({
    rms: nodes.nodes.get(node)!,
    identity: nodes.identities.get(node)!,
    statePath: `${home}/nodes/${node}/cfs.json`,
    graceMs: options.cfsGraceMs ?? 60_000,
    uiPort: options.cfsUiPort ?? 0,
    webdavPort: options.webdavPort ?? 0,
    deadlineMs: 90_000,
    retryMs: 2000,
    log,
  });
  if (!running) throw new TrueCloudError(`${node} stopped before its pool was built`);
  return { node, ...running };
}

/**
 * A running local cloud.
 *
 * @example
 * ```ts ignore
 * const cloud = await LocalCloud.start({ home: ".truecloud", gatewayPort: 8443 });
 * console.log(cloud.gateway.url);
 * await cloud.stop();
 * ```
 */
export class LocalCloud {
  /** The public gateway (fronting replica 1). */
  readonly gateway: Gateway;
  /** Every replica's server, the gateway first. */
  readonly replicas: Gateway[];
  /** The node agents. */
  readonly nodes: LocalNodes;
  readonly #client: Deno.HttpClient;
  readonly #control: Deno.HttpServer<Deno.NetAddr>;
  readonly #home: string;
  readonly #log: Logger;
  readonly #refresher: TimestampRefresher;
  /** The sample CDN content published at start. */
  readonly samples: PublishedSample[];
  /** node-1's Cloud File System, its UI and its WebDAV endpoint (with nine nodes or more). */
  readonly cfs?: LocalCfs;

  private constructor(
    replicas: Gateway[],
    nodes: LocalNodes,
    control: Deno.HttpServer<Deno.NetAddr>,
    home: string,
    client: Deno.HttpClient,
    log: Logger,
    refresher: TimestampRefresher,
    samples: PublishedSample[],
    cfs: LocalCfs | undefined,
  ) {
    this.cfs = cfs;
    this.#refresher = refresher;
    this.samples = samples;
    this.gateway = replicas[0];
    this.replicas = replicas;
    this.nodes = nodes;
    this.#control = control;
    this.#home = home;
    this.#client = client;
    this.#log = log;
  }

  /** A fetch that trusts the local cloud's certificate. */
  get fetch(): typeof fetch {
    return (input, init) => fetch(input, { ...init, client: this.#client });
  }

  /**
   * Starts the local cloud.
   * @param options State directory, port, sizes and logger.
   * @returns The running cloud.
   */
  static async start(options: LocalCloudOptions): Promise<LocalCloud> {
    const log = options.log ?? discardLogger;
    const home = options.home;
    await Deno.mkdir(`${home}/discovery`, { recursive: true });
    const tls = await ensureSelfSigned(`${home}/tls`);
    // A development release of this very source tree, signed with development keys.
    const release = await buildDevelopmentRelease({
      repository: `${home}/repository`,
      keysDir: `${home}/dev-keys`,
      sourceRoot: new URL("..", import.meta.url).pathname,
    });
    log.info("Development release built", {
      version: release.version,
      installers: release.installers,
    });
    // The timestamp key is online: keep the timestamp fresh while the cloud runs.
    const refresher = new TimestampRefresher({
      repository: release.repository,
      signer: release.timestampSigner,
      snapshotSigner: release.snapshotSigner,
      log: log.child("timestamp"),
    });
    // The CDN of the local cloud: every node agent keeps a block store (bounded by the CDN share of
    // what its node lends, and counted against it) and a catalogue; objects are placed on three of
    // the live holders each node sees, which pull them over their VPNs. The gateway serves /cdn
    // through the last node, its uplink, which reads from the holders over its VPNs.
    const count = options.nodes ?? 12;
    const cdnNodes = new Map<string, BlockStore>();
    for (let i = 1; i <= count; i++) {
      const id = (await nodeIdentity(home, i)).nodeId;
      cdnNodes.set(id, await BlockStore.open(`${home}/cdn/nodes/${id}`, CDN_QUOTA));
    }
    const client = Deno.createHttpClient({ caCerts: [tls.cert] });
    const peerFetch: typeof fetch = (input, init) => fetch(input, { ...init, client });

    const replicas: Gateway[] = [];
    let nodes: LocalNodes | undefined;
    let control: Deno.HttpServer<Deno.NetAddr> | undefined;
    let cfs: LocalCfs | undefined;
    try {
      const n = options.replicas ?? 3;
      for (let i = 1; i <= n; i++) {
        const config: GatewayConfig = {
          home,
          host: "127.0.0.1",
          port: i === 1 ? options.gatewayPort : 0,
          kvPath: `${home}/discovery/replica-${i}.kv`,
          peers: [],
          allowPrivateAddresses: true,
          rateLimit: { burst: 120, perSecond: 20 },
          rateLimitExempt: ["127.0.0.0/8", "::1/128"],
          maxBodyBytes: 65536,
          workers: i === 1
            ? (options.gatewayWorkers ?? Math.min(4, navigator.hardwareConcurrency))
            : 1,
          logLevel: options.logLevel ?? "warn",
          repository: i === 1 ? `${home}/repository` : undefined,
          cdnUplink: i === 1
            ? { controlFile: `${home}/control.json`, node: `node-${count}` }
            : undefined,
        };
        replicas.push(
          await Gateway.start(config, {
            log: log.child(i === 1 ? "gateway" : `replica-${i}`),
            tls,
            peerCa: tls.cert,
          }),
        );
      }
      for (const r of replicas) {
        r.discovery.replicator.setPeers(
          replicas.filter((p) => p !== r).map((p) => `${p.url}/discovery`),
        );
      }

      // The node agents: they found three VPNs and join them through the gateway's feed.
      nodes = await startNodes({
        home,
        count: options.nodes,
        gateway: replicas[0].url,
        endpoints: replicas.map((r) => `${r.url}/discovery`),
        release: `installers/truecloud-${release.version}.tar.gz`,
        fetch: peerFetch,
        cdnStore: (id) => cdnNodes.get(id),
        log: log.child("nodes"),
      });
      // The first node publishes the samples; the holders pull them.
      const samples = await publishSamples(nodes.nodes.get("node-1")!.cdn);
      log.info("Sample content published", { samples });
      // node-1 keeps its files on a pool of eight volumes leased from the others.
      if (nodes.nodes.size > 8) {
        cfs = await startCfs(home, nodes, options, log);
        log.info("CFS pool built", { spread: cfs.cfs.status().distribution.summary });
      }
      // The nodes' control API, for `deno task node`: loopback, a token in a file only we read.
      const token = toHex(crypto.getRandomValues(new Uint8Array(32)));
      control = Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen() {} },
        createControlApp(nodes.nodes, token, {
          cfs: new Map(cfs ? [[cfs.node, cfs.cfs]] : []),
        }).fetch,
      );
      await Deno.writeTextFile(
        `${home}/control.json`,
        JSON.stringify({ url: `http://127.0.0.1:${control.addr.port}`, token }),
        { mode: 0o600 },
      );
      refresher.start();
      return new LocalCloud(replicas, nodes, control, home, client, log, refresher, samples, cfs);
    } catch (err) {
      await control?.shutdown().catch(() => {});
      await nodes?.stop().catch(() => {});
      for (const r of replicas) await r.stop().catch(() => {});
      client.close();
      throw err;
    }
  }

  /**
   * Waits until every node is in as many VPNs as it holds at most (or the VPNs are full).
   * @param timeoutMs How long to wait.
   * @returns Whether they are in time.
   */
  async settled(timeoutMs = 30_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const all = [...this.nodes.nodes.values()];
    while (Date.now() < deadline) {
      if (all.every((n) => n.memberships().length >= 1)) return true;
      await new Promise((r) => setTimeout(r, 50));
    }
    return false;
  }

  /** Stops the nodes (they withdraw their records), then every replica. */
  async stop(): Promise<void> {
    this.#refresher.stop();
    await this.#control.shutdown();
    await Deno.remove(`${this.#home}/control.json`).catch(() => {});
    await this.nodes.stop(); // node-1 stops its file system, its UI and its WebDAV endpoint
    for (const r of this.replicas) await r.stop();
    this.#client.close();
    this.#log.info("Local cloud stopped");
  }
}
