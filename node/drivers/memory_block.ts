/**
 * A block device held in memory: the userspace driver for tests and for pools that need no disk.
 *
 * @module
 */

import { type BlockDevice, type BlockRead, checkBlocks, DeviceError, TAG_BYTES } from "./block.ts";

/** A {@linkcode BlockDevice} in memory; blocks are allocated when first written. */
export class MemoryBlockDevice implements BlockDevice {
  readonly blockSize: number;
  readonly blockCount: number;
  readonly #blocks = new Map<number, { data: Uint8Array; tag: Uint8Array }>();
  #closed = false;

  /**
   * @param blockSize Bytes per block.
   * @param blockCount Number of blocks.
   */
  constructor(blockSize: number, blockCount: number) {
    this.blockSize = blockSize;
    this.blockCount = blockCount;
  }

  /** Blocks holding data. */
  get used(): number {
    return this.#blocks.size;
  }

  #open(): void {
    if (this.#closed) throw new DeviceError("The device is closed", "device_unavailable");
  }

  read(first: number, count: number): Promise<BlockRead> {
    this.#open();
    checkBlocks(this, first, count);
    const data = new Uint8Array(count * this.blockSize);
    const tags = new Uint8Array(count * TAG_BYTES);
    for (let i = 0; i < count; i++) {
      const b = this.#blocks.get(first + i);
      if (!b) continue;
      data.set(b.data, i * this.blockSize);
      tags.set(b.tag, i * TAG_BYTES);
    }
    return Promise.resolve({ data, tags });
  }

  write(first: number, data: Uint8Array, tags: Uint8Array): Promise<void> {
    this.#open();
    const count = data.length / this.blockSize;
    checkBlocks(this, first, count, data, tags);
    for (let i = 0; i < count; i++) {
      this.#blocks.set(first + i, {
        data: data.slice(i * this.blockSize, (i + 1) * this.blockSize),
        tag: tags.slice(i * TAG_BYTES, (i + 1) * TAG_BYTES),
      });
    }
    return Promise.resolve();
  }

  flush(): Promise<void> {
    this.#open();
    return Promise.resolve();
  }

  trim(first: number, count: number): Promise<void> {
    this.#open();
    checkBlocks(this, first, count);
    for (let i = 0; i < count; i++) this.#blocks.delete(first + i);
    return Promise.resolve();
  }

  close(): Promise<void> {
    this.#closed = true;
    return Promise.resolve();
  }
}
