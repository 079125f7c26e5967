/**
 * A TCP proxy on 127.0.0.1 for tests: it forwards connections to a target and can stop
 * forwarding (a silent provider), inject bytes or flip a byte in the traffic. Private to the
 * tests of `node/vp/`.
 *
 * @module
 */

/** Which way traffic goes: from the dialling side to the target, or back. */
export type Direction = "up" | "down";

interface Link {
  client: Deno.TcpConn;
  target: Deno.TcpConn;
  pumps: Promise<void>[];
}

function closeQuietly(c: Deno.Conn): void {
  try {
    c.close();
  } catch {
    // Already closed.
  }
}

/** A forwarding proxy whose traffic a test controls. */
export class TestProxy {
  readonly #listener: Deno.TcpListener;
  readonly #target: Deno.NetAddr;
  readonly #links = new Set<Link>();
  readonly #accepting: Promise<void>;
  #gate?: { promise: Promise<void>; open: () => void };
  #flip?: { direction: Direction; at: number };
  #closed = false;
  /** Bytes forwarded in each direction. */
  readonly forwarded = { up: 0, down: 0 };

  private constructor(target: Deno.NetAddr) {
    this.#target = target;
    this.#listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#accepting = this.#accept();
  }

  /** Starts a proxy to `target`. */
  static start(target: { hostname: string; port: number }): TestProxy {
    return new TestProxy({ transport: "tcp", hostname: target.hostname, port: target.port });
  }

  /** Where to connect instead of the target. */
  get endpoint(): { hostname: string; port: number } {
    const a = this.#listener.addr as Deno.NetAddr;
    return { hostname: a.hostname, port: a.port };
  }

  /** Stops forwarding in both directions; connections stay open. */
  stall(): void {
    if (this.#gate) return;
    let open!: () => void;
    const promise = new Promise<void>((r) => (open = r));
    this.#gate = { promise, open };
  }

  /** Forwards again. */
  resume(): void {
    this.#gate?.open();
    this.#gate = undefined;
  }

  /** Flips one bit of the next chunk forwarded in `direction`, at byte `at` of that chunk. */
  flipNext(direction: Direction, at: number): void {
    this.#flip = { direction, at };
  }

  /** Writes raw bytes into every connection, as if sent by the other side. */
  async inject(direction: Direction, bytes: Uint8Array): Promise<void> {
    for (const l of this.#links) {
      const to = direction === "up" ? l.target : l.client;
      let at = 0;
      while (at < bytes.length) at += await to.write(bytes.subarray(at));
    }
  }

  /** Closes every connection it forwards. */
  dropAll(): void {
    for (const l of this.#links) {
      closeQuietly(l.client);
      closeQuietly(l.target);
    }
  }

  async #accept(): Promise<void> {
    while (true) {
      let client: Deno.TcpConn;
      try {
        client = await this.#listener.accept();
      } catch {
        return;
      }
      let target: Deno.TcpConn;
      try {
        target = await Deno.connect({ hostname: this.#target.hostname, port: this.#target.port });
      } catch {
        closeQuietly(client);
        continue;
      }
      const link: Link = { client, target, pumps: [] };
      link.pumps = [this.#pump(client, target, "up"), this.#pump(target, client, "down")];
      this.#links.add(link);
      void Promise.all(link.pumps).then(() => this.#links.delete(link));
    }
  }

  async #pump(from: Deno.TcpConn, to: Deno.TcpConn, direction: Direction): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (true) {
        const n = await from.read(buf);
        if (n === null) break;
        while (this.#gate) await this.#gate.promise;
        if (this.#closed) break;
        const chunk = buf.subarray(0, n);
        if (this.#flip?.direction === direction && this.#flip.at < n) {
          chunk[this.#flip.at] ^= 0x01;
          this.#flip = undefined;
        }
        let at = 0;
        while (at < n) at += await to.write(chunk.subarray(at));
        this.forwarded[direction] += n;
      }
    } catch {
      // A side closed.
    } finally {
      closeQuietly(from);
      closeQuietly(to);
    }
  }

  /** Closes the proxy and every connection, and waits for its loops. */
  async close(): Promise<void> {
    this.#closed = true;
    this.resume();
    closeQuietly(this.#listener as unknown as Deno.Conn);
    await this.#accepting;
    this.dropAll();
    await Promise.all([...this.#links].flatMap((l) => l.pumps));
  }
}
