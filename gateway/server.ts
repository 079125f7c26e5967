/**
 * The gateway's HTTPS server: `Deno.serve` (hyper and rustls; HTTP/2 and HTTP/1.1 negotiated by
 * ALPN on one port) with `TCP_NODELAY` set on the listening socket.
 *
 * Why: Deno 2.9 writes an HTTP/1.1 or HTTP/2 response over TLS as two TLS records in two `send()`
 * calls, and leaves Nagle's algorithm on. For bodies of about 512 B to 16 KiB the second record
 * then waits for the client's delayed ACK: about 40 ms per request on a keep-alive connection (22
 * requests/s). Linux copies `TCP_NODELAY` from a listening socket to every socket accepted from it,
 * so setting it once on the listener, through libc's `setsockopt` by FFI, removes the stall for
 * every connection. Where FFI is not allowed or not Linux, the server warns and falls back to
 * sending bodies as streams, which hyper writes differently: that avoids most of the stall on
 * HTTP/1.1 (a p99 of about 11 ms remains on one connection) but not on HTTP/2.
 *
 * @module
 */

import { concatBytes, discardLogger, type Logger } from "../protocol/mod.ts";

/** A fetch-style handler, as Hono's `app.fetch`. */
export type FetchHandler = (
  req: Request,
  info: Deno.ServeHandlerInfo<Deno.NetAddr>,
) => Response | Promise<Response>;

/** Options of {@linkcode serveHttps}. */
export interface ServeHttpsOptions {
  /** Address to listen on. */
  hostname: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** PEM certificate chain. */
  cert: string;
  /** PEM private key. */
  key: string;
  /** Share the port with other listeners of this process or others (`SO_REUSEPORT`). */
  reusePort?: boolean;
  /** Aborting it shuts the server down gracefully. */
  signal?: AbortSignal;
  /** Logger. */
  log?: Logger;
}

/** A running server. */
export interface HttpsServer {
  /** The port it listens on. */
  port: number;
  /** Whether `TCP_NODELAY` is set on the listener (otherwise bodies are streamed). */
  noDelay: boolean;
  /** Resolves when the server has stopped. */
  finished: Promise<void>;
  /** Stops accepting, finishes requests in flight, then resolves. */
  shutdown(): Promise<void>;
}

const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const SOL_SOCKET = 1;
const SO_ACCEPTCONN = 30;
const SO_PROTOCOL = 38;
const AF_INET = 2;
const AF_INET6 = 10;

interface Libc {
  setsockopt(fd: number, level: number, name: number, val: Uint8Array, len: number): number;
  getsockopt(fd: number, level: number, name: number, val: Uint8Array, len: Uint8Array): number;
  getsockname(fd: number, addr: Uint8Array, len: Uint8Array): number;
}

let libc: Libc | null | undefined;

function loadLibc(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  if (Deno.build.os !== "linux") return libc;
  try {
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return libc;
    const lib = Deno.dlopen("libc.so.6", {
      setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
      getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
      getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
    });
    libc = lib.symbols as unknown as Libc;
  } catch {
    libc = null; // not glibc
  }
  return libc;
}

/**
 * Sets `TCP_NODELAY` on every listening TCP socket of this process bound to `port`. The sockets
 * are found by probing descriptors with `getsockname` and `getsockopt(SO_ACCEPTCONN)`.
 *
 * @param port The listening port.
 * @param maxFd Highest descriptor to probe.
 * @returns How many listeners were changed (0 when FFI is unavailable).
 */
export function setListenerNoDelay(port: number, maxFd = 4096): number {
  const c = loadLibc();
  if (!c) return 0;
  const addr = new Uint8Array(128);
  const alen = new Uint8Array(4);
  const val = new Uint8Array(4);
  const vlen = new Uint8Array(4);
  const ad = new DataView(addr.buffer);
  const ld = new DataView(alen.buffer);
  const vd = new DataView(val.buffer);
  const vld = new DataView(vlen.buffer);
  const one = new Uint8Array(new Int32Array([1]).buffer);
  const opt = (fd: number, name: number): number => {
    vld.setUint32(0, 4, true);
    return c.getsockopt(fd, SOL_SOCKET, name, val, vlen) === 0 ? vd.getInt32(0, true) : -1;
  };
  let n = 0;
  for (let fd = 3; fd < maxFd; fd++) {
    ld.setUint32(0, addr.length, true);
    if (c.getsockname(fd, addr, alen) !== 0) continue;
    const family = ad.getUint16(0, true);
    if ((family !== AF_INET && family !== AF_INET6) || ad.getUint16(2, false) !== port) continue;
    if (opt(fd, SO_PROTOCOL) !== IPPROTO_TCP || opt(fd, SO_ACCEPTCONN) !== 1) continue;
    if (c.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, one, 4) === 0) n++;
  }
  return n;
}

/**
 * Wraps a response so that its body is sent as a stream; used only where `TCP_NODELAY` cannot be
 * set, because hyper flushes a streamed body in a way that does not meet the delayed ACK.
 */
async function streamed(res: Response): Promise<Response> {
  if (!res.body) return res;
  // Only small bodies stall, and only they are gathered into one chunk: reading stops at 64 KiB,
  // and a larger body goes on streaming from where it was, so memory stays bounded.
  const reader = res.body.getReader();
  const head: Uint8Array[] = [];
  let size = 0;
  let done = false;
  while (size <= 65536) {
    const r = await reader.read();
    if (r.done) {
      done = true;
      break;
    }
    head.push(r.value);
    size += r.value.length;
  }
  const headers = new Headers(res.headers);
  if (done) headers.set("content-length", String(size));
  const first = concatBytes(head);
  return new Response(
    new ReadableStream<Uint8Array>({
      start(c) {
        if (first.length) c.enqueue(first);
        if (done) c.close();
      },
      async pull(c) {
        const r = await reader.read();
        if (r.done) c.close();
        else c.enqueue(r.value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    }),
    { status: res.status, statusText: res.statusText, headers },
  );
}

/**
 * Serves a handler over HTTPS (HTTP/2 and HTTP/1.1) without the small-response stall.
 *
 * @param handler The request handler, such as a Hono app's `fetch`.
 * @param options Address, port, TLS material, port sharing, signal and logger.
 * @returns The running server.
 *
 * @example
 * ```ts ignore
 * const srv = serveHttps(app.fetch, { hostname: "127.0.0.1", port: 8443, cert, key });
 * console.log(`https://127.0.0.1:${srv.port}`);
 * ```
 */
export function serveHttps(handler: FetchHandler, options: ServeHttpsOptions): HttpsServer {
  const log = options.log ?? discardLogger;
  let noDelay = false;
  const wrapped: FetchHandler = (req, info) => {
    if (noDelay) return handler(req, info);
    return Promise.resolve(handler(req, info)).then(streamed);
  };
  const server = Deno.serve({
    hostname: options.hostname,
    port: options.port,
    cert: options.cert,
    key: options.key,
    reusePort: options.reusePort,
    signal: options.signal,
    onListen() {},
    onError(err) {
      log.error("Unhandled error in request handler", { err });
      return new Response(
        JSON.stringify({ error: { code: "internal", message: "Internal error" } }),
        {
          status: 500,
          headers: { "content-type": "application/json" },
        },
      );
    },
  }, wrapped);
  // Runs right after bind and listen, before this isolate's event loop can accept a connection.
  noDelay = setListenerNoDelay(server.addr.port) > 0;
  if (!noDelay) {
    log.warn(
      "Cannot set TCP_NODELAY on the listener (needs --allow-ffi on Linux); streaming bodies instead",
    );
  }
  return {
    port: server.addr.port,
    noDelay,
    finished: server.finished,
    shutdown: () => server.shutdown(),
  };
}
