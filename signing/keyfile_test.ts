import assert from "node:assert/strict";
import fc from "fast-check";
import { SignatureError, ValidationError } from "../protocol/mod.ts";
import { generateEd25519 } from "./ed25519.ts";
import { MIN_SCRYPT_N, openKey, sealKey } from "./keyfile.ts";

const N = MIN_SCRYPT_N; // the tool writes 2^17; tests use the least allowed, to stay quick

Deno.test("sealKey() and openKey() round-trip, and the file holds no secret in the clear", async () => {
  const key = await generateEd25519();
  const file = await sealKey(key, "correct horse battery staple", {
    role: "root",
    comment: "root key 1 of 3",
    scryptN: N,
  });
  const text = JSON.stringify(file);
  const seedHex = Array.from(key.seed, (b) => b.toString(16).padStart(2, "0")).join("");
  assert.ok(!text.includes(seedHex));
  assert.ok(!text.includes(btoa(String.fromCharCode(...key.seed))));
  const opened = await openKey(JSON.parse(text), "correct horse battery staple");
  assert.deepEqual(opened.publicKey, key.publicKey);
  const msg = new TextEncoder().encode("m");
  assert.deepEqual(
    await opened.sign(msg),
    await key.sign(msg),
    "Ed25519 is deterministic: same key, same signature",
  );
});

Deno.test("openKey() refuses a wrong passphrase and any altered member with the same error", async () => {
  const key = await generateEd25519();
  const file = await sealKey(key, "passphrase-1", {
    role: "targets",
    comment: "targets",
    scryptN: N,
  });
  await assert.rejects(
    openKey(file, "passphrase-2"),
    (e: SignatureError) => e.code === "key_file_locked",
  );
  for (
    const altered of [
      { ...file, comment: "targets (edited)" },
      { ...file, role: "root" },
      { ...file, ciphertext: file.ciphertext.replace(/^./, (c) => (c === "0" ? "1" : "0")) },
      {
        ...file,
        publicKey: Array.from(
          (await generateEd25519()).publicKey,
          (b) => b.toString(16).padStart(2, "0"),
        ).join(""),
      },
    ]
  ) {
    await assert.rejects(openKey(altered, "passphrase-1"), SignatureError);
  }
});

Deno.test("openKey() and sealKey() refuse malformed files and weak settings", async () => {
  const key = await generateEd25519();
  await assert.rejects(
    sealKey(key, "short", { role: "root", comment: "", scryptN: N }),
    ValidationError,
  );
  const file = await sealKey(key, "long enough", { role: "root", comment: "", scryptN: N });
  await assert.rejects(
    openKey({ ...file, kdf: { ...file.kdf, N: 1024 } }, "long enough"),
    ValidationError,
  );
  await assert.rejects(openKey({ ...file, extra: 1 }, "long enough"), ValidationError);
  await assert.rejects(openKey(null, "long enough"), ValidationError);
  await fc.assert(
    fc.asyncProperty(fc.jsonValue(), async (v) => {
      await assert.rejects(openKey(v, "long enough"), ValidationError);
    }),
    { numRuns: 100 },
  );
});
