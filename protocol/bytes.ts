/**
 * Small byte helpers shared by every part: hexadecimal text and joining byte arrays.
 *
 * @module
 */

/**
 * Bytes as lowercase hexadecimal.
 * @param bytes The bytes.
 */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Hexadecimal text as bytes (pairs of digits; callers validate the text first).
 * @param text The hex text.
 */
export function fromHex(text: string): Uint8Array {
  return Uint8Array.from(text.match(/../g) ?? [], (h) => parseInt(h, 16));
}

/**
 * Joins byte arrays into one.
 * @param parts The arrays, in order.
 */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
