// For tests: runs tuf-js, a TUF client we did not write, in a subprocess (so that it trusts the
// test's CA through DENO_CERT) against a repository served over HTTPS.

const root = new URL("..", import.meta.url).pathname;

/** What tuf-js did: the downloaded target's length, or its error. */
export interface TufJsResult {
  ok: boolean;
  length?: number;
  error?: string;
}

/**
 * Has tuf-js refresh metadata from `base` and download `target`.
 * @param base The metadata URL (`…/tuf`).
 * @param rootFile The root to pin (used only when `work` has no trusted metadata yet).
 * @param target The target path.
 * @param work tuf-js's directory; kept between calls, as its trusted state.
 * @param caFile The PEM CA that signed the server's certificate.
 */
export async function runTufJs(
  base: string,
  rootFile: string,
  target: string,
  work: string,
  caFile: string,
): Promise<TufJsResult> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--config",
      `${root}deno.json`,
      "-A",
      `${root}library/_tuf_client_probe.ts`,
      base,
      rootFile,
      target,
      work,
    ],
    env: { DENO_CERT: caFile, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const line = new TextDecoder().decode(out.stdout).trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line) as TufJsResult;
  } catch {
    return {
      ok: false,
      error: `tuf-js printed no result: ${new TextDecoder().decode(out.stderr).slice(0, 500)}`,
    };
  }
}
