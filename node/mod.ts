/**
 * The node agent: the overlay of management VPNs (`overlay/`), the Resource Management Service
 * (`rms/`) and the control API that `deno task node` speaks to.
 *
 * @module
 */

export * from "./overlay/mod.ts";
export * from "./rms/mod.ts";
export * from "./control.ts";
export * from "./cfs/mod.ts";
export * from "./drivers/mod.ts";
export * from "./vp/mod.ts";
export * from "./state.ts";
export * from "./storage.ts";
