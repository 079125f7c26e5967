/**
 * Ceremony transcripts: what each step of a ceremony did — who, which command, which key ids,
 * the SHA-256 of every file read and written — kept as JSON next to the ceremony's files and
 * signed, as a whole, by the keys that took part (Ed25519 over the canonical JSON of the entries).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { fromHex, SignatureError, toHex, ValidationError, z } from "../protocol/mod.ts";
import { canonicalize } from "./_canonical.ts";
import { type Ed25519Key, ed25519Verify } from "./ed25519.ts";

const entrySchema = z.strictObject({
  time: z.string(),
  who: z.string().max(200),
  command: z.string().max(2000),
  keyIds: z.array(z.string()),
  read: z.record(z.string(), z.string().regex(/^[0-9a-f]{64}$/)),
  wrote: z.record(z.string(), z.string().regex(/^[0-9a-f]{64}$/)),
});
const transcriptSchema = z.strictObject({
  format: z.literal("truecloud-transcript-v1"),
  entries: z.array(entrySchema),
  signatures: z.array(
    z.strictObject({
      publicKey: z.string().regex(/^[0-9a-f]{64}$/),
      sig: z.string().regex(/^[0-9a-f]{128}$/),
    }),
  ),
});

/** One step of a ceremony. */
export type TranscriptEntry = z.output<typeof entrySchema>;
/** A transcript. */
export type Transcript = z.output<typeof transcriptSchema>;

/**
 * SHA-256 of a file, hex.
 * @param path The file.
 */
export async function fileSha256(path: string): Promise<string> {
  const h = createHash("sha256");
  for await (const c of (await Deno.open(path)).readable) h.update(c);
  return h.digest("hex");
}

/**
 * Reads a transcript file, or starts a new one when it does not exist.
 * @param path The file.
 * @throws {ValidationError} When it exists and is not a transcript.
 */
export async function readTranscript(path: string): Promise<Transcript> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      return { format: "truecloud-transcript-v1", entries: [], signatures: [] };
    }
    throw err;
  }
  const r = transcriptSchema.safeParse(JSON.parse(text));
  if (!r.success) {
    throw new ValidationError(`${path} is not a transcript`, { code: "transcript_invalid" });
  }
  return r.data;
}

/**
 * Appends an entry; signatures made before it no longer cover the transcript and are dropped.
 * @param t The transcript.
 * @param entry The step.
 */
export function appendEntry(t: Transcript, entry: TranscriptEntry): Transcript {
  return { ...t, entries: [...t.entries, entry], signatures: [] };
}

function signedBytes(t: Transcript): Uint8Array {
  return new TextEncoder().encode(canonicalize(t.entries));
}

/**
 * Signs the transcript's entries.
 * @param t The transcript.
 * @param key A key that took part.
 */
export async function signTranscript(t: Transcript, key: Ed25519Key): Promise<Transcript> {
  const sig = await key.sign(signedBytes(t));
  const others = t.signatures.filter((s) => s.publicKey !== toHex(key.publicKey));
  return { ...t, signatures: [...others, { publicKey: toHex(key.publicKey), sig: toHex(sig) }] };
}

/**
 * Verifies every signature of a transcript.
 * @param t The transcript.
 * @returns The public keys (hex) that signed it.
 * @throws {SignatureError} When any signature does not verify, or there is none.
 */
export async function verifyTranscript(t: Transcript): Promise<string[]> {
  if (!t.signatures.length) {
    throw new SignatureError("Transcript is not signed", { code: "unsigned" });
  }
  const bytes = signedBytes(t);
  for (const s of t.signatures) {
    if (!(await ed25519Verify(fromHex(s.publicKey), fromHex(s.sig), bytes))) {
      throw new SignatureError(
        `Transcript signature by ${s.publicKey.slice(0, 16)}… does not verify`,
      );
    }
  }
  return t.signatures.map((s) => s.publicKey);
}
