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

/**
 * The 16 bytes of a UUID.
 * @param id A canonical UUID.
 * @throws {Error} When it is not one (callers check with {@linkcode isUuid} to word their own).
 */
export function uuidToBytes(id: string): Uint8Array {
  if (!isUuid(id)) throw new Error(`Not a UUID: ${JSON.stringify(id).slice(0, 60)}`);
  const hex = id.replaceAll("-", "");
  return Uint8Array.from({ length: 16 }, (_, i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16));
}

/**
 * 16 bytes in the lowercase hyphenated form of a UUID (version and variant are not checked).
 * @param b At least 16 bytes; the first 16 are read.
 */
export function uuidFromBytes(b: Uint8Array): string {
  const h = Array.from(b.subarray(0, 16), (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
