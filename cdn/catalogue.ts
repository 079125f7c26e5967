/**
 * The CDN catalogue: signed publish manifests, accepted only from members of the cloud, mapping
 * names to content addresses (`docs/protocol/cdn.md`). Re-publishing a name is a new version;
 * older versions stay fetchable by CID. Kept in Deno KV.
 *
 * "Member" is decided by a predicate the node gives (on a roster of one of its management VPNs).
 *
 * @module
 */

import { decodeJwt } from "jose";
import type { CID } from "multiformats/cid";
import {
  type Clock,
  type NodeId,
  type NodeIdentity,
  signEnvelope,
  systemClock,
  TrueCloudError,
  ValidationError,
  verifyEnvelope,
  z,
} from "../protocol/mod.ts";
import { parseCid } from "./content.ts";
import type { PublishedObject } from "./egress.ts";

/** Envelope type of a publish manifest. */
export const PUBLISH_TYPE = "truecloud-cdn-publish+jwt";
/** Audience of a publish manifest. */
export const CDN_AUDIENCE = "truecloud:cdn";

const NAME = /^[A-Za-z0-9][A-Za-z0-9._~-]{0,127}(?:\/[A-Za-z0-9][A-Za-z0-9._~-]{0,127}){0,15}$/;

/** The data of a publish manifest. */
export const publishSchema = z.strictObject({
  v: z.literal(1),
  name: z.string().max(1024).regex(NAME, "Must be path-like: segments of letters, digits and ._~-"),
  cid: z.string().max(128),
  size: z.number().int().nonnegative().max(2 ** 50),
  type: z.string().max(128).regex(
    /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+(?:;\s*charset=[a-z0-9_-]+)?$/i,
  ),
  visibility: z.enum(["public", "members"]),
  expires: z.iso.datetime().optional(),
});

/** A publish manifest's data. */
export type PublishData = z.output<typeof publishSchema>;

/** An accepted publication. */
interface Entry {
  name: string;
  cid: string;
  size: number;
  type: string;
  visibility: "public" | "members";
  publisher: NodeId;
  issuedAt: number;
  expires?: string;
  jws: string;
}

/** Orders two versions of a name: by time of issue, then by CID text. */
function newer(a: Entry, b: Entry): number {
  return a.issuedAt - b.issuedAt || (a.cid < b.cid ? -1 : a.cid > b.cid ? 1 : 0);
}

/** The `iat` of a compact JWS, read before it is verified (only to pick the time to verify at). */
function issuedAtOf(jws: string): number {
  let iat: unknown;
  try {
    iat = decodeJwt(jws).iat;
  } catch {
    // below
  }
  if (Number.isInteger(iat)) return iat as number;
  throw new ValidationError("A publish manifest needs a readable iat", { code: "invalid" });
}

/**
 * Signs a publish manifest.
 * @param publisher The member publishing.
 * @param data What is published.
 * @param clock Time source.
 */
export function signPublish(
  publisher: NodeIdentity,
  data: PublishData,
  clock?: Clock,
): Promise<string> {
  return signEnvelope(publisher, data, {
    type: PUBLISH_TYPE,
    audience: CDN_AUDIENCE,
    ttlSeconds: 3600,
    clock,
  });
}

/**
 * The catalogue of one gateway or node.
 */
export class Catalogue {
  readonly #kv: Deno.Kv;
  readonly #isMember: (id: NodeId) => boolean;
  readonly #has?: (cid: CID) => Promise<boolean>;
  readonly #clock: Clock;

  private constructor(
    kv: Deno.Kv,
    isMember: (id: NodeId) => boolean,
    has: ((cid: CID) => Promise<boolean>) | undefined,
    clock: Clock,
  ) {
    this.#kv = kv;
    this.#isMember = isMember;
    this.#has = has;
    this.#clock = clock;
  }

  /**
   * Opens a catalogue.
   * @param path Deno KV path or `:memory:`.
   * @param deps Who is a member, whether content is held here (when given, {@linkcode publish}
   * takes only manifests of content held here), and the clock.
   */
  static async open(
    path: string,
    deps: {
      isMember: (id: NodeId) => boolean;
      has?: (cid: CID) => Promise<boolean>;
      clock?: Clock;
    },
  ): Promise<Catalogue> {
    return new Catalogue(
      await Deno.openKv(path),
      deps.isMember,
      deps.has,
      deps.clock ?? systemClock,
    );
  }

  /**
   * Verifies and records a publish manifest.
   * @param jws The manifest.
   * @returns The publication.
   * @throws {SignatureError | ValidationError} A manifest that does not verify.
   * @throws {TrueCloudError} `not_member` (403), `content_missing` (409), `stale` (409).
   */
  async publish(jws: string): Promise<PublishedObject> {
    const entry = await this.#verify(jws, {});
    const cid = parseCid(entry.cid);
    if (this.#has && !(await this.#has(cid))) {
      throw new TrueCloudError(`Content ${cid} is not stored here: upload it first`, {
        code: "content_missing",
        status: 409,
      });
    }
    const current = await this.#kv.get<Entry>(["name", entry.name]);
    if (current.value && newer(current.value, entry) > 0) {
      throw new TrueCloudError(`A newer version of ${entry.name} is published`, {
        code: "stale",
        status: 409,
      });
    }
    const ok = await this.#kv.atomic()
      .check(current)
      .set(["name", entry.name], entry)
      .set(["version", entry.name, entry.issuedAt, entry.cid], entry)
      .set(["cid", entry.cid, entry.visibility, entry.name], entry)
      .commit();
    if (!ok.ok) {
      throw new TrueCloudError("Catalogue is busy, try again", { code: "busy", status: 503 });
    }
    return this.#toObject(entry);
  }

  // Checks a manifest: now, from a member; from anyone when a member vouches for it; and when
  // synced, as of its own time of issue (`docs/protocol/cdn.md`, "How manifests travel").
  async #verify(jws: string, how: { synced?: boolean; vouched?: boolean }): Promise<Entry> {
    const synced = how.synced ?? false;
    let clock = this.#clock;
    if (synced) {
      const iat = issuedAtOf(jws);
      clock = { now: () => Math.min(this.#clock.now(), iat * 1000) };
    }
    const env = await verifyEnvelope(jws, {
      type: PUBLISH_TYPE,
      audience: CDN_AUDIENCE,
      schema: publishSchema,
      what: "publish manifest",
      clock,
      maxBytes: 8192,
      maxTtlSeconds: 86_400,
    });
    if (env.issuedAt * 1000 > this.#clock.now() + 30_000) {
      throw new TrueCloudError("The manifest is issued in the future", { code: "invalid" });
    }
    if (!synced && !how.vouched && !this.#isMember(env.issuer)) {
      throw new TrueCloudError("Only members of the cloud may publish", {
        code: "not_member",
        status: 403,
      });
    }
    return {
      ...env.data,
      cid: parseCid(env.data.cid).toString(),
      publisher: env.issuer,
      issuedAt: env.issuedAt,
      jws,
    };
  }

  /**
   * Takes a manifest that came over the network (gossip or sync), whatever content is held here:
   * the newest version of its name becomes current; an older one is kept, fetchable by CID.
   * @param jws The manifest.
   * @param how `vouched`: a member passed it on, so its issuer need not be a member known here;
   * `synced`: it came by sync, so it is checked as of its time of issue (and vouched for).
   * @returns Whether it was new here (a manifest already taken is not taken, nor passed on, again).
   * @throws {SignatureError | ValidationError | TrueCloudError} A manifest that does not hold.
   */
  async take(
    jws: string,
    how: { synced?: boolean; vouched?: boolean } = {},
  ): Promise<{ object: PublishedObject; fresh: boolean }> {
    const entry = await this.#verify(jws, how);
    for (let attempt = 0; attempt < 5; attempt++) {
      const version = ["version", entry.name, entry.issuedAt, entry.cid];
      const [current, known] = await this.#kv.getMany<Entry[]>([["name", entry.name], version]);
      if (known.value) return { object: this.#toObject(entry), fresh: false };
      let op = this.#kv.atomic().check(current).check(known)
        .set(version, entry)
        .set(["cid", entry.cid, entry.visibility, entry.name], entry);
      if (!current.value || newer(current.value, entry) < 0) {
        op = op.set(["name", entry.name], entry);
      }
      if ((await op.commit()).ok) return { object: this.#toObject(entry), fresh: true };
    }
    throw new TrueCloudError("Catalogue is busy, try again", { code: "busy", status: 503 });
  }

  /**
   * The manifests of the newest version of each name after `after`, in name order, as many as fit
   * in `maxBytes` of text (at least one): what a `list` request answers.
   * @param after The last name the asker has ("" for the start).
   * @param maxBytes How much manifest text to give.
   */
  async manifests(after: string, maxBytes = 48 * 1024): Promise<{ jws: string[]; more: boolean }> {
    const jws: string[] = [];
    let bytes = 0;
    const selector = after ? { prefix: ["name"], start: ["name", after] } : { prefix: ["name"] };
    for await (const e of this.#kv.list<Entry>(selector)) {
      if (e.value.name === after) continue;
      if (jws.length && bytes + e.value.jws.length > maxBytes) return { jws, more: true };
      jws.push(e.value.jws);
      bytes += e.value.jws.length;
    }
    return { jws, more: false };
  }

  #toObject(e: Entry): PublishedObject {
    return {
      name: e.name,
      cid: parseCid(e.cid),
      size: e.size,
      type: e.type,
      visibility: e.visibility,
    };
  }

  #live(e: Entry): boolean {
    return !e.expires || Date.parse(e.expires) > this.#clock.now();
  }

  /** The newest publication under a name, if live. */
  async byName(name: string): Promise<PublishedObject | undefined> {
    const e = (await this.#kv.get<Entry>(["name", name])).value;
    return e && this.#live(e) ? this.#toObject(e) : undefined;
  }

  /** A publication of this CID, public ones first (bytes published public are public). */
  async byCid(cid: CID): Promise<PublishedObject | undefined> {
    let found: Entry | undefined;
    for await (const e of this.#kv.list<Entry>({ prefix: ["cid", cid.toString()] })) {
      if (!this.#live(e.value)) continue;
      if (e.value.visibility === "public") return this.#toObject(e.value);
      found ??= e.value;
    }
    return found && this.#toObject(found);
  }

  /** Every live published CID, whichever version of a name it is. */
  async objects(): Promise<CID[]> {
    const out: CID[] = [];
    let last = "";
    for await (const e of this.#kv.list<Entry>({ prefix: ["cid"] })) {
      if (e.value.cid === last || !this.#live(e.value)) continue;
      last = e.value.cid;
      out.push(parseCid(e.value.cid));
    }
    return out;
  }

  /** The newest live publication of every name. */
  async list(): Promise<PublishedObject[]> {
    const out: PublishedObject[] = [];
    for await (const e of this.#kv.list<Entry>({ prefix: ["name"] })) {
      if (this.#live(e.value)) out.push(this.#toObject(e.value));
    }
    return out;
  }

  /** Closes the store. */
  close(): void {
    this.#kv.close();
  }
}
