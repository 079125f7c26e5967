/**
 * Schema validation of wire types, with one library (Zod 4), and the schemas shared by several
 * protocols: node ids, UUIDs, IP addresses, ports and keys.
 *
 * @module
 */

import { z } from "zod";
import { ValidationError } from "./errors.ts";
import { isNodeId } from "./identity.ts";
import { isUuid } from "./uuid.ts";

export { z };

/** A node id (see `docs/protocol/identity.md`). */
export const nodeIdSchema = z.string().max(64).refine(isNodeId, "Must be a node id (12D3KooW…)");

/** A canonical lowercase hyphenated UUID. */
export const uuidSchema = z.string().max(36).refine(isUuid, "Must be a lowercase UUID");

/** An IPv4 address in dotted-quad form or an IPv6 address. */
export const ipSchema = z.union([z.ipv4(), z.ipv6()], { error: "Must be an IPv4 or IPv6 address" });

/** A TCP or UDP port, 1 to 65535. */
export const portSchema = z.number().int().min(1).max(65535);

/** A 32-byte key in lowercase hexadecimal (64 characters), as libp2p pnet writes its keys. */
export const hexKey32Schema = z.string().regex(/^[0-9a-f]{64}$/, "Must be 64 lowercase hex digits");

/**
 * Parses a value with a schema and turns the first problem into a {@linkcode ValidationError}
 * whose message names where it is.
 *
 * @param schema The Zod schema.
 * @param value The untrusted value.
 * @param what What the value is, for the message, such as `VPN record`.
 * @returns The parsed value.
 * @throws {ValidationError} With code `invalid` and `path` set.
 */
export function parseWith<T extends z.ZodType>(
  schema: T,
  value: unknown,
  what: string,
): z.output<T> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const path = issue.path.map(String).join(".");
  throw new ValidationError(`Invalid ${what}${path ? ` at ${path}` : ""}: ${issue.message}`, {
    path,
    cause: r.error,
  });
}
