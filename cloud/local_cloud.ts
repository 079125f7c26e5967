/**
 * The local cloud: a whole True Cloud on one host, for trying it and for end-to-end tests. This
 * version runs the public gateway and three discovery replicas (the gateway fronts the first), a
 * few guardians that publish signed records of soliciting VPNs, and a development release of this
 * source tree (TUF repository and minisign signatures, development keys). Later parts add the nodes.
 *
 * @module
 */

import { RecordPublisher, type SolicitingData } from "../discovery/mod.ts";
import { buildDevelopmentRelease, TimestampRefresher } from "../library/mod.ts";
import { BlockStore, Catalogue, StoreSet } from "../cdn/mod.ts";
import { CdnRepairLoop } from "./cdn_repair.ts";
import { type PublishedSample, publishSamples } from "./samples.ts";
import { Gateway, type GatewayConfig } from "../gateway/mod.ts";
import { ensureSelfSigned } from "../gateway/mod.ts";
import {
  discardLogger,
  type Logger,
  type LogLevel,
  newUuid,
  NodeIdentity,
  toHex,
} from "../protocol/mod.ts";

/** Settings of a {@linkcode LocalCloud}. */
export interface LocalCloudOptions {
  /** State directory. */
  home: string;
  /** The gateway's port (0 for any free one). */
  gatewayPort: number;
  /** How many discovery replicas, the gateway's included (default 3). */
  replicas?: number;
  /** How many guardians publish records (default 4). */
  guardians?: number;
  /** Serving threads of the public gateway (default one per core, at most 4). */
  gatewayWorkers?: number;
  /** Logger. */
  log?: Logger;
  /** Level of the logs that serving Workers write (they cannot share `log`). */
  logLevel?: LogLevel;
}

/** What the local cloud keeps across restarts besides the stores: its VPNs. */
interface LocalState {
  vpns: { vpn: string; guestKey: string; guestPort: number }[];
}

function hexKey(): string {
  return toHex(crypto.getRandomValues(new Uint8Array(32)));
}

async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(path)) as T;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
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
  /** The guardians' publishers. */
  readonly publishers: RecordPublisher[];
  /** The guardians' identities. */
  readonly guardians: NodeIdentity[];
  /** The soliciting records published at start. */
  readonly published: SolicitingData[];
  readonly #client: Deno.HttpClient;
  readonly #log: Logger;
  readonly #refresher: TimestampRefresher;
  readonly #catalogue: Catalogue;
  readonly #cdnRepair: CdnRepairLoop;
  /** The sample CDN content published at start. */
  readonly samples: PublishedSample[];

  private constructor(
    replicas: Gateway[],
    publishers: RecordPublisher[],
    guardians: NodeIdentity[],
    published: SolicitingData[],
    client: Deno.HttpClient,
    log: Logger,
    refresher: TimestampRefresher,
    catalogue: Catalogue,
    samples: PublishedSample[],
    cdnRepair: CdnRepairLoop,
  ) {
    this.#cdnRepair = cdnRepair;
    this.#refresher = refresher;
    this.#catalogue = catalogue;
    this.samples = samples;
    this.gateway = replicas[0];
    this.replicas = replicas;
    this.publishers = publishers;
    this.guardians = guardians;
    this.published = published;
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
    // The CDN of the local cloud: five nodes' block stores and the catalogue, which the gateway
    // serves at /cdn. Objects are placed on three of them; a node whose store vanishes is gone, and
    // its objects are copied to the next holders.
    const members = new Set<string>();
    const cdnNodes = new Map<string, BlockStore>();
    for (let i = 1; i <= 5; i++) {
      cdnNodes.set(
        `cdn-node-${i}`,
        await BlockStore.open(`${home}/cdn/nodes/cdn-node-${i}`, 256 * 1024 * 1024),
      );
    }
    const cdnBlocks = new StoreSet([...cdnNodes.values()]);
    const catalogue = await Catalogue.open(`${home}/cdn/catalogue.kv`, {
      isMember: (id) => members.has(id),
      has: (cid) => cdnBlocks.has(cid),
    });
    const client = Deno.createHttpClient({ caCerts: [tls.cert] });
    const peerFetch: typeof fetch = (input, init) => fetch(input, { ...init, client });

    const replicas: Gateway[] = [];
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
          cdnDir: i === 1 ? `${home}/cdn` : undefined,
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

      // Guardians and their VPNs persist across restarts, like a real node's identity.
      const guardians: NodeIdentity[] = [];
      await Deno.mkdir(`${home}/guardians`, { recursive: true, mode: 0o700 });
      for (let i = 1; i <= (options.guardians ?? 4); i++) {
        const path = `${home}/guardians/guardian-${i}.json`;
        const jwk = await readJson(path);
        const id = jwk ? await NodeIdentity.fromJwk(jwk) : await NodeIdentity.generate();
        if (!jwk) await Deno.writeTextFile(path, JSON.stringify(id.toJwk()), { mode: 0o600 });
        guardians.push(id);
      }
      // The guardians are this cloud's members, for the CDN; two of them publish samples.
      for (const g of guardians) members.add(g.nodeId);
      const samples = await publishSamples(cdnNodes.get("cdn-node-1")!, catalogue, guardians[0]);
      const cdnRepair = new CdnRepairLoop(home, cdnNodes, catalogue, log.child("cdn"));
      await cdnRepair.run();
      log.info("Sample content published", { samples });
      const statePath = `${home}/local-cloud.json`;
      const state = (await readJson<LocalState>(statePath)) ?? { vpns: [] };
      while (state.vpns.length < 3) {
        state.vpns.push({
          vpn: newUuid(),
          guestKey: hexKey(),
          guestPort: 4101 + state.vpns.length,
        });
      }
      await Deno.writeTextFile(statePath, JSON.stringify(state, null, 2), { mode: 0o600 });

      // Each guardian admits to one VPN (the first VPN has two guardians) and publishes to a
      // different replica, so the records reach the gateway only through replication.
      const publishers: RecordPublisher[] = [];
      const published: SolicitingData[] = [];
      for (let i = 0; i < guardians.length; i++) {
        const replica = replicas[i % replicas.length];
        const pub = new RecordPublisher({
          guardian: guardians[i],
          endpoints: [`${replica.url}/discovery`, ...replicas.map((r) => `${r.url}/discovery`)],
          ttlSeconds: 3600,
          fetch: peerFetch,
          log: log.child(`guardian-${i + 1}`),
        });
        const v = state.vpns[i % state.vpns.length];
        const data: SolicitingData = {
          v: 1,
          vpn: v.vpn,
          state: "soliciting",
          ips: ["127.0.0.1"],
          guestPort: v.guestPort + 100 * Math.floor(i / state.vpns.length),
          guestKey: v.guestKey,
        };
        await pub.solicit(data);
        publishers.push(pub);
        published.push(data);
      }
      refresher.start();
      cdnRepair.start();
      return new LocalCloud(
        replicas,
        publishers,
        guardians,
        published,
        client,
        log,
        refresher,
        catalogue,
        samples,
        cdnRepair,
      );
    } catch (err) {
      for (const r of replicas) await r.stop().catch(() => {});
      client.close();
      catalogue.close();
      throw err;
    }
  }

  /**
   * Waits until the gateway's replica shows every published record (replication has caught up).
   * @param timeoutMs How long to wait.
   * @returns Whether it did in time.
   */
  async settled(timeoutMs = 10_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.replicas.every((r) => r.discovery.store.visible().length >= this.published.length)) {
        return true;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    return false;
  }

  /** Stops the guardians, then every replica. */
  async stop(): Promise<void> {
    this.#refresher.stop();
    await this.#cdnRepair.stop();
    this.#catalogue.close();
    for (const p of this.publishers) p.stop();
    for (const r of this.replicas) await r.stop();
    this.#client.close();
    this.#log.info("Local cloud stopped");
  }
}
