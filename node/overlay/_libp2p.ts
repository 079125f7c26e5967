// How the overlay builds libp2p nodes: TCP, a pre-shared network key, Noise with the node's own
// identity key, yamux; and the one Deno trap DESIGN.md records (mortice's BroadcastChannel keeps
// the process alive after stop()), answered only for mortice's channel so that other users of
// BroadcastChannel in the same process keep a real one.
import { noise } from "@chainsafe/libp2p-noise";
import { yamux } from "@chainsafe/libp2p-yamux";
import { generateKeyPairFromSeed } from "@libp2p/crypto/keys";
import type { PrivateKey } from "@libp2p/interface";
import { preSharedKey } from "@libp2p/pnet";
import "./xsalsa20_fix.ts";
import { tcp } from "@libp2p/tcp";
import type { NodeIdentity } from "../../protocol/mod.ts";
import { fromBase64url } from "../../protocol/mod.ts";

const RealChannel = globalThis.BroadcastChannel;
if (!(RealChannel as { truecloudShim?: boolean }).truecloudShim) {
  class QuietChannel extends EventTarget {
    name: string;
    onmessage = null;
    onmessageerror = null;
    constructor(name: string) {
      super();
      this.name = name;
    }
    postMessage(): void {}
    close(): void {}
  }
  const Shim = function (this: unknown, name: string) {
    // mortice serves worker threads' lock requests on this channel; the overlay has none.
    if (name === "mortice") return new QuietChannel(name);
    return new RealChannel(name);
  } as unknown as typeof BroadcastChannel & { truecloudShim: boolean };
  Object.defineProperty(Shim, "prototype", { value: RealChannel.prototype });
  Shim.truecloudShim = true;
  globalThis.BroadcastChannel = Shim;
}

/**
 * The node's identity key as libp2p's private key: its peer id is the node id.
 * @param identity The node.
 */
export async function libp2pKey(identity: NodeIdentity): Promise<PrivateKey> {
  return await generateKeyPairFromSeed("Ed25519", fromBase64url(identity.toJwk().d));
}

/** The swarm key file form of a 32-byte network key (what `@libp2p/pnet` takes). */
export function swarmKey(networkKeyHex: string): Uint8Array {
  return new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${networkKeyHex}`);
}

/** Transports, network key, encryption and multiplexing, as every overlay node has them. */
export function baseConfig(networkKeyHex: string) {
  return {
    transports: [tcp()],
    connectionProtector: preSharedKey({ psk: swarmKey(networkKeyHex) }),
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
  };
}
