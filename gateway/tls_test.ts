import assert from "node:assert/strict";
import { ConfigError } from "../protocol/mod.ts";
import { installed } from "../protocol/_test_tools.ts";
import { certificateExpiry, ensureSelfSigned, loadTls, makeSelfSigned } from "./tls.ts";

Deno.test({
  name:
    "makeSelfSigned() makes a certificate that openssl reads, for localhost and loopback (needs openssl)",
  ignore: !installed("openssl"),
}, async () => {
  const m = await makeSelfSigned({ days: 10 });
  const days = (certificateExpiry(m.cert).getTime() - Date.now()) / 86_400_000;
  assert.ok(days > 9.9 && days <= 10);
  const out = await new Deno.Command("openssl", {
    args: ["x509", "-noout", "-text"],
    stdin: "piped",
    stdout: "piped",
  })
    .spawn();
  const w = out.stdin.getWriter();
  await w.write(new TextEncoder().encode(m.cert));
  await w.close();
  const text = new TextDecoder().decode((await out.output()).stdout);
  assert.match(text, /DNS:localhost/);
  assert.match(text, /IP Address:127\.0\.0\.1/);
  assert.match(text, /TLS Web Server Authentication/);
});

Deno.test("ensureSelfSigned() keeps its certificate across calls and keeps the key private", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const a = await ensureSelfSigned(dir);
    const b = await ensureSelfSigned(dir);
    assert.equal(a.cert, b.cert);
    assert.equal((await Deno.stat(a.keyPath)).mode! & 0o777, 0o600);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadTls() refuses missing and non-PEM files with a clear message", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      loadTls(`${dir}/none.pem`, `${dir}/none.key`),
      (e: ConfigError) => /Cannot read TLS certificate/.test(e.message),
    );
    await Deno.writeTextFile(`${dir}/c.pem`, "hello");
    await Deno.writeTextFile(`${dir}/k.pem`, "-----BEGIN PRIVATE KEY-----\n");
    await assert.rejects(
      loadTls(`${dir}/c.pem`, `${dir}/k.pem`),
      (e: ConfigError) => /is not PEM/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
