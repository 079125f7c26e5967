/**
 * The gateway's uplink (`docs/protocol/cdn.md`, "The gateway's uplink"): the gateway is not a member
 * of any VPN, so it reads the CDN through a node agent on its own host, over the agent's control API.
 * The agent gives public content only: members-only manifests never reach the gateway.
 *
 * @module
 */

import type { CID } from "multiformats/cid";
import { NotFoundError, TrueCloudError } from "../protocol/mod.ts";
import { parseCid } from "./content.ts";
import type { PublishedObject } from "./egress.ts";
import type { CatalogueView, ObjectReader } from "./source.ts";

/** Settings of {@linkcode openUplink}. */
export interface UplinkOptions {
  /** The agent's `control.json` (`{ "url", "token" }`), read again whenever the agent fails. */
  controlFile: string;
  /** The node to ask (default: the first the agent lists). */
  node?: string;
  /** How long the list of public objects is trusted, in milliseconds (default 2000). */
  listMs?: number;
  /** Fetch, for tests. */
  fetch?: typeof fetch;
}

interface Link {
  url: string;
  token: string;
  node: string;
}

interface Listing {
  at: number;
  byName: Map<string, PublishedObject>;
  byCid: Map<string, PublishedObject>;
  all: PublishedObject[];
}

function unreachable(why: string): TrueCloudError {
  return new TrueCloudError(`The CDN uplink is unavailable: ${why}`, {
    code: "uplink_unavailable",
    status: 503,
  });
}

/**
 * Opens the uplink: a catalogue view and an object reader over a node agent's control API.
 * @param o Settings.
 */
export function openUplink(o: UplinkOptions): CatalogueView & { read: ObjectReader } {
  const f = o.fetch ?? fetch;
  const listMs = o.listMs ?? 2000;
  let link: Promise<Link> | undefined;
  let listing: Listing | undefined;
  let loading: Promise<Listing> | undefined;

  const connect = async (): Promise<Link> => {
    let file;
    try {
      file = JSON.parse(await Deno.readTextFile(o.controlFile));
    } catch (err) {
      throw unreachable(`cannot read ${o.controlFile}: ${(err as Error).message}`);
    }
    if (typeof file?.url !== "string" || typeof file?.token !== "string") {
      throw unreachable(`${o.controlFile} has no url and token`);
    }
    let node = o.node;
    if (!node) {
      const res = await f(`${file.url}/nodes`, {
        headers: { authorization: `Bearer ${file.token}` },
        signal: AbortSignal.timeout(5000),
      });
      if (!res.ok) throw unreachable(`the agent answered ${res.status}`);
      const nodes = (await res.json())?.nodes;
      node = Array.isArray(nodes) && typeof nodes[0]?.name === "string" ? nodes[0].name : undefined;
      if (!node) throw unreachable("the agent runs no node");
    }
    return { url: file.url, token: file.token, node: node! };
  };

  // A request to the agent; a failure to reach it makes the next request read control.json again
  // (the agent may have restarted on another port).
  const ask = async (path: string, init: RequestInit = {}): Promise<Response> => {
    link ??= connect();
    let l: Link;
    try {
      l = await link;
    } catch (err) {
      link = undefined;
      throw err;
    }
    try {
      return await f(`${l.url}/nodes/${encodeURIComponent(l.node)}/cdn/public${path}`, {
        ...init,
        headers: { ...init.headers, authorization: `Bearer ${l.token}` },
      });
    } catch (err) {
      link = undefined;
      throw unreachable((err as Error).message);
    }
  };

  const load = async (): Promise<Listing> => {
    const res = await ask("", { signal: AbortSignal.timeout(10_000) });
    if (!res.ok) {
      await res.body?.cancel();
      link = undefined;
      throw unreachable(`the agent answered ${res.status}`);
    }
    const body = await res.json();
    const next: Listing = { at: Date.now(), byName: new Map(), byCid: new Map(), all: [] };
    for (const x of Array.isArray(body?.objects) ? body.objects : []) {
      try {
        const obj: PublishedObject = {
          name: String(x.name),
          cid: parseCid(String(x.cid)),
          size: Number(x.size),
          type: String(x.type),
          visibility: "public",
        };
        if (!Number.isSafeInteger(obj.size) || obj.size < 0) continue;
        next.all.push(obj);
        next.byName.set(obj.name!, obj);
        next.byCid.set(obj.cid.toString(), obj);
      } catch {
        // an entry the gateway cannot use is left out
      }
    }
    return next;
  };

  const current = async (): Promise<Listing> => {
    if (listing && Date.now() - listing.at < listMs) return listing;
    loading ??= load().then((l) => (listing = l)).finally(() => (loading = undefined));
    try {
      return await loading;
    } catch (err) {
      // The agent is away: what was public a moment ago still is, for a little while.
      if (listing && Date.now() - listing.at < 30 * listMs) return listing;
      throw err;
    }
  };

  return {
    byName: async (name) => (await current()).byName.get(name),
    byCid: async (cid: CID) => (await current()).byCid.get(cid.toString()),
    list: async () => (await current()).all,
    async *read(cid, range) {
      if (range && range.length === 0) return;
      const headers: Record<string, string> = range
        ? { range: `bytes=${range.offset}-${range.offset + range.length - 1}` }
        : {};
      const res = await ask(`/${cid}`, { headers });
      if (res.status === 404) {
        await res.body?.cancel();
        throw new NotFoundError(`No holder reachable has ${cid}`);
      }
      if (!(range ? res.status === 206 : res.status === 200) || !res.body) {
        await res.body?.cancel();
        throw unreachable(`the agent answered ${res.status} for ${cid}`);
      }
      for await (const chunk of res.body) yield chunk;
    },
  };
}
