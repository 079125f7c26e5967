/**
 * The release repository over HTTP, read-only (`docs/protocol/releases.md`): `GET
 * /tuf/{version}.root.json`, `/tuf/timestamp.json`, `/tuf/snapshot.json`, `/tuf/targets.json` and
 * `/tuf/targets/{path}`, with strong ETags. Mounted by the gateway at `/tuf`.
 *
 * @module
 */

import { Hono } from "hono";
import { NotFoundError, ValidationError } from "../protocol/mod.ts";
import { safeTargetPath } from "./repository.ts";

async function fileResponse(
  path: string,
  type: string,
  ifNoneMatch: string | undefined,
): Promise<Response> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    throw new NotFoundError("No such file in the repository");
  }
  if (!info.isFile) throw new NotFoundError("No such file in the repository");
  const etag = `"${info.size.toString(16)}-${(info.mtime?.getTime() ?? 0).toString(16)}-${
    info.ino ?? 0
  }"`;
  const headers = { "content-type": type, etag, "cache-control": "no-cache" };
  if (ifNoneMatch && ifNoneMatch.split(/\s*,\s*/).includes(etag)) {
    return new Response(null, { status: 304, headers });
  }
  const f = await Deno.open(path);
  return new Response(f.readable, { headers: { ...headers, "content-length": String(info.size) } });
}

/**
 * Builds the repository sub-app.
 * @param dir The repository directory.
 * @returns The Hono app, to mount at `/tuf`.
 */
export function createTufApp(dir: string): Hono {
  const app = new Hono();
  app.get(
    "/:file{[0-9]{1,9}\\.root\\.json}",
    (c) =>
      fileResponse(
        `${dir}/${c.req.param("file")}`,
        "application/json",
        c.req.header("if-none-match"),
      ),
  );
  for (const name of ["timestamp.json", "snapshot.json", "targets.json"]) {
    app.get(
      `/${name}`,
      (c) => fileResponse(`${dir}/${name}`, "application/json", c.req.header("if-none-match")),
    );
  }
  app.get("/targets/*", (c) => {
    const path = decodeURIComponent(
      c.req.path.slice(c.req.path.indexOf("/targets/") + "/targets/".length),
    );
    try {
      safeTargetPath(path);
    } catch (err) {
      if (err instanceof ValidationError) throw new NotFoundError("No such target");
      throw err;
    }
    return fileResponse(
      `${dir}/targets/${path}`,
      "application/octet-stream",
      c.req.header("if-none-match"),
    );
  });
  return app;
}
