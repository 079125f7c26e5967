import assert from "node:assert/strict";
import { hostOnlyRefusal, readTextLimited, toHttpError } from "./http.ts";
import { TooLargeError, ValidationError } from "./errors.ts";

Deno.test("readTextLimited() reads bodies up to the limit and refuses larger ones, declared or not", async () => {
  assert.equal(await readTextLimited(new Response("héllo"), 6), "héllo");
  await assert.rejects(readTextLimited(new Response("x".repeat(11)), 10), TooLargeError);
  const undeclared = new Response(
    new ReadableStream({
      pull(c) {
        c.enqueue(new Uint8Array(4096)); // endless: must stop reading at the limit
      },
    }),
  );
  await assert.rejects(readTextLimited(undeclared, 64 * 1024), TooLargeError);
  assert.equal(await readTextLimited(new Response(null), 1), "");
});

Deno.test("toHttpError() keeps a TrueCloudError's status and hides anything else behind a 500", () => {
  assert.deepEqual(toHttpError(new ValidationError("Bad port", { code: "invalid" })), {
    status: 400,
    body: { error: { code: "invalid", message: "Bad port" } },
  });
  assert.deepEqual(toHttpError(new Error("secret detail")), {
    status: 500,
    body: { error: { code: "internal", message: "Internal error" } },
  });
});

Deno.test("hostOnlyRefusal() takes this port's loopback names from this site, and nothing else", () => {
  const check = (h: Record<string, string>) =>
    hostOnlyRefusal(new Headers(h), 8470, "The service")?.code;
  assert.equal(check({ host: "127.0.0.1:8470" }), undefined);
  assert.equal(check({ host: "LOCALHOST:8470", origin: "http://localhost:8470" }), undefined);
  assert.equal(check({ host: "[::1]:8470", "sec-fetch-site": "same-origin" }), undefined);
  assert.equal(check({}), "bad_host");
  assert.equal(check({ host: "evil.example" }), "bad_host");
  assert.equal(check({ host: "127.0.0.1:8471" }), "bad_host");
  assert.equal(check({ host: "127.0.0.1:8470", origin: "http://127.0.0.1:9999" }), "cross_origin");
  assert.equal(check({ host: "127.0.0.1:8470", "sec-fetch-site": "same-site" }), "cross_site");
});
