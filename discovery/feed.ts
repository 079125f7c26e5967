/**
 * The discovery feed: RSS 2.0 with the `urn:truecloud:discovery:1` extension, one item per VPN
 * record, a random selection per request (`docs/protocol/discovery.md`).
 *
 * XML is built with `fast-xml-parser`'s builder, which escapes every value. Each record's `<item>`
 * is built once and cached by its JWS; a request only samples and joins cached fragments, which
 * keeps the per-request cost to a few microseconds.
 *
 * @module
 */

import { XMLBuilder } from "fast-xml-parser";
import type { StoredRecord } from "./store.ts";

/** XML namespace of the record fields in the feed. */
export const DISCOVERY_NS = "urn:truecloud:discovery:1";
/** Largest `count` a feed request may ask for. */
export const MAX_FEED_COUNT = 100;
/** `count` when a request does not give one. */
export const DEFAULT_FEED_COUNT = 20;

const builder = new XMLBuilder({
  ignoreAttributes: false,
  attributeNamePrefix: "@_",
  suppressEmptyNode: true,
  format: false,
});

/**
 * Formats seconds since the epoch as RFC 3339 UTC without fractions.
 * @param s Seconds.
 */
export function rfc3339(s: number): string {
  return new Date(s * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/**
 * Formats seconds since the epoch as an RFC 822 date, as RSS 2.0 wants.
 * @param s Seconds.
 */
export function rfc822(s: number): string {
  return new Date(s * 1000).toUTCString();
}

/**
 * Picks `k` distinct elements uniformly at random, in random order (partial Fisher–Yates).
 * @param items The population; not modified.
 * @param k How many to pick; all of them when `k >= items.length`.
 * @param random A source of uniform numbers in [0, 1).
 * @returns A new array.
 */
export function sample<T>(items: readonly T[], k: number, random: () => number = Math.random): T[] {
  const a = items.slice();
  const n = Math.min(k, a.length);
  for (let i = 0; i < n; i++) {
    const j = i + Math.floor(random() * (a.length - i));
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
  a.length = n;
  return a;
}

/** Options for {@linkcode FeedRenderer}. */
export interface FeedOptions {
  /** Absolute base URL of the discovery routes, such as `https://127.0.0.1:8443/discovery`, or a
   * function returning it (read at the first render, for servers that learn their port late). */
  baseUrl: string | (() => string);
  /** Minutes a reader may cache the feed (RSS `<ttl>`); default 1. */
  ttlMinutes?: number;
  /** A source of uniform numbers in [0, 1), for the selection. */
  random?: () => number;
}

/**
 * Renders the feed from stored records.
 *
 * @example
 * ```ts
 * import { FeedRenderer } from "./feed.ts";
 * const feed = new FeedRenderer({ baseUrl: "https://127.0.0.1:8443/discovery" });
 * console.log(feed.render([], 20).startsWith("<?xml"));
 * ```
 */
export class FeedRenderer {
  readonly #baseOption: string | (() => string);
  #baseUrl?: string;
  readonly #ttl: number;
  readonly #random: () => number;
  #items = new Map<string, string>();
  #head = new Map<number, string>();

  /** @param options Base URL, cache time and randomness. */
  constructor(options: FeedOptions) {
    this.#baseOption = options.baseUrl;
    this.#ttl = options.ttlMinutes ?? 1;
    this.#random = options.random ?? Math.random;
  }

  get #base(): string {
    if (this.#baseUrl === undefined) {
      const b = typeof this.#baseOption === "string" ? this.#baseOption : this.#baseOption();
      this.#baseUrl = b.replace(/\/+$/, "");
    }
    return this.#baseUrl;
  }

  /**
   * The `<item>` of one record.
   * @param r A stored soliciting record.
   * @returns The XML fragment.
   */
  item(r: StoredRecord): string {
    let xml = this.#items.get(r.jws);
    if (xml !== undefined) return xml;
    if (r.data.state !== "soliciting") throw new TypeError("Only soliciting records have items");
    const d = r.data;
    xml = builder.build({
      item: {
        title: `VPN ${d.vpn}`,
        guid: {
          "#text": `urn:truecloud:vpn-record:${d.vpn}:${r.guardian}:${r.issuedAt}`,
          "@_isPermaLink": "false",
        },
        link: `${this.#base}/vpns/${d.vpn}`,
        pubDate: rfc822(r.issuedAt),
        description: `Management VPN ${d.vpn} takes members through guardian ${r.guardian} at ${
          d.ips.join(", ")
        } port ${d.guestPort}`,
        "tc:vpn": d.vpn,
        "tc:ip": d.ips,
        "tc:guestPort": d.guestPort,
        "tc:guestKey": d.guestKey,
        "tc:guardian": r.guardian,
        "tc:issued": rfc3339(r.issuedAt),
        "tc:expires": rfc3339(r.expiresAt),
        "tc:signature": r.jws,
      },
    }) as string;
    if (this.#items.size > 10_000) this.#items.clear();
    this.#items.set(r.jws, xml);
    return xml;
  }

  #channelHead(lastBuild: number): string {
    let head = this.#head.get(lastBuild);
    if (head !== undefined) return head;
    const marker = "\u0000items\u0000";
    const doc = builder.build({
      "?xml": { "@_version": "1.0", "@_encoding": "UTF-8" },
      rss: {
        "@_version": "2.0",
        "@_xmlns:tc": DISCOVERY_NS,
        "@_xmlns:atom": "http://www.w3.org/2005/Atom",
        channel: {
          title: "True Cloud: management VPNs soliciting members",
          link: `${this.#base}/feed.rss`,
          description:
            "Signed records of management VPNs that take new members. Verify each tc:signature before use.",
          language: "en",
          generator: "True Cloud discovery",
          ttl: this.#ttl,
          ...(lastBuild > 0 ? { lastBuildDate: rfc822(lastBuild) } : {}),
          "atom:link": {
            "@_href": `${this.#base}/feed.rss`,
            "@_rel": "self",
            "@_type": "application/rss+xml",
          },
          "#text": marker,
        },
      },
    }) as string;
    head = doc.slice(0, doc.indexOf(marker));
    if (this.#head.size > 64) this.#head.clear();
    this.#head.set(lastBuild, head);
    return head;
  }

  /**
   * Renders a feed of a random selection of `count` records.
   * @param visible The visible records to choose from.
   * @param count How many items at most.
   * @returns The RSS document.
   */
  render(visible: readonly StoredRecord[], count: number): string {
    const chosen = sample(visible, count, this.#random);
    let lastBuild = 0;
    for (const r of visible) if (r.issuedAt > lastBuild) lastBuild = r.issuedAt;
    // Joined, not concatenated with +=: join makes a flat string, which Deno hands to the network
    // a few microseconds faster than the rope that += builds (measured here).
    const parts = [this.#channelHead(lastBuild)];
    for (const r of chosen) parts.push(this.item(r));
    parts.push("</channel></rss>");
    return parts.join("");
  }
}
