/**
 * CDN egress benchmark: the gateway serving published objects at `/cdn/{CID}` over HTTPS, side by
 * side in the same run with nginx serving the same bytes as static files over HTTPS, same
 * certificate, same machine, loaded with `wrk` (HTTP/1.1 keep-alive). A 4 KiB and a 1 MiB object
 * (requests per second; both fit the gateway's edge cache) and a 256 MiB one (bandwidth).
 *
 *   deno task bench:cdn [--duration 5] [--rounds 3] [--connections 32]
 *
 * Needs `wrk` and `nginx`. All traffic stays on 127.0.0.1; every process started is stopped by PID.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { addContent, BlockStore, Catalogue, signPublish } from "../cdn/mod.ts";
import { makeSelfSigned } from "../gateway/mod.ts";
import { NodeIdentity } from "../protocol/mod.ts";
import {
  type LoadResult,
  median,
  requireTools,
  startGateway,
  startNginx,
  stopAll,
  wrk,
} from "./_lib.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    duration: { type: "string", default: "5" },
    rounds: { type: "string", default: "3" },
    connections: { type: "string", default: "32" },
  },
});
const DURATION = Number(flags.duration);
const ROUNDS = Number(flags.rounds);
const CONNS = Number(flags.connections);
if (
  ![DURATION, ROUNDS, CONNS].every((n) => Number.isInteger(n) && n > 0) || DURATION > 120 ||
  ROUNDS > 20
) {
  console.error(
    "bench: --duration (1..120), --rounds (1..20) and --connections must be positive whole numbers",
  );
  Deno.exit(2);
}
const tools = await requireTools(["wrk", "nginx"], "wrk nginx-light");

function random(n: number): Uint8Array {
  const out = new Uint8Array(n);
  const block = new Uint8Array(1 << 20);
  for (let i = 0; i < block.length; i += 65536) {
    crypto.getRandomValues(block.subarray(i, i + 65536));
  }
  for (let i = 0; i < n; i += block.length) {
    out.set(block.subarray(0, Math.min(block.length, n - i)), i);
  }
  for (let i = 0; i < n; i += 4096) out[i] = i & 0xff; // no two 1 MiB chunks alike
  return out;
}

const dir = await Deno.makeTempDir({ prefix: "truecloud-bench-cdn-" });
await Deno.chmod(dir, 0o755);
const children: Deno.ChildProcess[] = [];
const root = new URL("..", import.meta.url).pathname;
try {
  const tls = await makeSelfSigned();
  await Deno.writeTextFile(`${dir}/cert.pem`, tls.cert);
  await Deno.writeTextFile(`${dir}/key.pem`, tls.key, { mode: 0o600 });
  const client = Deno.createHttpClient({ caCerts: [tls.cert] });

  // Publish the objects into a CDN directory the gateway serves; the same bytes for nginx.
  const cdnDir = `${dir}/home/cdn`;
  const store = await BlockStore.open(`${cdnDir}/blocks`, 2 ** 40);
  const member = await NodeIdentity.generate();
  const catalogue = await Catalogue.open(`${cdnDir}/catalogue.kv`, {
    isMember: (id) => id === member.nodeId,
    has: (c) => store.has(c),
  });
  await Deno.mkdir(`${dir}/www`, { recursive: true });
  const objects: { label: string; size: number; cid: string }[] = [];
  for (
    const [label, size] of [["4 KiB", 4096], ["1 MiB", 1 << 20], ["256 MiB", 256 << 20]] as const
  ) {
    const bytes = random(size);
    const { cid } = await addContent(store, bytes);
    await catalogue.publish(
      await signPublish(member, {
        v: 1,
        name: `bench/${size}.bin`,
        cid: cid.toString(),
        size,
        type: "application/octet-stream",
        visibility: "public",
      }),
    );
    await Deno.writeFile(`${dir}/www/${cid}`, bytes);
    objects.push({ label, size, cid: cid.toString() });
  }
  catalogue.close();

  const gw = await startGateway(root, dir, client);
  children.push(gw.child);
  const ng = await startNginx(
    tools.nginx,
    dir,
    `${dir}/www`,
    "application/octet-stream bin;",
    `/${objects[0].cid}`,
    client,
  );
  children.push(ng.child);
  client.close();

  console.log(
    `cdn: ${DURATION} s per run, ${ROUNDS} rounds (medians); ${navigator.hardwareConcurrency} cores; load tools on the same machine`,
  );
  for (const o of objects) {
    const big = o.size > (1 << 20);
    const conns = big ? 4 : CONNS;
    const servers = [
      { name: "gateway", url: `${gw.base}/cdn/${o.cid}` },
      { name: "nginx", url: `${ng.base}/${o.cid}` },
    ];
    for (const s of servers) await wrk(tools.wrk, s.url, 2, conns, 2); // warm-up
    const runs: Record<string, LoadResult[]> = { gateway: [], nginx: [] };
    for (let round = 0; round < ROUNDS; round++) {
      for (const s of round % 2 ? [...servers].reverse() : servers) {
        runs[s.name].push(await wrk(tools.wrk, s.url, 2, conns, DURATION, big ? 60 : 2));
      }
    }
    const pick = (name: string, k: "rps" | "bps") => median(runs[name].map((r) => r[k]));
    const k = big ? "bps" : "rps";
    const unit = (
      v: number,
    ) => (big ? `${(v / 1024 / 1024).toFixed(0)} MiB/s` : `${v.toFixed(0)}/s`);
    const errors = [...runs.gateway, ...runs.nginx].map((r) => r.errors).filter(Boolean);
    console.log(
      `${o.label.padEnd(8)} ${
        big ? `bandwidth, wrk ${conns} conns` : `requests, wrk ${conns} conns`
      }`.padEnd(42) +
        ` gateway ${unit(pick("gateway", k)).padStart(12)} | nginx ${
          unit(pick("nginx", k)).padStart(12)
        } | ratio ${(pick("gateway", k) / pick("nginx", k)).toFixed(2)}×${
          errors.length ? ` [${[...new Set(errors)].join("; ")}]` : ""
        }`,
    );
  }
} finally {
  await stopAll(children);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
