/**
 * The consumer's side of the block protocol: a {@linkcode BlockDevice} whose blocks live on a
 * provider, reached through the volume's tunnel (`docs/protocol/blocks.md`).
 *
 * Requests are pipelined (many in flight, matched by id), large ones are split, every request has
 * a deadline, and heartbeats tell a silent provider from a slow one: a provider that does not
 * answer a heartbeat within `deadAfterMs`, or whose tunnel drops, makes the client dead.
 *
 * @module
 */

import { discardLogger, type Logger, TrueCloudError, ValidationError } from "../../protocol/mod.ts";
import {
  type BlockDevice,
  type BlockRead,
  checkBlocks,
  DeviceError,
  type DeviceErrorCode,
  TAG_BYTES,
} from "../drivers/mod.ts";
import {
  crcOf,
  decodeInfo,
  decodeResponse,
  encodeRequest,
  Op,
  type OpCode,
  type Response,
  Status,
} from "./_wire.ts";
import { MAX_BLOCK_SIZE, MIN_BLOCK_SIZE } from "./store.ts";
import {
  connectTunnel,
  type Tunnel,
  type TunnelClientParams,
  type TunnelEndpoint,
} from "./tunnel.ts";

/** Settings of {@linkcode BlockClient.connect}. */
export interface BlockClientOptions {
  /** Deadline of each call (and of connecting), ms (default 5000). */
  timeoutMs?: number;
  /** Interval of heartbeats, ms (default 1000). */
  heartbeatMs?: number;
  /**
   * A heartbeat unanswered this long, with nothing at all received from the provider meanwhile,
   * makes the client dead, ms (default 3000).
   */
  deadAfterMs?: number;
  /** Called once when the client dies (not when it is closed). */
  onDead?: (reason: string) => void;
  /** Requests in flight at most; more wait their turn (default 16). */
  maxInFlight?: number;
  /** Where the client logs (default: nowhere). */
  log?: Logger;
}

interface Pending {
  op: OpCode;
  id?: number;
  parts: Uint8Array[];
  resolve: (r: Response) => void;
  reject: (err: unknown) => void;
  timer?: ReturnType<typeof setTimeout>;
  settled: boolean;
}

type State = "connecting" | "open" | "dead" | "closed";

function positive(value: number | undefined, fallback: number, what: string): number {
  const v = value ?? fallback;
  if (!Number.isFinite(v) || v <= 0) throw new ValidationError(`${what} must be a positive number`);
  return v;
}

function failure(status: number, reason: string, what: string): DeviceError {
  const code: DeviceErrorCode = status === Status.range
    ? "device_range"
    : status === Status.unavailable
    ? "device_unavailable"
    : "device_failed";
  const cause = status === Status.checksum
    ? new TrueCloudError(reason, { code: "checksum" })
    : undefined;
  return new DeviceError(`${what}: ${reason}`, code, cause);
}

/**
 * A volume on a provider, as a {@linkcode BlockDevice}.
 *
 * Buffers passed to `write` must stay unchanged until its promise settles. A read's `data` and
 * `tags` may be views of one buffer.
 *
 * @example
 * ```ts ignore
 * const dev = await BlockClient.connect("203.0.113.9:7410", { volumeId, clientStatic, serverPublic }, {
 *   onDead: (why) => console.log("volume away:", why),
 * });
 * await dev.write(0, new Uint8Array(dev.blockSize), new Uint8Array(32));
 * const { data, tags } = await dev.read(0, 1);
 * await dev.close();
 * ```
 */
export class BlockClient implements BlockDevice {
  readonly #tunnel: Tunnel;
  readonly #log: Logger;
  readonly #timeoutMs: number;
  readonly #heartbeatMs: number;
  readonly #deadAfterMs: number;
  readonly #maxInFlight: number;
  #onDead?: (reason: string) => void;
  #state: State = "connecting";
  #deadReason?: string;
  #blockSize = 0;
  #blockCount = 0;
  #chunk = 1;
  #nextId = 0;
  readonly #pending = new Map<number, Pending>();
  readonly #waiting: Pending[] = [];
  #active = 0;
  #loop?: Promise<void>;
  #heartbeat?: ReturnType<typeof setInterval>;
  #deadTimer?: ReturnType<typeof setTimeout>;
  #pingId?: number;
  #pingAt?: number;
  #latencyMs?: number;

  private constructor(tunnel: Tunnel, o: BlockClientOptions) {
    this.#tunnel = tunnel;
    this.#log = o.log ?? discardLogger;
    this.#timeoutMs = positive(o.timeoutMs, 5000, "timeoutMs");
    this.#heartbeatMs = positive(o.heartbeatMs, 1000, "heartbeatMs");
    this.#deadAfterMs = positive(o.deadAfterMs, 3000, "deadAfterMs");
    this.#maxInFlight = positive(o.maxInFlight, 16, "maxInFlight");
  }

  /**
   * Attaches a volume: opens its tunnel, asks its shape and starts the heartbeats.
   * @param endpoint The provider's tunnel endpoint (`host:port` or an object).
   * @param params The volume and the tunnel keys.
   * @param options Deadlines, heartbeats and the death callback.
   * @throws {ValidationError} When the parameters are invalid.
   * @throws {DeviceError} `device_timeout` when the provider does not answer in time,
   * `device_unavailable` when it cannot be reached or refuses the tunnel, `device_failed` when it
   * answers nonsense.
   */
  static async connect(
    endpoint: TunnelEndpoint | string,
    params: TunnelClientParams,
    options: BlockClientOptions = {},
  ): Promise<BlockClient> {
    const timeoutMs = positive(options.timeoutMs, 5000, "timeoutMs");
    positive(options.heartbeatMs, 1000, "heartbeatMs");
    positive(options.deadAfterMs, 3000, "deadAfterMs");
    positive(options.maxInFlight, 16, "maxInFlight");
    let tunnel: Tunnel;
    try {
      tunnel = await connectTunnel(endpoint, params, { timeoutMs });
    } catch (err) {
      if (err instanceof ValidationError) throw err;
      const code = (err as TrueCloudError).code === "tunnel_timeout"
        ? "device_timeout"
        : "device_unavailable";
      throw new DeviceError(
        `Cannot attach volume ${params.volumeId}: ${(err as Error).message}`,
        code,
        err,
      );
    }
    const c = new BlockClient(tunnel, options);
    c.#loop = c.#run();
    try {
      const r = await c.#request(Op.info, 0, 0, [], 0, "Volume info");
      const info = decodeInfo(r.payload);
      if (
        !info || info.blockSize < MIN_BLOCK_SIZE || info.blockSize > MAX_BLOCK_SIZE ||
        (info.blockSize & (info.blockSize - 1)) !== 0 || info.blockCount < 1 ||
        info.maxRequestBytes < info.blockSize
      ) {
        throw new DeviceError("The provider described the volume wrongly", "device_failed");
      }
      c.#blockSize = info.blockSize;
      c.#blockCount = info.blockCount;
      c.#chunk = Math.floor(info.maxRequestBytes / info.blockSize);
    } catch (err) {
      await c.close();
      throw err;
    }
    c.#state = "open";
    c.#onDead = options.onDead;
    c.#ping();
    c.#heartbeat = setInterval(() => c.#ping(), c.#heartbeatMs);
    return c;
  }

  /** Bytes per block. */
  get blockSize(): number {
    return this.#blockSize;
  }

  /** Number of blocks. */
  get blockCount(): number {
    return this.#blockCount;
  }

  /** Round trip of the last answered heartbeat, ms. */
  get latencyMs(): number | undefined {
    return this.#latencyMs;
  }

  /** Why the client died, if it did. */
  get deadReason(): string | undefined {
    return this.#deadReason;
  }

  /** Whether calls can succeed: neither dead nor closed. */
  get alive(): boolean {
    return this.#state === "open";
  }

  #unavailable(): DeviceError | undefined {
    if (this.#state === "dead") {
      return new DeviceError(
        `The volume is unavailable: ${this.#deadReason}`,
        "device_unavailable",
      );
    }
    if (this.#state === "closed") {
      return new DeviceError("The device is closed", "device_unavailable");
    }
    return undefined;
  }

  async #run(): Promise<void> {
    while (true) {
      let frame: Uint8Array | null;
      try {
        frame = await this.#tunnel.receive();
      } catch (err) {
        this.#die(`the tunnel failed: ${(err as Error).message}`);
        return;
      }
      if (frame === null) {
        this.#die(`the tunnel closed: ${this.#tunnel.closeReason ?? "closed"}`);
        return;
      }
      const r = decodeResponse(frame);
      if (!r) {
        this.#die("the provider sent a malformed response");
        return;
      }
      if (r.op === Op.ping && r.id === this.#pingId) {
        clearTimeout(this.#deadTimer);
        this.#latencyMs = performance.now() - this.#pingAt!;
        this.#pingId = this.#pingAt = undefined;
        continue;
      }
      const p = this.#pending.get(r.id);
      if (!p) continue; // answered after its deadline
      this.#settle(p);
      if (r.op !== p.op) {
        p.reject(new DeviceError("The provider answered another operation", "device_failed"));
      } else p.resolve(r);
    }
  }

  #ping(): void {
    if (this.#state !== "open" || this.#pingId !== undefined) return;
    const id = this.#allocateId();
    this.#pingId = id;
    this.#pingAt = performance.now();
    this.#deadTimer = setTimeout(() => this.#watch(), this.#deadAfterMs);
    this.#tunnel.send(encodeRequest(Op.ping, id), { urgent: true }).catch((err) =>
      this.#sendFailed(err)
    );
  }

  // A heartbeat has gone unanswered for deadAfterMs: the provider is dead unless bytes of it
  // arrived meanwhile (a long answer under way on a slow link); then look again later.
  #watch(): void {
    if (this.#pingAt === undefined) return;
    const silent = performance.now() - Math.max(this.#pingAt, this.#tunnel.receivedAt);
    if (silent >= this.#deadAfterMs) {
      this.#die(`no answer to a heartbeat for ${this.#deadAfterMs} ms`);
    } else {
      this.#deadTimer = setTimeout(() => this.#watch(), this.#deadAfterMs - silent);
    }
  }

  #sendFailed(err: unknown): void {
    this.#die(
      this.#tunnel.closed
        ? `the tunnel closed: ${this.#tunnel.closeReason}`
        : `the tunnel failed: ${(err as Error).message}`,
    );
  }

  #allocateId(): number {
    do this.#nextId = (this.#nextId + 1) >>> 0; while (
      this.#pending.has(this.#nextId) || this.#nextId === this.#pingId
    );
    return this.#nextId;
  }

  #die(reason: string): void {
    if (this.#state !== "open" && this.#state !== "connecting") return;
    const wasOpen = this.#state === "open";
    this.#state = "dead";
    this.#deadReason = reason;
    this.#log.warn("Volume unavailable", { volume: this.#tunnel.volumeId, reason });
    this.#shutdown(this.#unavailable()!, reason);
    if (wasOpen && this.#onDead) {
      try {
        this.#onDead(reason);
      } catch (err) {
        this.#log.error("onDead failed", { err });
      }
    }
  }

  #shutdown(err: DeviceError, reason: string): void {
    clearInterval(this.#heartbeat);
    clearTimeout(this.#deadTimer);
    for (const p of [...this.#pending.values(), ...this.#waiting]) {
      this.#settle(p);
      p.reject(err);
    }
    this.#tunnel.close(reason);
  }

  // Frees what a request holds: its deadline, its id and its place in flight.
  #settle(p: Pending): void {
    if (p.settled) return;
    p.settled = true;
    clearTimeout(p.timer);
    if (p.id !== undefined) {
      this.#pending.delete(p.id);
      this.#active--;
      this.#startWaiting();
    } else {
      const at = this.#waiting.indexOf(p);
      if (at >= 0) this.#waiting.splice(at, 1);
    }
  }

  #startWaiting(): void {
    while (this.#active < this.#maxInFlight && this.#waiting.length) {
      this.#start(this.#waiting.shift()!);
    }
  }

  #start(p: Pending): void {
    this.#active++;
    p.id = this.#allocateId();
    this.#pending.set(p.id, p);
    // The header was made without an id: fill it in (bytes 4–7).
    new DataView(p.parts[0].buffer).setUint32(4, p.id);
    this.#tunnel.send(p.parts).catch((err) => this.#sendFailed(err));
  }

  #request(
    op: OpCode,
    first: number,
    count: number,
    payload: Uint8Array[],
    crc: number,
    what: string,
    signal?: AbortSignal,
  ): Promise<Response> {
    const down = this.#unavailable();
    if (down) return Promise.reject(down);
    return new Promise<Response>((resolve, reject) => {
      const header = encodeRequest(op, 0, first, count, crc);
      const p: Pending = { op, parts: [header, ...payload], resolve, reject, settled: false };
      p.timer = setTimeout(() => {
        this.#settle(p);
        reject(
          new DeviceError(`${what}: no answer within ${this.#timeoutMs} ms`, "device_timeout"),
        );
      }, this.#timeoutMs);
      if (signal) {
        const onAbort = () => {
          this.#settle(p);
          reject(
            signal.reason instanceof Error
              ? signal.reason
              : new DeviceError(`${what}: given up`, "device_unavailable"),
          );
        };
        if (signal.aborted) return onAbort();
        signal.addEventListener("abort", onAbort, { once: true });
        const done = () => signal.removeEventListener("abort", onAbort);
        p.resolve = (r) => (done(), resolve(r));
        p.reject = (e) => (done(), reject(e));
      }
      this.#waiting.push(p);
      this.#startWaiting();
    }).then((r) => {
      if (r.status !== Status.ok) {
        throw failure(r.status, new TextDecoder().decode(r.payload), what);
      }
      return r;
    });
  }

  #check(first: number, count: number, data?: Uint8Array, tags?: Uint8Array): void {
    const down = this.#unavailable();
    if (down) throw down;
    checkBlocks(this, first, count, data, tags);
  }

  async read(first: number, count: number, signal?: AbortSignal): Promise<BlockRead> {
    this.#check(first, count);
    if (count <= this.#chunk) return await this.#readChunk(first, count, signal);
    const bs = this.#blockSize;
    const data = new Uint8Array(count * bs);
    const tags = new Uint8Array(count * TAG_BYTES);
    const parts: Promise<void>[] = [];
    for (let at = first; at < first + count; at += this.#chunk) {
      const n = Math.min(this.#chunk, first + count - at);
      parts.push(
        this.#readChunk(at, n, signal).then((r) => {
          data.set(r.data, (at - first) * bs);
          tags.set(r.tags, (at - first) * TAG_BYTES);
        }),
      );
    }
    await Promise.all(parts);
    return { data, tags };
  }

  async #readChunk(first: number, count: number, signal?: AbortSignal): Promise<BlockRead> {
    const what = `Read of blocks ${first}+${count}`;
    const r = await this.#request(Op.read, first, count, [], 0, what, signal);
    const tagBytes = count * TAG_BYTES;
    if (r.payload.length !== tagBytes + count * this.#blockSize) {
      throw new DeviceError(`${what}: the answer has the wrong size`, "device_failed");
    }
    if (crcOf(r.payload) !== r.crc) {
      throw failure(Status.checksum, "the answer does not match its checksum", what);
    }
    return { data: r.payload.subarray(tagBytes), tags: r.payload.subarray(0, tagBytes) };
  }

  async write(first: number, data: Uint8Array, tags: Uint8Array): Promise<void> {
    const count = data.length / this.#blockSize;
    this.#check(first, count, data, tags);
    const bs = this.#blockSize;
    const parts: Promise<Response>[] = [];
    for (let at = first; at < first + count; at += this.#chunk) {
      const n = Math.min(this.#chunk, first + count - at);
      const t = tags.subarray((at - first) * TAG_BYTES, (at - first + n) * TAG_BYTES);
      const d = data.subarray((at - first) * bs, (at - first + n) * bs);
      parts.push(this.#request(Op.write, at, n, [t, d], crcOf(t, d), `Write of blocks ${at}+${n}`));
    }
    await Promise.all(parts);
  }

  async flush(): Promise<void> {
    await this.#request(Op.flush, 0, 0, [], 0, "Flush");
  }

  async trim(first: number, count: number): Promise<void> {
    this.#check(first, count);
    const parts: Promise<Response>[] = [];
    for (let at = first; at < first + count; at += this.#chunk) {
      const n = Math.min(this.#chunk, first + count - at);
      parts.push(this.#request(Op.trim, at, n, [], 0, `Trim of blocks ${at}+${n}`));
    }
    await Promise.all(parts);
  }

  /** Detaches: pending calls fail with `device_unavailable`, the tunnel closes (the volume stays). */
  async close(): Promise<void> {
    if (this.#state !== "closed" && this.#state !== "dead") {
      this.#state = "closed";
      this.#shutdown(this.#unavailable()!, "the client closed it");
    }
    await this.#loop;
    await this.#tunnel.done;
  }
}
