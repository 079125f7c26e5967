/**
 * Reed–Solomon erasure coding for the Cloud File System pool: a stripe of k data shards (5) gets
 * m parity shards (3), and any k of the k + m rebuild the rest (`docs/protocol/erasure.md`).
 *
 * {@linkcode WasmCoder} is the one to use (WebAssembly SIMD, shards in place in its memory);
 * {@linkcode ReferenceCoder} is the plain TypeScript it is checked against.
 *
 * @example
 * ```ts
 * import { WasmCoder, writeStripe } from "./mod.ts";
 * const coder = new WasmCoder();
 * const shards = coder.shards(65536);
 * writeStripe(shards.slice(0, 5), new TextEncoder().encode("hello"));
 * coder.encode(shards);
 * ```
 *
 * @module
 */

export * from "./coder.ts";
export * from "./reference.ts";
export * from "./wasm.ts";
export * from "./stripe.ts";
export { cauchyParity } from "./_gf.ts";
