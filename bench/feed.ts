/**
 * Feed benchmark: the gateway serving `GET /discovery/feed.rss` over HTTPS, side by side in the
 * same run with nginx serving the same feed bytes as a static file over HTTPS, with the same
 * certificate, on the same machine. Load comes from `wrk` (HTTP/1.1 keep-alive) and `h2load`
 * (HTTP/2). Prints requests per second, p99 latency and the ratio gateway / nginx.
 *
 *   deno task bench:feed [--duration 5] [--rounds 3] [--records 4] [--connections 32] [--json FILE]
 *
 * Needs `wrk`, `h2load` and `nginx` (Debian: `apt-get install wrk nghttp2-client nginx-light`).
 * All traffic stays on 127.0.0.1; every process started is stopped by its PID.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { RecordPublisher } from "../discovery/mod.ts";
import { makeSelfSigned } from "../gateway/mod.ts";
import { newUuid, NodeIdentity } from "../protocol/mod.ts";
import {
  h2load,
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
    records: { type: "string", default: "4" },
    connections: { type: "string", default: "32" },
    workers: { type: "string" },
    json: { type: "string" },
  },
});
const DURATION = Number(flags.duration);
const RECORDS = Number(flags.records);
const CONNS = Number(flags.connections);
const ROUNDS = Number(flags.rounds);
if (
  ![DURATION, RECORDS, CONNS, ROUNDS].every((n) => Number.isInteger(n) && n > 0) ||
  DURATION > 120 ||
  ROUNDS > 20
) {
  console.error(
    "bench: --duration (1..120), --rounds (1..20), --records and --connections must be positive whole numbers",
  );
  Deno.exit(2);
}
const tools = await requireTools(["wrk", "h2load", "nginx"], "wrk nghttp2-client nginx-light");

const dir = await Deno.makeTempDir({ prefix: "truecloud-bench-" });
await Deno.chmod(dir, 0o755); // nginx workers run unprivileged and must read the feed file
const children: Deno.ChildProcess[] = [];
const root = new URL("..", import.meta.url).pathname;
try {
  const tls = await makeSelfSigned();
  await Deno.writeTextFile(`${dir}/cert.pem`, tls.cert);
  await Deno.writeTextFile(`${dir}/key.pem`, tls.key, { mode: 0o600 });
  const client = Deno.createHttpClient({ caCerts: [tls.cert] });

  const gw = await startGateway(root, dir, client, [
    "--allow-private-addresses",
    ...(flags.workers ? ["--workers", flags.workers] : []),
  ]);
  children.push(gw.child);

  // Records, then the very bytes the gateway serves, for nginx.
  const f: typeof fetch = (i, init) => fetch(i, { ...init, client });
  for (let i = 0; i < RECORDS; i++) {
    const pub = new RecordPublisher({
      guardian: await NodeIdentity.generate(),
      endpoints: [`${gw.base}/discovery`],
      fetch: f,
    });
    await pub.publish({
      v: 1,
      vpn: newUuid(),
      state: "soliciting",
      ips: ["127.0.0.1", "::1"],
      guestPort: 4001 + i,
      guestKey: Array.from(
        { length: 32 },
        () => Math.floor(Math.random() * 256).toString(16).padStart(2, "0"),
      ).join(""),
    });
  }
  const feedPath = `/discovery/feed.rss?count=${RECORDS}`;
  const feed = await (await f(`${gw.base}${feedPath}`)).text();
  await Deno.mkdir(`${dir}/www/discovery`, { recursive: true });
  await Deno.writeTextFile(`${dir}/www/discovery/feed.rss`, feed);
  const ng = await startNginx(
    tools.nginx,
    dir,
    `${dir}/www`,
    "application/rss+xml rss;",
    "/discovery/feed.rss",
    client,
  );
  children.push(ng.child);
  client.close();

  console.log(
    `feed: ${
      new TextEncoder().encode(feed).length
    } bytes, ${RECORDS} records; ${DURATION} s per run, ` +
      `${ROUNDS} rounds (medians); ${navigator.hardwareConcurrency} cores; load tools on the same machine`,
  );
  const servers = [
    { name: "gateway", url: `${gw.base}${feedPath}` },
    { name: "nginx", url: `${ng.base}/discovery/feed.rss` },
  ];
  const scenarios = [
    {
      name: `HTTP/1.1 keep-alive, wrk ${CONNS} conns`,
      run: (u: string) => wrk(tools.wrk, u, 2, CONNS, DURATION),
    },
    {
      name: "HTTP/1.1 keep-alive, wrk 1 conn",
      run: (u: string) => wrk(tools.wrk, u, 1, 1, Math.max(3, DURATION / 2)),
    },
    {
      name: `HTTP/2, h2load ${CONNS} conns × 10 streams`,
      run: (u: string) => h2load(tools.h2load, u, CONNS, DURATION, dir),
    },
  ];
  for (const srv of servers) await wrk(tools.wrk, srv.url, 2, CONNS, 2); // warm-up, discarded
  // This machine is shared and noisy: each scenario runs in several rounds, the two servers
  // alternating first, and the medians are compared.
  const rows: Record<string, unknown>[] = [];
  for (const s of scenarios) {
    const runs: Record<string, LoadResult[]> = { gateway: [], nginx: [] };
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 ? [...servers].reverse() : servers;
      for (const srv of order) runs[srv.name].push(await s.run(srv.url));
    }
    const med = (name: string) => ({
      rps: median(runs[name].map((r) => r.rps)),
      p99ms: median(runs[name].map((r) => r.p99ms)),
      errors: [...new Set(runs[name].map((r) => r.errors).filter(Boolean))].join("; "),
    });
    const g = med("gateway");
    const n = med("nginx");
    const ratios = runs.gateway.map((r, i) => r.rps / runs.nginx[i].rps);
    const ratio = g.rps / n.rps;
    rows.push({ scenario: s.name, gateway: g, nginx: n, ratio, ratios, runs });
    console.log(
      `${s.name.padEnd(40)} gateway ${g.rps.toFixed(0).padStart(7)}/s p99 ${
        g.p99ms.toFixed(2).padStart(6)
      } ms | nginx ${n.rps.toFixed(0).padStart(7)}/s p99 ${
        n.p99ms.toFixed(2).padStart(6)
      } ms | ratio ${ratio.toFixed(2)}× (rounds ${ratios.map((x) => x.toFixed(2)).join(", ")})${
        g.errors ? ` [gateway: ${g.errors}]` : ""
      }${n.errors ? ` [nginx: ${n.errors}]` : ""}`,
    );
  }
  if (flags.json) {
    await Deno.writeTextFile(
      flags.json,
      JSON.stringify({ date: new Date().toISOString(), rows }, null, 2),
    );
  }
} finally {
  await stopAll(children);
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
