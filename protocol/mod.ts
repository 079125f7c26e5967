/**
 * The open protocols of True Cloud: identities, signed envelopes, UUIDs, wire-type validation,
 * error families, logging and time. Every other part speaks through this module.
 *
 * @module
 */

export * from "./clock.ts";
export * from "./envelope.ts";
export * from "./errors.ts";
export * from "./identity.ts";
export * from "./logger.ts";
export * from "./schema.ts";
export * from "./uuid.ts";
export * from "./http.ts";
export * from "./bytes.ts";
export * from "./random.ts";
