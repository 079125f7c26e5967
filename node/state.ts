/**
 * A node's state on disk: small JSON files made on first use and kept (only the operator may read
 * them), and the node's identity among them.
 *
 * @module
 */

import { NodeIdentity } from "../protocol/mod.ts";

/**
 * Reads a JSON file, or makes its value and writes it (mode 0600) when there is none.
 * @param path The file.
 * @param make The value of a first start.
 */
export async function loadOrCreate<T>(path: string, make: () => T | Promise<T>): Promise<T> {
  try {
    return JSON.parse(await Deno.readTextFile(path)) as T;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    const value = await make();
    await Deno.writeTextFile(path, JSON.stringify(value, null, 2), { mode: 0o600 });
    return value;
  }
}

/**
 * The node's identity, kept in `dir/identity.json` (made on first use).
 * @param dir The node's state directory (made if missing, mode 0700).
 */
export async function loadIdentity(dir: string): Promise<NodeIdentity> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const jwk = await loadOrCreate(
    `${dir}/identity.json`,
    async () => (await NodeIdentity.generate()).toJwk(),
  );
  return await NodeIdentity.fromJwk(jwk);
}

/**
 * Reads a JSON file written by {@linkcode saveJson}.
 * @param path The file.
 * @returns Its value, or `undefined` when there is no such file.
 */
export async function readJson<T>(path: string): Promise<T | undefined> {
  try {
    return JSON.parse(await Deno.readTextFile(path)) as T;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/**
 * Writes a JSON file whole or not at all (a temporary file renamed over it), mode 0600.
 * @param path The file.
 * @param value What to keep.
 */
export async function saveJson(path: string, value: unknown): Promise<void> {
  const tmp = `${path}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(value, null, 2), { mode: 0o600 });
  await Deno.rename(tmp, path);
}
