/**
 * The Resource Management Service of the node agent: joining and guarding management VPNs,
 * release attestations and admission (`docs/protocol/join.md`).
 *
 * @module
 */

export * from "./admission.ts";
export * from "./attestation.ts";
export * from "./guardian.ts";
export * from "./rms.ts";
export * from "./broadcast.ts";
export * from "./contribution.ts";
export * from "./ledger.ts";
export * from "./releases.ts";
export * from "./cdn.ts";
export * from "./cdn_node.ts";
export * from "./volumes.ts";
export * from "./probe.ts";
