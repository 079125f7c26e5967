/**
 * The error body every True Cloud HTTP API answers with, and how errors map to it.
 *
 * `{"error":{"code":"signature_invalid","message":"Envelope signature does not verify"}}`
 *
 * @module
 */

import { concatBytes } from "./bytes.ts";
import { TooLargeError, TrueCloudError } from "./errors.ts";

/** The JSON body of an error answer. */
export interface ErrorBody {
  error: {
    /** Stable machine-readable code. */
    code: string;
    /** Human-readable reason. */
    message: string;
  };
}

/**
 * Maps any error to an HTTP status and error body. A {@linkcode TrueCloudError} with a status keeps
 * it; anything else is a 500 whose message reveals nothing of the cause.
 *
 * @param err The error caught.
 * @returns The status and the body.
 */
export function toHttpError(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof TrueCloudError && err.status !== undefined) {
    return { status: err.status, body: { error: { code: err.code, message: err.message } } };
  }
  return { status: 500, body: { error: { code: "internal", message: "Internal error" } } };
}

/**
 * A handler for the other methods of a route: answers 405 with an `Allow` header, through the
 * root app's error handler.
 *
 * @param allow The methods the route takes, such as `GET, HEAD`.
 * @returns A Hono-style handler.
 *
 * @example
 * ```ts ignore
 * app.get("/feed.rss", feed).all("/feed.rss", methodNotAllowed("GET, HEAD"));
 * ```
 */
export function methodNotAllowed(
  allow: string,
): (c: { req: { method: string }; header(name: string, value: string): void }) => never {
  return (c) => {
    c.header("allow", allow);
    throw new TrueCloudError(`Method ${c.req.method} is not allowed here; use ${allow}`, {
      code: "method_not_allowed",
      status: 405,
    });
  };
}

/**
 * Reads a response body as text, refusing one larger than a limit (a peer or a server we fetch
 * from must not be able to exhaust our memory).
 *
 * @param res The response.
 * @param maxBytes The largest body accepted.
 * @returns The body as text.
 * @throws {TooLargeError} When the body is larger than `maxBytes`; the rest is not read.
 */
export async function readTextLimited(res: Response, maxBytes: number): Promise<string> {
  const declared = Number(res.headers.get("content-length") ?? NaN);
  if (declared > maxBytes) {
    await res.body?.cancel();
    throw new TooLargeError(`Response of ${declared} bytes is over the limit of ${maxBytes}`);
  }
  if (!res.body) return "";
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of res.body) {
    total += chunk.length;
    if (total > maxBytes) {
      await res.body.cancel().catch(() => {});
      throw new TooLargeError(`Response is over the limit of ${maxBytes} bytes`);
    }
    chunks.push(chunk);
  }
  return new TextDecoder().decode(concatBytes(chunks));
}

/**
 * Escapes text for HTML element content and attribute values.
 * @param text Any text.
 */
export function escapeHtml(text: string): string {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!,
  );
}

/**
 * Tells whether an `If-None-Match` header matches an entity tag (weak comparison, RFC 9110 §13.1.2).
 * @param header The header value, if any.
 * @param etag The current strong ETag, quoted.
 */
export function etagMatches(header: string | null | undefined, etag: string): boolean {
  if (!header) return false;
  return header.trim() === "*" ||
    header.split(/\s*,\s*/).map((t) => t.replace(/^W\//, "")).includes(etag);
}

/** A byte range, inclusive. */
export interface ByteRange {
  /** First byte. */
  start: number;
  /** Last byte. */
  end: number;
}

/** Most ranges in one request; more are answered with the whole representation. */
export const MAX_RANGES = 16;

/**
 * Parses a `Range` header (RFC 9110 §14.2) against a representation's size.
 * @param header The header value.
 * @param size The size in bytes.
 * @returns The satisfiable ranges, `"unsatisfiable"` when there is none, or `undefined` when the
 * header is to be ignored (not bytes, malformed, too many ranges) and the whole sent.
 */
export function parseRanges(
  header: string,
  size: number,
): ByteRange[] | "unsatisfiable" | undefined {
  const m = /^bytes=(.+)$/.exec(header.trim());
  if (!m) return undefined;
  const parts = m[1].split(",").map((p) => p.trim());
  if (parts.length > MAX_RANGES) return undefined;
  const spans: ByteRange[] = [];
  for (const p of parts) {
    const r = /^(\d{0,15})-(\d{0,15})$/.exec(p);
    if (!r || (r[1] === "" && r[2] === "")) return undefined;
    if (r[1] === "") {
      const n = Number(r[2]);
      if (n > 0 && size > 0) spans.push({ start: Math.max(0, size - n), end: size - 1 });
      continue;
    }
    const start = Number(r[1]);
    if (r[2] !== "" && Number(r[2]) < start) return undefined;
    if (start >= size) continue;
    spans.push({ start, end: r[2] === "" ? size - 1 : Math.min(Number(r[2]), size - 1) });
  }
  return spans.length ? spans : "unsatisfiable";
}

/** Why a request to a host-only service was refused. */
export interface HostOnlyRefusal {
  /** 421 for a Host that is not the service's, 403 for a request from another site. */
  status: 421 | 403;
  code: "bad_host" | "cross_origin" | "cross_site";
  message: string;
}

const LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]"];

/**
 * Checks a request to a service that answers this host's own browser and tools only, on a
 * loopback port: its Host must be one of the service's own loopback names (a DNS-rebinding page
 * carries its own name), and a browser request must not come from another site — a page on another
 * loopback port is same-site, and refused too.
 * @param headers The request's headers.
 * @param port The port the service listens on.
 * @param service What to call it in the message, such as "The CFS UI".
 * @returns Why it is refused, or `undefined` when it may be served.
 */
export function hostOnlyRefusal(
  headers: Headers,
  port: number,
  service: string,
): HostOnlyRefusal | undefined {
  const shown = (v: string) => JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}…` : v);
  const host = headers.get("host");
  if (!host) {
    return {
      status: 421,
      code: "bad_host",
      message: `The request has no Host header; use http://127.0.0.1:${port}`,
    };
  }
  const hosts = LOOPBACK_NAMES.flatMap((n) => port === 80 ? [`${n}:80`, n] : [`${n}:${port}`]);
  if (!hosts.includes(host.toLowerCase())) {
    return {
      status: 421,
      code: "bad_host",
      message: `${service} answers only to 127.0.0.1:${port}, localhost:${port} or ` +
        `[::1]:${port}, not Host ${shown(host)}`,
    };
  }
  const origin = headers.get("origin");
  if (origin !== null && !hosts.map((h) => `http://${h}`).includes(origin.toLowerCase())) {
    return {
      status: 403,
      code: "cross_origin",
      message: `Requests from other sites (origin ${shown(origin)}) are not allowed`,
    };
  }
  const site = headers.get("sec-fetch-site");
  if (site !== null && site !== "same-origin" && site !== "none") {
    return {
      status: 403,
      code: "cross_site",
      message: `Requests from other sites (${shown(site)}) are not allowed`,
    };
  }
  return undefined;
}
