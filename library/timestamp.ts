/**
 * The online timestamp role: re-signs `timestamp.json` before it expires, so that clients never
 * see a frozen repository while the gateway is up. Runs where the timestamp key is held (the
 * gateway, or the local cloud).
 *
 * @module
 */

import { Metadata, MetadataKind, type Timestamp } from "@tufjs/models";
import { type Clock, discardLogger, type Logger, systemClock } from "../protocol/mod.ts";
import { metadataBytes, signWith, tufExpiry, type TufSigner } from "./tuf.ts";

/** Settings of a {@linkcode TimestampRefresher}. */
export interface TimestampRefresherOptions {
  /** The repository directory. */
  repository: string;
  /** The timestamp key. */
  signer: TufSigner;
  /** Lifetime of each timestamp, in days (default 1). */
  days?: number;
  /** How often to check, in milliseconds (default one minute). */
  checkEveryMs?: number;
  /** Time source. */
  clock?: Clock;
  /** Logger. */
  log?: Logger;
}

/**
 * Keeps `timestamp.json` fresh: whenever less than half of its lifetime is left, it writes the same
 * timestamp with the next version and a new expiry, signed by the timestamp key.
 */
export class TimestampRefresher {
  readonly #o: TimestampRefresherOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  #timer?: ReturnType<typeof setInterval>;

  /** @param options Repository, key, lifetime, timing, clock and logger. */
  constructor(options: TimestampRefresherOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.log ?? discardLogger;
  }

  /**
   * Re-signs the timestamp if less than half its lifetime is left.
   * @returns The version now published.
   */
  async refresh(): Promise<number> {
    const path = `${this.#o.repository}/timestamp.json`;
    const md = Metadata.fromJSON(MetadataKind.Timestamp, JSON.parse(await Deno.readTextFile(path)));
    const days = this.#o.days ?? 1;
    const now = this.#clock.now();
    const left = Date.parse(md.signed.expires) - now;
    if (left > (days * 86_400_000) / 2) return md.signed.version;
    const json = md.signed.toJSON() as Record<string, unknown>;
    json.version = md.signed.version + 1;
    json.expires = tufExpiry(new Date(now), days);
    const next = new Metadata<Timestamp>(
      Metadata.fromJSON(MetadataKind.Timestamp, { signed: json, signatures: [] } as never).signed,
    );
    signWith(next, [this.#o.signer]);
    const tmp = `${path}.tmp`;
    await Deno.writeFile(tmp, metadataBytes(next));
    await Deno.rename(tmp, path);
    this.#log.info("Timestamp re-signed", {
      version: next.signed.version,
      expires: next.signed.expires,
    });
    return next.signed.version;
  }

  /** Checks now and then every interval. */
  start(): void {
    const run = () =>
      this.refresh().catch((err) => this.#log.warn("Timestamp refresh failed", { err }));
    run();
    this.#timer = setInterval(run, this.#o.checkEveryMs ?? 60_000);
  }

  /** Stops checking. */
  stop(): void {
    clearInterval(this.#timer);
  }
}
