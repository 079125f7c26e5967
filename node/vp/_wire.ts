/**
 * The block protocol's messages without any I/O (`docs/protocol/blocks.md`, "The block protocol"):
 * request and response headers, status codes and the CRC-32 of payloads. Private to `node/vp/`.
 *
 * @module
 */

import { crc32 } from "node:zlib";
import { TAG_BYTES } from "../drivers/mod.ts";

/** Operations. */
export const Op = {
  read: 1,
  write: 2,
  flush: 3,
  trim: 4,
  info: 5,
  ping: 6,
} as const;
/** An operation's code. */
export type OpCode = typeof Op[keyof typeof Op];

/** Response statuses. */
export const Status = {
  ok: 0,
  range: 1,
  failed: 2,
  checksum: 3,
  unavailable: 4,
  malformed: 5,
} as const;
/** A status code. */
export type StatusCode = typeof Status[keyof typeof Status];

/** Bytes of a request header. */
export const REQUEST_HEADER = 24;
/** Bytes of a response header. */
export const RESPONSE_HEADER = 16;
/** Bytes of an info response's payload. */
export const INFO_BYTES = 16;
/** Data bytes a read or write request carries at most (and a trim covers at most). */
export const MAX_REQUEST_BYTES = 4 * 1024 * 1024;
/** Bytes of an error reason at most. */
export const MAX_REASON = 256;
/** Bytes per block in a volume's tag file: the tag and a CRC-32. */
export const RECORD_BYTES = TAG_BYTES + 4;

/** A request as parsed. */
export interface Request {
  op: number;
  id: number;
  first: number;
  count: number;
  crc: number;
  /** Whatever follows the header. */
  payload: Uint8Array;
}

/** A response as parsed. */
export interface Response {
  op: number;
  status: number;
  id: number;
  crc: number;
  payload: Uint8Array;
}

/** The header of a request. */
export function encodeRequest(
  op: OpCode,
  id: number,
  first = 0,
  count = 0,
  crc = 0,
): Uint8Array {
  const h = new Uint8Array(REQUEST_HEADER);
  const v = new DataView(h.buffer);
  h[0] = op;
  v.setUint32(4, id);
  v.setUint32(8, Math.floor(first / 2 ** 32));
  v.setUint32(12, first % 2 ** 32);
  v.setUint32(16, count);
  v.setUint32(20, crc);
  return h;
}

/**
 * Reads a request's header.
 * @returns The request, or a string saying what is wrong with it (and its id when it has one).
 */
export function decodeRequest(b: Uint8Array): Request | { error: string; id: number } {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const id = b.length >= 8 ? v.getUint32(4) : 0;
  if (b.length < REQUEST_HEADER) return { error: "The request is shorter than its header", id };
  if (b[1] !== 0 || v.getUint16(2) !== 0) return { error: "Reserved bytes are not zero", id };
  const high = v.getUint32(8);
  if (high >= 2 ** 21) return { error: "The first block is past 2^53", id };
  return {
    op: b[0],
    id,
    first: high * 2 ** 32 + v.getUint32(12),
    count: v.getUint32(16),
    crc: v.getUint32(20),
    payload: b.subarray(REQUEST_HEADER),
  };
}

/** The header of a response. */
export function encodeResponse(op: number, status: StatusCode, id: number, crc = 0): Uint8Array {
  const h = new Uint8Array(RESPONSE_HEADER);
  const v = new DataView(h.buffer);
  h[0] = (op & 0x7f) | 0x80;
  h[1] = status;
  v.setUint32(4, id);
  v.setUint32(8, crc);
  return h;
}

/** Reads a response, or returns undefined when it is malformed. */
export function decodeResponse(b: Uint8Array): Response | undefined {
  if (b.length < RESPONSE_HEADER || !(b[0] & 0x80)) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (v.getUint16(2) !== 0 || v.getUint32(12) !== 0) return undefined;
  return {
    op: b[0] & 0x7f,
    status: b[1],
    id: v.getUint32(4),
    crc: v.getUint32(8),
    payload: b.subarray(RESPONSE_HEADER),
  };
}

/** The payload of an info response. */
export function encodeInfo(blockSize: number, blockCount: number, maxRequestBytes: number) {
  const b = new Uint8Array(INFO_BYTES);
  const v = new DataView(b.buffer);
  v.setUint32(0, blockSize);
  v.setUint32(4, maxRequestBytes);
  v.setUint32(8, Math.floor(blockCount / 2 ** 32));
  v.setUint32(12, blockCount % 2 ** 32);
  return b;
}

/** Reads an info payload. */
export function decodeInfo(b: Uint8Array): {
  blockSize: number;
  blockCount: number;
  maxRequestBytes: number;
} | undefined {
  if (b.length !== INFO_BYTES) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return {
    blockSize: v.getUint32(0),
    maxRequestBytes: v.getUint32(4),
    blockCount: v.getUint32(8) * 2 ** 32 + v.getUint32(12),
  };
}

/** An error reason as at most {@linkcode MAX_REASON} bytes of UTF-8 on one line. */
export function encodeReason(reason: string): Uint8Array {
  const line = reason.replace(/[\r\n]+/g, " ");
  let b = new TextEncoder().encode(line);
  if (b.length > MAX_REASON) {
    b = b.subarray(0, MAX_REASON);
    // Do not cut a character in two: drop its first bytes if its last ones are gone.
    let lead = b.length - 1;
    while (lead > 0 && (b[lead] & 0xc0) === 0x80) lead--;
    const size = b[lead] >= 0xf0 ? 4 : b[lead] >= 0xe0 ? 3 : b[lead] >= 0xc0 ? 2 : 1;
    if (lead + size > b.length) b = b.subarray(0, lead);
  }
  return b;
}

/** CRC-32 (ISO-HDLC, as zlib) of the parts joined. */
export function crcOf(...parts: Uint8Array[]): number {
  let c = 0;
  for (const p of parts) c = crc32(p, c);
  return c >>> 0;
}
