import assert from "node:assert/strict";
import { Hono } from "hono";
import { ManualClock, toHttpError } from "../protocol/mod.ts";
import { createTufApp } from "./app.ts";
import { TufClient } from "./client.ts";
import { buildDevelopmentRelease } from "./dev_release.ts";
import { TimestampRefresher } from "./timestamp.ts";

Deno.test("TimestampRefresher re-signs the timestamp when half its life is gone, and clients take it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/src`);
    await Deno.writeTextFile(`${dir}/src/a.txt`, "a\n");
    const release = await buildDevelopmentRelease({
      repository: `${dir}/repo`,
      keysDir: `${dir}/keys`,
      sourceRoot: `${dir}/src`,
    });
    const clock = new ManualClock(Date.now());
    const refresher = new TimestampRefresher({
      repository: release.repository,
      signer: release.timestampSigner,
      clock,
    });
    assert.equal(await refresher.refresh(), 1, "fresh: left alone");
    clock.advance(13 * 3600_000);
    assert.equal(await refresher.refresh(), 2, "past half its day: re-signed");
    assert.equal(await refresher.refresh(), 2);

    const app = new Hono().route("/tuf", createTufApp(release.repository));
    app.onError((err, c) => c.json(toHttpError(err).body, toHttpError(err).status as 404));
    await Deno.mkdir(`${dir}/trust`);
    await Deno.copyFile(`${release.repository}/1.root.json`, `${dir}/trust/root.json`);
    // 30 hours after the release: the first timestamp would have expired; the refreshed one has not.
    const client = new TufClient({
      metadataUrl: "http://r.test/tuf",
      dir: `${dir}/trust`,
      clock: new ManualClock(clock.now() + 17 * 3600_000),
      fetch: (i) => Promise.resolve(app.request(new URL(String(i)).pathname)),
    });
    await client.update();
    assert.equal(client.versions.timestamp, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("TimestampRefresher re-signs the snapshot too, and a timestamp that names it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/src`);
    await Deno.writeTextFile(`${dir}/src/a.txt`, "a\n");
    const release = await buildDevelopmentRelease({
      repository: `${dir}/repo`,
      keysDir: `${dir}/keys`,
      sourceRoot: `${dir}/src`,
    });
    const clock = new ManualClock(Date.now() + 4 * 86_400_000); // 4 days on: past half the snapshot's week
    const refresher = new TimestampRefresher({
      repository: release.repository,
      signer: release.timestampSigner,
      snapshotSigner: release.snapshotSigner,
      clock,
    });
    assert.equal(await refresher.refresh(), 2);
    const app = new Hono().route("/tuf", createTufApp(release.repository));
    app.onError((err, c) => c.json(toHttpError(err).body, toHttpError(err).status as 404));
    await Deno.mkdir(`${dir}/trust`);
    await Deno.copyFile(`${release.repository}/1.root.json`, `${dir}/trust/root.json`);
    const client = new TufClient({
      metadataUrl: "http://r.test/tuf",
      dir: `${dir}/trust`,
      clock: new ManualClock(clock.now() + 5 * 86_400_000), // 9 days after the release
      fetch: (i) => Promise.resolve(app.request(new URL(String(i)).pathname)),
    });
    await assert.rejects(client.update(), /expired/, "the timestamp of day 4 has expired by day 9");
    clock.advance(5 * 86_400_000);
    await refresher.refresh();
    await client.update();
    assert.deepEqual(client.versions, { timestamp: 3, snapshot: 3, targets: 1 });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
