import assert from "node:assert/strict";
import fc from "fast-check";
import { ConfigError } from "../protocol/mod.ts";
import { type GatewayConfig, loadGatewayConfig } from "./config.ts";

const load = (args: string[], env: Record<string, string> = {}) =>
  loadGatewayConfig({ args, env: (k) => env[k], cores: 2 }) as GatewayConfig;

Deno.test("loadGatewayConfig() applies the documented defaults", () => {
  const c = load([]);
  assert.equal(c.home, "./.truecloud");
  assert.equal(c.port, 8443);
  assert.equal(c.host, "127.0.0.1");
  assert.equal(c.kvPath, "./.truecloud/discovery/replica.kv");
  assert.deepEqual(c.rateLimit, { burst: 120, perSecond: 20 });
  assert.equal(c.allowPrivateAddresses, false);
  assert.equal(c.workers, 2);
  assert.equal(c.logLevel, "info");
});

Deno.test("loadGatewayConfig() reads TRUECLOUD_* variables, and flags win over them", () => {
  const env = {
    TRUECLOUD_HOME: "/srv/tc",
    TRUECLOUD_GATEWAY_PORT: "9443",
    TRUECLOUD_DISCOVERY_PEERS: "https://a.example/discovery, https://b.example/discovery/",
    TRUECLOUD_RATE_LIMIT: "off",
    TRUECLOUD_DISCOVERY_ALLOW_PRIVATE: "yes",
  };
  const c = load([], env);
  assert.equal(c.home, "/srv/tc");
  assert.equal(c.port, 9443);
  assert.equal(c.kvPath, "/srv/tc/discovery/replica.kv");
  assert.deepEqual(c.peers, ["https://a.example/discovery", "https://b.example/discovery"]);
  assert.equal(c.rateLimit, false);
  assert.equal(c.allowPrivateAddresses, true);
  const f = load([
    "--port",
    "10443",
    "--home",
    "/x",
    "--rate-limit",
    "10/2",
    "--peer",
    "http://127.0.0.1:1/discovery",
  ], env);
  assert.equal(f.port, 10443);
  assert.equal(f.home, "/x");
  assert.deepEqual(f.rateLimit, { burst: 10, perSecond: 2 });
  assert.deepEqual(f.peers, ["http://127.0.0.1:1/discovery"]);
});

Deno.test("loadGatewayConfig() reports every bad value at once, naming flag and variable", () => {
  try {
    load(["--log-level", "loud"], {
      TRUECLOUD_GATEWAY_PORT: "99999",
      TRUECLOUD_RATE_LIMIT: "lots",
      TRUECLOUD_DISCOVERY_PEERS: "ftp://x",
      TRUECLOUD_TLS_CERT: "/c.pem",
      TRUECLOUD_RATE_LIMIT_EXEMPT: "10.0.0.0/99",
      TRUECLOUD_PUBLIC_URL: "http://insecure",
    });
    assert.fail("should throw");
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    const lines = e.message.split("\n").slice(1);
    assert.equal(lines.length, 7, e.message);
    assert.match(
      e.message,
      /--port \(TRUECLOUD_GATEWAY_PORT\) must be a whole number from 0 to 65535, got "99999"/,
    );
    assert.match(
      e.message,
      /--log-level \(TRUECLOUD_LOG_LEVEL\) must be one of debug, info, warn, error/,
    );
    assert.match(
      e.message,
      /--cert \(TRUECLOUD_TLS_CERT\) and --key \(TRUECLOUD_TLS_KEY\) must be given together/,
    );
  }
  assert.throws(
    () => load(["--nope"]),
    (e: ConfigError) => /Unknown option '--nope'/.test(e.message),
  );
  assert.equal(loadGatewayConfig({ args: ["--help"], env: () => undefined }), "help");
  assert.throws(
    () => load(["--timestamp-key", "t.json"]),
    (e: ConfigError) => /must be given together/.test(e.message),
  );
  assert.deepEqual(
    load(["--timestamp-key", "t", "--snapshot-key", "s", "--online-passphrase-file", "p"])
      .onlineKeys,
    { timestamp: "t", snapshot: "s", passphraseFile: "p" },
  );
});

Deno.test("property: loadGatewayConfig() either returns a valid config or throws ConfigError", () => {
  fc.assert(fc.property(
    fc.dictionary(
      fc.constantFrom(
        "TRUECLOUD_GATEWAY_PORT",
        "TRUECLOUD_RATE_LIMIT",
        "TRUECLOUD_MAX_BODY_BYTES",
        "TRUECLOUD_GATEWAY_WORKERS",
        "TRUECLOUD_DISCOVERY_PEERS",
        "TRUECLOUD_LOG_LEVEL",
        "TRUECLOUD_GATEWAY_HOST",
      ),
      fc.string({ maxLength: 20 }),
    ),
    (env) => {
      try {
        const c = load([], env);
        assert.ok(Number.isInteger(c.port) && c.port >= 0 && c.port <= 65535);
        assert.ok(c.workers >= 1 && c.workers <= 16);
        assert.ok(c.maxBodyBytes >= 1024);
      } catch (e) {
        assert.ok(e instanceof ConfigError, String(e));
      }
    },
  ));
});
