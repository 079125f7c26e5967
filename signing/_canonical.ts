// Canonical JSON for the signing tool, from @tufjs/canonical-json (the OLPC form TUF signs).
import { canonicalize as tufCanonicalize } from "@tufjs/canonical-json";

/** The canonical JSON text of a value. */
export function canonicalize(value: unknown): string {
  return tufCanonicalize(value);
}
