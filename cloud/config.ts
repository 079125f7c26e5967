/**
 * Configuration of the local cloud (`deno task start`) from flags and `TRUECLOUD_*` variables.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { ConfigError, LOG_LEVELS, type LogLevel } from "../protocol/mod.ts";

/** The local cloud's validated configuration. */
export interface LocalCloudConfig {
  /** State directory. */
  home: string;
  /** Gateway port. */
  port: number;
  /** Discovery replicas. */
  replicas: number;
  /** Node agents. */
  nodes: number;
  /** Log level. */
  logLevel: LogLevel;
  /** Ports of node-1's CFS UI and WebDAV endpoint (0: any free one). */
  cfsUiPort: number;
  webdavPort: number;
  /** Seconds node-1's CFS waits for a silent volume before replacing it. */
  cfsGraceSeconds: number;
}

/** Usage text of `deno task start`. */
export const LOCAL_CLOUD_USAGE = `Usage: deno task start [flags]

Runs a whole True Cloud on this host until interrupted (Ctrl-C).

Flags (each also read from the environment variable shown; a flag wins):
  --home DIR        state directory               TRUECLOUD_HOME (./.truecloud)
  --port N          gateway HTTPS port, 0 = any   TRUECLOUD_GATEWAY_PORT (8443)
  --replicas N      discovery replicas, 1 to 9    TRUECLOUD_REPLICAS (3)
  --nodes N         node agents, 1 to 64          TRUECLOUD_NODES (12)
  --cfs-port N      CFS UI port, 0 = any          TRUECLOUD_CFS_PORT (0)
  --webdav-port N   CFS WebDAV port, 0 = any      TRUECLOUD_WEBDAV_PORT (0)
  --cfs-grace S     seconds a silent volume has   TRUECLOUD_CFS_GRACE (60)
                    before it is replaced
  --log-level L     debug, info, warn or error    TRUECLOUD_LOG_LEVEL (warn)
  --help            show this text`;

/**
 * Reads and validates the local cloud's configuration.
 * @param args Command-line arguments.
 * @param env Environment lookup.
 * @returns The configuration, or `"help"`.
 * @throws {ConfigError} Listing every bad value.
 */
export function loadLocalCloudConfig(
  args: readonly string[],
  env: (name: string) => string | undefined,
): LocalCloudConfig | "help" {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...args],
      options: {
        home: { type: "string" },
        port: { type: "string" },
        replicas: { type: "string" },
        nodes: { type: "string" },
        "cfs-port": { type: "string" },
        "webdav-port": { type: "string" },
        "cfs-grace": { type: "string" },
        "log-level": { type: "string" },
        help: { type: "boolean" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new ConfigError(`${(err as Error).message.split("\n")[0]}\n\n${LOCAL_CLOUD_USAGE}`);
  }
  if (values.help) return "help";
  const problems: string[] = [];
  const int = (
    flag: string,
    v: string | undefined,
    envName: string,
    dflt: number,
    min: number,
    max: number,
  ) => {
    const raw = v ?? env(envName);
    if (raw === undefined) return dflt;
    if (!/^\d+$/.test(raw.trim()) || Number(raw) < min || Number(raw) > max) {
      problems.push(
        `--${flag} (${envName}) must be a whole number from ${min} to ${max}, got "${raw}"`,
      );
      return dflt;
    }
    return Number(raw);
  };
  const home = values.home ?? env("TRUECLOUD_HOME") ?? "./.truecloud";
  if (home.trim() === "") problems.push("--home (TRUECLOUD_HOME) must not be empty");
  const port = int("port", values.port, "TRUECLOUD_GATEWAY_PORT", 8443, 0, 65535);
  const replicas = int("replicas", values.replicas, "TRUECLOUD_REPLICAS", 3, 1, 9);
  const nodes = int("nodes", values.nodes, "TRUECLOUD_NODES", 12, 1, 64);
  const cfsUiPort = int("cfs-port", values["cfs-port"], "TRUECLOUD_CFS_PORT", 0, 0, 65535);
  const webdavPort = int(
    "webdav-port",
    values["webdav-port"],
    "TRUECLOUD_WEBDAV_PORT",
    0,
    0,
    65535,
  );
  const cfsGraceSeconds = int(
    "cfs-grace",
    values["cfs-grace"],
    "TRUECLOUD_CFS_GRACE",
    60,
    1,
    86400,
  );
  const level = (values["log-level"] ?? env("TRUECLOUD_LOG_LEVEL") ?? "warn").trim().toLowerCase();
  if (!LOG_LEVELS.includes(level as LogLevel)) {
    problems.push(
      `--log-level (TRUECLOUD_LOG_LEVEL) must be one of ${LOG_LEVELS.join(", ")}, got "${level}"`,
    );
  }
  if (problems.length) throw new ConfigError(`Invalid configuration:\n  ${problems.join("\n  ")}`);
  return {
    home,
    port,
    replicas,
    nodes,
    logLevel: level as LogLevel,
    cfsUiPort,
    webdavPort,
    cfsGraceSeconds,
  };
}
