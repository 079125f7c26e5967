/**
 * Random choices the protocols leave to the node (which record to try, which member to ask).
 *
 * @module
 */

/**
 * A copy of a list in a uniformly random order (Fisher–Yates; sorting with a random comparator is
 * biased).
 * @param items The list.
 */
export function shuffled<T>(items: readonly T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}
