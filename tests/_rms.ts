// What the RMS tests share: the test release, and an in-process discovery service to join through.
import { Hono } from "hono";
import { DiscoveryService } from "../discovery/mod.ts";
import { catalogFromTargets, type RmsOptions } from "../node/mod.ts";

export const RELEASE = {
  v: 1 as const,
  release: "truecloud-0.1.0-dev.tar.gz",
  sha256: "5e".repeat(32),
  length: 4321,
};
export const releases = () =>
  catalogFromTargets({
    [RELEASE.release]: { length: RELEASE.length, hashes: { sha256: RELEASE.sha256 } },
  });

export const GiB = 1024 ** 3;

// A node on the in-process discovery service: somewhere new, the test release, quick retries.
export function rmsOptions(f: typeof fetch): Omit<RmsOptions, "identity"> {
  return {
    location: crypto.randomUUID(),
    network: crypto.randomUUID(),
    release: RELEASE,
    releases,
    feedUrl: "http://discovery.test/discovery/feed.rss?count=100",
    endpoints: ["http://discovery.test/discovery"],
    fetch: f,
    allowPrivateAddresses: true,
    retryMs: 300,
    contribution: { diskBytes: GiB, diskPath: Deno.cwd() },
  };
}

export async function discovery() {
  const svc = await DiscoveryService.open({
    kvPath: ":memory:",
    publicBaseUrl: "http://discovery.test/discovery",
    allowPrivateAddresses: true,
  });
  const root = new Hono().route("/discovery", svc.app);
  const f =
    ((input: string | URL | Request, init?: RequestInit) =>
      root.request(input instanceof Request ? input : String(input), init)) as typeof fetch;
  return { svc, fetch: f };
}
