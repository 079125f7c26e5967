/**
 * `deno task node`: the node agents' own CLI, speaking to the running cloud's control API.
 *
 *   deno task node status|vpns|entitlement|audits [--node NAME|ID] [--json] [--home DIR]
 *   deno task node join --node NAME|ID
 *   deno task node leave VPN --node NAME|ID
 *
 * @module
 */

import type { CfsStatus } from "./cfs/status.ts";
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { getMimeType } from "hono/utils/mime";
import type { NodeReport } from "./control.ts";

const USAGE = `Usage: deno task node <command> [flags]

Commands:
  status                one line per node: VPNs, peers, storage entitlement used
  vpns                  the management VPNs of each node
  entitlement           contribution, entitlement, use and what each node gives
  audits                what each node's audits found of the providers holding its data
  join                  make a node join VPNs until it holds as many as it may (needs --node)
  leave VPN             make a node leave a VPN (needs --node)
  stop                  stop a node agent for good: it leaves its VPNs (needs --node)
  request               broadcast a storage request and list the offers (needs --node, --bytes)
  ping MEMBER           reach a member over the VPN (needs --node): round trip, direct or relayed
  revoke VPN MEMBER     revoke a member of a VPN and re-key the VPN (needs --node; --reason TEXT)
  cdn-get CID           fetch a CDN object from the members holding it, members-only content too
                        (needs --node; --out FILE, else standard output)
  cdn-put FILE          publish a file on the CDN from a node that keeps a CDN store (needs --node,
                        --name; --visibility public|members, --type, --expires)
  cdn-ls                the CDN catalogue as a node knows it, and the live holders (needs --node)
  cfs                   a node's cloud file system: pool health, its eight volumes, resilver
                        progress, recent events (needs --node)
  scrub                 check every stripe of a node's pool and repair what is wrong (needs --node)

Flags:
  --node NAME|ID        one node (node-3, or its 12D3KooW… id); default every node
  --bytes N             bytes per offer, for request
  --count N             offers wanted, for request (8)
  --out FILE            where cdn-get writes
  --reason TEXT         why, for revoke
  --name NAME           the name to publish under (path-like: docs/guide.html)
  --visibility V        public (served by the gateway) or members (over the VPNs only); public
  --type TYPE           the media type (guessed from the file name)
  --expires TIME        when the publication ends (RFC 3339)
  --json                print JSON
  --home DIR            the local cloud's state directory (TRUECLOUD_HOME, ./.truecloud)
  --help                show this text`;

function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function short(id: string): string {
  return `${id.slice(0, 12)}…${id.slice(-4)}`;
}

class CliError extends Error {}

// Media types by file extension, as Hono knows them (text with its charset).
function guessType(path: string): string {
  return getMimeType(path) ?? "application/octet-stream";
}

async function call(
  home: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<Record<string, unknown>> {
  const res = await open(home, method, path, body);
  return await res.json().catch(() => ({})) as Record<string, unknown>;
}

// The control API's answer, or a one-line error from it.
async function open(
  home: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<Response> {
  const raw = body instanceof ReadableStream;
  let control: { url: string; token: string };
  try {
    control = JSON.parse(await Deno.readTextFile(`${home}/control.json`));
  } catch {
    throw new CliError(
      `no running cloud under ${home} (start one with deno task start, or give --home)`,
    );
  }
  let res: Response;
  try {
    res = await fetch(`${control.url}${path}`, {
      signal: AbortSignal.timeout(600_000),
      method,
      headers: {
        authorization: `Bearer ${control.token}`,
        ...(body && !raw ? { "content-type": "application/json" } : {}),
      },
      body: raw ? body : body ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw new CliError(`the cloud under ${home} does not answer at ${control.url}; is it running?`);
  }
  if (!res.ok) {
    const answer = await res.json().catch(() => ({})) as { error?: { message?: string } };
    throw new CliError(answer.error?.message ?? `the control API answered ${res.status}`);
  }
  return res;
}

function printStatus(nodes: NodeReport[]): void {
  for (const n of nodes) {
    const e = n.entitlement;
    const peers = n.vpns.reduce((s, v) => s + v.connected, 0);
    console.log(
      `${n.name.padEnd(8)} ${short(n.id)}  ${
        n.stopped ? "stopped  " : ""
      }vpns ${n.vpns.length}/${n.maxVpns}  peers ${String(peers).padStart(2)}  storage ${
        bytes(e.use.storageBytes)
      } used of ${bytes(e.allowance.storageBytes)} allowed (${
        bytes(e.entitlement.storageBytes)
      } entitled, × 8/5 raw), ${bytes(e.given.storageBytes)} given`,
    );
  }
}

function printVpns(nodes: NodeReport[]): void {
  for (const n of nodes) {
    console.log(`${n.name} ${n.id}`);
    if (!n.vpns.length) console.log("  (in no VPN yet)");
    for (const v of n.vpns) {
      console.log(
        `  ${v.vpn}  members ${v.members}/${v.maxMembers}  connected ${v.connected}  ${
          v.guardian ? "guardian" : "member"
        }${v.soliciting ? ", soliciting" : ""}  credential until ${v.credentialExpires}`,
      );
    }
  }
}

function printAudits(nodes: NodeReport[]): void {
  const when = (s: number) => new Date(s * 1000).toISOString().slice(0, 19) + "Z";
  for (const n of nodes) {
    console.log(`${n.name} ${n.id}: ${n.audits.length} provider(s) audited`);
    for (const a of n.audits.sort((x, y) => y.failures - x.failures)) {
      console.log(
        `  ${a.provider}  passed ${a.passes}, failed ${a.failures}; last ${a.last.kind} ${
          a.last.ok ? "passed" : "FAILED"
        } ${when(a.last.at)}`,
      );
      if (a.lastFailure) {
        console.log(`    last failure ${when(a.lastFailure.at)}: ${a.lastFailure.detail}`);
      }
    }
  }
}

function printEntitlement(nodes: NodeReport[]): void {
  for (const n of nodes) {
    const { contribution: c, entitlement: e, use, given, held } = n.entitlement;
    console.log(`${n.name} ${n.id}`);
    console.log(
      `  lends     ${bytes(c.diskBytes)} disk, ${c.cpuMillicores} mCPU, ${
        bytes(c.memoryBytes)
      } memory, ${
        c.bandwidthBps ? `${bytes(c.bandwidthBps)}/s upload` : "upload not measured yet"
      } (ratio ${c.ratio})`,
    );
    console.log(
      `  entitled  ${bytes(e.storageBytes)} storage, ${e.cpuMillicores} mCPU, ${
        bytes(e.memoryBytes)
      } memory`,
    );
    console.log(
      `  uses      ${bytes(use.storageBytes)} storage (of ${
        bytes(n.entitlement.allowance.storageBytes)
      } allowed: raw, × 8/5), ${use.cpuMillicores} mCPU, ${bytes(use.memoryBytes)} memory`,
    );
    console.log(
      `  gives     ${bytes(given.storageBytes)} storage, ${given.cpuMillicores} mCPU, ${
        bytes(given.memoryBytes)
      } memory; holds ${bytes(held)} of CDN content`,
    );
  }
}

function printCfs(s: CfsStatus): void {
  const p = s.pool;
  console.log(
    `pool ${p.state}: ${bytes(p.usedBytes)} used of ${
      bytes(p.sizeBytes)
    }; ${p.lossesTolerated} more loss(es) tolerated`,
  );
  console.log(`spread: ${s.distribution.summary}`);
  for (const v of s.volumes) {
    const e = v.errors;
    console.log(
      `  ${v.slot} ${v.role.padEnd(6)} ${v.state.padEnd(11)} ${
        v.provider ? short(v.provider) : "-".padEnd(17)
      }  ${bytes(v.sizeBytes).padStart(10)}  ${
        v.latencyMs === undefined ? "    -" : `${v.latencyMs.toFixed(1).padStart(5)} ms`
      }  errors r${e.read}/w${e.write}/c${e.checksum}${
        v.behindStripes ? `  ${v.behindStripes} stripe(s) behind` : ""
      }`,
    );
  }
  const r = s.resilver;
  if (r) {
    const pct = r.totalBytes ? Math.floor(r.doneBytes / r.totalBytes * 100) : 100;
    console.log(
      `resilver (${r.kind}) of volume ${r.slot}: ${pct}% ${
        r.finished
          ? "done"
          : r.etaSeconds === undefined
          ? ""
          : `, ${Math.ceil(r.etaSeconds)} s left`
      }`,
    );
  }
  for (const e of s.events.slice(0, 10)) {
    console.log(`  ${new Date(e.at).toISOString()} ${e.level.padEnd(5)} ${e.message}`);
  }
}

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        node: { type: "string" },
        bytes: { type: "string" },
        count: { type: "string" },
        out: { type: "string" },
        reason: { type: "string" },
        name: { type: "string" },
        visibility: { type: "string" },
        type: { type: "string" },
        expires: { type: "string" },
        json: { type: "boolean" },
        home: { type: "string" },
        help: { type: "boolean" },
      },
    });
  } catch (err) {
    console.error(`node: ${(err as Error).message}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, ...rest] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  const base = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const home = resolve(base, values.home ?? Deno.env.get("TRUECLOUD_HOME") ?? ".truecloud");
  const node = values.node ? encodeURIComponent(values.node) : undefined;
  try {
    let result: Record<string, unknown>;
    let nodes: NodeReport[];
    switch (command) {
      case "status":
      case "vpns":
      case "entitlement":
      case "audits": {
        if (rest.length) throw new CliError(`${command} takes no arguments`);
        result = await call(home, "GET", node ? `/nodes/${node}` : "/nodes");
        nodes = node ? [result as unknown as NodeReport] : result.nodes as NodeReport[];
        break;
      }
      case "join": {
        if (!node) throw new CliError("join needs --node NAME|ID");
        result = await call(home, "POST", `/nodes/${node}/join`);
        nodes = [result.node as NodeReport];
        if (!values.json) console.log(`${nodes[0].name} joined ${result.joined} VPN(s)`);
        break;
      }
      case "leave": {
        if (!node) throw new CliError("leave needs --node NAME|ID");
        if (rest.length !== 1) throw new CliError("leave needs the VPN's UUID");
        result = await call(home, "POST", `/nodes/${node}/leave/${encodeURIComponent(rest[0])}`);
        nodes = [result.node as NodeReport];
        if (!values.json) console.log(`${nodes[0].name} left ${result.left}`);
        break;
      }
      case "stop": {
        if (!node) throw new CliError("stop needs --node NAME|ID");
        if (rest.length) throw new CliError("stop takes no arguments");
        result = await call(home, "POST", `/nodes/${node}/stop`);
        nodes = [result.node as NodeReport];
        if (!values.json) console.log(`${nodes[0].name} stopped`);
        break;
      }
      case "cdn-get": {
        if (!node) throw new CliError("cdn-get needs --node NAME|ID");
        if (rest.length !== 1) throw new CliError("cdn-get needs the object's CID");
        const res = await open(home, "GET", `/nodes/${node}/cdn/${encodeURIComponent(rest[0])}`);
        const out = values.out
          ? await Deno.open(resolve(base, values.out), {
            write: true,
            create: true,
            truncate: true,
          })
          : Deno.stdout;
        let n = 0;
        for await (const chunk of res.body!) {
          n += chunk.length;
          await out.write(chunk);
        }
        if (values.out) {
          (out as Deno.FsFile).close();
          console.error(`${n} bytes written to ${values.out}`);
        }
        return 0;
      }
      case "cdn-put": {
        if (!node) throw new CliError("cdn-put needs --node NAME|ID");
        if (rest.length !== 1) throw new CliError("cdn-put needs the file to publish");
        if (!values.name) throw new CliError("cdn-put needs --name NAME");
        const visibility = values.visibility ?? "public";
        if (!["public", "members"].includes(visibility)) {
          throw new CliError("--visibility must be public or members");
        }
        const path = resolve(base, rest[0]);
        let file: Deno.FsFile;
        try {
          file = await Deno.open(path);
        } catch (err) {
          throw new CliError(`cannot read ${rest[0]}: ${(err as Error).message}`);
        }
        const q = new URLSearchParams({
          name: values.name,
          visibility,
          type: values.type ?? guessType(path),
          ...(values.expires ? { expires: values.expires } : {}),
        });
        result = await call(home, "POST", `/nodes/${node}/cdn?${q}`, file.readable);
        if (values.json) console.log(JSON.stringify(result, null, 2));
        else {
          console.log(
            `published ${result.name} (${result.visibility}): ${result.cid}, ${
              bytes(Number(result.size))
            }`,
          );
        }
        return 0;
      }
      case "cfs":
      case "scrub": {
        if (!node) throw new CliError(`${command} needs --node NAME|ID`);
        if (rest.length) throw new CliError(`${command} takes no arguments`);
        if (command === "scrub") {
          result = await call(home, "POST", `/nodes/${node}/cfs/scrub`);
          if (values.json) console.log(JSON.stringify(result, null, 2));
          else console.log(`scrub finished: ${result.repaired} block(s) repaired`);
          return 0;
        }
        result = await call(home, "GET", `/nodes/${node}/cfs`);
        if (values.json) console.log(JSON.stringify(result, null, 2));
        else printCfs(result as unknown as CfsStatus);
        return 0;
      }
      case "cdn-ls": {
        if (!node) throw new CliError("cdn-ls needs --node NAME|ID");
        if (rest.length) throw new CliError("cdn-ls takes no arguments");
        result = await call(home, "GET", `/nodes/${node}/cdn`);
        if (values.json) console.log(JSON.stringify(result, null, 2));
        else {
          const objects = result.objects as {
            name: string;
            cid: string;
            size: number;
            visibility: string;
          }[];
          for (const o of objects) {
            console.log(
              `${o.visibility.padEnd(7)} ${bytes(o.size).padStart(10)}  ${o.cid}  ${o.name}`,
            );
          }
          const live = result.liveHolders as string[];
          console.log(`${objects.length} object(s); ${live.length} live holder(s) in view`);
        }
        return 0;
      }
      case "revoke": {
        if (!node) throw new CliError("revoke needs --node NAME|ID");
        if (rest.length !== 2) {
          throw new CliError("revoke needs the VPN's UUID and the member's id");
        }
        const q = values.reason ? `?reason=${encodeURIComponent(values.reason)}` : "";
        result = await call(
          home,
          "POST",
          `/nodes/${node}/revoke/${encodeURIComponent(rest[0])}/${encodeURIComponent(rest[1])}${q}`,
        );
        nodes = [result.node as NodeReport];
        if (!values.json) console.log(`${rest[1]} revoked; ${rest[0]} re-keyed`);
        break;
      }
      case "ping": {
        if (!node) throw new CliError("ping needs --node NAME|ID");
        if (rest.length !== 1) throw new CliError("ping needs the member's node id");
        result = await call(home, "POST", `/nodes/${node}/ping/${encodeURIComponent(rest[0])}`);
        if (!values.json) {
          console.log(
            `${rest[0]}: ${Number(result.rttMs).toFixed(1)} ms, ${
              result.relayed ? "through a relay" : "direct"
            }`,
          );
          return 0;
        }
        nodes = [];
        break;
      }
      case "request": {
        if (!node) throw new CliError("request needs --node NAME|ID");
        const bytes = Number(values.bytes);
        const count = Number(values.count ?? 8);
        if (!Number.isSafeInteger(bytes) || bytes < 1) {
          throw new CliError("request needs --bytes, a whole number of bytes");
        }
        if (!Number.isInteger(count) || count < 1 || count > 32) {
          throw new CliError("--count must be a whole number from 1 to 32");
        }
        result = await call(home, "POST", `/nodes/${node}/request`, {
          kind: "storage",
          bytes,
          leaseSeconds: 3600,
          count,
          waitMs: 5000,
        });
        if (!values.json) {
          const offers = result.offers as { provider: string; vpn: string }[];
          console.log(`${offers.length} offer(s)`);
          for (const o of offers) console.log(`  ${o.provider}  on VPN ${o.vpn}`);
          return 0;
        }
        nodes = [];
        break;
      }
      default:
        throw new CliError(`unknown command ${command} (try --help)`);
    }
    if (values.json) console.log(JSON.stringify(result, null, 2));
    else if (["vpns", "join", "leave", "revoke"].includes(command)) printVpns(nodes);
    else if (command === "entitlement") printEntitlement(nodes);
    else if (command === "audits") printAudits(nodes);
    else printStatus(nodes);
    return 0;
  } catch (err) {
    if (err instanceof CliError) {
      console.error(`node: ${err.message}`);
      return 1;
    }
    throw err;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
