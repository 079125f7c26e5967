import assert from "node:assert/strict";
import { NotFoundError, TrueCloudError, ValidationError, wrapError } from "./errors.ts";

Deno.test("wrapError() keeps the family, code and status and prefixes the operation", () => {
  const inner = new ValidationError("Port must be a number", { path: "port" });
  const e = wrapError("config.load", inner);
  assert.ok(e instanceof ValidationError);
  assert.equal(e.message, "config.load: Port must be a number");
  assert.equal(e.code, "invalid");
  assert.equal(e.status, 400);
  assert.equal((e as ValidationError).path, "port");
  assert.equal(e.cause, inner);
});

Deno.test("wrapError() turns foreign errors into TrueCloudError with code internal", () => {
  const e = wrapError("kv.open", new TypeError("boom"));
  assert.ok(e instanceof TrueCloudError);
  assert.equal(e.code, "internal");
  assert.equal(e.message, "kv.open: boom");
  assert.equal(new NotFoundError("No such VPN").status, 404);
});
