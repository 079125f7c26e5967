/**
 * The `Logger` interface: levelled, structured logs, one JSON object per line.
 *
 * Library code takes a logger in its deps and defaults to {@linkcode discardLogger}; only a
 * binary's `main.ts` makes a real one.
 *
 * @module
 */

/** Log levels, from most to least verbose. */
export type LogLevel = "debug" | "info" | "warn" | "error";

/** Structured fields attached to a log line. */
export type LogFields = Record<string, unknown>;

const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** The list of valid level names, for validating configuration. */
export const LOG_LEVELS: readonly LogLevel[] = ["debug", "info", "warn", "error"];

/** A levelled, structured logger. */
export interface Logger {
  /** Logs detail useful only when debugging. */
  debug(msg: string, fields?: LogFields): void;
  /** Logs a normal event. */
  info(msg: string, fields?: LogFields): void;
  /** Logs something unexpected that was handled. */
  warn(msg: string, fields?: LogFields): void;
  /** Logs a failure. */
  error(msg: string, fields?: LogFields): void;
  /**
   * Returns a logger whose lines carry `name` appended to this logger's component.
   * @param name The sub-component, such as `replication`.
   */
  child(name: string): Logger;
}

/** One log line as a record: what {@linkcode JsonLogger} writes and {@linkcode CapturingLogger} keeps. */
export interface LogRecord {
  /** ISO-8601 time. */
  time: string;
  /** The level. */
  level: LogLevel;
  /** Dotted component path, such as `gateway.discovery`. */
  component: string;
  /** The message. */
  msg: string;
  /** Any structured fields. */
  [field: string]: unknown;
}

function errorFields(fields: LogFields | undefined): LogFields | undefined {
  if (!fields) return fields;
  let out: LogFields | undefined;
  for (const [k, v] of Object.entries(fields)) {
    if (v instanceof Error) {
      out ??= { ...fields };
      out[k] = { name: v.name, message: v.message, ...("code" in v ? { code: v.code } : {}) };
    }
  }
  return out ?? fields;
}

abstract class BaseLogger implements Logger {
  protected readonly component: string;
  protected readonly minLevel: number;

  constructor(component: string, level: LogLevel) {
    this.component = component;
    this.minLevel = LEVELS[level];
  }

  protected abstract write(record: LogRecord): void;
  abstract child(name: string): Logger;

  #log(level: LogLevel, msg: string, fields?: LogFields): void {
    if (LEVELS[level] < this.minLevel) return;
    this.write({
      ...errorFields(fields),
      time: new Date().toISOString(),
      level,
      component: this.component,
      msg,
    });
  }

  debug(msg: string, fields?: LogFields): void {
    this.#log("debug", msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.#log("info", msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.#log("warn", msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.#log("error", msg, fields);
  }

  protected childName(name: string): string {
    return this.component ? `${this.component}.${name}` : name;
  }
}

/**
 * Writes one JSON object per line to a sink (standard error by default).
 *
 * @example
 * ```ts
 * import { JsonLogger } from "./logger.ts";
 * const log = new JsonLogger("gateway", "info");
 * log.child("discovery").info("Record accepted", { vpn: "0b1c…" });
 * ```
 */
export class JsonLogger extends BaseLogger {
  #sink: (line: string) => void;
  #level: LogLevel;

  /**
   * @param component The root component name.
   * @param level The least severe level written.
   * @param sink Where lines go; defaults to standard error.
   */
  constructor(
    component: string,
    level: LogLevel = "info",
    sink: (line: string) => void = (line) => console.error(line),
  ) {
    super(component, level);
    this.#sink = sink;
    this.#level = level;
  }

  protected write(record: LogRecord): void {
    this.#sink(JSON.stringify(record));
  }

  child(name: string): Logger {
    return new JsonLogger(this.childName(name), this.#level, this.#sink);
  }
}

/** A logger that keeps every record in memory; for tests. */
export class CapturingLogger extends BaseLogger {
  /** Every record logged through this logger or its children. */
  readonly records: LogRecord[];

  /**
   * @param component The root component name.
   * @param records Shared storage, used by children.
   */
  constructor(component = "", records: LogRecord[] = []) {
    super(component, "debug");
    this.records = records;
  }

  protected write(record: LogRecord): void {
    this.records.push(record);
  }

  child(name: string): Logger {
    return new CapturingLogger(this.childName(name), this.records);
  }
}

class DiscardLogger implements Logger {
  debug(): void {}
  info(): void {}
  warn(): void {}
  error(): void {}
  child(): Logger {
    return this;
  }
}

/** A logger that drops everything: the default for library code. */
export const discardLogger: Logger = new DiscardLogger();
