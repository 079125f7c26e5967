/**
 * TLS material for the gateway: loading a PEM certificate and key, and making a self-signed one for
 * the local cloud with `@peculiar/x509` (ECDSA P-256, SANs for localhost, 127.0.0.1 and ::1).
 *
 * @module
 */

// @peculiar/x509 resolves its ASN.1 providers through tsyringe, which needs this polyfill first.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { ConfigError } from "../protocol/mod.ts";

/** A certificate chain and its private key, in PEM. */
export interface TlsMaterial {
  /** Certificate chain, PEM. */
  cert: string;
  /** Private key, PEM (PKCS #8). */
  key: string;
}

function toPem(label: string, der: ArrayBuffer): string {
  const b64 = btoa(String.fromCharCode(...new Uint8Array(der)));
  return `-----BEGIN ${label}-----\n${b64.match(/.{1,64}/g)!.join("\n")}\n-----END ${label}-----\n`;
}

/**
 * Makes a self-signed certificate for local use.
 * @param options `days` of validity (default 90) and extra DNS names or IPs.
 * @returns The certificate and key in PEM.
 */
export async function makeSelfSigned(
  options: { days?: number; dnsNames?: string[]; ips?: string[] } = {},
): Promise<TlsMaterial> {
  const alg = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" };
  const keys = await crypto.subtle.generateKey(alg, true, ["sign", "verify"]) as CryptoKeyPair;
  const now = new Date();
  const dns = ["localhost", ...(options.dnsNames ?? [])];
  const ips = ["127.0.0.1", "::1", ...(options.ips ?? [])];
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Array.from(
      crypto.getRandomValues(new Uint8Array(16)),
      (b) => b.toString(16).padStart(2, "0"),
    )
      .join("").replace(/^[89a-f]/, "1"),
    name: "CN=localhost, O=True Cloud local cloud (development self-signed)",
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + (options.days ?? 90) * 86_400_000),
    keys,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        ...dns.map((value) => ({ type: "dns" as const, value })),
        ...ips.map((value) => ({ type: "ip" as const, value })),
      ]),
    ],
  });
  const pkcs8 = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return { cert: cert.toString("pem") + "\n", key: toPem("PRIVATE KEY", pkcs8) };
}

/**
 * Tells when a PEM certificate expires.
 * @param pem The certificate (the first of a chain).
 * @returns Its `notAfter`.
 * @throws {ConfigError} When it does not parse.
 */
export function certificateExpiry(pem: string): Date {
  try {
    return new x509.X509Certificate(pem).notAfter;
  } catch (cause) {
    throw new ConfigError("TLS certificate is not a PEM X.509 certificate", { cause });
  }
}

/**
 * Loads a certificate and key from files, checking that both are PEM and the certificate is valid now.
 * @param certPath Certificate chain file.
 * @param keyPath Private key file.
 * @returns The material.
 * @throws {ConfigError} Naming the file and what is wrong.
 */
export async function loadTls(certPath: string, keyPath: string): Promise<TlsMaterial> {
  const read = async (path: string, what: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (cause) {
      throw new ConfigError(`Cannot read TLS ${what} ${path}: ${(cause as Error).message}`, {
        cause,
      });
    }
  };
  const cert = await read(certPath, "certificate");
  const key = await read(keyPath, "key");
  if (!cert.includes("-----BEGIN CERTIFICATE-----")) {
    throw new ConfigError(`TLS certificate ${certPath} is not PEM`);
  }
  if (!/-----BEGIN (EC |RSA )?PRIVATE KEY-----/.test(key)) {
    throw new ConfigError(`TLS key ${keyPath} is not a PEM private key`);
  }
  const expiry = certificateExpiry(cert);
  if (expiry.getTime() < Date.now()) {
    throw new ConfigError(`TLS certificate ${certPath} expired on ${expiry.toISOString()}`);
  }
  return { cert, key };
}

/**
 * Returns the self-signed material kept in `dir`, making (or remaking) it when it is missing or
 * expires within 7 days.
 * @param dir A directory in the state directory, such as `.truecloud/tls`.
 * @returns The material and the paths of its files.
 */
export async function ensureSelfSigned(
  dir: string,
): Promise<TlsMaterial & { certPath: string; keyPath: string }> {
  const certPath = `${dir}/gateway-cert.pem`;
  const keyPath = `${dir}/gateway-key.pem`;
  try {
    const m = await loadTls(certPath, keyPath);
    if (certificateExpiry(m.cert).getTime() > Date.now() + 7 * 86_400_000) {
      return { ...m, certPath, keyPath };
    }
  } catch {
    // missing or unusable: make a new one
  }
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const m = await makeSelfSigned();
  await Deno.writeTextFile(keyPath, m.key, { mode: 0o600 });
  await Deno.writeTextFile(certPath, m.cert, { mode: 0o644 });
  return { ...m, certPath, keyPath };
}
