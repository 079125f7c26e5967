/**
 * The Cloud File System's UI: a page that shows the user how their storage is doing, served on the
 * host's loopback only.
 *
 * Routes:
 * - `GET /`: the page, one self-contained document under a strict Content-Security-Policy;
 * - `GET /api/status`: the {@linkcode CfsStatus} as JSON;
 * - `GET /api/events`: Server-Sent Events, an `event: status` whenever the status changes
 *   (checked every second), so the page's progress bars move live;
 * - `POST /api/scrub`: starts a scrub. It needs the header `X-TrueCloud-CSRF: 1` and a JSON
 *   content type, which a cross-site form cannot send and a cross-site script cannot send without a
 *   CORS preflight that this server never grants.
 *
 * Every request must name the UI by a loopback Host (`127.0.0.1:PORT`, `localhost:PORT` or
 * `[::1]:PORT`): a DNS-rebinding page whose name resolves to 127.0.0.1 carries its own name and is
 * refused with 421. A request whose `Origin` is another origin, or whose `Sec-Fetch-Site` says it
 * comes from another site, is refused with 403.
 *
 * @module
 */

import { Hono } from "hono";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { secureHeaders } from "hono/secure-headers";
import {
  discardLogger,
  hostOnlyRefusal,
  type Logger,
  methodNotAllowed,
  toHttpError,
  TooLargeError,
  TrueCloudError,
  ValidationError,
  z,
} from "../../protocol/mod.ts";
import type { CfsStatus } from "./status.ts";
import { FAVICON_SVG, PAGE_SCRIPT_HASH, PAGE_STYLE_HASH, renderPage } from "./_ui_page.ts";

/** What the UI can ask the CFS to do. */
export interface CfsUiActions {
  /** Starts a scrub of the pool; resolves once it is under way. */
  scrub?(): Promise<void>;
}

/** Options of {@linkcode createCfsUiApp}. */
export interface CfsUiOptions {
  /** The current status of the CFS; called for each answer and each push check. */
  status: () => CfsStatus | Promise<CfsStatus>;
  /** Actions the page may start; without `scrub`, the Scrub button is disabled. */
  actions?: CfsUiActions;
  /** The TCP port the UI is reached on: the only port the Host and Origin checks accept. */
  port: number;
  /** How often an event stream checks the status for a change, in ms (default 1000). */
  pushIntervalMs?: number;
  /** Most event streams open at once (default 16); more are refused with 503. */
  maxStreams?: number;
  /** Ends every open event stream and refuses new ones when aborted (for shutting down). */
  signal?: AbortSignal;
  /** Logger (default: discards). */
  log?: Logger;
}

/** Options of {@linkcode serveCfsUi}. */
export interface ServeCfsUiOptions extends Omit<CfsUiOptions, "port" | "signal"> {
  /** The port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /** The address to listen on: loopback, and nothing else. */
  hostname?: "127.0.0.1";
}

/** A running CFS UI server. */
export interface CfsUiServer {
  /** The page's address, such as `http://127.0.0.1:8470/`. */
  readonly url: string;
  /** The port it listens on. */
  readonly port: number;
  /** Ends the event streams and stops the server; safe to call again. */
  close(): Promise<void>;
}

/** The header a state-changing request must carry, with the value `1`. */
export const CSRF_HEADER = "x-truecloud-csrf";

const HEARTBEAT_MS = 15_000;
const MAX_QUEUED_EVENTS = 8;

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const amount = z.number().min(0).max(Number.MAX_SAFE_INTEGER);
const text = z.string().max(4096);

const statusSchema = z.object({
  pool: z.object({
    state: z.enum(["online", "degraded", "faulted"]),
    sizeBytes: amount,
    usedBytes: amount,
    lossesTolerated: z.number().int().min(0).max(8),
  }),
  entitlement: z.object({ storageBytes: amount, usedBytes: amount, freeBytes: amount }),
  volumes: z.array(z.object({
    slot: z.number().int().min(0).max(7),
    role: z.enum(["data", "parity"]),
    state: z.enum(["online", "away", "faulted", "resilvering", "missing"]),
    provider: text.optional(),
    location: text.optional(),
    network: text.optional(),
    vpn: text.optional(),
    latencyMs: amount.optional(),
    sizeBytes: amount,
    lease: z.object({ id: text, until: amount }).optional(),
    errors: z.object({ read: count, write: count, checksum: count }),
    behindStripes: count,
  })).max(8),
  distribution: z.object({
    providers: count,
    locations: count,
    networks: count,
    vpns: count,
    summary: text,
  }),
  resilver: z.object({
    slot: z.number().int().min(0).max(7),
    kind: z.enum(["replace", "catch-up"]),
    doneBytes: amount,
    totalBytes: amount,
    startedAt: amount,
    rate: amount,
    etaSeconds: amount.optional(),
    finished: z.boolean(),
  }).optional(),
  scrub: z.object({
    doneBytes: amount,
    totalBytes: amount,
    repaired: count,
    finished: z.boolean(),
  }).optional(),
  events: z.array(z.object({
    at: amount,
    level: z.enum(["info", "warn", "error"]),
    message: text,
    slot: z.number().int().min(0).max(7).optional(),
  })).max(10_000),
});

function checkPort(port: unknown, what: string, min: number): number {
  if (typeof port !== "number" || !Number.isInteger(port) || port < min || port > 65535) {
    throw new ValidationError(`${what} must be an integer from ${min} to 65535, not ${port}`, {
      path: "port",
    });
  }
  return port;
}

function checkOptions(opts: Omit<CfsUiOptions, "port">): void {
  if (typeof opts?.status !== "function") {
    throw new ValidationError("The CFS UI needs a status function", { path: "status" });
  }
  const scrub = opts.actions?.scrub;
  if (scrub !== undefined && typeof scrub !== "function") {
    throw new ValidationError("The scrub action must be a function", { path: "actions.scrub" });
  }
  const interval = opts.pushIntervalMs;
  if (
    interval !== undefined && (!Number.isInteger(interval) || interval < 10 || interval > 60_000)
  ) {
    throw new ValidationError(
      `pushIntervalMs must be an integer from 10 to 60000, not ${interval}`,
      { path: "pushIntervalMs" },
    );
  }
  const max = opts.maxStreams;
  if (max !== undefined && (!Number.isInteger(max) || max < 1 || max > 1024)) {
    throw new ValidationError(`maxStreams must be an integer from 1 to 1024, not ${max}`, {
      path: "maxStreams",
    });
  }
}

function refused(message: string, status: 403 | 421, code: string): TrueCloudError {
  return new TrueCloudError(message, { code, status });
}

// A printable, bounded rendering of a header value for an error message.
function shown(value: string): string {
  const clipped = value.length > 80 ? `${value.slice(0, 80)}…` : value;
  return JSON.stringify(clipped);
}

/**
 * Checks that a request comes from this host's browser or tools, for this UI.
 * @throws {TrueCloudError} 421 for a Host that is not this UI's, 403 for a cross-origin request.
 */
function guard(c: Context, port: number): void {
  const no = hostOnlyRefusal(c.req.raw.headers, port, "The CFS UI");
  if (no) throw refused(no.message, no.status, no.code);
}

function parseStatus(value: unknown): CfsStatus {
  const r = statusSchema.safeParse(value);
  if (r.success) return r.data as CfsStatus;
  const issue = r.error.issues[0];
  const path = issue.path.map(String).join(".");
  throw new TrueCloudError(
    `The CFS reported a malformed status${path ? ` at ${path}` : ""}: ${issue.message}`,
    { code: "bad_status", status: 500, cause: r.error },
  );
}

function unavailable(err: unknown): TrueCloudError {
  if (err instanceof TrueCloudError && err.status !== undefined) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new TrueCloudError(`The CFS status is unavailable: ${message}`, {
    code: "unavailable",
    status: 503,
    cause: err,
  });
}

const encoder = new TextEncoder();

// The app, given how to learn the port it is reached on (known only once a server is bound).
function buildApp(opts: Omit<CfsUiOptions, "port">, portOf: () => number): Hono {
  const log = opts.log ?? discardLogger;
  const interval = opts.pushIntervalMs ?? 1000;
  const maxStreams = opts.maxStreams ?? 16;
  const scrub = opts.actions?.scrub?.bind(opts.actions);
  const page = renderPage({ scrub: scrub !== undefined });
  const streams = new Set<() => void>();
  let scrubbing = false;
  opts.signal?.addEventListener("abort", () => {
    for (const stop of [...streams]) stop();
  }, { once: true });

  const snapshot = async (): Promise<string> => {
    let raw: unknown;
    try {
      raw = await opts.status();
    } catch (err) {
      throw unavailable(err);
    }
    return JSON.stringify(parseStatus(raw));
  };

  const app = new Hono();
  app.use(secureHeaders({
    contentSecurityPolicy: {
      defaultSrc: ["'none'"],
      scriptSrc: [`'${PAGE_SCRIPT_HASH}'`],
      styleSrc: [`'${PAGE_STYLE_HASH}'`],
      imgSrc: ["'self'"],
      connectSrc: ["'self'"],
      baseUri: ["'none'"],
      formAction: ["'none'"],
      frameAncestors: ["'none'"],
      requireTrustedTypesFor: ["'script'"],
      trustedTypes: ["'none'"],
    },
    xFrameOptions: "DENY",
    referrerPolicy: "no-referrer",
    // Plain HTTP on loopback: HSTS would mean nothing.
    strictTransportSecurity: false,
    permissionsPolicy: { camera: [], microphone: [], geolocation: [], usb: [], payment: [] },
  }));
  // Hono's csrf middleware checks only unsafe methods with form content types; this UI refuses
  // every foreign request, reads included, and checks the Host too.
  app.use(async (c, next) => {
    try {
      guard(c, portOf());
    } catch (err) {
      log.debug("refused", {
        method: c.req.method,
        path: c.req.path,
        host: c.req.header("host"),
        origin: c.req.header("origin"),
        reason: (err as Error).message,
      });
      throw err;
    }
    await next();
  });

  app.get("/", (c) => {
    c.header("cache-control", "no-store");
    return c.html(page);
  });
  app.get("/favicon.svg", (c) => {
    c.header("cache-control", "max-age=86400");
    return c.body(FAVICON_SVG, 200, { "content-type": "image/svg+xml" });
  });
  app.get("/favicon.ico", (c) => c.redirect("/favicon.svg", 301));

  app.get("/api/status", async (c) => {
    const body = await snapshot();
    return c.body(body, 200, {
      "content-type": "application/json; charset=utf-8",
      "cache-control": "no-store",
    });
  });

  app.get("/api/events", (c) => {
    const headers = {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      "x-accel-buffering": "no",
    };
    // Hono answers HEAD with the GET route and drops the body unread: open no stream for it.
    if (c.req.method === "HEAD") return c.body(null, 200, headers);
    if (opts.signal?.aborted) {
      throw new TrueCloudError("The CFS UI is shutting down", { code: "unavailable", status: 503 });
    }
    if (streams.size >= maxStreams) {
      throw new TrueCloudError(
        `Too many open event streams (${maxStreams}); close another tab of this page`,
        { code: "too_many_streams", status: 503 },
      );
    }
    let stop = () => {};
    const body = new ReadableStream<Uint8Array>({
      start(ctl) {
        let stopped = false;
        let busy = false;
        let last = "-"; // what was sent last: "-" nothing yet, "" a failure
        let quietMs = 0;
        // A client that reads nothing gets nothing more queued; it catches up when it reads.
        const send = (chunk: string): boolean => {
          if ((ctl.desiredSize ?? 0) < -MAX_QUEUED_EVENTS) return false;
          ctl.enqueue(encoder.encode(chunk));
          return true;
        };
        const tick = async (): Promise<void> => {
          if (busy || stopped) return;
          busy = true;
          try {
            const now = await snapshot();
            if (stopped) return;
            if (now !== last) {
              if (send(`event: status\ndata: ${now}\n\n`)) last = now;
              quietMs = 0;
            } else if ((quietMs += interval) >= HEARTBEAT_MS) {
              quietMs = 0;
              send(": still here\n\n");
            }
          } catch (err) {
            if (stopped) return;
            const e = unavailable(err);
            // Once per outage, not once per tick.
            if (last !== "") log.warn("status unavailable", { err: e });
            last = "";
            send(`event: unavailable\ndata: ${JSON.stringify({ message: e.message })}\n\n`);
          } finally {
            busy = false;
          }
        };
        const timer = setInterval(tick, interval);
        stop = () => {
          if (stopped) return;
          stopped = true;
          clearInterval(timer);
          streams.delete(stop);
          try {
            ctl.close();
          } catch {
            // already closed or cancelled by the reader
          }
        };
        streams.add(stop);
        ctl.enqueue(encoder.encode("retry: 2000\n\n"));
        tick();
      },
      // The server cancels the body when the client goes away.
      cancel() {
        stop();
      },
    });
    return c.body(body, 200, headers);
  });

  app.post(
    "/api/scrub",
    bodyLimit({
      maxSize: 1024,
      onError: () => {
        throw new TooLargeError("The request body is over 1024 bytes");
      },
    }),
    async (c) => {
      if (c.req.header(CSRF_HEADER) !== "1") {
        throw refused(`Starting a scrub needs the header ${CSRF_HEADER}: 1`, 403, "csrf");
      }
      const type = (c.req.header("content-type") ?? "").split(";")[0].trim().toLowerCase();
      if (type !== "application/json") {
        throw refused("Starting a scrub needs a JSON request (application/json)", 403, "csrf");
      }
      const raw = await c.req.text();
      if (raw.trim() !== "") {
        let body: unknown;
        try {
          body = JSON.parse(raw);
        } catch {
          throw new ValidationError("The request body is not JSON");
        }
        if (typeof body !== "object" || body === null || Array.isArray(body)) {
          throw new ValidationError("The request body must be an empty JSON object");
        }
        if (Object.keys(body).length > 0) {
          throw new ValidationError(
            `Starting a scrub takes no parameters, not ${Object.keys(body).slice(0, 3).join(", ")}`,
          );
        }
      }
      if (!scrub) {
        throw new TrueCloudError("This node cannot start a scrub from its UI", {
          code: "not_supported",
          status: 501,
        });
      }
      if (scrubbing) {
        throw new TrueCloudError("A scrub is already being started", {
          code: "conflict",
          status: 409,
        });
      }
      scrubbing = true;
      try {
        await scrub();
      } catch (err) {
        if (err instanceof TrueCloudError && err.status !== undefined) throw err;
        log.error("scrub did not start", { err });
        throw new TrueCloudError(
          `The scrub did not start: ${err instanceof Error ? err.message : String(err)}`,
          { code: "scrub_failed", status: 500, cause: err },
        );
      } finally {
        scrubbing = false;
      }
      log.info("scrub started from the UI");
      c.header("cache-control", "no-store");
      return c.json({ started: true }, 202);
    },
  );

  app.all("/", methodNotAllowed("GET, HEAD"));
  app.all("/api/status", methodNotAllowed("GET, HEAD"));
  app.all("/api/events", methodNotAllowed("GET"));
  app.all("/api/scrub", methodNotAllowed("POST"));
  app.notFound((c) =>
    c.json({ error: { code: "not_found", message: `No route ${c.req.method} ${c.req.path}` } }, 404)
  );
  app.onError((err, c) => {
    const { status, body } = toHttpError(err);
    if (status >= 500) log.error("request failed", { path: c.req.path, err });
    c.header("cache-control", "no-store");
    return c.json(body, status as 400);
  });
  return app;
}

/**
 * Builds the CFS UI app.
 *
 * @param opts The status source, the actions, and the port the UI is reached on.
 * @returns The Hono app; serve it on loopback with {@linkcode serveCfsUi}.
 * @throws {ValidationError} When an option is missing or out of range.
 *
 * @example
 * ```ts ignore
 * const app = createCfsUiApp({ status: () => cfs.status(), port: 8470 });
 * const res = await app.request("/api/status", { headers: { host: "127.0.0.1:8470" } });
 * ```
 */
export function createCfsUiApp(opts: CfsUiOptions): Hono {
  checkOptions(opts);
  const port = checkPort(opts?.port, "The CFS UI's port", 1);
  return buildApp(opts, () => port);
}

/**
 * Serves the CFS UI on the host's loopback.
 *
 * @param opts The status source, the actions, and the port (default: any free one).
 * @returns The running server: its URL and how to close it.
 * @throws {ValidationError} When the hostname is not `127.0.0.1` or an option is invalid.
 * @throws {TrueCloudError} With code `listen_failed` when the port cannot be bound.
 *
 * @example
 * ```ts ignore
 * const ui = serveCfsUi({ status: () => cfs.status(), actions: { scrub: () => cfs.scrub() } });
 * console.log(`CFS UI: ${ui.url}`);
 * await ui.close();
 * ```
 */
export function serveCfsUi(opts: ServeCfsUiOptions): CfsUiServer {
  const hostname: string = opts?.hostname ?? "127.0.0.1";
  if (hostname !== "127.0.0.1") {
    throw new ValidationError(
      `The CFS UI listens on the loopback address 127.0.0.1 only, not ${shown(String(hostname))}`,
      { path: "hostname" },
    );
  }
  const wanted = checkPort(opts.port ?? 0, "The CFS UI's port", 0);
  checkOptions(opts);
  const closing = new AbortController();
  let port = 0;
  const app = buildApp({ ...opts, signal: closing.signal }, () => port);
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve(
      { hostname, port: wanted, onListen: () => {} },
      (req, info) => app.fetch(req, info),
    );
  } catch (err) {
    throw new TrueCloudError(
      `The CFS UI cannot listen on ${hostname}:${wanted}: ${(err as Error).message}`,
      { code: "listen_failed", cause: err },
    );
  }
  port = server.addr.port;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${hostname}:${port}/`,
    port,
    close() {
      closed ??= (async () => {
        closing.abort();
        await server.shutdown();
      })();
      return closed;
    },
  };
}
