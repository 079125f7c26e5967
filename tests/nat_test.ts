// End to end, on real networks: network namespaces made by this test, two homes each behind its own
// NAT (nftables masquerading), and a public member that also hosts the gateway. The home nodes join
// through the guest network, listen through the public member's relay, and are full members: a
// request from one home is answered by the other. Whether hole punching (DCUtR) turned the relayed
// connection into a direct one is reported. Everything is removed at the end.
import assert from "node:assert/strict";
import { makeSelfSigned } from "../gateway/mod.ts";
import { buildDevelopmentRelease } from "../library/mod.ts";
import { installed, until } from "../protocol/_test_tools.ts";

const root = new URL("..", import.meta.url).pathname;
const isRoot = Deno.uid?.() === 0;
const ready = isRoot && installed("ip") && installed("nft");

async function sh(cmd: string, args: string[], input?: string): Promise<string> {
  const p = new Deno.Command(cmd, {
    args,
    stdin: input ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(60_000), // nothing here may hang the test
  }).spawn();
  if (input) {
    const w = p.stdin.getWriter();
    await w.write(new TextEncoder().encode(input));
    await w.close();
  }
  const out = await p.output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  return new TextDecoder().decode(out.stdout);
}

/** The test's networks: names are unique per run; `remove()` deletes everything made. */
async function networks() {
  const tag = crypto.randomUUID().slice(0, 4);
  const ns = {
    pub: `tc${tag}pub`,
    nat1: `tc${tag}n1`,
    home1: `tc${tag}h1`,
    nat2: `tc${tag}n2`,
    home2: `tc${tag}h2`,
  };
  const made: string[] = [];
  const ip = (...a: string[]) => sh("ip", a);
  const remove = async () => {
    for (const n of made.reverse()) await ip("netns", "del", n).catch(() => {});
  };
  try {
    for (const n of Object.values(ns)) {
      await ip("netns", "add", n);
      made.push(n);
    }
    // The internet: a bridge in the public namespace, with the public member's address on it.
    await ip("-n", ns.pub, "link", "add", "br0", "type", "bridge");
    await ip("-n", ns.pub, "addr", "add", "10.77.0.1/24", "dev", "br0");
    await ip("-n", ns.pub, "link", "set", "br0", "up");
    await ip("-n", ns.pub, "link", "set", "lo", "up");
    for (const [i, nat, home] of [[1, ns.nat1, ns.home1], [2, ns.nat2, ns.home2]] as const) {
      const wan = `tc${tag}w${i}`, up = `tc${tag}u${i}`, lan = `tc${tag}l${i}`, h = `tc${tag}e${i}`;
      await ip("link", "add", wan, "type", "veth", "peer", "name", up);
      await ip("link", "set", up, "netns", ns.pub);
      await ip("-n", ns.pub, "link", "set", up, "master", "br0");
      await ip("-n", ns.pub, "link", "set", up, "up");
      await ip("link", "set", wan, "netns", nat);
      await ip("-n", nat, "addr", "add", `10.77.0.${1 + i}/24`, "dev", wan);
      await ip("-n", nat, "link", "set", wan, "up");
      await ip("-n", nat, "link", "set", "lo", "up");
      await ip("link", "add", lan, "type", "veth", "peer", "name", h);
      await ip("link", "set", lan, "netns", nat);
      await ip("link", "set", h, "netns", home);
      await ip("-n", nat, "addr", "add", `10.78.${i}.1/24`, "dev", lan);
      await ip("-n", nat, "link", "set", lan, "up");
      await ip("-n", home, "addr", "add", `10.78.${i}.2/24`, "dev", h);
      await ip("-n", home, "link", "set", h, "up");
      await ip("-n", home, "link", "set", "lo", "up");
      await ip("-n", home, "route", "add", "default", "via", `10.78.${i}.1`);
      await sh("ip", ["netns", "exec", nat, "sysctl", "-qw", "net.ipv4.ip_forward=1"]);
      // A home router: masquerade out, and let in only what answers a connection from inside.
      await sh(
        "ip",
        ["netns", "exec", nat, "nft", "-f", "-"],
        `table ip masq {
  chain post { type nat hook postrouting priority srcnat; oifname "${wan}" masquerade; }
  chain forwarding { type filter hook forward priority 0; policy drop;
    iifname "${lan}" oifname "${wan}" accept
    iifname "${wan}" oifname "${lan}" ct state established,related accept
  }
}
`,
      );
    }
  } catch (err) {
    await remove();
    throw err;
  }
  return { ns, remove };
}

function spawnIn(ns: string, args: string[]) {
  const child = new Deno.Command("ip", {
    args: ["netns", "exec", ns, Deno.execPath(), ...args],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: string[] = [];
  (async () => {
    let buf = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      buf += chunk;
      const parts = buf.split("\n");
      buf = parts.pop()!;
      lines.push(...parts);
    }
  })();
  const stderr = new Response(child.stderr).text();
  return { child, lines, stderr };
}

async function nodeCli(ns: string, home: string, args: string[]) {
  const out = await sh("ip", [
    "netns",
    "exec",
    ns,
    Deno.execPath(),
    "run",
    "-A",
    `${root}node/main.ts`,
    ...args,
    "--json",
    "--home",
    home,
  ]);
  return JSON.parse(out);
}

Deno.test({
  name:
    "NAT: nodes behind two home NATs join through the guest network and are full members through a relay",
  ignore: !ready,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "truecloud-nat-" });
    await Deno.chmod(dir, 0o755);
    const net = await networks();
    const procs: ReturnType<typeof spawnIn>[] = [];
    try {
      const release = await buildDevelopmentRelease({
        repository: `${dir}/repository`,
        keysDir: `${dir}/keys`,
        sourceRoot: root,
      });
      const tls = await makeSelfSigned({ ips: ["10.77.0.1"] });
      await Deno.writeTextFile(`${dir}/cert.pem`, tls.cert);
      await Deno.writeTextFile(`${dir}/key.pem`, tls.key, { mode: 0o600 });
      const gateway = spawnIn(net.ns.pub, [
        "run",
        "-A",
        "gateway/main.ts",
        "--home",
        `${dir}/gw`,
        "--host",
        "10.77.0.1",
        "--port",
        "8443",
        "--cert",
        `${dir}/cert.pem`,
        "--key",
        `${dir}/key.pem`,
        "--allow-private-addresses",
        "--repository",
        `${dir}/repository`,
        "--rate-limit",
        "off",
        "--workers",
        "1",
        "--log-level",
        "warn",
      ]);
      procs.push(gateway);
      await until(
        "the gateway",
        () => gateway.lines.some((l) => l.startsWith("gateway: ")),
        30_000,
      );
      const agent = (ns: string, name: string, host: string, extra: string[]) => {
        const p = spawnIn(ns, [
          "run",
          "-A",
          "node/agent.ts",
          "--home",
          `${dir}/${name}`,
          "--gateway",
          "https://10.77.0.1:8443",
          "--ca",
          `${dir}/cert.pem`,
          "--root",
          `${dir}/repository/1.root.json`,
          "--release",
          `installers/truecloud-${release.version}.tar.gz`,
          "--host",
          host,
          "--allow-private-addresses",
          "--max-vpns",
          "1",
          "--log-level",
          "warn",
          ...extra,
        ]);
        procs.push(p);
        return p;
      };
      const pub = agent(net.ns.pub, "public", "10.77.0.1", ["--found", "8"]);
      await until("the public member to found its VPN", () => pub.lines.includes("ready"), 60_000);
      const h1 = agent(net.ns.home1, "home1", "10.78.1.2", ["--behind-nat"]);
      const h2 = agent(net.ns.home2, "home2", "10.78.2.2", ["--behind-nat"]);
      await until(
        "both homes to be ready",
        () => h1.lines.includes("ready") && h2.lines.includes("ready"),
        60_000,
      );

      // Both homes joined through the guest network (outbound, through their NATs).
      const s1 = await nodeCli(net.ns.home1, `${dir}/home1`, ["status"]);
      const s2 = await nodeCli(net.ns.home2, `${dir}/home2`, ["status"]);
      const vpn = s1.nodes[0].vpns[0]?.vpn;
      assert.ok(vpn, JSON.stringify(s1));
      assert.equal(s2.nodes[0].vpns[0]?.vpn, vpn);

      // home2 asks; home1 (behind another NAT) offers: the offer comes back hop by hop.
      let offers: { provider: string }[] = [];
      for (let i = 0; i < 10 && !offers.some((o) => o.provider === s1.nodes[0].id); i++) {
        offers = (await sh("ip", [
          "netns",
          "exec",
          net.ns.home2,
          Deno.execPath(),
          "run",
          "-A",
          `${root}node/main.ts`,
          "request",
          "--node",
          "node",
          "--bytes",
          "1048576",
          "--count",
          "2",
          "--json",
          "--home",
          `${dir}/home2`,
        ]).then(JSON.parse)).offers;
      }
      assert.ok(offers.some((o) => o.provider === s1.nodes[0].id), JSON.stringify(offers));
      assert.ok(offers.some((o) => o.provider === s2.nodes[0].id) === false);

      const v1 = (await nodeCli(net.ns.home1, `${dir}/home1`, ["vpns"])).nodes[0].vpns[0];
      assert.ok(v1.members >= 3, JSON.stringify(v1));

      // home1 reaches home2 itself: through the public member's relay (after both showed their
      // credentials on the relayed connection), then perhaps directly, if hole punching works.
      const ping = () =>
        sh("ip", [
          "netns",
          "exec",
          net.ns.home1,
          Deno.execPath(),
          "run",
          "-A",
          `${root}node/main.ts`,
          "ping",
          s2.nodes[0].id,
          "--node",
          "node",
          "--json",
          "--home",
          `${dir}/home1`,
        ]).then(JSON.parse);
      // home2's relay reservation and its announcement may still be on their way: try a few times.
      let first;
      for (let i = 0;; i++) {
        try {
          first = await ping();
          break;
        } catch (err) {
          if (i >= 10) throw err;
          await new Promise((r) => setTimeout(r, 1000));
        }
      }
      assert.equal(first.vpn, vpn);
      assert.ok(first.rttMs >= 0);
      await new Promise((r) => setTimeout(r, 3000)); // time for DCUtR
      const second = await ping();
      console.log(
        `NAT test: home1 reached home2 ${first.relayed ? "through the relay" : "directly"} ` +
          `(${first.rttMs.toFixed(1)} ms); 3 s later: ${
            second.relayed ? "still relayed (hole punching did not succeed)" : "direct (DCUtR)"
          }`,
      );
    } finally {
      for (const p of procs) {
        try {
          p.child.kill("SIGTERM");
        } catch {
          // already gone
        }
      }
      for (const p of procs) {
        // SIGTERM stops them cleanly; one that has not stopped 15 s later is killed.
        const killer = setTimeout(() => {
          try {
            p.child.kill("SIGKILL");
          } catch {
            // gone meanwhile
          }
        }, 15_000);
        await p.child.status;
        clearTimeout(killer);
        await p.stderr;
      }
      await net.remove();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
