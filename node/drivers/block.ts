/**
 * The block device interface: what the pool reads and writes on each of its eight volumes,
 * whichever driver attaches them (the userspace block protocol of `node/vp/`, or an iSCSI LUN).
 *
 * A device is an array of `blockCount` blocks of `blockSize` bytes. Each block carries a tag of
 * {@linkcode TAG_BYTES} bytes chosen by the writer and returned unchanged by reads: the pool keeps
 * its checksums there, so a provider cannot return altered data unnoticed. A block never written,
 * or trimmed, reads as zeros with an all-zero tag.
 *
 * @module
 */

import { TrueCloudError } from "../../protocol/mod.ts";

/** Bytes of the tag kept beside each block. */
export const TAG_BYTES = 32;

/** What a read returns: `count` blocks of data, and their tags, back to back. */
export interface BlockRead {
  /** `count × blockSize` bytes. */
  data: Uint8Array;
  /** `count × TAG_BYTES` bytes. */
  tags: Uint8Array;
}

/** A volume as the pool sees it. */
export interface BlockDevice {
  /** Bytes per block (a power of two, 4 KiB to 1 MiB). */
  readonly blockSize: number;
  /** Number of blocks. */
  readonly blockCount: number;
  /**
   * Reads consecutive blocks.
   * @param first The first block.
   * @param count How many (at least 1).
   * @param signal Gives up when aborted.
   * @throws {DeviceError} When the device fails, times out or the range is outside it.
   */
  read(first: number, count: number, signal?: AbortSignal): Promise<BlockRead>;
  /**
   * Writes consecutive blocks and their tags.
   * @param first The first block.
   * @param data A whole number of blocks.
   * @param tags `TAG_BYTES` per block.
   * @throws {DeviceError} As `read`.
   */
  write(first: number, data: Uint8Array, tags: Uint8Array): Promise<void>;
  /** Makes every completed write durable on the device's disk. */
  flush(): Promise<void>;
  /** Forgets blocks: they read as zeros with zero tags afterwards. */
  trim(first: number, count: number): Promise<void>;
  /** Lets go of the device (does not wipe it). */
  close(): Promise<void>;
}

/** Why a device operation failed. */
export type DeviceErrorCode =
  | "device_unavailable" // closed, disconnected, or the provider is gone
  | "device_timeout" // no answer in time (a hung provider)
  | "device_range" // blocks outside the device, or a malformed buffer
  | "device_failed"; // the provider answered with an error

/** A block device operation that failed. */
export class DeviceError extends TrueCloudError {
  /**
   * @param message What failed.
   * @param code Which kind of failure.
   * @param cause The underlying error.
   */
  constructor(message: string, code: DeviceErrorCode, cause?: unknown) {
    super(message, { code, cause });
  }
}

/**
 * Checks the arguments of a device call.
 * @throws {DeviceError} `device_range` when they do not fit the device.
 */
export function checkBlocks(
  dev: { blockSize: number; blockCount: number },
  first: number,
  count: number,
  data?: Uint8Array,
  tags?: Uint8Array,
): void {
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(count) || first < 0 || count < 1) {
    throw new DeviceError(`Blocks ${first}+${count} are not a valid range`, "device_range");
  }
  if (first + count > dev.blockCount) {
    throw new DeviceError(
      `Blocks ${first}..${first + count - 1} are past the end (${dev.blockCount} blocks)`,
      "device_range",
    );
  }
  if (data && data.length !== count * dev.blockSize) {
    throw new DeviceError(
      `Expected ${count * dev.blockSize} bytes, got ${data.length}`,
      "device_range",
    );
  }
  if (tags && tags.length !== count * TAG_BYTES) {
    throw new DeviceError(
      `Expected ${count * TAG_BYTES} tag bytes, got ${tags.length}`,
      "device_range",
    );
  }
}
