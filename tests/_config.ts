// A gateway configuration for end-to-end tests: loopback, any free port, a store in `home`.
import type { GatewayConfig } from "../gateway/mod.ts";

/** Test configuration with the given changes. */
export function testConfig(home: string, over: Partial<GatewayConfig> = {}): GatewayConfig {
  return {
    home,
    host: "127.0.0.1",
    port: 0,
    kvPath: `${home}/replica.kv`,
    peers: [],
    allowPrivateAddresses: false,
    rateLimit: false,
    rateLimitExempt: [],
    maxBodyBytes: 65536,
    workers: 1,
    logLevel: "warn",
    ...over,
  };
}

const root = new URL("..", import.meta.url).pathname;

/** What a command printed and how it ended. */
export interface TaskResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `deno task NAME ARGS…` of this project as a user would, from `cwd` (INIT_CWD set to it, as
 * when deno task is started there).
 */
export async function runTask(
  name: string,
  args: string[],
  options: { cwd?: string; env?: Record<string, string> } = {},
): Promise<TaskResult> {
  const cwd = options.cwd ?? root;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--config", `${root}deno.json`, "-q", name, ...args],
    cwd,
    env: { NO_COLOR: "1", INIT_CWD: cwd, ...options.env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}
