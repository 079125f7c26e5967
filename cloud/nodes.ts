/**
 * The local cloud's node agents: a dozen RMSes (by default) that attest the development release,
 * found three management VPNs and join them through discovery and guest networks, the way nodes on
 * the internet do, all on 127.0.0.1.
 *
 * @module
 */

import type { BlockStore } from "../cdn/mod.ts";
import {
  loadIdentity,
  loadOrCreate,
  Rms,
  startVolumes,
  trustReleases,
  type VolumeProvider,
} from "../node/mod.ts";
import type { Logger, NodeIdentity } from "../protocol/mod.ts";

/** What each node lends. */
const DISK = 8 * 1024 ** 3;

/** Settings of {@linkcode startNodes}. */
export interface NodesOptions {
  /** The local cloud's state directory. */
  home: string;
  /** How many node agents (default 12). */
  count?: number;
  /** The gateway's URL (feed and TUF repository). */
  gateway: string;
  /** Discovery endpoints of the replicas, for records. */
  endpoints: string[];
  /** The release to attest, as a target path. */
  release: string;
  /** A fetch that trusts the cloud's certificate. */
  fetch: typeof fetch;
  /** A node's CDN store, by node id. */
  cdnStore?: (nodeId: string) => BlockStore | undefined;
  /** Logger. */
  log: Logger;
}

/** The running node agents. */
export interface LocalNodes {
  /** Each node's RMS, by name (`node-1`…). */
  nodes: Map<string, Rms>;
  /** Each node's identity, by name. */
  identities: Map<string, NodeIdentity>;
  /** Each node's Volume Provider, by name. */
  providers: Map<string, VolumeProvider>;
  /** The VPNs the first nodes founded. */
  founded: string[];
  /** Stops every node (they withdraw their records). */
  stop(): Promise<void>;
}

/**
 * The identity of the local cloud's node `i` (1-based), made on first use and kept.
 * @param home The local cloud's state directory.
 * @param i The node's number.
 */
export async function nodeIdentity(home: string, i: number): Promise<NodeIdentity> {
  return await loadIdentity(`${home}/nodes/node-${i}`);
}

/**
 * Starts the node agents: fetches the release through TUF (verified against the pinned root),
 * measures it for their attestations, starts them, lets the first three found a VPN each, and
 * waits (at most 30 s) until every node is in a VPN.
 * @param o Settings.
 */
export async function startNodes(o: NodesOptions): Promise<LocalNodes> {
  const dir = `${o.home}/nodes`;
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  // Pin the repository's first root, as an installer would ship it.
  const releases = await trustReleases({
    tufUrl: `${o.gateway}/tuf`,
    dir: `${dir}/trusted`,
    root: `${o.home}/repository/1.root.json`,
    release: o.release,
    fetch: o.fetch,
    log: o.log,
  });
  const claim = releases.claim;

  const places = await loadOrCreate(
    `${dir}/places.json`,
    () => Promise.resolve({ locations: Array.from({ length: 4 }, () => crypto.randomUUID()) }),
  );
  const nodes = new Map<string, Rms>();
  const identities = new Map<string, NodeIdentity>();
  const providers = new Map<string, VolumeProvider>();
  const count = o.count ?? 12;
  try {
    for (let i = 1; i <= count; i++) {
      const name = `node-${i}`;
      await Deno.mkdir(`${dir}/${name}`, { recursive: true, mode: 0o700 });
      const identity = await nodeIdentity(o.home, i);
      const { network } = await loadOrCreate(
        `${dir}/${name}/network.json`,
        () => Promise.resolve({ network: crypto.randomUUID() }),
      );
      const rms = await Rms.start({
        identity,
        cdnStore: o.cdnStore?.(identity.nodeId),
        location: places.locations[i % places.locations.length],
        network,
        // Every third node holds two VPNs, linking them.
        // node-1 keeps the cloud file system: in every VPN, it reaches every provider directly
        // (through bridges alone, losing the bridges would leave it no replacements).
        maxVpns: i === 1 ? 3 : i % 3 === 0 ? 2 : 1,
        release: claim,
        releases: releases.catalog,
        feedUrl: `${o.gateway}/discovery/feed.rss?count=100`,
        endpoints: o.endpoints,
        fetch: o.fetch,
        allowPrivateAddresses: true,
        // Every node here comes from 127.0.0.1, as homes behind one NAT share an address.
        guestPerAddressPerSecond: 1000,
        contribution: { diskBytes: DISK, diskPath: o.home, cpuMillicores: 500 },
        ledgerPath: `${dir}/${name}/ledger.kv`,
        cataloguePath: `${dir}/${name}/catalogue.kv`,
        // Every node shares one host here: repair rounds are cheap, and show changes sooner.
        cdnRepairMs: 2000,
        retryMs: 2000,
        log: o.log.child(name),
      });
      nodes.set(name, rms);
      identities.set(name, identity);
      // Its Volume Provider: volumes of the lent disk (less the CDN's share).
      const cdn = o.cdnStore?.(identity.nodeId);
      providers.set(
        name,
        await startVolumes({
          rms,
          identity,
          dir: `${dir}/${name}`,
          capacityBytes: DISK - (cdn ? cdn.used + cdn.free : 0),
          log: o.log.child(name),
        }),
      );
    }
    const all = [...nodes.values()];
    const founded: string[] = [];
    for (const rms of all.slice(0, Math.min(3, all.length))) {
      founded.push(await rms.found({ maxMembers: 8, maxPerLocation: 3, maxPerNetwork: 2 }));
    }
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline && all.some((n) => !n.memberships().length)) {
      await Promise.all(all.map((n) => n.fill()));
      await new Promise((r) => setTimeout(r, 200));
    }
    return {
      nodes,
      identities,
      providers,
      founded,
      async stop() {
        releases.stop();
        for (const n of nodes.values()) await n.stop();
      },
    };
  } catch (err) {
    releases.stop();
    for (const n of nodes.values()) await n.stop().catch(() => {});
    throw err;
  }
}
