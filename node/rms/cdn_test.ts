import assert from "node:assert/strict";
import fc from "fast-check";
import { addContent, BlockStore, readContent } from "../../cdn/mod.ts";
import { NodeIdentity } from "../../protocol/mod.ts";
import { foundVpn, jsonStream, vpnCredential, VpnNode } from "../overlay/mod.ts";
import { CDN_PROTOCOL, CdnExchange } from "./cdn.ts";

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
