/**
 * Drivers: every side effect the node agent has on the operating system goes through an interface
 * here, with a real and a userspace implementation (DESIGN.md, "Drivers").
 *
 * @module
 */

export * from "./block.ts";
export * from "./memory_block.ts";
