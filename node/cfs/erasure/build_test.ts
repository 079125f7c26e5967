// The checked-in kernels are what build.ts makes of assembly/kernel.ts.
import assert from "node:assert/strict";
import { binariesModule, buildKernels, loadCompiler, OUTPUT_FILES } from "./build.ts";
import { KERNEL_RELAXED_BASE64, KERNEL_SIMD_BASE64 } from "./_wasm_binaries.ts";

const here = new URL(".", import.meta.url);
const relaxed = await Deno.readFile(new URL(OUTPUT_FILES.relaxed, here));
const simd = await Deno.readFile(new URL(OUTPUT_FILES.simd, here));

const compiler = await loadCompiler().then(() => undefined, (e: unknown) => e);
const REBUILD = "build.ts reproduces kernel_relaxed.wasm, kernel_simd.wasm and _wasm_binaries.ts";
if (compiler) {
  console.warn(
    `Skipping "${REBUILD}": the AssemblyScript compiler cannot be loaded (${
      compiler instanceof Error ? compiler.message : compiler
    })`,
  );
}

Deno.test({
  name: REBUILD,
  ignore: compiler !== undefined,
  fn: async () => {
    const built = await buildKernels();
    assert.deepEqual(
      built.relaxed,
      relaxed,
      `${OUTPUT_FILES.relaxed} is stale: run deno task build:erasure`,
    );
    assert.deepEqual(
      built.simd,
      simd,
      `${OUTPUT_FILES.simd} is stale: run deno task build:erasure`,
    );
    assert.equal(
      binariesModule(built),
      await Deno.readTextFile(new URL(OUTPUT_FILES.module, here)),
      `${OUTPUT_FILES.module} is stale: run deno task build:erasure`,
    );
  },
});

Deno.test("_wasm_binaries.ts carries the same bytes as the .wasm files", () => {
  assert.deepEqual(Uint8Array.fromBase64(KERNEL_RELAXED_BASE64), relaxed);
  assert.deepEqual(Uint8Array.fromBase64(KERNEL_SIMD_BASE64), simd);
});

// Opcode 0xfd 0x100 (LEB128 80 02) is i8x16.relaxed_swizzle; 0xfd 0x0e is i8x16.swizzle.
function count(bytes: Uint8Array, ...seq: number[]): number {
  let n = 0;
  for (let i = 0; i + seq.length <= bytes.length; i++) {
    if (seq.every((b, j) => bytes[i + j] === b)) n++;
  }
  return n;
}

Deno.test("kernel_simd.wasm has no relaxed-SIMD lookups and kernel_relaxed.wasm has them", () => {
  assert.equal(count(simd, 0xfd, 0x80, 0x02), 0);
  assert.ok(count(simd, 0xfd, 0x0e) > 0);
  assert.ok(count(relaxed, 0xfd, 0x80, 0x02) > 0);
});
