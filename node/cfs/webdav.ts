/**
 * The Cloud File System's WebDAV endpoint (RFC 4918 classes 1 and 2): what operating systems mount
 * to see the user's files. It listens on the host's loopback only, refuses requests addressed to
 * any other host name (DNS rebinding) and browser requests from other sites. The behaviour is
 * specified in `docs/protocol/files.md`.
 *
 * @example
 * ```ts ignore
 * const dav = serveWebDav(files, { hostname: "127.0.0.1", port: 8080 });
 * console.log(`Mount ${dav.url}`);
 * await dav.close();
 * ```
 *
 * @module
 */

import { Hono } from "hono";
import {
  type Clock,
  discardLogger,
  escapeHtml,
  hostOnlyRefusal,
  type Logger,
  parseRanges,
  systemClock,
  TrueCloudError,
  ValidationError,
} from "../../protocol/mod.ts";
import {
  buildXml,
  childrenNamed,
  DAV,
  echoElement,
  parseXml,
  type XmlElement,
  type XmlTree,
} from "./_xml.ts";
import {
  checkName,
  type EtagCondition,
  FileError,
  type FileInfo,
  type FileStore,
  joinPath,
} from "./files.ts";

/** Settings of {@linkcode createWebDavApp}. */
export interface WebDavOptions {
  /** The port the app is served on: requests must be addressed to it. */
  port: number;
  /** Where to log failures (nothing by default). */
  log?: Logger;
  /** Reads time for lock timeouts. */
  clock?: Clock;
  /** Longest lock, in seconds (default 3600); longer or infinite requests get this. */
  maxLockSeconds?: number;
  /** Lock timeout when the client asks for none, in seconds (default 600). */
  defaultLockSeconds?: number;
  /** Largest XML request body, in bytes (default 1 MiB). */
  maxXmlBytes?: number;
  /** Most locks held at once (default 10,000). */
  maxLocks?: number;
}

const METHODS =
  "OPTIONS, GET, HEAD, PUT, DELETE, PROPFIND, PROPPATCH, MKCOL, COPY, MOVE, LOCK, UNLOCK";
const T_NS = "urn:x-truecloud:files";
const MAX_OWNER_CHARS = 4096;

/** An answer other than success, with its status, a code, a reason and an RFC 4918 condition. */
class DavError extends TrueCloudError {
  /** A DAV precondition element name, such as `propfind-finite-depth`, with its content. */
  readonly condition?: [string, XmlTree | string];
  readonly headers: Record<string, string>;
  constructor(
    status: number,
    code: string,
    message: string,
    condition?: [string, XmlTree | string],
    headers: Record<string, string> = {},
  ) {
    super(message, { code, status });
    this.condition = condition;
    this.headers = headers;
  }
}

// ---- paths and URLs ----

interface Target {
  names: string[];
  path: string;
}

/** The path part of a URL exactly as sent (no dot-segment removal). */
function rawPathOf(url: string): string {
  const m = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*([^?#]*)/i.exec(url);
  return m?.[1] || "/";
}

/** Decodes a request path: percent-decoded names, each checked. */
function decodePath(raw: string): Target {
  if (!raw.startsWith("/")) throw new DavError(400, "invalid", "A path must start with /");
  if (raw.length > 3 * 4096 + 1) throw new DavError(414, "invalid", "The path is too long");
  const parts = raw === "/" ? [] : (raw.endsWith("/") ? raw.slice(1, -1) : raw.slice(1)).split("/");
  const names = parts.map((p) => {
    let name: string;
    try {
      name = decodeURIComponent(p);
    } catch {
      throw new DavError(
        400,
        "invalid",
        `The path segment ${p.slice(0, 64)} is not valid UTF-8 percent-encoding`,
      );
    }
    try {
      checkName(name);
    } catch (err) {
      throw new DavError(400, "invalid", (err as Error).message);
    }
    return name;
  });
  const path = joinPath(names);
  if (new TextEncoder().encode(path).length > 4096) {
    throw new DavError(400, "invalid", "A path may have at most 4096 bytes");
  }
  return { names, path };
}

/** The percent-encoded href of a resource; collections end with `/`. */
function hrefOf(names: readonly string[], dir: boolean): string {
  return "/" + names.map(encodeURIComponent).join("/") + (dir && names.length ? "/" : "");
}

function parentOf(names: readonly string[]): string[] {
  return names.slice(0, -1);
}

function isPrefix(a: readonly string[], b: readonly string[]): boolean {
  return a.length <= b.length && a.every((n, i) => b[i] === n);
}

// ---- locks ----

interface Lock {
  token: string;
  root: string[];
  depth: "0" | "infinity";
  owner?: XmlElement;
  seconds: number;
  expires: number;
}

/** Exclusive write locks in memory, expiring by their timeouts. */
class LockTable {
  #locks = new Map<string, Lock>();
  readonly #clock: Clock;
  readonly #max: number;

  constructor(clock: Clock, max: number) {
    this.#clock = clock;
    this.#max = max;
  }

  all(): Lock[] {
    const now = this.#clock.now();
    for (const [t, l] of this.#locks) if (l.expires <= now) this.#locks.delete(t);
    return [...this.#locks.values()];
  }

  get(token: string): Lock | undefined {
    return this.all().find((l) => l.token === token);
  }

  /** Locks that cover a resource: on it, or deep on an ancestor. */
  covering(names: readonly string[]): Lock[] {
    return this.all().filter((l) =>
      l.root.length === names.length
        ? isPrefix(l.root, names)
        : isPrefix(l.root, names) && l.depth === "infinity"
    );
  }

  /** Locks whose root is a resource. */
  rootedAt(names: readonly string[]): Lock[] {
    return this.all().filter((l) => l.root.length === names.length && isPrefix(l.root, names));
  }

  /** Locks on a resource or anything under it. */
  within(names: readonly string[]): Lock[] {
    return this.all().filter((l) => isPrefix(names, l.root));
  }

  add(lock: Omit<Lock, "token" | "expires">): Lock {
    if (this.all().length >= this.#max) {
      throw new DavError(503, "too_many_locks", `No more than ${this.#max} locks may be held`);
    }
    const full: Lock = {
      ...lock,
      token: `urn:uuid:${crypto.randomUUID()}`,
      expires: this.#clock.now() + lock.seconds * 1000,
    };
    this.#locks.set(full.token, full);
    return full;
  }

  refresh(lock: Lock, seconds: number): void {
    lock.seconds = seconds;
    lock.expires = this.#clock.now() + seconds * 1000;
  }

  remove(token: string): void {
    this.#locks.delete(token);
  }

  removeWithin(names: readonly string[]): void {
    for (const l of this.within(names)) this.#locks.delete(l.token);
  }

  remaining(lock: Lock): number {
    return Math.max(0, Math.ceil((lock.expires - this.#clock.now()) / 1000));
  }
}

// ---- the If header (RFC 4918 §10.4) ----

interface Condition {
  not: boolean;
  token?: string;
  etag?: string;
}

interface IfList {
  /** The tagged resource, or undefined for the request's. */
  resource?: string;
  conditions: Condition[];
}

function parseIf(header: string): IfList[] {
  const lists: IfList[] = [];
  let resource: string | undefined;
  let i = 0;
  const fail = (): never => {
    throw new DavError(400, "bad_if", "The If header is malformed");
  };
  const until = (end: string) => {
    const j = header.indexOf(end, i + 1);
    if (j < 0) fail();
    const s = header.slice(i + 1, j);
    i = j + 1;
    return s;
  };
  while (i < header.length) {
    const ch = header[i];
    if (ch === " " || ch === "\t") i++;
    else if (ch === "<") resource = until(">");
    else if (ch === "(") {
      i++;
      const conditions: Condition[] = [];
      for (;;) {
        while (header[i] === " " || header[i] === "\t") i++;
        if (i >= header.length) fail();
        if (header[i] === ")") {
          i++;
          break;
        }
        let not = false;
        if (/^not\b/i.test(header.slice(i))) {
          not = true;
          i += 3;
          while (header[i] === " " || header[i] === "\t") i++;
        }
        if (header[i] === "<") conditions.push({ not, token: until(">") });
        else if (header[i] === "[") conditions.push({ not, etag: until("]") });
        else fail();
      }
      if (conditions.length === 0) fail();
      lists.push({ resource, conditions });
    } else fail();
  }
  if (lists.length === 0) fail();
  return lists;
}

// ---- properties ----

const CONTENT_TYPES: Record<string, string> = {
  txt: "text/plain; charset=utf-8",
  md: "text/markdown; charset=utf-8",
  html: "text/html; charset=utf-8",
  htm: "text/html; charset=utf-8",
  css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  json: "application/json",
  xml: "application/xml",
  csv: "text/csv; charset=utf-8",
  pdf: "application/pdf",
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  svg: "image/svg+xml",
  mp3: "audio/mpeg",
  mp4: "video/mp4",
  webm: "video/webm",
  zip: "application/zip",
  gz: "application/gzip",
  tar: "application/x-tar",
};

function contentTypeOf(name: string): string {
  const dot = name.lastIndexOf(".");
  return (dot > 0 && CONTENT_TYPES[name.slice(dot + 1).toLowerCase()]) ||
    "application/octet-stream";
}

/** Live properties returned by allprop, in order (and the quotas, on collections). */
const ALLPROP = [
  "resourcetype",
  "getcontentlength",
  "getlastmodified",
  "creationdate",
  "getetag",
  "getcontenttype",
  "displayname",
  "supportedlock",
  "lockdiscovery",
];
const NAMED_ONLY = ["quota-available-bytes", "quota-used-bytes"];

// ---- the app ----

interface Ctx {
  req: Request;
  method: string;
  target: Target;
  /** Lock tokens submitted in an If header whose list held. */
  tokens: Set<string>;
}

/** What a PROPFIND asks for. */
type PropRequest =
  | { kind: "allprop"; include: XmlElement[] }
  | { kind: "propname" }
  | { kind: "prop"; props: XmlElement[] };

/** The endpoint's state and its handling of each method. */
class WebDav {
  readonly #files: FileStore;
  readonly #log: Logger;
  readonly #locks: LockTable;
  readonly #maxLock: number;
  readonly #defaultLock: number;
  readonly #maxXml: number;
  readonly #port: number;
  readonly #hosts: Set<string>;

  constructor(files: FileStore, opts: WebDavOptions) {
    const port = opts.port;
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new ValidationError(`The WebDAV port ${port} is not a port number`);
    }
    this.#files = files;
    this.#log = opts.log ?? discardLogger;
    this.#maxLock = opts.maxLockSeconds ?? 3600;
    this.#defaultLock = Math.min(opts.defaultLockSeconds ?? 600, this.#maxLock);
    this.#maxXml = opts.maxXmlBytes ?? 1 << 20;
    this.#locks = new LockTable(opts.clock ?? systemClock, opts.maxLocks ?? 10_000);
    this.#port = port;
    // The names Destination headers may use (this endpoint's own).
    this.#hosts = new Set([`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`]);
    if (port === 80) { for (const h of ["127.0.0.1", "localhost", "[::1]"]) this.#hosts.add(h); }
  }

  /** Answers one request. */
  async handle(req: Request): Promise<Response> {
    const method = req.method.toUpperCase();
    try {
      this.#guard(req);
      if (method === "OPTIONS") return this.#options();
      const target = decodePath(rawPathOf(req.url));
      const tokens = await this.#evaluateIf(req, target);
      const ctx: Ctx = { req, method, target, tokens };
      switch (method) {
        case "GET":
        case "HEAD":
          return await this.#get(ctx);
        case "PUT":
          return await this.#put(ctx);
        case "DELETE":
          return await this.#del(ctx);
        case "MKCOL":
          return await this.#mkcol(ctx);
        case "COPY":
        case "MOVE":
          return await this.#transfer(ctx);
        case "PROPFIND":
          return await this.#propfind(ctx);
        case "PROPPATCH":
          return await this.#proppatch(ctx);
        case "LOCK":
          return await this.#lock(ctx);
        case "UNLOCK":
          return this.#unlock(ctx);
      }
      throw new DavError(
        405,
        "method_not_allowed",
        `Method ${method.slice(0, 32)} is not supported`,
        undefined,
        {
          allow: METHODS,
        },
      );
    } catch (err) {
      await req.body?.cancel().catch(() => {});
      return this.#errorResponse(err, method);
    }
  }

  // ---- request helpers ----

  #guard(req: Request) {
    const no = hostOnlyRefusal(req.headers, this.#port, "This WebDAV endpoint");
    if (no) throw new DavError(no.status, no.code, no.message);
  }

  async #stat(names: readonly string[]): Promise<FileInfo | undefined> {
    try {
      return await this.#files.stat(joinPath(names));
    } catch (err) {
      if (
        err instanceof FileError && (err.code === "not_found" || err.code === "not_a_directory")
      ) {
        return undefined;
      }
      throw err;
    }
  }

  async #readBody(req: Request): Promise<string> {
    if (!req.body) return "";
    const declared = Number(req.headers.get("content-length") ?? NaN);
    if (declared > this.#maxXml) {
      await req.body.cancel().catch(() => {});
      throw new DavError(413, "too_large", `An XML body may have at most ${this.#maxXml} bytes`);
    }
    const parts: Uint8Array[] = [];
    let total = 0;
    for await (const part of req.body) {
      total += part.length;
      if (total > this.#maxXml) {
        throw new DavError(413, "too_large", `An XML body may have at most ${this.#maxXml} bytes`);
      }
      parts.push(part);
    }
    const all = new Uint8Array(total);
    let at = 0;
    for (const p of parts) (all.set(p, at), at += p.length);
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(all);
    } catch {
      throw new DavError(400, "bad_xml", "The body is not UTF-8");
    }
  }

  async #xmlBody(req: Request): Promise<XmlElement | undefined> {
    const text = await this.#readBody(req);
    if (text.trim() === "") return undefined;
    try {
      return parseXml(text);
    } catch (err) {
      if (err instanceof ValidationError) throw new DavError(400, "bad_xml", err.message);
      throw err;
    }
  }

  #depthOf(req: Request, allowed: readonly string[], absent: string): string {
    const d = (req.headers.get("depth") ?? absent).trim().toLowerCase();
    if (!allowed.includes(d)) {
      throw new DavError(
        400,
        "bad_depth",
        `Depth must be ${allowed.join(" or ")} here, not ${d.slice(0, 32)}`,
      );
    }
    return d;
  }

  /** Resolves a URL or absolute path to a target on this server. */
  #targetOfUrl(url: string): Target {
    let raw = url;
    const m = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)(.*)$/i.exec(url);
    if (m) {
      if (m[1].toLowerCase() !== "http" || !this.#hosts.has(m[2].toLowerCase())) {
        throw new DavError(502, "other_server", "The destination is not on this server");
      }
      raw = m[3] || "/";
    }
    return decodePath(raw.replace(/[?#].*$/, ""));
  }

  #requireTokens(needed: readonly Lock[], tokens: Set<string>) {
    const missing = needed.find((l) => !tokens.has(l.token));
    if (missing) {
      throw new DavError(
        423,
        "locked",
        `${joinPath(missing.root)} is locked; the request must submit its lock token`,
        ["lock-token-submitted", { "D:href": hrefOf(missing.root, false) }],
      );
    }
  }

  /** Locks that must be submitted to create or delete a resource (its parent's membership). */
  #membershipLocks(names: readonly string[]) {
    return names.length ? this.#locks.covering(parentOf(names)) : [];
  }

  /** Evaluates the If header; returns the lock tokens submitted by the lists that hold. */
  async #evaluateIf(req: Request, target: Target): Promise<Set<string>> {
    const header = req.headers.get("if");
    const tokens = new Set<string>();
    if (!header) return tokens;
    const lists = parseIf(header);
    let anyTrue = false;
    for (const list of lists) {
      const names = list.resource === undefined
        ? target.names
        : this.#targetOfUrl(list.resource).names;
      const info = await this.#stat(names);
      // A token holds for a resource its lock covers, and for the members of a locked collection
      // (whose creation or removal changes the collection).
      const covering = [
        ...this.#locks.covering(names),
        ...(names.length ? this.#locks.rootedAt(parentOf(names)) : []),
      ];
      const holds = list.conditions.every((cond) => {
        let ok: boolean;
        if (cond.token !== undefined) ok = covering.some((l) => l.token === cond.token);
        else ok = info?.etag !== undefined && info.etag === cond.etag!.replace(/^W\//, "");
        return cond.not ? !ok : ok;
      });
      if (holds) {
        anyTrue = true;
        for (const cond of list.conditions) if (!cond.not && cond.token) tokens.add(cond.token);
      }
    }
    if (!anyTrue) throw new DavError(412, "precondition_failed", "No list of the If header holds");
    return tokens;
  }

  // ---- responses ----

  #xmlResponse(status: number, tree: XmlTree, headers: Record<string, string> = {}) {
    return new Response(buildXml(tree), {
      status,
      headers: { "content-type": "application/xml; charset=utf-8", ...headers },
    });
  }

  #errorResponse(err: unknown, method: string): Response {
    let e: DavError;
    if (err instanceof DavError) e = err;
    else if (err instanceof TrueCloudError && err.status !== undefined) {
      e = new DavError(err.status, err.code, err.message);
    } else {
      this.#log.error("WebDAV request failed", { error: err });
      e = new DavError(500, "internal", "Internal error");
    }
    const headers = {
      "x-reason": e.message.replace(/[^\x20-\x7e]/g, "?").slice(0, 200),
      ...e.headers,
    };
    if (method === "HEAD") return new Response(null, { status: e.status, headers });
    const content: XmlTree = { "@_xmlns:D": DAV, "@_xmlns:T": T_NS };
    if (e.condition) content[`D:${e.condition[0]}`] = e.condition[1];
    content["T:code"] = e.code;
    content["T:reason"] = e.message;
    return this.#xmlResponse(e.status!, { "D:error": content }, headers);
  }

  #activeLock(l: Lock): XmlTree {
    const out: XmlTree = {
      "D:locktype": { "D:write": "" },
      "D:lockscope": { "D:exclusive": "" },
      "D:depth": l.depth === "0" ? "0" : "infinity",
    };
    if (l.owner) {
      const [, owner] = echoElement(l.owner);
      out["D:owner"] = owner;
    }
    out["D:timeout"] = `Second-${this.#locks.remaining(l)}`;
    out["D:locktoken"] = { "D:href": l.token };
    out["D:lockroot"] = { "D:href": hrefOf(l.root, false) };
    return out;
  }

  #propValue(
    name: string,
    info: FileInfo,
    names: string[],
  ): XmlTree | string | undefined {
    const dir = info.type === "directory";
    switch (name) {
      case "resourcetype":
        return dir ? { "D:collection": "" } : "";
      case "getcontentlength":
        return dir ? undefined : String(info.size);
      case "getlastmodified":
        return new Date(info.mtime).toUTCString();
      case "creationdate":
        return new Date(info.ctime).toISOString();
      case "getetag":
        return info.etag;
      case "getcontenttype":
        return dir ? undefined : contentTypeOf(info.name);
      case "displayname":
        return info.name;
      case "supportedlock":
        return {
          "D:lockentry": { "D:lockscope": { "D:exclusive": "" }, "D:locktype": { "D:write": "" } },
        };
      case "lockdiscovery": {
        const active = this.#locks.covering(names).map((l) => this.#activeLock(l));
        return active.length ? { "D:activelock": active } : "";
      }
      case "quota-available-bytes":
        return String(this.#files.usage().freeBytes);
      case "quota-used-bytes":
        return String(this.#files.usage().usedBytes);
    }
    return undefined;
  }

  #propResponse(names: string[], info: FileInfo, want: PropRequest): XmlTree {
    const found: XmlTree = {};
    const missing: XmlTree = {};
    const counter = { next: 0 };
    if (want.kind === "propname") {
      for (const p of [...ALLPROP, ...NAMED_ONLY]) {
        if (this.#propValue(p, info, names) !== undefined) found[`D:${p}`] = "";
      }
    } else {
      const asked = want.kind === "allprop"
        ? [
          ...ALLPROP.map((name) => ({ ns: DAV, name })),
          // RFC 4331 leaves the quotas out of allprop, but common clients read them from it.
          ...(info.type === "directory" ? NAMED_ONLY.map((name) => ({ ns: DAV, name })) : []),
          ...want.include,
        ]
        : want.props;
      const seen = new Set<string>();
      for (const p of asked) {
        const key = `${p.ns} ${p.name}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const value = p.ns === DAV ? this.#propValue(p.name, info, names) : undefined;
        if (value !== undefined) found[`D:${p.name}`] = value;
        else if (
          want.kind === "prop" || p.ns !== DAV ||
          ![...ALLPROP, ...NAMED_ONLY].includes(p.name)
        ) {
          const [k, v] = echoElement(
            { ...(p as XmlElement), children: [], text: "", attrs: {} },
            counter,
          );
          missing[k] = v;
        }
      }
    }
    const propstat: XmlTree[] = [];
    if (Object.keys(found).length) {
      propstat.push({ "D:prop": found, "D:status": "HTTP/1.1 200 OK" });
    }
    if (Object.keys(missing).length) {
      propstat.push({ "D:prop": missing, "D:status": "HTTP/1.1 404 Not Found" });
    }
    return { "D:href": hrefOf(names, info.type === "directory"), "D:propstat": propstat };
  }

  #multistatus(responses: XmlTree[]) {
    return this.#xmlResponse(207, {
      "D:multistatus": { "@_xmlns:D": DAV, "D:response": responses },
    });
  }

  #mapFileError(err: unknown, map: Partial<Record<string, [number, string?]>>): never {
    if (err instanceof FileError && map[err.code]) {
      const [status, message] = map[err.code]!;
      throw new DavError(status, err.code, message ?? err.message);
    }
    throw err;
  }

  // ---- methods ----

  #options(): Response {
    return new Response(null, {
      status: 200,
      headers: { "dav": "1, 2", "ms-author-via": "DAV", "allow": METHODS, "content-length": "0" },
    });
  }

  async #propfind({ req, target }: Ctx): Promise<Response> {
    const depth = this.#depthOf(req, ["0", "1", "infinity"], "infinity");
    if (depth === "infinity") {
      await req.body?.cancel().catch(() => {});
      throw new DavError(
        403,
        "finite_depth",
        "PROPFIND with Depth infinity is not supported; use Depth 0 or 1",
        ["propfind-finite-depth", ""],
      );
    }
    const body = await this.#xmlBody(req);
    let want: PropRequest = { kind: "allprop", include: [] };
    if (body) {
      if (body.ns !== DAV || body.name !== "propfind") {
        throw new DavError(400, "bad_xml", "A PROPFIND body must be a DAV:propfind element");
      }
      const kinds = body.children.filter((c) =>
        c.ns === DAV && ["allprop", "propname", "prop"].includes(c.name)
      );
      if (kinds.length !== 1) {
        throw new DavError(
          400,
          "bad_xml",
          "DAV:propfind must hold one of allprop, propname or prop",
        );
      }
      const k = kinds[0];
      if (k.name === "propname") want = { kind: "propname" };
      else if (k.name === "prop") want = { kind: "prop", props: k.children };
      else {
        want = {
          kind: "allprop",
          include: childrenNamed(body, DAV, "include").flatMap((i) => i.children),
        };
      }
    }
    const info = await this.#stat(target.names);
    if (!info) throw new DavError(404, "not_found", `${target.path} does not exist`);
    const responses = [this.#propResponse(target.names, info, want)];
    if (depth === "1" && info.type === "directory") {
      for (const child of await this.#files.list(target.path)) {
        responses.push(this.#propResponse([...target.names, child.name], child, want));
      }
    }
    return this.#multistatus(responses);
  }

  async #proppatch({ req, target, tokens }: Ctx): Promise<Response> {
    const info = await this.#stat(target.names);
    if (!info) throw new DavError(404, "not_found", `${target.path} does not exist`);
    this.#requireTokens(this.#locks.covering(target.names), tokens);
    const body = await this.#xmlBody(req);
    if (!body || body.ns !== DAV || body.name !== "propertyupdate") {
      throw new DavError(400, "bad_xml", "A PROPPATCH body must be a DAV:propertyupdate element");
    }
    const props = body.children
      .filter((c) => c.ns === DAV && (c.name === "set" || c.name === "remove"))
      .flatMap((c) => childrenNamed(c, DAV, "prop"))
      .flatMap((p) => p.children);
    if (props.length === 0) throw new DavError(400, "bad_xml", "The PROPPATCH names no property");
    const live: XmlTree = {}, dead: XmlTree = {};
    const counter = { next: 0 };
    for (const p of props) {
      const [k, v] = echoElement({ ...p, children: [], text: "", attrs: {} }, counter);
      (p.ns === DAV ? live : dead)[k] = v;
    }
    const propstat: XmlTree[] = [];
    if (Object.keys(live).length) {
      propstat.push({
        "D:prop": live,
        "D:status": "HTTP/1.1 403 Forbidden",
        "D:error": { "D:cannot-modify-protected-property": "" },
        "D:responsedescription": "These properties are computed by the server",
      });
    }
    if (Object.keys(dead).length) {
      propstat.push({
        "D:prop": dead,
        "D:status": "HTTP/1.1 403 Forbidden",
        "D:responsedescription": "This server does not store properties",
      });
    }
    return this.#multistatus([{
      "D:href": hrefOf(target.names, info.type === "directory"),
      "D:propstat": propstat,
    }]);
  }

  async #get({ req, method, target }: Ctx): Promise<Response> {
    for (let attempt = 0;; attempt++) {
      const info = await this.#stat(target.names);
      if (!info) throw new DavError(404, "not_found", `${target.path} does not exist`);
      if (info.type === "directory") return this.#listing(target, method);
      const lastModified = new Date(info.mtime).toUTCString();
      const headers: Record<string, string> = {
        "etag": info.etag!,
        "last-modified": lastModified,
        "accept-ranges": "bytes",
        "content-type": contentTypeOf(info.name),
        // A stored page opened in a browser runs in a sandbox with an opaque origin: it cannot
        // script this endpoint (its requests carry Origin: null, which is refused).
        "content-security-policy": "sandbox",
        "x-content-type-options": "nosniff",
      };
      const ifMatch = parseEtags(req.headers.get("if-match"));
      if (ifMatch && !etagHolds(ifMatch, info)) {
        throw new DavError(
          412,
          "precondition_failed",
          "The file is not at the version asked for (If-Match)",
        );
      }
      const ius = Date.parse(req.headers.get("if-unmodified-since") ?? "");
      if (!ifMatch && !Number.isNaN(ius) && Math.floor(info.mtime / 1000) * 1000 > ius) {
        throw new DavError(
          412,
          "precondition_failed",
          "The file changed since (If-Unmodified-Since)",
        );
      }
      const inm = parseEtags(req.headers.get("if-none-match"));
      const ims = Date.parse(req.headers.get("if-modified-since") ?? "");
      if (
        (inm && etagHolds(inm, info)) ||
        (!inm && !Number.isNaN(ims) && Math.floor(info.mtime / 1000) * 1000 <= ims)
      ) {
        return new Response(null, { status: 304, headers });
      }
      let start = 0, end = info.size; // exclusive
      let status = 200;
      const range = req.headers.get("range");
      const ifRange = req.headers.get("if-range");
      const rangeApplies = range !== null &&
        (ifRange === null || ifRange === info.etag || ifRange === lastModified);
      if (rangeApplies) {
        const spans = parseRanges(range!, info.size);
        if (spans === "unsatisfiable") {
          throw new DavError(
            416,
            "range_not_satisfiable",
            `No range of ${range!.slice(0, 64)} is in the file`,
            undefined,
            {
              "content-range": `bytes */${info.size}`,
            },
          );
        }
        if (spans && spans.length === 1) {
          start = spans[0].start;
          end = spans[0].end + 1;
          status = 206;
          headers["content-range"] = `bytes ${start}-${end - 1}/${info.size}`;
        }
      }
      headers["content-length"] = String(end - start);
      if (method === "HEAD") return new Response(null, { status, headers });
      const { info: now, body } = await this.#files.read(target.path, {
        offset: start,
        length: end - start,
      });
      if (now.etag !== info.etag && attempt < 3) {
        await body.cancel();
        continue; // replaced between stat and read: start over
      }
      return new Response(body, { status, headers });
    }
  }

  async #listing(target: Target, method: string): Promise<Response> {
    const entries = await this.#files.list(target.path);
    const rows = entries.map((e) => {
      const href = hrefOf([...target.names, e.name], e.type === "directory");
      const label = escapeHtml(e.name + (e.type === "directory" ? "/" : ""));
      return `<li><a href="${escapeHtml(href)}">${label}</a>${
        e.type === "file" ? ` ${e.size} bytes` : ""
      }</li>`;
    });
    const html = `<!doctype html><meta charset="utf-8"><title>${escapeHtml(target.path)}</title>` +
      `<h1>${escapeHtml(target.path)}</h1><ul>${rows.join("")}</ul>`;
    const headers = {
      "content-type": "text/html; charset=utf-8",
      "content-security-policy": "default-src 'none'",
      "x-content-type-options": "nosniff",
    };
    return new Response(method === "HEAD" ? null : html, { status: 200, headers });
  }

  async #put({ req, target, tokens }: Ctx): Promise<Response> {
    const discard = () => req.body?.cancel().catch(() => {});
    try {
      if (target.names.length === 0) {
        throw new DavError(405, "is_a_directory", "The root is a collection");
      }
      if (req.headers.has("content-range")) {
        throw new DavError(400, "partial_put", "PUT with Content-Range is not supported");
      }
      const parent = await this.#stat(parentOf(target.names));
      if (!parent || parent.type !== "directory") {
        throw new DavError(409, "conflict", `The parent of ${target.path} is not a collection`);
      }
      const existing = await this.#stat(target.names);
      if (existing?.type === "directory") {
        throw new DavError(405, "is_a_directory", `${target.path} is a collection`);
      }
      this.#requireTokens(
        existing ? this.#locks.covering(target.names) : this.#membershipLocks(target.names),
        tokens,
      );
      const ifMatch = parseEtags(req.headers.get("if-match"));
      const ifNoneMatch = parseEtags(req.headers.get("if-none-match"));
      if (ifMatch && !(existing && etagHolds(ifMatch, existing))) {
        throw new DavError(
          412,
          "precondition_failed",
          "The file is not at the version asked for (If-Match)",
        );
      }
      if (ifNoneMatch && existing && etagHolds(ifNoneMatch, existing)) {
        throw new DavError(
          412,
          "precondition_failed",
          "The file exists at an excluded version (If-None-Match)",
        );
      }
      const result = await this.#files.write(target.path, req.body ?? new Uint8Array(0), {
        ifMatch,
        ifNoneMatch,
      }).catch((err) =>
        this.#mapFileError(err, {
          not_found: [409, `The parent of ${target.path} is not a collection`],
          not_a_directory: [409, `The parent of ${target.path} is not a collection`],
          is_a_directory: [405],
        })
      );
      return new Response(null, {
        status: result.created ? 201 : 204,
        headers: { "etag": result.info.etag!, "content-length": "0" },
      });
    } catch (err) {
      await discard();
      throw err;
    }
  }

  async #del({ req, target, tokens }: Ctx): Promise<Response> {
    this.#depthOf(req, ["infinity"], "infinity");
    if (target.names.length === 0) {
      throw new DavError(403, "forbidden", "The root cannot be deleted");
    }
    if (!await this.#stat(target.names)) {
      throw new DavError(404, "not_found", `${target.path} does not exist`);
    }
    this.#requireTokens([
      ...this.#membershipLocks(target.names),
      ...this.#locks.within(target.names),
    ], tokens);
    await this.#files.delete(target.path, { recursive: true });
    this.#locks.removeWithin(target.names);
    return new Response(null, { status: 204 });
  }

  async #mkcol({ req, target, tokens }: Ctx): Promise<Response> {
    const body = await this.#readBody(req).catch((err) => {
      if (err instanceof DavError && err.status === 413) return "x";
      throw err;
    });
    if (body.length > 0) {
      throw new DavError(415, "unsupported_body", "MKCOL with a body is not supported");
    }
    if (target.names.length === 0 || await this.#stat(target.names)) {
      throw new DavError(405, "exists", `${target.path} exists`, undefined, { allow: METHODS });
    }
    const parent = await this.#stat(parentOf(target.names));
    if (!parent || parent.type !== "directory") {
      throw new DavError(409, "conflict", `The parent of ${target.path} is not a collection`);
    }
    this.#requireTokens(this.#membershipLocks(target.names), tokens);
    await this.#files.mkdir(target.path).catch((err) =>
      this.#mapFileError(err, {
        exists: [405],
        not_found: [409, `The parent of ${target.path} is not a collection`],
        not_a_directory: [409, `The parent of ${target.path} is not a collection`],
      })
    );
    return new Response(null, { status: 201 });
  }

  async #transfer({ req, method, target, tokens }: Ctx): Promise<Response> {
    const destHeader = req.headers.get("destination");
    if (!destHeader) {
      throw new DavError(400, "no_destination", `${method} needs a Destination header`);
    }
    const dest = this.#targetOfUrl(destHeader.trim());
    const ow = (req.headers.get("overwrite") ?? "T").trim().toUpperCase();
    if (ow !== "T" && ow !== "F") {
      throw new DavError(400, "bad_overwrite", "Overwrite must be T or F");
    }
    const info = await this.#stat(target.names);
    if (!info) throw new DavError(404, "not_found", `${target.path} does not exist`);
    const depth = method === "MOVE"
      ? this.#depthOf(req, ["infinity"], "infinity")
      : this.#depthOf(req, ["0", "infinity"], "infinity");
    if (target.names.length === 0) {
      throw new DavError(403, "forbidden", "The root cannot be moved or copied");
    }
    if (dest.path === target.path) {
      throw new DavError(403, "forbidden", "The source and the destination are the same");
    }
    if (isPrefix(target.names, dest.names)) {
      throw new DavError(409, "conflict", `${target.path} cannot go inside itself`);
    }
    if (dest.names.length === 0) {
      throw new DavError(403, "forbidden", "The root cannot be replaced");
    }
    const parent = await this.#stat(parentOf(dest.names));
    if (!parent || parent.type !== "directory") {
      throw new DavError(409, "conflict", `The parent of ${dest.path} is not a collection`);
    }
    const existing = await this.#stat(dest.names);
    if (existing && ow === "F") {
      throw new DavError(412, "precondition_failed", `${dest.path} exists and Overwrite is F`);
    }
    const needed = [
      ...this.#membershipLocks(dest.names),
      ...(existing ? this.#locks.within(dest.names) : []),
    ];
    if (method === "MOVE") {
      needed.push(...this.#membershipLocks(target.names), ...this.#locks.within(target.names));
    }
    this.#requireTokens(needed, tokens);
    const map = {
      exists: [412, `${dest.path} exists and Overwrite is F`] as [number, string],
      not_found: [409, `The parent of ${dest.path} is not a collection`] as [number, string],
    };
    const { replaced } = method === "MOVE"
      ? await this.#files.move(target.path, dest.path, { overwrite: ow === "T" }).catch((e) =>
        this.#mapFileError(e, map)
      )
      : await this.#files.copy(target.path, dest.path, {
        overwrite: ow === "T",
        shallow: depth === "0",
      })
        .catch((e) => this.#mapFileError(e, map));
    if (method === "MOVE") this.#locks.removeWithin(target.names);
    return new Response(null, { status: replaced ? 204 : 201 });
  }

  #timeoutOf(req: Request): number {
    const header = req.headers.get("timeout");
    if (!header) return this.#defaultLock;
    for (const part of header.split(",").map((s) => s.trim())) {
      if (/^infinite$/i.test(part)) return this.#maxLock;
      const m = /^second-(\d{1,12})$/i.exec(part);
      if (m) return Math.max(1, Math.min(Number(m[1]), this.#maxLock));
    }
    throw new DavError(400, "bad_timeout", "Timeout must be Second-n or Infinite");
  }

  #lockAnswer(lock: Lock, status: number) {
    return this.#xmlResponse(status, {
      "D:prop": { "@_xmlns:D": DAV, "D:lockdiscovery": { "D:activelock": this.#activeLock(lock) } },
    }, { "lock-token": `<${lock.token}>` });
  }

  async #lock({ req, target, tokens }: Ctx): Promise<Response> {
    const body = await this.#xmlBody(req);
    const seconds = this.#timeoutOf(req);
    const mine = this.#locks.covering(target.names).filter((l) => tokens.has(l.token));
    if (!body || mine.length) {
      // A refresh: the lock's token is in the If header (and some clients send a body as well).
      if (mine.length === 0) {
        throw new DavError(
          412,
          "precondition_failed",
          "A lock refresh needs the token of a lock on this resource in If",
          [
            "lock-token-matches-request-uri",
            "",
          ],
        );
      }
      for (const l of mine) this.#locks.refresh(l, seconds);
      const answer = this.#lockAnswer(mine[0], 200);
      answer.headers.delete("lock-token");
      return answer;
    }
    const depth = this.#depthOf(req, ["0", "infinity"], "infinity") as "0" | "infinity";
    if (body.ns !== DAV || body.name !== "lockinfo") {
      throw new DavError(400, "bad_xml", "A LOCK body must be a DAV:lockinfo element");
    }
    const scope = childrenNamed(body, DAV, "lockscope")[0]?.children[0];
    const type = childrenNamed(body, DAV, "locktype")[0]?.children[0];
    if (!scope || !type) {
      throw new DavError(400, "bad_xml", "DAV:lockinfo needs a lockscope and a locktype");
    }
    if (scope.ns !== DAV || scope.name !== "exclusive") {
      throw new DavError(422, "unsupported_lock", "Only exclusive this.#locks are supported");
    }
    if (type.ns !== DAV || type.name !== "write") {
      throw new DavError(422, "unsupported_lock", "Only write this.#locks are supported");
    }
    const owner = childrenNamed(body, DAV, "owner")[0];
    if (owner && JSON.stringify(owner).length > MAX_OWNER_CHARS) {
      throw new DavError(
        400,
        "bad_xml",
        `The lock owner may have at most ${MAX_OWNER_CHARS} characters`,
      );
    }
    const conflict = [
      ...this.#locks.covering(target.names),
      ...(depth === "infinity" ? this.#locks.within(target.names) : []),
    ];
    if (conflict.length) {
      throw new DavError(423, "locked", `${joinPath(conflict[0].root)} is locked already`, [
        "no-conflicting-lock",
        { "D:href": hrefOf(conflict[0].root, false) },
      ]);
    }
    let created = false;
    if (!await this.#stat(target.names)) {
      // A lock on an unmapped URL makes an empty file (RFC 4918 §9.10.4).
      if (target.names.length === 0) {
        throw new DavError(409, "conflict", "The root cannot be created");
      }
      const parent = await this.#stat(parentOf(target.names));
      if (!parent || parent.type !== "directory") {
        throw new DavError(409, "conflict", `The parent of ${target.path} is not a collection`);
      }
      this.#requireTokens(this.#membershipLocks(target.names), tokens);
      await this.#files.write(target.path, new Uint8Array(0), { ifNoneMatch: "*" }).catch((err) =>
        this.#mapFileError(err, {
          precondition_failed: [409, `${target.path} was created meanwhile`],
        })
      );
      created = true;
    }
    const made = this.#locks.add({ root: target.names, depth, owner, seconds });
    return this.#lockAnswer(made, created ? 201 : 200);
  }

  #unlock({ req, target }: Ctx): Response {
    const header = req.headers.get("lock-token");
    // RFC 4918 asks for <token>; some clients send the bare token, which is accepted too.
    const m = header ? /^\s*<([^<>\s]+)>\s*$|^\s*([^<>\s]+)\s*$/.exec(header) : null;
    if (!m) throw new DavError(400, "bad_lock_token", "UNLOCK needs a Lock-Token header: <token>");
    const lock = this.#locks.get(m[1] ?? m[2]);
    if (!lock || !this.#locks.covering(target.names).includes(lock)) {
      throw new DavError(409, "lock_mismatch", "No such lock covers this resource", [
        "lock-token-matches-request-uri",
        "",
      ]);
    }
    this.#locks.remove(lock.token);
    return new Response(null, { status: 204 });
  }
}

/**
 * Builds the WebDAV app. Serve it on a loopback address and the given port (see
 * {@linkcode serveWebDav}); it answers every path.
 * @param files The file store to show.
 * @param opts The port it is served on, and limits.
 * @returns The app.
 * @throws {ValidationError} When the port is not a port number.
 */
export function createWebDavApp(files: FileStore, opts: WebDavOptions): Hono {
  const dav = new WebDav(files, opts);
  const app = new Hono();
  app.all("*", (c) => dav.handle(c.req.raw));
  return app;
}

/** Parses an `If-Match` / `If-None-Match` list. */
function parseEtags(header: string | null): EtagCondition | undefined {
  if (header === null) return undefined;
  const h = header.trim();
  if (h === "*") return "*";
  const tags = h.split(",").map((t) => t.trim().replace(/^W\//, "")).filter((t) => t !== "");
  if (tags.length === 0 || tags.some((t) => !/^"[^"]*"$/.test(t))) {
    throw new DavError(400, "bad_etag", "An entity-tag list is malformed");
  }
  return tags;
}

function etagHolds(cond: EtagCondition, info: FileInfo): boolean {
  return cond === "*" || (info.etag !== undefined && cond.includes(info.etag));
}

/** Options of {@linkcode serveWebDav}. */
export interface ServeWebDavOptions extends Omit<WebDavOptions, "port"> {
  /** A loopback address: `127.0.0.1` (or another 127.x address) or `::1`. */
  hostname: string;
  /** Port; 0 or absent picks a free one. */
  port?: number;
}

/** A running WebDAV endpoint. */
export interface WebDavServer {
  /** Its URL, such as `http://127.0.0.1:8080/`. */
  url: string;
  /** The port it listens on. */
  port: number;
  /** Stops it; requests under way finish first. */
  close(): Promise<void>;
}

/**
 * Serves the WebDAV endpoint on a loopback address.
 * @param files The file store to show.
 * @param opts The loopback address, the port, and the app's settings.
 * @returns The running endpoint.
 * @throws {ValidationError} When the hostname is not a loopback address or the port is invalid.
 */
export function serveWebDav(files: FileStore, opts: ServeWebDavOptions): WebDavServer {
  const hostname = opts.hostname;
  const loopback = hostname === "::1" || /^127\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(hostname) &&
      hostname.split(".").every((p) => Number(p) <= 255);
  if (!loopback) {
    throw new ValidationError(
      `The WebDAV endpoint listens on loopback only, not ${String(hostname).slice(0, 64)}`,
      {
        path: "hostname",
      },
    );
  }
  const wanted = opts.port ?? 0;
  if (!Number.isInteger(wanted) || wanted < 0 || wanted > 65535) {
    throw new ValidationError(`The WebDAV port ${wanted} is not a port number`, { path: "port" });
  }
  // The app needs the port, known once listening; requests are answered only after this returns.
  const ready: { app?: Hono } = {};
  const server = Deno.serve(
    { hostname, port: wanted, onListen: () => {} },
    (req) => ready.app ? ready.app.fetch(req) : new Response("Starting", { status: 503 }),
  );
  const port = server.addr.port;
  ready.app = createWebDavApp(files, { ...opts, port });
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${host}:${port}/`,
    port,
    close() {
      return closed ??= server.shutdown();
    },
  };
}
