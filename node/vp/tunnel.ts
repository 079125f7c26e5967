/**
 * The dedicated tunnel of a volume: its own TCP connection between the consumer and the provider,
 * authenticated by static X25519 keys exchanged over the management VPN and encrypted with
 * ChaCha20-Poly1305 (`docs/protocol/blocks.md`, "The tunnel").
 *
 * The provider runs one {@linkcode TunnelServer} for all its volumes and registers each volume
 * with its own key pair and the consumer's public key; the consumer calls
 * {@linkcode connectTunnel}. Only the holder of the consumer's private key reaches the volume, and
 * the consumer talks only to the holder of the provider's private key. A {@linkcode Tunnel}
 * carries frames of up to 4 MiB + 64 KiB, in order.
 *
 * @module
 */

import { randomBytes } from "node:crypto";
import {
  base64url,
  discardLogger,
  fromBase64url,
  isUuid,
  type Logger,
  TrueCloudError,
  ValidationError,
} from "../../protocol/mod.ts";
import {
  CLIENT_READY,
  clientSecrets,
  decodeHello,
  decodeReply,
  deriveKeys,
  encodeHello,
  encodeReply,
  FrameOpener,
  FrameSealer,
  HELLO_BYTES,
  KEY_BYTES,
  MAX_FRAME,
  MAX_PLAINTEXT,
  newKeyPair,
  NONCE_BYTES,
  privateKeyObject,
  publicKeyOf,
  REPLY_BYTES,
  SERVER_READY,
  serverSecrets,
  x25519,
} from "./_handshake.ts";

/** An X25519 key pair, 32 raw bytes each. */
export interface TunnelKeyPair {
  /** The public key, shared with the other side. */
  publicKey: Uint8Array;
  /** The private key, kept. */
  privateKey: Uint8Array;
}

/** A key pair as text: base64url without padding, as the volume messages carry keys. */
export interface TunnelKeyText {
  /** The public key, 43 characters. */
  publicKey: string;
  /** The private key, 43 characters. */
  privateKey: string;
}

/** Where a provider's tunnels are reached. */
export interface TunnelEndpoint {
  /** An IP address or host name (IPv6 without brackets). */
  hostname: string;
  /** The TCP port. */
  port: number;
}

/** What the provider registers for a volume. */
export interface TunnelServerParams {
  /** The provider's key pair for this volume. */
  serverStatic: TunnelKeyPair;
  /** The consumer's public key for this volume. */
  clientPublic: Uint8Array;
}

/** What the consumer needs to reach a volume. */
export interface TunnelClientParams {
  /** The volume's UUID. */
  volumeId: string;
  /** The consumer's key pair for this volume. */
  clientStatic: TunnelKeyPair;
  /** The provider's public key for this volume. */
  serverPublic: Uint8Array;
}

/** Called with each tunnel that completed its handshake; the tunnel is closed when it returns. */
export type TunnelHandler = (tunnel: Tunnel) => void | Promise<void>;

/** Why a tunnel failed. */
export type TunnelErrorCode =
  | "tunnel_unreachable" // no TCP connection
  | "tunnel_refused" // the provider closed during the handshake: unknown volume or wrong key
  | "tunnel_auth" // the peer failed to prove its key, or a frame did not authenticate
  | "tunnel_timeout" // the handshake took too long
  | "tunnel_protocol" // malformed handshake or frame
  | "tunnel_closed"; // closed, or the connection dropped

/** A tunnel that could not be set up or has failed. */
export class TunnelError extends TrueCloudError {
  /**
   * Makes the error.
   * @param message What failed.
   * @param code Which kind of failure.
   * @param cause The underlying error.
   */
  constructor(message: string, code: TunnelErrorCode, cause?: unknown) {
    super(message, { code, cause });
  }
}

/** Default time a handshake may take, ms. */
export const HANDSHAKE_TIMEOUT_MS = 5000;
/** Largest plaintext of one frame: 4 MiB of data and 64 KiB of headers. */
export const MAX_FRAME_BYTES: number = MAX_PLAINTEXT;

const SMALL_FRAME = 64 * 1024;
const READ_BUFFER = 256 * 1024;
const COALESCE = 256 * 1024;

/**
 * A key (public or private) as base64url text without padding (43 characters).
 * @param key 32 bytes.
 * @throws {ValidationError} When it is not 32 bytes.
 */
export function encodeTunnelKey(key: Uint8Array): string {
  if (!(key instanceof Uint8Array) || key.length !== KEY_BYTES) {
    throw new ValidationError("A tunnel key has 32 bytes");
  }
  return base64url(key);
}

/**
 * Reads a key written by {@linkcode encodeTunnelKey}.
 * @param text 43 characters of base64url.
 * @returns 32 bytes.
 * @throws {ValidationError} When the text is not exactly that.
 */
export function decodeTunnelKey(text: string): Uint8Array {
  if (typeof text !== "string" || !/^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/.test(text)) {
    throw new ValidationError("A tunnel key is 43 characters of base64url (32 bytes)");
  }
  return fromBase64url(text);
}

/** A fresh X25519 key pair for one side of one volume's tunnel. */
export function generateTunnelKeys(): TunnelKeyPair {
  return newKeyPair();
}

/**
 * Checks that a key pair is one: 32-byte keys, the public key being the private key's.
 * @throws {ValidationError} When it is not.
 */
export function checkTunnelKeys(pair: TunnelKeyPair): void {
  if (
    !(pair?.publicKey instanceof Uint8Array) || !(pair.privateKey instanceof Uint8Array) ||
    pair.publicKey.length !== KEY_BYTES || pair.privateKey.length !== KEY_BYTES
  ) {
    throw new ValidationError("A tunnel key pair has two 32-byte keys");
  }
  const pub = publicKeyOf(pair.privateKey);
  if (!pub.every((b, i) => b === pair.publicKey[i])) {
    throw new ValidationError("The tunnel public key is not the private key's");
  }
}

/** A key pair as text. */
export function tunnelKeysToText(pair: TunnelKeyPair): TunnelKeyText {
  return {
    publicKey: encodeTunnelKey(pair.publicKey),
    privateKey: encodeTunnelKey(pair.privateKey),
  };
}

/**
 * A key pair from text, checked.
 * @throws {ValidationError} When a key is malformed or they do not pair.
 */
export function tunnelKeysFromText(text: TunnelKeyText): TunnelKeyPair {
  const pair = {
    publicKey: decodeTunnelKey(text?.publicKey),
    privateKey: decodeTunnelKey(text?.privateKey),
  };
  checkTunnelKeys(pair);
  return pair;
}

/**
 * Reads `host:port` (IPv6 as `[addr]:port`).
 * @throws {ValidationError} When it is not that.
 */
export function parseEndpoint(text: string): TunnelEndpoint {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]\s]+)):(\d{1,5})$/.exec(String(text));
  const port = m ? Number(m[3]) : 0;
  if (!m || port < 1 || port > 65535) {
    throw new ValidationError(
      `Endpoint ${JSON.stringify(String(text).slice(0, 80))} is not host:port`,
    );
  }
  return { hostname: m[1] ?? m[2], port };
}

/** An endpoint as `host:port` (IPv6 as `[addr]:port`). */
export function formatEndpoint(e: TunnelEndpoint): string {
  return e.hostname.includes(":") ? `[${e.hostname}]:${e.port}` : `${e.hostname}:${e.port}`;
}

function checkEndpoint(e: TunnelEndpoint | string): TunnelEndpoint {
  if (typeof e === "string") return parseEndpoint(e);
  if (
    typeof e?.hostname !== "string" || e.hostname === "" || !Number.isInteger(e.port) ||
    e.port < 0 || e.port > 65535
  ) {
    throw new ValidationError("An endpoint has a host name and a port");
  }
  return e;
}

function checkPublic(key: Uint8Array, what: string): void {
  if (!(key instanceof Uint8Array) || key.length !== KEY_BYTES) {
    throw new ValidationError(`The ${what} has 32 bytes`);
  }
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

async function writeAll(conn: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) at += await conn.write(bytes.subarray(at));
}

function closeQuietly(conn: Deno.TcpConn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** Reads handshake messages and frames from a connection, with one buffer. */
class Reader {
  readonly #conn: Deno.TcpConn;
  readonly #buf = new Uint8Array(READ_BUFFER);
  #large = new Uint8Array(0);
  #start = 0;
  #end = 0;
  /** When bytes last arrived (`performance.now()`). */
  receivedAt = performance.now();

  constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  // Has at least n bytes buffered; false at the end of the stream.
  async #fill(n: number): Promise<boolean> {
    if (this.#end - this.#start >= n) return true;
    if (this.#buf.length - this.#start < n) {
      this.#buf.copyWithin(0, this.#start, this.#end);
      this.#end -= this.#start;
      this.#start = 0;
    }
    while (this.#end - this.#start < n) {
      const r = await this.#conn.read(this.#buf.subarray(this.#end));
      if (r === null) return false;
      this.#end += r;
      this.receivedAt = performance.now();
    }
    return true;
  }

  get #buffered(): number {
    return this.#end - this.#start;
  }

  /** `n` bytes (a copy), or null if the stream ends first. */
  async exact(n: number): Promise<Uint8Array | null> {
    if (!(await this.#fill(n))) return null;
    const out = this.#buf.slice(this.#start, this.#start + n);
    this.#start += n;
    return out;
  }

  /**
   * The next frame: its length field and its body. A small body is a view of the buffer, valid
   * until the next call. Null when the stream ends between frames.
   */
  async frame(): Promise<{ head: Uint8Array; body: Uint8Array } | null> {
    if (!(await this.#fill(4))) {
      if (this.#buffered === 0) return null;
      throw new TunnelError("The connection ended inside a frame", "tunnel_closed");
    }
    const head = this.#buf.slice(this.#start, this.#start + 4);
    const len = new DataView(head.buffer).getUint32(0);
    if (len < 16 || len > MAX_FRAME) {
      throw new TunnelError(`A frame of ${len} bytes is outside the limits`, "tunnel_protocol");
    }
    this.#start += 4;
    if (len <= SMALL_FRAME) {
      if (!(await this.#fill(len))) {
        throw new TunnelError("The connection ended inside a frame", "tunnel_closed");
      }
      const body = this.#buf.subarray(this.#start, this.#start + len);
      this.#start += len;
      return { head, body };
    }
    // One buffer for large bodies too: a frame is opened into a new plaintext before the next one
    // is read (receive() allows one reader at a time), as with small frames in #buf.
    if (this.#large.length < len) this.#large = new Uint8Array(len);
    const body = this.#large.subarray(0, len);
    let have = Math.min(len, this.#buffered);
    body.set(this.#buf.subarray(this.#start, this.#start + have));
    this.#start += have;
    while (have < len) {
      const r = await this.#conn.read(body.subarray(have));
      if (r === null) throw new TunnelError("The connection ended inside a frame", "tunnel_closed");
      have += r;
      this.receivedAt = performance.now();
    }
    return { head, body };
  }
}

interface Write {
  parts: readonly Uint8Array[];
  /** Plaintext bytes. */
  size: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** Settings of {@linkcode Tunnel.send}. */
export interface SendOptions {
  /** Goes before the frames waiting to be written (heartbeats). */
  urgent?: boolean;
}

/**
 * One side of an established tunnel: sends and receives whole frames, in order, encrypted.
 *
 * Frames go out in the order `send` is called, urgent ones before the others still waiting; each
 * is numbered and sealed as it is written. `receive` reads from the connection only when called:
 * a side that stops receiving stops the peer (TCP flow control).
 */
class Tunnel {
  /** The volume this tunnel reaches. */
  readonly volumeId: string;
  /** Which side this is. */
  readonly role: "client" | "server";
  /** The other side's address. */
  readonly remote: string;
  /** Settles once the tunnel is closed and its writes have stopped. */
  readonly done: Promise<void>;
  readonly #conn: Deno.TcpConn;
  readonly #reader: Reader;
  readonly #sealer: FrameSealer;
  readonly #opener: FrameOpener;
  readonly #queue: Write[] = [];
  readonly #urgent: Write[] = [];
  #pumping?: Promise<void>;
  #writing = false;
  #receiving = false;
  #closed?: string;
  #resolveDone!: () => void;

  /** Made by {@linkcode connectTunnel} and {@linkcode TunnelServer}. */
  constructor(
    internal: {
      volumeId: string;
      role: "client" | "server";
      conn: Deno.TcpConn;
      reader: Reader;
      sealer: FrameSealer;
      opener: FrameOpener;
    },
  ) {
    this.volumeId = internal.volumeId;
    this.role = internal.role;
    this.#conn = internal.conn;
    this.#reader = internal.reader;
    this.#sealer = internal.sealer;
    this.#opener = internal.opener;
    const addr = internal.conn.remoteAddr as Deno.NetAddr;
    this.remote = formatEndpoint({ hostname: addr.hostname, port: addr.port });
    this.done = new Promise((resolve) => (this.#resolveDone = resolve));
  }

  /** Whether the tunnel is closed. */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /** Why the tunnel closed, once it has. */
  get closeReason(): string | undefined {
    return this.#closed;
  }

  /** When bytes last arrived from the peer (`performance.now()`): a sign of life. */
  get receivedAt(): number {
    return this.#reader.receivedAt;
  }

  /**
   * Sends one frame whose plaintext is the parts joined. The parts must stay unchanged until the
   * promise settles.
   * @param frame The plaintext, whole or in parts.
   * @param options Urgency.
   * @returns Settles once the frame is handed to the connection.
   * @throws {TunnelError} `tunnel_closed` when the tunnel is or gets closed.
   * @throws {ValidationError} When the frame is larger than {@linkcode MAX_FRAME_BYTES}.
   */
  send(frame: Uint8Array | readonly Uint8Array[], options: SendOptions = {}): Promise<void> {
    if (this.#closed) {
      return Promise.reject(
        new TunnelError(`The tunnel is closed: ${this.#closed}`, "tunnel_closed"),
      );
    }
    const parts = frame instanceof Uint8Array ? [frame] : frame;
    let size = 0;
    for (const p of parts) size += p.length;
    if (size > MAX_PLAINTEXT) {
      return Promise.reject(
        new ValidationError(`A frame carries at most ${MAX_PLAINTEXT} bytes, got ${size}`),
      );
    }
    return new Promise<void>((resolve, reject) => {
      (options.urgent ? this.#urgent : this.#queue).push({ parts, size, resolve, reject });
      if (!this.#writing) {
        this.#writing = true;
        this.#pumping = this.#pump();
      }
    });
  }

  // Seals and writes queued frames, small ones together, until none is left. `#writing` is
  // cleared in the same synchronous step as the queues are found empty (no await in between), so
  // a frame queued later always starts a new pump.
  async #pump(): Promise<void> {
    try {
      while (!this.#closed) {
        const batch: Write[] = [], sealed: Uint8Array[] = [];
        let size = 0;
        while (!this.#closed) {
          const queue = this.#urgent.length ? this.#urgent : this.#queue;
          const w = queue[0];
          if (!w || (batch.length && (size >= SMALL_FRAME || size + w.size > COALESCE))) break;
          queue.shift();
          if (this.#sealer.spent) {
            w.reject(new TunnelError("The tunnel's frame counter is spent", "tunnel_closed"));
            this.close("its frame counter is spent");
            break;
          }
          const f = this.#sealer.seal(w.parts);
          batch.push(w);
          sealed.push(f);
          size += f.length;
        }
        if (this.#closed) {
          const e = new TunnelError(`The tunnel is closed: ${this.#closed}`, "tunnel_closed");
          for (const w of batch) w.reject(e);
          return;
        }
        if (!batch.length) break;
        let bytes = sealed[0];
        if (sealed.length > 1) {
          bytes = new Uint8Array(size);
          let at = 0;
          for (const f of sealed) {
            bytes.set(f, at);
            at += f.length;
          }
        }
        try {
          await writeAll(this.#conn, bytes);
        } catch (err) {
          const e = new TunnelError("The connection dropped", "tunnel_closed", err);
          for (const w of batch) w.reject(e);
          this.close("the connection dropped");
          return;
        }
        for (const w of batch) w.resolve();
      }
    } finally {
      this.#writing = false;
    }
  }

  /**
   * Receives the next frame.
   * @returns Its plaintext, or null once the tunnel is closed (by either side).
   * @throws {TunnelError} When a frame does not authenticate or is malformed; the tunnel is then
   * closed.
   */
  async receive(): Promise<Uint8Array | null> {
    if (this.#closed) return null;
    if (this.#receiving) throw new TunnelError("A receive is already waiting", "tunnel_protocol");
    this.#receiving = true;
    try {
      let f;
      try {
        f = await this.#reader.frame();
      } catch (err) {
        if (this.#closed) return null;
        if (err instanceof TunnelError && err.code === "tunnel_protocol") throw err;
        this.close("the connection dropped");
        return null;
      }
      if (!f) {
        this.close("the peer closed the connection");
        return null;
      }
      try {
        return this.#opener.open(f.head, f.body);
      } catch (err) {
        throw new TunnelError(
          "A frame did not authenticate: the tunnel is closed",
          "tunnel_auth",
          err,
        );
      }
    } catch (err) {
      this.close((err as Error).message);
      throw err;
    } finally {
      this.#receiving = false;
    }
  }

  /** Receives frames until the tunnel closes. */
  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    while (true) {
      const f = await this.receive();
      if (f === null) return;
      yield f;
    }
  }

  /**
   * Closes the tunnel: pending and later sends fail, a waiting receive returns null.
   * @param reason Why, kept in {@linkcode Tunnel.closeReason}.
   */
  close(reason = "closed"): void {
    if (this.#closed) return;
    this.#closed = reason;
    closeQuietly(this.#conn);
    const e = new TunnelError(`The tunnel is closed: ${reason}`, "tunnel_closed");
    for (const w of [...this.#urgent.splice(0), ...this.#queue.splice(0)]) w.reject(e);
    void (this.#pumping ?? Promise.resolve()).then(() => this.#resolveDone());
  }
}

export type { Tunnel };

/** Settings of {@linkcode connectTunnel}. */
export interface TunnelConnectOptions {
  /** Time the connection and handshake may take, ms (default 5000). */
  timeoutMs?: number;
  /** Gives up when aborted. */
  signal?: AbortSignal;
}

/**
 * Connects to a volume's tunnel as its consumer.
 * @param endpoint The provider's tunnel endpoint (`host:port` or an object).
 * @param params The volume and the keys.
 * @param options Deadline.
 * @returns The established tunnel.
 * @throws {ValidationError} When the parameters are invalid.
 * @throws {TunnelError} `tunnel_unreachable`, `tunnel_refused` (the provider does not know the
 * volume or this key), `tunnel_auth` (the peer is not the provider: it failed to prove its key),
 * `tunnel_timeout`, `tunnel_protocol`.
 */
export async function connectTunnel(
  endpoint: TunnelEndpoint | string,
  params: TunnelClientParams,
  options: TunnelConnectOptions = {},
): Promise<Tunnel> {
  const ep = checkEndpoint(endpoint);
  if (!isUuid(params?.volumeId)) throw new ValidationError("The volume id is not a UUID");
  checkTunnelKeys(params.clientStatic);
  checkPublic(params.serverPublic, "provider's public key");
  const staticKey = privateKeyObject(params.clientStatic.privateKey);
  const staticStatic = x25519(staticKey, params.serverPublic);
  const timeoutMs = options.timeoutMs ?? HANDSHAKE_TIMEOUT_MS;
  options.signal?.throwIfAborted();

  const abort = new AbortController();
  let timedOut = false;
  let conn: Deno.TcpConn | undefined;
  const stop = () => {
    abort.abort();
    if (conn) closeQuietly(conn);
  };
  const timer = setTimeout(() => {
    timedOut = true;
    stop();
  }, timeoutMs);
  options.signal?.addEventListener("abort", stop, { once: true });
  const fail = (message: string, code: TunnelErrorCode, cause?: unknown) =>
    timedOut
      ? new TunnelError(
        `The tunnel to ${formatEndpoint(ep)} took over ${timeoutMs} ms`,
        "tunnel_timeout",
        cause,
      )
      : options.signal?.aborted
      ? new TunnelError("The tunnel was given up", "tunnel_closed", cause)
      : new TunnelError(message, code, cause);
  try {
    try {
      conn = await Deno.connect({ hostname: ep.hostname, port: ep.port, signal: abort.signal });
    } catch (err) {
      throw fail(
        `Cannot reach ${formatEndpoint(ep)}: ${(err as Error).message}`,
        "tunnel_unreachable",
        err,
      );
    }
    if (abort.signal.aborted) throw fail("The tunnel was given up", "tunnel_closed");
    conn.setNoDelay(true);
    conn.setKeepAlive(true);
    const eph = newKeyPair();
    const nonce = new Uint8Array(randomBytes(NONCE_BYTES));
    const reader = new Reader(conn);
    const refused = "The provider refused the tunnel: it does not know this volume or this key";
    let opener: FrameOpener, sealer: FrameSealer;
    try {
      await writeAll(
        conn,
        encodeHello({ volumeId: params.volumeId, ephemeral: eph.publicKey, nonce }),
      );
      const replyBytes = await reader.exact(REPLY_BYTES);
      if (!replyBytes) throw fail(refused, "tunnel_refused");
      const reply = decodeReply(replyBytes);
      const dh = clientSecrets(
        staticKey,
        eph.privateKey,
        params.serverPublic,
        reply.ephemeral,
        staticStatic,
      );
      const keys = deriveKeys({
        volumeId: params.volumeId,
        clientStatic: params.clientStatic.publicKey,
        serverStatic: params.serverPublic,
        clientEphemeral: eph.publicKey,
        serverEphemeral: reply.ephemeral,
        clientNonce: nonce,
        serverNonce: reply.nonce,
        dh,
      });
      sealer = new FrameSealer(keys.clientToServer);
      opener = new FrameOpener(keys.serverToClient);
      await writeAll(conn, sealer.seal([CLIENT_READY]));
      const f = await reader.frame();
      if (!f) throw fail(refused, "tunnel_refused");
      let ready: Uint8Array;
      try {
        ready = opener.open(f.head, f.body);
      } catch (err) {
        throw fail("The peer failed to prove it holds the provider's key", "tunnel_auth", err);
      }
      if (!same(ready, SERVER_READY)) {
        throw fail("The peer failed to prove it holds the provider's key", "tunnel_auth");
      }
    } catch (err) {
      if (err instanceof TunnelError) throw err;
      if (err instanceof ValidationError) {
        throw fail(`The provider broke the handshake: ${err.message}`, "tunnel_protocol", err);
      }
      throw fail(refused, "tunnel_refused", err);
    }
    return new Tunnel({ volumeId: params.volumeId, role: "client", conn, reader, sealer, opener });
  } catch (err) {
    if (conn) closeQuietly(conn);
    throw err;
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", stop);
  }
}

interface Registration {
  params: TunnelServerParams;
  staticKey: ReturnType<typeof privateKeyObject>;
  staticStatic: Uint8Array;
  handler: TunnelHandler;
  tunnels: Set<Tunnel>;
  running: Set<Promise<void>>;
}

/** Settings of a {@linkcode TunnelServer}. */
export interface TunnelServerOptions {
  /** Where the server logs (default: nowhere). */
  log?: Logger;
  /** Time a client has to complete its handshake, ms (default 5000). */
  handshakeTimeoutMs?: number;
  /** Handshakes under way at most; further connections are closed at once (default 256). */
  maxHandshakes?: number;
}

/**
 * The provider's tunnel listener: one TCP endpoint for the tunnels of all its volumes.
 *
 * @example
 * ```ts ignore
 * const server = new TunnelServer();
 * const endpoint = await server.listen({ hostname: "127.0.0.1", port: 0 });
 * server.register(volumeId, { serverStatic, clientPublic }, async (tunnel) => {
 *   for await (const frame of tunnel) await tunnel.send(frame); // echo
 * });
 * ```
 */
export class TunnelServer {
  readonly #log: Logger;
  readonly #handshakeTimeoutMs: number;
  readonly #maxHandshakes: number;
  readonly #regs = new Map<string, Registration>();
  readonly #handshaking = new Set<Deno.TcpConn>();
  readonly #tasks = new Set<Promise<void>>();
  #listener?: Deno.TcpListener;
  #accepting?: Promise<void>;
  #endpoint?: TunnelEndpoint;
  #closed = false;

  /**
   * Makes a server; it listens once {@linkcode TunnelServer.listen} is called.
   * @param options Logger and limits.
   */
  constructor(options: TunnelServerOptions = {}) {
    this.#log = options.log ?? discardLogger;
    this.#handshakeTimeoutMs = options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    this.#maxHandshakes = options.maxHandshakes ?? 256;
  }

  /** Where the server listens, once it does. */
  get endpoint(): TunnelEndpoint | undefined {
    return this.#endpoint;
  }

  /**
   * Starts listening.
   * @param addr Host and port (port 0 picks a free one).
   * @returns The endpoint listened on.
   * @throws {TrueCloudError} When the server already listens or is closed, or the port is taken.
   */
  listen(
    addr: TunnelEndpoint | string = { hostname: "127.0.0.1", port: 0 },
  ): Promise<TunnelEndpoint> {
    const ep = checkEndpoint(addr);
    if (this.#closed || this.#listener) {
      return Promise.reject(
        new TrueCloudError("The tunnel server is closed or listening", { code: "closed" }),
      );
    }
    try {
      this.#listener = Deno.listen({ hostname: ep.hostname, port: ep.port, transport: "tcp" });
    } catch (err) {
      return Promise.reject(
        new TrueCloudError(`Cannot listen on ${formatEndpoint(ep)}: ${(err as Error).message}`, {
          code: "listen_failed",
          cause: err,
        }),
      );
    }
    const a = this.#listener.addr as Deno.NetAddr;
    this.#endpoint = { hostname: a.hostname, port: a.port };
    this.#accepting = this.#accept(this.#listener);
    this.#log.info("Tunnel server listening", { endpoint: formatEndpoint(this.#endpoint) });
    return Promise.resolve(this.#endpoint);
  }

  /** The volumes registered. */
  volumes(): string[] {
    return [...this.#regs.keys()];
  }

  /**
   * Lets the holder of `params.clientPublic`'s private key reach a volume. Registering a volume
   * again with other keys closes the tunnels opened with the old ones; with the same keys, only
   * the handler changes (for new tunnels).
   * @param volumeId The volume's UUID.
   * @param params This side's key pair and the consumer's public key.
   * @param handler Serves each tunnel.
   * @throws {ValidationError} When the id or keys are invalid.
   */
  register(volumeId: string, params: TunnelServerParams, handler: TunnelHandler): void {
    if (!isUuid(volumeId)) throw new ValidationError("The volume id is not a UUID");
    checkTunnelKeys(params?.serverStatic);
    checkPublic(params.clientPublic, "consumer's public key");
    if (typeof handler !== "function") throw new ValidationError("The tunnel handler is missing");
    const staticKey = privateKeyObject(params.serverStatic.privateKey);
    const staticStatic = x25519(staticKey, params.clientPublic);
    const old = this.#regs.get(volumeId);
    if (
      old && same(old.params.serverStatic.privateKey, params.serverStatic.privateKey) &&
      same(old.params.clientPublic, params.clientPublic)
    ) {
      old.handler = handler;
      return;
    }
    const params2 = {
      serverStatic: {
        publicKey: params.serverStatic.publicKey.slice(),
        privateKey: params.serverStatic.privateKey.slice(),
      },
      clientPublic: params.clientPublic.slice(),
    };
    this.#regs.set(volumeId, {
      params: params2,
      staticKey,
      staticStatic,
      handler,
      tunnels: new Set(),
      running: new Set(),
    });
    if (old) { for (const t of old.tunnels) t.close("the volume's keys changed"); }
  }

  /**
   * Stops a volume's tunnels: no new ones, and those open are closed.
   * @returns Settles once their handlers have returned.
   */
  async unregister(volumeId: string): Promise<void> {
    const reg = this.#regs.get(volumeId);
    if (!reg) return;
    this.#regs.delete(volumeId);
    for (const t of reg.tunnels) t.close("the volume is no longer served");
    await Promise.allSettled([...reg.running]);
  }

  async #accept(listener: Deno.TcpListener): Promise<void> {
    while (true) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch {
        return; // closed
      }
      if (this.#closed || this.#handshaking.size >= this.#maxHandshakes) {
        closeQuietly(conn);
        continue;
      }
      const task = this.#serve(conn).catch((err) => {
        this.#log.warn("Tunnel connection failed", { err });
      });
      this.#tasks.add(task);
      void task.finally(() => this.#tasks.delete(task));
    }
  }

  async #serve(conn: Deno.TcpConn): Promise<void> {
    this.#handshaking.add(conn);
    const a = conn.remoteAddr as Deno.NetAddr;
    const remote = formatEndpoint({ hostname: a.hostname, port: a.port });
    const timer = setTimeout(() => {
      this.#log.info("Tunnel handshake timed out", { remote });
      closeQuietly(conn);
    }, this.#handshakeTimeoutMs);
    let tunnel: Tunnel | undefined;
    let reg: Registration | undefined;
    try {
      conn.setNoDelay(true);
      conn.setKeepAlive(true);
      const reader = new Reader(conn);
      const helloBytes = await reader.exact(HELLO_BYTES);
      if (!helloBytes) return;
      const hello = decodeHello(helloBytes);
      reg = this.#regs.get(hello.volumeId);
      if (!reg) {
        this.#log.info("Tunnel refused: unknown volume", { remote, volume: hello.volumeId });
        return;
      }
      const eph = newKeyPair();
      const nonce = new Uint8Array(randomBytes(NONCE_BYTES));
      const dh = serverSecrets(
        reg.staticKey,
        eph.privateKey,
        reg.params.clientPublic,
        hello.ephemeral,
        reg.staticStatic,
      );
      const keys = deriveKeys({
        volumeId: hello.volumeId,
        clientStatic: reg.params.clientPublic,
        serverStatic: reg.params.serverStatic.publicKey,
        clientEphemeral: hello.ephemeral,
        serverEphemeral: eph.publicKey,
        clientNonce: hello.nonce,
        serverNonce: nonce,
        dh,
      });
      const sealer = new FrameSealer(keys.serverToClient);
      const opener = new FrameOpener(keys.clientToServer);
      await writeAll(conn, encodeReply({ ephemeral: eph.publicKey, nonce }));
      const f = await reader.frame();
      if (!f) return;
      let ready: Uint8Array | undefined;
      try {
        ready = opener.open(f.head, f.body);
      } catch {
        // Falls through: not the consumer.
      }
      if (!ready || !same(ready, CLIENT_READY)) {
        this.#log.info("Tunnel refused: the client failed to prove the consumer's key", {
          remote,
          volume: hello.volumeId,
        });
        return;
      }
      if (this.#closed || this.#regs.get(hello.volumeId) !== reg) return;
      await writeAll(conn, sealer.seal([SERVER_READY]));
      tunnel = new Tunnel({
        volumeId: hello.volumeId,
        role: "server",
        conn,
        reader,
        sealer,
        opener,
      });
    } catch (err) {
      this.#log.debug("Tunnel handshake failed", { remote, err });
    } finally {
      clearTimeout(timer);
      this.#handshaking.delete(conn);
      if (!tunnel) closeQuietly(conn);
    }
    if (!tunnel || !reg) return;
    this.#log.debug("Tunnel open", { remote, volume: tunnel.volumeId });
    reg.tunnels.add(tunnel);
    const running = (async () => {
      try {
        await reg.handler(tunnel);
      } catch (err) {
        this.#log.warn("Tunnel handler failed", { volume: tunnel.volumeId, err });
      } finally {
        tunnel.close("the handler returned");
        await tunnel.done;
        reg.tunnels.delete(tunnel);
      }
    })();
    reg.running.add(running);
    await running;
    reg.running.delete(running);
  }

  /** Stops listening, closes every tunnel and waits for their handlers. */
  async close(): Promise<void> {
    if (this.#closed) {
      await Promise.allSettled([...this.#tasks]);
      return;
    }
    this.#closed = true;
    try {
      this.#listener?.close();
    } catch {
      // Already closed.
    }
    await this.#accepting;
    for (const conn of this.#handshaking) closeQuietly(conn);
    for (const reg of this.#regs.values()) {
      for (const t of reg.tunnels) t.close("the tunnel server is closing");
    }
    this.#regs.clear();
    while (this.#tasks.size) await Promise.allSettled([...this.#tasks]);
  }
}
