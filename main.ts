/**
 * `deno task start`: the local cloud. Reads flags and environment, starts everything, prints the
 * URLs, and runs until SIGINT (Ctrl-C) or SIGTERM, then stops everything cleanly.
 *
 * @module
 */

import { loadLocalCloudConfig, LOCAL_CLOUD_USAGE, LocalCloud } from "./cloud/mod.ts";
import { ConfigError, JsonLogger } from "./protocol/mod.ts";

async function main(): Promise<number> {
  let config;
  try {
    config = loadLocalCloudConfig(Deno.args, (k) => Deno.env.get(k));
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`start: ${err.message}`);
      return 2;
    }
    throw err;
  }
  if (config === "help") {
    console.log(LOCAL_CLOUD_USAGE);
    return 0;
  }
  const log = new JsonLogger("cloud", config.logLevel);
  // Listen for signals from the start: a Ctrl-C during start-up stops the cloud as soon as it is up.
  const stopped = Promise.withResolvers<string>();
  const onInt = () => stopped.resolve("SIGINT");
  const onTerm = () => stopped.resolve("SIGTERM");
  Deno.addSignalListener("SIGINT", onInt);
  Deno.addSignalListener("SIGTERM", onTerm);
  let cloud: LocalCloud;
  try {
    cloud = await LocalCloud.start({
      home: config.home,
      gatewayPort: config.port,
      replicas: config.replicas,
      nodes: config.nodes,
      cfsUiPort: config.cfsUiPort,
      webdavPort: config.webdavPort,
      cfsGraceMs: config.cfsGraceSeconds * 1000,
      log,
      logLevel: config.logLevel,
    });
  } catch (err) {
    const e = err as Error & { code?: string };
    const hint = err instanceof Deno.errors.AddrInUse
      ? ` (port ${config.port} is taken: set TRUECLOUD_GATEWAY_PORT or --port)`
      : "";
    console.error(`start: ${e.message}${hint}`);
    return 1;
  }
  const gw = cloud.gateway.url;
  console.log(`gateway: ${gw}`);
  console.log(`feed: ${gw}/discovery/feed.rss`);
  console.log(`installers: ${gw}/installers/ (development release, development keys)`);
  console.log(`cdn: ${gw}/cdn/`);
  console.log(`replicas: ${cloud.replicas.map((r) => r.url).join(" ")}`);
  const nodes = [...cloud.nodes.nodes.values()];
  const vpns = new Set(nodes.flatMap((n) => n.memberships().map((m) => m.vpn)));
  console.log(
    `nodes: ${nodes.length} in ${vpns.size} management VPNs (deno task node status shows them)`,
  );
  if (cloud.cfs) {
    const { ui, webdav, cfs } = cloud.cfs;
    console.log(`cfs ui: ${ui.url} (node-1's pool: ${cfs.status().distribution.summary})`);
    console.log(`cfs files: ${webdav.url} (WebDAV: mount it, or curl -T FILE ${webdav.url})`);
  } else console.log("cfs: none (a pool needs eight providers: start nine nodes or more)");
  console.log(`certificate: ${config.home}/tls/gateway-cert.pem (self-signed, development only)`);
  console.log(`try: curl --cacert ${config.home}/tls/gateway-cert.pem ${gw}/discovery/feed.rss`);
  console.log("Ctrl-C stops everything.");

  const signal = await stopped.promise;
  console.log(`${signal}: stopping`);
  // The listeners stay while stopping: a second signal (a terminal sends Ctrl-C to every process in
  // its group, and deno task passes it on too) must not kill the cloud half-way through stopping.
  await cloud.stop();
  console.log("stopped");
  return 0;
}

if (import.meta.main) Deno.exit(await main());
