/**
 * `deno task discovery`: the discovery command line for subscribers and guardians.
 *
 *   verify SOURCE       read a feed from a URL or file and verify every record offline
 *   keygen FILE         make a guardian identity (private key file, mode 0600)
 *   publish …           sign and submit a soliciting record
 *   withdraw …          sign and submit a withdrawal
 *
 * The only place that reads flags and environment for this binary.
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  NodeIdentity,
  parseWith,
  readTextLimited,
  TrueCloudError,
  ValidationError,
} from "../protocol/mod.ts";
import { readFeed } from "./feed_reader.ts";
import { RecordPublisher } from "./publisher.ts";
import { solicitingSchema, withdrawnSchema } from "./record.ts";

const USAGE = `Usage: deno task discovery COMMAND [flags]

Commands:
  verify SOURCE [--cacert FILE] [--allow-private-addresses] [--json]
      Read a discovery feed from an https:// URL or a file and verify every record offline.
      Exits 1 if any item is refused.
  keygen FILE [--force]
      Make a guardian identity: a private Ed25519 key in FILE (mode 0600). Prints the node id.
  publish --identity FILE --endpoint URL [--endpoint URL…] [--cacert FILE]
          --vpn UUID --ip ADDR [--ip ADDR…] --port N --guest-key HEX64 [--ttl SECONDS]
      Sign a soliciting record and submit it to the first endpoint that takes it.
  withdraw --identity FILE --endpoint URL [--cacert FILE] --vpn UUID [--reason full|closing|other]
      Sign a withdrawal of this guardian's record of a VPN and submit it.`;

class UsageError extends Error {}

function client(cacert: string | undefined): { fetch: typeof fetch; close(): void } {
  if (!cacert) return { fetch, close() {} };
  let pem: string;
  try {
    pem = Deno.readTextFileSync(cacert);
  } catch (err) {
    throw new UsageError(`Cannot read --cacert ${cacert}: ${(err as Error).message}`);
  }
  const c = Deno.createHttpClient({ caCerts: [pem] });
  return { fetch: (i, init) => fetch(i, { ...init, client: c }), close: () => c.close() };
}

async function loadIdentity(path: string | undefined): Promise<NodeIdentity> {
  if (!path) {
    throw new UsageError(
      "--identity FILE is required (make one with: deno task discovery keygen FILE)",
    );
  }
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    throw new UsageError(`Cannot read identity ${path}: ${(err as Error).message}`);
  }
  try {
    return await NodeIdentity.fromJwk(JSON.parse(text));
  } catch (err) {
    throw new UsageError(`Identity ${path} is not usable: ${(err as Error).message}`);
  }
}

async function verify(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      cacert: { type: "string" },
      "allow-private-addresses": { type: "boolean" },
      json: { type: "boolean" },
    },
  });
  if (positionals.length !== 1) throw new UsageError("verify takes one SOURCE: a URL or a file");
  const source = positionals[0];
  let xml: string;
  if (/^https?:\/\//.test(source)) {
    const c = client(values.cacert);
    try {
      const res = await c.fetch(source, { signal: AbortSignal.timeout(30_000) });
      if (!res.ok) {
        throw new TrueCloudError(`${source} answered ${res.status}`, { code: "fetch_failed" });
      }
      xml = await readTextLimited(res, 16 * 1024 * 1024);
    } finally {
      c.close();
    }
  } else {
    try {
      xml = await Deno.readTextFile(source);
    } catch (err) {
      throw new UsageError(`Cannot read ${source}: ${(err as Error).message}`);
    }
  }
  const result = await readFeed(xml, { allowPrivateAddresses: values["allow-private-addresses"] });
  if (values.json) console.log(JSON.stringify(result, null, 2));
  else {
    for (const r of result.records) {
      const d = r.data;
      console.log(
        `ok      vpn ${d.vpn} guardian ${r.guardian} ${
          d.ips.join(",")
        } port ${d.guestPort} expires ${new Date(r.expiresAt * 1000).toISOString()}`,
      );
    }
    for (const r of result.rejected) {
      console.log(`refused item ${r.index + 1}: ${r.code}: ${r.message}`);
    }
    console.log(`${result.records.length} verified, ${result.rejected.length} refused`);
  }
  return result.rejected.length ? 1 : 0;
}

async function keygen(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { force: { type: "boolean" } },
  });
  if (positionals.length !== 1) throw new UsageError("keygen takes one FILE");
  const id = await NodeIdentity.generate();
  try {
    await Deno.writeTextFile(positionals[0], JSON.stringify(id.toJwk()) + "\n", {
      mode: 0o600,
      createNew: !values.force,
    });
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) {
      throw new UsageError(`${positionals[0]} exists; refusing to overwrite a key (use --force)`);
    }
    throw new UsageError(`Cannot write ${positionals[0]}: ${(err as Error).message}`);
  }
  console.log(id.nodeId);
  return 0;
}

async function submit(args: string[], withdraw: boolean): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      identity: { type: "string" },
      endpoint: { type: "string", multiple: true },
      cacert: { type: "string" },
      vpn: { type: "string" },
      ip: { type: "string", multiple: true },
      port: { type: "string" },
      "guest-key": { type: "string" },
      ttl: { type: "string" },
      reason: { type: "string" },
    },
  });
  const endpoints = values.endpoint ?? [];
  if (!endpoints.length) {
    throw new UsageError("--endpoint URL is required, such as https://127.0.0.1:8443/discovery");
  }
  for (const e of endpoints) {
    if (!/^https?:\/\/[^\s]+$/.test(e)) {
      throw new UsageError(`--endpoint must be an http(s) URL, got "${e}"`);
    }
  }
  const ttl = values.ttl === undefined ? 86_400 : Number(values.ttl);
  if (!Number.isInteger(ttl) || ttl < 60 || ttl > 604_800) {
    throw new UsageError(`--ttl must be whole seconds from 60 to 604800, got "${values.ttl}"`);
  }
  const data = withdraw
    ? parseWith(withdrawnSchema, {
      v: 1,
      vpn: values.vpn,
      state: "withdrawn",
      reason: values.reason ?? "full",
    }, "withdrawal")
    : parseWith(solicitingSchema, {
      v: 1,
      vpn: values.vpn,
      state: "soliciting",
      ips: values.ip ?? [],
      guestPort: values.port === undefined
        ? undefined
        : /^\d+$/.test(values.port)
        ? Number(values.port)
        : values.port,
      guestKey: values["guest-key"],
    }, "record");
  const guardian = await loadIdentity(values.identity);
  const c = client(values.cacert);
  try {
    const pub = new RecordPublisher({ guardian, endpoints, ttlSeconds: ttl, fetch: c.fetch });
    const r = await pub.publish(data);
    console.log(`${r.status}: vpn ${data.vpn} by guardian ${guardian.nodeId} at ${r.endpoint}`);
  } finally {
    c.close();
  }
  return 0;
}

async function main(args: string[]): Promise<number> {
  const [command, ...rest] = args;
  try {
    switch (command) {
      case "verify":
        return await verify(rest);
      case "keygen":
        return await keygen(rest);
      case "publish":
        return await submit(rest, false);
      case "withdraw":
        return await submit(rest, true);
      case undefined:
      case "help":
      case "--help":
      case "-h":
        console.log(USAGE);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`Unknown command "${command}"`);
    }
  } catch (err) {
    if (
      err instanceof UsageError ||
      (err instanceof TypeError && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS"))
    ) {
      console.error(`discovery: ${err.message.split("\n")[0]}`);
      console.error("Run deno task discovery --help for usage.");
      return 2;
    }
    if (err instanceof ValidationError) {
      console.error(`discovery: ${err.message}`);
      return 2;
    }
    console.error(`discovery: ${(err as Error).message.split("\n")[0]}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
