/**
 * Serving files from disk with HTTP semantics: strong ETags, `If-None-Match`, single `Range`
 * requests (206, 416), `HEAD`. Bodies are streamed from the file, never read whole.
 *
 * @module
 */

import { type ByteRange, etagMatches, NotFoundError, parseRanges } from "../protocol/mod.ts";

/**
 * Parses a `Range` header for one byte range (RFC 9110 §14.2); several ranges are ignored here
 * (the whole file is sent, as RFC 9110 allows).
 * @param header The header value.
 * @param size The representation's size.
 * @returns The range, `"unsatisfiable"`, or `undefined` when the header is to be ignored.
 */
export function parseRange(header: string, size: number): ByteRange | "unsatisfiable" | undefined {
  if (header.includes(",")) return undefined;
  const r = parseRanges(header, size);
  return r === undefined || r === "unsatisfiable" ? r : r[0];
}

/**
 * Answers a request with a file.
 * @param req The request (method, `Range`, `If-None-Match`).
 * @param path The file.
 * @param type Its content type.
 * @returns The response.
 * @throws {NotFoundError} When the file does not exist.
 */
export async function serveFile(req: Request, path: string, type: string): Promise<Response> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch {
    throw new NotFoundError("No such file");
  }
  if (!info.isFile) throw new NotFoundError("No such file");
  const size = info.size;
  const etag = `"${size.toString(16)}-${(info.mtime?.getTime() ?? 0).toString(16)}-${
    (info.ino ?? 0).toString(16)
  }"`;
  const headers: Record<string, string> = {
    "content-type": type,
    etag,
    "accept-ranges": "bytes",
    "cache-control": "no-cache",
  };
  if (etagMatches(req.headers.get("if-none-match"), etag)) {
    return new Response(null, { status: 304, headers });
  }
  const rangeHeader = req.headers.get("range");
  const range = rangeHeader ? parseRange(rangeHeader, size) : undefined;
  if (range === "unsatisfiable") {
    return new Response(null, {
      status: 416,
      headers: { ...headers, "content-range": `bytes */${size}` },
    });
  }
  const start = range?.start ?? 0;
  const length = range ? range.end - range.start + 1 : size;
  if (range) headers["content-range"] = `bytes ${range.start}-${range.end}/${size}`;
  headers["content-length"] = String(length);
  const status = range ? 206 : 200;
  if (req.method === "HEAD") return new Response(null, { status, headers });
  const file = await Deno.open(path);
  if (start) await file.seek(start, Deno.SeekMode.Start);
  let left = length;
  const body = file.readable.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        if (left <= 0) return;
        const part = chunk.length > left ? chunk.subarray(0, left) : chunk;
        left -= part.length;
        ctl.enqueue(part);
        if (left <= 0) ctl.terminate();
      },
    }),
  );
  return new Response(body, { status, headers });
}
