// GF(2^8) with the polynomial x^8 + x^4 + x^3 + x^2 + 1 (0x11d) and generator 2, the Cauchy
// coding matrix, and the decoding plans both coders apply (docs/protocol/erasure.md).

/** The field polynomial, with its x^8 bit. */
export const POLYNOMIAL = 0x11d;

/** EXP[i] = 2^i, for i in 0..509, so that EXP[LOG[a] + LOG[b]] needs no reduction mod 255. */
export const EXP: Uint8Array = new Uint8Array(510);
/** LOG[a] for a in 1..255; LOG[0] is unused. */
export const LOG: Uint8Array = new Uint8Array(256);
{
  let x = 1;
  for (let i = 0; i < 255; i++) {
    EXP[i] = x;
    EXP[i + 255] = x;
    LOG[x] = i;
    x <<= 1;
    if (x & 0x100) x ^= POLYNOMIAL;
  }
}

/** a·b in GF(2^8). */
export function gfMul(a: number, b: number): number {
  return a === 0 || b === 0 ? 0 : EXP[LOG[a] + LOG[b]];
}

/** 1/a in GF(2^8); a must not be 0. */
export function gfInv(a: number): number {
  if (a === 0) throw new RangeError("Zero has no inverse in GF(2^8)");
  return EXP[255 - LOG[a]];
}

/** MUL[a * 256 + b] = a·b: the whole multiplication table, 64 KiB. */
export const MUL: Uint8Array = new Uint8Array(65536);
for (let a = 0; a < 256; a++) {
  for (let b = 0; b < 256; b++) MUL[a * 256 + b] = gfMul(a, b);
}

/** A matrix over GF(2^8): rows of bytes. */
export type Matrix = Uint8Array[];

/**
 * The m×k Cauchy parity matrix of a k + m code (`docs/protocol/erasure.md`):
 * P[i][j] = 1 / (x_i + y_j) with x_i = k + i and y_j = j. Every square submatrix of a Cauchy
 * matrix is invertible, so the generator [I_k; P] is MDS.
 *
 * @param k Data shards.
 * @param m Parity shards; k + m at most 256.
 * @returns m rows of k coefficients: parity shard k + i is XOR over j of P[i][j]·data shard j.
 */
export function cauchyParity(k: number, m: number): Uint8Array[] {
  const rows: Uint8Array[] = [];
  for (let i = 0; i < m; i++) {
    const row = new Uint8Array(k);
    for (let j = 0; j < k; j++) row[j] = gfInv((k + i) ^ j);
    rows.push(row);
  }
  return rows;
}

/** The inverse of a square matrix by Gauss–Jordan elimination; throws if it is singular. */
export function invert(matrix: Matrix): Matrix {
  const n = matrix.length;
  const a = matrix.map((row) => Uint8Array.from(row));
  const inv: Matrix = a.map((_, i) => {
    const row = new Uint8Array(n);
    row[i] = 1;
    return row;
  });
  for (let col = 0; col < n; col++) {
    let pivot = col;
    while (pivot < n && a[pivot][col] === 0) pivot++;
    if (pivot === n) throw new RangeError("Matrix is singular");
    [a[col], a[pivot]] = [a[pivot], a[col]];
    [inv[col], inv[pivot]] = [inv[pivot], inv[col]];
    const scale = gfInv(a[col][col]);
    for (let j = 0; j < n; j++) {
      a[col][j] = gfMul(a[col][j], scale);
      inv[col][j] = gfMul(inv[col][j], scale);
    }
    for (let row = 0; row < n; row++) {
      const f = a[row][col];
      if (row === col || f === 0) continue;
      for (let j = 0; j < n; j++) {
        a[row][j] ^= gfMul(f, a[col][j]);
        inv[row][j] ^= gfMul(f, inv[col][j]);
      }
    }
  }
  return inv;
}

/** What a coder computes in one pass: each output shard as a combination of the input shards. */
export interface Plan {
  /** Indices of the input shards, in order. */
  inputs: number[];
  /** Indices of the output shards, in order. */
  outputs: number[];
  /** One row per output, one coefficient per input. */
  rows: Matrix;
}

/** The encoding plan: data shards 0..k-1 in, parity shards k..k+m-1 out. */
export function encodePlan(k: number, m: number): Plan {
  return {
    inputs: Array.from({ length: k }, (_, i) => i),
    outputs: Array.from({ length: m }, (_, i) => k + i),
    rows: cauchyParity(k, m),
  };
}

/**
 * The plan rebuilding every missing shard from the first k present ones: invert the rows of the
 * generator [I; P] for those k shards (giving the data), then multiply by the generator rows of
 * the missing shards.
 */
export function decodePlan(k: number, m: number, present: readonly boolean[]): Plan {
  const parity = cauchyParity(k, m);
  const generatorRow = (i: number) => {
    if (i >= k) return parity[i - k];
    const row = new Uint8Array(k);
    row[i] = 1;
    return row;
  };
  const inputs: number[] = [];
  const outputs: number[] = [];
  for (let i = 0; i < k + m; i++) {
    if (!present[i]) outputs.push(i);
    else if (inputs.length < k) inputs.push(i);
  }
  const dataFromInputs = invert(inputs.map(generatorRow));
  const rows = outputs.map((i) => {
    const g = generatorRow(i);
    const row = new Uint8Array(k);
    for (let c = 0; c < k; c++) {
      let v = 0;
      for (let j = 0; j < k; j++) v ^= gfMul(g[j], dataFromInputs[j][c]);
      row[c] = v;
    }
    return row;
  });
  return { inputs, outputs, rows };
}

/** Plans (or what a coder derives from them) for one code, decoding plans cached by loss pattern. */
export class PlanCache<T> {
  /** The encoding plan's derivative. */
  readonly encode: T;
  readonly #k: number;
  readonly #m: number;
  readonly #derive: (plan: Plan) => T;
  readonly #decode = new Map<number, T>();

  /**
   * @param k Data shards.
   * @param m Parity shards.
   * @param derive What the coder keeps of a plan.
   */
  constructor(k: number, m: number, derive: (plan: Plan) => T) {
    this.#k = k;
    this.#m = m;
    this.#derive = derive;
    this.encode = derive(encodePlan(k, m));
  }

  /** The decoding plan's derivative for the shards present in `mask` (bit i for shard i). */
  decode(mask: number): T {
    let v = this.#decode.get(mask);
    if (v === undefined) {
      if (this.#decode.size >= 4096) this.#decode.clear();
      const present = Array.from({ length: this.#k + this.#m }, (_, i) => ((mask >>> i) & 1) === 1);
      v = this.#derive(decodePlan(this.#k, this.#m, present));
      this.#decode.set(mask, v);
    }
    return v;
  }
}
