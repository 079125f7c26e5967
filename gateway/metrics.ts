/**
 * Gateway metrics in the Prometheus text format, with `prom-client`. Each gateway has its own
 * registry, so several can run in one process (the local cloud, tests).
 *
 * @module
 */

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

/** The gateway's metrics. */
export class GatewayMetrics {
  /** The registry to expose at `/metrics`. */
  readonly registry: Registry;
  /** Requests by method, route and status. */
  readonly requests: Counter<"method" | "route" | "status">;
  /** Request duration by method and route. */
  readonly duration: Histogram<"method" | "route">;
  /** Requests refused by the rate limit. */
  readonly rateLimited: Counter;
  /** Requests in flight. */
  readonly inFlight: Gauge;

  /**
   * @param options `defaultMetrics`: also export process metrics (memory, CPU, event-loop lag).
   */
  constructor(options: { defaultMetrics?: boolean } = {}) {
    this.registry = new Registry();
    const registers = [this.registry];
    this.requests = new Counter({
      name: "truecloud_http_requests_total",
      help: "HTTP requests answered, by method, route and status.",
      labelNames: ["method", "route", "status"],
      registers,
    });
    this.duration = new Histogram({
      name: "truecloud_http_request_duration_seconds",
      help: "Time to produce the response headers, by method and route.",
      labelNames: ["method", "route"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.rateLimited = new Counter({
      name: "truecloud_http_rate_limited_total",
      help: "Requests refused with 429 by the per-client rate limit.",
      registers,
    });
    this.inFlight = new Gauge({
      name: "truecloud_http_requests_in_flight",
      help: "Requests being handled.",
      registers,
    });
    if (options.defaultMetrics) {
      collectDefaultMetrics({ register: this.registry, prefix: "truecloud_" });
    }
  }

  /**
   * Adds a gauge whose value is read when metrics are scraped.
   * @param name Metric name.
   * @param help Description.
   * @param labelNames Label names.
   * @param read Called at scrape time; returns the values by label set.
   */
  gauge<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    read: () => { labels: Record<L, string>; value: number }[],
  ): void {
    new Gauge({
      name,
      help,
      labelNames: labelNames as L[],
      registers: [this.registry],
      collect() {
        this.reset();
        for (const { labels, value } of read()) this.set(labels as never, value);
      },
    });
  }
}
