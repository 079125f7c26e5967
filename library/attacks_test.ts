// The TUF attacks, each thrown at our client and at tuf-js (a client we did not write): both
// refuse, except one key counted twice under two key ids, which only our client refuses. The repository is served over HTTPS by the gateway's server from a directory the test
// rewrites between steps.
import assert from "node:assert/strict";
import { Hono } from "hono";
import { Metadata, type Root, Signature } from "@tufjs/models";
import { makeSelfSigned, serveHttps } from "../gateway/mod.ts";
import { toHttpError } from "../protocol/mod.ts";
import { createTufApp } from "./app.ts";
import { TufClient, TufError } from "./client.ts";
import { runTufJs } from "./_tuf_js.ts";
import {
  addTargetFile,
  describeTarget,
  type RepositoryMetadata,
  writeMetadata,
} from "./repository.ts";
import {
  buildRoot,
  buildSnapshot,
  buildTargets,
  buildTimestamp,
  metadataBytes,
  type RoleSigners,
  signWith,
  type TargetInfo,
  tufExpiry,
  tufSigner,
} from "./tuf.ts";

const seed = () => crypto.getRandomValues(new Uint8Array(32));
const TARGET = "installers/app.bin";

class Fixture {
  dir = "";
  repo = "";
  base = "";
  ca = "";
  #srv?: { shutdown(): Promise<void> };
  #client?: Deno.HttpClient;
  signers!: RoleSigners;
  roots: Metadata<Root>[] = [];
  info!: TargetInfo;

  async start() {
    this.dir = await Deno.makeTempDir({ prefix: "truecloud-tuf-" });
    this.repo = `${this.dir}/repo`;
    const tls = await makeSelfSigned();
    this.ca = `${this.dir}/ca.pem`;
    await Deno.writeTextFile(this.ca, tls.cert);
    const app = new Hono().route("/tuf", createTufApp(this.repo));
    app.onError((err, c) => c.json(toHttpError(err).body, toHttpError(err).status as 400));
    const srv = serveHttps(app.fetch, { hostname: "127.0.0.1", port: 0, ...tls });
    this.#srv = srv;
    this.#client = Deno.createHttpClient({ caCerts: [tls.cert] });
    this.base = `https://127.0.0.1:${srv.port}/tuf`;
    this.signers = {
      root: [tufSigner(seed()), tufSigner(seed()), tufSigner(seed())],
      rootThreshold: 2,
      targets: [tufSigner(seed())],
      snapshot: tufSigner(seed()),
      timestamp: tufSigner(seed()),
    };
    await Deno.writeFile(`${this.dir}/app.bin`, new Uint8Array(4096).fill(7));
    this.info = await describeTarget(`${this.dir}/app.bin`, TARGET);
    await addTargetFile(this.repo, `${this.dir}/app.bin`, TARGET);
    this.roots = [
      signWith(
        buildRoot(this.signers, { version: 1, expires: tufExpiry(new Date(), 365) }),
        this.signers.root.slice(0, 2),
      ),
    ];
    await this.publish(1);
    return this;
  }

  /** Writes targets, snapshot and timestamp of version `v` (and every root). */
  async publish(
    v: number,
    opts: { timestampDays?: number; targetsSigners?: RoleSigners["targets"] } = {},
  ) {
    const now = new Date();
    const targets = signWith(
      buildTargets([this.info], { version: v, expires: tufExpiry(now, 90) }),
      opts.targetsSigners ?? this.signers.targets,
    );
    const snapshot = signWith(buildSnapshot(targets, { version: v, expires: tufExpiry(now, 7) }), [
      this.signers.snapshot,
    ]);
    const timestamp = signWith(
      buildTimestamp(snapshot, { version: v, expires: tufExpiry(now, opts.timestampDays ?? 1) }),
      [this.signers.timestamp],
    );
    const md: RepositoryMetadata = { roots: this.roots, targets, snapshot, timestamp };
    await writeMetadata(this.repo, md);
    return md;
  }

  ours(work: string) {
    const client = this.#client!;
    return new TufClient({
      metadataUrl: this.base,
      dir: work,
      fetch: (i, init) => fetch(i, { ...init, client }),
    });
  }

  async pin(work: string) {
    await Deno.mkdir(work, { recursive: true });
    await Deno.writeFile(`${work}/root.json`, metadataBytes(this.roots[0]));
  }

  async tufJs(work: string): Promise<{ ok: boolean; error?: string }> {
    await Deno.writeFile(`${this.dir}/pinned-root.json`, metadataBytes(this.roots[0]));
    return await runTufJs(this.base, `${this.dir}/pinned-root.json`, TARGET, work, this.ca);
  }

  async bothOnce(): Promise<{ ours: string; tufJs: string }> {
    const a = `${this.dir}/ours-${crypto.randomUUID()}`;
    const b = `${this.dir}/tufjs-${crypto.randomUUID()}`;
    await this.pin(a);
    return { ours: a, tufJs: b };
  }

  async stop() {
    this.#client?.close();
    await this.#srv?.shutdown();
    await Deno.remove(this.dir, { recursive: true });
  }
}

async function refusedByOurs(client: TufClient, code: string, work: string) {
  await assert.rejects(
    (async () => {
      await client.update();
      await client.download(TARGET, `${work}/out`);
    })(),
    (e: TufError) => {
      assert.ok(e instanceof TufError, String(e));
      assert.equal(e.code, code, e.message);
      return true;
    },
  );
}

Deno.test("both clients accept the untouched repository", async () => {
  const f = await new Fixture().start();
  try {
    const w = await f.bothOnce();
    const c = f.ours(w.ours);
    await c.update();
    assert.deepEqual(await c.download(TARGET, `${w.ours}/out`), {
      length: 4096,
      sha256: f.info.sha256,
    });
    assert.deepEqual(await f.tufJs(w.tufJs), { ok: true, length: 4096 });
  } finally {
    await f.stop();
  }
});

Deno.test("attack: rollback to older timestamp and snapshot is refused", async () => {
  const f = await new Fixture().start();
  try {
    const w = await f.bothOnce();
    await f.publish(2);
    await f.ours(w.ours).update();
    assert.equal((await f.tufJs(w.tufJs)).ok, true);
    await f.publish(1); // validly signed, but older than what both clients trust now
    await refusedByOurs(f.ours(w.ours), "rollback", w.ours);
    const t = await f.tufJs(w.tufJs);
    assert.equal(t.ok, false);
    assert.match(t.error!, /version|rollback|older|expected/i);
  } finally {
    await f.stop();
  }
});

Deno.test("attack: freeze (an expired timestamp) is refused", async () => {
  const f = await new Fixture().start();
  try {
    const w = await f.bothOnce();
    await f.publish(1, { timestampDays: -1 });
    await refusedByOurs(f.ours(w.ours), "expired", w.ours);
    const t = await f.tufJs(w.tufJs);
    assert.equal(t.ok, false);
    assert.match(t.error!, /expired/i);
  } finally {
    await f.stop();
  }
});

Deno.test("attack: mix-and-match (a snapshot other than the one the timestamp names) is refused", async () => {
  const f = await new Fixture().start();
  try {
    const w = await f.bothOnce();
    const v1 = await f.publish(1);
    await f.publish(2);
    await Deno.writeFile(`${f.repo}/snapshot.json`, metadataBytes(v1.snapshot)); // validly signed, old
    await refusedByOurs(f.ours(w.ours), "mix_and_match", w.ours);
    assert.equal((await f.tufJs(w.tufJs)).ok, false);
  } finally {
    await f.stop();
  }
});

Deno.test("attack: arbitrary software (swapped bytes) and endless data (longer file) are refused", async () => {
  const f = await new Fixture().start();
  try {
    const w = await f.bothOnce();
    await Deno.writeFile(`${f.repo}/targets/${TARGET}`, new Uint8Array(4096).fill(8));
    await refusedByOurs(f.ours(w.ours), "bad_hash", w.ours);
    assert.equal((await f.tufJs(w.tufJs)).ok, false);
    const w2 = await f.bothOnce();
    await Deno.writeFile(`${f.repo}/targets/${TARGET}`, new Uint8Array(1024 * 1024).fill(7));
    await refusedByOurs(f.ours(w2.ours), "too_long", w2.ours);
    assert.equal((await f.tufJs(w2.tufJs)).ok, false);
    await assert.rejects(
      Deno.stat(`${w2.ours}/out`),
      Deno.errors.NotFound,
      "nothing unverified is left behind",
    );
  } finally {
    await f.stop();
  }
});

Deno.test("attack: a new root signed by fewer old root keys than the threshold is refused", async () => {
  const f = await new Fixture().start();
  try {
    const w = await f.bothOnce();
    f.roots.push(
      signWith(
        buildRoot(f.signers, { version: 2, expires: tufExpiry(new Date(), 365) }),
        f.signers.root.slice(0, 1),
      ),
    );
    await f.publish(1);
    await refusedByOurs(f.ours(w.ours), "threshold", w.ours);
    const t = await f.tufJs(w.tufJs);
    assert.equal(t.ok, false);
    assert.match(t.error!, /signed by 1\/2|threshold/i);
  } finally {
    await f.stop();
  }
});

Deno.test("attack: one key counted twice toward a threshold (an aliased key id) is refused", async () => {
  const f = await new Fixture().start();
  try {
    const w = await f.bothOnce();
    // Root v2 whose root role lists key r1 under its own id and under an alias, threshold 2: only
    // r1 signs the new root's own threshold. (v1's two keys sign too, so the old threshold holds.)
    const r1 = f.signers.root[0];
    const v2 = buildRoot(f.signers, { version: 2, expires: tufExpiry(new Date(), 365) });
    const json = v2.toJSON() as {
      signed: {
        keys: Record<string, unknown>;
        roles: { root: { keyids: string[]; threshold: number } };
      };
    };
    const alias = "a".repeat(64);
    json.signed.keys[alias] = json.signed.keys[r1.keyId];
    json.signed.roles.root = { keyids: [r1.keyId, alias], threshold: 2 };
    const forged = Metadata.fromJSON(
      "root" as never,
      { signatures: [], signed: json.signed } as never,
    ) as unknown as Metadata<Root>;
    signWith(forged, [r1, f.signers.root[1]]);
    const sig = forged.signatures[r1.keyId].sig;
    forged.signatures[alias] = new Signature({ keyID: alias, sig });
    f.roots.push(forged);
    await f.publish(1);
    await refusedByOurs(f.ours(w.ours), "threshold", w.ours);
    // Finding: tuf-js 6.0.2 accepts this root. Like @tufjs/models' verifyDelegate, it counts key
    // ids, not keys, and does not check that a key id is the hash of its key. Recorded here so that
    // a tuf-js upgrade that fixes it is noticed.
    const t = await f.tufJs(w.tufJs);
    assert.equal(t.ok, true, `tuf-js now refuses an aliased key id: ${t.error}`);
  } finally {
    await f.stop();
  }
});

Deno.test("attack: targets signed by a key rotated out of root are refused", async () => {
  const f = await new Fixture().start();
  try {
    const w = await f.bothOnce();
    const compromised = f.signers.targets;
    f.signers = { ...f.signers, targets: [tufSigner(seed())] };
    f.roots.push(
      signWith(
        buildRoot(f.signers, { version: 2, expires: tufExpiry(new Date(), 365) }),
        f.signers.root.slice(0, 2),
      ),
    );
    await f.publish(2, { targetsSigners: compromised }); // the attacker still holds the old key
    await refusedByOurs(f.ours(w.ours), "threshold", w.ours);
    assert.equal((await f.tufJs(w.tufJs)).ok, false);
    // With the new key, both accept, and our client now trusts root v2.
    await f.publish(3);
    const c = f.ours(w.ours);
    await c.update();
    assert.equal(c.rootVersion, 2);
    assert.equal((await f.tufJs(`${f.dir}/fresh`)).ok, true);
  } finally {
    await f.stop();
  }
});
