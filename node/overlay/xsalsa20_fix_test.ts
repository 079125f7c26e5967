import assert from "node:assert/strict";
import xsalsa20 from "xsalsa20";
import { xsalsa20Fixed } from "./xsalsa20_fix.ts";

Deno.test("xsalsa20 under pnet: ciphers taking turns with megabyte chunks neither grow the memory nor change the stream", () => {
  assert.ok(xsalsa20Fixed);
  const key = crypto.getRandomValues(new Uint8Array(32));
  const nonces = Array.from({ length: 12 }, () => crypto.getRandomValues(new Uint8Array(24)));
  const ciphers = nonces.map((n) => xsalsa20(n, key));
  const chunk = new Uint8Array(1 << 20).map((_, i) => i * 7);
  // Without the fix this throws "Maximum memory size exceeded" within a few dozen turns.
  const outputs = nonces.map(() => [] as Uint8Array[]);
  for (let turn = 0; turn < 400; turn++) {
    const i = turn % ciphers.length;
    const size = turn % 5 === 0 ? chunk.length : 1000 + turn;
    outputs[i].push(ciphers[i].update(chunk.subarray(0, size)));
  }
  // Megabyte updates went through in pieces: the shared memory kept its first size (640 KiB).
  const memory = (ciphers[0] as unknown as { _xor: { _memory: Uint8Array } })._xor._memory;
  assert.equal(memory.byteLength, 640 * 1024, "WebAssembly memory");
  // Each cipher's stream is the one a fresh cipher gives for the same input in one piece.
  for (let i = 0; i < ciphers.length; i++) {
    const whole = new Uint8Array(outputs[i].reduce((s, p) => s + p.length, 0));
    const input = new Uint8Array(whole.length);
    let at = 0;
    for (let turn = i; turn < 400; turn += ciphers.length) {
      const size = turn % 5 === 0 ? chunk.length : 1000 + turn;
      input.set(chunk.subarray(0, size), at);
      at += size;
    }
    at = 0;
    for (const p of outputs[i]) {
      whole.set(p, at);
      at += p.length;
    }
    assert.deepEqual(whole, xsalsa20(nonces[i], key).update(input), `cipher ${i}`);
  }
});
