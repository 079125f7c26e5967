// For tests: whether a system command that some tests need is installed. Tests that need one are
// declared with `ignore: !installed("curl")`, so Deno lists them by name as ignored where it is
// missing (and the summary counts them), rather than failing or passing silently.

/**
 * Tells whether a command is on the PATH.
 * @param cmd The command's name.
 */
export function installed(cmd: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${cmd}`).isFile) return true;
    } catch {
      // not in this directory
    }
  }
  return false;
}

/**
 * Waits until a condition holds, polling, or fails naming what it waited for.
 * @param what What is awaited, for the error.
 * @param f The condition.
 * @param ms How long to wait at most.
 */
export async function until(
  what: string,
  f: () => boolean | Promise<boolean>,
  ms = 10_000,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > end) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Deterministic pseudo-random bytes (xorshift32), the same for the same seed on every run.
 * @param n How many.
 * @param seed Any number.
 */
export function seededBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
