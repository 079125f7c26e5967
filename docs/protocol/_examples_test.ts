// The examples in the protocol documents are true: they verify, and they parse.
import assert from "node:assert/strict";
import { z } from "zod";
import { ManualClock, verifyEnvelope } from "../../protocol/mod.ts";

const dir = new URL(".", import.meta.url);

Deno.test("envelope.md: the example envelope verifies as its text says", async () => {
  const md = await Deno.readTextFile(new URL("envelope.md", dir));
  const block = md.split("```\neyJ")[1].split("```")[0];
  const jws = ("eyJ" + block).replace(/\s+/g, "");
  const claims = JSON.parse(
    md.match(/\{"dat":[\s\S]*?\}\n```/)![0].replace(/\n```$/, "").replace(/\n\s*/g, ""),
  );
  const v = await verifyEnvelope(jws, {
    type: "truecloud-example+jwt",
    audience: "truecloud:example",
    schema: z.strictObject({ hello: z.string() }),
    clock: new ManualClock(claims.iat * 1000),
  });
  assert.deepEqual(v.data, { hello: "world" });
  assert.equal(v.issuer, claims.iss);
  assert.equal(v.id, claims.jti);
});

Deno.test("discovery.md: the example feed is well-formed RSS 2.0 with the namespace", async () => {
  const md = await Deno.readTextFile(new URL("discovery.md", dir));
  const xml = md.split("```xml\n")[1].split("```")[0];
  const { XMLParser, XMLValidator } = await import("fast-xml-parser");
  assert.equal(XMLValidator.validate(xml), true);
  const doc = new XMLParser({ ignoreAttributes: false }).parse(xml);
  assert.equal(doc.rss["@_version"], "2.0");
  assert.equal(doc.rss["@_xmlns:tc"], "urn:truecloud:discovery:1");
  assert.equal(doc.rss.channel.item["tc:guestPort"], 4001);
});
