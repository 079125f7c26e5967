import assert from "node:assert/strict";
import fc from "fast-check";
import { isUuid, newUuid } from "./uuid.ts";

Deno.test("newUuid() makes canonical version 4 UUIDs that isUuid() accepts", () => {
  for (let i = 0; i < 100; i++) {
    const u = newUuid();
    assert.ok(isUuid(u), u);
    assert.equal(u[14], "4");
  }
});

Deno.test("isUuid() refuses upper case, braces, missing hyphens and the nil UUID", () => {
  assert.equal(isUuid("6F1C0B6E-5A52-4F0E-9A41-3F6B2B8F3C11"), false);
  assert.equal(isUuid("{6f1c0b6e-5a52-4f0e-9a41-3f6b2b8f3c11}"), false);
  assert.equal(isUuid("6f1c0b6e5a524f0e9a413f6b2b8f3c11"), false);
  assert.equal(isUuid("00000000-0000-0000-0000-000000000000"), false);
  fc.assert(fc.property(fc.string(), (s) => {
    if (isUuid(s)) assert.match(s, /^[0-9a-f-]{36}$/);
  }));
  fc.assert(
    fc.property(fc.uuid(), (u) =>
      assert.equal(
        isUuid(u),
        /^[0-9a-f-]+$/.test(u) && /^.{14}[1-8]/.test(u) && /^.{19}[89ab]/.test(u),
      )),
  );
});
