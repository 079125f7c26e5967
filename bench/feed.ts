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

async function which(cmd: string): Promise<string | undefined> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/sbin", "/sbin"])) {
    try {
      const p = `${dir}/${cmd}`;
      if ((await Deno.stat(p)).isFile) return p;
    } catch { /* not here */ }
  }
  return undefined;
}

const tools = {
  wrk: await which("wrk"),
  h2load: await which("h2load"),
  nginx: await which("nginx"),
};
const missing = Object.entries(tools).filter(([, p]) => !p).map(([k]) => k);
if (missing.length) {
  console.error(
    `bench: missing ${
      missing.join(", ")
    }; install with: apt-get install wrk nghttp2-client nginx-light`,
  );
  Deno.exit(2);
}

function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = l.addr as Deno.NetAddr;
  l.close();
  return port;
}

async function waitFor(url: string, client: Deno.HttpClient, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      const r = await fetch(url, { client });
      await r.body?.cancel();
      if (r.status < 500) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not come up`);
}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
}

function ms(v: string): number {
  const m = v.match(/^([\d.]+)(us|ms|s)$/);
  if (!m) return NaN;
  return Number(m[1]) * (m[2] === "us" ? 0.001 : m[2] === "s" ? 1000 : 1);
}

interface Result {
  rps: number;
  p99ms: number;
  errors: string;
}

async function wrk(url: string, threads: number, conns: number, seconds: number): Promise<Result> {
  const out = await run(tools.wrk!, [
    `-t${threads}`,
    `-c${conns}`,
    `-d${seconds}s`,
    "--latency",
    url,
  ]);
  const rps = Number(out.match(/Requests\/sec:\s+([\d.]+)/)?.[1] ?? NaN);
  const p99 = ms(out.match(/^\s+99%\s+(\S+)/m)?.[1] ?? "");
  const errors = [...out.matchAll(/^\s*(Non-2xx.*|Socket errors.*)$/gm)].map((m) => m[1]).join(
    "; ",
  );
  return { rps, p99ms: p99, errors };
}

async function h2load(url: string, conns: number, seconds: number, dir: string): Promise<Result> {
  const log = `${dir}/h2load.log`;
  const out = await run(tools.h2load!, [
    "-D",
    String(seconds),
    "-c",
    String(conns),
    "-m",
    "10",
    "--warm-up-time=1",
    `--log-file=${log}`,
    url,
  ]);
  const rps = Number(out.match(/finished in [\d.]+\w+, ([\d.]+) req\/s/)?.[1] ?? NaN);
  const proto = out.match(/Application protocol: (\S+)/)?.[1] ?? "?";
  const failed = out.match(/requests: .* (\d+) failed/)?.[1] ?? "?";
  const times = (await Deno.readTextFile(log).catch(() => "")).trim().split("\n")
    .map((l) => Number(l.split("\t")[2])).filter(Number.isFinite).sort((a, b) => a - b);
  const p99 = times.length
    ? times[Math.min(times.length - 1, Math.floor(times.length * 0.99))] / 1000
    : NaN;
  await Deno.remove(log).catch(() => {});
  return {
    rps,
    p99ms: p99,
    errors: proto !== "h2" ? `protocol ${proto}` : failed !== "0" ? `${failed} failed` : "",
  };
}

const dir = await Deno.makeTempDir({ prefix: "truecloud-bench-" });
await Deno.chmod(dir, 0o755); // nginx workers run unprivileged and must read the feed file
const children: Deno.ChildProcess[] = [];
const root = new URL("..", import.meta.url).pathname;
try {
  const tls = await makeSelfSigned();
  await Deno.writeTextFile(`${dir}/cert.pem`, tls.cert);
  await Deno.writeTextFile(`${dir}/key.pem`, tls.key, { mode: 0o600 });
  const client = Deno.createHttpClient({ caCerts: [tls.cert] });

  // The gateway, as `deno task gateway` runs it, with the rate limit off for the load.
  const gwPort = freePort();
  const gwArgs = [
    "run",
    "--allow-net",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "--allow-sys",
    "--allow-ffi",
    `${root}gateway/main.ts`,
    "--home",
    `${dir}/home`,
    "--port",
    String(gwPort),
    "--cert",
    `${dir}/cert.pem`,
    "--key",
    `${dir}/key.pem`,
    "--rate-limit",
    "off",
    "--log-level",
    "warn",
    "--allow-private-addresses",
    ...(flags.workers ? ["--workers", flags.workers] : []),
  ];
  const gw = new Deno.Command(Deno.execPath(), {
    args: gwArgs,
    cwd: root,
    stdout: "null",
    stderr: "inherit",
  })
    .spawn();
  children.push(gw);
  const gwBase = `https://127.0.0.1:${gwPort}`;
  await waitFor(`${gwBase}/healthz`, client);

  // Records, then the very bytes the gateway serves, for nginx.
  const f: typeof fetch = (i, init) => fetch(i, { ...init, client });
  for (let i = 0; i < RECORDS; i++) {
    const pub = new RecordPublisher({
      guardian: await NodeIdentity.generate(),
      endpoints: [`${gwBase}/discovery`],
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
  const feed = await (await f(`${gwBase}${feedPath}`)).text();
  await Deno.mkdir(`${dir}/www/discovery`, { recursive: true });
  await Deno.writeTextFile(`${dir}/www/discovery/feed.rss`, feed);

  // nginx: one worker per core, TLS, HTTP/2 and HTTP/1.1 on one port, the file from page cache.
  const ngPort = freePort();
  await Deno.mkdir(`${dir}/nginx/tmp`, { recursive: true });
  await Deno.writeTextFile(
    `${dir}/nginx/nginx.conf`,
    `worker_processes ${navigator.hardwareConcurrency};
daemon off;
pid ${dir}/nginx/nginx.pid;
error_log ${dir}/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/nginx/tmp; proxy_temp_path ${dir}/nginx/tmp;
  fastcgi_temp_path ${dir}/nginx/tmp; uwsgi_temp_path ${dir}/nginx/tmp; scgi_temp_path ${dir}/nginx/tmp;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000;
  types { application/rss+xml rss; }
  server {
    listen 127.0.0.1:${ngPort} ssl http2 reuseport;
    ssl_certificate ${dir}/cert.pem;
    ssl_certificate_key ${dir}/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    root ${dir}/www;
    location = /discovery/feed.rss { charset utf-8; charset_types application/rss+xml; }
  }
}
`,
  );
  const ng = new Deno.Command(tools.nginx!, {
    args: ["-c", `${dir}/nginx/nginx.conf`, "-p", `${dir}/nginx`, "-e", `${dir}/nginx/error.log`],
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  children.push(ng);
  const ngBase = `https://127.0.0.1:${ngPort}`;
  await waitFor(`${ngBase}/discovery/feed.rss`, client);
  client.close();

  console.log(
    `feed: ${
      new TextEncoder().encode(feed).length
    } bytes, ${RECORDS} records; ${DURATION} s per run, ${ROUNDS} rounds (medians); ` +
      `${navigator.hardwareConcurrency} cores; load tools on the same machine`,
  );
  const servers = [
    { name: "gateway", url: `${gwBase}${feedPath}` },
    { name: "nginx", url: `${ngBase}/discovery/feed.rss` },
  ];
  const scenarios = [
    {
      name: `HTTP/1.1 keep-alive, wrk ${CONNS} conns`,
      run: (u: string) => wrk(u, 2, CONNS, DURATION),
    },
    {
      name: "HTTP/1.1 keep-alive, wrk 1 conn",
      run: (u: string) => wrk(u, 1, 1, Math.max(3, DURATION / 2)),
    },
    {
      name: `HTTP/2, h2load ${CONNS} conns × 10 streams`,
      run: (u: string) => h2load(u, CONNS, DURATION, dir),
    },
  ];
  for (const srv of servers) await wrk(srv.url, 2, CONNS, 2); // warm-up, discarded
  // This machine is shared and noisy: each scenario runs in several rounds, the two servers
  // alternating first, and the medians are compared.
  const median = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  };
  const rows: Record<string, unknown>[] = [];
  for (const s of scenarios) {
    const runs: Record<string, Result[]> = { gateway: [], nginx: [] };
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
  for (const c of children) {
    try {
      c.kill("SIGTERM");
    } catch { /* already gone */ }
    await c.status;
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
