/**
 * The error body every True Cloud HTTP API answers with, and how errors map to it.
 *
 * `{"error":{"code":"signature_invalid","message":"Envelope signature does not verify"}}`
 *
 * @module
 */

import { TrueCloudError } from "./errors.ts";

/** The JSON body of an error answer. */
export interface ErrorBody {
  error: {
    /** Stable machine-readable code. */
    code: string;
    /** Human-readable reason. */
    message: string;
  };
}

/**
 * Maps any error to an HTTP status and error body. A {@linkcode TrueCloudError} with a status keeps
 * it; anything else is a 500 whose message reveals nothing of the cause.
 *
 * @param err The error caught.
 * @returns The status and the body.
 */
export function toHttpError(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof TrueCloudError && err.status !== undefined) {
    return { status: err.status, body: { error: { code: err.code, message: err.message } } };
  }
  return { status: 500, body: { error: { code: "internal", message: "Internal error" } } };
}
