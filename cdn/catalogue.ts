/**
 * The CDN catalogue: signed publish manifests, accepted only from members of the cloud, mapping
 * names to content addresses (`docs/protocol/cdn.md`). Re-publishing a name is a new version;
 * older versions stay fetchable by CID. Kept in Deno KV.
 *
 * Until management-VPN credentials exist, "member" is decided by a predicate the deployment gives
 * (the local cloud: its own nodes).
 *
 * @module
 */

import type { CID } from "multiformats/cid";
import {
  type Clock,
  type NodeId,
  type NodeIdentity,
  signEnvelope,
  systemClock,
  TrueCloudError,
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
  readonly #has: (cid: CID) => Promise<boolean>;
  readonly #clock: Clock;

  private constructor(
    kv: Deno.Kv,
    isMember: (id: NodeId) => boolean,
    has: (cid: CID) => Promise<boolean>,
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
   * @param deps Who is a member, whether content is held here, and the clock.
   */
  static async open(
    path: string,
    deps: { isMember: (id: NodeId) => boolean; has: (cid: CID) => Promise<boolean>; clock?: Clock },
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
    const env = await verifyEnvelope(jws, {
      type: PUBLISH_TYPE,
      audience: CDN_AUDIENCE,
      schema: publishSchema,
      what: "publish manifest",
      clock: this.#clock,
      maxBytes: 8192,
      maxTtlSeconds: 86_400,
    });
    if (!this.#isMember(env.issuer)) {
      throw new TrueCloudError("Only members of the cloud may publish", {
        code: "not_member",
        status: 403,
      });
    }
    const cid = parseCid(env.data.cid);
    if (!(await this.#has(cid))) {
      throw new TrueCloudError(`Content ${cid} is not stored here: upload it first`, {
        code: "content_missing",
        status: 409,
      });
    }
    const entry: Entry = {
      ...env.data,
      cid: cid.toString(),
      publisher: env.issuer,
      issuedAt: env.issuedAt,
      jws,
    };
    const current = await this.#kv.get<Entry>(["name", entry.name]);
    if (current.value && current.value.issuedAt > entry.issuedAt) {
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
