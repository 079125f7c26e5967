/**
 * The error families shared by every part of True Cloud.
 *
 * Every error carries a stable machine-readable `code`, an optional HTTP `status` used by the
 * gateway when the error crosses an HTTP boundary, and an optional `cause`. Messages start with a
 * capital letter and have no trailing period.
 *
 * @module
 */

/** Options accepted by every {@linkcode TrueCloudError} constructor. */
export interface ErrorOptions {
  /** Stable machine-readable code, such as `signature_invalid`. */
  code?: string;
  /** HTTP status to answer with when this error reaches an HTTP boundary. */
  status?: number;
  /** The underlying error, if any. */
  cause?: unknown;
}

/**
 * Base class of every error raised on purpose by True Cloud.
 *
 * @example
 * ```ts
 * import { TrueCloudError } from "./errors.ts";
 * const e = new TrueCloudError("Disk is full", { code: "disk_full", status: 507 });
 * console.log(e.code, e.status);
 * ```
 */
export class TrueCloudError extends Error {
  /** Stable machine-readable code. */
  readonly code: string;
  /** HTTP status, when the error maps to one. */
  readonly status?: number;

  /**
   * @param message Human-readable message: capitalised, no trailing period.
   * @param options Code, HTTP status and cause.
   */
  constructor(message: string, options: ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = options.code ?? "internal";
    this.status = options.status;
  }
}

/** Input that does not match its schema or is otherwise malformed (HTTP 400). */
export class ValidationError extends TrueCloudError {
  /** Where in the input the problem was found, as a dotted path, if known. */
  readonly path?: string;
  /**
   * @param message What is wrong.
   * @param options Code (default `invalid`), status (default 400), cause and the offending path.
   */
  constructor(message: string, options: ErrorOptions & { path?: string } = {}) {
    super(message, { code: "invalid", status: 400, ...options });
    this.path = options.path;
  }
}

/** A signature, key or signed claim that does not verify (HTTP 401 by default). */
export class SignatureError extends TrueCloudError {
  /**
   * @param message What failed to verify.
   * @param options Code (default `signature_invalid`), status (default 401) and cause.
   */
  constructor(message: string, options: ErrorOptions = {}) {
    super(message, { code: "signature_invalid", status: 401, ...options });
  }
}

/** The thing asked for does not exist (HTTP 404). */
export class NotFoundError extends TrueCloudError {
  /**
   * @param message What was not found.
   * @param options Code (default `not_found`), status (default 404) and cause.
   */
  constructor(message: string, options: ErrorOptions = {}) {
    super(message, { code: "not_found", status: 404, ...options });
  }
}

/** The request conflicts with the current state, for example a stale record (HTTP 409). */
export class ConflictError extends TrueCloudError {
  /**
   * @param message What the conflict is.
   * @param options Code (default `conflict`), status (default 409) and cause.
   */
  constructor(message: string, options: ErrorOptions = {}) {
    super(message, { code: "conflict", status: 409, ...options });
  }
}

/** Input larger than its limit (HTTP 413). */
export class TooLargeError extends TrueCloudError {
  /**
   * @param message What is too large, and the limit.
   * @param options Code (default `too_large`), status (default 413) and cause.
   */
  constructor(message: string, options: ErrorOptions = {}) {
    super(message, { code: "too_large", status: 413, ...options });
  }
}

/** A configuration value that is missing or invalid; raised once at start-up. */
export class ConfigError extends TrueCloudError {
  /**
   * @param message Which setting is wrong and why, naming the flag or variable.
   * @param options Code (default `config_invalid`) and cause.
   */
  constructor(message: string, options: ErrorOptions = {}) {
    super(message, { code: "config_invalid", ...options });
  }
}

/** An operating-system side effect that failed: a command, a device, a file. */
export class DriverError extends TrueCloudError {
  /** The operation that failed, such as `zpool.create`. */
  readonly op: string;
  /** The command line that was run, if the operation ran a command. */
  readonly argv?: readonly string[];
  /** The exit code of that command, if it ran and exited. */
  readonly exitCode?: number;

  /**
   * @param op The operation's name.
   * @param message What went wrong.
   * @param options Command line, exit code, code (default `driver_failed`) and cause.
   */
  constructor(
    op: string,
    message: string,
    options: ErrorOptions & { argv?: readonly string[]; exitCode?: number } = {},
  ) {
    super(`${op}: ${message}`, { code: "driver_failed", ...options });
    this.op = op;
    this.argv = options.argv;
    this.exitCode = options.exitCode;
  }
}

/**
 * Wraps an error with the name of the operation during which it happened, keeping its family.
 *
 * A {@linkcode TrueCloudError} keeps its class, code and status, and gains the prefix; anything
 * else becomes a {@linkcode TrueCloudError} with code `internal`.
 *
 * @param op The operation's name, such as `discovery.submit`.
 * @param err The error caught.
 * @returns An error whose message starts with `op: `.
 */
export function wrapError(op: string, err: unknown): TrueCloudError {
  if (err instanceof TrueCloudError) {
    const wrapped = Object.assign(Object.create(Object.getPrototypeOf(err)), err) as TrueCloudError;
    wrapped.message = `${op}: ${err.message}`;
    wrapped.cause = err;
    wrapped.stack = err.stack;
    return wrapped;
  }
  const message = err instanceof Error ? err.message : String(err);
  return new TrueCloudError(`${op}: ${message}`, { cause: err });
}
