// The block protocol end to end: a BlockClient against a BlockServer over TCP on 127.0.0.1.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { type TrueCloudError, ValidationError } from "../../protocol/mod.ts";
import { DeviceError, TAG_BYTES } from "../drivers/mod.ts";
import { BlockClient } from "./block_client.ts";
import { VOLUME_RECORD_BYTES } from "./store.ts";
import { rejectsDevice, setupVolume, testBlocks } from "./_test_setup.ts";
import { connectTunnel, generateTunnelKeys, type Tunnel } from "./tunnel.ts";
import { crcOf, decodeResponse, encodeRequest, MAX_REQUEST_BYTES, Op, Status } from "./_wire.ts";

async function until(f: () => boolean, ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (!f()) {
    if (performance.now() > end) assert.fail("Timed out waiting");
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("BlockClient round-trips blocks and tags through a BlockServer", async () => {
  const s = await setupVolume({ blockSize: 4096, blockCount: 64 });
  try {
    const c = s.client;
    assert.equal(c.blockSize, 4096);
    assert.equal(c.blockCount, 64);
    const untouched = await c.read(0, 64);
    assert.ok(untouched.data.every((b) => b === 0) && untouched.tags.every((b) => b === 0));
    const x = testBlocks(5, 1);
    await c.write(20, x.data, x.tags);
    await c.flush();
    const r = await c.read(19, 7);
    assert.deepEqual(r.data.subarray(4096, 6 * 4096), x.data);
    assert.deepEqual(r.tags.subarray(TAG_BYTES, 6 * TAG_BYTES), x.tags);
    assert.ok(r.data.subarray(0, 4096).every((b) => b === 0));
    await c.trim(21, 2);
    const t = await c.read(20, 4);
    assert.deepEqual(t.data.subarray(0, 4096), x.data.subarray(0, 4096));
    assert.ok(t.data.subarray(4096, 3 * 4096).every((b) => b === 0));
    assert.ok(t.tags.subarray(TAG_BYTES, 3 * TAG_BYTES).every((b) => b === 0));
    assert.deepEqual(t.data.subarray(3 * 4096), x.data.subarray(3 * 4096, 4 * 4096));
    // What the client wrote is what the store holds.
    const v = await s.store.open(s.volumeId);
    assert.deepEqual((await v.read(20, 1)).tags, x.tags.subarray(0, TAG_BYTES));
    await until(() => c.latencyMs !== undefined, 2000);
    assert.ok(c.latencyMs! >= 0 && c.latencyMs! < 1000);
    assert.ok(c.alive);
  } finally {
    await s.cleanup();
  }
});

Deno.test("BlockClient pipelines many requests at once and matches every answer", async () => {
  const s = await setupVolume({ blockSize: 4096, blockCount: 256 });
  try {
    const c = s.client;
    const writes = Array.from({ length: 256 }, (_, i) => testBlocks(1, i));
    await Promise.all(writes.map((x, i) => c.write(i, x.data, x.tags)));
    // Reads of different sizes, all in flight together, each must get its own answer.
    const reads = await Promise.all(
      Array.from({ length: 200 }, (_, k) => {
        const first = (k * 37) % 250, count = 1 + (k % 6);
        return c.read(first, count).then((r) => ({ first, count, r }));
      }),
    );
    for (const { first, count, r } of reads) {
      for (let i = 0; i < count; i++) {
        assert.deepEqual(r.data.subarray(i * 4096, (i + 1) * 4096), writes[first + i].data);
        assert.deepEqual(
          r.tags.subarray(i * TAG_BYTES, (i + 1) * TAG_BYTES),
          writes[first + i].tags,
        );
      }
    }
  } finally {
    await s.cleanup();
  }
});

Deno.test("BlockClient splits calls larger than one request", async () => {
  const s = await setupVolume({ blockSize: 4096, blockCount: 3000 });
  try {
    const c = s.client;
    assert.ok(3000 * 4096 > 2 * MAX_REQUEST_BYTES);
    const x = testBlocks(2999, 3);
    await c.write(1, x.data, x.tags);
    const r = await c.read(0, 3000);
    assert.ok(r.data.subarray(0, 4096).every((b) => b === 0));
    assert.deepEqual(r.data.subarray(4096), x.data);
    assert.deepEqual(r.tags.subarray(TAG_BYTES), x.tags);
    await c.trim(0, 3000);
    const z = await c.read(0, 3000);
    assert.ok(z.data.every((b) => b === 0) && z.tags.every((b) => b === 0));
  } finally {
    await s.cleanup();
  }
});

Deno.test("BlockClient calls outside the volume fail with device_range and change nothing", async () => {
  const s = await setupVolume({ blockSize: 4096, blockCount: 16 });
  try {
    const c = s.client;
    const x = testBlocks(2, 4);
    await c.write(0, x.data, x.tags);
    await rejectsDevice(c.read(15, 2), "device_range");
    await rejectsDevice(c.read(0, 0), "device_range");
    await rejectsDevice(c.read(-1, 1), "device_range");
    await rejectsDevice(c.write(15, x.data, x.tags), "device_range");
    await rejectsDevice(c.write(0, x.data.subarray(0, 100), x.tags), "device_range");
    await rejectsDevice(c.write(0, x.data, x.tags.subarray(0, 40)), "device_range");
    await rejectsDevice(c.trim(10, 7), "device_range");
    const r = await c.read(0, 16);
    assert.deepEqual(r.data.subarray(0, 8192), x.data);
    assert.ok(r.data.subarray(8192).every((b) => b === 0));
    assert.ok(c.alive);
  } finally {
    await s.cleanup();
  }
});

Deno.test("A silent provider makes calls time out and the client die", async () => {
  // Defaults for the heartbeat (1 s) and death (3 s); a short deadline for calls.
  const s = await setupVolume({ proxy: true, client: { timeoutMs: 800 } });
  try {
    const c = s.client;
    await c.write(0, testBlocks(1, 1).data, testBlocks(1, 1).tags);
    await until(() => c.latencyMs !== undefined, 2000);
    s.proxy!.stall();
    const stalled = performance.now();
    const err = await rejectsDevice(c.read(0, 1), "device_timeout");
    const waited = performance.now() - stalled;
    assert.ok(waited >= 750 && waited < 2000, `timed out after ${waited} ms`);
    assert.match(err.message, /no answer within 800 ms/);
    assert.ok(c.alive, "a slow answer alone does not kill the client");
    const pending = c.read(1, 1).catch((e) => e);
    await until(() => s.deaths.length > 0, 6000);
    const died = s.deaths[0].at - stalled;
    assert.ok(died >= 2900 && died < 4700, `dead after ${died} ms`);
    assert.match(s.deaths[0].reason, /heartbeat/);
    assert.ok(!c.alive);
    const e2 = await pending;
    assert.ok(
      e2 instanceof DeviceError && ["device_unavailable", "device_timeout"].includes(e2.code),
    );
    await rejectsDevice(c.read(0, 1), "device_unavailable");
    await rejectsDevice(c.flush(), "device_unavailable");
    assert.equal(s.deaths.length, 1, "onDead fires once");
  } finally {
    await s.cleanup();
  }
});

Deno.test("A stopped provider makes the client unavailable at once", async () => {
  const s = await setupVolume();
  try {
    const c = s.client;
    const x = testBlocks(1, 2);
    const inFlight = Array.from(
      { length: 20 },
      (_, i) => c.write(i, x.data, x.tags).catch((e) => e),
    );
    const start = performance.now();
    await s.server.close();
    await s.tunnels.close();
    const settled = await Promise.all(inFlight);
    for (const r of settled) {
      if (r !== undefined) {
        assert.ok(r instanceof DeviceError && r.code === "device_unavailable", String(r));
      }
    }
    await until(() => s.deaths.length > 0, 1000);
    assert.ok(performance.now() - start < 1000);
    assert.match(s.deaths[0].reason, /tunnel closed/);
    await rejectsDevice(c.read(0, 1), "device_unavailable");
    await rejectsDevice(c.write(0, x.data, x.tags), "device_unavailable");
  } finally {
    await s.cleanup();
  }
});

Deno.test("Disk rot on the provider reaches the consumer as a checksum failure", async () => {
  const s = await setupVolume({ blockSize: 4096, blockCount: 16 });
  try {
    const c = s.client;
    const x = testBlocks(4, 5);
    await c.write(4, x.data, x.tags);
    await c.flush();
    const f = await Deno.open(`${s.dir}/${s.volumeId}.data`, { read: true, write: true });
    await f.seek(6 * 4096 + 17, Deno.SeekMode.Start);
    await f.write(Uint8Array.of(x.data[2 * 4096 + 17] ^ 0xff));
    f.close();
    const err = await rejectsDevice(c.read(4, 4), "device_failed");
    assert.equal((err.cause as TrueCloudError).code, "checksum");
    assert.match(err.message, /checksum/);
    const ok = await c.read(4, 2);
    assert.deepEqual(ok.data, x.data.subarray(0, 2 * 4096));
    // A rotten tag record, too.
    const t = await Deno.open(`${s.dir}/${s.volumeId}.tags`, { read: true, write: true });
    await t.seek(7 * VOLUME_RECORD_BYTES, Deno.SeekMode.Start);
    await t.write(Uint8Array.of(0xee));
    t.close();
    await rejectsDevice(c.read(7, 1), "device_failed");
    assert.ok(c.alive, "a checksum failure does not end the tunnel");
  } finally {
    await s.cleanup();
  }
});

Deno.test("BlockServer.wipe() cuts the consumer off and nothing of the volume can be read", async () => {
  const s = await setupVolume();
  try {
    const x = testBlocks(8, 6);
    await s.client.write(0, x.data, x.tags);
    await s.server.wipe(s.volumeId);
    await until(() => s.deaths.length > 0, 1000);
    await rejectsDevice(s.client.read(0, 1), "device_unavailable");
    await rejectsDevice(s.connect(), "device_unavailable");
    assert.deepEqual([...Deno.readDirSync(s.dir)], []);
    assert.ok(!s.store.has(s.volumeId));
  } finally {
    await s.cleanup();
  }
});

Deno.test("BlockServer.export() with a new consumer key cuts off the old consumer", async () => {
  const s = await setupVolume();
  try {
    const fresh = generateTunnelKeys();
    await s.server.export(s.volumeId, {
      serverStatic: s.serverKeys,
      clientPublic: fresh.publicKey,
    });
    await until(() => s.deaths.length > 0, 1000);
    await rejectsDevice(s.connect(), "device_unavailable");
    const c = await BlockClient.connect(s.endpoint, { ...s.params, clientStatic: fresh });
    assert.equal(c.blockCount, 64);
    await c.close();
    assert.deepEqual(s.server.exported(), [s.volumeId]);
  } finally {
    await s.cleanup();
  }
});

Deno.test("BlockClient.connect() refuses bad settings and unknown keys clearly", async () => {
  const s = await setupVolume();
  try {
    await assert.rejects(s.connect({ timeoutMs: 0 }), ValidationError);
    await assert.rejects(s.connect({ heartbeatMs: -5 }), ValidationError);
    const err = await rejectsDevice(
      BlockClient.connect(s.endpoint, { ...s.params, clientStatic: generateTunnelKeys() }),
      "device_unavailable",
    );
    assert.match(err.message, /refused/);
    await rejectsDevice(
      BlockClient.connect(s.endpoint, { ...s.params, volumeId: crypto.randomUUID() }),
      "device_unavailable",
    );
  } finally {
    await s.cleanup();
  }
});

Deno.test("BlockClient.close() fails pending and later calls without calling onDead", async () => {
  const s = await setupVolume({ proxy: true });
  try {
    s.proxy!.stall();
    const pending = s.client.read(0, 1).then(() => undefined, (e) => e);
    await s.client.close();
    const err = await pending;
    assert.ok(err instanceof DeviceError && err.code === "device_unavailable", String(err));
    await rejectsDevice(s.client.read(0, 1), "device_unavailable");
    assert.equal(s.deaths.length, 0);
  } finally {
    await s.cleanup();
  }
});

Deno.test("BlockClient.read() gives up when its signal aborts", async () => {
  const s = await setupVolume({ proxy: true });
  try {
    s.proxy!.stall();
    const ac = new AbortController();
    const p = s.client.read(0, 1, ac.signal);
    const reason = new DeviceError("Slot 3 is away", "device_unavailable");
    ac.abort(reason);
    await assert.rejects(p, (e) => e === reason);
    await assert.rejects(s.client.read(0, 1, ac.signal), (e) => e === reason);
    s.proxy!.resume();
    assert.equal((await s.client.read(0, 1)).data.length, 4096);
  } finally {
    await s.cleanup();
  }
});

/** Sends requests through a raw tunnel and collects the answers by id. */
async function exchange(t: Tunnel, frames: Uint8Array[][], ids: number[]) {
  for (const f of frames) await t.send(f);
  const got = new Map<number, ReturnType<typeof decodeResponse>>();
  while (ids.some((id) => !got.has(id))) {
    const f = await t.receive();
    assert.ok(f, "the server keeps the tunnel open");
    const r = decodeResponse(f);
    assert.ok(r, "every answer is well formed");
    got.set(r.id, r);
  }
  return got;
}

Deno.test("Hostile frames never crash the BlockServer and change nothing", async () => {
  const s = await setupVolume({ blockSize: 4096, blockCount: 32, proxy: true });
  try {
    const x = testBlocks(32, 8);
    await s.client.write(0, x.data, x.tags);
    const before = await s.client.read(0, 32);

    // Garbage before any handshake.
    for (const n of [1, 87, 88, 89, 4000]) {
      const conn = await Deno.connect(s.endpoint);
      await conn.write(randomBytes(n)).catch(() => 0);
      // A whole hello's worth of garbage is refused at once; less, the consumer gives up on.
      if (n >= 88) assert.equal(await conn.read(new Uint8Array(64)).catch(() => null), null);
      conn.close();
    }

    // Garbage inside an established tunnel: the server closes that tunnel only.
    await s.proxy!.inject("up", randomBytes(300));
    await until(() => s.deaths.length > 0, 2000);

    // Authenticated nonsense: the consumer's keys, but malformed requests.
    const t = await connectTunnel(s.endpoint, s.params);
    try {
      const h = (op: number, id: number, first = 0, count = 0, crc = 0) =>
        encodeRequest(op as 1, id, first, count, crc);
      const reserved = h(Op.read, 3, 0, 1);
      reserved[1] = 1;
      const tags = new Uint8Array(TAG_BYTES).fill(1), data = new Uint8Array(4096).fill(2);
      const cases: [Uint8Array[], number, number][] = [
        [[h(99, 1)], 1, Status.malformed],
        [[h(Op.read, 2, 0, 0)], 2, Status.range],
        [[reserved], 3, Status.malformed],
        [[h(Op.read, 4, 32, 1)], 4, Status.range],
        [[h(Op.read, 5, 2 ** 52, 1)], 5, Status.range],
        [[h(Op.write, 6, 0, 1, crcOf(tags, data)), tags, data.subarray(1)], 6, Status.malformed],
        [[h(Op.write, 7, 0, 1, crcOf(tags, data) ^ 1), tags, data], 7, Status.checksum],
        [
          [h(Op.write, 8, 31, 2, crcOf(tags, tags, data, data)), tags, tags, data, data],
          8,
          Status.range,
        ],
        [[h(Op.read, 9, 0, MAX_REQUEST_BYTES / 4096 + 1)], 9, Status.range],
        [[h(Op.ping, 10, 1, 0)], 10, Status.malformed],
        [[h(Op.read, 11, 0, 1), Uint8Array.of(1)], 11, Status.malformed],
        [[h(Op.trim, 12, 30, 5)], 12, Status.range],
        [[h(Op.info, 13, 0, 0, 5)], 13, Status.malformed],
      ];
      const got = await exchange(t, cases.map((k) => k[0]), cases.map((k) => k[1]));
      for (const [, id, status] of cases) {
        assert.equal(got.get(id)!.status, status, `request ${id}`);
        assert.ok(got.get(id)!.payload.length > 0, "an error carries its reason");
      }
      // Frames too short to be requests, and random plaintexts: answered as malformed (or ignored
      // as unknown ops), never a crash; then a ping still comes back.
      for (let i = 0; i < 30; i++) await t.send(randomBytes(i * 3));
      const pong = await exchange(t, [[h(Op.ping, 4242)]], [4242]);
      assert.equal(pong.get(4242)!.status, Status.ok);
    } finally {
      t.close();
      await t.done;
    }

    const c = await s.connect({}, s.endpoint);
    const after = await c.read(0, 32);
    assert.deepEqual(after.data, before.data);
    assert.deepEqual(after.tags, before.tags);
  } finally {
    await s.cleanup();
  }
});
