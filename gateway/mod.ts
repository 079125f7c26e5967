/**
 * The public gateway: a Hono app that composes the other parts' sub-apps behind HTTPS, security
 * headers, limits, metrics and logs, and the server that runs it.
 *
 * @module
 */

export * from "./app.ts";
export * from "./config.ts";
export * from "./gateway.ts";
export * from "./metrics.ts";
export * from "./rate_limit.ts";
export * from "./server.ts";
export * from "./tls.ts";
