import assert from "node:assert/strict";
import { ManualClock, NodeIdentity, SignatureError, TrueCloudError } from "../protocol/mod.ts";
import { BlockStore } from "./blockstore.ts";
import { Catalogue, signPublish } from "./catalogue.ts";
import { addContent } from "./content.ts";

async function fixture() {
  const dir = await Deno.makeTempDir();
  const clock = new ManualClock(Date.UTC(2026, 10, 25, 12));
  const store = await BlockStore.open(`${dir}/blocks`, 1 << 24);
  const member = await NodeIdentity.generate();
  const stranger = await NodeIdentity.generate();
  const catalogue = await Catalogue.open(":memory:", {
    isMember: (id) => id === member.nodeId,
    has: (cid) => store.has(cid),
    clock,
  });
  const add = async (text: string) =>
    (await addContent(store, new TextEncoder().encode(text))).cid.toString();
  return {
    clock,
    member,
    stranger,
    catalogue,
    add,
    async [Symbol.asyncDispose]() {
      catalogue.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

const manifest = (cid: string, over: Record<string, unknown> = {}) => ({
  v: 1 as const,
  name: "docs/a.txt",
  cid,
  size: 1,
  type: "text/plain",
  visibility: "public" as const,
  ...over,
});

Deno.test("Catalogue.publish() takes members' signed manifests; a name's new version keeps the old CID reachable", async () => {
  await using f = await fixture();
  const v1 = await f.add("one");
  await f.catalogue.publish(await signPublish(f.member, manifest(v1), f.clock));
  f.clock.advance(2000);
  const v2 = await f.add("two");
  await f.catalogue.publish(await signPublish(f.member, manifest(v2), f.clock));
  assert.equal((await f.catalogue.byName("docs/a.txt"))!.cid.toString(), v2);
  assert.equal(
    (await f.catalogue.byCid((await f.catalogue.byName("docs/a.txt"))!.cid))!.name,
    "docs/a.txt",
  );
  const old = await f.catalogue.list();
  assert.equal(old.length, 1);
  const { parseCid } = await import("./content.ts");
  assert.ok(await f.catalogue.byCid(parseCid(v1)), "the old version stays fetchable by CID");
});

Deno.test("Catalogue.publish() refuses strangers, missing content, stale versions and bad manifests", async () => {
  await using f = await fixture();
  const cid = await f.add("x");
  await assert.rejects(
    f.catalogue.publish(await signPublish(f.stranger, manifest(cid), f.clock)),
    (e: TrueCloudError) => e.code === "not_member" && e.status === 403,
  );
  const absent = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";
  await assert.rejects(
    f.catalogue.publish(await signPublish(f.member, manifest(absent), f.clock)),
    (e: TrueCloudError) => e.code === "content_missing",
  );
  const older = await signPublish(f.member, manifest(cid), f.clock);
  f.clock.advance(5000);
  await f.catalogue.publish(await signPublish(f.member, manifest(cid), f.clock));
  await assert.rejects(f.catalogue.publish(older), (e: TrueCloudError) => e.code === "stale");
  for (
    const bad of [{ name: "../etc" }, { name: "/abs" }, { type: "not a type" }, {
      visibility: "everyone",
    }, { cid: "hello" }]
  ) {
    await assert.rejects(
      f.catalogue.publish(await signPublish(f.member, manifest(cid, bad) as never, f.clock)),
      TrueCloudError,
    );
  }
  const jws = await signPublish(f.member, manifest(cid), f.clock);
  await assert.rejects(f.catalogue.publish(jws.slice(0, -4) + "AAAA"), SignatureError);
});

Deno.test("Catalogue: a CID is public when any publication of it is; expired publications vanish", async () => {
  await using f = await fixture();
  const cid = await f.add("shared bytes");
  await f.catalogue.publish(
    await signPublish(f.member, manifest(cid, { name: "m/x", visibility: "members" }), f.clock),
  );
  const { parseCid } = await import("./content.ts");
  assert.equal((await f.catalogue.byCid(parseCid(cid)))!.visibility, "members");
  await f.catalogue.publish(
    await signPublish(
      f.member,
      manifest(cid, { name: "p/x", expires: new Date(f.clock.now() + 60_000).toISOString() }),
      f.clock,
    ),
  );
  assert.equal((await f.catalogue.byCid(parseCid(cid)))!.visibility, "public");
  f.clock.advance(120_000);
  assert.equal(await f.catalogue.byName("p/x"), undefined);
  assert.equal((await f.catalogue.byCid(parseCid(cid)))!.visibility, "members");
});
