// Run as a subprocess by the tests: tuf-js, a TUF client we did not write, refreshes metadata from
// a running server and downloads one target. Prints one JSON line: the target's bytes' length, or
// the error. Usage: deno run … _tuf_client_probe.ts BASE_URL ROOT_JSON TARGET_PATH WORK_DIR
import { Updater } from "tuf-js";

const [base, rootFile, target, work] = Deno.args;
try {
  await Deno.mkdir(`${work}/metadata`, { recursive: true });
  await Deno.mkdir(`${work}/targets`, { recursive: true });
  // A work directory used before keeps its trusted metadata (that is what rollback checks need).
  try {
    await Deno.stat(`${work}/metadata/root.json`);
  } catch {
    await Deno.copyFile(rootFile, `${work}/metadata/root.json`);
  }
  const updater = new Updater({
    metadataBaseUrl: base,
    targetBaseUrl: `${base}/targets`,
    metadataDir: `${work}/metadata`,
    targetDir: `${work}/targets`,
  });
  await updater.refresh();
  const info = await updater.getTargetInfo(target);
  if (!info) throw new Error(`no target ${target}`);
  const path = await updater.downloadTarget(info, `${work}/targets/download`);
  console.log(JSON.stringify({ ok: true, length: (await Deno.stat(path)).size }));
} catch (err) {
  console.log(
    JSON.stringify({ ok: false, error: `${(err as Error).name}: ${(err as Error).message}` }),
  );
}
