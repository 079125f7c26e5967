/**
 * The overlay: management VPNs as libp2p private networks, member credentials, the guest networks
 * newcomers join through (`docs/protocol/join.md`).
 *
 * @module
 */

export * from "./credential.ts";
export * from "./secret.ts";
export * from "./vpn.ts";
export * from "./rekey.ts";
export * from "./wire.ts";
export * from "./guest.ts";
