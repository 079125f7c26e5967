import assert from "node:assert/strict";
import { liveInterfaces } from "./airgap.ts";

const iface = (
  name: string,
  address: string,
  family: "IPv4" | "IPv6" = "IPv4",
): Deno.NetworkInterfaceInfo => ({
  name,
  address,
  family,
  netmask: "",
  scopeid: null,
  cidr: "",
  mac: "00:00:00:00:00:00",
});

Deno.test("liveInterfaces() ignores loopback and reports every other interface that has an address", () => {
  assert.deepEqual(liveInterfaces([iface("lo", "127.0.0.1"), iface("lo", "::1", "IPv6")]), []);
  assert.deepEqual(
    liveInterfaces([
      iface("lo", "127.0.0.1"),
      iface("eth0", "10.1.2.3"),
      iface("eth0", "fe80::1", "IPv6"),
    ]),
    [
      { name: "eth0", address: "10.1.2.3" },
    ],
  );
  assert.deepEqual(liveInterfaces([iface("wlan0", "fe80::2", "IPv6")]), [{
    name: "wlan0",
    address: "fe80::2",
  }]);
});
