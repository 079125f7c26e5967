// For browser tests: launches Debian's Chromium through Playwright, and watches a page for console
// errors, uncaught exceptions and Content-Security-Policy violations. A test that needs the browser
// is declared with `ignore: !chromiumAvailable()`, so Deno lists it by name as ignored where
// Chromium is missing, and says why with `skipNotice`.
import { type Browser, chromium, type Page } from "playwright-core";

export type { Browser, Page };

/** Where Debian's `chromium` package puts the browser. */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/**
 * Tells whether Chromium is installed.
 * @param path The executable (default {@linkcode CHROMIUM_PATH}).
 */
export function chromiumAvailable(path = CHROMIUM_PATH): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/**
 * Prints why a browser test does not run, when Chromium is missing.
 * @param name The test's name.
 */
export function skipNotice(name: string): void {
  if (!chromiumAvailable()) console.log(`skipped: ${name} (no ${CHROMIUM_PATH})`);
}

/** Options of {@linkcode launchChromium}. */
export interface LaunchOptions {
  /** Host names the browser resolves to given addresses, such as `{ "rebind.test": "127.0.0.1" }`
   * (to play DNS rebinding without a DNS server). */
  resolve?: Record<string, string>;
  /** More command-line switches. */
  args?: string[];
}

/**
 * Launches headless Chromium; close it with `browser.close()`.
 * @param opts Name mappings and extra switches.
 * @returns The browser.
 */
export async function launchChromium(opts: LaunchOptions = {}): Promise<Browser> {
  const args = ["--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", ...(opts.args ?? [])];
  // Chromium's sandbox refuses to run as root.
  if (Deno.uid() === 0) args.push("--no-sandbox");
  const rules = Object.entries(opts.resolve ?? {}).map(([name, addr]) => `MAP ${name} ${addr}`);
  if (rules.length > 0) args.push(`--host-resolver-rules=${rules.join(",")}`);
  return await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args });
}

/** What went wrong in a page, as {@linkcode watchPage} collects it. */
export interface PageProblems {
  /** Console errors and uncaught exceptions. */
  errors: string[];
  /** Content-Security-Policy violations reported by the page's `securitypolicyviolation` events
   * (Trusted Types ones included). */
  violations: string[];
}

let watched = 0;

/**
 * Starts collecting a page's console errors, uncaught exceptions and CSP violations. Call it before
 * the page navigates.
 * @param page The page.
 * @returns The live lists of problems.
 */
export async function watchPage(page: Page): Promise<PageProblems> {
  const problems: PageProblems = { errors: [], violations: [] };
  page.on("console", (m) => {
    if (m.type() === "error") problems.errors.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.errors.push(`exception: ${e.message}`));
  // The binding and the listener are installed by the browser's debugging protocol, outside the
  // page's CSP, and report each violation as it happens.
  const binding = `__reportViolation${++watched}`;
  await page.exposeFunction(binding, (text: string) => problems.violations.push(text));
  await page.addInitScript({
    content: `document.addEventListener("securitypolicyviolation", (e) => {
      window[${JSON.stringify(binding)}](e.violatedDirective + " blocked " + e.blockedURI +
        " (" + e.sourceFile + ":" + e.lineNumber + ")");
    });`,
  });
  return problems;
}
