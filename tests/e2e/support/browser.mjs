// Debian's chromium driven by playwright-core, with an accessibility check and screenshots.
import assert from "node:assert/strict";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const axeSource = await readFile(require.resolve("axe-core/axe.min.js"), "utf8");

const results = join(import.meta.dirname, "..", "results");
/** Where screenshots go; `run --update-screenshots` points this at docs/screenshots. */
const screenshotDir = resolve(process.env.PORTICO_E2E_SCREENSHOTS ?? join(results, "screenshots"));

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/** A fresh browser profile (cookies, clipboard) at a desktop size, like a new person at a laptop. */
export async function newPerson(browser, base) {
  const context = await browser.newContext({ baseURL: base, viewport: { width: 1280, height: 860 }, locale: "en-US" });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (error) => problems.push(`script error: ${error.message}`));
  page.on("console", (message) => {
    // A CSP refusal shows up here: Portico's pages must need nothing the policy forbids.
    // (A page's own error status is the journey's business, not a problem of the page.)
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      problems.push(`console error: ${message.text()}`);
    }
  });
  page.on("response", (response) => {
    if (response.request().resourceType() !== "document" && response.status() >= 400) {
      problems.push(`${response.status()} for ${response.url()}`);
    }
  });
  page.problems = problems;
  return page;
}

const audited = new Set();

/**
 * Runs axe-core on the page as it is now and fails on any "serious" or "critical" violation.
 * Each distinct page (path without ids) is audited once per run.
 */
export async function assertAccessible(page, label = new URL(page.url()).pathname.replace(/[0-9a-f-]{36}/g, "{id}")) {
  if (audited.has(label)) return;
  audited.add(label);
  // Evaluated through the DevTools protocol, not a <script>: Portico's CSP stays in force.
  await page.evaluate(axeSource);
  const results = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { resultTypes: ["violations"] }),
  );
  const blocking = results.violations
    .filter((violation) => ["serious", "critical"].includes(violation.impact))
    .map((violation) => `${violation.impact}: ${violation.id} (${violation.help}) at ${violation.nodes.map((node) => node.target.join(" ")).join(", ")}`);
  assert.deepEqual(blocking, [], `accessibility of ${label}`);
  assert.deepEqual(page.problems, [], `errors in the browser on ${label}`);
}

/** A picture for the README; what it shows is checked for accessibility like any page. */
export async function screenshot(page, name) {
  await assertAccessible(page, `${name} (screenshot)`);
  await mkdir(screenshotDir, { recursive: true });
  await page.screenshot({ path: join(screenshotDir, `${name}.png`), fullPage: true });
}

/** The page as a step left it, and its address, for reading a failure. */
export async function recordStep(page, step) {
  const dir = join(results, "steps");
  await mkdir(dir, { recursive: true });
  const name = step.replace(/[^a-z0-9]+/gi, "-").slice(0, 60);
  await page.screenshot({ path: join(dir, `${name}.png`), fullPage: true });
  await writeFile(join(dir, `${name}.txt`), `${page.url()}\n\n${await page.locator("main").innerText()}`);
}
