/**
 * `deno task gateway`: runs one gateway (and its discovery replica) until SIGINT or SIGTERM.
 * The only place that reads flags and environment for this binary.
 *
 * @module
 */

import { ConfigError, JsonLogger } from "../protocol/mod.ts";
import { GATEWAY_USAGE, loadGatewayConfig } from "./config.ts";
import { Gateway } from "./gateway.ts";

async function main(): Promise<number> {
  let config;
  try {
    config = loadGatewayConfig({
      args: Deno.args,
      env: (k) => Deno.env.get(k),
      cores: navigator.hardwareConcurrency,
    });
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`gateway: ${err.message}`);
      return 2;
    }
    throw err;
  }
  if (config === "help") {
    console.log(GATEWAY_USAGE);
    return 0;
  }
  const log = new JsonLogger("gateway", config.logLevel);
  let gw: Gateway;
  try {
    gw = await Gateway.start(config, { log });
  } catch (err) {
    console.error(`gateway: ${(err as Error).message}`);
    return 1;
  }
  const stopped = Promise.withResolvers<void>();
  const stop = () => stopped.resolve();
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  console.log(`gateway: ${gw.url}`);
  console.log(`feed: ${gw.url}/discovery/feed.rss`);
  await stopped.promise;
  await gw.stop();
  return 0;
}

if (import.meta.main) Deno.exit(await main());
