/**
 * The CDN (`docs/protocol/cdn.md`): content addressing with UnixFS CIDs and the node's block store.
 * Publishing, placement and the gateway's egress are built on these.
 *
 * @module
 */

export * from "./blockstore.ts";
export * from "./content.ts";
export * from "./egress.ts";
export * from "./catalogue.ts";
export * from "./source.ts";
export * from "./car.ts";
export * from "./placement.ts";
export * from "./repair.ts";
export * from "./uplink.ts";
