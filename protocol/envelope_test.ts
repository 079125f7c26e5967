import assert from "node:assert/strict";
import fc from "fast-check";
import { SignJWT } from "jose";
import { z } from "zod";
import { ManualClock } from "./clock.ts";
import { signEnvelope, verifyEnvelope } from "./envelope.ts";
import { SignatureError, TooLargeError, ValidationError } from "./errors.ts";
import { NodeIdentity } from "./identity.ts";

const T0 = Date.UTC(2026, 10, 25, 12, 0, 0);
const schema = z.strictObject({ n: z.number().int() });
const opts = { type: "truecloud-test+jwt", audience: "truecloud:test", schema };

Deno.test("verifyEnvelope() accepts what signEnvelope() made and returns its claims", async () => {
  const me = await NodeIdentity.generate();
  const clock = new ManualClock(T0);
  const jws = await signEnvelope(me, { n: 7 }, { ...opts, ttlSeconds: 60, clock });
  const v = await verifyEnvelope(jws, { ...opts, clock });
  assert.equal(v.issuer, me.nodeId);
  assert.deepEqual(v.data, { n: 7 });
  assert.equal(v.issuedAt, T0 / 1000);
  assert.equal(v.expiresAt, T0 / 1000 + 60);
  assert.deepEqual(v.audience, ["truecloud:test"]);
  assert.equal(v.type, "truecloud-test+jwt");
});

Deno.test("verifyEnvelope() refuses expired, future, wrong-audience and wrong-type envelopes", async () => {
  const me = await NodeIdentity.generate();
  const clock = new ManualClock(T0);
  const jws = await signEnvelope(me, { n: 1 }, { ...opts, ttlSeconds: 60, clock });
  const later = new ManualClock(T0 + 60_000 + 301_000);
  await assert.rejects(
    verifyEnvelope(jws, { ...opts, clock: later }),
    (e: SignatureError) => e.code === "expired",
  );
  const earlier = new ManualClock(T0 - 400_000);
  await assert.rejects(verifyEnvelope(jws, { ...opts, clock: earlier }), SignatureError);
  await assert.rejects(
    verifyEnvelope(jws, { ...opts, audience: "truecloud:other", clock }),
    (e: SignatureError) => e.code === "claim_invalid",
  );
  await assert.rejects(
    verifyEnvelope(jws, { ...opts, type: "truecloud-other+jwt", clock }),
    (e: SignatureError) => e.code === "claim_invalid",
  );
  await assert.rejects(
    verifyEnvelope(jws, { ...opts, clock, maxTtlSeconds: 30 }),
    (e: SignatureError) => e.code === "claim_invalid",
  );
});

Deno.test("verifyEnvelope() refuses data that does not match the schema", async () => {
  const me = await NodeIdentity.generate();
  const jws = await signEnvelope(me, { n: "x" }, { ...opts, ttlSeconds: 60 });
  await assert.rejects(verifyEnvelope(jws, opts), (e: ValidationError) => e.path === "n");
});

Deno.test("verifyEnvelope() refuses an issuer that differs from the key id", async () => {
  const a = await NodeIdentity.generate();
  const b = await NodeIdentity.generate();
  const jws = await new SignJWT({ dat: { n: 1 } })
    .setProtectedHeader({ alg: "EdDSA", typ: opts.type, kid: a.nodeId })
    .setIssuer(b.nodeId).setAudience(opts.audience).setIssuedAt().setExpirationTime("1m")
    .setJti(crypto.randomUUID()).sign(a.privateKey);
  await assert.rejects(
    verifyEnvelope(jws, opts),
    (e: SignatureError) => e.code === "claim_invalid",
  );
});

Deno.test("verifyEnvelope() refuses a signature by another key under the same kid", async () => {
  const a = await NodeIdentity.generate();
  const b = await NodeIdentity.generate();
  const jws = await new SignJWT({ dat: { n: 1 } })
    .setProtectedHeader({ alg: "EdDSA", typ: opts.type, kid: a.nodeId })
    .setIssuer(a.nodeId).setAudience(opts.audience).setIssuedAt().setExpirationTime("1m")
    .setJti(crypto.randomUUID()).sign(b.privateKey);
  await assert.rejects(
    verifyEnvelope(jws, opts),
    (e: SignatureError) => e.code === "signature_invalid",
  );
});

Deno.test("verifyEnvelope() refuses oversized and non-JWS input before parsing", async () => {
  await assert.rejects(verifyEnvelope("a".repeat(20_000), opts), TooLargeError);
  await assert.rejects(
    verifyEnvelope("not a jws", opts),
    (e: ValidationError) => e.code === "malformed",
  );
  await assert.rejects(verifyEnvelope("a.b.c", opts), ValidationError);
});

Deno.test("verifyEnvelope() refuses every single-character mutation of a valid envelope", async () => {
  const me = await NodeIdentity.generate();
  const jws = await signEnvelope(me, { n: 42 }, { ...opts, ttlSeconds: 600 });
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
  await fc.assert(
    fc.asyncProperty(
      fc.nat({ max: jws.length - 1 }),
      fc.constantFrom(...alphabet),
      async (i, ch) => {
        const mutated = jws.slice(0, i) + ch + jws.slice(i + 1);
        if (mutated === jws) return;
        try {
          const v = await verifyEnvelope(mutated, opts);
          // The last character of base64url may carry unused bits: the decoded bytes are identical.
          assert.deepEqual(v.data, { n: 42 });
          assert.equal(v.issuer, me.nodeId);
        } catch (e) {
          assert.ok(e instanceof ValidationError || e instanceof SignatureError, String(e));
        }
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("signEnvelope() refuses a bad type or lifetime", async () => {
  const me = await NodeIdentity.generate();
  await assert.rejects(
    signEnvelope(me, {}, { ...opts, type: "bad", ttlSeconds: 1 }),
    ValidationError,
  );
  await assert.rejects(signEnvelope(me, {}, { ...opts, ttlSeconds: 0 }), ValidationError);
});
