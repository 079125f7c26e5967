/**
 * The guardian's side of discovery: publishes a VPN's record to a discovery endpoint, re-issues it
 * at half its lifetime so it never lapses, and withdraws it when the VPN is full.
 *
 * @module
 */

import {
  type Clock,
  discardLogger,
  type Logger,
  type NodeIdentity,
  systemClock,
  TrueCloudError,
} from "../protocol/mod.ts";
import { signVpnRecord, type SolicitingData, type WithdrawnData } from "./record.ts";

/** Settings of a {@linkcode RecordPublisher}. */
export interface PublisherOptions {
  /** The guardian's identity. */
  guardian: NodeIdentity;
  /** Base URLs of discovery endpoints (`…/discovery`); each publication goes to the first that takes it. */
  endpoints: readonly string[];
  /** Record lifetime in seconds (default one day). */
  ttlSeconds?: number;
  /** Fetch to use (for a client that trusts a private CA). */
  fetch?: typeof fetch;
  /** Time source. */
  clock?: Clock;
  /** Logger. */
  log?: Logger;
}

/**
 * Publishes one guardian's records and keeps them fresh.
 *
 * @example
 * ```ts ignore
 * const pub = new RecordPublisher({ guardian, endpoints: ["https://127.0.0.1:8443/discovery"] });
 * await pub.solicit({ v: 1, vpn, state: "soliciting", ips, guestPort: 4001, guestKey });
 * await pub.withdraw(vpn, "full");
 * pub.stop();
 * ```
 */
export class RecordPublisher {
  readonly #o: PublisherOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #fetch: typeof fetch;
  readonly #refresh = new Map<string, ReturnType<typeof setTimeout>>();
  readonly #lastIat = new Map<string, number>();

  /** @param options Identity, endpoints, lifetime, fetch, clock and logger. */
  constructor(options: PublisherOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.log ?? discardLogger;
    this.#fetch = options.fetch ?? fetch;
  }

  /**
   * Signs and submits a record to the first endpoint that takes it.
   * @param data The record's data.
   * @returns The endpoint's answer.
   * @throws {TrueCloudError} When every endpoint refused or was unreachable (the last reason).
   */
  async publish(
    data: SolicitingData | WithdrawnData,
  ): Promise<{ status: string; endpoint: string }> {
    try {
      return await this.#publishOnce(data);
    } catch (err) {
      // A record of the same second by this guardian (from another process, say) may be stored:
      // sign again a second later, once.
      if (!(err instanceof TrueCloudError) || err.code !== "stale") throw err;
      this.#lastIat.set(data.vpn, Math.floor(this.#clock.now() / 1000));
      await new Promise((r) => setTimeout(r, 1000 - (this.#clock.now() % 1000)));
      return await this.#publishOnce(data);
    }
  }

  async #publishOnce(
    data: SolicitingData | WithdrawnData,
  ): Promise<{ status: string; endpoint: string }> {
    // A later record must have a later time of issue, or the order between two records of the
    // same second would fall to their random ids: step a second past the last one if needed.
    const iat = Math.max(
      Math.floor(this.#clock.now() / 1000),
      (this.#lastIat.get(data.vpn) ?? -Infinity) + 1,
    );
    this.#lastIat.set(data.vpn, iat);
    const jws = await signVpnRecord(this.#o.guardian, data, {
      ttlSeconds: this.#o.ttlSeconds,
      clock: { now: () => iat * 1000 },
    });
    let last: unknown;
    for (const endpoint of this.#o.endpoints) {
      try {
        const res = await this.#fetch(`${endpoint.replace(/\/+$/, "")}/records`, {
          method: "POST",
          headers: { "content-type": "application/jose" },
          body: jws,
          signal: AbortSignal.timeout(10_000),
        });
        const body = await res.json().catch(() => ({}));
        if (res.ok) return { status: body.status, endpoint };
        last = new TrueCloudError(
          `Discovery refused the record: ${res.status} ${body?.error?.code ?? ""} ${
            body?.error?.message ?? ""
          }`.trim(),
          { code: body?.error?.code ?? "refused", status: res.status },
        );
        if (res.status < 500 && res.status !== 429) break; // the record itself is at fault
      } catch (err) {
        last = err;
      }
    }
    throw last instanceof TrueCloudError
      ? last
      : new TrueCloudError(`No discovery endpoint took the record: ${(last as Error)?.message}`, {
        code: "unreachable",
        cause: last,
      });
  }

  /**
   * Publishes a soliciting record and re-issues it at half its lifetime until withdrawn or stopped.
   * @param data The soliciting record's data.
   */
  async solicit(data: SolicitingData): Promise<void> {
    this.#cancel(data.vpn);
    await this.publish(data);
    const ttl = this.#o.ttlSeconds ?? 24 * 3600;
    const again = () => {
      this.publish(data)
        .then(() => this.#refresh.set(data.vpn, setTimeout(again, (ttl * 1000) / 2)))
        .catch((err) => {
          this.#log.warn("Record refresh failed, retrying", { vpn: data.vpn, err });
          this.#refresh.set(data.vpn, setTimeout(again, Math.min(60_000, (ttl * 1000) / 8)));
        });
    };
    this.#refresh.set(data.vpn, setTimeout(again, (ttl * 1000) / 2));
  }

  /**
   * Withdraws a VPN's record (the VPN is full or closing) and stops refreshing it.
   * @param vpn The VPN's UUID.
   * @param reason Why.
   */
  async withdraw(vpn: string, reason: WithdrawnData["reason"] = "full"): Promise<void> {
    this.#cancel(vpn);
    await this.publish({ v: 1, vpn, state: "withdrawn", reason });
  }

  #cancel(vpn: string): void {
    clearTimeout(this.#refresh.get(vpn));
    this.#refresh.delete(vpn);
  }

  /** Stops every refresh; published records stay until they expire. */
  stop(): void {
    for (const t of this.#refresh.values()) clearTimeout(t);
    this.#refresh.clear();
  }
}
