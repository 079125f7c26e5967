/**
 * The subscriber's side of the discovery feed: parses the RSS, verifies every record's signature
 * offline, and checks that the readable fields agree with the signed ones.
 *
 * @module
 */

import { XMLParser } from "fast-xml-parser";
import { type Clock, systemClock, TrueCloudError, ValidationError } from "../protocol/mod.ts";
import { DISCOVERY_NS, rfc3339 } from "./feed.ts";
import { type SolicitingData, verifyVpnRecord } from "./record.ts";

/** A feed item whose record verified. */
export interface FeedRecord {
  /** The guardian's node id. */
  guardian: string;
  /** The verified, soliciting record data. */
  data: SolicitingData;
  /** Time of issue, seconds. */
  issuedAt: number;
  /** Expiry, seconds. */
  expiresAt: number;
  /** The compact JWS. */
  jws: string;
}

/** The result of reading a feed. */
export interface FeedReadResult {
  /** Items whose records verified and agree with their readable fields. */
  records: FeedRecord[];
  /** Items refused, with the reason. */
  rejected: { index: number; code: string; message: string }[];
}

/** Options for {@linkcode readFeed}. */
export interface ReadFeedOptions {
  /** Time source. */
  clock?: Clock;
  /** Accept non-public addresses (the local cloud). */
  allowPrivateAddresses?: boolean;
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: "@_",
  parseTagValue: false,
  isArray: (name) => name === "item" || name.endsWith(":ip"),
  processEntities: true,
  htmlEntities: false,
});

function text(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (v && typeof v === "object" && "#text" in v) {
    return String((v as { "#text": unknown })["#text"]);
  }
  return undefined;
}

/**
 * Reads a discovery feed and verifies every item offline.
 *
 * Items are refused (not thrown) one by one; the whole feed is refused only when it is not an RSS
 * 2.0 document or does not declare the discovery namespace.
 *
 * @param xml The feed document.
 * @param options Clock and address policy.
 * @returns The verified records and the refused items.
 * @throws {ValidationError} When the document is not a discovery feed.
 */
export async function readFeed(
  xml: string,
  options: ReadFeedOptions = {},
): Promise<FeedReadResult> {
  let doc: Record<string, unknown>;
  try {
    doc = parser.parse(xml, true);
  } catch (cause) {
    throw new ValidationError("Feed is not well-formed XML", { code: "malformed", cause });
  }
  const rss = doc.rss as Record<string, unknown> | undefined;
  if (!rss || rss["@_version"] !== "2.0") {
    throw new ValidationError("Feed is not RSS 2.0", { code: "malformed" });
  }
  const prefix = Object.entries(rss).find(([k, v]) =>
    k.startsWith("@_xmlns:") && v === DISCOVERY_NS
  )
    ?.[0].slice("@_xmlns:".length);
  if (!prefix) {
    throw new ValidationError(`Feed does not declare ${DISCOVERY_NS}`, { code: "malformed" });
  }
  const channel = rss.channel as Record<string, unknown> | undefined;
  const items = (channel?.item ?? []) as Record<string, unknown>[];
  const clock = options.clock ?? systemClock;
  const result: FeedReadResult = { records: [], rejected: [] };
  for (let index = 0; index < items.length; index++) {
    const item = items[index];
    const f = (name: string) => text(item[`${prefix}:${name}`]);
    try {
      const jws = f("signature");
      if (!jws) throw new ValidationError("Item has no signature", { code: "malformed" });
      const rec = await verifyVpnRecord(jws.trim(), {
        clock,
        allowPrivateAddresses: options.allowPrivateAddresses,
      });
      if (rec.data.state !== "soliciting") {
        throw new ValidationError("Item's record is not soliciting", { code: "invalid" });
      }
      const d = rec.data;
      const ips = ((item[`${prefix}:ip`] ?? []) as unknown[]).map(text);
      const agrees = f("vpn") === d.vpn && f("guardian") === rec.issuer &&
        f("guestPort") === String(d.guestPort) && f("guestKey") === d.guestKey &&
        f("issued") === rfc3339(rec.issuedAt) && f("expires") === rfc3339(rec.expiresAt) &&
        ips.length === d.ips.length && ips.every((ip, i) => ip === d.ips[i]);
      if (!agrees) {
        throw new ValidationError("Item's fields differ from its signed record", {
          code: "mismatch",
        });
      }
      result.records.push({
        guardian: rec.issuer,
        data: d,
        issuedAt: rec.issuedAt,
        expiresAt: rec.expiresAt,
        jws: rec.jws,
      });
    } catch (err) {
      if (!(err instanceof TrueCloudError)) throw err;
      result.rejected.push({ index, code: err.code, message: err.message });
    }
  }
  return result;
}
