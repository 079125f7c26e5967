/**
 * The local cloud: a whole True Cloud on one host (`deno task start`).
 *
 * @module
 */

export * from "./local_cloud.ts";
export * from "./config.ts";
