import assert from "node:assert/strict";
import { Hono } from "hono";
import { makeSelfSigned, serveHttps } from "../gateway/mod.ts";
import { toHttpError } from "../protocol/mod.ts";
import { createTufApp } from "./app.ts";
import { verifyFile } from "./client.ts";
import { runTufJs } from "./_tuf_js.ts";
import { addTargetFile, describeTarget, writeMetadata } from "./repository.ts";
import {
  buildRoot,
  buildSnapshot,
  buildTargets,
  buildTimestamp,
  signWith,
  tufExpiry,
  tufSigner,
} from "./tuf.ts";

const seed = () => crypto.getRandomValues(new Uint8Array(32));

async function repository(dir: string, opts: { timestampDays?: number } = {}) {
  const signers = {
    root: [tufSigner(seed()), tufSigner(seed()), tufSigner(seed())],
    rootThreshold: 2,
    targets: [tufSigner(seed())],
    snapshot: tufSigner(seed()),
    timestamp: tufSigner(seed()),
  };
  const now = new Date();
  const file = `${dir}/installer.sh`;
  await Deno.writeFile(file, crypto.getRandomValues(new Uint8Array(65536)));
  const info = await describeTarget(file, "installers/truecloud-0.1.0.sh", { version: "0.1.0" });
  await addTargetFile(dir + "/repo", file, info.path);
  const r = signWith(
    buildRoot(signers, { version: 1, expires: tufExpiry(now, 365), development: true }),
    signers.root.slice(0, 2),
  );
  const t = signWith(
    buildTargets([info], { version: 1, expires: tufExpiry(now, 90), development: true }),
    signers.targets,
  );
  const s = signWith(buildSnapshot(t, { version: 1, expires: tufExpiry(now, 7) }), [
    signers.snapshot,
  ]);
  const ts = signWith(
    buildTimestamp(s, { version: 1, expires: tufExpiry(now, opts.timestampDays ?? 1) }),
    [signers.timestamp],
  );
  await writeMetadata(`${dir}/repo`, { roots: [r], targets: t, snapshot: s, timestamp: ts });
  return { signers, info };
}

async function serve(dir: string) {
  const tls = await makeSelfSigned();
  await Deno.writeTextFile(`${dir}/ca.pem`, tls.cert);
  const app = new Hono().route("/tuf", createTufApp(`${dir}/repo`));
  app.onError((err, c) => {
    const { status, body } = toHttpError(err);
    return c.json(body, status as 400);
  });
  const srv = serveHttps(app.fetch, { hostname: "127.0.0.1", port: 0, ...tls });
  return { srv, base: `https://127.0.0.1:${srv.port}/tuf` };
}

function tufJs(dir: string, base: string, target: string) {
  return runTufJs(
    base,
    `${dir}/repo/1.root.json`,
    target,
    `${dir}/tufjs-${crypto.randomUUID()}`,
    `${dir}/ca.pem`,
  );
}

Deno.test("tuf-js refreshes our metadata over HTTPS and downloads a target", async () => {
  const dir = await Deno.makeTempDir();
  const { srv, base } = await serve(dir);
  try {
    const { info } = await repository(dir);
    const res = await tufJs(dir, base, info.path);
    assert.deepEqual(res, { ok: true, length: 65536 });
  } finally {
    await srv.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("tuf-js refuses a target whose bytes were swapped (arbitrary software) and an expired timestamp (freeze)", async () => {
  const dir = await Deno.makeTempDir();
  const { srv, base } = await serve(dir);
  try {
    const { info } = await repository(dir);
    await Deno.writeFile(
      `${dir}/repo/targets/${info.path}`,
      crypto.getRandomValues(new Uint8Array(65536)),
    );
    const swapped = await tufJs(dir, base, info.path);
    assert.equal(swapped.ok, false);
    assert.match(swapped.error!, /hash|digest|length/i);

    await repository(dir, { timestampDays: -1 });
    const frozen = await tufJs(dir, base, info.path);
    assert.equal(frozen.ok, false);
    assert.match(frozen.error!, /expired/i);
  } finally {
    await srv.shutdown();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the repository routes refuse path traversal and unknown files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await repository(dir);
    const app = new Hono().route("/tuf", createTufApp(`${dir}/repo`));
    app.onError((err, c) => c.json(toHttpError(err).body, toHttpError(err).status as 400));
    for (
      const p of [
        // Literal and %2e dot segments are resolved by URL parsing before routing (to public
        // files); encoded slashes reach the app, which must refuse them.
        "/tuf/targets/installers%2f..%2f..%2f1.root.json",
        "/tuf/targets/.hidden",
        "/tuf/2.root.json",
        "/tuf/x.json",
      ]
    ) {
      const res = await app.request(p);
      assert.equal(res.status, 404, p);
      await res.body?.cancel();
    }
    const ok = await app.request("/tuf/1.root.json");
    assert.equal(ok.status, 200);
    const tag = ok.headers.get("etag")!;
    await ok.body?.cancel();
    assert.equal(
      (await app.request("/tuf/1.root.json", { headers: { "if-none-match": tag } })).status,
      304,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("verifyFile() checks length and SHA-256 of a file on disk", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/f`, new Uint8Array(9 * 1024 * 1024).fill(3)); // spans two 8 MiB blocks
    const info = await describeTarget(`${dir}/f`, "f");
    assert.equal(await verifyFile(`${dir}/f`, info), true);
    assert.equal(await verifyFile(`${dir}/f`, { ...info, length: info.length - 1 }), false);
    assert.equal(await verifyFile(`${dir}/f`, { ...info, sha256: "0".repeat(64) }), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
