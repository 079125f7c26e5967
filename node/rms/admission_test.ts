import assert from "node:assert/strict";
import fc from "fast-check";
import { judge, type Placement } from "./admission.ts";

const LOCS = ["l1", "l2", "l3"];
const NETS = ["n1", "n2", "n3", "n4"];
const placement = fc.record({
  member: fc.constantFrom("a", "b", "c", "d", "e", "f", "g", "h", "i", "j"),
  location: fc.constantFrom(...LOCS),
  network: fc.constantFrom(...NETS),
});

Deno.test("judge() admits exactly when the VPN stays within its size and diversity, and says why not", () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(placement, { selector: (p) => p.member, maxLength: 10 }),
      placement,
      fc.record({
        maxMembers: fc.integer({ min: 2, max: 10 }),
        maxPerLocation: fc.integer({ min: 1, max: 10 }),
        maxPerNetwork: fc.integer({ min: 1, max: 10 }),
      }),
      fc.boolean(),
      (roster: Placement[], candidate, charter, banned) => {
        const refused = new Set(banned ? [candidate.member] : []);
        const v = judge(roster, candidate, charter, refused);
        const after = [...roster.filter((m) => m.member !== candidate.member), candidate];
        const fits = after.length <= charter.maxMembers &&
          after.filter((m) => m.location === candidate.location).length <=
            charter.maxPerLocation &&
          after.filter((m) => m.network === candidate.network).length <= charter.maxPerNetwork;
        assert.equal(v.ok, !banned && fits);
        if (!v.ok) {
          assert.ok(v.reason.length > 0);
          if (banned) assert.equal(v.code, "refused");
          else if (after.length > charter.maxMembers) assert.equal(v.code, "full");
          else assert.equal(v.code, "diversity");
        }
      },
    ),
  );
});
