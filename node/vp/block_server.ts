/**
 * The provider's side of the block protocol (`docs/protocol/blocks.md`, "The block protocol"): it
 * serves the volumes of a {@linkcode VolumeStore} through a {@linkcode TunnelServer}, each volume
 * through its own tunnel, which reaches that volume only.
 *
 * @module
 */

import { discardLogger, type Logger } from "../../protocol/mod.ts";
import { DeviceError, TAG_BYTES } from "../drivers/mod.ts";
import {
  crcOf,
  decodeRequest,
  encodeInfo,
  encodeReason,
  encodeResponse,
  MAX_REQUEST_BYTES,
  Op,
  Status,
  type StatusCode,
} from "./_wire.ts";
import type { Volume, VolumeStore } from "./store.ts";
import type { Tunnel, TunnelServer, TunnelServerParams } from "./tunnel.ts";

/** Settings of a {@linkcode BlockServer}. */
export interface BlockServerOptions {
  /** Where the server logs (default: nowhere). */
  log?: Logger;
  /** Requests of one tunnel handled at once; the next frame is read when one finishes (default 32). */
  maxInFlight?: number;
}

function statusOf(err: unknown): StatusCode {
  if (!(err instanceof DeviceError)) return Status.failed;
  switch (err.code) {
    case "device_range":
      return Status.range;
    case "device_unavailable":
      return Status.unavailable;
    default:
      return (err.cause as { code?: string } | undefined)?.code === "checksum"
        ? Status.checksum
        : Status.failed;
  }
}

/**
 * Serves volumes over their tunnels.
 *
 * @example
 * ```ts ignore
 * const server = new BlockServer(store, tunnels);
 * await server.export(volumeId, { serverStatic, clientPublic });
 * // … the consumer attaches with BlockClient.connect(endpoint, { volumeId, clientStatic, serverPublic })
 * await server.wipe(volumeId); // when the lease ends
 * ```
 */
export class BlockServer {
  readonly #store: VolumeStore;
  readonly #tunnels: TunnelServer;
  readonly #log: Logger;
  readonly #maxInFlight: number;
  readonly #exported = new Set<string>();

  /**
   * Makes a server of the store's volumes; it serves those exported.
   * @param store Where the volumes are.
   * @param tunnels The listener their tunnels arrive on.
   * @param options Logger and limits.
   */
  constructor(store: VolumeStore, tunnels: TunnelServer, options: BlockServerOptions = {}) {
    this.#store = store;
    this.#tunnels = tunnels;
    this.#log = options.log ?? discardLogger;
    this.#maxInFlight = options.maxInFlight ?? 32;
  }

  /** The volumes exported. */
  exported(): string[] {
    return [...this.#exported].sort();
  }

  /**
   * Lets the consumer holding the private key of `params.clientPublic` reach a volume. Exporting
   * again with another consumer key closes the tunnels opened with the old one.
   * @param volumeId A volume of the store.
   * @param params The provider's key pair for the volume and the consumer's public key.
   * @throws {NotFoundError} `unknown_volume` when the store does not hold it.
   * @throws {ValidationError} When the id or keys are invalid.
   */
  async export(volumeId: string, params: TunnelServerParams): Promise<void> {
    const volume = await this.#store.open(volumeId);
    this.#tunnels.register(volumeId, params, (t) => this.#serve(volume.id, t));
    this.#exported.add(volumeId);
    this.#log.info("Volume exported", { volume: volumeId });
  }

  /** Stops serving a volume and closes its tunnels (the volume stays in the store). */
  async unexport(volumeId: string): Promise<void> {
    this.#exported.delete(volumeId);
    await this.#tunnels.unregister(volumeId);
  }

  /**
   * Ends a volume: closes its tunnels and wipes it from the store.
   * @throws {NotFoundError} `unknown_volume` when the store does not hold it.
   */
  async wipe(volumeId: string): Promise<void> {
    await this.unexport(volumeId);
    await this.#store.wipe(volumeId);
  }

  /** Stops serving every volume. */
  async close(): Promise<void> {
    for (const id of [...this.#exported]) await this.unexport(id);
  }

  async #serve(volumeId: string, tunnel: Tunnel): Promise<void> {
    let volume: Volume;
    try {
      volume = await this.#store.open(volumeId);
    } catch (err) {
      this.#log.warn("Cannot open an exported volume", { volume: volumeId, err });
      return;
    }
    const log = this.#log.child(volumeId.slice(0, 8));
    log.debug("Consumer attached", { remote: tunnel.remote });
    const inflight = new Set<Promise<void>>();
    try {
      while (true) {
        let frame: Uint8Array | null;
        try {
          frame = await tunnel.receive();
        } catch (err) {
          log.info("Tunnel failed", { remote: tunnel.remote, err });
          return;
        }
        if (frame === null) return;
        const p = this.#handle(volume, tunnel, frame, log);
        inflight.add(p);
        void p.then(() => inflight.delete(p));
        if (inflight.size >= this.#maxInFlight) await Promise.race(inflight);
      }
    } finally {
      tunnel.close("the server stopped serving it");
      await Promise.allSettled([...inflight]);
      log.debug("Consumer detached", { remote: tunnel.remote, why: tunnel.closeReason });
    }
  }

  // Never rejects: every failure becomes an error response.
  async #handle(volume: Volume, tunnel: Tunnel, frame: Uint8Array, log: Logger): Promise<void> {
    const req = decodeRequest(frame);
    let parts: Uint8Array[];
    if ("error" in req) {
      parts = [encodeResponse(0, Status.malformed, req.id), encodeReason(req.error)];
    } else {
      const fail = (status: StatusCode, reason: string) => [
        encodeResponse(req.op, status, req.id),
        encodeReason(reason),
      ];
      const bs = volume.blockSize;
      const noPayload = req.payload.length === 0;
      try {
        switch (req.op) {
          case Op.ping:
          case Op.info:
          case Op.flush:
            if (req.first !== 0 || req.count !== 0 || req.crc !== 0 || !noPayload) {
              parts = fail(Status.malformed, "This operation takes no blocks and no payload");
            } else if (req.op === Op.info) {
              parts = [
                encodeResponse(req.op, Status.ok, req.id),
                encodeInfo(bs, volume.blockCount, MAX_REQUEST_BYTES),
              ];
            } else {
              if (req.op === Op.flush) await volume.flush();
              parts = [encodeResponse(req.op, Status.ok, req.id)];
            }
            break;
          case Op.read:
          case Op.trim:
            if (req.crc !== 0 || !noPayload) {
              parts = fail(Status.malformed, "This operation takes no payload");
            } else if (req.count * bs > MAX_REQUEST_BYTES) {
              parts = fail(Status.range, `A request covers at most ${MAX_REQUEST_BYTES} bytes`);
            } else if (req.op === Op.trim) {
              await volume.trim(req.first, req.count);
              parts = [encodeResponse(req.op, Status.ok, req.id)];
            } else {
              const tags = new Uint8Array(req.count * TAG_BYTES);
              const data = new Uint8Array(req.count * bs);
              await volume.readInto(req.first, req.count, data, tags);
              parts = [encodeResponse(req.op, Status.ok, req.id, crcOf(tags, data)), tags, data];
            }
            break;
          case Op.write: {
            const tagBytes = req.count * TAG_BYTES;
            if (req.count * bs > MAX_REQUEST_BYTES) {
              parts = fail(Status.range, `A request covers at most ${MAX_REQUEST_BYTES} bytes`);
            } else if (req.payload.length !== tagBytes + req.count * bs) {
              parts = fail(Status.malformed, "The payload is not count × (32 + block size) bytes");
            } else if (crcOf(req.payload) !== req.crc) {
              parts = fail(Status.checksum, "The payload does not match its checksum");
            } else {
              await volume.write(
                req.first,
                req.payload.subarray(tagBytes),
                req.payload.subarray(0, tagBytes),
              );
              parts = [encodeResponse(req.op, Status.ok, req.id)];
            }
            break;
          }
          default:
            parts = fail(Status.malformed, `Unknown operation ${req.op}`);
        }
      } catch (err) {
        const status = statusOf(err);
        if (status !== Status.range) log.warn("Block request failed", { op: req.op, err });
        parts = fail(status, (err as Error).message);
      }
    }
    try {
      await tunnel.send(parts, { urgent: !("error" in req) && req.op === Op.ping });
    } catch {
      // The tunnel is closed: the loop ends.
    }
  }
}
