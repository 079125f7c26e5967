/**
 * The management-VPN discovery service: signed VPN records, their store on Deno KV, replication
 * between replicas, the randomised RSS feed and the subscriber's verifying reader. The protocol is
 * in `docs/protocol/discovery.md`.
 *
 * @module
 */

export * from "./address.ts";
export * from "./app.ts";
export * from "./feed.ts";
export * from "./feed_reader.ts";
export * from "./record.ts";
export * from "./replication.ts";
export * from "./service.ts";
export * from "./store.ts";
export * from "./publisher.ts";
