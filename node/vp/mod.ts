/**
 * The Volume Provider's userspace block driver (`docs/protocol/blocks.md`): the store of leased
 * volumes on the provider's disk, the dedicated encrypted tunnel of each volume, and the two ends
 * of the block protocol spoken through it.
 *
 * - {@linkcode VolumeStore}: volumes as sparse files with a tag and checksum record per block,
 *   within the capacity the node lends; wiped for good when their lease ends.
 * - {@linkcode TunnelServer} and {@linkcode connectTunnel}: one TCP connection per attached volume,
 *   X25519 handshake, ChaCha20-Poly1305 frames.
 * - {@linkcode BlockServer}: serves a store's volumes through a tunnel server.
 * - {@linkcode BlockClient}: a volume on a provider as a `BlockDevice`, with deadlines and
 *   heartbeats.
 *
 * @example
 * ```ts ignore
 * import { BlockClient, BlockServer, generateTunnelKeys, TunnelServer, VolumeStore } from "./mod.ts";
 * // Provider
 * const store = await VolumeStore.open({ dir: "/var/lib/truecloud/volumes", capacityBytes: 2 ** 40 });
 * const tunnels = new TunnelServer();
 * const endpoint = await tunnels.listen({ hostname: "0.0.0.0", port: 7410 });
 * const server = new BlockServer(store, tunnels);
 * const provider = generateTunnelKeys(), consumer = generateTunnelKeys(); // exchanged in the export
 * await store.create(volumeId, 65536, 1310);
 * await server.export(volumeId, { serverStatic: provider, clientPublic: consumer.publicKey });
 * // Consumer
 * const dev = await BlockClient.connect("203.0.113.9:7410", {
 *   volumeId,
 *   clientStatic: consumer,
 *   serverPublic: provider.publicKey,
 * }, { onDead: (why) => console.log("volume away:", why) });
 * ```
 *
 * @module
 */

export * from "./store.ts";
export * from "./tunnel.ts";
export * from "./block_server.ts";
export * from "./block_client.ts";
export * from "./provider.ts";
export * from "./userspace.ts";
