import assert from "node:assert/strict";
import { NodeIdentity } from "../../protocol/mod.ts";
import { DISTRUST_S, Ledger } from "./ledger.ts";

Deno.test("Ledger: audits are counted per provider, kept across a reopen, and a failure distrusts for a day", async () => {
  const dir = await Deno.makeTempDir();
  const [a, b] = await Promise.all([NodeIdentity.generate(), NodeIdentity.generate()]);
  try {
    const ledger = await Ledger.open(`${dir}/ledger.kv`);
    const t = 1_800_000_000;
    await ledger.audited({ provider: a.nodeId, kind: "cdn", ok: true, at: t, detail: "block x" });
    await ledger.audited({ provider: b.nodeId, kind: "volume", ok: true, at: t, detail: "v 2" });
    await ledger.audited({
      provider: b.nodeId,
      kind: "volume",
      ok: false,
      at: t + 60,
      detail: "volume 2: 1 of 4 sampled shards wrong (rewritten)",
    });
    await ledger.audited({ provider: b.nodeId, kind: "cdn", ok: true, at: t + 120, detail: "y" });
    assert.equal(ledger.distrusts(a.nodeId, t + 200), false);
    assert.equal(
      ledger.distrusts(b.nodeId, t + 200),
      true,
      "a pass after a failure does not clear it",
    );
    assert.equal(ledger.distrusts(b.nodeId, t + 60 + DISTRUST_S), false, "a day later it does");
    assert.equal(ledger.distrusts("12D3KooWnobody", t), false);
    ledger.close();

    const again = await Ledger.open(`${dir}/ledger.kv`);
    const rb = again.audits().find((r) => r.provider === b.nodeId)!;
    assert.deepEqual(
      { passes: rb.passes, failures: rb.failures, last: rb.last.at, failed: rb.lastFailure?.at },
      { passes: 2, failures: 1, last: t + 120, failed: t + 60 },
    );
    assert.equal(again.audits().length, 2);
    assert.equal(again.distrusts(b.nodeId, t + 200), true);
    again.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
