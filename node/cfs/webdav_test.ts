// The WebDAV endpoint through real HTTP on 127.0.0.1, driven by software written elsewhere: the
// npm `webdav` client and curl. Also: DNS-rebinding and cross-site requests, hostile inputs (bad
// XML, odd Depth values, traversal, NUL, overlong names) answered with a 4xx and a reason, and
// nothing changed by them.
import assert from "node:assert/strict";
import fc from "fast-check";
import { XMLParser } from "fast-xml-parser";
import { createClient, type FileStat, type WebDAVClient } from "webdav";
import { ManualClock } from "../../protocol/mod.ts";
import { MemoryByteStore } from "./byte_store.ts";
import { FileStore } from "./files.ts";
import { createWebDavApp, serveWebDav } from "./webdav.ts";

interface Env {
  files: FileStore;
  url: string;
  port: number;
  client: WebDAVClient;
}

async function withServer(fn: (env: Env) => Promise<void>, clock?: ManualClock): Promise<void> {
  const files = await FileStore.format(new MemoryByteStore(64 << 20, 65536));
  const server = serveWebDav(files, { hostname: "127.0.0.1", clock });
  try {
    await fn({ files, url: server.url, port: server.port, client: createClient(server.url) });
  } finally {
    await server.close();
    await files.close();
  }
}

interface CurlResult {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Runs curl and returns the final answer's status, headers and body. */
async function curl(args: string[], stdin?: Uint8Array): Promise<CurlResult> {
  const cmd = new Deno.Command("/usr/bin/curl", {
    // With -o the body goes to a file and only the headers to stdout.
    args: [
      "-s",
      "-S",
      ...(args.includes("-o") ? ["-D", "-"] : ["-i"]),
      "--max-time",
      "20",
      ...args,
    ],
    stdin: stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  });
  const child = cmd.spawn();
  if (stdin) {
    const w = child.stdin.getWriter();
    await w.write(stdin);
    await w.close();
  }
  const out = await child.output();
  if (!out.success) throw new Error(`curl failed: ${new TextDecoder().decode(out.stderr)}`);
  const text = new TextDecoder().decode(out.stdout);
  // Skip interim answers (100 Continue).
  const blocks = text.split("\r\n\r\n");
  let i = 0;
  while (/^HTTP\/[\d.]+ 1\d\d/.test(blocks[i]) && i < blocks.length - 1) i++;
  const [statusLine, ...lines] = blocks[i].split("\r\n");
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const at = l.indexOf(":");
    headers[l.slice(0, at).toLowerCase()] = l.slice(at + 1).trim();
  }
  return {
    status: Number(statusLine.split(" ")[1]),
    headers,
    body: blocks.slice(i + 1).join("\r\n\r\n"),
  };
}

/** Sends one request exactly as given (no normalisation of the target) over TCP. */
async function raw(
  port: number,
  method: string,
  target: string,
  headers: Record<string, string> = {},
  body = "",
): Promise<CurlResult> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const bytes = new TextEncoder().encode(body);
  const head = [
    `${method} ${target} HTTP/1.1`,
    ...Object.entries({ host: `127.0.0.1:${port}`, connection: "close", ...headers }).map((
      [k, v],
    ) => `${k}: ${v}`),
    `content-length: ${bytes.length}`,
    "",
    "",
  ].join("\r\n");
  const request = new Uint8Array([...new TextEncoder().encode(head), ...bytes]);
  for (let at = 0; at < request.length;) at += await conn.write(request.subarray(at));
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(65536);
  for (;;) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    chunks.push(buf.slice(0, n));
  }
  conn.close();
  const text = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
  const [headText, ...rest] = text.split("\r\n\r\n");
  const [statusLine, ...lines] = headText.split("\r\n");
  const out: Record<string, string> = {};
  for (const l of lines) {
    const at = l.indexOf(":");
    out[l.slice(0, at).toLowerCase()] = l.slice(at + 1).trim();
  }
  return { status: Number(statusLine.split(" ")[1]), headers: out, body: rest.join("\r\n\r\n") };
}

async function tree(files: FileStore): Promise<string[]> {
  const out: string[] = [];
  const walk = async (p: string) => {
    for (const e of await files.list(p)) {
      out.push(`${e.path} ${e.type} ${e.size} ${e.etag ?? ""}`);
      if (e.type === "directory") await walk(e.path);
    }
  };
  await walk("/");
  return out;
}

const xml = new XMLParser({ ignoreAttributes: false, removeNSPrefix: true });

function bytes(n: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed + (i >> 9)) & 0xff);
}

Deno.test("WebDAV with the npm webdav client: upload, list, download ranges, mkdir, move, copy, delete", async () => {
  await withServer(async ({ client, files }) => {
    await client.createDirectory("/docs");
    await client.createDirectory("/docs/sub dir");
    assert.equal(await client.putFileContents("/docs/a.txt", "hello world"), true);
    const big = bytes(700_000, 1);
    await client.putFileContents("/docs/sub dir/big é.bin", big.buffer as ArrayBuffer);
    const list = await client.getDirectoryContents("/docs") as FileStat[];
    assert.deepEqual(
      list.map((f) => [f.filename, f.type, f.size]).sort(),
      [["/docs/a.txt", "file", 11], ["/docs/sub dir", "directory", 0]],
    );
    const a = list.find((f) => f.basename === "a.txt")!;
    assert.equal(a.etag, (await files.stat("/docs/a.txt")).etag!.replaceAll('"', ""));
    assert.equal(a.mime, "text/plain");
    const st = await client.stat("/docs/sub dir/big é.bin") as FileStat;
    assert.equal(st.size, big.length);
    assert.equal(st.basename, "big é.bin");
    assert.equal(await client.getFileContents("/docs/a.txt", { format: "text" }), "hello world");
    const whole = await client.getFileContents("/docs/sub dir/big é.bin") as Uint8Array;
    assert.deepEqual(new Uint8Array(whole), big);
    const part = await client.getFileContents("/docs/sub dir/big é.bin", {
      headers: { Range: "bytes=100000-100099" },
    }) as Uint8Array;
    assert.deepEqual(new Uint8Array(part), big.slice(100000, 100100));
    await client.moveFile("/docs/a.txt", "/docs/b.txt");
    assert.equal(await client.exists("/docs/a.txt"), false);
    await client.copyFile("/docs", "/copy");
    assert.equal(await client.getFileContents("/copy/b.txt", { format: "text" }), "hello world");
    await assert.rejects(
      client.copyFile("/docs/b.txt", "/copy/b.txt", { overwrite: false }),
      /412/,
    );
    await client.deleteFile("/docs");
    assert.equal(await client.exists("/docs"), false);
    assert.deepEqual(
      (await client.getDirectoryContents("/", { deep: false }) as FileStat[]).map((f) =>
        f.filename
      ),
      ["/copy"],
    );
    const quota = await client.getQuota() as { used: number; available: number };
    assert.equal(quota.used, files.usage().usedBytes);
    assert.equal(quota.available, files.usage().freeBytes);
    await assert.rejects(client.getFileContents("/nope"), /404/);
    await assert.rejects(client.createDirectory("/no/such/parent"), /409/);
  });
});

Deno.test("WebDAV locks with the npm webdav client: a locked file needs its token", async () => {
  const clock = new ManualClock(1_767_225_600_000);
  await withServer(async ({ client, url }) => {
    await client.putFileContents("/f.txt", "one");
    const lock = await client.lock("/f.txt");
    assert.match(lock.token, /^urn:uuid:[0-9a-f-]{36}$/);
    assert.equal(lock.serverTimeout, "Second-3600");
    await assert.rejects(client.putFileContents("/f.txt", "two"), /423/);
    await assert.rejects(client.deleteFile("/f.txt"), /423/);
    await assert.rejects(client.moveFile("/f.txt", "/g.txt"), /423/);
    await assert.rejects(client.lock("/f.txt"), /423/);
    const withToken = createClient(url, { headers: { If: `(<${lock.token}>)` } });
    await withToken.putFileContents("/f.txt", "two");
    assert.equal(await client.getFileContents("/f.txt", { format: "text" }), "two");
    // Refresh, then let it expire.
    const refreshed = await client.lock("/f.txt", {
      refreshToken: `(<${lock.token}>)`,
      timeout: "Second-60",
    });
    assert.equal(refreshed.token, lock.token);
    await client.unlock("/f.txt", lock.token);
    await client.putFileContents("/f.txt", "three");
    const again = await client.lock("/f.txt", { timeout: "Second-30" });
    clock.advance(31_000);
    await client.putFileContents("/f.txt", "four");
    await assert.rejects(client.unlock("/f.txt", again.token), /409/);
  }, clock);
});

Deno.test("WebDAV with curl: OPTIONS, PUT streaming, Range, conditional requests", async () => {
  await withServer(async ({ url, files }) => {
    const opt = await curl(["-X", "OPTIONS", url]);
    assert.equal(opt.status, 200);
    assert.equal(opt.headers["dav"], "1, 2");
    assert.equal(opt.headers["ms-author-via"], "DAV");
    assert.match(opt.headers["allow"], /PROPFIND/);
    const dir = await Deno.makeTempDir();
    try {
      const data = bytes(3_000_000, 2);
      await Deno.writeFile(`${dir}/up.bin`, data);
      const put = await curl(["-T", `${dir}/up.bin`, `${url}up.bin`]);
      assert.equal(put.status, 201);
      const etag = put.headers["etag"];
      assert.equal(etag, (await files.stat("/up.bin")).etag);
      // Chunked upload (no length), replacing the file.
      const chunked = await curl(
        ["-T", "-", "-H", "Transfer-Encoding: chunked", `${url}up.bin`],
        data.slice(0, 1000),
      );
      assert.equal(chunked.status, 204);
      assert.equal((await files.stat("/up.bin")).size, 1000);
      const range = await curl(["-r", "10-19", `${url}up.bin`]);
      assert.equal(range.status, 206);
      assert.equal(range.headers["content-range"], "bytes 10-19/1000");
      assert.equal(range.headers["content-length"], "10");
      const tag = range.headers["etag"];
      const notModified = await curl(["-H", `If-None-Match: ${tag}`, `${url}up.bin`]);
      assert.equal(notModified.status, 304);
      const bad = await curl(["-r", "5000-6000", `${url}up.bin`]);
      assert.equal(bad.status, 416);
      assert.equal(bad.headers["content-range"], "bytes */1000");
      const head = await curl(["-I", `${url}up.bin`]);
      assert.equal(head.status, 200);
      assert.equal(head.headers["content-length"], "1000");
      assert.equal(head.headers["accept-ranges"], "bytes");
      // Preconditions on PUT.
      const exists = await curl(["-T", `${dir}/up.bin`, "-H", "If-None-Match: *", `${url}up.bin`]);
      assert.equal(exists.status, 412);
      const stale = await curl(["-T", `${dir}/up.bin`, "-H", `If-Match: ${etag}`, `${url}up.bin`]);
      assert.equal(stale.status, 412);
      assert.equal((await files.stat("/up.bin")).size, 1000);
      const fresh = await curl(["-T", `${dir}/up.bin`, "-H", `If-Match: ${tag}`, `${url}up.bin`]);
      assert.equal(fresh.status, 204);
      const noParent = await curl(["-T", `${dir}/up.bin`, `${url}missing/up.bin`]);
      assert.equal(noParent.status, 409);
      assert.match(noParent.body, /not a collection/);
      const onDir = await curl(["-X", "PUT", "--data-binary", `@${dir}/up.bin`, url]);
      assert.equal(onDir.status, 405);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("WebDAV with curl: PROPFIND answers well-formed multistatus and refuses infinity", async () => {
  await withServer(async ({ url, files }) => {
    await files.mkdir("/d");
    await files.write("/d/x & <y>.txt", new TextEncoder().encode("abc"));
    const body = `<?xml version="1.0"?><D:propfind xmlns:D="DAV:" xmlns:Z="urn:z"><D:prop>` +
      `<D:getcontentlength/><D:resourcetype/><D:getetag/><D:quota-used-bytes/><Z:color/></D:prop></D:propfind>`;
    const r = await curl([
      "-X",
      "PROPFIND",
      "-H",
      "Depth: 1",
      "-H",
      "Content-Type: application/xml",
      "--data-binary",
      body,
      `${url}d/`,
    ]);
    assert.equal(r.status, 207);
    const doc = xml.parse(r.body);
    const responses = doc.multistatus.response;
    assert.equal(responses.length, 2);
    assert.equal(responses[0].href, "/d/");
    assert.equal(responses[1].href, "/d/x%20%26%20%3Cy%3E.txt");
    const [ok, missing] = responses[1].propstat;
    assert.equal(ok.status, "HTTP/1.1 200 OK");
    assert.equal(ok.prop.getcontentlength, 3);
    assert.equal(missing.status, "HTTP/1.1 404 Not Found");
    assert.ok("color" in missing.prop);
    assert.match(r.body, /<ns0:color xmlns:ns0="urn:z"\/>/);
    const inf = await curl(["-X", "PROPFIND", "-H", "Depth: infinity", url]);
    assert.equal(inf.status, 403);
    assert.match(inf.body, /<D:propfind-finite-depth\/>/);
    const none = await curl(["-X", "PROPFIND", url]);
    assert.equal(none.status, 403);
    const names = await curl([
      "-X",
      "PROPFIND",
      "-H",
      "Depth: 0",
      "--data-binary",
      '<propfind xmlns="DAV:"><propname/></propfind>',
      `${url}d/x%20%26%20%3Cy%3E.txt`,
    ]);
    assert.equal(names.status, 207);
    assert.ok("getetag" in xml.parse(names.body).multistatus.response.propstat.prop);
    const all = await curl(["-X", "PROPFIND", "-H", "Depth: 0", url]);
    const prop = xml.parse(all.body).multistatus.response.propstat.prop;
    assert.ok("resourcetype" in prop && "supportedlock" in prop && "lockdiscovery" in prop);
    // PROPPATCH is refused honestly, per property.
    const patch =
      `<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:W="urn:schemas-microsoft-com:">` +
      `<D:set><D:prop><W:Win32LastModifiedTime>x</W:Win32LastModifiedTime><D:displayname>n</D:displayname></D:prop></D:set></D:propertyupdate>`;
    const pp = await curl(["-X", "PROPPATCH", "--data-binary", patch, `${url}d/`]);
    assert.equal(pp.status, 207);
    const stats = xml.parse(pp.body).multistatus.response.propstat;
    assert.deepEqual(stats.map((s: { status: string }) => s.status), [
      "HTTP/1.1 403 Forbidden",
      "HTTP/1.1 403 Forbidden",
    ]);
    assert.match(pp.body, /cannot-modify-protected-property/);
  });
});

Deno.test("WebDAV with curl: MKCOL, COPY, MOVE, DELETE status codes", async () => {
  await withServer(async ({ url, port, files }) => {
    assert.equal((await curl(["-X", "MKCOL", `${url}a`])).status, 201);
    assert.equal((await curl(["-X", "MKCOL", `${url}a`])).status, 405);
    assert.equal((await curl(["-X", "MKCOL", `${url}x/y`])).status, 409);
    assert.equal((await curl(["-X", "MKCOL", "--data-binary", "<x/>", `${url}b`])).status, 415);
    await files.write("/a/f", new TextEncoder().encode("f"));
    const dest = (p: string) => ["-H", `Destination: http://127.0.0.1:${port}${p}`];
    assert.equal((await curl(["-X", "COPY", ...dest("/c"), `${url}a`])).status, 201);
    assert.equal(
      (await curl(["-X", "COPY", ...dest("/c"), "-H", "Overwrite: F", `${url}a`])).status,
      412,
    );
    assert.equal((await curl(["-X", "COPY", ...dest("/c"), `${url}a`])).status, 204);
    assert.equal(
      (await curl(["-X", "COPY", ...dest("/e"), "-H", "Depth: 0", `${url}a`])).status,
      201,
    );
    assert.deepEqual(await files.list("/e"), []);
    assert.equal(
      (await curl(["-X", "COPY", ...dest("/e"), "-H", "Depth: 1", `${url}a`])).status,
      400,
    );
    assert.equal((await curl(["-X", "MOVE", ...dest("/a"), `${url}a`])).status, 403);
    assert.equal((await curl(["-X", "MOVE", ...dest("/a/in"), `${url}a`])).status, 409);
    assert.equal((await curl(["-X", "MOVE", ...dest("/no/where"), `${url}a`])).status, 409);
    assert.equal(
      (await curl(["-X", "MOVE", "-H", "Destination: http://evil.example/x", `${url}a`])).status,
      502,
    );
    assert.equal((await curl(["-X", "MOVE", `${url}a`])).status, 400);
    assert.equal((await curl(["-X", "MOVE", ...dest("/m%C3%A9"), `${url}a`])).status, 201);
    assert.equal((await files.stat("/mé/f")).size, 1);
    assert.equal((await curl(["-X", "DELETE", `${url}m%C3%A9`])).status, 204);
    assert.equal((await curl(["-X", "DELETE", `${url}m%C3%A9`])).status, 404);
    assert.equal((await curl(["-X", "DELETE", url])).status, 403);
    assert.equal((await curl(["-X", "PATCH", url])).status, 405);
    assert.deepEqual((await files.list("/")).map((e) => e.name), ["c", "e"]);
  });
});

Deno.test("WebDAV with curl: LOCK creates, conflicts, refreshes; UNLOCK needs the right token", async () => {
  await withServer(async ({ url, files }) => {
    await files.mkdir("/dir");
    const info =
      `<?xml version="1.0"?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>` +
      `<D:locktype><D:write/></D:locktype><D:owner><D:href>mailto:me@example.org</D:href></D:owner></D:lockinfo>`;
    const made = await curl([
      "-X",
      "LOCK",
      "-H",
      "Timeout: Second-120",
      "--data-binary",
      info,
      `${url}dir/new.txt`,
    ]);
    assert.equal(made.status, 201);
    const token = made.headers["lock-token"];
    assert.match(token, /^<urn:uuid:.+>$/);
    assert.equal((await files.stat("/dir/new.txt")).size, 0);
    const active = xml.parse(made.body).prop.lockdiscovery.activelock;
    assert.equal(active.owner.href, "mailto:me@example.org");
    assert.equal(active.timeout, "Second-120");
    assert.equal(active.depth, "infinity");
    // A deep lock on the parent conflicts; a lock on a sibling does not.
    const parent = await curl(["-X", "LOCK", "--data-binary", info, `${url}dir`]);
    assert.equal(parent.status, 423);
    assert.match(parent.body, /no-conflicting-lock/);
    assert.equal(
      (await curl(["-X", "LOCK", "--data-binary", info, `${url}dir/other`])).status,
      201,
    );
    // Shared locks are not supported.
    const shared = info.replace("<D:exclusive/>", "<D:shared/>");
    assert.equal(
      (await curl(["-X", "LOCK", "--data-binary", shared, `${url}dir/third`])).status,
      422,
    );
    // PROPFIND shows the lock.
    const pf = await curl(["-X", "PROPFIND", "-H", "Depth: 0", `${url}dir/new.txt`]);
    assert.match(pf.body, new RegExp(token.slice(1, -1)));
    // Writing needs the token; a wrong one fails the If header.
    assert.equal(
      (await curl(["-X", "PUT", "--data-binary", "x", `${url}dir/new.txt`])).status,
      423,
    );
    assert.equal(
      (await curl([
        "-X",
        "PUT",
        "-H",
        "If: (<urn:uuid:00000000-0000-0000-0000-000000000000>)",
        "--data-binary",
        "x",
        `${url}dir/new.txt`,
      ])).status,
      412,
    );
    assert.equal(
      (await curl(["-X", "PUT", "-H", `If: (${token})`, "--data-binary", "x", `${url}dir/new.txt`]))
        .status,
      204,
    );
    assert.equal(
      (await curl([
        "-X",
        "PUT",
        "-H",
        "If: (Not <DAV:no-lock>)",
        "--data-binary",
        "y",
        `${url}dir/new.txt`,
      ])).status,
      423,
    );
    // Refresh.
    const refresh = await curl([
      "-X",
      "LOCK",
      "-H",
      `If: (${token})`,
      "-H",
      "Timeout: Second-600",
      `${url}dir/new.txt`,
    ]);
    assert.equal(refresh.status, 200);
    assert.equal(xml.parse(refresh.body).prop.lockdiscovery.activelock.timeout, "Second-600");
    // UNLOCK.
    assert.equal((await curl(["-X", "UNLOCK", `${url}dir/new.txt`])).status, 400);
    assert.equal(
      (await curl(["-X", "UNLOCK", "-H", "Lock-Token: <urn:uuid:nope>", `${url}dir/new.txt`]))
        .status,
      409,
    );
    assert.equal(
      (await curl(["-X", "UNLOCK", "-H", `Lock-Token: ${token}`, `${url}dir/other`])).status,
      409,
    );
    assert.equal(
      (await curl(["-X", "UNLOCK", "-H", `Lock-Token: ${token}`, `${url}dir/new.txt`])).status,
      204,
    );
    assert.equal(
      (await curl(["-X", "PUT", "--data-binary", "z", `${url}dir/new.txt`])).status,
      204,
    );
    assert.equal(new TextDecoder().decode(await files.readAll("/dir/new.txt")), "z");
  });
});

Deno.test("WebDAV refuses other Host names and cross-site requests, changing nothing", async () => {
  await withServer(async ({ url, port, files }) => {
    await files.write("/keep", new TextEncoder().encode("keep"));
    const before = await tree(files);
    const attacks: [string[], number][] = [
      [["-H", "Host: evil.example"], 421],
      [["-H", `Host: evil.example:${port}`], 421],
      [["-H", "Host: 127.0.0.1:1"], 421],
      [["-H", "Origin: http://evil.example"], 403],
      [["-H", `Origin: http://127.0.0.1:${port + 1}`], 403],
      [["-H", "Origin: null"], 403],
      [["-H", "Sec-Fetch-Site: cross-site"], 403],
    ];
    for (const [headers, status] of attacks) {
      for (
        const args of [
          ["-X", "PUT", "--data-binary", "evil", `${url}keep`],
          ["-X", "DELETE", `${url}keep`],
          ["-X", "MKCOL", `${url}evil`],
          ["-X", "PROPFIND", "-H", "Depth: 1", url],
          [`${url}keep`],
        ]
      ) {
        const r = await curl([...headers, ...args]);
        assert.equal(r.status, status, `${headers.join(" ")} ${args.join(" ")}`);
        if (args[0] !== "-I") {
          assert.match(r.body + (r.headers["x-reason"] ?? ""), /answers only|other sites/);
        }
      }
    }
    assert.deepEqual(await tree(files), before);
    // The same origin, localhost and [::1] as names of this host are fine.
    assert.equal(
      (await curl(["-H", `Origin: http://127.0.0.1:${port}`, `${url}keep`])).status,
      200,
    );
    assert.equal((await curl(["-H", `Host: localhost:${port}`, `${url}keep`])).status, 200);
    assert.equal((await curl(["-H", `Host: [::1]:${port}`, `${url}keep`])).status, 200);
  });
});

Deno.test("WebDAV answers hostile inputs with a 4xx and a reason, changing nothing", async () => {
  await withServer(async ({ url, port, files }) => {
    await files.mkdir("/a");
    await files.write("/a/f", new TextEncoder().encode("f"));
    const before = await tree(files);
    const cases: [string[], number][] = [
      [[
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 1",
        "--data-binary",
        "<D:propfind xmlns:D='DAV:'><D:prop>",
        url,
      ], 400],
      [["-X", "PROPFIND", "-H", "Depth: 1", "--data-binary", "<x:propfind/>", url], 400],
      [[
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 1",
        "--data-binary",
        "<propfind xmlns='urn:other'><prop/></propfind>",
        url,
      ], 400],
      [[
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 1",
        "--data-binary",
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "c">]><a>&b;</a>',
        url,
      ], 400],
      [[
        "-X",
        "PROPFIND",
        "-H",
        "Depth: 1",
        "--data-binary",
        "<a>" + "<b>".repeat(200) + "</b>".repeat(200) + "</a>",
        url,
      ], 400],
      [["-X", "PROPFIND", "-H", "Depth: 99999999999999999999", url], 400],
      [["-X", "PROPFIND", "-H", "Depth: 2", url], 400],
      [["-X", "LOCK", "--data-binary", "<lockinfo xmlns='DAV:'><lockscope>", `${url}a/f`], 400],
      [[
        "-X",
        "LOCK",
        "-H",
        "Timeout: forever",
        "--data-binary",
        "<lockinfo xmlns='DAV:'><lockscope><exclusive/></lockscope><locktype><write/></locktype></lockinfo>",
        `${url}a/f`,
      ], 400],
      [["-X", "PROPPATCH", "--data-binary", "not xml", `${url}a/f`], 400],
      [["-X", "PUT", "-H", "If: (<broken", "--data-binary", "x", `${url}a/f`], 400],
      [["-X", "PUT", "-H", "If-Match: nope", "--data-binary", "x", `${url}a/f`], 400],
      [["-X", "PUT", "-H", "Content-Range: bytes 0-0/1", "--data-binary", "x", `${url}a/f`], 400],
      [["-X", "DELETE", "-H", "Depth: 0", `${url}a`], 400],
      [["-X", "COPY", "-H", "Destination: /a/g", "-H", "Overwrite: maybe", `${url}a/f`], 400],
      [["-X", "COPY", "-H", "Destination: /a/%00", `${url}a/f`], 400],
      [["-X", "COPY", "-H", "Destination: /a/../../etc", `${url}a/f`], 400],
      [["-X", "PROPFIND", "-H", "Depth: 0", "--data-binary", "@-", url], 413],
      [["--path-as-is", "-X", "PUT", "--data-binary", "x", `${url}../etc/passwd`], 400],
      [["--path-as-is", "-X", "PUT", "--data-binary", "x", `${url}a/../f`], 400],
      [["--path-as-is", "-X", "MKCOL", `${url}a/./b`], 400],
      [["-X", "PUT", "--data-binary", "x", `${url}a/%2e%2e/g`], 400],
      [["-X", "PUT", "--data-binary", "x", `${url}a/x%00y`], 400],
      [["-X", "PUT", "--data-binary", "x", `${url}a/x%2Fy`], 400],
      [["-X", "PUT", "--data-binary", "x", `${url}a/%ff%fe`], 400],
      [["-X", "PUT", "--data-binary", "x", `${url}a//g`], 400],
      [["-X", "PUT", "--data-binary", "x", `${url}${"n".repeat(256)}`], 400],
      [["-X", "MKCOL", `${url}${"%C3%A9".repeat(128)}`], 400],
      [["-X", "PUT", "--data-binary", "x", `${url}${"d/".repeat(2100)}f`], 400],
    ];
    for (const [args, status] of cases) {
      const r = await curl(
        args,
        args.includes("@-") ? new Uint8Array(1_100_000).fill(32) : undefined,
      );
      assert.equal(
        r.status,
        status,
        `curl ${args.join(" ").slice(0, 200)}: ${r.body.slice(0, 200)}`,
      );
      assert.match(
        r.body,
        /<T:reason>[A-Z][^<]+[^.]<\/T:reason>/,
        `a reason for ${args.join(" ").slice(0, 100)}`,
      );
      assert.ok(r.headers["x-reason"], "the reason in a header too");
    }
    assert.deepEqual(await tree(files), before);
    // Anything under the root is a name in it: no path leaves the store.
    void port;
  });
});

Deno.test("WebDAV refuses every hostile path with a 400 and changes nothing", async () => {
  await withServer(async ({ port, files }) => {
    await files.mkdir("/a");
    await files.write("/a/f", new TextEncoder().encode("f"));
    const before = await tree(files);
    const good = fc.constantFrom("a", "f", "b", "%C3%A9", "x%20y");
    const bad = fc.constantFrom(
      "..",
      ".",
      "%2e%2e",
      "%2E.",
      ".%2e",
      "%2e",
      "%00",
      "a%00",
      "%2f",
      "a%2Fb",
      "%ff",
      "%C3",
      "%e0%80%80",
      "%",
      "%zz",
      "",
      "n".repeat(256),
      "%C3%A9".repeat(128),
    );
    const path = fc.tuple(fc.array(good, { maxLength: 3 }), bad, fc.array(good, { maxLength: 3 }))
      .map(([pre, b, post]) =>
        "/" + [...pre, b, ...post].join("/") + (post.length === 0 && b === "" ? "/x" : "")
      );
    const method = fc.constantFrom(
      "PUT",
      "MKCOL",
      "DELETE",
      "PROPFIND",
      "GET",
      "LOCK",
      "MOVE",
      "COPY",
    );
    await fc.assert(
      fc.asyncProperty(path, method, async (p, m) => {
        const headers: Record<string, string> = {
          depth: "0",
          destination: `http://127.0.0.1:${port}/a/g`,
        };
        const r = await raw(port, m, p, headers, m === "PUT" ? "evil" : "");
        assert.equal(r.status, 400, `${m} ${p}: ${r.body.slice(0, 200)}`);
        assert.match(r.headers["x-reason"] ?? "", /^[A-Z]/, `${m} ${p}: a reason`);
        // The same hostile path as a destination.
        const d = await raw(port, "COPY", "/a/f", { destination: `http://127.0.0.1:${port}${p}` });
        assert.equal(d.status, 400, `COPY to ${p}`);
      }),
      { numRuns: 150 },
    );
    assert.deepEqual(await tree(files), before);
  });
});

Deno.test("createWebDavApp() in process: Host is required and checked", async () => {
  const files = await FileStore.format(new MemoryByteStore(1 << 20, 4096));
  const app = createWebDavApp(files, { port: 8080 });
  assert.equal((await app.request("http://127.0.0.1:8080/", { method: "OPTIONS" })).status, 421);
  const ok = await app.request("http://127.0.0.1:8080/", {
    method: "OPTIONS",
    headers: { host: "127.0.0.1:8080" },
  });
  assert.equal(ok.status, 200);
  const put = await app.request("http://127.0.0.1:8080/f", {
    method: "PUT",
    headers: { host: "localhost:8080" },
    body: "abc",
  });
  assert.equal(put.status, 201);
  const head = await app.request("http://127.0.0.1:8080/f", {
    method: "HEAD",
    headers: { host: "localhost:8080" },
  });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("content-length"), "3");
  assert.equal(await head.text(), "");
  const list = await app.request("http://127.0.0.1:8080/", { headers: { host: "localhost:8080" } });
  assert.match(await list.text(), /<a href="\/f">f<\/a>/);
  assert.throws(() => createWebDavApp(files, { port: 0 }), /port/);
  await files.close();
});

Deno.test("serveWebDav() refuses addresses other than loopback", async () => {
  const files = await FileStore.format(new MemoryByteStore(1 << 20, 4096));
  for (
    const hostname of ["0.0.0.0", "192.168.1.2", "localhost", "::", "example.org", "127.0.0.256"]
  ) {
    assert.throws(() => serveWebDav(files, { hostname }), /loopback only/);
  }
  const s = serveWebDav(files, { hostname: "::1" });
  assert.match(s.url, /^http:\/\/\[::1\]:\d+\/$/);
  const r = await fetch(s.url, { method: "OPTIONS" });
  await r.body?.cancel();
  assert.equal(r.status, 200);
  await s.close();
  await files.close();
});

Deno.test("WebDAV PUT cut off by the client keeps the old file and frees what it wrote", async () => {
  await withServer(async ({ port, files }) => {
    await files.write("/f", bytes(200_000, 1));
    const before = await tree(files);
    const usage = files.usage();
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const head = `PUT /f HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-length: 20000000\r\n\r\n`;
    await conn.write(new TextEncoder().encode(head));
    const part = bytes(6_000_000, 2);
    for (let at = 0; at < part.length;) at += await conn.write(part.subarray(at));
    conn.close();
    for (let i = 0; i < 200 && files.usage().usedBytes !== usage.usedBytes; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.deepEqual(files.usage(), usage);
    assert.deepEqual(await tree(files), before);
    assert.deepEqual(await files.readAll("/f"), bytes(200_000, 1));
  });
});

Deno.test("WebDAV streams a 32 MiB PUT and GET through curl", async () => {
  await withServer(async ({ url, files }) => {
    const dir = await Deno.makeTempDir();
    try {
      const data = bytes(32 << 20, 3);
      await Deno.writeFile(`${dir}/in.bin`, data);
      let t = performance.now();
      assert.equal((await curl(["-T", `${dir}/in.bin`, `${url}big.bin`])).status, 201);
      const putMs = performance.now() - t;
      const sha = (await files.stat("/big.bin")).sha256;
      t = performance.now();
      const got = await curl(["-o", `${dir}/out.bin`, `${url}big.bin`]);
      const getMs = performance.now() - t;
      assert.equal(got.status, 200);
      assert.equal(got.headers["content-security-policy"], "sandbox");
      const out = await Deno.readFile(`${dir}/out.bin`);
      assert.equal(out.length, data.length);
      assert.ok(out.every((b, i) => b === data[i]), "the same bytes come back");
      const mbs = (ms: number) => ((32 << 20) / 1e6 / (ms / 1000)).toFixed(0);
      console.log(
        `32 MiB over WebDAV: PUT ${putMs.toFixed(0)} ms (${mbs(putMs)} MB/s), GET ${
          getMs.toFixed(0)
        } ms (${mbs(getMs)} MB/s), sha ${sha?.slice(0, 8)}`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
});

Deno.test("WebDAV locks protect a collection's membership and the trees holding them", async () => {
  const files = await FileStore.format(new MemoryByteStore(4 << 20, 4096));
  const port = 8080, base = `http://127.0.0.1:${port}`;
  const app = createWebDavApp(files, { port });
  const req = async (
    method: string,
    path: string,
    headers: Record<string, string> = {},
    body?: string,
  ) => {
    const r = await app.request(base + path, {
      method,
      headers: { host: `127.0.0.1:${port}`, ...headers },
      body,
    });
    const text = await r.text();
    return { status: r.status, headers: r.headers, text };
  };
  const lockBody = `<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>` +
    `<D:locktype><D:write/></D:locktype></D:lockinfo>`;
  await files.mkdir("/dir");
  await files.mkdir("/dir/sub");
  await files.write("/dir/sub/f", new TextEncoder().encode("f"));
  // A depth-0 lock on /dir: its members may change only with the token.
  const shallow = await req("LOCK", "/dir", { depth: "0" }, lockBody);
  assert.equal(shallow.status, 200);
  const t0 = shallow.headers.get("lock-token")!;
  assert.equal((await req("PUT", "/dir/new", {}, "x")).status, 423);
  assert.equal((await req("MKCOL", "/dir/newdir")).status, 423);
  assert.equal(
    (await req("PUT", "/dir/sub/g", {}, "x")).status,
    201,
    "a depth-0 lock does not reach grandchildren",
  );
  assert.equal((await req("PUT", "/dir/new", { if: `(${t0})` }, "x")).status, 201);
  // A tagged list names the resource the token is for.
  assert.equal((await req("PUT", "/dir/new2", { if: `<${base}/dir> (${t0})` }, "x")).status, 201);
  assert.equal(
    (await req("PUT", "/dir/new3", { if: `<${base}/elsewhere> (${t0})` }, "x")).status,
    412,
  );
  assert.equal((await req("UNLOCK", "/dir", { "lock-token": t0 })).status, 204);
  // A lock deep inside a tree: deleting or moving the tree needs its token.
  const inner = await req("LOCK", "/dir/sub/f", {}, lockBody);
  const t1 = inner.headers.get("lock-token")!;
  const before = await tree(files);
  assert.equal((await req("DELETE", "/dir")).status, 423);
  assert.equal((await req("MOVE", "/dir", { destination: `${base}/moved` })).status, 423);
  assert.equal(
    (await req("COPY", "/dir", { destination: `${base}/copied` })).status,
    201,
    "copying reads only",
  );
  assert.equal(
    (await req("COPY", "/copied", { destination: `${base}/dir` })).status,
    423,
    "overwriting does not",
  );
  assert.deepEqual((await tree(files)).filter((l) => !l.startsWith("/copied")), before);
  const moved = await req("MOVE", "/dir", {
    destination: `${base}/moved`,
    if: `<${base}/dir/sub/f> (${t1})`,
  });
  assert.equal(moved.status, 201);
  // Locks do not move with their resource.
  assert.equal((await req("PUT", "/moved/sub/f", {}, "y")).status, 204);
  assert.equal(
    (await req("PROPFIND", "/moved/sub/f", { depth: "0" })).text.includes("activelock"),
    false,
  );
  // A depth-infinity lock on a collection covers what is created inside it later.
  const deep = await req("LOCK", "/moved", {}, lockBody);
  const t2 = deep.headers.get("lock-token")!;
  assert.equal((await req("PUT", "/moved/sub/new", {}, "z")).status, 423);
  const pf = await req("PROPFIND", "/moved/sub/f", { depth: "0" });
  assert.match(pf.text, /<D:lockroot><D:href>\/moved<\/D:href><\/D:lockroot>/);
  assert.equal((await req("PUT", "/moved/sub/new", { if: `(${t2})` }, "z")).status, 201);
  assert.equal(
    (await req("UNLOCK", "/moved/sub/new", { "lock-token": t2 })).status,
    204,
    "unlock from inside the lock",
  );
  await files.close();
});
