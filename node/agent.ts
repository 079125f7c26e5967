/**
 * `deno task agent`: one node agent, as it runs on a participant's box. It keeps its identity and
 * ledger under `--home`, trusts releases through the library's TUF repository, joins management
 * VPNs found in the discovery feed (or founds one), and answers `deno task node` on loopback.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { ConfigError, JsonLogger, type LogLevel, toHex } from "../protocol/mod.ts";
import { createControlApp } from "./control.ts";
import { loadIdentity, loadOrCreate } from "./state.ts";
import { Rms, trustReleases } from "./rms/mod.ts";
import type { CloudFileSystem } from "./cfs/mod.ts";
import { startFileSystem, startVolumes } from "./storage.ts";
import { BlockStore } from "../cdn/mod.ts";

const USAGE = `Usage: deno task agent --home DIR --gateway URL [flags]

Runs one node agent until interrupted.

  --home DIR                 its state: identity, ledger, trusted metadata (required)
  --gateway URL              a gateway: discovery feed, records, release repository (required)
  --ca FILE                  trust this certificate for the gateway (a self-signed one)
  --root FILE                the release repository's root.json to pin on first start (required
                             then)
  --release TARGET           the release this node runs (installers/truecloud-<version>.tar.gz)
  --host IP                  the address to listen on (127.0.0.1)
  --behind-nat               others cannot dial this address: listen through relays
  --max-vpns N               management VPNs to hold, 1 to 4 (2)
  --disk BYTES               disk lent to the cloud (1 GiB)
  --cdn BYTES                the part of it that holds CDN content (a quarter of --disk; 0: none)
  --cpu MILLICORES           CPU lent, 1000 per core (half the cores)
  --memory BYTES             memory lent (a quarter of the total)
  --upload BYTES             upload bandwidth lent, bytes per second (as measured against members)
  --tunnel-port N            where consumers reach the volumes this node lends (kept from the
                             first start; any free port then)
  --cfs                      keep a cloud file system: lease eight volumes once in a VPN
  --cfs-port N               its UI on 127.0.0.1 (any free port)
  --webdav-port N            its files over WebDAV on 127.0.0.1 (any free port)
  --cfs-grace S              seconds a silent volume has before it is replaced (600)
  --found N                  found a VPN of at most N members if in none after joining fails
  --allow-private-addresses  accept records with private addresses (test networks)
  --log-level L              debug, info, warn, error (info)`;

function config(args: string[]) {
  const { values } = parseArgs({
    args,
    options: {
      home: { type: "string" },
      gateway: { type: "string" },
      ca: { type: "string" },
      root: { type: "string" },
      release: { type: "string" },
      host: { type: "string" },
      "behind-nat": { type: "boolean" },
      "max-vpns": { type: "string" },
      disk: { type: "string" },
      cdn: { type: "string" },
      cpu: { type: "string" },
      memory: { type: "string" },
      upload: { type: "string" },
      found: { type: "string" },
      "tunnel-port": { type: "string" },
      cfs: { type: "boolean" },
      "cfs-port": { type: "string" },
      "webdav-port": { type: "string" },
      "cfs-grace": { type: "string" },
      "allow-private-addresses": { type: "boolean" },
      "log-level": { type: "string" },
      help: { type: "boolean" },
    },
  });
  if (values.help) return "help" as const;
  const problems: string[] = [];
  if (!values.home) problems.push("--home is required");
  if (!values.gateway || !/^https?:\/\/[^/]+$/.test(values.gateway)) {
    problems.push("--gateway must be a URL such as https://198.51.100.7:8443");
  }
  const int = (name: string, v: string | undefined, d: number, min: number, max: number) => {
    const n = v === undefined ? d : Number(v);
    if (!Number.isInteger(n) || n < min || n > max) {
      problems.push(`--${name} must be a whole number from ${min} to ${max}`);
    }
    return n;
  };
  const maxVpns = int("max-vpns", values["max-vpns"], 2, 1, 4);
  const disk = int("disk", values.disk, 1024 ** 3, 0, Number.MAX_SAFE_INTEGER);
  const cdn = int("cdn", values.cdn, Math.floor(disk / 4), 0, disk);
  const optional = (name: "cpu" | "memory" | "upload") =>
    values[name] === undefined ? undefined : int(name, values[name], 0, 0, Number.MAX_SAFE_INTEGER);
  const [cpu, memory, upload] = [optional("cpu"), optional("memory"), optional("upload")];
  const found = values.found === undefined ? undefined : int("found", values.found, 16, 2, 256);
  const tunnelPort = values["tunnel-port"] === undefined
    ? undefined
    : int("tunnel-port", values["tunnel-port"], 0, 1, 65535);
  const cfsPort = int("cfs-port", values["cfs-port"], 0, 0, 65535);
  const webdavPort = int("webdav-port", values["webdav-port"], 0, 0, 65535);
  const cfsGrace = int("cfs-grace", values["cfs-grace"], 600, 1, 86400);
  const level = (values["log-level"] ?? "info") as LogLevel;
  if (!["debug", "info", "warn", "error"].includes(level)) {
    problems.push("--log-level must be debug, info, warn or error");
  }
  if (problems.length) throw new ConfigError(problems.join("; "));
  const base = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  return {
    home: resolve(base, values.home!),
    gateway: values.gateway!,
    ca: values.ca && resolve(base, values.ca),
    root: values.root && resolve(base, values.root),
    release: values.release ?? "installers/truecloud-0.1.0-dev.tar.gz",
    host: values.host ?? "127.0.0.1",
    behindNat: values["behind-nat"] ?? false,
    maxVpns,
    disk,
    cdn,
    cpu,
    memory,
    upload,
    found,
    tunnelPort,
    cfs: values.cfs ?? false,
    cfsPort,
    webdavPort,
    cfsGrace,
    allowPrivate: values["allow-private-addresses"] ?? false,
    level,
  };
}

async function main(args: string[]): Promise<number> {
  let c;
  try {
    c = config(args);
  } catch (err) {
    console.error(`agent: ${(err as Error).message}`);
    return 2;
  }
  if (c === "help") {
    console.log(USAGE);
    return 0;
  }
  const log = new JsonLogger("agent", c.level);
  await Deno.mkdir(c.home, { recursive: true, mode: 0o700 });
  const client = c.ca
    ? Deno.createHttpClient({ caCerts: [await Deno.readTextFile(c.ca)] })
    : undefined;
  const f: typeof fetch = (input, init) => fetch(input, { ...init, ...(client ? { client } : {}) });
  const identity = await loadIdentity(c.home);
  const place = await loadOrCreate(
    `${c.home}/place.json`,
    () => Promise.resolve({ location: crypto.randomUUID(), network: crypto.randomUUID() }),
  );
  let releases;
  try {
    releases = await trustReleases({
      tufUrl: `${c.gateway}/tuf`,
      dir: `${c.home}/trusted`,
      root: c.root ?? `${c.home}/trusted/root.json`,
      release: c.release,
      fetch: f,
      log,
    });
  } catch (err) {
    console.error(`agent: cannot trust the release repository: ${(err as Error).message}`);
    return 1;
  }
  // The CDN store: objects placement gives this node, within its share of the lent disk.
  const cdnStore = c.cdn > 0 ? await BlockStore.open(`${c.home}/cdn`, c.cdn) : undefined;
  const rms = await Rms.start({
    identity,
    location: place.location,
    network: place.network,
    maxVpns: c.maxVpns,
    release: releases.claim,
    releases: releases.catalog,
    feedUrl: `${c.gateway}/discovery/feed.rss?count=100`,
    endpoints: [`${c.gateway}/discovery`],
    fetch: f,
    allowPrivateAddresses: c.allowPrivate,
    host: c.host,
    reachable: !c.behindNat,
    contribution: {
      diskBytes: c.disk,
      diskPath: c.home,
      cpuMillicores: c.cpu,
      memoryBytes: c.memory,
      bandwidthBps: c.upload,
    },
    ledgerPath: `${c.home}/ledger.kv`,
    cataloguePath: `${c.home}/catalogue.kv`,
    cdnStore,
    retryMs: 2000,
    log,
  });
  // The Volume Provider: volumes of the lent disk (less the CDN's share).
  await startVolumes({
    rms,
    identity,
    dir: c.home,
    capacityBytes: c.disk - c.cdn,
    hostname: c.host,
    port: c.tunnelPort,
    log,
  });
  const cfsOf = new Map<string, CloudFileSystem>();
  const token = toHex(crypto.getRandomValues(new Uint8Array(32)));
  const control = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    createControlApp(new Map([["node", rms]]), token, { cfs: cfsOf }).fetch,
  );
  await Deno.writeTextFile(
    `${c.home}/control.json`,
    JSON.stringify({ url: `http://127.0.0.1:${control.addr.port}`, token }),
    { mode: 0o600 },
  );
  console.log(`node: ${identity.nodeId}`);
  const stopped = Promise.withResolvers<string>();
  Deno.addSignalListener("SIGINT", () => stopped.resolve("SIGINT"));
  Deno.addSignalListener("SIGTERM", () => stopped.resolve("SIGTERM"));
  (async () => {
    await rms.fill();
    if (c.found && !rms.memberships().length) {
      const vpn = await rms.found({
        maxMembers: c.found,
        maxPerLocation: Math.ceil(c.found / 4),
        maxPerNetwork: Math.ceil(c.found / 4),
      });
      console.log(`founded: ${vpn}`);
    }
    console.log("ready");
    if (!c.cfs) return;
    // The cloud file system: eight volumes once enough providers answer (retried until then).
    const running = await startFileSystem({
      rms,
      identity,
      statePath: `${c.home}/cfs.json`,
      graceMs: c.cfsGrace * 1000,
      uiPort: c.cfsPort,
      webdavPort: c.webdavPort,
      retryMs: 10_000,
      log,
    });
    if (!running) return;
    const { cfs, ui, webdav } = running;
    cfsOf.set("node", cfs);
    console.log(`cfs ui: ${ui.url}`);
    console.log(`cfs files: ${webdav.url}`);
  })().catch((err) => log.error("Start failed", { err: String(err) }));
  const signal = await stopped.promise;
  console.log(`${signal}: stopping`);
  await control.shutdown();
  await Deno.remove(`${c.home}/control.json`).catch(() => {});
  // Leaving withdraws records at the gateway; an unreachable gateway must not keep the agent up.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const gaveUp = await Promise.race([
    rms.stop().then(() => false),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(true), 20_000))),
  ]);
  clearTimeout(timer);
  if (gaveUp) console.log("stopping took over 20 s; leaving anyway");
  releases.stop();
  client?.close();
  console.log("stopped");
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
