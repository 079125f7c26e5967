// The tunnel: handshake, keys, frames, and what happens to impostors and tampering.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { ValidationError } from "../../protocol/mod.ts";
import {
  decodeHello,
  encodeReply,
  frameNonce,
  FrameSealer,
  HELLO_BYTES,
  MAX_PLAINTEXT,
  newKeyPair,
  SERVER_READY,
} from "./_handshake.ts";
import { TestProxy } from "./_test_proxy.ts";
import {
  checkTunnelKeys,
  connectTunnel,
  decodeTunnelKey,
  encodeTunnelKey,
  formatEndpoint,
  generateTunnelKeys,
  MAX_FRAME_BYTES,
  parseEndpoint,
  type Tunnel,
  TunnelError,
  type TunnelKeyPair,
  tunnelKeysFromText,
  tunnelKeysToText,
  TunnelServer,
} from "./tunnel.ts";

interface Setup {
  server: TunnelServer;
  endpoint: { hostname: string; port: number };
  volumeId: string;
  serverKeys: TunnelKeyPair;
  clientKeys: TunnelKeyPair;
  served: Tunnel[];
}

/** A tunnel server with one volume whose handler echoes every frame. */
async function setup(options: ConstructorParameters<typeof TunnelServer>[0] = {}): Promise<Setup> {
  const server = new TunnelServer(options);
  const endpoint = await server.listen({ hostname: "127.0.0.1", port: 0 });
  const volumeId = crypto.randomUUID();
  const serverKeys = generateTunnelKeys(), clientKeys = generateTunnelKeys();
  const served: Tunnel[] = [];
  server.register(
    volumeId,
    { serverStatic: serverKeys, clientPublic: clientKeys.publicKey },
    echo(served),
  );
  return { server, endpoint, volumeId, serverKeys, clientKeys, served };
}

function echo(served: Tunnel[]) {
  return async (t: Tunnel) => {
    served.push(t);
    try {
      for await (const f of t) await t.send(f);
    } catch {
      // Closed or tampered: the server closes it.
    }
  };
}

function connect(
  s: Setup,
  over: Partial<Parameters<typeof connectTunnel>[1]> = {},
  endpoint = s.endpoint,
) {
  return connectTunnel(endpoint, {
    volumeId: s.volumeId,
    clientStatic: s.clientKeys,
    serverPublic: s.serverKeys.publicKey,
    ...over,
  }, { timeoutMs: 2000 });
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<TunnelError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof TunnelError, `expected a TunnelError, got ${err}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}`);
}

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return b;
}

Deno.test("connectTunnel() completes a handshake and frames come back in order", async () => {
  const s = await setup();
  const t = await connect(s);
  try {
    assert.equal(t.volumeId, s.volumeId);
    const sizes = [0, 1, 15, 16, 100, 4096, 65535, 65536, 65537, 300_000, 1 << 20];
    const frames = Array.from({ length: 60 }, (_, i) => pattern(sizes[i % sizes.length], i));
    // Sent all at once: sealed in call order, echoed, received in the same order.
    await Promise.all(frames.map((f) => t.send(f)));
    for (const [i, f] of frames.entries()) {
      const got = await t.receive();
      assert.ok(got);
      assert.equal(got.length, f.length, `frame ${i}`);
      assert.deepEqual(got, f, `frame ${i}`);
    }
    // A frame given in parts is one frame.
    await t.send([pattern(10, 1), pattern(20, 2)]);
    assert.deepEqual(await t.receive(), Uint8Array.from([...pattern(10, 1), ...pattern(20, 2)]));
    assert.equal(s.served.length, 1);
    assert.equal(s.served[0].role, "server");
  } finally {
    t.close();
    await t.done;
    await s.server.close();
  }
});

Deno.test("Tunnel delivers a frame sent while the previous one is being written", async () => {
  const s = await setup();
  const t = await connect(s);
  try {
    // The second frame is queued a few microtasks after the first, whatever step the writer is
    // at then; with no traffic after it, it must still go out (and come back) at once.
    for (let ticks = 0; ticks < 12; ticks++) {
      void t.send(pattern(40, 1));
      for (let i = 0; i < ticks; i++) await Promise.resolve();
      void t.send(pattern(40, 2));
      for (const seed of [1, 2]) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const got = await Promise.race([
          t.receive(),
          new Promise<"late">((r) => (timer = setTimeout(() => r("late"), 1000))),
        ]);
        clearTimeout(timer);
        assert.deepEqual(got, pattern(40, seed), `after ${ticks} microtasks`);
      }
    }
  } finally {
    t.close();
    await s.server.close();
  }
});

Deno.test("Tunnel.send() puts an urgent frame before the frames still waiting", async () => {
  const s = await setup();
  const t = await connect(s);
  try {
    const big = Array.from({ length: 12 }, (_, i) => pattern(1 << 20, i));
    const sends = big.map((f) => t.send(f));
    sends.push(t.send(pattern(8, 99), { urgent: true }));
    const order: number[] = [];
    for (let i = 0; i < 13; i++) {
      const f = await t.receive();
      assert.ok(f);
      order.push(f.length === 8 ? 99 : f[0]);
    }
    await Promise.all(sends);
    // The first big frame may already be on its way; the urgent one comes right after it.
    assert.ok(order.indexOf(99) <= 1, `order ${order}`);
    assert.deepEqual(order.filter((x) => x !== 99), big.map((f) => f[0]));
  } finally {
    t.close();
    await s.server.close();
  }
});

Deno.test("Tunnel carries frames of the largest size and refuses larger ones", async () => {
  const s = await setup();
  const t = await connect(s);
  try {
    assert.equal(MAX_FRAME_BYTES, 4 * 1024 * 1024 + 64 * 1024);
    const big = pattern(MAX_FRAME_BYTES, 3);
    await t.send(big);
    const back = await t.receive();
    assert.ok(back);
    assert.equal(back.length, big.length);
    assert.ok(back.every((b, i) => b === big[i]));
    await assert.rejects(t.send(new Uint8Array(MAX_FRAME_BYTES + 1)), ValidationError);
    // Nothing was sent: the tunnel still works.
    await t.send(pattern(5, 5));
    assert.deepEqual(await t.receive(), pattern(5, 5));
  } finally {
    t.close();
    await s.server.close();
  }
});

Deno.test("connectTunnel() with a wrong client key is refused and reaches nothing", async () => {
  const s = await setup();
  try {
    const err = await rejectsWith(
      connect(s, { clientStatic: generateTunnelKeys() }),
      "tunnel_refused",
    );
    assert.match(err.message, /refused/);
    assert.equal(s.served.length, 0);
    // The right key still works afterwards.
    const t = await connect(s);
    t.close();
  } finally {
    await s.server.close();
  }
});

Deno.test("connectTunnel() to an unknown volume is refused", async () => {
  const s = await setup();
  try {
    await rejectsWith(connect(s, { volumeId: crypto.randomUUID() }), "tunnel_refused");
    assert.equal(s.served.length, 0);
  } finally {
    await s.server.close();
  }
});

Deno.test("connectTunnel() does not talk to a server that lacks the provider's key", async () => {
  const s = await setup();
  // An impostor knows the volume and the consumer's public key, but not the provider's private key.
  const impostor = new TunnelServer();
  const endpoint = await impostor.listen();
  const served: Tunnel[] = [];
  impostor.register(s.volumeId, {
    serverStatic: generateTunnelKeys(),
    clientPublic: s.clientKeys.publicKey,
  }, echo(served));
  try {
    const err = await connect(s, {}, endpoint).then(() => undefined, (e) => e);
    assert.ok(err instanceof TunnelError);
    assert.ok(["tunnel_refused", "tunnel_auth"].includes(err.code), err.code);
    assert.equal(served.length, 0);
  } finally {
    await impostor.close();
    await s.server.close();
  }
});

Deno.test("connectTunnel() rejects a server-ready frame not sealed with the provider's keys", async () => {
  // A raw impostor that follows the protocol with its own keys to the end.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const impostor = (async () => {
    const conn = await listener.accept();
    const buf = new Uint8Array(HELLO_BYTES);
    let have = 0;
    while (have < HELLO_BYTES) have += (await conn.read(buf.subarray(have)))!;
    decodeHello(buf);
    const eph = newKeyPair();
    await conn.write(encodeReply({ ephemeral: eph.publicKey, nonce: new Uint8Array(32) }));
    await conn.read(new Uint8Array(1024)); // the client's ready frame
    await conn.write(new FrameSealer(new Uint8Array(randomBytes(32))).seal([SERVER_READY]));
    await conn.read(new Uint8Array(16)).catch(() => null); // until the client closes
    conn.close();
  })();
  try {
    const err = await rejectsWith(
      connectTunnel({ hostname: "127.0.0.1", port }, {
        volumeId: crypto.randomUUID(),
        clientStatic: generateTunnelKeys(),
        serverPublic: generateTunnelKeys().publicKey,
      }),
      "tunnel_auth",
    );
    assert.match(err.message, /prove/);
  } finally {
    await impostor;
    listener.close();
  }
});

Deno.test("A tampered frame closes the tunnel", async () => {
  const s = await setup();
  const proxy = TestProxy.start(s.endpoint);
  const t = await connect(s, {}, proxy.endpoint);
  try {
    await t.send(pattern(100, 1));
    assert.deepEqual(await t.receive(), pattern(100, 1));
    proxy.flipNext("up", 50); // inside the next frame's ciphertext
    await t.send(pattern(100, 2));
    // The server fails to authenticate it and closes: the client sees the end of the tunnel.
    assert.equal(await t.receive(), null);
    assert.ok(t.closed);
    await s.served[0].done;
    assert.match(s.served[0].closeReason ?? "", /authenticate/);
  } finally {
    t.close();
    await proxy.close();
    await s.server.close();
  }
});

Deno.test("A tampered frame towards the consumer fails its receive", async () => {
  const s = await setup();
  const proxy = TestProxy.start(s.endpoint);
  const t = await connect(s, {}, proxy.endpoint);
  try {
    proxy.flipNext("down", 30);
    await t.send(pattern(100, 1));
    await rejectsWith(t.receive(), "tunnel_auth");
    assert.ok(t.closed);
    await assert.rejects(t.send(pattern(1, 1)), TunnelError);
    assert.equal(await t.receive(), null);
  } finally {
    t.close();
    await proxy.close();
    await s.server.close();
  }
});

Deno.test("TunnelServer closes connections that send garbage or stall the handshake", async () => {
  const s = await setup({ handshakeTimeoutMs: 300 });
  try {
    for (const bytes of [randomBytes(HELLO_BYTES), randomBytes(10), randomBytes(5000)]) {
      const c = await Deno.connect(s.endpoint);
      await c.write(bytes).catch(() => 0);
      const start = performance.now();
      const n = await c.read(new Uint8Array(100)).catch(() => null);
      assert.equal(n, null, "the server answers garbage with nothing but a close");
      assert.ok(performance.now() - start < 2000);
      c.close();
    }
    // Silent after connecting: closed at the handshake deadline.
    const c = await Deno.connect(s.endpoint);
    const start = performance.now();
    assert.equal(await c.read(new Uint8Array(100)).catch(() => null), null);
    const waited = performance.now() - start;
    assert.ok(waited >= 250 && waited < 2000, `closed after ${waited} ms`);
    c.close();
    // The server still serves its volume.
    const t = await connect(s);
    await t.send(pattern(3, 3));
    assert.deepEqual(await t.receive(), pattern(3, 3));
    t.close();
    assert.equal(s.served.length, 1);
  } finally {
    await s.server.close();
  }
});

Deno.test("TunnelServer.unregister() closes the volume's tunnels and refuses new ones", async () => {
  const s = await setup();
  const t = await connect(s);
  try {
    await s.server.unregister(s.volumeId);
    assert.equal(await t.receive(), null);
    assert.deepEqual(s.server.volumes(), []);
    await rejectsWith(connect(s), "tunnel_refused");
  } finally {
    t.close();
    await s.server.close();
  }
});

Deno.test("TunnelServer.register() with a new consumer key closes tunnels of the old one", async () => {
  const s = await setup();
  const t = await connect(s);
  try {
    // Same keys again: the tunnel stays.
    s.server.register(s.volumeId, {
      serverStatic: s.serverKeys,
      clientPublic: s.clientKeys.publicKey,
    }, echo(s.served));
    await t.send(pattern(4, 4));
    assert.deepEqual(await t.receive(), pattern(4, 4));
    const newClient = generateTunnelKeys();
    s.server.register(s.volumeId, {
      serverStatic: s.serverKeys,
      clientPublic: newClient.publicKey,
    }, echo(s.served));
    assert.equal(await t.receive(), null);
    await rejectsWith(connect(s), "tunnel_refused");
    const t2 = await connect(s, { clientStatic: newClient });
    t2.close();
  } finally {
    t.close();
    await s.server.close();
  }
});

Deno.test("connectTunnel() fails clearly when nothing listens or the server never answers", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  const params = {
    volumeId: crypto.randomUUID(),
    clientStatic: generateTunnelKeys(),
    serverPublic: generateTunnelKeys().publicKey,
  };
  // Accepts but never answers.
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const c of l) held.push(c);
  })();
  const start = performance.now();
  await rejectsWith(
    connectTunnel({ hostname: "127.0.0.1", port }, params, { timeoutMs: 300 }),
    "tunnel_timeout",
  );
  assert.ok(performance.now() - start < 2000);
  l.close();
  await accepting;
  for (const c of held) c.close();
  await rejectsWith(connectTunnel({ hostname: "127.0.0.1", port }, params), "tunnel_unreachable");
});

Deno.test("Tunnel keys encode as base64url and are checked", () => {
  const k = generateTunnelKeys();
  checkTunnelKeys(k);
  const text = tunnelKeysToText(k);
  assert.equal(text.publicKey.length, 43);
  assert.match(text.privateKey, /^[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(tunnelKeysFromText(text), k);
  assert.deepEqual(decodeTunnelKey(encodeTunnelKey(k.publicKey)), k.publicKey);
  for (
    const bad of [
      "",
      "abc",
      text.publicKey + "A",
      text.publicKey.slice(0, 42) + "B",
      "+".repeat(43),
    ]
  ) {
    assert.throws(() => decodeTunnelKey(bad), ValidationError, bad);
  }
  assert.throws(
    () =>
      tunnelKeysFromText({
        publicKey: text.publicKey,
        privateKey: tunnelKeysToText(generateTunnelKeys()).privateKey,
      }),
    /not the private key's/,
  );
  assert.throws(() => encodeTunnelKey(new Uint8Array(31)), ValidationError);
});

Deno.test("TunnelServer.register() and connectTunnel() refuse invalid ids and keys", async () => {
  const server = new TunnelServer();
  const k = generateTunnelKeys();
  const handler = () => {};
  assert.throws(
    () => server.register("../etc", { serverStatic: k, clientPublic: k.publicKey }, handler),
    ValidationError,
  );
  assert.throws(
    () =>
      server.register(
        crypto.randomUUID(),
        { serverStatic: k, clientPublic: new Uint8Array(32) },
        handler,
      ),
    /low order/,
  );
  assert.throws(
    () =>
      server.register(crypto.randomUUID(), {
        serverStatic: { ...k, publicKey: generateTunnelKeys().publicKey },
        clientPublic: k.publicKey,
      }, handler),
    /not the private key's/,
  );
  assert.deepEqual(server.volumes(), []);
  await assert.rejects(
    connectTunnel("127.0.0.1:1", { volumeId: "nope", clientStatic: k, serverPublic: k.publicKey }),
    ValidationError,
  );
  await assert.rejects(
    connectTunnel("127.0.0.1:1", {
      volumeId: crypto.randomUUID(),
      clientStatic: k,
      serverPublic: new Uint8Array(32),
    }),
    /low order/,
  );
  await server.close();
});

Deno.test("parseEndpoint() reads host:port and [v6]:port", () => {
  assert.deepEqual(parseEndpoint("203.0.113.9:7410"), { hostname: "203.0.113.9", port: 7410 });
  assert.deepEqual(parseEndpoint("[2001:db8::1]:7410"), { hostname: "2001:db8::1", port: 7410 });
  assert.deepEqual(parseEndpoint("node.example:1"), { hostname: "node.example", port: 1 });
  assert.equal(formatEndpoint({ hostname: "2001:db8::1", port: 7410 }), "[2001:db8::1]:7410");
  for (const bad of ["", "1.2.3.4", "1.2.3.4:0", "1.2.3.4:65536", "2001:db8::1:80", "a b:1"]) {
    assert.throws(() => parseEndpoint(bad), ValidationError, bad);
  }
});

Deno.test("FrameSealer numbers frames in its nonces and stops before its limit", () => {
  assert.deepEqual(frameNonce(0), new Uint8Array(12));
  assert.deepEqual(frameNonce(1), Uint8Array.of(0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0));
  assert.deepEqual(frameNonce(2 ** 32 + 258), Uint8Array.of(0, 0, 0, 0, 2, 1, 0, 0, 1, 0, 0, 0));
  const s = new FrameSealer(new Uint8Array(32), 3);
  const frames = [0, 1, 2].map(() => s.seal([Uint8Array.of(1, 2, 3)]));
  // Same plaintext, different counters: different ciphertexts.
  assert.notDeepEqual(frames[0], frames[1]);
  assert.throws(() => s.seal([Uint8Array.of(1)]), /counter/);
  assert.throws(
    () => new FrameSealer(new Uint8Array(32)).seal([new Uint8Array(MAX_PLAINTEXT + 1)]),
    ValidationError,
  );
});
