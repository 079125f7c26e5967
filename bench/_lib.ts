// Shared by the benchmarks: tools, ports, the gateway and nginx as subprocesses, load generators.
// Every process started is stopped by its PID; all traffic stays on 127.0.0.1.

/** The path of a command, or `undefined`. */
export async function which(cmd: string): Promise<string | undefined> {
  for (const dir of (Deno.env.get("PATH") ?? "").split(":").concat(["/usr/sbin", "/sbin"])) {
    try {
      const p = `${dir}/${cmd}`;
      if ((await Deno.stat(p)).isFile) return p;
    } catch { /* not here */ }
  }
  return undefined;
}

/** Finds the tools or exits with a one-line message naming the packages. */
export async function requireTools<T extends string>(
  names: T[],
  packages: string,
): Promise<Record<T, string>> {
  const found = {} as Record<T, string>;
  const missing: string[] = [];
  for (const n of names) {
    const p = await which(n);
    if (p) found[n] = p;
    else missing.push(n);
  }
  if (missing.length) {
    console.error(
      `bench: missing ${missing.join(", ")}; install with: apt-get install ${packages}`,
    );
    Deno.exit(2);
  }
  return found;
}

/** A free port on 127.0.0.1. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = l.addr as Deno.NetAddr;
  l.close();
  return port;
}

/** Waits until a URL answers. */
export async function waitFor(url: string, client: Deno.HttpClient, ms = 20_000): Promise<void> {
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

function bytes(v: string): number {
  const m = v.match(/^([\d.]+)([KMG]?)B$/);
  if (!m) return NaN;
  return Number(m[1]) *
    ({ "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 } as Record<string, number>)[m[2]];
}

/** One load run's outcome. */
export interface LoadResult {
  /** Requests per second. */
  rps: number;
  /** Bytes per second of responses. */
  bps: number;
  /** 99th percentile latency, ms. */
  p99ms: number;
  /** Anything that went wrong, such as non-2xx answers. */
  errors: string;
}

/** wrk: HTTP/1.1 keep-alive load. */
export async function wrk(
  wrkPath: string,
  url: string,
  threads: number,
  conns: number,
  seconds: number,
  timeoutS = 2,
): Promise<LoadResult> {
  const out = await run(wrkPath, [
    `-t${threads}`,
    `-c${conns}`,
    `-d${seconds}s`,
    `--timeout`,
    `${timeoutS}s`,
    "--latency",
    url,
  ]);
  return {
    rps: Number(out.match(/Requests\/sec:\s+([\d.]+)/)?.[1] ?? NaN),
    bps: bytes(out.match(/Transfer\/sec:\s+(\S+)/)?.[1] ?? ""),
    p99ms: ms(out.match(/^\s+99%\s+(\S+)/m)?.[1] ?? ""),
    errors: [...out.matchAll(/^\s*(Non-2xx.*|Socket errors.*)$/gm)].map((m) => m[1]).join("; "),
  };
}

/** h2load: HTTP/2 load, 10 streams per connection. */
export async function h2load(
  h2loadPath: string,
  url: string,
  conns: number,
  seconds: number,
  dir: string,
): Promise<LoadResult> {
  const log = `${dir}/h2load.log`;
  const out = await run(h2loadPath, [
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
  const bps = bytes(out.match(/finished in [\d.]+\w+, [\d.]+ req\/s, (\S+)\/s/)?.[1] ?? "");
  const proto = out.match(/Application protocol: (\S+)/)?.[1] ?? "?";
  const failed = out.match(/requests: .* (\d+) failed/)?.[1] ?? "?";
  const times = (await Deno.readTextFile(log).catch(() => "")).trim().split("\n")
    .map((l) => Number(l.split("\t")[2])).filter(Number.isFinite).sort((a, b) => a - b);
  await Deno.remove(log).catch(() => {});
  return {
    rps,
    bps,
    p99ms: times.length
      ? times[Math.min(times.length - 1, Math.floor(times.length * 0.99))] / 1000
      : NaN,
    errors: proto !== "h2" ? `protocol ${proto}` : failed !== "0" ? `${failed} failed` : "",
  };
}

/** The median. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** Starts the gateway as `deno task gateway` runs it (rate limit off), and waits for it. */
export async function startGateway(
  root: string,
  dir: string,
  client: Deno.HttpClient,
  extra: string[] = [],
): Promise<{ child: Deno.ChildProcess; base: string }> {
  const port = freePort();
  const child = new Deno.Command(Deno.execPath(), {
    args: [
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
      String(port),
      "--cert",
      `${dir}/cert.pem`,
      "--key",
      `${dir}/key.pem`,
      "--rate-limit",
      "off",
      "--log-level",
      "warn",
      ...extra,
    ],
    cwd: root,
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const base = `https://127.0.0.1:${port}`;
  await waitFor(`${base}/healthz`, client);
  return { child, base };
}

/** Starts nginx (one worker per core, TLS, HTTP/2 and HTTP/1.1 on one port) serving `www`. */
export async function startNginx(
  nginxPath: string,
  dir: string,
  www: string,
  types: string,
  probe: string,
  client: Deno.HttpClient,
): Promise<{ child: Deno.ChildProcess; base: string }> {
  const port = freePort();
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
  types { ${types} }
  server {
    listen 127.0.0.1:${port} ssl http2 reuseport;
    ssl_certificate ${dir}/cert.pem;
    ssl_certificate_key ${dir}/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    root ${www};
    charset utf-8;
  }
}
`,
  );
  const child = new Deno.Command(nginxPath, {
    args: ["-c", `${dir}/nginx/nginx.conf`, "-p", `${dir}/nginx`, "-e", `${dir}/nginx/error.log`],
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  const base = `https://127.0.0.1:${port}`;
  await waitFor(`${base}${probe}`, client);
  return { child, base };
}

/** Stops processes by PID and waits for them. */
export async function stopAll(children: Deno.ChildProcess[]): Promise<void> {
  for (const c of children) {
    try {
      c.kill("SIGTERM");
    } catch { /* already gone */ }
    await c.status;
  }
}
