import assert from "node:assert/strict";
import fc from "fast-check";
import {
  addContent,
  BlockStore,
  Catalogue,
  CDN_AUDIENCE,
  readContent,
  signPublish,
} from "../../cdn/mod.ts";
import { NodeIdentity, signEnvelope } from "../../protocol/mod.ts";
import { until } from "../../protocol/_test_tools.ts";
import { foundVpn, jsonStream, vpnCredential, VpnNode } from "../overlay/mod.ts";
import { CDN_PROTOCOL, CdnExchange } from "./cdn.ts";
import { CdnNode, cdnTopic, HOLDER_TYPE } from "./cdn_node.ts";

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Blob(await Array.fromAsync(it) as BlobPart[]).arrayBuffer());
}

Deno.test("CdnExchange: a member reads an object from a holder over the VPN, audits it, and hostile requests get an error", async () => {
  const dir = await Deno.makeTempDir();
  const vpn = crypto.randomUUID();
  const secret = await foundVpn();
  const nodes: VpnNode[] = [];
  try {
    const store = await BlockStore.open(dir, 1 << 26);
    const bytes = crypto.getRandomValues(new Uint8Array(65536)).slice();
    const big = new Uint8Array(2.5 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 65536) big.set(bytes, i);
    big[0] = 1;
    big[1 << 20] = 2; // leaves differ
    const { cid } = await addContent(store, big);
    const start = async () => {
      const id = await NodeIdentity.generate();
      const credential = await vpnCredential(secret, vpn, id.nodeId);
      const n = await VpnNode.start({ identity: id, vpn, secret, credential });
      nodes.push(n);
      return n;
    };
    const holder = await start();
    const reader = await start();
    await new CdnExchange(store).attach(holder);
    const exchange = new CdnExchange();
    await exchange.attach(reader);
    await reader.connect(holder.addrs[0]);

    const got = await collect(readContent(exchange.source(reader, [holder.nodeId]), cid));
    assert.deepEqual(got, big);
    const root = await store.getBlock(cid);
    assert.equal((await exchange.audit(reader, holder.nodeId, cid, root)).holds, true);
    // A holder that lost the block cannot prove it holds it.
    await store.delete(cid);
    assert.equal((await exchange.audit(reader, holder.nodeId, cid, root)).holds, false);
    await assert.rejects(exchange.fetchBlock(reader, holder.nodeId, cid));

    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 3 }),
          fc.record({
            t: fc.constantFrom("get", "challenge"),
            cid: fc.string(),
            nonce: fc.string(),
          }),
          fc.constant({ t: "challenge", cid: cid.toString(), nonce: "zz" }),
        ),
        async (msg) => {
          const s = jsonStream(await reader.openStream(holder.nodeId, CDN_PROTOCOL), 3000);
          await s.write(msg as Record<string, unknown>);
          const a = await s.read();
          assert.ok(a.t === "error" || a.t === "missing", JSON.stringify(a));
        },
      ),
      { numRuns: 30 },
    );
  } finally {
    for (const n of nodes) await n.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("CdnNode: junk and damaged manifests and holder statements on the cdn topic are refused", async () => {
  const vpn = crypto.randomUUID();
  const secret = await foundVpn();
  const ids = await Promise.all([NodeIdentity.generate(), NodeIdentity.generate()]);
  const [a, b] = await Promise.all(ids.map(async (identity) =>
    await VpnNode.start({
      identity,
      vpn,
      secret,
      credential: await vpnCredential(secret, vpn, identity.nodeId),
    })
  ));
  const catalogue = await Catalogue.open(":memory:", {
    isMember: (id) => b.roster().some((c) => c.data.member === id),
  });
  const cdn = new CdnNode({ identity: ids[1], catalogue });
  try {
    await cdn.attach(b);
    a.libp2p.services.pubsub.subscribe(cdnTopic(vpn));
    await b.connect(a.addrs[0]);
    await until(
      "the mesh",
      () => a.libp2p.services.pubsub.getSubscribers(cdnTopic(vpn)).length > 0,
    );
    const stranger = await NodeIdentity.generate();
    const [manifest, statement, ownManifest, bad] = await Promise.all([
      signPublish(stranger, {
        v: 1,
        name: "x.txt",
        cid: "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        size: 1,
        type: "text/plain",
        visibility: "public",
      }),
      signEnvelope(stranger, { v: 1 }, {
        type: HOLDER_TYPE,
        audience: CDN_AUDIENCE,
        ttlSeconds: 30,
      }),
      signPublish(ids[0], {
        v: 1,
        name: "ok.txt",
        cid: "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        size: 1,
        type: "text/plain",
        visibility: "public",
      }),
      signPublish(ids[0], {
        v: 1,
        name: "bad.txt",
        cid: "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        size: 1,
        type: "text/plain",
        visibility: "public",
      }),
    ]);
    const damage = (jws: string) => jws.slice(0, -2) + (jws.endsWith("AA") ? "BA" : "AA");
    const publish = (msg: unknown) =>
      a.libp2p.services.pubsub.publish(
        cdnTopic(vpn),
        new TextEncoder().encode(JSON.stringify(msg)),
      );
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.jsonValue({ maxDepth: 2 }),
          fc.record({ t: fc.constantFrom("publish", "holder"), jws: fc.string() }),
          fc.constantFrom(
            { t: "publish", jws: damage(bad) }, // a damaged signature
            { t: "holder", jws: damage(statement) },
            { t: "holder", jws: manifest }, // a manifest is not a holder statement
            { t: "publish", jws: statement }, // nor the other way round
          ),
        ),
        async (msg) => {
          await publish(msg).catch(() => {});
        },
      ),
      { numRuns: 30 },
    );
    // Genuine messages sent after them are taken, so the others had their chance: a's own
    // manifest, and a stranger's that a passes on (a member vouches for what it passes on from
    // its other VPNs).
    await publish({ t: "publish", jws: ownManifest });
    await publish({ t: "publish", jws: manifest });
    await until("the genuine manifests", async () => (await catalogue.list()).length === 2);
    assert.deepEqual((await catalogue.list()).map((o) => o.name).sort(), ["ok.txt", "x.txt"]);
    assert.ok(!cdn.liveHolders().includes(stranger.nodeId), "no damaged statement was taken");
  } finally {
    await cdn.stop();
    catalogue.close();
    await a.stop();
    await b.stop();
  }
});
