/**
 * The byte-addressed store a file system sits on: the pool, or memory in tests.
 *
 * @module
 */

import { ValidationError } from "../../protocol/mod.ts";

/** A linear space of bytes with durable flushes. */
export interface ByteStore {
  /** Bytes in the space. */
  readonly size: number;
  /**
   * The unit that writes should be aligned to and sized in to avoid read-modify-write (the
   * pool's stripe: 5 × 64 KiB). Any offset and length work; aligned ones are fastest.
   */
  readonly alignment: number;
  /** Reads `length` bytes at `offset`; never-written bytes read as zeros. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Writes `data` at `offset`. Durable only after {@linkcode ByteStore.flush}. */
  write(offset: number, data: Uint8Array): Promise<void>;
  /** Makes every completed write durable. */
  flush(): Promise<void>;
  /** Forgets a range: it reads as zeros afterwards and its space may be released. */
  trim(offset: number, length: number): Promise<void>;
}

/**
 * Checks a range against a store.
 * @throws {ValidationError} When it is not inside the store.
 */
export function checkRange(store: { size: number }, offset: number, length: number): void {
  if (
    !Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 ||
    offset + length > store.size
  ) {
    throw new ValidationError(
      `Range ${offset}+${length} is outside the store (${store.size} bytes)`,
      { code: "out_of_range" },
    );
  }
}

/** A {@linkcode ByteStore} in memory, allocated in pages as written. */
export class MemoryByteStore implements ByteStore {
  readonly size: number;
  readonly alignment: number;
  readonly #pages = new Map<number, Uint8Array>();
  static readonly #PAGE = 65536;

  /**
   * @param size Bytes.
   * @param alignment The preferred write unit.
   */
  constructor(size: number, alignment = 65536) {
    this.size = size;
    this.alignment = alignment;
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    checkRange(this, offset, length);
    const out = new Uint8Array(length);
    const P = MemoryByteStore.#PAGE;
    for (let pos = offset; pos < offset + length;) {
      const page = Math.floor(pos / P), at = pos % P;
      const n = Math.min(P - at, offset + length - pos);
      const p = this.#pages.get(page);
      if (p) out.set(p.subarray(at, at + n), pos - offset);
      pos += n;
    }
    return Promise.resolve(out);
  }

  write(offset: number, data: Uint8Array): Promise<void> {
    checkRange(this, offset, data.length);
    const P = MemoryByteStore.#PAGE;
    for (let pos = offset; pos < offset + data.length;) {
      const page = Math.floor(pos / P), at = pos % P;
      const n = Math.min(P - at, offset + data.length - pos);
      let p = this.#pages.get(page);
      if (!p) this.#pages.set(page, p = new Uint8Array(P));
      p.set(data.subarray(pos - offset, pos - offset + n), at);
      pos += n;
    }
    return Promise.resolve();
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  async trim(offset: number, length: number): Promise<void> {
    checkRange(this, offset, length);
    await this.write(offset, new Uint8Array(length));
  }
}
