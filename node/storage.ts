/**
 * A node's storage services as an agent runs them (`deno task agent`, and each node of the local
 * cloud): the volumes it lends, and the Cloud File System it keeps with its UI and WebDAV endpoint,
 * all on the userspace drivers, all stopping with the node's RMS.
 *
 * @module
 */

import type { Logger, NodeIdentity } from "../protocol/mod.ts";
// The file system, its UI and WebDAV are loaded only by a node that keeps one (`startFileSystem`):
// an agent that only lends volumes does not carry their code (it runs on 100 MB).
import type { CfsUiServer, CloudFileSystem, WebDavServer } from "./cfs/mod.ts";
import type { Rms } from "./rms/mod.ts";
import { loadOrCreate, saveJson } from "./state.ts";
import { userspaceAttacher, UserspaceVolumes, VolumeProvider } from "./vp/mod.ts";

/** Settings of {@linkcode startVolumes}. */
export interface VolumesOptions {
  rms: Rms;
  identity: NodeIdentity;
  /** The node's state directory: volumes in `volumes/`, their list and the tunnel port beside. */
  dir: string;
  /** Bytes of disk lent for volumes. */
  capacityBytes: number;
  /** The address tunnels listen on (default 127.0.0.1). */
  hostname?: string;
  /** A fixed tunnel port; without it, the one kept from the first start (any free one then). */
  port?: number;
  log: Logger;
}

/**
 * Starts a node's Volume Provider: its store, its tunnels on a port kept across restarts (so that
 * consumers find their volumes again), and its answers to volume messages.
 * @param o Settings.
 */
export async function startVolumes(o: VolumesOptions): Promise<VolumeProvider> {
  const kept = await loadOrCreate(`${o.dir}/tunnel.json`, () => ({ port: o.port ?? 0 }));
  const start = (port: number) =>
    UserspaceVolumes.start({
      dir: `${o.dir}/volumes`,
      capacityBytes: o.capacityBytes,
      hostname: o.hostname,
      port,
      log: o.log.child("volumes"),
    });
  // A kept port taken meanwhile gives way to another, kept from now on; a fixed one does not.
  const backend = await start(o.port ?? kept.port).catch((err) => {
    if (o.port !== undefined) throw err;
    return start(0);
  });
  if (backend.port !== kept.port) await saveJson(`${o.dir}/tunnel.json`, { port: backend.port });
  const vp = await VolumeProvider.start({
    identity: o.identity,
    broadcaster: o.rms.broadcaster,
    ledger: o.rms.ledger,
    backend,
    statePath: `${o.dir}/volumes.json`,
    log: o.log.child("vp"),
  });
  o.rms.onStop(async () => {
    await vp.stop();
    await backend.close();
  });
  return vp;
}

/** Settings of {@linkcode startFileSystem}. */
export interface FileSystemOptions {
  rms: Rms;
  identity: NodeIdentity;
  /** Where the CFS keeps its state. */
  statePath: string;
  /** How long a silent volume is waited for before it is replaced, ms. */
  graceMs: number;
  /** Ports of the UI and the WebDAV endpoint on 127.0.0.1 (0: any free one). */
  uiPort: number;
  webdavPort: number;
  /** Give up building the pool after this long, ms (default: never, while the node runs). */
  deadlineMs?: number;
  /** Time between attempts while too few providers answer, ms. */
  retryMs: number;
  log: Logger;
}

/** A running Cloud File System and its two loopback endpoints. */
export interface RunningFileSystem {
  cfs: CloudFileSystem;
  ui: CfsUiServer;
  webdav: WebDavServer;
}

/**
 * Starts a node's Cloud File System once enough providers answer (retried until then), and serves
 * its UI and its files on loopback.
 * @param o Settings.
 * @returns It, or `undefined` when the node stopped first.
 * @throws {TrueCloudError} The last failure when `deadlineMs` passes.
 */
export async function startFileSystem(
  o: FileSystemOptions,
): Promise<RunningFileSystem | undefined> {
  const { CloudFileSystem, serveCfsUi, serveWebDav } = await import("./cfs/mod.ts");
  const deadline = Date.now() + (o.deadlineMs ?? Infinity);
  let cfs: CloudFileSystem | undefined;
  for (let attempt = 1; !cfs; attempt++) {
    if (o.rms.stopped) return undefined;
    try {
      cfs = await CloudFileSystem.start({
        identity: o.identity,
        broadcaster: o.rms.broadcaster,
        ledger: o.rms.ledger,
        entitlementBytes: () => o.rms.entitlement().entitlement.storageBytes,
        attacher: userspaceAttacher(),
        statePath: o.statePath,
        graceMs: o.graceMs,
        log: o.log.child("cfs"),
      });
    } catch (err) {
      if (Date.now() > deadline) throw err;
      o.log.warn("The cloud file system waits for providers", { attempt, err: String(err) });
      await new Promise((r) => setTimeout(r, o.retryMs));
    }
  }
  const running = cfs;
  const ui = serveCfsUi({
    status: () => running.status(),
    actions: { scrub: () => running.scrub() },
    port: o.uiPort,
    log: o.log.child("cfs-ui"),
  });
  const webdav = serveWebDav(running.files, {
    hostname: "127.0.0.1",
    port: o.webdavPort,
    log: o.log.child("webdav"),
  });
  o.rms.onStop(async () => {
    await ui.close();
    await webdav.close();
    await running.stop();
  });
  return { cfs: running, ui, webdav };
}
