/**
 * The airgap check of the signing tool: it refuses to run while a network interface other than
 * loopback is up (has an address), unless told that this is known and accepted.
 *
 * @module
 */

/** An interface that breaks the airgap. */
export interface LiveInterface {
  /** Its name, such as `eth0`. */
  name: string;
  /** One of its addresses. */
  address: string;
}

function isLoopback(address: string): boolean {
  return /^127\./.test(address) || address === "::1";
}

/**
 * Lists the interfaces that are up with a non-loopback address.
 * @param interfaces What `Deno.networkInterfaces()` returns (injectable for tests).
 * @returns The live interfaces; empty on an airgapped machine.
 */
export function liveInterfaces(
  interfaces: Deno.NetworkInterfaceInfo[] = Deno.networkInterfaces(),
): LiveInterface[] {
  const out = new Map<string, LiveInterface>();
  for (const i of interfaces) {
    if (i.name === "lo" || isLoopback(i.address)) continue;
    if (!out.has(i.name)) out.set(i.name, { name: i.name, address: i.address });
  }
  return [...out.values()];
}
