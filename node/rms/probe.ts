/**
 * Measuring a node's upload bandwidth by sending data to members of its VPNs
 * (`docs/protocol/entitlement.md`, "Measuring bandwidth").
 *
 * @module
 */

import type { Connection, Stream } from "@libp2p/interface";
import { discardLogger, type Logger, shuffled, TrueCloudError } from "../../protocol/mod.ts";
import { jsonStream, type VpnNode } from "../overlay/mod.ts";

/** The stream protocol of bandwidth probes. */
export const PROBE_PROTOCOL = "/truecloud/rms/probe/1.0.0";
/** Bytes a probe sends: enough to time a home uplink, little enough that the buffers it passes
 * through (which the process keeps once grown: 1 MiB left an idle agent 10 MiB larger) stay small
 * on a node meant to run in 100 MB. */
export const PROBE_BYTES = 256 * 1024;
/** The bounds of a probe's size. */
export const PROBE_BOUNDS = [64 * 1024, 8 * 1024 * 1024] as const;
/** The largest frame of probe data. */
const FRAME = 64 * 1024;
/** How often a member answers the same peer, ms. */
const PER_PEER_MS = 60_000;

/** Sends and answers bandwidth probes. */
export class BandwidthProbe {
  readonly #log: Logger;
  // When each peer was last answered (ms), and whether a probe is being answered now.
  readonly #answered = new Map<string, number>();
  #busy = false;

  /** @param log Logger. */
  constructor(log: Logger = discardLogger) {
    this.#log = log;
  }

  /**
   * Answers probes from the members of a VPN.
   * @param node The VPN.
   */
  async attach(node: VpnNode): Promise<void> {
    await node.libp2p.handle(PROBE_PROTOCOL, (stream, conn) => this.#answer(stream, conn), {
      maxInboundStreams: 2,
      runOnLimitedConnection: true, // members behind NAT, through a relay
    });
  }

  async #answer(stream: Stream, conn: Connection): Promise<void> {
    const s = jsonStream(stream);
    const peer = conn.remotePeer.toString();
    let took = false;
    try {
      const m = await s.read();
      const n = m.bytes as number;
      if (
        m.t !== "probe" || !Number.isInteger(n) || n < PROBE_BOUNDS[0] || n > PROBE_BOUNDS[1]
      ) {
        throw new TrueCloudError(
          `Expected {"t":"probe","bytes":N}, N from ${PROBE_BOUNDS[0]} to ${PROBE_BOUNDS[1]}`,
          { code: "invalid" },
        );
      }
      if (this.#busy) {
        throw new TrueCloudError("Answering another probe", { code: "busy" });
      }
      if (Date.now() - (this.#answered.get(peer) ?? -Infinity) < PER_PEER_MS) {
        throw new TrueCloudError("One probe a minute per peer", { code: "too_soon" });
      }
      this.#busy = took = true;
      this.#answered.set(peer, Date.now());
      if (this.#answered.size > 10_000) this.#answered.clear();
      let got = 0;
      while (got < n) {
        const frame = await s.readRaw();
        got += frame.length;
        if (frame.length > FRAME || got > n) {
          throw new TrueCloudError(`More than the ${n} bytes announced`, { code: "invalid" });
        }
      }
      await s.write({ t: "received", bytes: got });
    } catch (err) {
      const code = err instanceof TrueCloudError ? err.code : "invalid";
      await s.write({ t: "error", code, reason: (err as Error).message }).catch(() => {});
    } finally {
      if (took) this.#busy = false;
      await stream.close().catch(() => {});
    }
  }

  /**
   * Sends one probe to a member.
   * @param node A VPN both are in.
   * @param peer The member.
   * @param bytes How much to send.
   * @returns The upload rate, bytes per second.
   * @throws {TrueCloudError} With the member's refusal code.
   */
  async send(node: VpnNode, peer: string, bytes = PROBE_BYTES): Promise<number> {
    const stream = await node.openStream(peer, PROBE_PROTOCOL);
    const s = jsonStream(stream);
    try {
      const frame = new Uint8Array(Math.min(FRAME, bytes)); // anything will do: the VPN encrypts it
      const t0 = performance.now();
      await s.write({ t: "probe", bytes });
      for (let sent = 0; sent < bytes; sent += frame.length) {
        await s.writeRaw(frame.subarray(0, Math.min(frame.length, bytes - sent)));
      }
      const a = await s.read();
      const ms = performance.now() - t0;
      if (a.t !== "received" || a.bytes !== bytes) {
        throw new TrueCloudError(`The member refused the probe: ${String(a.reason ?? a.t)}`, {
          code: typeof a.code === "string" ? a.code : "invalid",
        });
      }
      return Math.round(bytes / (Math.max(ms, 0.001) / 1000));
    } finally {
      await stream.close().catch(() => {});
    }
  }

  /**
   * Measures this node's upload bandwidth: a probe to each of up to three connected members of its
   * VPNs, the best rate.
   * @param nodes The VPNs.
   * @returns Bytes per second, or undefined when no member answered.
   */
  async measure(nodes: VpnNode[]): Promise<number | undefined> {
    const peers = shuffled(
      nodes.flatMap((node) => node.verifiedPeers().map((peer) => ({ node, peer }))),
    );
    const seen = new Set<string>();
    let best: number | undefined;
    let tried = 0;
    for (const { node, peer } of peers) {
      if (tried >= 3) break;
      if (seen.has(peer)) continue;
      seen.add(peer);
      tried++;
      try {
        const rate = await this.send(node, peer);
        best = Math.max(best ?? 0, rate);
      } catch (err) {
        this.#log.debug("A bandwidth probe failed", { peer, err: String(err) });
      }
    }
    return best;
  }
}
