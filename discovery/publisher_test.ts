import assert from "node:assert/strict";
import { Hono } from "hono";
import {
  ManualClock,
  newUuid,
  NodeIdentity,
  toHttpError,
  TrueCloudError,
} from "../protocol/mod.ts";
import { RecordPublisher } from "./publisher.ts";
import { DiscoveryService } from "./service.ts";
import { guestKey } from "./_test_util.ts";

async function endpoint() {
  const svc = await DiscoveryService.open({
    kvPath: ":memory:",
    publicBaseUrl: "http://d.test/discovery",
  });
  const root = new Hono().route("/discovery", svc.app);
  root.onError((err, c) => {
    const { status, body } = toHttpError(err);
    return c.json(body, status as 400);
  });
  const f: typeof fetch = (input, init) => {
    const u = new URL(String(input));
    if (u.host === "down.test") return Promise.reject(new TypeError("connection refused"));
    return Promise.resolve(root.request(u.pathname + u.search, init));
  };
  return { svc, f };
}

Deno.test("RecordPublisher.publish() falls through unreachable endpoints to one that takes the record", async () => {
  const { svc, f } = await endpoint();
  try {
    const pub = new RecordPublisher({
      guardian: await NodeIdentity.generate(),
      endpoints: ["http://down.test/discovery", "http://d.test/discovery"],
      fetch: f,
    });
    const r = await pub.publish({
      v: 1,
      vpn: newUuid(),
      state: "soliciting",
      ips: ["8.8.8.8"],
      guestPort: 1,
      guestKey: guestKey(),
    });
    assert.deepEqual(r, { status: "stored", endpoint: "http://d.test/discovery" });
    assert.equal(svc.store.visible().length, 1);
  } finally {
    await svc.close();
  }
});

Deno.test("RecordPublisher gives each record of a VPN a later time of issue, so a quick withdrawal wins", async () => {
  const { svc, f } = await endpoint();
  try {
    const clock = new ManualClock(Date.UTC(2026, 10, 25, 12));
    const pub = new RecordPublisher({
      guardian: await NodeIdentity.generate(),
      endpoints: ["http://d.test/discovery"],
      fetch: f,
      clock,
    });
    const vpn = newUuid();
    const data = {
      v: 1 as const,
      vpn,
      state: "soliciting" as const,
      ips: ["8.8.8.8"],
      guestPort: 1,
      guestKey: guestKey(),
    };
    // Refreshes and a withdrawal within the same second.
    await pub.publish(data);
    await pub.publish({ ...data, guestPort: 2 });
    await pub.withdraw(vpn, "full");
    const all = svc.store.all();
    assert.equal(all.length, 1);
    assert.equal(all[0].data.state, "withdrawn");
    assert.equal(all[0].issuedAt, Date.UTC(2026, 10, 25, 12) / 1000 + 2);
    pub.stop();
  } finally {
    await svc.close();
  }
});

Deno.test("RecordPublisher.publish() reports a refusal with the endpoint's code and reason", async () => {
  const { svc, f } = await endpoint();
  try {
    const pub = new RecordPublisher({
      guardian: await NodeIdentity.generate(),
      endpoints: ["http://d.test/discovery"],
      fetch: f,
    });
    await assert.rejects(
      pub.publish({
        v: 1,
        vpn: newUuid(),
        state: "soliciting",
        ips: ["10.1.1.1"],
        guestPort: 1,
        guestKey: guestKey(),
      }),
      (e: TrueCloudError) =>
        e.code === "address_not_public" && e.status === 400 &&
        /not publicly routable/.test(e.message),
    );
    const nowhere = new RecordPublisher({
      guardian: await NodeIdentity.generate(),
      endpoints: ["http://down.test/discovery"],
      fetch: f,
    });
    await assert.rejects(
      nowhere.publish({ v: 1, vpn: newUuid(), state: "withdrawn", reason: "full" }),
      (e: TrueCloudError) => e.code === "unreachable",
    );
  } finally {
    await svc.close();
  }
});
