/**
 * The online roles: re-sign `snapshot.json` and `timestamp.json` before they expire, so that
 * clients never see a frozen repository while the gateway is up. Runs where the online keys are
 * held (the gateway, or the local cloud).
 *
 * @module
 */

import { Metadata, MetadataKind, type Snapshot, type Timestamp } from "@tufjs/models";
import { type Clock, discardLogger, type Logger, systemClock } from "../protocol/mod.ts";
import {
  buildTimestamp,
  EXPIRY_DAYS,
  metadataBytes,
  signWith,
  tufExpiry,
  type TufSigner,
} from "./tuf.ts";

/** Settings of a {@linkcode TimestampRefresher}. */
export interface TimestampRefresherOptions {
  /** The repository directory. */
  repository: string;
  /** The timestamp key. */
  signer: TufSigner;
  /** The snapshot key; without it only the timestamp is refreshed. */
  snapshotSigner?: TufSigner;
  /** Lifetime of each timestamp, in days (default 1). */
  days?: number;
  /** Lifetime of each snapshot, in days (default 7). */
  snapshotDays?: number;
  /** How often to check, in milliseconds (default one minute). */
  checkEveryMs?: number;
  /** Time source. */
  clock?: Clock;
  /** Logger. */
  log?: Logger;
}

async function writeAtomically(path: string, bytes: Uint8Array): Promise<void> {
  await Deno.writeFile(`${path}.tmp`, bytes);
  await Deno.rename(`${path}.tmp`, path);
}

/**
 * Keeps the online metadata fresh: whenever less than half of its lifetime is left, the snapshot
 * (if its key is here) and then the timestamp are written again with the next version and a new
 * expiry. A new snapshot always gets a new timestamp that names it.
 */
export class TimestampRefresher {
  readonly #o: TimestampRefresherOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  #timer?: ReturnType<typeof setInterval>;

  /** @param options Repository, keys, lifetimes, timing, clock and logger. */
  constructor(options: TimestampRefresherOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.log ?? discardLogger;
  }

  #stale(expires: string, days: number): boolean {
    return Date.parse(expires) - this.#clock.now() <= (days * 86_400_000) / 2;
  }

  /**
   * Re-signs what is past half its lifetime.
   * @returns The timestamp version now published.
   */
  async refresh(): Promise<number> {
    const dir = this.#o.repository;
    const now = new Date(this.#clock.now());
    const read = async (name: string) => JSON.parse(await Deno.readTextFile(`${dir}/${name}`));
    const ts = Metadata.fromJSON(MetadataKind.Timestamp, await read("timestamp.json"));
    let snapshot: Metadata<Snapshot> | undefined;
    const snapshotDays = this.#o.snapshotDays ?? EXPIRY_DAYS.snapshot;
    if (this.#o.snapshotSigner) {
      const current = Metadata.fromJSON(MetadataKind.Snapshot, await read("snapshot.json"));
      if (this.#stale(current.signed.expires, snapshotDays)) {
        const json = {
          ...current.signed.toJSON(),
          version: current.signed.version + 1,
          expires: tufExpiry(now, snapshotDays),
        };
        snapshot = signWith(
          Metadata.fromJSON(MetadataKind.Snapshot, { signed: json, signatures: [] } as never),
          [this.#o.snapshotSigner],
        );
        await writeAtomically(`${dir}/snapshot.json`, metadataBytes(snapshot));
        this.#log.info("Snapshot re-signed", { version: snapshot.signed.version });
      }
    }
    const days = this.#o.days ?? EXPIRY_DAYS.timestamp;
    if (!snapshot && !this.#stale(ts.signed.expires, days)) return ts.signed.version;
    let next: Metadata<Timestamp>;
    if (snapshot) {
      next = buildTimestamp(snapshot, {
        version: ts.signed.version + 1,
        expires: tufExpiry(now, days),
        development: ts.signed.unrecognizedFields["x-truecloud-development"] === true,
      });
    } else {
      const json = {
        ...ts.signed.toJSON(),
        version: ts.signed.version + 1,
        expires: tufExpiry(now, days),
      };
      next = Metadata.fromJSON(MetadataKind.Timestamp, { signed: json, signatures: [] } as never);
    }
    signWith(next, [this.#o.signer]);
    await writeAtomically(`${dir}/timestamp.json`, metadataBytes(next));
    this.#log.info("Timestamp re-signed", {
      version: next.signed.version,
      expires: next.signed.expires,
    });
    return next.signed.version;
  }

  /** Checks now and then every interval. */
  start(): void {
    const run = () =>
      this.refresh().catch((err) => this.#log.warn("Online metadata refresh failed", { err }));
    run();
    this.#timer = setInterval(run, this.#o.checkEveryMs ?? 60_000);
  }

  /** Stops checking. */
  stop(): void {
    clearInterval(this.#timer);
  }
}
