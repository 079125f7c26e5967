/**
 * The release repository over HTTP, read-only (`docs/protocol/releases.md`):
 *
 * - for TUF clients, mounted at `/tuf`: `{version}.root.json`, `timestamp.json`, `snapshot.json`,
 *   `targets.json` and `targets/{path}`;
 * - for people, mounted at `/installers`: an HTML and a JSON listing, each installer, its
 *   `.minisig` and `.minisig2` (countersignature), and the minisign public keys at `keys/`.
 *
 * Downloads carry strong ETags and answer byte ranges.
 *
 * @module
 */

import { Hono } from "hono";
import { escapeHtml, NotFoundError, ValidationError } from "../protocol/mod.ts";
import { serveFile } from "./files.ts";
import { safeTargetPath } from "./repository.ts";

const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function targetPathFrom(requestPath: string, marker: string): string {
  const path = decodeURIComponent(requestPath.slice(requestPath.indexOf(marker) + marker.length));
  try {
    return safeTargetPath(path);
  } catch (err) {
    if (err instanceof ValidationError) throw new NotFoundError("No such file");
    throw err;
  }
}

/**
 * Builds the TUF sub-app.
 * @param dir The repository directory.
 * @returns The Hono app, to mount at `/tuf`.
 */
export function createTufApp(dir: string): Hono {
  const app = new Hono();
  app.get(
    "/:file{[0-9]{1,9}\\.root\\.json}",
    (c) => serveFile(c.req.raw, `${dir}/${c.req.param("file")}`, "application/json"),
  );
  for (const name of ["timestamp.json", "snapshot.json", "targets.json"]) {
    app.get(`/${name}`, (c) => serveFile(c.req.raw, `${dir}/${name}`, "application/json"));
  }
  app.get("/targets/*", (c) => {
    const path = targetPathFrom(c.req.path, "/targets/");
    return serveFile(c.req.raw, `${dir}/targets/${path}`, "application/octet-stream");
  });
  return app;
}

/** One installer in the listing. */
export interface InstallerEntry {
  /** File name. */
  name: string;
  /** Version, from the target's custom fields. */
  version?: string;
  /** Length in bytes. */
  length: number;
  /** SHA-256, hex. */
  sha256: string;
  /** Whether it is signed with development keys. */
  development: boolean;
  /** Download path, and those of its signatures. */
  url: string;
  /** The minisign signature. */
  minisig: string;
  /** The countersignature. */
  minisig2: string;
}

async function listInstallers(dir: string, base: string): Promise<InstallerEntry[]> {
  let targets: Record<string, unknown>;
  try {
    targets = JSON.parse(await Deno.readTextFile(`${dir}/targets.json`));
  } catch {
    return [];
  }
  const signed = (targets.signed ?? {}) as {
    targets?: Record<
      string,
      { length: number; hashes: { sha256: string }; custom?: { version?: string } }
    >;
    "x-truecloud-development"?: boolean;
  };
  const out: InstallerEntry[] = [];
  for (const [path, t] of Object.entries(signed.targets ?? {})) {
    if (!path.startsWith("installers/")) continue;
    const name = path.slice("installers/".length);
    if (!FILE_NAME.test(name)) continue;
    out.push({
      name,
      version: t.custom?.version,
      length: t.length,
      sha256: t.hashes.sha256,
      development: signed["x-truecloud-development"] === true,
      url: `${base}/${name}`,
      minisig: `${base}/${name}.minisig`,
      minisig2: `${base}/${name}.minisig2`,
    });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

async function listKeys(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(`${dir}/minisign/keys`)) {
      if (e.isFile && FILE_NAME.test(e.name) && e.name.endsWith(".pub")) names.push(e.name);
    }
  } catch {
    // no keys published yet
  }
  return names.sort();
}

/**
 * Builds the installers sub-app.
 * @param dir The repository directory.
 * @param base The path it is mounted at, for links (default `/installers`).
 * @returns The Hono app.
 */
export function createInstallersApp(dir: string, base = "/installers"): Hono {
  const app = new Hono();
  const wantsJson = (accept: string | undefined, format: string | undefined) =>
    format === "json" || (accept ?? "").includes("application/json");

  app.get("/", async (c) => {
    const list = await listInstallers(dir, base);
    const keys = await listKeys(dir);
    if (wantsJson(c.req.header("accept"), c.req.query("format"))) {
      return c.json({ installers: list, keys: keys.map((k) => `${base}/keys/${k}`) });
    }
    const rows = list.map((i) =>
      `<tr><td><a href="${escapeHtml(i.url)}">${escapeHtml(i.name)}</a>${
        i.development ? " <strong>(development keys)</strong>" : ""
      }</td>` +
      `<td>${escapeHtml(i.version ?? "")}</td><td>${i.length}</td><td><code>${
        escapeHtml(i.sha256)
      }</code></td>` +
      `<td><a href="${escapeHtml(i.minisig)}">minisig</a> <a href="${
        escapeHtml(i.minisig2)
      }">countersignature</a></td></tr>`
    ).join("\n");
    const keyLinks = keys.map((k) =>
      `<li><a href="${escapeHtml(`${base}/keys/${k}`)}">${escapeHtml(k)}</a></li>`
    )
      .join("");
    return c.html(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>True Cloud installers</title></head>
<body><h1>True Cloud installers</h1>
<p>Verify a download with <code>minisign -V -p release-1.pub -m FILE</code> and its countersignature with
<code>minisign -V -p release-2.pub -m FILE -x FILE.minisig2</code>.</p>
<table><thead><tr><th>file</th><th>version</th><th>bytes</th><th>SHA-256</th><th>signatures</th></tr></thead>
<tbody>
${rows}
</tbody></table>
<h2>Public keys</h2><ul>${keyLinks}</ul>
</body></html>`);
  });

  app.get("/keys", async (c) => {
    const keys = await listKeys(dir);
    return c.json({ keys: keys.map((k) => `${base}/keys/${k}`) });
  });
  app.get("/keys/:name", (c) => {
    const name = c.req.param("name");
    if (!FILE_NAME.test(name) || !name.endsWith(".pub")) throw new NotFoundError("No such key");
    return serveFile(c.req.raw, `${dir}/minisign/keys/${name}`, "text/plain; charset=utf-8");
  });
  app.get("/:name", (c) => {
    const name = c.req.param("name");
    if (!FILE_NAME.test(name)) throw new NotFoundError("No such installer");
    const sig = /\.minisig2?$/.exec(name);
    if (sig) return serveFile(c.req.raw, `${dir}/minisign/${name}`, "text/plain; charset=utf-8");
    return serveFile(c.req.raw, `${dir}/targets/installers/${name}`, "application/octet-stream");
  });
  return app;
}
