// End to end: the CFS UI in a real browser. A degraded pool resilvers a new volume while the page
// is open: the user sees the health badge, the eight volumes, the entitlement bar and the history,
// the progress bar moves by itself (Server-Sent Events, or polling when those fail), and the Scrub
// button starts a scrub. The page raises no console error and no CSP violation, and neither a page
// of another origin nor a rebinding host name can read the status or start a scrub.
import assert from "node:assert/strict";
import { CapturingLogger, NodeIdentity } from "../protocol/mod.ts";
import { serveCfsUi } from "../node/cfs/ui.ts";
import type { CfsEvent, CfsStatus, VolumeStatus } from "../node/cfs/status.ts";
import { until } from "../protocol/_test_tools.ts";
import {
  type Browser,
  chromiumAvailable,
  launchChromium,
  type Page,
  skipNotice,
  watchPage,
} from "./_browser.ts";

const GiB = 1024 ** 3;
const MiB = 1024 ** 2;
const NAME = "CFS UI in Chromium: live resilver, scrub, no CSP violation, foreign origins refused";

/** A pool that lost slot 3 and is filling its replacement, as it changes over time. */
class ResilveringPool {
  readonly providers: string[];
  scrubs = 0;
  #status: CfsStatus;
  #timer: ReturnType<typeof setInterval>;
  #ticks = 0;

  constructor(providers: string[]) {
    this.providers = providers;
    const now = Date.now();
    const volumes: VolumeStatus[] = providers.map((provider, slot) => ({
      slot,
      role: slot < 5 ? "data" : "parity",
      state: slot === 3 ? "resilvering" : "online",
      provider,
      location: crypto.randomUUID(),
      network: crypto.randomUUID(),
      vpn: crypto.randomUUID(),
      latencyMs: 4 + slot * 3.5,
      sizeBytes: 64 * GiB,
      lease: { id: crypto.randomUUID(), until: Math.floor(now / 1000) + 30 * 86400 },
      errors: { read: slot === 6 ? 2 : 0, write: 0, checksum: slot === 6 ? 1 : 0 },
      behindStripes: slot === 3 ? 4096 : 0,
    }));
    const events: CfsEvent[] = [
      { at: now - 60_000, level: "info", message: "Pool created on eight volumes" },
      { at: now - 30_000, level: "error", message: "Volume stopped answering", slot: 3 },
      {
        at: now - 20_000,
        level: "warn",
        message: "Volume faulted; leasing a replacement",
        slot: 3,
      },
      { at: now - 10_000, level: "info", message: "Replacement leased; resilver started", slot: 3 },
    ];
    this.#status = {
      pool: { state: "degraded", sizeBytes: 320 * GiB, usedBytes: 100 * GiB, lossesTolerated: 2 },
      entitlement: { storageBytes: 320 * GiB, usedBytes: 120 * GiB, freeBytes: 200 * GiB },
      volumes,
      distribution: {
        providers: 8,
        locations: 8,
        networks: 7,
        vpns: 3,
        summary: "8 providers in 8 locations, 7 networks and 3 VPNs",
      },
      resilver: {
        slot: 3,
        kind: "replace",
        doneBytes: 2 * GiB,
        totalBytes: 64 * GiB,
        startedAt: now - 10_000,
        rate: 200 * MiB,
        etaSeconds: (62 * GiB) / (200 * MiB),
        finished: false,
      },
      events,
    };
    this.#timer = setInterval(() => this.#tick(), 200);
  }

  status(): CfsStatus {
    return structuredClone(this.#status);
  }

  scrub(): Promise<void> {
    this.scrubs++;
    this.#status.scrub = { doneBytes: 0, totalBytes: 100 * GiB, repaired: 0, finished: false };
    this.#status.events.push({ at: Date.now(), level: "info", message: "Scrub started" });
    return Promise.resolve();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  #tick(): void {
    this.#ticks++;
    const r = this.#status.resilver!;
    r.doneBytes = Math.min(r.totalBytes, r.doneBytes + 40 * MiB);
    r.etaSeconds = (r.totalBytes - r.doneBytes) / r.rate;
    const s = this.#status.scrub;
    if (s && !s.finished) s.doneBytes = Math.min(s.totalBytes, s.doneBytes + GiB);
    if (this.#ticks % 5 === 0) {
      const pct = Math.floor((r.doneBytes / r.totalBytes) * 100);
      this.#status.events.push({
        at: Date.now(),
        level: "info",
        message: `Resilver at ${pct}%`,
        slot: 3,
      });
    }
  }
}

// A number read from the page.
async function numberOf(page: Page, expr: string): Promise<number> {
  return Number(await page.evaluate(expr));
}

// Waits until a number read from the page is above a value. (Playwright's `waitForFunction` with
// a string evaluates it inside the page, which the page's CSP rightly forbids.)
async function numberAbove(page: Page, expr: string, min: number, ms: number): Promise<number> {
  let n = -Infinity;
  await until(`${expr} > ${min}`, async () => (n = await numberOf(page, expr)) > min, ms);
  return n;
}

skipNotice(NAME);

Deno.test({ name: NAME, ignore: !chromiumAvailable() }, async (t) => {
  const providers = await Promise.all(
    Array.from({ length: 8 }, async () => (await NodeIdentity.generate()).nodeId),
  );
  const pool = new ResilveringPool(providers);
  const log = new CapturingLogger();
  const ui = serveCfsUi({
    status: () => pool.status(),
    actions: { scrub: () => pool.scrub() },
    log,
  });
  // A site on another port of the same host: another origin, and the same site.
  const other = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    () =>
      new Response("<!doctype html><title>Other</title><p>Another site</p>", {
        headers: { "content-type": "text/html; charset=utf-8" },
      }),
  );
  const otherUrl = `http://127.0.0.1:${other.addr.port}/`;
  let browser: Browser | undefined;
  try {
    browser = await launchChromium({ resolve: { "rebind.test": "127.0.0.1" } });
    const context = await browser.newContext();
    const page = await context.newPage();
    const problems = await watchPage(page);
    const statusPolls: string[] = [];
    page.on("request", (r) => {
      if (new URL(r.url()).pathname === "/api/status") statusPolls.push(r.url());
    });
    const res = await page.goto(ui.url);
    assert.equal(res?.status(), 200);

    await t.step("the page shows the pool's health, volumes, entitlement and history", async () => {
      const badge = page.getByTestId("health-badge");
      await badge.filter({ hasText: "Degraded" }).waitFor({ timeout: 5000 });
      assert.equal(await badge.getAttribute("data-state"), "degraded");
      assert.equal(await page.getByTestId("health").getAttribute("aria-live"), "polite");
      assert.equal(
        await page.getByTestId("losses-tolerated").textContent(),
        "Can lose 2 more volumes",
      );
      const rows = page.getByTestId("volume-row");
      assert.equal(await rows.count(), 8);
      const shown = page.getByTestId("volume-provider");
      for (let i = 0; i < 8; i++) {
        assert.equal(await shown.nth(i).getAttribute("title"), providers[i]);
        const text = (await shown.nth(i).textContent()) ?? "";
        assert.ok(text.length < providers[i].length, `provider ${i} is shortened: ${text}`);
        assert.ok(providers[i].endsWith(text.replace("…", "")), `${text} is part of the id`);
      }
      assert.equal(await rows.nth(3).locator(".state").textContent(), "resilvering");
      assert.match((await rows.nth(0).textContent()) ?? "", /data.*online.*64\.0 GiB/);
      assert.match((await rows.nth(7).textContent()) ?? "", /parity/);
      assert.equal(
        await page.getByTestId("distribution").textContent(),
        "8 providers in 8 locations, 7 networks and 3 VPNs",
      );
      assert.equal(
        await numberOf(page, `document.getElementById("entitlement-bar").value`),
        120 * GiB,
      );
      assert.equal(
        await numberOf(page, `document.getElementById("entitlement-bar").max`),
        320 * GiB,
      );
      assert.equal(await page.getByTestId("entitlement-used").textContent(), "120 GiB used");
      assert.equal(await page.getByTestId("entitlement-free").textContent(), "200 GiB free");
      const events = page.getByTestId("event");
      assert.ok((await events.count()) >= 4);
      const levels = await events.evaluateAll((els) =>
        els.map((e) => (e as unknown as { dataset: { level: string } }).dataset.level)
      );
      assert.ok(levels.includes("error") && levels.includes("warn"));
      const times = await page.$$eval(
        "[data-testid=event] time",
        (els) => els.map((e) => Date.parse(e.getAttribute("datetime") ?? "")),
      );
      assert.deepEqual(times, [...times].sort((a, b) => b - a), "newest first");
    });

    await t.step("the resilver progress bar moves live over Server-Sent Events", async () => {
      const bar = `document.querySelector("[data-testid=resilver-progress]")`;
      const first = await numberOf(page, `${bar}.value`);
      assert.ok(first >= 2 * GiB, `progress starts at ${first}`);
      assert.equal(await numberOf(page, `${bar}.max`), 64 * GiB);
      const second = await numberAbove(page, `${bar}.value`, first, 5000);
      await numberAbove(page, `${bar}.value`, second, 5000);
      assert.equal(await page.getByTestId("connection").getAttribute("data-mode"), "live");
      assert.match(
        (await page.getByTestId("resilver-eta").textContent()) ?? "",
        /^\d+ (s|min) left$/,
      );
      assert.match((await page.getByTestId("resilver-percent").textContent()) ?? "", /^\d+\.\d%$/);
      assert.equal(await page.getByTestId("resilver-rate").textContent(), "200 MiB/s");
      assert.deepEqual(statusPolls, [], "no polling while the event stream works");
      // New events arrive too, on top of the list.
      await page.getByTestId("event").first().filter({ hasText: "Resilver at" }).waitFor({
        timeout: 5000,
      });
    });

    await t.step("the Scrub button starts a scrub", async () => {
      const button = page.getByTestId("scrub-button");
      assert.equal(await page.getByTestId("scrub-status").textContent(), "No scrub has run yet");
      assert.equal(await button.isEnabled(), true);
      await button.click();
      await page.getByTestId("scrub-message").filter({ hasText: "Scrub started" }).waitFor({
        timeout: 5000,
      });
      assert.equal(pool.scrubs, 1);
      await page.getByTestId("scrub-status").filter({ hasText: /^Scrubbing: / }).waitFor({
        timeout: 5000,
      });
      assert.equal(await button.isDisabled(), true, "no second scrub while one runs");
    });

    await t.step("the page raised no console error and no CSP violation", () => {
      assert.deepEqual(problems.errors, []);
      assert.deepEqual(problems.violations, []);
    });

    await t.step("(control) the watcher does see a CSP violation in this page", async () => {
      const control = await context.newPage();
      const seen = await watchPage(control);
      await control.goto(ui.url);
      await control.getByTestId("volume-row").first().waitFor({ timeout: 5000 });
      // An inline style attribute, which the page's CSP forbids.
      await control.evaluate(`document.body.setAttribute("style", "color: red")`);
      await until("a violation to be reported", () => seen.violations.length > 0, 5000);
      assert.match(seen.violations[0], /^style-src-attr blocked inline/);
      await control.close();
    });

    await t.step("the page falls back to polling when the event stream fails", async () => {
      const polling = await context.newPage();
      const polled: string[] = [];
      polling.on("request", (r) => {
        if (new URL(r.url()).pathname === "/api/status") polled.push(r.url());
      });
      await polling.route("**/api/events", (route) => route.abort());
      await polling.goto(ui.url);
      const bar = `document.querySelector("[data-testid=resilver-progress]")`;
      const first = await numberAbove(polling, `${bar}.value`, 0, 5000);
      assert.equal(await polling.getByTestId("connection").getAttribute("data-mode"), "polling");
      await numberAbove(polling, `${bar}.value`, first, 6000);
      assert.ok(polled.length >= 2, `polled ${polled.length} times`);
      await polling.close();
    });

    await t.step(
      "a page of another origin can neither read the status nor start a scrub",
      async () => {
        const foreign = await context.newPage();
        await foreign.goto(otherUrl);
        const refusedBefore = log.records.filter((r) => r.msg === "refused").length;
        const outcome = await foreign.evaluate(`(async () => {
        const ui = ${JSON.stringify(ui.url)};
        const tryIt = async (f) => {
          try {
            const r = await f();
            return r.type === "opaque" ? "opaque" : "read " + r.status + " " + (await r.text());
          } catch (e) {
            return "failed";
          }
        };
        return {
          status: await tryIt(() => fetch(ui + "api/status")),
          events: await tryIt(() => fetch(ui + "api/events")),
          scrub: await tryIt(() => fetch(ui + "api/scrub", {
            method: "POST",
            headers: { "content-type": "application/json", "x-truecloud-csrf": "1" },
            body: "{}",
          })),
          blindScrub: await tryIt(() => fetch(ui + "api/scrub", {
            method: "POST", mode: "no-cors", body: "{}",
          })),
        };
      })()`);
        assert.deepEqual(outcome, {
          status: "failed",
          events: "failed",
          scrub: "failed",
          // Sent (a no-cors request needs no preflight), refused, and unreadable anyway.
          blindScrub: "failed",
        });
        assert.equal(pool.scrubs, 1, "no scrub was started from the other origin");
        // The server saw and refused them (the scrub's preflight included), naming the origin.
        const refused = log.records.filter((r) => r.msg === "refused").slice(refusedBefore);
        assert.ok(refused.length >= 4, `${refused.length} refusals`);
        assert.ok(refused.every((r) => r.origin === otherUrl.slice(0, -1)));
        await foreign.close();
      },
    );

    await t.step("a rebinding host name is refused", async () => {
      const rebound = await context.newPage();
      const r = await rebound.goto(`http://rebind.test:${ui.port}/api/status`);
      assert.equal(r?.status(), 421);
      const body = JSON.parse((await r?.text()) ?? "{}");
      assert.equal(body.error.code, "bad_host");
      assert.ok(!("pool" in body));
      await rebound.close();
    });

    await context.close();
  } finally {
    await browser?.close();
    await ui.close();
    await other.shutdown();
    pool.stop();
  }
  assert.deepEqual(log.records.filter((r) => r.level === "error" || r.level === "warn"), []);
});
