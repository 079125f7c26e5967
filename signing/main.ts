/**
 * `deno task sign`: the offline signing tool for release ceremonies. Its task runs with Deno's
 * network permission denied, so it cannot reach a network; it also refuses to run while a
 * non-loopback network interface is up, unless told `--i-know-this-is-not-airgapped`. Signatures
 * move between machines as files. Every command is recorded in a transcript.
 *
 * The only place that reads flags and environment for this binary.
 *
 * @module
 */

import { createHash } from "node:crypto";
import process from "node:process";
import { parseArgs } from "node:util";
import { Metadata, MetadataKind, Signature } from "@tufjs/models";
import { canonicalize } from "@tufjs/canonical-json";
import { fromHex, toHex, TrueCloudError, ValidationError } from "../protocol/mod.ts";
import {
  buildRoot,
  buildSnapshot,
  buildTargets,
  buildTimestamp,
  EXPIRY_DAYS,
  signWith,
  type TargetInfo,
  tufExpiry,
  tufPublicKey,
  type TufSigner,
  tufSigner,
} from "../library/tuf.ts";
import { describeTarget } from "../library/repository.ts";
import { liveInterfaces } from "./airgap.ts";
import { ed25519Verify, generateEd25519 } from "./ed25519.ts";
import {
  DEFAULT_SCRYPT_N,
  keyFileSchema,
  type KeyRole,
  MIN_SCRYPT_N,
  openKey,
  sealKey,
} from "./keyfile.ts";
import { formatPublicKey, signMinisign } from "./minisign.ts";
import {
  appendEntry,
  fileSha256,
  readTranscript,
  signTranscript,
  verifyTranscript,
} from "./transcript.ts";

const USAGE = `Usage: deno task sign COMMAND [flags]

Offline signing for releases (docs/protocol/releases.md). Runs without network permission and
refuses to run while a non-loopback network interface is up.

Commands:
  keygen --role ROLE --out KEYFILE [--comment TEXT]     make an encrypted key (root, targets,
                                                        snapshot, timestamp, release)
  pubkey KEYFILE                                        show a key's TUF key id and minisign .pub
  root --version N --root-key F… --threshold N --targets-key F… --snapshot-key F
       --timestamp-key F --out FILE [--expires-days D]  write unsigned root metadata (from public keys)
  targets --version N --out FILE [--expires-days D] FILE=PATH[=VERSION]…
                                                        write unsigned targets metadata
  sign METADATA --key KEYFILE --out SIGFILE             sign metadata; the signature is a file
  import METADATA SIGFILE… --out FILE                   check signatures and add them to metadata
  online --targets FILE --snapshot-key F --timestamp-key F --version N --out-dir DIR
                                                        snapshot and timestamp for signed targets
  minisign FILE --key KEYFILE --trusted-comment TEXT [--out SIGFILE]
  transcript-sign --key KEYFILE                         sign the transcript as it stands
  transcript-verify                                     check the transcript's signatures

Flags for every command:
  --transcript FILE   the ceremony transcript (default ./transcript.json)
  --who NAME          who runs this step, for the transcript (default: $USER)
  --passphrase-file F read the passphrase from a file instead of the terminal
  --kdf-cost N        scrypt cost of new keys, a power of two from 16384 (default 131072)
  --development       mark metadata as signed by development keys
  --i-know-this-is-not-airgapped  run although a network interface is up`;

class UsageError extends Error {}

async function readPassphrase(file: string | undefined, confirm: boolean): Promise<string> {
  if (file) return (await Deno.readTextFile(file)).replace(/\r?\n$/, "");
  if (!Deno.stdin.isTerminal()) {
    throw new UsageError("No terminal to ask the passphrase on: use --passphrase-file");
  }
  const ask = async (label: string) => {
    await Deno.stderr.write(new TextEncoder().encode(label));
    Deno.stdin.setRaw(true);
    const bytes: number[] = [];
    try {
      const buf = new Uint8Array(1);
      for (;;) {
        const n = await Deno.stdin.read(buf);
        if (n === null || buf[0] === 13 || buf[0] === 10) break;
        if (buf[0] === 3) throw new UsageError("Interrupted");
        if (buf[0] === 127) bytes.pop();
        else bytes.push(buf[0]);
      }
    } finally {
      Deno.stdin.setRaw(false);
      await Deno.stderr.write(new TextEncoder().encode("\n"));
    }
    return new TextDecoder().decode(new Uint8Array(bytes));
  };
  const p = await ask("Passphrase: ");
  if (confirm && (await ask("Again: ")) !== p) throw new UsageError("The passphrases differ");
  return p;
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (err) {
    throw new UsageError(`Cannot read ${path}: ${(err as Error).message}`);
  }
}

async function publicKeyOf(keyFile: string): Promise<Uint8Array> {
  const r = keyFileSchema.safeParse(await readJson(keyFile));
  if (!r.success) throw new UsageError(`${keyFile} is not a key file`);
  return fromHex(r.data.publicKey);
}

/** A TUF key from a public key only: for building metadata, never for signing. */
function publicSigner(publicKey: Uint8Array): TufSigner {
  const { keyId, key } = tufPublicKey(publicKey);
  return {
    keyId,
    key,
    sign: () => {
      throw new Error("Only a public key is at hand");
    },
  };
}

const sha256Hex = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

const KINDS = {
  root: MetadataKind.Root,
  targets: MetadataKind.Targets,
  snapshot: MetadataKind.Snapshot,
  timestamp: MetadataKind.Timestamp,
};

function parseMetadata(json: unknown, what: string) {
  const type = (json as { signed?: { _type?: string } })?.signed?._type;
  if (!type || !(type in KINDS)) throw new UsageError(`${what} is not TUF metadata`);
  try {
    return Metadata.fromJSON(KINDS[type as keyof typeof KINDS] as MetadataKind.Root, json as never);
  } catch (err) {
    throw new UsageError(`${what} is not valid ${type} metadata: ${(err as Error).message}`);
  }
}

async function writeNew(path: string, text: string): Promise<void> {
  if (path.includes("/")) {
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  }
  try {
    await Deno.writeTextFile(path, text, { createNew: true });
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) {
      throw new UsageError(`${path} exists; refusing to overwrite it`);
    }
    throw err;
  }
}

async function main(args: string[]): Promise<number> {
  // deno task runs in the project's directory; relative paths mean the caller's directory.
  const initCwd = Deno.env.get("INIT_CWD");
  if (initCwd) Deno.chdir(initCwd);
  const [command, ...rest] = args;
  if (!command || command === "--help" || command === "help") {
    console.log(USAGE);
    return command ? 0 : 2;
  }
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      role: { type: "string" },
      out: { type: "string" },
      "out-dir": { type: "string" },
      comment: { type: "string" },
      version: { type: "string" },
      "root-key": { type: "string", multiple: true },
      threshold: { type: "string" },
      "targets-key": { type: "string", multiple: true },
      "snapshot-key": { type: "string" },
      "timestamp-key": { type: "string" },
      "expires-days": { type: "string" },
      key: { type: "string" },
      targets: { type: "string" },
      "trusted-comment": { type: "string" },
      transcript: { type: "string", default: "transcript.json" },
      who: { type: "string" },
      "passphrase-file": { type: "string" },
      "kdf-cost": { type: "string" },
      development: { type: "boolean" },
      "i-know-this-is-not-airgapped": { type: "boolean" },
    },
  });

  const live = liveInterfaces();
  if (live.length && !values["i-know-this-is-not-airgapped"]) {
    throw new UsageError(
      `This machine is not airgapped: ${live.map((i) => `${i.name} (${i.address})`).join(", ")} ${
        live.length === 1 ? "is" : "are"
      } up. Take ${live.length === 1 ? "it" : "them"} down, or pass --i-know-this-is-not-airgapped`,
    );
  }

  const int = (name: string, v: string | undefined, min: number, max: number): number => {
    if (v === undefined || !/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      throw new UsageError(`--${name} must be a whole number from ${min} to ${max}`);
    }
    return Number(v);
  };
  const need = (name: string, v: string | undefined): string => {
    if (!v) throw new UsageError(`--${name} is required`);
    return v;
  };
  const who = values.who ?? Deno.env.get("USER") ?? "unknown";
  const read: Record<string, string> = {};
  const wrote: Record<string, string> = {};
  const keyIds: string[] = [];
  const noteRead = async (p: string) => (read[p] = await fileSha256(p));
  const noteWrote = async (p: string) => (wrote[p] = await fileSha256(p));
  const days = (role: keyof typeof EXPIRY_DAYS) =>
    values["expires-days"]
      ? int("expires-days", values["expires-days"], 1, 3650)
      : EXPIRY_DAYS[role];
  const open = async (keyFile: string) => {
    await noteRead(keyFile);
    const key = await openKey(
      await readJson(keyFile),
      await readPassphrase(values["passphrase-file"], false),
    );
    keyIds.push(tufSigner(key.seed).keyId);
    return key;
  };

  switch (command) {
    case "keygen": {
      const role = need("role", values.role) as KeyRole;
      if (!["root", "targets", "snapshot", "timestamp", "release"].includes(role)) {
        throw new UsageError("--role must be root, targets, snapshot, timestamp or release");
      }
      const out = need("out", values.out);
      const cost = values["kdf-cost"]
        ? int("kdf-cost", values["kdf-cost"], MIN_SCRYPT_N, 2 ** 22)
        : DEFAULT_SCRYPT_N;
      const key = await generateEd25519();
      const file = await sealKey(key, await readPassphrase(values["passphrase-file"], true), {
        role,
        comment: values.comment ?? `${role} key`,
        scryptN: cost,
      });
      await writeNew(out, JSON.stringify(file, null, 2) + "\n");
      await Deno.chmod(out, 0o600);
      await noteWrote(out);
      const id = tufSigner(key.seed).keyId;
      keyIds.push(id);
      console.log(`${out}: ${role} key ${id}`);
      break;
    }
    case "pubkey": {
      const file = positionals[0] ?? need("key", values.key);
      const pub = await publicKeyOf(file);
      console.log(`tuf key id: ${publicSigner(pub).keyId}`);
      console.log(`public key: ${toHex(pub)}`);
      process.stdout.write(formatPublicKey({ keyId: pub.slice(0, 8), publicKey: pub }));
      return 0;
    }
    case "root": {
      const version = int("version", values.version, 1, 1e9);
      const threshold = int("threshold", values.threshold, 1, 16);
      const rootKeys = values["root-key"] ?? [];
      if (rootKeys.length < threshold) {
        throw new UsageError("--threshold is more than the number of --root-key");
      }
      const pubs = (files: string[]) =>
        Promise.all(
          files.map(async (f) => (await noteRead(f), publicSigner(await publicKeyOf(f)))),
        );
      const md = buildRoot({
        root: await pubs(rootKeys),
        rootThreshold: threshold,
        targets: await pubs(values["targets-key"] ?? []),
        snapshot: (await pubs([need("snapshot-key", values["snapshot-key"])]))[0],
        timestamp: (await pubs([need("timestamp-key", values["timestamp-key"])]))[0],
      }, {
        version,
        expires: tufExpiry(new Date(), days("root")),
        development: values.development,
      });
      const out = need("out", values.out);
      await writeNew(out, JSON.stringify(md.toJSON(), null, 2) + "\n");
      await noteWrote(out);
      console.log(
        `${out}: unsigned root v${version}, ${threshold} of ${rootKeys.length} root keys`,
      );
      break;
    }
    case "targets": {
      const version = int("version", values.version, 1, 1e9);
      const infos: TargetInfo[] = [];
      for (const spec of positionals) {
        const [file, path, ver] = spec.split("=");
        if (!file || !path) {
          throw new UsageError(`Give targets as FILE=PATH[=VERSION], got "${spec}"`);
        }
        await noteRead(file);
        infos.push(await describeTarget(file, path, ver ? { version: ver } : undefined));
      }
      const md = buildTargets(infos, {
        version,
        expires: tufExpiry(new Date(), days("targets")),
        development: values.development,
      });
      const out = need("out", values.out);
      await writeNew(out, JSON.stringify(md.toJSON(), null, 2) + "\n");
      await noteWrote(out);
      console.log(`${out}: unsigned targets v${version}, ${infos.length} targets`);
      break;
    }
    case "sign": {
      const mdFile = positionals[0];
      if (!mdFile) throw new UsageError("sign takes the METADATA file");
      await noteRead(mdFile);
      const md = parseMetadata(await readJson(mdFile), mdFile);
      const key = await open(need("key", values.key));
      const signer = tufSigner(key.seed);
      const bytes = new TextEncoder().encode(canonicalize(md.signed.toJSON()));
      const sig = signer.sign(bytes);
      const out = need("out", values.out);
      await writeNew(
        out,
        JSON.stringify(
          {
            format: "truecloud-signature-v1",
            type: md.signed.type,
            version: md.signed.version,
            signedSha256: sha256Hex(bytes),
            keyid: signer.keyId,
            publicKey: toHex(key.publicKey),
            sig: sig.sig,
          },
          null,
          2,
        ) + "\n",
      );
      await noteWrote(out);
      console.log(`${out}: ${md.signed.type} v${md.signed.version} signed by ${signer.keyId}`);
      break;
    }
    case "import": {
      const [mdFile, ...sigFiles] = positionals;
      if (!mdFile || !sigFiles.length) {
        throw new UsageError("import takes METADATA and one or more SIGFILEs");
      }
      await noteRead(mdFile);
      const md = parseMetadata(await readJson(mdFile), mdFile);
      const bytes = new TextEncoder().encode(canonicalize(md.signed.toJSON()));
      for (const f of sigFiles) {
        await noteRead(f);
        const s = await readJson(f) as {
          format?: string;
          keyid?: string;
          publicKey?: string;
          sig?: string;
        };
        if (s.format !== "truecloud-signature-v1" || !s.keyid || !s.publicKey || !s.sig) {
          throw new UsageError(`${f} is not a signature file`);
        }
        if (publicSigner(fromHex(s.publicKey)).keyId !== s.keyid) {
          throw new UsageError(`${f}: key id does not match its key`);
        }
        if (!(await ed25519Verify(fromHex(s.publicKey), fromHex(s.sig), bytes))) {
          throw new UsageError(`${f} does not sign this ${md.signed.type} metadata`);
        }
        md.signatures[s.keyid] = new Signature({ keyID: s.keyid, sig: s.sig });
        keyIds.push(s.keyid);
      }
      const out = need("out", values.out);
      await writeNew(out, canonicalize(md.toJSON()));
      await noteWrote(out);
      console.log(
        `${out}: ${md.signed.type} v${md.signed.version} with ${
          Object.keys(md.signatures).length
        } signatures`,
      );
      break;
    }
    case "online": {
      const tFile = need("targets", values.targets);
      await noteRead(tFile);
      const targets = parseMetadata(await readJson(tFile), tFile);
      if ((targets.signed.type as string) !== "targets") {
        throw new UsageError(`${tFile} is not targets metadata`);
      }
      const version = int("version", values.version, 1, 1e9);
      const snapKey = tufSigner((await open(need("snapshot-key", values["snapshot-key"]))).seed);
      const tsKey = tufSigner((await open(need("timestamp-key", values["timestamp-key"]))).seed);
      const now = new Date();
      const snapshot = signWith(
        buildSnapshot(targets as never, {
          version,
          expires: tufExpiry(now, EXPIRY_DAYS.snapshot),
          development: values.development,
        }),
        [snapKey],
      );
      const timestamp = signWith(
        buildTimestamp(snapshot, {
          version,
          expires: tufExpiry(now, EXPIRY_DAYS.timestamp),
          development: values.development,
        }),
        [tsKey],
      );
      const dir = need("out-dir", values["out-dir"]);
      await Deno.mkdir(dir, { recursive: true });
      await Deno.writeTextFile(`${dir}/targets.json`, canonicalize(targets.toJSON()));
      await Deno.writeTextFile(`${dir}/snapshot.json`, canonicalize(snapshot.toJSON()));
      await Deno.writeTextFile(`${dir}/timestamp.json`, canonicalize(timestamp.toJSON()));
      for (const n of ["targets.json", "snapshot.json", "timestamp.json"]) {
        await noteWrote(`${dir}/${n}`);
      }
      console.log(`${dir}: snapshot and timestamp v${version}`);
      break;
    }
    case "minisign": {
      const file = positionals[0];
      if (!file) throw new UsageError("minisign takes the FILE to sign");
      await noteRead(file);
      const key = await open(need("key", values.key));
      const out = values.out ?? `${file}.minisig`;
      const text = await signMinisign(
        { ...key, keyId: key.publicKey.slice(0, 8) },
        (await Deno.open(file)).readable,
        {
          trusted: need("trusted-comment", values["trusted-comment"]),
        },
      );
      await writeNew(out, text);
      await noteWrote(out);
      console.log(
        `${out}: minisign signature by ${toHex(key.publicKey.slice(0, 8).reverse()).toUpperCase()}`,
      );
      break;
    }
    case "transcript-sign": {
      const t = await readTranscript(values.transcript);
      const key = await openKey(
        await readJson(need("key", values.key)),
        await readPassphrase(values["passphrase-file"], false),
      );
      await Deno.writeTextFile(
        values.transcript,
        JSON.stringify(await signTranscript(t, key), null, 2) + "\n",
      );
      console.log(`${values.transcript}: signed by ${toHex(key.publicKey).slice(0, 16)}…`);
      return 0;
    }
    case "transcript-verify": {
      const t = await readTranscript(values.transcript);
      const signers = await verifyTranscript(t);
      console.log(
        `${values.transcript}: ${t.entries.length} steps, signed by ${signers.length} keys`,
      );
      return 0;
    }
    default:
      throw new UsageError(`Unknown command "${command}"`);
  }
  const t = await readTranscript(values.transcript);
  const entry = {
    time: new Date().toISOString(),
    who,
    command: ["sign", ...args].join(" "),
    keyIds,
    read,
    wrote,
  };
  await Deno.writeTextFile(
    values.transcript,
    JSON.stringify(appendEntry(t, entry), null, 2) + "\n",
  );
  return 0;
}

if (import.meta.main) {
  try {
    Deno.exit(await main(Deno.args));
  } catch (err) {
    if (
      err instanceof UsageError || err instanceof ValidationError ||
      (err instanceof TypeError && "code" in err)
    ) {
      console.error(`sign: ${(err as Error).message.split("\n")[0]}`);
      Deno.exit(2);
    }
    const code = err instanceof TrueCloudError ? ` (${err.code})` : "";
    console.error(`sign: failed${code}: ${(err as Error).message.split("\n")[0]}`);
    Deno.exit(1);
  }
}
