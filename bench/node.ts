/**
 * Node agent benchmarks, on 127.0.0.1:
 * - joining: from opening the guest connection to being a verified member (the guardian has shown
 *   its credential to the newcomer and taken the newcomer's), N newcomers one after another;
 * - broadcast round trip across three VPNs chained by two members in two VPNs each: from publishing
 *   a request in the first VPN to holding the offer of a provider that is only in the third, beside
 *   the round trip within one VPN;
 * - memory: resident size of idle node agents (`deno task agent`, separate processes, two VPN
 *   memberships' worth of work: one founds, one joins), beside an idle bare Deno process.
 *
 *   deno task bench:node [--joins 20] [--rounds 20] [--idle 10]
 *
 * @module
 */

import { parseArgs } from "node:util";
import { makeSelfSigned } from "../gateway/mod.ts";
import { buildDevelopmentRelease } from "../library/mod.ts";
import {
  Broadcaster,
  catalogFromTargets,
  foundVpn,
  guardianDecider,
  GuestServer,
  Ledger,
  mintAttestation,
  requestJoin,
  signContribution,
  vpnCredential,
  VpnNode,
  type VpnSecret,
} from "../node/mod.ts";
import { NodeIdentity } from "../protocol/mod.ts";
import { median, startGateway, stopAll } from "./_lib.ts";

const { values: flags } = parseArgs({
  args: Deno.args,
  options: {
    joins: { type: "string", default: "20" },
    rounds: { type: "string", default: "20" },
    idle: { type: "string", default: "10" },
  },
});
const JOINS = Number(flags.joins);
const ROUNDS = Number(flags.rounds);
const IDLE = Number(flags.idle);
if (
  ![JOINS, ROUNDS, IDLE].every((n) => Number.isInteger(n) && n > 0) || JOINS > 200 ||
  ROUNDS > 200 || IDLE > 120
) {
  console.error("bench: --joins and --rounds (1..200) and --idle (1..120 s) are whole numbers");
  Deno.exit(2);
}

const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)];
const ms = (x: number) => `${x.toFixed(1)} ms`;
const root = new URL("..", import.meta.url).pathname;
// The agent as shipped runs with these (as `deno task agent` does): a small young generation, no
// V8 helper threads, for a node that mostly waits, and `gc()` for after a burst of transfers.
const AGENT_V8_FLAGS = "--max-semi-space-size=1,--single-threaded,--expose-gc";
const RELEASE = { v: 1 as const, release: "r.tar.gz", sha256: "ab".repeat(32), length: 1 };
const releases = catalogFromTargets({
  "r.tar.gz": { length: 1, hashes: { sha256: "ab".repeat(32) } },
});
const contribution = {
  v: 1 as const,
  diskBytes: 1 << 30,
  cpuMillicores: 1000,
  memoryBytes: 1 << 30,
  bandwidthBps: 0,
  ratio: 0.4,
};

async function member(vpn: string, secret: VpnSecret) {
  const id = await NodeIdentity.generate();
  const credential = await vpnCredential(secret, vpn, id.nodeId);
  return { id, node: await VpnNode.start({ identity: id, vpn, secret, credential }) };
}

async function joins(): Promise<number[]> {
  const vpn = crypto.randomUUID();
  const secret = await foundVpn({ maxMembers: 256, maxPerLocation: 256, maxPerNetwork: 256 });
  const g = await member(vpn, secret);
  const guestKey = "c0".repeat(32);
  const guest = await GuestServer.start({
    identity: g.id,
    vpn,
    guestKey,
    decide: guardianDecider(g.node, { releases }),
    perAddressPerSecond: 1000,
  });
  const nodes: VpnNode[] = [g.node];
  const times: number[] = [];
  try {
    for (let i = 0; i < JOINS; i++) {
      const id = await NodeIdentity.generate();
      const attestation = await mintAttestation(id, RELEASE);
      const t0 = performance.now();
      const out = await requestJoin(id, {
        vpn,
        guardian: g.id.nodeId,
        addr: guest.addrs[0].replace(/\/p2p\/.*$/, ""),
        guestKey,
      }, { location: crypto.randomUUID(), network: crypto.randomUUID(), addrs: [], attestation });
      if (!out.admitted) throw new Error(`refused: ${out.refusal.reason}`);
      const node = await VpnNode.start({
        identity: id,
        vpn,
        secret: out.admission.secret,
        credential: out.admission.credential,
      });
      nodes.push(node);
      await node.connect(out.admission.members[0].addrs[0]);
      while (!g.node.isVerified(id.nodeId)) await new Promise((r) => setTimeout(r, 1));
      times.push(performance.now() - t0);
    }
  } finally {
    await guest.stop();
    for (const n of nodes) await n.stop();
  }
  return times;
}

// Three VPNs A, B, C; `ab` is in A and B, `bc` in B and C; the requester is in A only, the
// provider in C only (and `near`, in A only, answers the one-VPN round trip).
async function broadcast(): Promise<{ one: number[]; three: number[] }> {
  const vpns = await Promise.all([0, 1, 2].map(async () => ({
    vpn: crypto.randomUUID(),
    secret: await foundVpn({ maxMembers: 16, maxPerLocation: 16, maxPerNetwork: 16 }),
  })));
  const all: { node: VpnNode; ledger: Ledger }[] = [];
  // Each provider answers only its own kind of round (by the request's hop limit).
  const agent = async (which: number[], serves?: number) => {
    const id = await NodeIdentity.generate();
    const ledger = await Ledger.open(":memory:");
    const statement = { jws: await signContribution(id, contribution), data: contribution };
    const b = new Broadcaster({
      identity: id,
      ledger,
      contribution: () => statement,
      location: crypto.randomUUID(),
      network: crypto.randomUUID(),
      willServe: (r) => r.data.maxHops === serves,
    });
    const nodes: VpnNode[] = [];
    for (const i of which) {
      const { vpn, secret } = vpns[i];
      const credential = await vpnCredential(secret, vpn, id.nodeId);
      const node = await VpnNode.start({ identity: id, vpn, secret, credential });
      await b.attach(node);
      nodes.push(node);
      all.push({ node, ledger });
    }
    return { id, b, nodes };
  };
  try {
    const requester = await agent([0]);
    const near = await agent([0], 0);
    const ab = await agent([0, 1]);
    const bc = await agent([1, 2]);
    const provider = await agent([2], 2);
    await near.nodes[0].connect(requester.nodes[0].addrs[0]);
    await ab.nodes[0].connect(requester.nodes[0].addrs[0]);
    await bc.nodes[0].connect(ab.nodes[1].addrs[0]);
    await provider.nodes[0].connect(bc.nodes[1].addrs[0]);
    await new Promise((r) => setTimeout(r, 2500)); // gossip meshes form (heartbeat 1 s)
    const one: number[] = [];
    const three: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      for (const [target, out, hops] of [[near, one, 0], [provider, three, 2]] as const) {
        const t0 = performance.now();
        const offers = await requester.b.request({
          kind: "storage",
          bytes: 1 << 20,
          leaseSeconds: 60,
          count: 1,
          maxHops: hops,
          waitMs: 10_000,
        });
        if (!offers.some((o) => o.provider === target.id.nodeId)) {
          throw new Error("the expected provider did not answer");
        }
        out.push(performance.now() - t0);
      }
    }
    return { one, three };
  } finally {
    for (const a of all) {
      await a.node.stop();
    }
    for (const l of new Set(all.map((a) => a.ledger))) l.close();
  }
}

/** Resident memory of a process, MiB: in all, and its anonymous (private) and file-backed parts. */
interface Rss {
  total: number;
  anon: number;
  file: number;
}

function rssMiB(pid: number): Rss {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(status)![1]) / 1024;
  return { total: kb("VmRSS"), anon: kb("RssAnon"), file: kb("RssFile") + kb("RssShmem") };
}

async function memory(): Promise<{ agents: Rss[]; source: Rss; bare: Rss }> {
  const dir = await Deno.makeTempDir({ prefix: "truecloud-bench-node-" });
  const children: Deno.ChildProcess[] = [];
  try {
    const release = await buildDevelopmentRelease({
      repository: `${dir}/repository`,
      keysDir: `${dir}/keys`,
      sourceRoot: root,
    });
    const tls = await makeSelfSigned();
    await Deno.writeTextFile(`${dir}/cert.pem`, tls.cert);
    await Deno.writeTextFile(`${dir}/key.pem`, tls.key, { mode: 0o600 });
    const spawn = (args: string[]) => {
      const c = new Deno.Command(Deno.execPath(), {
        args,
        cwd: root,
        stdout: "piped",
        stderr: "inherit",
        env: {
          NO_COLOR: "1",
        },
      }).spawn();
      children.push(c);
      const lines: string[] = [];
      (async () => {
        for await (const t of c.stdout.pipeThrough(new TextDecoderStream())) {
          lines.push(...t.split("\n"));
        }
      })();
      return { c, lines };
    };
    const client = Deno.createHttpClient({ caCerts: [tls.cert] });
    const gw = await startGateway(root, dir, client, [
      "--allow-private-addresses",
      "--repository",
      `${dir}/repository`,
      "--workers",
      "1",
    ]);
    children.push(gw.child);
    client.close();
    // The agent as shipped: one minified bundle, run with the flags above (see the README).
    const bundle = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--platform", "deno", "--minify", "node/agent.ts", "-o", `${dir}/agent.js`],
      cwd: root,
      stdout: "null",
      stderr: "piped",
    }).output();
    if (!bundle.success) throw new Error(new TextDecoder().decode(bundle.stderr));
    // Deno compiles a module and caches the code on its first run, which costs memory that later
    // runs do not pay: measure agents as they are after their first start, as on a node that has
    // restarted once.
    for (const entry of [[`${dir}/agent.js`], ["node/agent.ts"]]) {
      await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--unstable-kv", "--unstable-net", ...entry, "--help"],
        cwd: root,
        stdout: "null",
      }).output();
    }
    const agent = (name: string, extra: string[], form: "bundle" | "source" = "bundle") =>
      spawn([
        "run",
        "-A",
        "--unstable-kv",
        "--unstable-net",
        ...(form === "bundle"
          ? [`--v8-flags=${AGENT_V8_FLAGS}`, `${dir}/agent.js`]
          : [`--v8-flags=${AGENT_V8_FLAGS}`, "node/agent.ts"]),
        "--home",
        `${dir}/${name}`,
        "--gateway",
        gw.base,
        "--ca",
        `${dir}/cert.pem`,
        "--root",
        `${dir}/repository/1.root.json`,
        "--release",
        `installers/truecloud-${release.version}.tar.gz`,
        "--allow-private-addresses",
        "--log-level",
        "warn",
        ...extra,
      ]);
    const a = agent("a", ["--found", "8", "--max-vpns", "1"]);
    const wait = async (l: string[]) => {
      const end = Date.now() + 60_000;
      while (!l.includes("ready")) {
        if (Date.now() > end) throw new Error("an agent did not become ready");
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await wait(a.lines);
    const b = agent("b", ["--max-vpns", "1"]);
    await wait(b.lines);
    const c = agent("c", ["--max-vpns", "1"], "source");
    await wait(c.lines);
    const bare = spawn(["eval", "setInterval(() => {}, 1000)"]);
    await new Promise((r) => setTimeout(r, IDLE * 1000));
    for (const name of ["a", "b"]) {
      const control = JSON.parse(await Deno.readTextFile(`${dir}/${name}/control.json`));
      const report = await (await fetch(`${control.url}/nodes/node`, {
        headers: { authorization: `Bearer ${control.token}` },
      })).json();
      const m = report.memory as Deno.MemoryUsage;
      const mib = (x: number) => `${(x / 1048576).toFixed(0)} MiB`;
      console.log(
        `  (agent ${name}'s own view: rss ${mib(m.rss)}, V8 heap ${mib(m.heapUsed)} used of ${
          mib(m.heapTotal)
        }, external ${mib(m.external)})`,
      );
    }
    return {
      agents: [rssMiB(a.c.pid), rssMiB(b.c.pid)],
      source: rssMiB(c.c.pid),
      bare: rssMiB(bare.c.pid),
    };
  } finally {
    await stopAll(children);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

console.log(`node: ${navigator.hardwareConcurrency} cores, all on 127.0.0.1`);
const j = await joins();
console.log(
  `join (guest connection to verified member), ${JOINS} newcomers: median ${ms(median(j))}, p90 ${
    ms(p90(j))
  }`,
);
const { one, three } = await broadcast();
console.log(
  `broadcast round trip, ${ROUNDS} requests: one VPN median ${ms(median(one))} (p90 ${
    ms(p90(one))
  }); across three VPNs (two relays) median ${ms(median(three))} (p90 ${ms(p90(three))})`,
);
const mem = await memory();
const show = (r: Rss) =>
  `${r.total.toFixed(0)} MiB (${r.anon.toFixed(0)} private, ${r.file.toFixed(0)} file-backed)`;
console.log(
  `idle node agents, resident memory after ${IDLE} s (target under 100 MB = 95 MiB):\n` +
    `  as shipped (minified bundle, ${AGENT_V8_FLAGS}): founder ${show(mem.agents[0])}; ` +
    `joiner ${show(mem.agents[1])}\n` +
    `  from source (deno task agent): joiner ${show(mem.source)}\n` +
    `  an idle bare Deno process: ${show(mem.bare)}`,
);
