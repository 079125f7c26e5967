/**
 * What the Cloud File System reports about itself: the shape its UI and `deno task node cfs`
 * show.
 *
 * @module
 */

/** Health of the pool as a whole. */
export type PoolState = "online" | "degraded" | "faulted";

/** Health of one of the pool's eight members. */
export type MemberState =
  | "online" // serving
  | "away" // silent or gone, within its grace period: writes are remembered for catch-up
  | "faulted" // gone for good, or failing: to be replaced
  | "resilvering" // new or back, being filled
  | "missing"; // no volume leased for this slot yet

/** One of the eight volumes. */
export interface VolumeStatus {
  /** Position in the stripe: 0–4 hold data, 5–7 parity. */
  slot: number;
  role: "data" | "parity";
  state: MemberState;
  /** The provider's node id. */
  provider?: string;
  /** The provider's location and network endpoint UUIDs, and the VPN it was found in. */
  location?: string;
  network?: string;
  vpn?: string;
  /** Round-trip time of the last heartbeat, ms. */
  latencyMs?: number;
  /** Bytes leased. */
  sizeBytes: number;
  /** The lease: its grant id and when it ends (Unix seconds). */
  lease?: { id: string; until: number };
  /** Errors counted since the volume joined. */
  errors: { read: number; write: number; checksum: number };
  /** Stripes written while it was away, to catch up when it is back. */
  behindStripes: number;
  /** This node's audits of the provider (of its volume and anything else it holds for this node). */
  audits?: { passes: number; failures: number; lastAt: number; lastFailure?: string };
}

/** A resilver under way or just finished. */
export interface ResilverStatus {
  slot: number;
  /** `replace`: a new volume filled from scratch; `catch-up`: only what changed while away. */
  kind: "replace" | "catch-up";
  doneBytes: number;
  totalBytes: number;
  /** Unix ms. */
  startedAt: number;
  /** Bytes per second so far. */
  rate: number;
  /** Seconds left at that rate, when known. */
  etaSeconds?: number;
  finished: boolean;
}

/** One line of the pool's history. */
export interface CfsEvent {
  /** Unix ms. */
  at: number;
  level: "info" | "warn" | "error";
  message: string;
  slot?: number;
}

/** How well the eight volumes are spread. */
export interface Distribution {
  providers: number;
  locations: number;
  networks: number;
  vpns: number;
  /** One sentence, such as "8 providers in 8 locations, 8 networks and 3 VPNs". */
  summary: string;
}

/** Everything the CFS UI shows. */
export interface CfsStatus {
  pool: {
    state: PoolState;
    /** Usable bytes (five eighths of the raw). */
    sizeBytes: number;
    /** Bytes of files stored. */
    usedBytes: number;
    /** Members that may still be lost without losing data. */
    lossesTolerated: number;
  };
  entitlement: { storageBytes: number; usedBytes: number; freeBytes: number };
  volumes: VolumeStatus[];
  distribution: Distribution;
  resilver?: ResilverStatus;
  scrub?: { doneBytes: number; totalBytes: number; repaired: number; finished: boolean };
  events: CfsEvent[];
}
