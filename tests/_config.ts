// A gateway configuration for end-to-end tests: loopback, any free port, a store in `home`.
import type { GatewayConfig } from "../gateway/mod.ts";

/** Test configuration with the given changes. */
export function testConfig(home: string, over: Partial<GatewayConfig> = {}): GatewayConfig {
  return {
    home,
    host: "127.0.0.1",
    port: 0,
    kvPath: `${home}/replica.kv`,
    peers: [],
    allowPrivateAddresses: false,
    rateLimit: false,
    rateLimitExempt: [],
    maxBodyBytes: 65536,
    workers: 1,
    logLevel: "warn",
    ...over,
  };
}
