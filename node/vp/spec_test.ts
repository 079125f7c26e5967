// The worked example of docs/protocol/blocks.md is what the implementation computes, byte for byte.
import assert from "node:assert/strict";
import { crc32 } from "node:zlib";
import { fromHex, toHex } from "../../protocol/mod.ts";
import {
  CLIENT_READY,
  clientSecrets,
  decodeHello,
  decodeReply,
  deriveKeys,
  encodeHello,
  encodeReply,
  FrameOpener,
  FrameSealer,
  publicKeyOf,
  scheduleInputs,
  SERVER_READY,
  serverSecrets,
  x25519,
} from "./_handshake.ts";
import {
  crcOf,
  decodeInfo,
  encodeInfo,
  encodeReason,
  encodeRequest,
  encodeResponse,
  MAX_REQUEST_BYTES,
  Op,
  Status,
} from "./_wire.ts";
import { encodeTunnelKey } from "./tunnel.ts";

const md = await Deno.readTextFile(new URL("../../docs/protocol/blocks.md", import.meta.url));
const example = md.slice(md.indexOf("## Worked example"), md.indexOf("## Measured"));

/** The hex digits after `label` at the start of a line, with the indented lines that follow. */
function hexAfter(label: string, from = ""): string {
  const lines = example.slice(example.indexOf(from)).split("\n");
  const at = lines.findIndex((l) => l.startsWith(label + " "));
  assert.ok(at >= 0, `no line "${label}" in the example`);
  let text = lines[at].slice(label.length);
  for (let i = at + 1; i < lines.length && /^\s{4,}[0-9a-f]/.test(lines[i]); i++) text += lines[i];
  return text.replace(/\(.*?\)/g, "").split("|")[0].replace(/[^0-9a-f]/g, "");
}

const seq = (start: number) => Uint8Array.from({ length: 32 }, (_, i) => start + i);
const volumeId = "8a4c6f52-3c1e-4f0e-9a53-8f6f2b3c1d20";
const cs = seq(0x01), ss = seq(0x21), ce = seq(0x41), se = seq(0x61);
const cn = seq(0xa0), sn = seq(0xc0);
const CS = publicKeyOf(cs), SS = publicKeyOf(ss), CE = publicKeyOf(ce), SE = publicKeyOf(se);

Deno.test("blocks.md: X25519 is RFC 7748's", () => {
  // RFC 7748 section 6.1.
  const a = fromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  const bPub = fromHex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  assert.equal(
    toHex(publicKeyOf(a)),
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
  );
  assert.equal(
    toHex(x25519(a, bPub)),
    "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742",
  );
  assert.throws(() => x25519(a, new Uint8Array(32)), /low order/);
});

Deno.test("blocks.md: the example's keys, hello and reply", () => {
  assert.equal(hexAfter("consumer static   ", "Public keys:"), toHex(CS));
  assert.equal(hexAfter("provider static   ", "Public keys:"), toHex(SS));
  assert.equal(hexAfter("consumer ephemeral", "Public keys:"), toHex(CE));
  assert.equal(hexAfter("provider ephemeral", "Public keys:"), toHex(SE));
  assert.ok(example.includes(`(text: ${encodeTunnelKey(CS)})`));
  assert.ok(example.includes(`(text: ${encodeTunnelKey(SS)})`));
  const hello = encodeHello({ volumeId, ephemeral: CE, nonce: cn });
  const reply = encodeReply({ ephemeral: SE, nonce: sn });
  assert.equal(hexAfter("hello "), toHex(hello));
  assert.equal(hexAfter("reply "), toHex(reply));
  assert.equal(hello.length, 88);
  assert.equal(reply.length, 72);
  assert.deepEqual(decodeHello(hello), { volumeId, ephemeral: CE, nonce: cn });
  assert.deepEqual(decodeReply(reply), { ephemeral: SE, nonce: sn });
});

Deno.test("blocks.md: the example's key schedule, from either side", () => {
  const dh = clientSecrets(cs, ce, SS, SE);
  assert.deepEqual(serverSecrets(ss, se, CS, CE).map(toHex), dh.map(toHex));
  for (const i of [1, 2, 3, 4]) assert.equal(hexAfter(`dh${i} `), toHex(dh[i - 1]));
  const input = {
    volumeId,
    clientStatic: CS,
    serverStatic: SS,
    clientEphemeral: CE,
    serverEphemeral: SE,
    clientNonce: cn,
    serverNonce: sn,
    dh,
  };
  const { info, salt, ikm } = scheduleInputs(input);
  assert.equal(hexAfter("info "), toHex(info));
  assert.equal(info.length, 98);
  assert.equal(salt.length, 64);
  assert.equal(ikm.length, 128);
  const keys = deriveKeys(input);
  assert.equal(hexAfter("key c→s"), toHex(keys.clientToServer));
  assert.equal(hexAfter("key s→c"), toHex(keys.serverToClient));
});

Deno.test("blocks.md: the example's frames seal and open", () => {
  const keys = deriveKeys({
    volumeId,
    clientStatic: CS,
    serverStatic: SS,
    clientEphemeral: CE,
    serverEphemeral: SE,
    clientNonce: cn,
    serverNonce: sn,
    dh: clientSecrets(cs, ce, SS, SE),
  });
  const up = new FrameSealer(keys.clientToServer), down = new FrameSealer(keys.serverToClient);
  const upOpen = new FrameOpener(keys.clientToServer),
    downOpen = new FrameOpener(keys.serverToClient);
  const open = (o: FrameOpener, frame: string) => {
    const b = fromHex(frame);
    return o.open(b.subarray(0, 4), b.subarray(4));
  };
  assert.equal(hexAfter("c→s #0"), toHex(up.seal([CLIENT_READY])));
  assert.equal(hexAfter("s→c #0"), toHex(down.seal([SERVER_READY])));
  assert.deepEqual(open(upOpen, hexAfter("c→s #0")), CLIENT_READY);
  assert.deepEqual(open(downOpen, hexAfter("s→c #0")), SERVER_READY);

  const request = encodeRequest(Op.info, 1);
  assert.equal(hexAfter("request "), toHex(request));
  assert.equal(hexAfter("c→s #1"), toHex(up.seal([request])));
  const response = [
    encodeResponse(Op.info, Status.ok, 1),
    encodeInfo(65536, 1310, MAX_REQUEST_BYTES),
  ];
  const line = example.split("\n").find((l) => l.startsWith("response "))!;
  assert.equal(
    line.slice(9).replace(/[^0-9a-f]/g, ""),
    toHex(Uint8Array.from([...response[0], ...response[1]])),
  );
  assert.equal(hexAfter("s→c #1"), toHex(down.seal(response)));
  const info = open(downOpen, (open(upOpen, hexAfter("c→s #1")), hexAfter("s→c #1")));
  assert.deepEqual(decodeInfo(info.subarray(16)), {
    blockSize: 65536,
    blockCount: 1310,
    maxRequestBytes: 4 * 1024 * 1024,
  });
  // A flipped bit anywhere fails.
  const bad = fromHex(hexAfter("s→c #1"));
  bad[20] ^= 1;
  assert.throws(() =>
    new FrameOpener(keys.serverToClient).open(bad.subarray(0, 4), bad.subarray(4))
  );
});

Deno.test("blocks.md: the example's requests, responses and checks", () => {
  assert.equal((crc32(new TextEncoder().encode("123456789")) >>> 0).toString(16), "cbf43926");
  const tag = new Uint8Array(32).fill(1), block = new Uint8Array(4096).fill(0xab);
  const crc = crcOf(tag, block);
  assert.equal(crc.toString(16), "cb14261b");
  const zero = crc32(new Uint8Array(4096 + 32)) >>> 0;
  assert.equal(zero.toString(16), "2525da09");
  assert.equal(((crc ^ zero) >>> 0).toString(16), "ee31fc12");
  assert.ok(example.includes("cb14261b XOR 2525da09 = ee31fc12"));
  assert.equal(hexAfter("write  "), toHex(encodeRequest(Op.write, 3, 8, 1, crc)));
  assert.equal(hexAfter("read   "), toHex(encodeRequest(Op.read, 2, 8, 2)));
  const reason = "Blocks 1309..1310 are past the end (1310 blocks)";
  assert.equal(hexAfter("error  "), toHex(encodeResponse(Op.read, Status.range, 4)));
  assert.ok(example.includes(`"${reason}"`));
  assert.equal(new TextDecoder().decode(encodeReason(reason)), reason);
  assert.equal(encodeReason("é".repeat(200)).length, 256);
  assert.equal(encodeReason("a" + "é".repeat(200)).length, 255);
  assert.equal(
    new TextDecoder("utf-8", { fatal: true }).decode(encodeReason("a€".repeat(100))).length,
    128,
  );
  assert.deepEqual(encodeReason("a\nb"), new TextEncoder().encode("a b"));
});
