// End-to-end: an offline ceremony with deno task sign — keys, a 2-of-3 root signed as files and
// imported, targets, the online roles, a countersigned installer, a root rotation that revokes the
// targets key, a signed transcript — checked by our client and by minisign.
import assert from "node:assert/strict";
import { installed } from "../protocol/_test_tools.ts";
import { TufClient } from "../library/mod.ts";
import { createTufApp } from "../library/mod.ts";
import { Hono } from "hono";
import { toHttpError } from "../protocol/mod.ts";

import { runTask } from "./_config.ts";

function sign(cwd: string, ...args: string[]) {
  return runTask("sign", args, { cwd, env: { USER: "ceremony-test" } });
}

Deno.test("deno task sign: a whole ceremony, airgap check, root rotation and revocation, transcript", async () => {
  const dir = await Deno.makeTempDir({ prefix: "truecloud-ceremony-" });
  try {
    // This machine has a network interface up: the tool refuses unless told.
    const refused = await sign(dir, "keygen", "--role", "root", "--out", `${dir}/x.json`);
    const hasLive = Deno.networkInterfaces().some((i) =>
      i.name !== "lo" && !/^127\.|^::1$/.test(i.address)
    );
    if (hasLive) {
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /^sign: This machine is not airgapped: /);
    }
    await Deno.writeTextFile(`${dir}/pass`, "a long ceremony passphrase\n");
    const T = [
      "--i-know-this-is-not-airgapped",
      "--passphrase-file",
      `${dir}/pass`,
      "--kdf-cost",
      "16384",
      "--transcript",
      `${dir}/transcript.json`,
    ];
    for (
      const [name, role] of [
        ["r1", "root"],
        ["r2", "root"],
        ["r3", "root"],
        ["t1", "targets"],
        ["t2", "targets"],
        ["snap", "snapshot"],
        ["ts", "timestamp"],
        ["rel1", "release"],
        ["rel2", "release"],
      ]
    ) {
      const r = await sign(dir, "keygen", "--role", role, "--out", `${name}.key.json`, ...T);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(
        !r.stdout.includes("seed") &&
          !(await Deno.readTextFile(`${dir}/${name}.key.json`)).includes('"d"'),
      );
    }
    const keys = (n: string) => `${n}.key.json`;
    // Root v1: 2 of 3, signed on "two machines", the signatures carried as files.
    let r = await sign(
      dir,
      "root",
      "--version",
      "1",
      "--threshold",
      "2",
      "--root-key",
      keys("r1"),
      "--root-key",
      keys("r2"),
      "--root-key",
      keys("r3"),
      "--targets-key",
      keys("t1"),
      "--snapshot-key",
      keys("snap"),
      "--timestamp-key",
      keys("ts"),
      "--out",
      "root1.unsigned.json",
      ...T,
    );
    assert.equal(r.code, 0, r.stderr);
    for (const k of ["r1", "r2"]) {
      assert.equal(
        (await sign(
          dir,
          "sign",
          "root1.unsigned.json",
          "--key",
          keys(k),
          "--out",
          `root1.${k}.sig`,
          ...T,
        )).code,
        0,
      );
    }
    r = await sign(
      dir,
      "import",
      "root1.unsigned.json",
      "root1.r1.sig",
      "root1.r2.sig",
      "--out",
      "repo/1.root.json",
      ...T,
    );
    assert.equal(r.code, 0, r.stderr);
    // Targets: an installer, signed by the targets key; online roles; minisign and countersignature.
    await Deno.mkdir(`${dir}/repo/targets/installers`, { recursive: true });
    await Deno.writeTextFile(
      `${dir}/repo/targets/installers/tc.sh`,
      "#!/bin/sh\necho true cloud\n",
    );
    r = await sign(
      dir,
      "targets",
      "--version",
      "1",
      "--out",
      "targets1.unsigned.json",
      "repo/targets/installers/tc.sh=installers/tc.sh=1.0.0",
      ...T,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      (await sign(
        dir,
        "sign",
        "targets1.unsigned.json",
        "--key",
        keys("t1"),
        "--out",
        "targets1.t1.sig",
        ...T,
      )).code,
      0,
    );
    assert.equal(
      (await sign(
        dir,
        "import",
        "targets1.unsigned.json",
        "targets1.t1.sig",
        "--out",
        "targets1.json",
        ...T,
      )).code,
      0,
    );
    // A signature over other metadata is refused at import, with a one-line reason.
    const mixed = await sign(
      dir,
      "import",
      "root1.unsigned.json",
      "targets1.t1.sig",
      "--out",
      "x.json",
      ...T,
    );
    assert.equal(mixed.code, 2);
    assert.match(mixed.stderr, /^sign: targets1\.t1\.sig does not sign this root metadata$/m);
    r = await sign(
      dir,
      "online",
      "--targets",
      "targets1.json",
      "--snapshot-key",
      keys("snap"),
      "--timestamp-key",
      keys("ts"),
      "--version",
      "1",
      "--out-dir",
      "repo",
      ...T,
    );
    assert.equal(r.code, 0, r.stderr);
    for (const [k, out] of [["rel1", "tc.sh.minisig"], ["rel2", "tc.sh.minisig2"]]) {
      r = await sign(
        dir,
        "minisign",
        "repo/targets/installers/tc.sh",
        "--key",
        keys(k),
        "--trusted-comment",
        "truecloud 1.0.0 file:tc.sh",
        "--out",
        out,
        ...T,
      );
      assert.equal(r.code, 0, r.stderr);
    }
    if (installed("minisign")) {
      const pub = (await sign(dir, "pubkey", keys("rel2"), ...T)).stdout.split("\n").slice(2).join(
        "\n",
      );
      await Deno.writeTextFile(`${dir}/rel2.pub`, pub);
      const v = await new Deno.Command("minisign", {
        args: [
          "-V",
          "-p",
          "rel2.pub",
          "-m",
          "repo/targets/installers/tc.sh",
          "-x",
          "tc.sh.minisig2",
        ],
        cwd: dir,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(v.code, 0, new TextDecoder().decode(v.stderr));
    }

    // Our client, pinned to root v1, accepts the repository.
    const app = new Hono().route("/tuf", createTufApp(`${dir}/repo`));
    app.onError((err, c) => c.json(toHttpError(err).body, toHttpError(err).status as 404));
    const f: typeof fetch = (i) => Promise.resolve(app.request(new URL(String(i)).pathname));
    const trust = `${dir}/trust`;
    await Deno.mkdir(trust);
    await Deno.copyFile(`${dir}/repo/1.root.json`, `${trust}/root.json`);
    const client = () =>
      new TufClient({ metadataUrl: "http://repo.test/tuf", dir: trust, fetch: f });
    await client().update();
    assert.deepEqual(await client().download("installers/tc.sh", `${dir}/got.sh`), {
      length: 26,
      sha256: (await Deno.readTextFile(`${dir}/transcript.json`)).match(
        /"repo\/targets\/installers\/tc.sh": "([0-9a-f]{64})"/,
      )![1],
    });

    // Key rotation: t1 is compromised. Root v2 names t2; it needs 2 of the old root keys and 2 of
    // the new ones (here the same set, r1 and r3).
    r = await sign(
      dir,
      "root",
      "--version",
      "2",
      "--threshold",
      "2",
      "--root-key",
      keys("r1"),
      "--root-key",
      keys("r2"),
      "--root-key",
      keys("r3"),
      "--targets-key",
      keys("t2"),
      "--snapshot-key",
      keys("snap"),
      "--timestamp-key",
      keys("ts"),
      "--out",
      "root2.unsigned.json",
      ...T,
    );
    assert.equal(r.code, 0, r.stderr);
    for (const k of ["r1", "r3"]) {
      assert.equal(
        (await sign(
          dir,
          "sign",
          "root2.unsigned.json",
          "--key",
          keys(k),
          "--out",
          `root2.${k}.sig`,
          ...T,
        )).code,
        0,
      );
    }
    assert.equal(
      (await sign(
        dir,
        "import",
        "root2.unsigned.json",
        "root2.r1.sig",
        "root2.r3.sig",
        "--out",
        "repo/2.root.json",
        ...T,
      )).code,
      0,
    );
    // The attacker's targets v2, signed with t1, is refused once root v2 is known...
    await sign(
      dir,
      "targets",
      "--version",
      "2",
      "--out",
      "targets2.unsigned.json",
      "repo/targets/installers/tc.sh=installers/tc.sh=1.0.1",
      ...T,
    );
    await sign(
      dir,
      "sign",
      "targets2.unsigned.json",
      "--key",
      keys("t1"),
      "--out",
      "targets2.t1.sig",
      ...T,
    );
    await sign(
      dir,
      "import",
      "targets2.unsigned.json",
      "targets2.t1.sig",
      "--out",
      "targets2-evil.json",
      ...T,
    );
    await sign(
      dir,
      "online",
      "--targets",
      "targets2-evil.json",
      "--snapshot-key",
      keys("snap"),
      "--timestamp-key",
      keys("ts"),
      "--version",
      "2",
      "--out-dir",
      "repo",
      ...T,
    );
    await assert.rejects(
      client().update(),
      (e: Error & { code?: string }) => e.code === "threshold",
    );
    // ...and the same targets signed with t2 are accepted.
    await sign(
      dir,
      "sign",
      "targets2.unsigned.json",
      "--key",
      keys("t2"),
      "--out",
      "targets2.t2.sig",
      ...T,
    );
    await sign(
      dir,
      "import",
      "targets2.unsigned.json",
      "targets2.t2.sig",
      "--out",
      "targets2.json",
      ...T,
    );
    await sign(
      dir,
      "online",
      "--targets",
      "targets2.json",
      "--snapshot-key",
      keys("snap"),
      "--timestamp-key",
      keys("ts"),
      "--version",
      "3",
      "--out-dir",
      "repo",
      ...T,
    );
    const c = client();
    await c.update();
    assert.equal(c.rootVersion, 2);

    // The transcript records every step; the keyholders sign it; tampering shows.
    const unsigned = await sign(dir, "transcript-verify", ...T);
    assert.equal(unsigned.code, 1);
    for (const k of ["r1", "r3"]) {
      assert.equal((await sign(dir, "transcript-sign", "--key", keys(k), ...T)).code, 0);
    }
    const ok = await sign(dir, "transcript-verify", ...T);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /signed by 2 keys/);
    const text = await Deno.readTextFile(`${dir}/transcript.json`);
    await Deno.writeTextFile(
      `${dir}/transcript.json`,
      text.replace("ceremony-test", "someone-else"),
    );
    assert.equal((await sign(dir, "transcript-verify", ...T)).code, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
