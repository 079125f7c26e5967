/**
 * Grants and their acknowledgements, and the ledger of every grant a node made, received or saw
 * announced (`docs/protocol/broadcast.md`, `docs/protocol/entitlement.md`), kept in Deno KV.
 *
 * @module
 */

import {
  type Clock,
  ManualClock,
  type NodeIdentity,
  nodeIdSchema,
  SignatureError,
  signEnvelope,
  systemClock,
  uuidSchema,
  verifyEnvelope,
  z,
} from "../../protocol/mod.ts";
import { RMS_AUDIENCE } from "./contribution.ts";

/** Envelope type of a grant. */
export const GRANT_TYPE = "truecloud-grant+jwt";
/** Envelope type of a grant's acknowledgement (the lease). */
export const ACK_TYPE = "truecloud-grant-ack+jwt";
/** Longest lease, in seconds (90 days). */
export const MAX_LEASE_S = 90 * 24 * 3600;
/** How long ended grants stay in the ledger, in seconds (30 days). */
export const KEEP_ENDED_S = 30 * 24 * 3600;

const amount = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** What is asked for or granted. */
export const resourceSchema = {
  kind: z.enum(["storage", "compute"]),
  bytes: amount,
  cpuMillicores: amount,
  memoryBytes: amount,
  leaseSeconds: z.number().int().min(1).max(MAX_LEASE_S),
};

/** The data of a grant. */
export const grantDataSchema = z.strictObject({
  v: z.literal(1),
  id: uuidSchema,
  request: uuidSchema,
  offer: uuidSchema,
  provider: nodeIdSchema,
  consumer: nodeIdSchema,
  ...resourceSchema,
  contribution: z.string().min(1).max(2048),
});
/** The data of a grant. */
export type GrantData = z.infer<typeof grantDataSchema>;

const ackDataSchema = z.strictObject({
  v: z.literal(1),
  grant: z.string().min(1).max(8192),
  from: z.number().int().min(0),
  until: z.number().int().min(0),
});

/** The audience of envelopes for one node. */
export function nodeAudience(node: string): string {
  return `truecloud:node:${node}`;
}

/** A grant in force or ended, as the ledger keeps it. */
export interface LedgerEntry {
  id: string;
  provider: string;
  consumer: string;
  kind: "storage" | "compute";
  bytes: number;
  cpuMillicores: number;
  memoryBytes: number;
  /** Start and end of the lease, seconds. */
  from: number;
  until: number;
  /** The acknowledgement, which carries the grant. */
  ack: string;
  /** Why it ended before its time, when it did. */
  ended?: LeaseEnd["reason"];
}

/**
 * Signs a grant (the consumer accepting an offer).
 * @param consumer The consumer.
 * @param data The grant.
 * @param clock Time source.
 */
export async function signGrant(
  consumer: NodeIdentity,
  data: GrantData,
  clock?: Clock,
): Promise<string> {
  return await signEnvelope(consumer, grantDataSchema.parse(data), {
    type: GRANT_TYPE,
    audience: nodeAudience(data.provider),
    ttlSeconds: 600,
    clock,
  });
}

/**
 * Verifies a grant sent to a provider.
 * @param jws The grant, untrusted.
 * @param provider The provider it must be for.
 * @param clock Time source.
 * @throws {SignatureError|ValidationError} When it does not verify, or is not the consumer's.
 */
export async function verifyGrant(
  jws: string,
  provider: string,
  clock?: Clock,
): Promise<GrantData> {
  const v = await verifyEnvelope(jws, {
    type: GRANT_TYPE,
    audience: nodeAudience(provider),
    schema: grantDataSchema,
    what: "grant",
    clock,
    maxBytes: 8192,
    maxTtlSeconds: 600,
  });
  if (v.issuer !== v.data.consumer || v.data.provider !== provider) {
    throw new SignatureError("The grant is not its consumer's, or not for this provider", {
      code: "claim_invalid",
    });
  }
  return v.data;
}

/**
 * Acknowledges a grant: the lease, signed by the provider.
 * @param provider The provider.
 * @param grant The grant's JWS.
 * @param leaseSeconds Its length.
 * @param clock Time source.
 */
export async function signAck(
  provider: NodeIdentity,
  grant: string,
  leaseSeconds: number,
  clock: Clock = systemClock,
): Promise<string> {
  const from = Math.floor(clock.now() / 1000);
  return await signEnvelope(provider, { v: 1, grant, from, until: from + leaseSeconds }, {
    type: ACK_TYPE,
    audience: RMS_AUDIENCE,
    ttlSeconds: leaseSeconds,
    clock,
  });
}

/**
 * Verifies an acknowledgement and the grant inside it (as it was when acknowledged).
 * @param jws The acknowledgement, untrusted.
 * @param clock Time source.
 * @returns The ledger entry.
 * @throws {SignatureError|ValidationError} When either does not verify or they disagree.
 */
export async function verifyAck(jws: string, clock?: Clock): Promise<LedgerEntry> {
  const a = await verifyEnvelope(jws, {
    type: ACK_TYPE,
    audience: RMS_AUDIENCE,
    schema: ackDataSchema,
    what: "grant acknowledgement",
    clock,
    maxBytes: 12 * 1024,
    maxTtlSeconds: MAX_LEASE_S,
  });
  const g = await verifyGrant(a.data.grant, a.issuer, new ManualClock(a.issuedAt * 1000));
  if (
    a.data.from !== a.issuedAt || a.data.until !== a.data.from + g.leaseSeconds ||
    a.expiresAt !== a.data.until
  ) {
    throw new SignatureError("The lease's times do not match its grant", {
      code: "claim_invalid",
    });
  }
  return {
    id: g.id,
    provider: g.provider,
    consumer: g.consumer,
    kind: g.kind,
    bytes: g.bytes,
    cpuMillicores: g.cpuMillicores,
    memoryBytes: g.memoryBytes,
    from: a.data.from,
    until: a.data.until,
    ack: jws,
  };
}

/** Envelope type of a lease end. */
export const LEASE_END_TYPE = "truecloud-lease-end+jwt";

/** Why a lease ended early. */
export const leaseEndReasons = ["released", "replaced", "renewed", "withdrawn"] as const;

/** The data of a lease end (`docs/protocol/volumes.md`). */
export const leaseEndSchema = z.strictObject({
  v: z.literal(1),
  lease: uuidSchema,
  provider: nodeIdSchema,
  consumer: nodeIdSchema,
  at: z.number().int().min(0),
  reason: z.enum(leaseEndReasons),
});
/** The data of a lease end. */
export type LeaseEnd = z.infer<typeof leaseEndSchema>;

/**
 * Signs a lease end: one party saying a lease ends at `at`.
 * @param party The provider or the consumer.
 * @param data The lease end.
 * @param clock Time source.
 */
export async function signLeaseEnd(
  party: NodeIdentity,
  data: LeaseEnd,
  clock?: Clock,
): Promise<string> {
  return await signEnvelope(party, leaseEndSchema.parse(data), {
    type: LEASE_END_TYPE,
    audience: RMS_AUDIENCE,
    ttlSeconds: 24 * 3600,
    clock,
  });
}

/**
 * Verifies a lease end.
 * @param jws The lease end, untrusted.
 * @param clock Time source.
 * @throws {SignatureError|ValidationError} When it does not verify or its signer is not a party.
 */
export async function verifyLeaseEnd(jws: string, clock?: Clock): Promise<LeaseEnd> {
  const v = await verifyEnvelope(jws, {
    type: LEASE_END_TYPE,
    audience: RMS_AUDIENCE,
    schema: leaseEndSchema,
    what: "lease end",
    clock,
    maxBytes: 4096,
    maxTtlSeconds: 24 * 3600,
  });
  if (v.issuer !== v.data.provider && v.issuer !== v.data.consumer) {
    throw new SignatureError("A lease end is signed by its provider or its consumer", {
      code: "claim_invalid",
    });
  }
  return v.data;
}

/** Amounts in force. */
export interface Totals {
  storageBytes: number;
  cpuMillicores: number;
  memoryBytes: number;
}

/** How long a provider that failed an audit is not trusted, in seconds (a day). */
export const DISTRUST_S = 24 * 3600;

/** One audit of a provider by this node (`docs/protocol/entitlement.md`, "Audits"). */
export interface AuditResult {
  provider: string;
  /** What was checked: a CDN block, or shards of a volume. */
  kind: "cdn" | "volume";
  ok: boolean;
  /** When, seconds. */
  at: number;
  /** What was checked, and what went wrong. */
  detail: string;
}

/** What this node's audits found of one provider. */
export interface AuditRecord {
  provider: string;
  passes: number;
  failures: number;
  /** The last audit. */
  last: AuditResult;
  /** The last failed one. */
  lastFailure?: AuditResult;
}

/** The ledger of one node, and its record of the audits it made. */
export class Ledger {
  readonly #kv: Deno.Kv;
  readonly #entries = new Map<string, LedgerEntry>();
  readonly #early = new Map<string, LeaseEnd>();
  readonly #audits = new Map<string, AuditRecord>();

  private constructor(kv: Deno.Kv) {
    this.#kv = kv;
  }

  /**
   * Opens the ledger.
   * @param path Deno KV path, or `:memory:`.
   */
  static async open(path: string): Promise<Ledger> {
    const kv = await Deno.openKv(path);
    const l = new Ledger(kv);
    for await (const e of kv.list<LedgerEntry>({ prefix: ["grant"] })) {
      l.#entries.set(e.value.id, e.value);
    }
    for await (const e of kv.list<AuditRecord>({ prefix: ["audit"] })) {
      l.#audits.set(e.value.provider, e.value);
    }
    return l;
  }

  /**
   * Records an audit this node made.
   * @param r What it found.
   */
  async audited(r: AuditResult): Promise<void> {
    const had = this.#audits.get(r.provider);
    const record: AuditRecord = {
      provider: r.provider,
      passes: (had?.passes ?? 0) + (r.ok ? 1 : 0),
      failures: (had?.failures ?? 0) + (r.ok ? 0 : 1),
      last: r,
      ...(r.ok ? (had?.lastFailure ? { lastFailure: had.lastFailure } : {}) : { lastFailure: r }),
    };
    this.#audits.set(r.provider, record);
    await this.#kv.set(["audit", r.provider], record);
  }

  /** What this node's audits found, provider by provider. */
  audits(): AuditRecord[] {
    return [...this.#audits.values()];
  }

  /**
   * Whether a provider failed an audit of this node's in the last day (it is then not trusted).
   * @param provider The provider.
   * @param now Seconds.
   */
  distrusts(provider: string, now: number): boolean {
    const failed = this.#audits.get(provider)?.lastFailure?.at;
    return failed !== undefined && now - failed < DISTRUST_S;
  }

  /**
   * Records a grant (again: no change).
   * @param e The entry.
   * @returns Whether it was new.
   */
  async record(e: LedgerEntry): Promise<boolean> {
    if (this.#entries.has(e.id)) return false;
    // An end heard before its lease (they travel separately) applies as soon as the lease is known.
    const ended = this.#early.get(e.id);
    this.#early.delete(e.id);
    if (ended && ended.provider === e.provider && ended.consumer === e.consumer) {
      const until = Math.max(e.from, ended.at);
      if (until < e.until) e = { ...e, until, ended: ended.reason };
    }
    this.#entries.set(e.id, e);
    await this.#kv.set(["grant", e.id], e);
    return true;
  }

  /**
   * Ends a lease early (a verified lease end from one of its parties); a lease end for another
   * pair of parties, or later than the lease's end, changes nothing.
   * @param end The lease end.
   * @returns Whether the entry changed.
   */
  async end(end: LeaseEnd): Promise<boolean> {
    const e = this.#entries.get(end.lease);
    if (!e) {
      if (this.#early.size >= 10_000) this.#early.delete(this.#early.keys().next().value!);
      const news = !this.#early.has(end.lease);
      this.#early.set(end.lease, end);
      return news;
    }
    if (e.provider !== end.provider || e.consumer !== end.consumer) return false;
    const until = Math.max(e.from, end.at);
    if (until >= e.until) return false;
    const ended = { ...e, until, ended: end.reason };
    this.#entries.set(e.id, ended);
    await this.#kv.set(["grant", e.id], ended);
    return true;
  }

  /**
   * One entry.
   * @param id The lease id.
   */
  get(id: string): LedgerEntry | undefined {
    return this.#entries.get(id);
  }

  /** Every entry. */
  entries(): LedgerEntry[] {
    return [...this.#entries.values()];
  }

  /**
   * What a node has received and holds now.
   * @param consumer The node.
   * @param now Seconds.
   */
  use(consumer: string, now: number): Totals {
    return this.#sum((e) => e.consumer === consumer && e.from <= now && now < e.until);
  }

  /**
   * What a node has given and gives now.
   * @param provider The node.
   * @param now Seconds.
   */
  given(provider: string, now: number): Totals {
    return this.#sum((e) => e.provider === provider && e.from <= now && now < e.until);
  }

  /**
   * Deletes entries that ended more than 30 days before `now`.
   * @param now Seconds.
   * @returns How many were deleted.
   */
  async prune(now: number): Promise<number> {
    let n = 0;
    for (const e of this.#entries.values()) {
      if (e.until + KEEP_ENDED_S < now) {
        this.#entries.delete(e.id);
        await this.#kv.delete(["grant", e.id]);
        n++;
      }
    }
    return n;
  }

  /** Closes the store. */
  close(): void {
    this.#kv.close();
  }

  #sum(f: (e: LedgerEntry) => boolean): Totals {
    const t = { storageBytes: 0, cpuMillicores: 0, memoryBytes: 0 };
    for (const e of this.#entries.values()) {
      if (!f(e)) continue;
      t.storageBytes += e.bytes;
      t.cpuMillicores += e.cpuMillicores;
      t.memoryBytes += e.memoryBytes;
    }
    return t;
  }
}
