import assert from "node:assert/strict";
import { isPublicAddress } from "./address.ts";

Deno.test("isPublicAddress() accepts public unicast addresses", () => {
  for (
    const ip of ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "2a00:1450:4001::1", "::ffff:8.8.4.4"]
  ) {
    assert.equal(isPublicAddress(ip), true, ip);
  }
});

Deno.test("isPublicAddress() refuses loopback, private, link-local, documentation and reserved space", () => {
  for (
    const ip of [
      "127.0.0.1",
      "10.1.2.3",
      "172.16.0.1",
      "172.31.255.255",
      "192.168.1.1",
      "100.64.0.1",
      "169.254.1.1",
      "0.0.0.0",
      "255.255.255.255",
      "224.0.0.1",
      "192.0.2.1",
      "198.51.100.7",
      "203.0.113.9",
      "198.18.0.1",
      "::",
      "::1",
      "fe80::1",
      "fc00::1",
      "fd12:3456::1",
      "ff02::1",
      "2001:db8::7",
      "::ffff:127.0.0.1",
      "::ffff:10.0.0.1",
      "64:ff9b::1.2.3.4",
      "2002::1",
      "not an ip",
      "1.2.3",
      "1.2.3.256",
      "fe80::1%eth0",
    ]
  ) {
    assert.equal(isPublicAddress(ip), false, ip);
  }
});

Deno.test("isPublicAddress() treats the edges of private ranges correctly", () => {
  assert.equal(isPublicAddress("172.15.255.255"), true);
  assert.equal(isPublicAddress("172.32.0.0"), true);
  assert.equal(isPublicAddress("100.63.255.255"), true);
  assert.equal(isPublicAddress("100.128.0.0"), true);
  assert.equal(isPublicAddress("11.0.0.0"), true);
});
