/**
 * `deno task fetch-installer`: downloads an installer through TUF, with a progress bar, and
 * refuses anything that does not verify. The only place that reads flags and environment for
 * this binary.
 *
 *   deno task fetch-installer NAME [--gateway URL] [--root FILE] [--cacert FILE] [--out FILE]
 *   deno task fetch-installer --list [--gateway URL] [--root FILE] [--cacert FILE]
 *
 * @module
 */

import { parseArgs } from "node:util";
import cliProgress from "cli-progress";
import { TrueCloudError } from "../protocol/mod.ts";
import { TufClient } from "./client.ts";

const USAGE = `Usage: deno task fetch-installer NAME [flags]
       deno task fetch-installer --list [flags]

Downloads installers/NAME through TUF from the gateway and writes it only once it verified.

Flags:
  --gateway URL   the gateway (default https://127.0.0.1:8443, or TRUECLOUD_GATEWAY_URL)
  --root FILE     the root metadata to pin on first use, such as .truecloud/repository/1.root.json
  --trust-dir DIR where trusted metadata is kept (default TRUECLOUD_HOME/tuf-client, ./.truecloud/tuf-client)
  --cacert FILE   a PEM CA to trust for the gateway (the local cloud's self-signed certificate)
  --out FILE      where to write it (default: NAME in this directory)
  --list          list the installers that the trusted targets name
  --quiet         no progress bar`;

async function main(args: string[]): Promise<number> {
  let values, positionals;
  try {
    ({ values, positionals } = parseArgs({
      args,
      allowPositionals: true,
      options: {
        gateway: { type: "string" },
        root: { type: "string" },
        "trust-dir": { type: "string" },
        cacert: { type: "string" },
        out: { type: "string" },
        list: { type: "boolean" },
        quiet: { type: "boolean" },
        help: { type: "boolean" },
      },
    }));
  } catch (err) {
    console.error(`fetch-installer: ${(err as Error).message.split("\n")[0]}`);
    return 2;
  }
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (!values.list && positionals.length !== 1) {
    console.error("fetch-installer: give one installer NAME, or --list (see --help)");
    return 2;
  }
  const gateway =
    (values.gateway ?? Deno.env.get("TRUECLOUD_GATEWAY_URL") ?? "https://127.0.0.1:8443")
      .replace(/\/+$/, "");
  if (!/^https:\/\/[^\s/]+$/.test(gateway)) {
    console.error(`fetch-installer: --gateway must be an https:// origin, got "${gateway}"`);
    return 2;
  }
  // deno task runs in the project's directory; relative paths mean the caller's directory.
  const cwd = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const abs = (p: string) => (p.startsWith("/") ? p : `${cwd}/${p}`);
  const trustDir = abs(
    values["trust-dir"] ?? `${Deno.env.get("TRUECLOUD_HOME") ?? "./.truecloud"}/tuf-client`,
  );
  let client: Deno.HttpClient | undefined;
  try {
    await Deno.mkdir(trustDir, { recursive: true, mode: 0o700 });
    try {
      await Deno.stat(`${trustDir}/root.json`);
    } catch {
      if (!values.root) {
        console.error(`fetch-installer: no trusted root in ${trustDir}; pin one with --root FILE`);
        return 2;
      }
      await Deno.copyFile(abs(values.root), `${trustDir}/root.json`);
    }
    if (values.cacert) {
      client = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(abs(values.cacert))] });
    }
    const c = client;
    const tuf = new TufClient({
      metadataUrl: `${gateway}/tuf`,
      dir: trustDir,
      fetch: c ? (i, init) => fetch(i, { ...init, client: c }) : fetch,
    });
    const targets = await tuf.update();
    if (values.list) {
      for (const [path, t] of Object.entries(targets.signed.targets)) {
        if (path.startsWith("installers/")) {
          const version =
            (t.unrecognizedFields?.custom as { version?: string } | undefined)?.version ?? "";
          console.log(
            `${path.slice("installers/".length)}\t${version}\t${t.length}\t${t.hashes.sha256}`,
          );
        }
      }
      return 0;
    }
    const name = positionals[0];
    const out = abs(values.out ?? name.split("/").pop()!);
    const bar = values.quiet || !Deno.stderr.isTerminal() ? undefined : new cliProgress.SingleBar({
      format: `${name} [{bar}] {percentage}% {value}/{total} bytes, {eta}s left`,
      stream: process.stderr,
    }, cliProgress.Presets.shades_classic);
    let started = false;
    const result = await tuf.download(`installers/${name}`, out, (done, total) => {
      if (!bar) return;
      if (!started) {
        bar.start(total, 0);
        started = true;
      }
      bar.update(done);
    });
    bar?.stop();
    console.log(
      `${out}: verified through TUF (root v${tuf.rootVersion}), ${result.length} bytes, sha256 ${result.sha256}`,
    );
    return 0;
  } catch (err) {
    const code = err instanceof TrueCloudError ? ` (${err.code})` : "";
    console.error(`fetch-installer: refused${code}: ${(err as Error).message.split("\n")[0]}`);
    return 1;
  } finally {
    client?.close();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
