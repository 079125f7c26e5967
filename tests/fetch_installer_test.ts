// End-to-end: the development release served by a gateway, fetched with deno task fetch-installer.
import assert from "node:assert/strict";
import { ensureSelfSigned, Gateway } from "../gateway/mod.ts";
import { buildDevelopmentRelease, DEVELOPMENT_PASSPHRASE } from "../library/mod.ts";
import { runTask, testConfig } from "./_config.ts";

function cli(cwd: string, ...args: string[]) {
  return runTask("fetch-installer", args, { cwd });
}

Deno.test("deno task fetch-installer lists, downloads and verifies through TUF, and refuses tampering", async () => {
  const home = await Deno.makeTempDir({ prefix: "truecloud-fetch-" });
  const src = `${home}/src`;
  await Deno.mkdir(src);
  await Deno.writeTextFile(`${src}/README.md`, "a tiny source tree\n");
  const release = await buildDevelopmentRelease({
    repository: `${home}/repository`,
    keysDir: `${home}/keys`,
    sourceRoot: src,
  });
  const tls = await ensureSelfSigned(`${home}/tls`);
  const gw = await Gateway.start(testConfig(home, { repository: `${home}/repository` }), { tls });
  try {
    const common = ["--gateway", gw.url, "--cacert", tls.certPath, "--trust-dir", "trust"];
    const none = await cli(home, "truecloud-0.1.0-dev.tar.gz", ...common);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no trusted root/);

    const list = await cli(home, "--list", ...common, "--root", `${home}/repository/1.root.json`);
    assert.equal(list.code, 0, list.stderr);
    for (const name of release.installers) {
      assert.match(
        list.stdout,
        new RegExp(`^${name.replaceAll(".", "\\.")}\\t0\\.1\\.0-dev\\t`, "m"),
      );
    }

    const got = await cli(home, "truecloud-0.1.0-dev.tar.gz", ...common, "--out", "dl.tar.gz");
    assert.equal(got.code, 0, got.stderr);
    assert.match(got.stdout, /verified through TUF \(root v1\)/);
    const expected = await Deno.readFile(
      `${home}/repository/targets/installers/truecloud-0.1.0-dev.tar.gz`,
    );
    assert.deepEqual(await Deno.readFile(`${home}/dl.tar.gz`), expected);

    await Deno.writeFile(
      `${home}/repository/targets/installers/truecloud-0.1.0-dev.tar.gz`,
      expected.map((b) => b ^ 1),
    );
    const bad = await cli(home, "truecloud-0.1.0-dev.tar.gz", ...common, "--out", "bad.tar.gz");
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^fetch-installer: refused \(bad_hash\)/);
    await assert.rejects(Deno.stat(`${home}/bad.tar.gz`), Deno.errors.NotFound);
  } finally {
    await gw.stop();
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("a gateway holding the online keys opens them at start, and refuses a wrong passphrase", async () => {
  const home = await Deno.makeTempDir({ prefix: "truecloud-online-" });
  await Deno.mkdir(`${home}/src`);
  await Deno.writeTextFile(`${home}/src/a.txt`, "a\n");
  await buildDevelopmentRelease({
    repository: `${home}/repository`,
    keysDir: `${home}/keys`,
    sourceRoot: `${home}/src`,
  });
  const tls = await ensureSelfSigned(`${home}/tls`);
  await Deno.writeTextFile(`${home}/pass`, `${DEVELOPMENT_PASSPHRASE}\n`);
  await Deno.writeTextFile(`${home}/wrong`, "not the passphrase\n");
  const online = (pass: string) => ({
    timestamp: `${home}/keys/timestamp.key.json`,
    snapshot: `${home}/keys/snapshot.key.json`,
    passphraseFile: `${home}/${pass}`,
  });
  try {
    await assert.rejects(
      Gateway.start(
        testConfig(home, { repository: `${home}/repository`, onlineKeys: online("wrong") }),
        { tls },
      ),
      /wrong passphrase/,
    );
    const gw = await Gateway.start(
      testConfig(home, { repository: `${home}/repository`, onlineKeys: online("pass") }),
      { tls },
    );
    const client = Deno.createHttpClient({ caCerts: [tls.cert] });
    const res = await fetch(`${gw.url}/tuf/timestamp.json`, { client });
    assert.equal(res.status, 200);
    assert.equal((await res.json()).signed._type, "timestamp");
    client.close();
    await gw.stop();
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
