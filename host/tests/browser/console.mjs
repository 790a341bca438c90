// Drives the platform console (the admin listener's /console) in headless Chromium
// (Debian's /usr/bin/chromium, through playwright-core), one step at a time, for
// host/tests/integration/browser.rs, which checks what each step did through the CLI and
// over HTTP. Every request beyond the admin listener is refused, as offline.
//
//   node console.mjs <admin base URL> <screenshot folder>
//
// Reads one JSON step per line on stdin and answers each with one JSON line on stdout:
// {"ok": true, ...what the step saw} or {"ok": false, "error": "..."}. Each step leaves a
// numbered screenshot. Steps:
//   {"step": "login", "token": "..."}             -> {"refused", "message", "services"}
//   {"step": "wait_version", "service", "version"} -> {"services", "navigations"}
//   {"step": "open", "service"}                   -> {"serving", "history": [{version, serving}]}
//   {"step": "rollback", "version"}               -> {"result", "kind"}
//   {"step": "dead_letter", "queue", "contains"}  -> {"id", "reason", "retries"}
//   {"step": "replay", "queue", "id"}             -> {"result", "kind"}
//   {"step": "width", "width"}                    -> {"overflowing": [selectors]}

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";

const [base, screenshots] = process.argv.slice(2);
const origin = new URL(base).origin;
mkdirSync(screenshots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const blocked = [];
const problems = [];
let navigations = 0;
await page.route("**/*", (route) => {
  const url = route.request().url();
  if (new URL(url).origin === origin) return route.continue();
  blocked.push(url);
  return route.abort("internetdisconnected");
});
page.on("console", (message) => {
  // Chromium reports the wrong token's 401 as a failed resource: that one is expected.
  if (message.type() === "error" && !message.text().includes("status of 401")) {
    problems.push(message.text());
  }
});
page.on("pageerror", (error) => problems.push(String(error)));
page.on("framenavigated", (frame) => {
  if (frame === page.mainFrame()) navigations += 1;
});

const WAIT = { timeout: 20000 };
let shot = 0;

async function rows() {
  return page.$$eval("#services tbody tr", (trs) =>
    trs.map((tr) => ({
      name: tr.dataset.service,
      version: tr.querySelector('[data-field="version"]')?.textContent.trim(),
      state: tr.querySelector('[data-field="state"]')?.textContent.trim(),
    })),
  );
}

/// The text of the service's result line once it says how an action ended.
async function result() {
  await page.waitForFunction(() => {
    const line = document.getElementById("service-result");
    return line.classList.contains("ok") || line.classList.contains("error");
  }, null, WAIT);
  return page.$eval("#service-result", (line) => ({ result: line.textContent, kind: line.className }));
}

async function confirm() {
  await page.waitForSelector("dialog#confirm[open]", WAIT);
  await screenshot("confirm");
  // The keyboard path: the confirming button has the focus.
  await page.keyboard.press("Enter");
}

async function screenshot(name) {
  shot += 1;
  await page.screenshot({ path: join(screenshots, `${String(shot).padStart(2, "0")}-${name}.png`), fullPage: true });
}

const steps = {
  async login({ token }) {
    if (navigations === 0) {
      await page.goto(`${base}/console`, { waitUntil: "load" });
    }
    await page.waitForSelector("#token", { state: "visible", ...WAIT });
    await page.fill("#token", token);
    await page.press("#token", "Enter");
    await page.waitForFunction(() =>
      !document.getElementById("services-view").hidden ||
      document.getElementById("login-error").textContent !== "", null, WAIT);
    const refused = await page.isVisible("#login-view");
    const message = await page.textContent("#login-error");
    return { refused, message, services: refused ? [] : await rows() };
  },

  async wait_version({ service, version }) {
    await page.waitForFunction(([service, version]) => {
      const cell = document.querySelector(`#services tr[data-service="${service}"] [data-field="version"]`);
      return cell?.textContent.trim() === version;
    }, [service, version], WAIT);
    return { services: await rows(), navigations };
  },

  async open({ service }) {
    await page.click(`#services tr[data-service="${service}"] button`);
    await page.waitForSelector("#history tbody tr", WAIT);
    await page.waitForFunction((service) =>
      document.getElementById("service-title").textContent === service, service, WAIT);
    const serving = await page.textContent("#service-serving");
    const history = await page.$$eval("#history tbody tr", (trs) =>
      trs.map((tr) => ({
        version: tr.querySelector("code").textContent,
        serving: tr.textContent.includes("serving"),
      })));
    return { serving, history };
  },

  async rollback({ version }) {
    const button = page.locator("#history tbody tr").filter({ hasText: version }).locator("button");
    await button.focus();
    await page.keyboard.press("Enter");
    await confirm();
    return result();
  },

  async dead_letter({ queue, contains }) {
    const row = page.locator(`table[data-queue="${queue}"] tbody tr`).filter({ hasText: contains });
    const deadline = Date.now() + WAIT.timeout;
    while ((await row.count()) === 0) {
      if (Date.now() > deadline) throw new Error(`no dead letter of ${queue} shows ${contains}`);
      await page.getByRole("button", { name: "Refresh" }).first().click();
      await page.waitForTimeout(500);
    }
    const cells = await row.first().locator("td").allTextContents();
    return { id: cells[0], routing_key: cells[1], retries: Number(cells[2]), reason: cells[3] };
  },

  async replay({ queue, id }) {
    await page.locator(`table[data-queue="${queue}"] tr[data-dead-letter="${id}"] button`).click();
    await confirm();
    return result();
  },

  async width({ width }) {
    await page.setViewportSize({ width, height: 900 });
    // Anything wider than the window, other than inside a scrolling table box, is broken layout.
    const overflowing = await page.evaluate(() => {
      const limit = document.documentElement.clientWidth;
      return [...document.querySelectorAll("body *")]
        .filter((node) => !node.closest(".scroll") && node.getBoundingClientRect().right > limit + 1)
        .map((node) => node.tagName.toLowerCase() + (node.id ? `#${node.id}` : ""));
    });
    return { overflowing, scrollWidth: await page.evaluate(() => document.documentElement.scrollWidth) };
  },
};

const input = createInterface({ input: process.stdin });
for await (const line of input) {
  if (!line.trim()) continue;
  const request = JSON.parse(line);
  let answer;
  try {
    const seen = await steps[request.step](request);
    await screenshot(request.step);
    answer = { ok: true, ...seen, blocked, problems };
  } catch (error) {
    await screenshot(`${request.step}-failed`).catch(() => {});
    answer = { ok: false, error: String(error), blocked, problems };
  }
  console.log(JSON.stringify(answer));
}
await browser.close();
