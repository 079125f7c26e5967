import assert from "node:assert/strict";
import { installed } from "../protocol/_test_tools.ts";
import { SignatureError, ValidationError } from "../protocol/mod.ts";
import { generateEd25519 } from "./ed25519.ts";
import {
  formatPublicKey,
  parsePublicKey,
  parseSignature,
  signMinisign,
  verifyMinisign,
} from "./minisign.ts";

async function releaseKey() {
  const key = await generateEd25519();
  return { ...key, keyId: crypto.getRandomValues(new Uint8Array(8)) };
}

async function minisign(...args: string[]) {
  const out = await new Deno.Command("minisign", {
    args,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).output();
  return {
    code: out.code,
    text: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr),
  };
}

Deno.test({
  name:
    "signMinisign() signatures and countersignatures verify with the stock minisign -V (needs minisign)",
  ignore: !installed("minisign"),
}, async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = `${dir}/truecloud-installer.sh`;
    const data = crypto.getRandomValues(new Uint8Array(65536));
    const big = new Uint8Array(3 * 1024 * 1024 + 17);
    for (let i = 0; i < big.length; i += data.length) {
      big.set(data.subarray(0, Math.min(data.length, big.length - i)), i);
    }
    await Deno.writeFile(file, big);
    const k1 = await releaseKey();
    const k2 = await releaseKey();
    await Deno.writeTextFile(`${dir}/k1.pub`, formatPublicKey(k1));
    await Deno.writeTextFile(`${dir}/k2.pub`, formatPublicKey(k2));
    const trusted = "truecloud 0.1.0 file:truecloud-installer.sh development";
    const stream = (await Deno.open(file)).readable;
    await Deno.writeTextFile(`${file}.minisig`, await signMinisign(k1, stream, { trusted }));
    await Deno.writeTextFile(
      `${file}.minisig2`,
      await signMinisign(k2, big, { trusted, untrusted: "countersignature" }),
    );

    const v1 = await minisign("-V", "-p", `${dir}/k1.pub`, "-m", file);
    assert.equal(v1.code, 0, v1.text);
    assert.match(v1.text, /Signature and comment signature verified/);
    assert.match(v1.text, new RegExp(`Trusted comment: ${trusted}`));
    const v2 = await minisign("-V", "-p", `${dir}/k2.pub`, "-m", file, "-x", `${file}.minisig2`);
    assert.equal(v2.code, 0, v2.text);
    const crossed = await minisign(
      "-V",
      "-p",
      `${dir}/k1.pub`,
      "-m",
      file,
      "-x",
      `${file}.minisig2`,
    );
    assert.notEqual(crossed.code, 0, "the countersignature is by the other key");

    // Tampering with the file or the trusted comment is caught by minisign and by us.
    const sig = await Deno.readTextFile(`${file}.minisig`);
    await Deno.writeTextFile(`${file}.minisig`, sig.replace("0.1.0", "9.9.9"));
    assert.notEqual((await minisign("-V", "-p", `${dir}/k1.pub`, "-m", file)).code, 0);
    await assert.rejects(verifyMinisign(k1, sig.replace("0.1.0", "9.9.9"), big), SignatureError);
    await Deno.writeTextFile(`${file}.minisig`, sig);
    big[12345] ^= 1;
    await Deno.writeFile(file, big);
    assert.notEqual((await minisign("-V", "-p", `${dir}/k1.pub`, "-m", file)).code, 0);
    await assert.rejects(verifyMinisign(k1, sig, big), SignatureError);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "verifyMinisign() verifies what the stock minisign -S signs (needs minisign)",
  ignore: !installed("minisign"),
}, async () => {
  const dir = await Deno.makeTempDir();
  try {
    const gen = await minisign("-G", "-W", "-p", `${dir}/m.pub`, "-s", `${dir}/m.key`);
    assert.equal(gen.code, 0, gen.text);
    const data = new TextEncoder().encode("a file signed by minisign itself\n");
    await Deno.writeFile(`${dir}/f`, data);
    const signed = await minisign(
      "-S",
      "-s",
      `${dir}/m.key`,
      "-m",
      `${dir}/f`,
      "-t",
      "made by minisign",
    );
    assert.equal(signed.code, 0, signed.text);
    const key = parsePublicKey(await Deno.readTextFile(`${dir}/m.pub`));
    const sig = await Deno.readTextFile(`${dir}/f.minisig`);
    assert.equal(await verifyMinisign(key, sig, data), "made by minisign");
    assert.equal(await verifyMinisign(key, sig, new Blob([data]).stream()), "made by minisign");
    await assert.rejects(
      verifyMinisign(key, sig, new TextEncoder().encode("another file")),
      SignatureError,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parsePublicKey() and parseSignature() refuse what is not minisign", async () => {
  const k = await releaseKey();
  const pub = formatPublicKey(k);
  assert.deepEqual(parsePublicKey(pub).publicKey, k.publicKey);
  assert.match(pub, /^untrusted comment: minisign public key [0-9A-F]{16}\n/);
  for (
    const bad of [
      "",
      "untrusted comment: x\n",
      "untrusted comment: x\nAAAA\n",
      "untrusted comment: x\n!!!\n",
    ]
  ) {
    assert.throws(() => parsePublicKey(bad), ValidationError);
  }
  const sig = await signMinisign(k, new Uint8Array([1, 2, 3]), { trusted: "t" });
  assert.equal(parseSignature(sig).algorithm, "ED");
  for (
    const bad of [
      "",
      sig.split("\n").slice(0, 2).join("\n"),
      sig.replace(/\n(\S+)\ntrusted/, "\nAAAA\ntrusted"),
    ]
  ) {
    assert.throws(() => parseSignature(bad), ValidationError);
  }
  await assert.rejects(
    signMinisign(k, new Uint8Array(1), { trusted: "two\nlines" }),
    ValidationError,
  );
  const other = await releaseKey();
  await assert.rejects(
    verifyMinisign(other, sig, new Uint8Array([1, 2, 3])),
    (e: SignatureError) => e.code === "wrong_key",
  );
});
