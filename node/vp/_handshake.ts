/**
 * The tunnel's wire format without any I/O: the hello and reply messages, X25519, the key schedule
 * and the sealing and opening of frames (`docs/protocol/blocks.md`, "The tunnel"). Private to
 * `node/vp/`; `tunnel.ts` drives it over TCP.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  hkdfSync,
  type KeyObject,
  randomBytes,
} from "node:crypto";
import {
  concatBytes,
  fromHex,
  isUuid,
  uuidFromBytes,
  uuidToBytes as uuidBytes,
  ValidationError,
} from "../../protocol/mod.ts";

/** First bytes of the hello and the reply: ASCII `TCTN`. */
export const MAGIC = Uint8Array.of(0x54, 0x43, 0x54, 0x4e);
/** The one version of the tunnel. */
export const VERSION = 1;
/** Message type of the hello. */
export const TYPE_HELLO = 1;
/** Message type of the reply. */
export const TYPE_REPLY = 2;
/** Bytes of a hello. */
export const HELLO_BYTES = 88;
/** Bytes of a reply. */
export const REPLY_BYTES = 72;
/** Bytes of an X25519 key, public or private. */
export const KEY_BYTES = 32;
/** Bytes of a handshake nonce. */
export const NONCE_BYTES = 32;
/** Bytes of the AEAD's authentication tag. */
export const AEAD_TAG_BYTES = 16;
/** The protocol label bound into the key schedule. */
export const LABEL = "truecloud-tunnel/1";
/** Plaintext of the client's first frame. */
export const CLIENT_READY = new TextEncoder().encode("client-ready");
/** Plaintext of the server's first frame. */
export const SERVER_READY = new TextEncoder().encode("server-ready");
/** Largest plaintext a frame may carry: 4 MiB of data and 64 KiB for headers and tags. */
export const MAX_PLAINTEXT = 4 * 1024 * 1024 + 64 * 1024;
/** Largest value of a frame's length field. */
export const MAX_FRAME = MAX_PLAINTEXT + AEAD_TAG_BYTES;
/** Frames a side sends at most before it closes the tunnel (its counter never wraps). */
export const FRAME_LIMIT = 2 ** 48;

const CIPHER = "chacha20-poly1305";
// DER prefixes of an X25519 key (RFC 8410): PKCS #8 private key and SubjectPublicKeyInfo.
const PKCS8_PREFIX = fromHex("302e020100300506032b656e04220420");
const SPKI_PREFIX = fromHex("302a300506032b656e032100");

/** A volume id as its 16 bytes. */
export function uuidToBytes(id: string): Uint8Array {
  if (!isUuid(id)) throw new ValidationError(`Volume id ${JSON.stringify(id)} is not a UUID`);
  return uuidBytes(id);
}

/** An X25519 private key object from its 32 raw bytes. */
export function privateKeyObject(raw: Uint8Array): KeyObject {
  if (raw.length !== KEY_BYTES) throw new ValidationError("An X25519 private key has 32 bytes");
  return createPrivateKey({
    key: Buffer.from(concatBytes([PKCS8_PREFIX, raw])),
    format: "der",
    type: "pkcs8",
  });
}

/** An X25519 public key object from its 32 raw bytes. */
export function publicKeyObject(raw: Uint8Array): KeyObject {
  if (raw.length !== KEY_BYTES) throw new ValidationError("An X25519 public key has 32 bytes");
  return createPublicKey({
    key: Buffer.from(concatBytes([SPKI_PREFIX, raw])),
    format: "der",
    type: "spki",
  });
}

/** The raw public key of a raw X25519 private key. */
export function publicKeyOf(privateKey: Uint8Array): Uint8Array {
  const der = createPublicKey(privateKeyObject(privateKey)).export({ format: "der", type: "spki" });
  return new Uint8Array(der).slice(SPKI_PREFIX.length);
}

/** A fresh raw X25519 key pair. */
export function newKeyPair(): { publicKey: Uint8Array; privateKey: Uint8Array } {
  const privateKey = new Uint8Array(randomBytes(KEY_BYTES));
  return { publicKey: publicKeyOf(privateKey), privateKey };
}

/**
 * X25519 of a private key with a public key.
 * @throws {ValidationError} When the result is all zeros (a low-order public key).
 */
export function x25519(privateKey: Uint8Array | KeyObject, publicKey: Uint8Array): Uint8Array {
  const priv = privateKey instanceof Uint8Array ? privateKeyObject(privateKey) : privateKey;
  let out: Uint8Array;
  try {
    out = new Uint8Array(
      diffieHellman({ privateKey: priv, publicKey: publicKeyObject(publicKey) }),
    );
  } catch (err) {
    throw new ValidationError("The X25519 public key is of low order", { cause: err });
  }
  if (out.every((b) => b === 0)) throw new ValidationError("The X25519 public key is of low order");
  return out;
}

/** What a hello carries. */
export interface Hello {
  volumeId: string;
  ephemeral: Uint8Array;
  nonce: Uint8Array;
}

/** What a reply carries. */
export interface Reply {
  ephemeral: Uint8Array;
  nonce: Uint8Array;
}

function header(type: number): Uint8Array {
  const h = new Uint8Array(8);
  h.set(MAGIC);
  h[4] = VERSION;
  h[5] = type;
  return h;
}

function checkHeader(b: Uint8Array, type: number, size: number, what: string): void {
  if (b.length !== size) throw new ValidationError(`A ${what} has ${size} bytes, got ${b.length}`);
  if (!MAGIC.every((m, i) => b[i] === m)) throw new ValidationError(`Not a tunnel ${what}`);
  if (b[4] !== VERSION) throw new ValidationError(`Tunnel version ${b[4]} is not supported`);
  if (b[5] !== type || b[6] !== 0 || b[7] !== 0) {
    throw new ValidationError(`Malformed tunnel ${what}`);
  }
}

/** The 88 bytes of a hello. */
export function encodeHello(h: Hello): Uint8Array {
  if (h.ephemeral.length !== KEY_BYTES || h.nonce.length !== NONCE_BYTES) {
    throw new ValidationError("A hello carries a 32-byte key and a 32-byte nonce");
  }
  return concatBytes([header(TYPE_HELLO), uuidToBytes(h.volumeId), h.ephemeral, h.nonce]);
}

/**
 * Reads a hello.
 * @throws {ValidationError} When it is not one.
 */
export function decodeHello(b: Uint8Array): Hello {
  checkHeader(b, TYPE_HELLO, HELLO_BYTES, "hello");
  return {
    volumeId: uuidFromBytes(b.subarray(8, 24)),
    ephemeral: b.slice(24, 56),
    nonce: b.slice(56, 88),
  };
}

/** The 72 bytes of a reply. */
export function encodeReply(r: Reply): Uint8Array {
  if (r.ephemeral.length !== KEY_BYTES || r.nonce.length !== NONCE_BYTES) {
    throw new ValidationError("A reply carries a 32-byte key and a 32-byte nonce");
  }
  return concatBytes([header(TYPE_REPLY), r.ephemeral, r.nonce]);
}

/**
 * Reads a reply.
 * @throws {ValidationError} When it is not one.
 */
export function decodeReply(b: Uint8Array): Reply {
  checkHeader(b, TYPE_REPLY, REPLY_BYTES, "reply");
  return { ephemeral: b.slice(8, 40), nonce: b.slice(40, 72) };
}

/** Everything the key schedule takes, as one side sees it after the hello and the reply. */
export interface ScheduleInput {
  volumeId: string;
  clientStatic: Uint8Array;
  serverStatic: Uint8Array;
  clientEphemeral: Uint8Array;
  serverEphemeral: Uint8Array;
  clientNonce: Uint8Array;
  serverNonce: Uint8Array;
  /** The four shared secrets, in the order of the spec. */
  dh: readonly [Uint8Array, Uint8Array, Uint8Array, Uint8Array];
}

/** The two directional keys. */
export interface SessionKeys {
  clientToServer: Uint8Array;
  serverToClient: Uint8Array;
}

/**
 * The client's four shared secrets: static–static, ephemeral–ephemeral, client ephemeral with
 * server static, client static with server ephemeral.
 */
export function clientSecrets(
  staticPrivate: Uint8Array | KeyObject,
  ephemeralPrivate: Uint8Array | KeyObject,
  serverStatic: Uint8Array,
  serverEphemeral: Uint8Array,
  staticStatic?: Uint8Array,
): [Uint8Array, Uint8Array, Uint8Array, Uint8Array] {
  return [
    staticStatic ?? x25519(staticPrivate, serverStatic),
    x25519(ephemeralPrivate, serverEphemeral),
    x25519(ephemeralPrivate, serverStatic),
    x25519(staticPrivate, serverEphemeral),
  ];
}

/** The server's four shared secrets, equal to the client's. */
export function serverSecrets(
  staticPrivate: Uint8Array | KeyObject,
  ephemeralPrivate: Uint8Array | KeyObject,
  clientStatic: Uint8Array,
  clientEphemeral: Uint8Array,
  staticStatic?: Uint8Array,
): [Uint8Array, Uint8Array, Uint8Array, Uint8Array] {
  return [
    staticStatic ?? x25519(staticPrivate, clientStatic),
    x25519(ephemeralPrivate, clientEphemeral),
    x25519(staticPrivate, clientEphemeral),
    x25519(ephemeralPrivate, clientStatic),
  ];
}

/** HKDF-SHA256 inputs of the key schedule: the input key material, salt and info. */
export function scheduleInputs(i: ScheduleInput): {
  ikm: Uint8Array;
  salt: Uint8Array;
  info: Uint8Array;
} {
  return {
    ikm: concatBytes(i.dh),
    salt: concatBytes([i.clientNonce, i.serverNonce]),
    info: concatBytes([
      new TextEncoder().encode(LABEL),
      uuidToBytes(i.volumeId),
      i.clientStatic,
      i.serverStatic,
    ]),
  };
}

/** Derives the directional keys (HKDF-SHA256, 64 bytes: client→server then server→client). */
export function deriveKeys(i: ScheduleInput): SessionKeys {
  const { ikm, salt, info } = scheduleInputs(i);
  const okm = new Uint8Array(hkdfSync("sha256", ikm, salt, info, 64));
  return { clientToServer: okm.slice(0, 32), serverToClient: okm.slice(32, 64) };
}

/** The 12-byte AEAD nonce of frame number `counter`: four zero bytes, then the counter, little-endian. */
export function frameNonce(counter: number): Uint8Array {
  const n = new Uint8Array(12);
  const v = new DataView(n.buffer);
  v.setUint32(4, counter % 2 ** 32, true);
  v.setUint32(8, Math.floor(counter / 2 ** 32), true);
  return n;
}

/** Seals frames in one direction: numbers them, encrypts them, prefixes their length. */
export class FrameSealer {
  readonly #key: Buffer;
  readonly #limit: number;
  #counter = 0;

  /**
   * @param key The direction's 32-byte key.
   * @param limit Frames it seals at most.
   */
  constructor(key: Uint8Array, limit = FRAME_LIMIT) {
    this.#key = Buffer.from(key);
    this.#limit = limit;
  }

  /** Frames sealed so far. */
  get counter(): number {
    return this.#counter;
  }

  /** Whether the counter is spent: no frame can be sealed any more. */
  get spent(): boolean {
    return this.#counter >= this.#limit;
  }

  /**
   * Seals a frame whose plaintext is the parts joined.
   * @returns The length field and the ciphertext with its tag.
   * @throws {ValidationError} When the plaintext is too large or the counter is spent.
   */
  seal(parts: readonly Uint8Array[]): Uint8Array {
    let plain = 0;
    for (const p of parts) plain += p.length;
    if (plain > MAX_PLAINTEXT) {
      throw new ValidationError(`A frame carries at most ${MAX_PLAINTEXT} bytes, got ${plain}`);
    }
    if (this.#counter >= this.#limit) {
      throw new ValidationError("The tunnel has sent all the frames its counter allows");
    }
    const len = plain + AEAD_TAG_BYTES;
    const frame = new Uint8Array(4 + len);
    new DataView(frame.buffer).setUint32(0, len);
    const c = createCipheriv(CIPHER, this.#key, frameNonce(this.#counter++), {
      authTagLength: AEAD_TAG_BYTES,
    });
    c.setAAD(frame.subarray(0, 4), { plaintextLength: plain });
    let at = 4;
    for (const p of parts) {
      if (p.length === 0) continue;
      const out = c.update(p);
      frame.set(out, at);
      at += out.length;
    }
    const rest = c.final();
    frame.set(rest, at);
    frame.set(c.getAuthTag(), at + rest.length);
    return frame;
  }
}

/** Opens frames in one direction, in order. */
export class FrameOpener {
  readonly #key: Buffer;
  #counter = 0;

  /** @param key The direction's 32-byte key. */
  constructor(key: Uint8Array) {
    this.#key = Buffer.from(key);
  }

  /**
   * Opens the next frame.
   * @param lengthField The frame's 4-byte length field (its associated data).
   * @param body The ciphertext and tag.
   * @returns The plaintext.
   * @throws {ValidationError} When the frame does not authenticate.
   */
  open(lengthField: Uint8Array, body: Uint8Array): Uint8Array {
    if (body.length < AEAD_TAG_BYTES) throw new ValidationError("A frame is too short");
    const d = createDecipheriv(CIPHER, this.#key, frameNonce(this.#counter++), {
      authTagLength: AEAD_TAG_BYTES,
    });
    d.setAAD(lengthField, { plaintextLength: body.length - AEAD_TAG_BYTES });
    d.setAuthTag(body.subarray(body.length - AEAD_TAG_BYTES));
    const out = d.update(body.subarray(0, body.length - AEAD_TAG_BYTES));
    try {
      d.final();
    } catch (err) {
      throw new ValidationError("A frame did not authenticate", { cause: err });
    }
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  }
}
