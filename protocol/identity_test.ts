import assert from "node:assert/strict";
import fc from "fast-check";
import { peerIdFromString } from "@libp2p/peer-id";
import { publicKeyFromRaw } from "@libp2p/crypto/keys";
import { peerIdFromPublicKey } from "@libp2p/peer-id";
import {
  isNodeId,
  NodeIdentity,
  nodeIdFromPublicKey,
  publicKeyFromNodeId,
  verifyBytes,
} from "./identity.ts";
import { ValidationError } from "./errors.ts";

Deno.test("nodeIdFromPublicKey() equals the libp2p peer id of the same key", async () => {
  for (let i = 0; i < 5; i++) {
    const me = await NodeIdentity.generate();
    const theirs = peerIdFromPublicKey(publicKeyFromRaw(me.publicKey)).toString();
    assert.equal(me.nodeId, theirs);
    const parsed = peerIdFromString(me.nodeId);
    assert.deepEqual(parsed.publicKey?.raw, me.publicKey);
  }
});

Deno.test("publicKeyFromNodeId() round-trips every 32-byte key", () => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (key) => {
    const id = nodeIdFromPublicKey(key);
    assert.ok(id.startsWith("12D3KooW"));
    assert.ok(isNodeId(id));
    assert.deepEqual(publicKeyFromNodeId(id), key);
  }));
});

Deno.test("publicKeyFromNodeId() refuses anything that is not an Ed25519 node id", () => {
  fc.assert(fc.property(fc.string({ maxLength: 80 }), (s) => {
    if (isNodeId(s)) return;
    assert.throws(() => publicKeyFromNodeId(s), ValidationError);
  }));
  // A secp256k1 libp2p peer id and a sha256 (RSA) one are well-formed base58 but not ours.
  assert.equal(isNodeId("16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY"), false);
  assert.equal(isNodeId("QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N"), false);
  assert.throws(() => nodeIdFromPublicKey(new Uint8Array(31)), ValidationError);
});

Deno.test("NodeIdentity.fromJwk() restores the same identity and refuses mismatched halves", async () => {
  const a = await NodeIdentity.generate();
  const b = await NodeIdentity.generate();
  const again = await NodeIdentity.fromJwk(JSON.parse(JSON.stringify(a.toJwk())));
  assert.equal(again.nodeId, a.nodeId);
  await assert.rejects(NodeIdentity.fromJwk({ ...a.toJwk(), x: b.toJwk().x }), /does not match/);
  await assert.rejects(NodeIdentity.fromJwk({ kty: "RSA" }), ValidationError);
  await assert.rejects(NodeIdentity.fromJwk(null), ValidationError);
  await assert.rejects(
    NodeIdentity.fromJwk({ kty: "OKP", crv: "Ed25519", x: "AA", d: "AA" }),
    ValidationError,
  );
});

Deno.test("NodeIdentity.toString() shows the node id, never the key", async () => {
  const a = await NodeIdentity.generate();
  assert.equal(`${a}`, a.nodeId);
  assert.ok(!JSON.stringify({ a: a.nodeId }).includes(a.toJwk().d));
});

Deno.test("verifyBytes() accepts the signer's signature and refuses others", async () => {
  const a = await NodeIdentity.generate();
  const b = await NodeIdentity.generate();
  const msg = new TextEncoder().encode("offer");
  const sig = await a.sign(msg);
  assert.equal(await verifyBytes(a.nodeId, sig, msg), true);
  assert.equal(await verifyBytes(b.nodeId, sig, msg), false);
  sig[0] ^= 1;
  assert.equal(await verifyBytes(a.nodeId, sig, msg), false);
});

Deno.test("nodeIdFromPublicKey() matches the example in docs/protocol/identity.md", () => {
  const key = Uint8Array.from({ length: 32 }, (_, i) => i);
  assert.equal(nodeIdFromPublicKey(key), "12D3KooW9pP4Seg3kZYhySpuVjn1RPdQBsUFZKiFxGMGQN5MeL6A");
});
