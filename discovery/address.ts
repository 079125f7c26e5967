/**
 * Which IP addresses are publicly routable, for the discovery address policy.
 *
 * Range classification comes from `ipaddr.js` (its IANA special-purpose tables); this module adds
 * the policy: only `unicast`, IPv4 written as four decimal parts, IPv6 inside global unicast
 * `2000::/3`, and IPv4-mapped IPv6 judged by its IPv4 part.
 *
 * @module
 */

import ipaddr from "ipaddr.js";

const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR("2000::/3");

/**
 * Tells whether an IPv4 or IPv6 address is publicly routable: not loopback, private, link-local,
 * CGNAT, multicast, unspecified, reserved or documentation space.
 *
 * @param ip An address in textual form.
 * @returns `true` for a public unicast address; `false` otherwise, and for anything unparsable.
 */
export function isPublicAddress(ip: string): boolean {
  if (ipaddr.IPv4.isValidFourPartDecimal(ip)) return ipaddr.IPv4.parse(ip).range() === "unicast";
  if (!ipaddr.IPv6.isValid(ip) || ip.includes("%")) return false;
  const addr = ipaddr.IPv6.parse(ip);
  if (addr.isIPv4MappedAddress()) return addr.toIPv4Address().range() === "unicast";
  return addr.range() === "unicast" && addr.match(GLOBAL_UNICAST_V6);
}
