// AssemblyScript source of the erasure-coding kernel: GF(2^8) dot products over shards with
// split-nibble tables. Built by ../build.ts into ../kernel_relaxed.wasm (i8x16.relaxed_swizzle)
// and ../kernel_simd.wasm (i8x16.swizzle); not TypeScript for Deno (excluded in deno.json).
//
// The caller lays out everything in linear memory:
//   inputs   nIn u32 addresses of the input shards
//   outputs  nOut u32 addresses of the output shards (none overlapping an input)
//   tables   for each input c, for each output r: 32 bytes at tables + (c * nOut + r) * 32,
//            16 bytes coef·i then 16 bytes coef·(i << 4), i = 0..15, coef = M[r][c]
// and dot() writes output r = XOR over c of M[r][c]·input c, byte by byte, over len bytes.

@inline
function lookup(table: v128, index: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return i8x16.relaxed_swizzle(table, index);
  return i8x16.swizzle(table, index);
}

// coef·x for sixteen bytes x, given x's low nibbles xl and high nibbles xh (each 0..15).
@inline
function mul(t: usize, tableOffset: usize, xl: v128, xh: v128): v128 {
  const lo = v128.load(t + tableOffset);
  const hi = v128.load(t + tableOffset + 16);
  return v128.xor(lookup(lo, xl), lookup(hi, xh));
}

// 0x0f in every byte. The relaxed build loads it from memory, which V8 then keeps in a register
// (measured on 5+3 encoding: about 9.3 GB/s instead of 7.8 with a v128 constant); the standard
// build is faster with the constant (6.0 GB/s instead of 5.3).
const MASK = memory.data<u8>([15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15], 16);

@inline
function nibbleMask(): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return v128.load(MASK);
  return i8x16.splat(0x0f);
}

@inline
function lowNibbles(x: v128, mask: v128): v128 {
  return v128.and(x, mask);
}

@inline
function highNibbles(x: v128, mask: v128): v128 {
  return v128.and(i16x8.shr_u(x, 4), mask);
}

/** Where the module's own static data ends: the caller's layout starts above it. */
export function heapBase(): usize {
  return __heap_base;
}

/** Output r = XOR over input c of M[r][c]·input c, over len bytes; nOut is 1 to 4. */
export function dot(
  tables: usize, inputs: usize, nIn: i32, outputs: usize, nOut: i32, len: i32,
): void {
  const end = len & ~31;
  if (nOut == 1) dot1(tables, inputs, nIn, outputs, end);
  else if (nOut == 2) dot2(tables, inputs, nIn, outputs, end);
  else if (nOut == 3) dot3(tables, inputs, nIn, outputs, end);
  else dot4(tables, inputs, nIn, outputs, end);
  let pos = end;
  if (pos + 16 <= len) {
    dot16(tables, inputs, nIn, outputs, nOut, pos);
    pos += 16;
  }
  if (pos < len) dotBytes(tables, inputs, nIn, outputs, nOut, pos, len);
}

// The main loops: 32 bytes of every output per step, accumulators in registers.

function dot1(tables: usize, inputs: usize, nIn: i32, outputs: usize, end: i32): void {
  const mask = nibbleMask();
  const o0 = <usize>load<u32>(outputs);
  for (let pos = 0; pos < end; pos += 32) {
    let a0 = i8x16.splat(0);
    let b0 = a0;
    let t = tables;
    for (let c = 0; c < nIn; c++) {
      const p = <usize>load<u32>(inputs + (<usize>c << 2)) + pos;
      const xa = v128.load(p);
      const xb = v128.load(p, 16);
      const la = lowNibbles(xa, mask);
      const ha = highNibbles(xa, mask);
      const lb = lowNibbles(xb, mask);
      const hb = highNibbles(xb, mask);
      a0 = v128.xor(a0, mul(t, 0, la, ha));
      b0 = v128.xor(b0, mul(t, 0, lb, hb));
      t += 32;
    }
    v128.store(o0 + pos, a0);
    v128.store(o0 + pos, b0, 16);
  }
}

function dot2(tables: usize, inputs: usize, nIn: i32, outputs: usize, end: i32): void {
  const mask = nibbleMask();
  const o0 = <usize>load<u32>(outputs);
  const o1 = <usize>load<u32>(outputs, 4);
  for (let pos = 0; pos < end; pos += 32) {
    let a0 = i8x16.splat(0);
    let a1 = a0;
    let b0 = a0;
    let b1 = a0;
    let t = tables;
    for (let c = 0; c < nIn; c++) {
      const p = <usize>load<u32>(inputs + (<usize>c << 2)) + pos;
      const xa = v128.load(p);
      const xb = v128.load(p, 16);
      const la = lowNibbles(xa, mask);
      const ha = highNibbles(xa, mask);
      const lb = lowNibbles(xb, mask);
      const hb = highNibbles(xb, mask);
      a0 = v128.xor(a0, mul(t, 0, la, ha));
      b0 = v128.xor(b0, mul(t, 0, lb, hb));
      a1 = v128.xor(a1, mul(t, 32, la, ha));
      b1 = v128.xor(b1, mul(t, 32, lb, hb));
      t += 64;
    }
    v128.store(o0 + pos, a0);
    v128.store(o0 + pos, b0, 16);
    v128.store(o1 + pos, a1);
    v128.store(o1 + pos, b1, 16);
  }
}

function dot3(tables: usize, inputs: usize, nIn: i32, outputs: usize, end: i32): void {
  const mask = nibbleMask();
  const o0 = <usize>load<u32>(outputs);
  const o1 = <usize>load<u32>(outputs, 4);
  const o2 = <usize>load<u32>(outputs, 8);
  for (let pos = 0; pos < end; pos += 32) {
    let a0 = i8x16.splat(0);
    let a1 = a0;
    let a2 = a0;
    let b0 = a0;
    let b1 = a0;
    let b2 = a0;
    let t = tables;
    for (let c = 0; c < nIn; c++) {
      const p = <usize>load<u32>(inputs + (<usize>c << 2)) + pos;
      const xa = v128.load(p);
      const xb = v128.load(p, 16);
      const la = lowNibbles(xa, mask);
      const ha = highNibbles(xa, mask);
      const lb = lowNibbles(xb, mask);
      const hb = highNibbles(xb, mask);
      a0 = v128.xor(a0, mul(t, 0, la, ha));
      b0 = v128.xor(b0, mul(t, 0, lb, hb));
      a1 = v128.xor(a1, mul(t, 32, la, ha));
      b1 = v128.xor(b1, mul(t, 32, lb, hb));
      a2 = v128.xor(a2, mul(t, 64, la, ha));
      b2 = v128.xor(b2, mul(t, 64, lb, hb));
      t += 96;
    }
    v128.store(o0 + pos, a0);
    v128.store(o0 + pos, b0, 16);
    v128.store(o1 + pos, a1);
    v128.store(o1 + pos, b1, 16);
    v128.store(o2 + pos, a2);
    v128.store(o2 + pos, b2, 16);
  }
}

function dot4(tables: usize, inputs: usize, nIn: i32, outputs: usize, end: i32): void {
  const mask = nibbleMask();
  const o0 = <usize>load<u32>(outputs);
  const o1 = <usize>load<u32>(outputs, 4);
  const o2 = <usize>load<u32>(outputs, 8);
  const o3 = <usize>load<u32>(outputs, 12);
  for (let pos = 0; pos < end; pos += 32) {
    let a0 = i8x16.splat(0);
    let a1 = a0;
    let a2 = a0;
    let a3 = a0;
    let b0 = a0;
    let b1 = a0;
    let b2 = a0;
    let b3 = a0;
    let t = tables;
    for (let c = 0; c < nIn; c++) {
      const p = <usize>load<u32>(inputs + (<usize>c << 2)) + pos;
      const xa = v128.load(p);
      const xb = v128.load(p, 16);
      const la = lowNibbles(xa, mask);
      const ha = highNibbles(xa, mask);
      const lb = lowNibbles(xb, mask);
      const hb = highNibbles(xb, mask);
      a0 = v128.xor(a0, mul(t, 0, la, ha));
      b0 = v128.xor(b0, mul(t, 0, lb, hb));
      a1 = v128.xor(a1, mul(t, 32, la, ha));
      b1 = v128.xor(b1, mul(t, 32, lb, hb));
      a2 = v128.xor(a2, mul(t, 64, la, ha));
      b2 = v128.xor(b2, mul(t, 64, lb, hb));
      a3 = v128.xor(a3, mul(t, 96, la, ha));
      b3 = v128.xor(b3, mul(t, 96, lb, hb));
      t += 128;
    }
    v128.store(o0 + pos, a0);
    v128.store(o0 + pos, b0, 16);
    v128.store(o1 + pos, a1);
    v128.store(o1 + pos, b1, 16);
    v128.store(o2 + pos, a2);
    v128.store(o2 + pos, b2, 16);
    v128.store(o3 + pos, a3);
    v128.store(o3 + pos, b3, 16);
  }
}

// One 16-byte step at pos, one output at a time.
function dot16(tables: usize, inputs: usize, nIn: i32, outputs: usize, nOut: i32, pos: i32): void {
  const mask = nibbleMask();
  const stride = <usize>nOut << 5;
  for (let r = 0; r < nOut; r++) {
    let acc = i8x16.splat(0);
    let t = tables + (<usize>r << 5);
    for (let c = 0; c < nIn; c++) {
      const x = v128.load(<usize>load<u32>(inputs + (<usize>c << 2)) + pos);
      acc = v128.xor(acc, mul(t, 0, lowNibbles(x, mask), highNibbles(x, mask)));
      t += stride;
    }
    v128.store(<usize>load<u32>(outputs + (<usize>r << 2)) + pos, acc);
  }
}

// The last bytes, fewer than 16, one at a time through the same tables.
function dotBytes(
  tables: usize, inputs: usize, nIn: i32, outputs: usize, nOut: i32, from: i32, len: i32,
): void {
  const stride = <usize>nOut << 5;
  for (let r = 0; r < nOut; r++) {
    const out = <usize>load<u32>(outputs + (<usize>r << 2));
    for (let pos = from; pos < len; pos++) {
      let acc: u32 = 0;
      let t = tables + (<usize>r << 5);
      for (let c = 0; c < nIn; c++) {
        const x = <usize>load<u8>(<usize>load<u32>(inputs + (<usize>c << 2)) + pos);
        acc ^= <u32>load<u8>(t + (x & 15)) ^ <u32>load<u8>(t + 16 + (x >> 4));
        t += stride;
      }
      store<u8>(out + pos, <u8>acc);
    }
  }
}
