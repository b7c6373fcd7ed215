// Screenshots of one story as an operator sees it, for comparing two builds
// of the console (issue 33's before and after): a config with a stable and
// a gray version, the gray one broken by reports from 80 networks, a
// release the test gate refuses. Takes pictures only; the assertions are in
// e2e.mjs. Run by tests/console/before_after.sh:
//   node shots.mjs <base url> <admin token> <secret> <stable code> <gray code> <out dir>
import { createRequire } from "node:module";
import http from "node:http";

const [base, token, secret, stable, gray, out] = process.argv.slice(2);
const require = createRequire(`${process.env.VANE_PLAYWRIGHT_DIR}/`);
const { chromium } = require("playwright-core");

function postFrom(n, path, headers, body) {
  return new Promise((resolve, reject) => {
    const request = http.request(`${base}${path}`, { method: "POST", localAddress: `127.0.${n}.1`, headers: { "Content-Type": "application/json", ...headers } }, (response) => {
      response.resume();
      response.on("end", resolve);
    });
    request.on("error", reject);
    request.end(JSON.stringify(body));
  });
}

// Every network fetches (and is served) both sides of the split; half report the gray version.
for (let n = 1; n <= 80; n++) {
  for (let d = 0; d < 4; d++) await postFrom(n, "/config/banner", {}, { meta: { device_id: `phone-${n}-${d}` }, cached: false });
}
for (let n = 1; n <= 40; n++) {
  for (let d = 0; d < 4; d++) {
    await postFrom(n, "/api/v1/configs/banner/reports", { Secret: secret }, { code_id: gray, device_id: `phone-${n}-${d}`, message: "crash" });
    await postFrom(n, `/report/banner/${gray}`, { Secret: secret }, { err_time: 1700000000, message: "crash" });
  }
}

const browser = await chromium.launch({ executablePath: process.env.VANE_CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
const shot = (name) => page.screenshot({ path: `${out}/${name}.png`, fullPage: true });
await page.goto(`${base}/console`);
await page.locator("#token").fill(token);
await page.keyboard.press("Enter");
await page.getByRole("heading", { name: "Configs" }).waitFor();
await page.waitForTimeout(1000);
await shot("list-after-break");
await page.goto(`${base}/console#/configs/banner`);
await page.getByRole("heading", { name: "Config banner" }).waitFor();
await page.waitForTimeout(1000);
await shot("config-after-break");
// A release of the gray version, which its failing test refuses.
const release = page.locator(`tr:has-text("${gray.slice(0, 8)}") button:has-text("Release")`).first();
if (await release.count()) {
  await release.click();
  const go = page.locator("#confirm-go");
  if (await go.count()) await go.click();
  await page.waitForTimeout(1500);
  await shot("release-refused");
}
await page.setViewportSize({ width: 390, height: 844 });
await page.goto(`${base}/console#/configs/banner/events`);
await page.waitForTimeout(1500);
await shot("events-phone");
await browser.close();
console.log("shots written");
