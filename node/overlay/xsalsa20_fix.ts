// A fix for the cipher under every private network. `@libp2p/pnet` encrypts with the `xsalsa20`
// package, whose ciphers share one WebAssembly memory and each keep a view of it. When one cipher
// grows the memory, every other cipher's view is detached (length 0), and the package then takes
// "0" for the memory's size: that cipher's next update grows the memory again by all it uses, and
// so on at every update, until the memory reaches its maximum (about 64 MiB) and the process dies
// with "WebAssembly.Memory.grow(): Maximum memory size exceeded" — seen when several connections
// carry megabyte blocks. The fix refreshes a detached view (`grow(0)` gives the current buffer)
// before each update, so that the memory grows only when a cipher really needs more. And it feeds
// the cipher at most 64 KiB at a time: the memory holds a whole update, and a WebAssembly memory
// never shrinks, so one large read from a socket would otherwise keep megabytes of an idle node's
// memory for good. (The cipher carries a partial block over from one update to the next, so the
// stream is the same in any pieces.)
import xsalsa20 from "xsalsa20";

interface WasmCipher {
  _memory: Uint8Array;
  realloc(size: number): void;
  update(input: Uint8Array, output: Uint8Array): void;
}

const probe = xsalsa20(new Uint8Array(24), new Uint8Array(32)) as unknown as { _xor: WasmCipher };
const proto = Object.getPrototypeOf(probe._xor) as WasmCipher & { truecloudFixed?: boolean };
if (typeof proto.realloc === "function" && !proto.truecloudFixed) {
  const realloc = proto.realloc;
  const update = proto.update;
  const PIECE = 64 * 1024;
  proto.update = function (this: WasmCipher, input: Uint8Array, output: Uint8Array): void {
    for (let at = 0; at < input.length; at += PIECE) {
      if (this._memory.byteLength === 0) realloc.call(this, 0); // grow(0): a fresh view, no growth
      const end = Math.min(input.length, at + PIECE);
      update.call(this, input.subarray(at, end), output.subarray(at, end));
    }
  };
  proto.truecloudFixed = true;
}

/** Whether the fix is in place (the WebAssembly implementation is the one in use). */
export const xsalsa20Fixed: boolean = !!proto.truecloudFixed;
