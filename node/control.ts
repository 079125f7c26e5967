/**
 * The node agents' control API, for `deno task node`: loopback only, behind a bearer token kept in
 * a file only the operator can read. It lists nodes with their VPNs and resources, and makes a node
 * join (fill up to its VPNs) or leave a VPN.
 *
 * @module
 */

import type { CloudFileSystem } from "./cfs/cfs.ts";
import { Hono } from "hono";
import {
  methodNotAllowed,
  nodeIdSchema,
  NotFoundError,
  parseRanges,
  parseWith,
  toHttpError,
  TrueCloudError,
  uuidSchema,
  z,
} from "../protocol/mod.ts";
import { type CID, parseCid, publishSchema } from "../cdn/mod.ts";
import type { Rms } from "./rms/mod.ts";

const askSchema = z.strictObject({
  kind: z.enum(["storage", "compute"]),
  bytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  cpuMillicores: z.number().int().min(0).max(1_000_000).optional(),
  memoryBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  leaseSeconds: z.number().int().min(1).max(90 * 24 * 3600),
  count: z.number().int().min(1).max(32).optional(),
  maxHops: z.number().int().min(0).max(3).optional(),
  waitMs: z.number().int().min(0).max(60_000).optional(),
});

/** What the control API says of a node. */
export interface NodeReport {
  name: string;
  id: string;
  maxVpns: number;
  stopped: boolean;
  vpns: ReturnType<Rms["status"]>;
  entitlement: ReturnType<Rms["entitlement"]>;
  broadcast: ReturnType<Rms["broadcaster"]["stats"]>;
  /** What this node's audits found of the providers it checked. */
  audits: ReturnType<Rms["ledger"]["audits"]>;
  /** The agent process's memory (every node of a local cloud shares one process). */
  memory: Deno.MemoryUsage;
}

function report(name: string, rms: Rms): NodeReport {
  return {
    name,
    id: rms.nodeId,
    maxVpns: rms.maxVpns,
    stopped: rms.stopped,
    vpns: rms.status(),
    entitlement: rms.entitlement(),
    broadcast: rms.broadcaster.stats(),
    audits: rms.ledger.audits(),
    memory: Deno.memoryUsage(),
  };
}

function cidParam(text: string): CID {
  try {
    return parseCid(text);
  } catch (err) {
    throw new TrueCloudError((err as Error).message, { code: "invalid", status: 400 });
  }
}

// An object's bytes as a response. The first chunk decides the status: a missing object is a 404,
// not a broken 200.
async function streamed(
  bytes: AsyncGenerator<Uint8Array>,
  cid: CID,
  partial?: { status: number; headers: Record<string, string> },
): Promise<Response> {
  const it = bytes[Symbol.asyncIterator]();
  let first: IteratorResult<Uint8Array>;
  try {
    first = await it.next();
  } catch (err) {
    throw new NotFoundError(`No member reachable holds ${cid}: ${(err as Error).message}`);
  }
  const body = new ReadableStream<Uint8Array>({
    start(ctl) {
      if (!first.done) ctl.enqueue(first.value);
      else ctl.close();
    },
    async pull(ctl) {
      const { value, done } = await it.next();
      if (done) ctl.close();
      else ctl.enqueue(value);
    },
    async cancel() {
      await it.return?.(undefined);
    },
  });
  return new Response(body, {
    status: partial?.status ?? 200,
    headers: { "content-type": "application/octet-stream", ...partial?.headers },
  });
}

/**
 * Builds the control API.
 * @param nodes The node agents, by name.
 * @param token The bearer token clients must present.
 * @param parts The nodes' other parts, by name: their Cloud File Systems (filled in as they start).
 * @returns The app.
 */
export function createControlApp(
  nodes: ReadonlyMap<string, Rms>,
  token: string,
  parts: { cfs?: ReadonlyMap<string, CloudFileSystem> } = {},
): Hono {
  const app = new Hono();
  // A node by name or id; a stopped one only shows its status.
  const find = (key: string, stoppedToo = false): [string, Rms] => {
    for (const [name, rms] of nodes) {
      if (name !== key && rms.nodeId !== key) continue;
      if (rms.stopped && !stoppedToo) {
        throw new TrueCloudError(`${name} is stopped`, { code: "stopped", status: 409 });
      }
      return [name, rms];
    }
    throw new NotFoundError(`No node ${key} here`);
  };
  app.use(async (c, next) => {
    const host = (c.req.header("host") ?? "").replace(/:\d+$/, "");
    if (!["127.0.0.1", "localhost", "[::1]"].includes(host)) {
      throw new TrueCloudError("The control API answers on loopback only", {
        code: "forbidden",
        status: 403,
      });
    }
    if (c.req.header("authorization") !== `Bearer ${token}`) {
      throw new TrueCloudError("A bearer token is needed (see control.json)", {
        code: "unauthorized",
        status: 401,
      });
    }
    await next();
  });
  app.get("/nodes", (c) => c.json({ nodes: [...nodes].map(([n, r]) => report(n, r)) }));
  app.get("/nodes/:node", (c) => c.json(report(...find(c.req.param("node"), true))));
  // Stops a node agent of a local cloud for good (until the cloud restarts): it leaves its VPNs,
  // and the others see it gone.
  app.post("/nodes/:node/stop", async (c) => {
    const [name, rms] = find(c.req.param("node"), true);
    await rms.stop();
    return c.json({ stopped: name, node: report(name, rms) });
  });
  app.post("/nodes/:node/join", async (c) => {
    const [name, rms] = find(c.req.param("node"));
    const joined = await rms.fill();
    return c.json({ joined, node: report(name, rms) });
  });
  app.post("/nodes/:node/leave/:vpn", async (c) => {
    const [name, rms] = find(c.req.param("node"));
    const vpn = c.req.param("vpn");
    if (!uuidSchema.safeParse(vpn).success) {
      throw new TrueCloudError("Not a VPN UUID", { code: "invalid", status: 400 });
    }
    await rms.leave(vpn);
    return c.json({ left: vpn, node: report(name, rms) });
  });
  app.post("/nodes/:node/request", async (c) => {
    const [, rms] = find(c.req.param("node"));
    const ask = parseWith(askSchema, await c.req.json().catch(() => undefined), "request");
    const offers = await rms.broadcaster.request(ask);
    return c.json({
      offers: offers.map((o) => ({
        provider: o.provider,
        vpn: o.data.vpn,
        via: o.via,
        bytes: o.data.bytes,
        location: o.data.location,
      })),
    });
  });
  app.post("/nodes/:node/revoke/:vpn/:member", async (c) => {
    const [name, rms] = find(c.req.param("node"));
    const vpn = c.req.param("vpn");
    const member = c.req.param("member");
    if (!uuidSchema.safeParse(vpn).success || !nodeIdSchema.safeParse(member).success) {
      throw new TrueCloudError("Needs a VPN UUID and a member's node id", {
        code: "invalid",
        status: 400,
      });
    }
    const reason = (c.req.query("reason") ?? "revoked by an operator").slice(0, 200);
    await rms.revoke(vpn, member, reason);
    return c.json({ revoked: member, vpn, node: report(name, rms) });
  });
  app.post("/nodes/:node/ping/:peer", async (c) => {
    const [, rms] = find(c.req.param("node"));
    const peer = c.req.param("peer");
    for (const m of rms.memberships()) {
      if (!m.node.roster().some((r) => r.data.member === peer)) continue;
      try {
        return c.json({ peer, vpn: m.vpn, ...(await m.node.ping(peer)) });
      } catch (err) {
        if (err instanceof TrueCloudError) throw err;
        throw new TrueCloudError(`${peer} did not answer: ${(err as Error).message}`, {
          code: "unreachable",
          status: 504,
        });
      }
    }
    throw new NotFoundError(`${peer} is not a member of this node's VPNs`);
  });
  // The Cloud File System: its status (what the CFS UI shows), and a scrub.
  const cfsOf = (key: string) => {
    const [name] = find(key);
    const cfs = parts.cfs?.get(name);
    if (!cfs) throw new NotFoundError(`${name} has no cloud file system (yet)`);
    return cfs;
  };
  app.get("/nodes/:node/cfs", (c) => c.json(cfsOf(c.req.param("node")).status()));
  app.post("/nodes/:node/cfs/scrub", async (c) => {
    const cfs = cfsOf(c.req.param("node"));
    await cfs.scrub();
    return c.json(cfs.status().scrub ?? {});
  });
  // The CDN: the catalogue, publishing, members' reads, and the gateway's uplink (public only).
  app.get("/nodes/:node/cdn", async (c) => {
    const [, rms] = find(c.req.param("node"));
    const objects = (await rms.cdn.catalogue.list()).map((o) => ({ ...o, cid: o.cid.toString() }));
    return c.json({
      objects,
      keepsStore: rms.cdn.keepsStore,
      liveHolders: rms.cdn.liveHolders(),
      repair: rms.cdn.repairStatus(),
    });
  });
  app.post("/nodes/:node/cdn", async (c) => {
    const [, rms] = find(c.req.param("node"));
    const q = c.req.query();
    const meta = parseWith(
      publishSchema.pick({ name: true, type: true, visibility: true, expires: true }),
      {
        name: q.name,
        type: q.type ?? c.req.header("content-type") ?? "application/octet-stream",
        visibility: q.visibility ?? "public",
        ...(q.expires ? { expires: q.expires } : {}),
      },
      "publication",
    );
    const body = c.req.raw.body;
    if (!body) throw new TrueCloudError("Send the content as the body", { code: "invalid" });
    const obj = await rms.cdn.publish(body, meta);
    return c.json({ ...obj, cid: obj.cid.toString() }, 201);
  });
  app.get("/nodes/:node/cdn/public", async (c) => {
    const [, rms] = find(c.req.param("node"));
    const objects = (await rms.cdn.publicObjects()).map((o) => ({
      name: o.name,
      cid: o.cid.toString(),
      size: o.size,
      type: o.type,
    }));
    return c.json({ objects });
  });
  app.get("/nodes/:node/cdn/public/:cid", async (c) => {
    const [, rms] = find(c.req.param("node"));
    const obj = await rms.cdn.publicObject(cidParam(c.req.param("cid")));
    const ranges = parseRanges(c.req.header("range") ?? "", obj.size);
    if (ranges === "unsatisfiable" || (ranges && ranges.length !== 1)) {
      throw new TrueCloudError("The uplink serves one satisfiable range", {
        code: "range_not_satisfiable",
        status: 416,
      });
    }
    const r = ranges?.[0];
    const range = r && { offset: r.start, length: r.end - r.start + 1 };
    return await streamed(
      rms.cdn.read(obj.cid, range),
      obj.cid,
      r && {
        status: 206,
        headers: { "content-range": `bytes ${r.start}-${r.end}/${obj.size}` },
      },
    );
  });
  app.get("/nodes/:node/cdn/:cid", async (c) => {
    const [, rms] = find(c.req.param("node"));
    const cid = cidParam(c.req.param("cid"));
    return await streamed(rms.readCdn(cid), cid);
  });
  app.all("/nodes", methodNotAllowed("GET, HEAD"));
  app.notFound((c) =>
    c.json({ error: { code: "not_found", message: `No route ${c.req.method} ${c.req.path}` } }, 404)
  );
  app.onError((err, c) => {
    const { status, body } = toHttpError(err);
    return c.json(body, status as 400);
  });
  return app;
}
