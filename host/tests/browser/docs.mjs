// Opens a service's /docs in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) with every request to anything but the service's own origin refused,
// and checks that Swagger UI renders the service's operations. Prints one JSON line:
// {"operations": n, "blocked": [urls]}; exits non-zero on failure.
//
//   node docs.mjs <service base URL> <expected operation count> <screenshot folder>

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const [base, expected, screenshots] = process.argv.slice(2);
const origin = new URL(base).origin;
mkdirSync(screenshots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const blocked = [];
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  // The network beyond the host does not exist here: as offline, or air-gapped.
  await page.route("**/*", (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) {
      return route.continue();
    }
    blocked.push(url);
    return route.abort("internetdisconnected");
  });
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(message.text());
  });
  page.on("pageerror", (error) => problems.push(String(error)));

  await page.goto(`${base}/docs`, { waitUntil: "load" });
  await page.waitForSelector(".opblock", { timeout: 15000 });
  const operations = await page.locator(".opblock").count();
  await page.screenshot({ path: join(screenshots, "docs.png"), fullPage: true });
  console.log(JSON.stringify({ operations, blocked, problems }));
  if (operations !== Number(expected) || blocked.length > 0 || problems.length > 0) {
    process.exitCode = 1;
  }
} catch (error) {
  console.log(JSON.stringify({ error: String(error), blocked, problems }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
