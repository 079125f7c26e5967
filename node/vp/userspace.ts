/**
 * The userspace volume driver as the Volume Provider and the Cloud File System use it: volumes in
 * a {@linkcode VolumeStore}, served by a {@linkcode BlockServer} through a {@linkcode TunnelServer}
 * on the provider; attached as {@linkcode BlockClient}s on the consumer.
 *
 * @module
 */

import type { Logger } from "../../protocol/mod.ts";
import type { AttachedVolume, TunnelKeys, VolumeAttacher } from "../cfs/cfs.ts";
import type { VolumeData } from "../rms/mod.ts";
import { BlockClient, type BlockClientOptions } from "./block_client.ts";
import { BlockServer } from "./block_server.ts";
import type { LentVolume, VolumeBackend } from "./provider.ts";
import { VolumeStore } from "./store.ts";
import {
  decodeTunnelKey,
  formatEndpoint,
  generateTunnelKeys,
  tunnelKeysFromText,
  tunnelKeysToText,
  TunnelServer,
} from "./tunnel.ts";

/** Settings of {@linkcode UserspaceVolumes.start}. */
export interface UserspaceVolumesOptions {
  /** Where the volumes live. */
  dir: string;
  /** Bytes of disk lent for volumes. */
  capacityBytes: number;
  /** The address to listen on for tunnels (default 127.0.0.1). */
  hostname?: string;
  /** The port (default: any free one). */
  port?: number;
  log?: Logger;
}

/** A provider's volumes, on the userspace driver. */
export class UserspaceVolumes implements VolumeBackend {
  readonly #store: VolumeStore;
  readonly #tunnels: TunnelServer;
  readonly #server: BlockServer;
  readonly endpoint: string;

  private constructor(store: VolumeStore, tunnels: TunnelServer, endpoint: string, log?: Logger) {
    this.#store = store;
    this.#tunnels = tunnels;
    this.#server = new BlockServer(store, tunnels, { log });
    this.endpoint = endpoint;
  }

  /**
   * Opens the store and listens for tunnels.
   * @param o Settings.
   */
  static async start(o: UserspaceVolumesOptions): Promise<UserspaceVolumes> {
    const store = await VolumeStore.open({ dir: o.dir, capacityBytes: o.capacityBytes });
    const tunnels = new TunnelServer({ log: o.log });
    try {
      const at = await tunnels.listen({ hostname: o.hostname ?? "127.0.0.1", port: o.port ?? 0 });
      return new UserspaceVolumes(store, tunnels, formatEndpoint(at), o.log);
    } catch (err) {
      await tunnels.close().catch(() => {});
      await store.close().catch(() => {});
      throw err;
    }
  }

  /** The port tunnels are taken on. */
  get port(): number {
    return Number(this.endpoint.slice(this.endpoint.lastIndexOf(":") + 1));
  }

  get capacityBytes(): number {
    return this.#store.usedBytes + this.#store.freeBytes;
  }

  get usedBytes(): number {
    return this.#store.usedBytes;
  }

  async create(id: string, blockSize: number, blockCount: number): Promise<void> {
    if (this.#store.has(id)) return;
    await this.#store.create(id, blockSize, blockCount);
  }

  async wipe(id: string): Promise<void> {
    if (this.#store.has(id)) await this.#server.wipe(id);
  }

  async export(v: LentVolume): Promise<void> {
    await this.#server.export(v.id, {
      serverStatic: tunnelKeysFromText(v.keys),
      clientPublic: decodeTunnelKey(v.consumerKey),
    });
  }

  keys(): Promise<{ publicKey: string; privateKey: string }> {
    return Promise.resolve(tunnelKeysToText(generateTunnelKeys()));
  }

  /** Stops serving (volumes stay on disk). */
  async close(): Promise<void> {
    await this.#server.close();
    await this.#tunnels.close();
    await this.#store.close();
  }
}

/**
 * The consumer side: attaches exported volumes as {@linkcode BlockClient}s.
 * @param options Deadlines and heartbeats of every client.
 */
export function userspaceAttacher(
  options: Omit<BlockClientOptions, "onDead"> = {},
): VolumeAttacher {
  return {
    keys: () => Promise.resolve(tunnelKeysToText(generateTunnelKeys()) as TunnelKeys),
    async attach(v: VolumeData, keys: TunnelKeys, onDead): Promise<AttachedVolume> {
      return await BlockClient.connect(v.endpoint, {
        volumeId: v.volume,
        clientStatic: tunnelKeysFromText(keys),
        serverPublic: decodeTunnelKey(v.tunnelKey),
      }, { ...options, onDead });
    },
  };
}
