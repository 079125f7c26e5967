import assert from "node:assert/strict";
import { serveHttps } from "./server.ts";
import { makeSelfSigned } from "./tls.ts";
import { installed } from "../protocol/_test_tools.ts";

Deno.test({
  name: "serveHttps() serves HTTP/1.1 and HTTP/2 with TCP_NODELAY set on its listener (needs curl)",
  ignore: !installed("curl"),
}, async () => {
  const tls = await makeSelfSigned();
  const body = "x".repeat(4096); // inside the 0.5–16 KiB range that stalls without TCP_NODELAY
  const srv = serveHttps(() => new Response(body), { hostname: "127.0.0.1", port: 0, ...tls });
  const client = Deno.createHttpClient({ caCerts: [tls.cert] });
  try {
    assert.equal(srv.noDelay, true, "TCP_NODELAY is set (the task grants --allow-ffi)");
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`https://127.0.0.1:${srv.port}/`, { client });
      assert.equal(await res.text(), body);
    }
    const out = await new Deno.Command("curl", {
      args: [
        "-sS",
        "--http2",
        "--cacert",
        "/dev/stdin",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version}",
        `https://127.0.0.1:${srv.port}/`,
      ],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const w = out.stdin.getWriter();
    await w.write(new TextEncoder().encode(tls.cert));
    await w.close();
    const result = await out.output();
    assert.equal(new TextDecoder().decode(result.stdout), "2");
  } finally {
    client.close();
    await srv.shutdown();
  }
});

Deno.test("serveHttps() falls back to streamed bodies where FFI is not allowed", async () => {
  const tls = await makeSelfSigned();
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/cert.pem`, tls.cert);
    await Deno.writeTextFile(`${dir}/key.pem`, tls.key);
    const script = `
      import { serveHttps } from ${JSON.stringify(new URL("./server.ts", import.meta.url).href)};
      const cert = await Deno.readTextFile(${JSON.stringify(`${dir}/cert.pem`)});
      const key = await Deno.readTextFile(${JSON.stringify(`${dir}/key.pem`)});
      const big = new Uint8Array(5 * 1024 * 1024).fill(7);
      const srv = serveHttps((req) => new URL(req.url).pathname === "/big"
        ? new Response(new Blob([big]).stream()) // a large streamed body goes on streaming
        : new Response("y".repeat(3000), { headers: { "x-kept": "1" } }),
        { hostname: "127.0.0.1", port: 0, cert, key });
      const client = Deno.createHttpClient({ caCerts: [cert] });
      const res = await fetch("https://127.0.0.1:" + srv.port + "/", { client });
      const text = await res.text();
      const bigRes = await fetch("https://127.0.0.1:" + srv.port + "/big", { client });
      const bigLen = (await bigRes.arrayBuffer()).byteLength;
      console.log(JSON.stringify({ noDelay: srv.noDelay, len: text.length, kept: res.headers.get("x-kept"),
        cl: res.headers.get("content-length"), bigLen }));
      client.close();
      await srv.shutdown();
    `;
    await Deno.writeTextFile(`${dir}/probe.ts`, script);
    const root = new URL("..", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      // Network and files only: no --allow-ffi.
      args: [
        "run",
        "--config",
        `${root}deno.json`,
        "--allow-net=127.0.0.1",
        "--allow-read",
        `${dir}/probe.ts`,
      ],
      cwd: root,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout).trim().split("\n").pop()!;
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.deepEqual(JSON.parse(stdout), {
      noDelay: false,
      len: 3000,
      kept: "1",
      cl: "3000",
      bigLen: 5 * 1024 * 1024,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
