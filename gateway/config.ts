/**
 * Gateway configuration from command-line flags and `TRUECLOUD_*` environment variables, validated
 * once at start-up. A flag wins over its variable; every bad value is reported at once, one line
 * each, naming the flag and the variable.
 *
 * @module
 */

import { parseArgs } from "node:util";
import ipaddr from "ipaddr.js";
import { ConfigError, LOG_LEVELS, type LogLevel } from "../protocol/mod.ts";

/** The gateway's validated configuration. */
export interface GatewayConfig {
  /** State directory (`TRUECLOUD_HOME`, default `./.truecloud`). */
  home: string;
  /** Address to listen on. */
  host: string;
  /** Port to listen on; 0 picks a free one. */
  port: number;
  /** PEM certificate chain file; a self-signed one in the state directory when not set. */
  certFile?: string;
  /** PEM private key file. */
  keyFile?: string;
  /** Public base URL (default `https://HOST:PORT`). */
  publicUrl?: string;
  /** Deno KV file of this gateway's discovery replica (default `HOME/discovery/replica.kv`). */
  kvPath: string;
  /** Base URLs of peer discovery replicas (`…/discovery`). */
  peers: string[];
  /** PEM file of a CA to trust when reaching peers. */
  peerCaFile?: string;
  /** Accept VPN records with non-public addresses. */
  allowPrivateAddresses: boolean;
  /** Rate limit per client, or `false`. */
  rateLimit: { burst: number; perSecond: number } | false;
  /** Client networks exempt from the rate limit. */
  rateLimitExempt: string[];
  /** Largest request body. */
  maxBodyBytes: number;
  /** Serving threads (default: one per core, at most 4). */
  workers: number;
  /** Log level. */
  logLevel: LogLevel;
  /** Log every request (JSON, level info). */
  accessLog?: boolean;
  /** The release repository served at `/tuf` and `/installers` (default `HOME/repository`). */
  repository?: string;
  /** The CDN's directory (blocks and catalogue) served at `/cdn` (default `HOME/cdn`). */
  cdnDir?: string;
  /** The CDN through a node agent on this host instead: its `control.json`, and which of its
   * nodes to ask (default the first). */
  cdnUplink?: { controlFile: string; node?: string };
  /** Key files of the online roles, re-signed before they expire (both or neither). */
  onlineKeys?: { timestamp: string; snapshot: string; passphraseFile: string };
}

interface Setting {
  flag: string;
  env: string;
  multiple?: boolean;
  boolean?: boolean;
}

const SETTINGS = {
  home: { flag: "home", env: "TRUECLOUD_HOME" },
  host: { flag: "host", env: "TRUECLOUD_GATEWAY_HOST" },
  port: { flag: "port", env: "TRUECLOUD_GATEWAY_PORT" },
  cert: { flag: "cert", env: "TRUECLOUD_TLS_CERT" },
  key: { flag: "key", env: "TRUECLOUD_TLS_KEY" },
  publicUrl: { flag: "public-url", env: "TRUECLOUD_PUBLIC_URL" },
  kv: { flag: "kv", env: "TRUECLOUD_DISCOVERY_KV" },
  peers: { flag: "peer", env: "TRUECLOUD_DISCOVERY_PEERS", multiple: true },
  peerCa: { flag: "peer-ca", env: "TRUECLOUD_DISCOVERY_PEER_CA" },
  allowPrivate: {
    flag: "allow-private-addresses",
    env: "TRUECLOUD_DISCOVERY_ALLOW_PRIVATE",
    boolean: true,
  },
  rateLimit: { flag: "rate-limit", env: "TRUECLOUD_RATE_LIMIT" },
  rateLimitExempt: { flag: "rate-limit-exempt", env: "TRUECLOUD_RATE_LIMIT_EXEMPT" },
  maxBody: { flag: "max-body-bytes", env: "TRUECLOUD_MAX_BODY_BYTES" },
  workers: { flag: "workers", env: "TRUECLOUD_GATEWAY_WORKERS" },
  logLevel: { flag: "log-level", env: "TRUECLOUD_LOG_LEVEL" },
  accessLog: { flag: "access-log", env: "TRUECLOUD_ACCESS_LOG", boolean: true },
  repository: { flag: "repository", env: "TRUECLOUD_REPOSITORY" },
  cdnDir: { flag: "cdn-dir", env: "TRUECLOUD_CDN_DIR" },
  cdnUplink: { flag: "cdn-uplink", env: "TRUECLOUD_CDN_UPLINK" },
  cdnUplinkNode: { flag: "cdn-uplink-node", env: "TRUECLOUD_CDN_UPLINK_NODE" },
  timestampKey: { flag: "timestamp-key", env: "TRUECLOUD_TIMESTAMP_KEY" },
  snapshotKey: { flag: "snapshot-key", env: "TRUECLOUD_SNAPSHOT_KEY" },
  onlinePassphrase: { flag: "online-passphrase-file", env: "TRUECLOUD_ONLINE_PASSPHRASE_FILE" },
} satisfies Record<string, Setting>;

/** The usage text of the gateway's flags. */
export const GATEWAY_USAGE = `Usage: deno task gateway [flags]

Flags (each also read from the environment variable shown; a flag wins):
  --home DIR                    state directory                        TRUECLOUD_HOME (./.truecloud)
  --host ADDR                   address to listen on                   TRUECLOUD_GATEWAY_HOST (127.0.0.1)
  --port N                      HTTPS port, 0 for any free one         TRUECLOUD_GATEWAY_PORT (8443)
  --cert FILE, --key FILE       PEM certificate chain and key          TRUECLOUD_TLS_CERT, TRUECLOUD_TLS_KEY
                                (default: self-signed, in HOME/tls)
  --public-url URL              public base URL                        TRUECLOUD_PUBLIC_URL (https://HOST:PORT)
  --kv FILE                     discovery replica store                TRUECLOUD_DISCOVERY_KV (HOME/discovery/replica.kv)
  --peer URL                    peer replica's …/discovery URL; repeat TRUECLOUD_DISCOVERY_PEERS (comma-separated)
  --peer-ca FILE                PEM CA to trust for peers              TRUECLOUD_DISCOVERY_PEER_CA
  --allow-private-addresses     accept records with private addresses  TRUECLOUD_DISCOVERY_ALLOW_PRIVATE (false)
  --rate-limit BURST/PERSEC|off per-client limit                       TRUECLOUD_RATE_LIMIT (120/20)
  --rate-limit-exempt CIDRS     comma-separated exempt networks        TRUECLOUD_RATE_LIMIT_EXEMPT (127.0.0.0/8,::1/128)
  --max-body-bytes N            largest request body                   TRUECLOUD_MAX_BODY_BYTES (65536)
  --workers N                   serving threads, 1 to 16               TRUECLOUD_GATEWAY_WORKERS (cores, at most 4)
  --log-level LEVEL             debug, info, warn or error             TRUECLOUD_LOG_LEVEL (info)
  --access-log                  log every request                      TRUECLOUD_ACCESS_LOG (false)
  --repository DIR              release repository (/tuf, /installers) TRUECLOUD_REPOSITORY (HOME/repository)
  --cdn-dir DIR                 CDN blocks and catalogue (/cdn)        TRUECLOUD_CDN_DIR (HOME/cdn)
  --cdn-uplink FILE             or the CDN through a node agent here:  TRUECLOUD_CDN_UPLINK
                                its control.json
  --cdn-uplink-node NAME        which of the agent's nodes to ask      TRUECLOUD_CDN_UPLINK_NODE (the first)
  --timestamp-key FILE, --snapshot-key FILE, --online-passphrase-file FILE
                                online keys: keep the repository fresh TRUECLOUD_TIMESTAMP_KEY, …_SNAPSHOT_KEY,
                                                                       …_ONLINE_PASSPHRASE_FILE
  --help                        show this text`;

/** Where configuration comes from: argv and an environment lookup. */
export interface ConfigSource {
  /** Command-line arguments (without the program). */
  args: readonly string[];
  /** Environment lookup. */
  env: (name: string) => string | undefined;
  /** Number of cores, for the default worker count. */
  cores?: number;
}

function isTrue(v: string): boolean | undefined {
  const s = v.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(s)) return true;
  if (["0", "false", "no", "off", ""].includes(s)) return false;
  return undefined;
}

function peerUrl(u: string): string | undefined {
  try {
    const url = new URL(u);
    if (url.protocol !== "https:" && url.protocol !== "http:") return undefined;
    if (url.search || url.hash || url.username || url.password) return undefined;
    return url.href.replace(/\/+$/, "");
  } catch {
    return undefined;
  }
}

/**
 * Reads and validates the gateway configuration.
 *
 * @param source Arguments and environment.
 * @returns The configuration, or `"help"` when `--help` was given.
 * @throws {ConfigError} Listing every bad value, one per line.
 */
export function loadGatewayConfig(source: ConfigSource): GatewayConfig | "help" {
  const options: Record<string, { type: "string" | "boolean"; multiple?: boolean }> = {
    help: { type: "boolean" },
  };
  for (const s of Object.values(SETTINGS) as Setting[]) {
    options[s.flag] = {
      type: s.boolean ? "boolean" : "string",
      ...(s.multiple ? { multiple: true } : {}),
    };
  }
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  try {
    ({ values } = parseArgs({
      args: [...source.args],
      options,
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new ConfigError(`${(err as Error).message.split("\n")[0]}\n\n${GATEWAY_USAGE}`);
  }
  if (values.help) return "help";

  const problems: string[] = [];
  const where = (s: Setting) => `--${s.flag} (${s.env})`;
  const raw = (s: Setting): string | undefined => {
    const v = values[s.flag];
    if (typeof v === "string") return v;
    if (Array.isArray(v)) return v.length ? v.join(",") : undefined;
    if (typeof v === "boolean") return v ? "true" : undefined;
    return source.env(s.env);
  };
  const int = (s: Setting, dflt: number, min: number, max: number): number => {
    const v = raw(s);
    if (v === undefined) return dflt;
    if (!/^\d+$/.test(v.trim()) || Number(v) < min || Number(v) > max) {
      problems.push(`${where(s)} must be a whole number from ${min} to ${max}, got "${v}"`);
      return dflt;
    }
    return Number(v);
  };

  const home = raw(SETTINGS.home) ?? "./.truecloud";
  if (home.trim() === "") problems.push(`${where(SETTINGS.home)} must not be empty`);

  const host = raw(SETTINGS.host) ?? "127.0.0.1";
  if (!ipaddr.isValid(host) && !/^[a-z0-9.-]+$/i.test(host)) {
    problems.push(`${where(SETTINGS.host)} must be an IP address or host name, got "${host}"`);
  }
  const port = int(SETTINGS.port, 8443, 0, 65535);

  const certFile = raw(SETTINGS.cert);
  const keyFile = raw(SETTINGS.key);
  if ((certFile === undefined) !== (keyFile === undefined)) {
    problems.push(`${where(SETTINGS.cert)} and ${where(SETTINGS.key)} must be given together`);
  }

  let publicUrl = raw(SETTINGS.publicUrl);
  if (publicUrl !== undefined) {
    const u = peerUrl(publicUrl);
    if (!u || !u.startsWith("https:")) {
      problems.push(`${where(SETTINGS.publicUrl)} must be an https:// URL, got "${publicUrl}"`);
    }
    publicUrl = u;
  }

  const peers: string[] = [];
  for (const p of (raw(SETTINGS.peers) ?? "").split(",").map((x) => x.trim()).filter(Boolean)) {
    const u = peerUrl(p);
    if (!u) problems.push(`${where(SETTINGS.peers)} must list http(s) URLs, got "${p}"`);
    else peers.push(u);
  }

  const accessRaw = raw(SETTINGS.accessLog);
  const accessLog = accessRaw === undefined ? false : isTrue(accessRaw);
  if (accessLog === undefined) {
    problems.push(`${where(SETTINGS.accessLog)} must be true or false, got "${accessRaw}"`);
  }

  const allowRaw = raw(SETTINGS.allowPrivate);
  const allowPrivateAddresses = allowRaw === undefined ? false : isTrue(allowRaw);
  if (allowPrivateAddresses === undefined) {
    problems.push(`${where(SETTINGS.allowPrivate)} must be true or false, got "${allowRaw}"`);
  }

  let rateLimit: GatewayConfig["rateLimit"] = { burst: 120, perSecond: 20 };
  const rl = raw(SETTINGS.rateLimit);
  if (rl !== undefined) {
    const m = rl.trim().match(/^(\d{1,7})\/(\d{1,7}(?:\.\d+)?)$/);
    if (rl.trim().toLowerCase() === "off") rateLimit = false;
    else if (m && Number(m[1]) >= 1 && Number(m[2]) > 0) {
      rateLimit = { burst: Number(m[1]), perSecond: Number(m[2]) };
    } else {problems.push(
        `${where(SETTINGS.rateLimit)} must be BURST/PERSECOND (such as 120/20) or off, got "${rl}"`,
      );}
  }

  const exemptRaw = raw(SETTINGS.rateLimitExempt) ?? "127.0.0.0/8,::1/128";
  const rateLimitExempt = exemptRaw.split(",").map((x) => x.trim()).filter(Boolean);
  for (const c of rateLimitExempt) {
    try {
      ipaddr.parseCIDR(c);
    } catch {
      problems.push(
        `${where(SETTINGS.rateLimitExempt)} must list networks such as 10.0.0.0/8, got "${c}"`,
      );
    }
  }

  const maxBodyBytes = int(SETTINGS.maxBody, 65536, 1024, 64 * 1024 * 1024);
  const workers = int(SETTINGS.workers, Math.max(1, Math.min(4, source.cores ?? 1)), 1, 16);

  const level = (raw(SETTINGS.logLevel) ?? "info").trim().toLowerCase();
  if (!LOG_LEVELS.includes(level as LogLevel)) {
    problems.push(
      `${where(SETTINGS.logLevel)} must be one of ${LOG_LEVELS.join(", ")}, got "${level}"`,
    );
  }

  const ts = raw(SETTINGS.timestampKey);
  const snap = raw(SETTINGS.snapshotKey);
  const pass = raw(SETTINGS.onlinePassphrase);
  if (
    [ts, snap, pass].some((v) => v !== undefined) && [ts, snap, pass].some((v) => v === undefined)
  ) {
    problems.push(
      `${where(SETTINGS.timestampKey)}, ${where(SETTINGS.snapshotKey)} and ${
        where(SETTINGS.onlinePassphrase)
      } must be given together`,
    );
  }

  if (problems.length) {
    throw new ConfigError(`Invalid configuration:\n  ${problems.join("\n  ")}`);
  }
  return {
    home,
    host,
    port,
    certFile,
    keyFile,
    publicUrl,
    kvPath: raw(SETTINGS.kv) ?? `${home}/discovery/replica.kv`,
    peers,
    peerCaFile: raw(SETTINGS.peerCa),
    allowPrivateAddresses: allowPrivateAddresses!,
    rateLimit,
    rateLimitExempt,
    maxBodyBytes,
    workers,
    logLevel: level as LogLevel,
    accessLog: accessLog!,
    repository: raw(SETTINGS.repository) ?? `${home}/repository`,
    cdnDir: raw(SETTINGS.cdnDir) ?? `${home}/cdn`,
    cdnUplink: raw(SETTINGS.cdnUplink)
      ? { controlFile: raw(SETTINGS.cdnUplink)!, node: raw(SETTINGS.cdnUplinkNode) }
      : undefined,
    onlineKeys: ts && snap && pass
      ? { timestamp: ts, snapshot: snap, passphraseFile: pass }
      : undefined,
  };
}
