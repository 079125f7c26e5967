// End-to-end: the discovery command line against a running gateway over HTTPS.
import assert from "node:assert/strict";
import { ensureSelfSigned, Gateway } from "../gateway/mod.ts";
import { newUuid } from "../protocol/mod.ts";
import { runTask, testConfig } from "./_config.ts";

function cli(...args: string[]) {
  return runTask("discovery", args);
}

Deno.test("deno task discovery: keygen, publish, verify, withdraw, and one-line refusals", async () => {
  const home = await Deno.makeTempDir({ prefix: "truecloud-cli-" });
  const tls = await ensureSelfSigned(`${home}/tls`);
  const gw = await Gateway.start(testConfig(home), { tls });
  try {
    const ca = tls.certPath;
    const endpoint = `${gw.url}/discovery`;
    const key = `${home}/guardian.json`;
    const made = await cli("keygen", key);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout.trim(), /^12D3KooW\w{44}$/);
    assert.equal((await Deno.stat(key)).mode! & 0o777, 0o600);
    const again = await cli("keygen", key);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /refusing to overwrite/);

    const vpn = newUuid();
    const common = ["--identity", key, "--endpoint", endpoint, "--cacert", ca, "--vpn", vpn];
    const pub = await cli(
      "publish",
      ...common,
      "--ip",
      "8.8.8.8",
      "--ip",
      "2606:4700::1111",
      "--port",
      "4001",
      "--guest-key",
      "0f".repeat(32),
      "--ttl",
      "3600",
    );
    assert.equal(pub.code, 0, pub.stderr);
    assert.match(pub.stdout, /^stored: vpn /);

    const bad = await cli(
      "publish",
      ...common,
      "--ip",
      "8.8.8.8",
      "--port",
      "99999",
      "--guest-key",
      "0f".repeat(32),
    );
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr.trim().split("\n").length, 1, bad.stderr);
    assert.match(bad.stderr, /guestPort/);
    const priv = await cli(
      "publish",
      ...common,
      "--ip",
      "192.168.1.2",
      "--port",
      "1",
      "--guest-key",
      "0f".repeat(32),
    );
    assert.equal(priv.code, 1);
    assert.match(priv.stderr, /400 address_not_public/);

    const ok = await cli("verify", `${endpoint}/feed.rss`, "--cacert", ca);
    assert.equal(ok.code, 0, ok.stderr + ok.stdout);
    assert.match(ok.stdout, new RegExp(`ok +vpn ${vpn} guardian 12D3KooW`));
    assert.match(ok.stdout, /1 verified, 0 refused/);

    // Save the feed, tamper with it, and verify the file offline.
    const client = Deno.createHttpClient({ caCerts: [tls.cert] });
    const xml = await (await fetch(`${endpoint}/feed.rss`, { client })).text();
    client.close();
    await Deno.writeTextFile(
      `${home}/feed.rss`,
      xml.replace("<tc:guestPort>4001<", "<tc:guestPort>4002<"),
    );
    const tampered = await cli("verify", `${home}/feed.rss`);
    assert.equal(tampered.code, 1);
    assert.match(tampered.stdout, /refused item 1: mismatch/);

    // Withdraw right after publishing (same second, separate process): the withdrawal wins.
    const wd = await cli("withdraw", ...common, "--reason", "full");
    assert.equal(wd.code, 0, wd.stderr);
    const after = await cli("verify", `${endpoint}/feed.rss`, "--cacert", ca, "--json");
    assert.equal(JSON.parse(after.stdout).records.length, 0);

    const unknown = await cli("frobnicate");
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^discovery: Unknown command "frobnicate"/);
  } finally {
    await gw.stop();
    await Deno.remove(home, { recursive: true });
  }
});
