/**
 * UUIDs: VPNs, records, geographic locations and network endpoints are named by RFC 9562 UUIDs,
 * written in lowercase hyphenated form.
 *
 * @module
 */

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/**
 * Makes a new random (version 4) UUID.
 * @returns A lowercase hyphenated UUID.
 */
export function newUuid(): string {
  return crypto.randomUUID();
}

/**
 * Tells whether a string is a UUID in the canonical lowercase hyphenated form (versions 1 to 8).
 * @param value Any string.
 * @returns `true` for a canonical UUID.
 */
export function isUuid(value: string): boolean {
  return UUID_RE.test(value);
}
