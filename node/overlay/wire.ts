/**
 * The framing of every overlay protocol (`docs/protocol/join.md`): UTF-8 JSON objects, each
 * prefixed with its length as an unsigned varint, at most 64 KiB, each read and write with a
 * deadline.
 *
 * @module
 */

import type { Stream } from "@libp2p/interface";
import { lpStream } from "@libp2p/utils";
import { TrueCloudError, ValidationError } from "../../protocol/mod.ts";

/** The largest message, in bytes. */
export const MAX_MESSAGE_BYTES = 64 * 1024;
/** The largest raw frame (a CDN block), in bytes. */
export const MAX_RAW_BYTES = 2 * 1024 * 1024;
/** How long a read or a write may take, in milliseconds. */
export const MESSAGE_DEADLINE_MS = 10_000;

/** Reads and writes JSON messages on a stream. */
export interface JsonStream {
  /**
   * Reads the next message.
   * @throws {ValidationError} `malformed` when it is not a JSON object or too long.
   * @throws {TrueCloudError} `timeout` when it does not come in time, `closed` when the stream ends.
   */
  read(): Promise<Record<string, unknown>>;
  /** Writes a message. */
  write(message: Record<string, unknown>): Promise<void>;
  /**
   * Reads a frame of raw bytes (at most 2 MiB).
   * @throws As `read`.
   */
  readRaw(): Promise<Uint8Array>;
  /** Writes a frame of raw bytes. */
  writeRaw(bytes: Uint8Array): Promise<void>;
}

/**
 * Wraps a stream.
 * @param stream A libp2p stream.
 * @param deadlineMs Deadline of each read and write.
 * @returns The JSON stream.
 */
export function jsonStream(stream: Stream, deadlineMs = MESSAGE_DEADLINE_MS): JsonStream {
  // One framing for both kinds of frame; JSON messages are held to their own, smaller limit.
  const lp = lpStream(stream, { maxDataLength: MAX_RAW_BYTES });
  const frame = async (max: number): Promise<Uint8Array> => {
    let bytes: Uint8Array;
    try {
      bytes = (await lp.read({ signal: AbortSignal.timeout(deadlineMs) })).subarray();
    } catch (err) {
      const name = (err as Error)?.name ?? "";
      if (name === "TimeoutError" || name === "AbortError") {
        throw new TrueCloudError("No message came in time", { code: "timeout", cause: err });
      }
      if (/Length/.test(name)) {
        throw new ValidationError(`Message over ${max} bytes`, { code: "malformed", cause: err });
      }
      throw new TrueCloudError("The stream ended", { code: "closed", cause: err });
    }
    if (bytes.length > max) {
      throw new ValidationError(`Message over ${max} bytes`, { code: "malformed" });
    }
    return bytes;
  };
  return {
    async read() {
      const bytes = await frame(MAX_MESSAGE_BYTES);
      let value: unknown;
      try {
        value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
      } catch (cause) {
        throw new ValidationError("Message is not UTF-8 JSON", { code: "malformed", cause });
      }
      if (!value || typeof value !== "object" || Array.isArray(value)) {
        throw new ValidationError("Message is not a JSON object", { code: "malformed" });
      }
      return value as Record<string, unknown>;
    },
    async write(message) {
      await lp.write(new TextEncoder().encode(JSON.stringify(message)), {
        signal: AbortSignal.timeout(deadlineMs),
      });
    },
    readRaw: () => frame(MAX_RAW_BYTES),
    async writeRaw(bytes) {
      await lp.write(bytes, { signal: AbortSignal.timeout(deadlineMs) });
    },
  };
}
