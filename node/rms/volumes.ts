/**
 * The volume messages of `docs/protocol/volumes.md` — exports and exported volumes — and the
 * choice of eight well-spread offers.
 *
 * @module
 */

import {
  type Clock,
  type NodeIdentity,
  nodeIdSchema,
  SignatureError,
  signEnvelope,
  uuidSchema,
  verifyEnvelope,
  z,
} from "../../protocol/mod.ts";
import type { ReceivedOffer } from "./broadcast.ts";
import { type LedgerEntry, nodeAudience, verifyAck } from "./ledger.ts";

/** Envelope type of an export (consumer to provider). */
export const EXPORT_TYPE = "truecloud-volume-export+jwt";
/** Envelope type of an exported volume (provider to consumer). */
export const VOLUME_TYPE = "truecloud-volume+jwt";
/** Block size of volumes (64 KiB). */
export const VOLUME_BLOCK_SIZE = 65536;

const key = z.string().regex(/^[A-Za-z0-9_-]{43}$/, "a 32-byte key in base64url");
const blockSize = z.number().int().min(4096).max(1 << 20).refine(
  (n) => (n & (n - 1)) === 0,
  "a power of two",
);
const endpoint = z.string().max(300).regex(
  /^(\[[0-9a-fA-F:.]+\]|[0-9]{1,3}(\.[0-9]{1,3}){3}|[A-Za-z0-9.-]+):[0-9]{1,5}$/,
  "host:port",
);

/** The data of an export. */
export const exportDataSchema = z.strictObject({
  v: z.literal(1),
  volume: uuidSchema,
  lease: z.string().min(1).max(12 * 1024),
  pool: uuidSchema,
  blockSize,
  tunnelKey: key,
});
/** The data of an export. */
export type ExportData = z.infer<typeof exportDataSchema>;

/** The data of an exported volume. */
export const volumeDataSchema = z.strictObject({
  v: z.literal(1),
  volume: uuidSchema,
  consumer: nodeIdSchema,
  endpoint,
  tunnelKey: key,
  consumerKey: key,
  blockSize,
  blockCount: z.number().int().min(1).max(2 ** 40),
});
/** The data of an exported volume. */
export type VolumeData = z.infer<typeof volumeDataSchema>;

/**
 * Signs an export: the consumer asking its provider to export a leased volume.
 * @param consumer The consumer.
 * @param provider The provider it is for.
 * @param data The export.
 * @param clock Time source.
 */
export async function signExport(
  consumer: NodeIdentity,
  provider: string,
  data: ExportData,
  clock?: Clock,
): Promise<string> {
  return await signEnvelope(consumer, exportDataSchema.parse(data), {
    type: EXPORT_TYPE,
    audience: nodeAudience(provider),
    ttlSeconds: 600,
    clock,
  });
}

/**
 * Verifies an export sent to this provider, and the lease inside it.
 * @param jws The export, untrusted.
 * @param provider This provider.
 * @param clock Time source.
 * @returns The export and its lease.
 * @throws {SignatureError|ValidationError} When either does not verify, the lease is not this
 * provider's, or the export is not its consumer's.
 */
export async function verifyExport(
  jws: string,
  provider: string,
  clock?: Clock,
): Promise<{ data: ExportData; lease: LedgerEntry }> {
  const v = await verifyEnvelope(jws, {
    type: EXPORT_TYPE,
    audience: nodeAudience(provider),
    schema: exportDataSchema,
    what: "volume export",
    clock,
    maxBytes: 16 * 1024,
    maxTtlSeconds: 600,
  });
  const lease = await verifyAck(v.data.lease, clock);
  if (lease.provider !== provider || lease.consumer !== v.issuer || lease.id !== v.data.volume) {
    throw new SignatureError("The export is not the lease's consumer's, or not for this lease", {
      code: "claim_invalid",
    });
  }
  if (lease.kind !== "storage" || lease.bytes < v.data.blockSize) {
    throw new SignatureError("The lease is not a storage lease of at least one block", {
      code: "claim_invalid",
    });
  }
  return { data: v.data, lease };
}

/**
 * Signs an exported volume: the provider telling its consumer where and how to reach it.
 * @param provider The provider.
 * @param data The volume.
 * @param until When the lease ends (seconds): the statement's end.
 * @param clock Time source.
 */
export async function signVolume(
  provider: NodeIdentity,
  data: VolumeData,
  until: number,
  clock?: Clock,
): Promise<string> {
  const now = Math.floor((clock?.now() ?? Date.now()) / 1000);
  return await signEnvelope(provider, volumeDataSchema.parse(data), {
    type: VOLUME_TYPE,
    audience: nodeAudience(data.consumer),
    ttlSeconds: Math.max(60, until - now),
    clock,
  });
}

/**
 * Verifies an exported volume from a provider.
 * @param jws The statement, untrusted.
 * @param provider Who must have signed it.
 * @param consumer This consumer.
 * @param clock Time source.
 * @throws {SignatureError|ValidationError} When it does not verify or is not for this consumer.
 */
export async function verifyVolume(
  jws: string,
  provider: string,
  consumer: string,
  clock?: Clock,
): Promise<VolumeData> {
  const v = await verifyEnvelope(jws, {
    type: VOLUME_TYPE,
    audience: nodeAudience(consumer),
    schema: volumeDataSchema,
    what: "exported volume",
    clock,
    maxBytes: 4096,
    maxTtlSeconds: 91 * 24 * 3600,
  });
  if (v.issuer !== provider || v.data.consumer !== consumer) {
    throw new SignatureError("The exported volume is not from this provider for this consumer", {
      code: "claim_invalid",
    });
  }
  return v.data;
}

/** Where a volume (or an offer for one) is: what distribution is judged on. */
export interface VolumePlace {
  provider: string;
  location: string;
  network: string;
  vpn: string;
}

/** The placement of an offer. */
export function volumePlaceOf(o: ReceivedOffer): VolumePlace {
  return {
    provider: o.provider,
    location: o.data.location,
    network: o.data.network,
    vpn: o.data.vpn,
  };
}

/**
 * Orders offers for a pool, best first (`docs/protocol/volumes.md`, "Selection"): never a provider
 * already in the pool, then new locations, new networks, new VPNs, then the earliest offer. The
 * order is greedy: each offer is judged against the pool plus the offers ranked before it.
 * @param offers Offers, in the order they arrived.
 * @param pool Placements of the volumes the pool keeps.
 * @returns The offers that may be taken, best first (at most one per provider).
 */
export function rankOffers(offers: readonly ReceivedOffer[], pool: readonly VolumePlace[]) {
  const used = {
    provider: new Set(pool.map((p) => p.provider)),
    location: new Set(pool.map((p) => p.location)),
    network: new Set(pool.map((p) => p.network)),
    vpn: new Set(pool.map((p) => p.vpn)),
  };
  const left = offers.filter((o, i) =>
    !used.provider.has(o.provider) && offers.findIndex((x) => x.provider === o.provider) === i
  );
  const ranked: ReceivedOffer[] = [];
  while (left.length) {
    let best = 0, bestScore = -1;
    left.forEach((o, i) => {
      const score = (used.location.has(o.data.location) ? 0 : 4) +
        (used.network.has(o.data.network) ? 0 : 2) + (used.vpn.has(o.data.vpn) ? 0 : 1);
      if (score > bestScore) [best, bestScore] = [i, score];
    });
    const [o] = left.splice(best, 1);
    ranked.push(o);
    used.location.add(o.data.location);
    used.network.add(o.data.network);
    used.vpn.add(o.data.vpn);
  }
  return ranked;
}

/** How well a pool's volumes are spread. */
export interface Spread {
  providers: number;
  locations: number;
  networks: number;
  vpns: number;
  summary: string;
}

/**
 * Says how well volumes are spread: distinct providers, locations, networks and VPNs.
 * @param pool The volumes' placements.
 */
export function spreadOf(pool: readonly VolumePlace[]): Spread {
  const n = (k: keyof VolumePlace) => new Set(pool.map((p) => p[k])).size;
  const s = {
    providers: n("provider"),
    locations: n("location"),
    networks: n("network"),
    vpns: n("vpn"),
  };
  const plural = (x: number, one: string, many: string) => `${x} ${x === 1 ? one : many}`;
  let summary = `${plural(s.providers, "provider", "providers")} in ` +
    `${plural(s.locations, "location", "locations")}, ` +
    `${plural(s.networks, "network", "networks")} and ${plural(s.vpns, "VPN", "VPNs")}`;
  const shared = (["locations", "networks"] as const).filter((k) => s[k] < pool.length);
  if (shared.length) {
    summary += `: some volumes share ${shared.join(" and ")}, as no better offers came`;
  }
  return { ...s, summary };
}
