// The console in a real browser (Debian's Chromium, driven by playwright-core):
// sign in, create a config, upload a version with a syntax error and see the
// error at its line, fix it, release, move gray and see the share of devices
// change through the fetch route, roll back, read the events; at a phone's
// width too. Run by tests/console.rs:
//   node e2e.mjs <base url> <admin token> <screenshot dir>
// with VANE_PLAYWRIGHT_DIR naming a directory where playwright-core is installed.

import { createRequire } from "node:module";
import assert from "node:assert/strict";

const [base, adminToken, shots] = process.argv.slice(2);
const require = createRequire(`${process.env.VANE_PLAYWRIGHT_DIR}/`);
const { chromium } = require("playwright-core");

const browser = await chromium.launch({ executablePath: process.env.VANE_CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const problems = [];
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
// Refusals the steps provoke on purpose are logged by the browser as failed loads.
page.on("console", (m) => { if (m.type() === "error" && !/status of (400|401|409|422)/.test(m.text())) problems.push(`console: ${m.text()}`); });
const step = (name) => console.log(`step: ${name}`);
const shot = (name) => page.screenshot({ path: `${shots}/console-${name}.png`, fullPage: true });
const confirm = async (title) => {
  const dialog = page.getByRole("dialog");
  await dialog.waitFor();
  assert.match(await dialog.textContent(), new RegExp(title));
  await page.locator("#confirm-go").click();
  await dialog.waitFor({ state: "detached" });
};

step("sign in");
await page.goto(`${base}/console`);
await page.getByLabel("Admin token").fill("not-the-token");
await page.getByRole("button", { name: "Sign in" }).click();
await page.locator("#token-error", { hasText: "not an admin token" }).waitFor();
await shot("signin");
await page.getByLabel("Admin token").fill(adminToken);
await page.keyboard.press("Enter");
await page.getByRole("heading", { name: "Configs" }).waitFor();

step("create a config");
await page.getByLabel("Id", { exact: true }).fill("bad id");
await page.getByRole("button", { name: "Create" }).click();
// The browser's own check refuses the pattern before any request.
assert.equal(await page.locator("#new-id").evaluate((e) => e.validity.valid), false);
await page.getByLabel("Id", { exact: true }).fill("banner");
await page.getByLabel("Description").fill("the home banner");
await page.getByRole("button", { name: "Create" }).click();
await page.getByRole("heading", { name: "Config banner" }).waitFor();

step("a syntax error shows at its line, and what was typed stays");
const broken = "greeting = 'hello'\nif p.get('vip')\n    greeting = 'welcome'\nreturn {'text': greeting}";
await page.locator("#code").fill(broken);
await page.getByRole("button", { name: "Upload" }).click();
await page.locator("#code-error", { hasText: /line 2/ }).waitFor();
assert.equal(await page.locator(".gutter .marked").textContent(), "2\n");
assert.equal(await page.locator("#code").inputValue(), broken);
await shot("error");
step("the playground runs what is typed, storing nothing");
await page.locator("#try-params").fill('{"vip": true}');
await page.getByRole("button", { name: "Try it" }).click();
await page.locator("#code-error", { hasText: /line 2/ }).waitFor();
await page.locator("#code").fill(broken.replace("if p.get('vip')", "if p.get('vip'):"));
await page.getByRole("button", { name: "Try it" }).click();
await page.locator("#try-result", { hasText: "welcome" }).waitFor();
assert.equal(await page.locator("#versions tbody tr").count(), 0, "trying stored a version");
await page.locator("#code").fill(broken);

await page.locator("#params").fill("[{\"name\": \"vip\"}]");
await page.locator("#code").fill(broken.replace("if p.get('vip')", "if p.get('vip'):"));
await page.getByRole("button", { name: "Upload" }).click();
await page.locator("#params-error", { hasText: /type/ }).waitFor();
await page.locator("#params").fill("[{\"name\": \"vip\", \"type\": \"bool\", \"optional\": true}]");
await page.getByRole("button", { name: "Upload" }).click();
await page.locator("#versions tbody tr").first().waitFor();
const first = await page.locator("#versions tbody tr").first().getAttribute("data-code");

step("a test case: add it, run it");
await page.getByRole("button", { name: `Show ${first}: source and tests` }).click();
await page.locator("#source", { hasText: "welcome" }).waitFor();
// Coloured: Starlark as Python, in the viewer and under the editor.
await page.locator("#source .hljs-keyword", { hasText: "return" }).waitFor();
await page.locator("#upload .under .hljs-string").first().waitFor();
await page.getByLabel("Name").fill("vip gets welcome");
await page.locator("#test-params").fill('{"vip": true}');
await page.locator("#test-expected").fill('{"text": "welcome"}');
await page.getByRole("button", { name: "Add test" }).click();
await page.locator("#tests li", { hasText: "vip gets welcome" }).waitFor();
await page.locator(`tr[data-code="${first}"] .tests`, { hasText: "1" }).waitFor();
await page.getByRole("button", { name: "Run tests" }).click();
await page.locator("#test-summary", { hasText: "1 passed, 0 failed" }).waitFor();
await shot("tests");
await page.getByRole("button", { name: "Edit vip gets welcome" }).click();
await page.locator("#test-expected").fill('{"text": "hello"}');
await page.getByRole("button", { name: "Save vip gets welcome" }).click();
await page.locator("#tests li", { hasText: '{"text":"hello"}' }).waitFor();
assert.equal(await page.locator("#tests li").count(), 1, "editing added a second case");
await page.getByRole("button", { name: "Run tests" }).click();
await page.locator("#test-summary", { hasText: "0 passed, 1 failed" }).waitFor();
await page.getByRole("button", { name: "Remove vip gets welcome" }).click();
await confirm("is deleted");
await page.locator("#tests li").first().waitFor({ state: "detached" });

step("release");
await page.locator(`tr[data-code="${first}"] button.release`).click();
await confirm(`${first} becomes the stable version of banner`);
await page.locator("#stable", { hasText: first }).waitFor();
const fetched = await (await fetch(`${base}/config/banner`, { method: "POST", body: JSON.stringify({ params: { vip: true }, cached: false }) })).json();
assert.equal(JSON.parse(fetched.data.result).text, "welcome");

step("a version's reports: counted and ignored, by kind");
const { secret } = await (await fetch(`${base}/api/v1/configs/banner`, { headers: { Authorization: `Bearer ${adminToken}` } })).json();
const reported = await fetch(`${base}/api/v1/configs/banner/reports`, {
  method: "POST", headers: { Secret: secret, "Content-Type": "application/json" },
  body: JSON.stringify({ code_id: first, device_id: "device-1", kind: "render", message: "template line 3: undefined value" }),
});
assert.ok(reported.ok, `report refused: ${reported.status}`);
await page.getByRole("button", { name: `Show ${first}: source and tests` }).click();
await page.locator("#reports tr", { hasText: "render" }).first().waitFor();
assert.match(await page.locator("#reports").textContent(), /ignored/);
assert.match(await page.locator("#report-ratio").textContent(), /0 counted sources, ratio 0\.000/);
await page.locator("#reports li", { hasText: "undefined value" }).waitFor();
await shot("reports");

step("gray at 50 % serves about half the devices");
await page.locator("#code").fill("return {'text': 'new'}");
await page.locator("#params").fill("[]");
await page.getByRole("button", { name: "Upload" }).click();
await page.locator("#versions tbody tr").nth(1).waitFor();
const codes = await page.locator("#versions tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.code));
const second = codes.find((c) => c !== first);
const slider = page.locator(`tr[data-code="${second}"] input[type=range]`);
await slider.focus();
await slider.fill("50");
await page.locator(`tr[data-code="${second}"] button.gray`).click();
await confirm(`${second} is served to 50 %`);
await page.locator("#gray", { hasText: `${second} at 50 %` }).waitFor();
let gray = 0;
for (let i = 0; i < 200; i++) {
  const r = await (await fetch(`${base}/config/banner`, { method: "POST", body: JSON.stringify({ meta: { device_id: `device-${i}` }, cached: false }) })).json();
  if (r.data.code_id === second) gray++;
}
assert.ok(gray > 70 && gray < 130, `gray served ${gray} of 200 devices at 50 %`);
await shot("config");

step("compare two versions");
await page.locator("#compare-from").selectOption(first);
await page.locator("#compare-to").selectOption(second);
await page.getByRole("button", { name: "Compare" }).click();
await page.locator("#compare-result .removed", { hasText: "- greeting = 'hello'" }).waitFor();
await page.locator("#compare-result .added", { hasText: "+ return {'text': 'new'}" }).waitFor();
const compared = await page.locator("#compare-result").textContent();
assert.match(compared, /Rules: the same/);
assert.match(compared, /- +"name": "vip"/);
await shot("compare");

step("release the second, then roll back to the first");
await page.locator(`tr[data-code="${second}"] button.release`).click();
await confirm(`replacing ${first}`);
await page.locator("#stable", { hasText: second }).waitFor();
// By keyboard: the dialog opens on Cancel, the safe choice; Tab reaches Confirm.
await page.getByRole("button", { name: "Roll back" }).focus();
await page.keyboard.press("Enter");
await page.getByRole("dialog").waitFor();
assert.equal(await page.evaluate(() => document.activeElement.textContent), "Cancel");
await page.keyboard.press("Tab");
await page.keyboard.press("Enter");
await page.getByRole("dialog").waitFor({ state: "detached" });
await page.locator("#stable", { hasText: first }).waitFor();

step("a change made elsewhere shows without a reload");
const elsewhere = (method, path, body) => fetch(`${base}/api/v1/configs/banner${path}`, {
  method, headers: { Authorization: `Bearer ${adminToken}`, "Content-Type": "application/json" }, body: body && JSON.stringify(body),
});
await page.locator("#upload #code").fill("return {'text': 'typed, not sent'}");
assert.equal((await elsewhere("POST", "/gray", { code_id: second, percentage: 30 })).status, 200);
await page.locator("#gray", { hasText: `${second} at 30 %` }).waitFor({ timeout: 5000 });
assert.equal((await elsewhere("DELETE", "/gray")).status, 200);
await page.locator("#gray", { hasText: "none" }).waitFor({ timeout: 5000 });
assert.equal(await page.locator("#upload #code").inputValue(), "return {'text': 'typed, not sent'}", "a live update lost what was typed");

step("a rollout plan advances by itself");
await page.locator("#plan-version").selectOption(second);
await page.locator("#plan-steps").fill("20:1, 100:1");
await page.getByRole("button", { name: "Start plan" }).click();
await confirm(`${second} is served to 20 % for 1 s, then 100 % for 1 s`);
await page.locator("#plans .plan-state", { hasText: "active" }).waitFor();
await page.locator("#plans .plan-progress", { hasText: "1 of 2 (20 %)" }).waitFor({ timeout: 15000 });
await page.locator("#gray", { hasText: `${second} at 20 %` }).waitFor();
await shot("plan");
await page.locator("#plans .plan-state", { hasText: "completed" }).waitFor({ timeout: 20000 });
await page.locator("#stable", { hasText: second }).waitFor();

step("a plan by strategy, aborted");
await page.locator("#plan-version").selectOption(first);
await page.locator("#plan-kind").selectOption("linear");
await page.getByLabel("First (or each) step, %").fill("50");
await page.getByLabel("Seconds each step waits").fill("30");
await page.getByRole("button", { name: "Start plan" }).click();
await confirm("50 % more every 30 s up to the release");
await page.locator("#gray", { hasText: `${first} at 50 %` }).waitFor({ timeout: 15000 });
await page.locator("#plans tr[data-state=active]").getByRole("button", { name: "Pause" }).click();
await confirm("stops moving");
await page.locator("#plans tr[data-state=paused]").getByRole("button", { name: "Resume" }).click();
await confirm("moves on");
await page.locator("#plans tr[data-state=active]").getByRole("button", { name: "Abort" }).click();
await confirm("ends; gray is removed");
await page.locator("#plans tr[data-state=aborted]").waitFor();
await page.locator("#gray", { hasText: "none" }).waitFor({ timeout: 5000 });
await page.locator("#stable", { hasText: second }).waitFor();

step("events");
await page.getByRole("link", { name: "Events" }).click();
await page.getByRole("heading", { name: "Events of banner" }).waitFor();
const kinds = await page.locator("#events tbody tr td:nth-child(3)").allTextContents();
for (const kind of ["created", "release", "gray"]) assert.ok(kinds.includes(kind), `no ${kind} event in ${kinds}`);
assert.ok(kinds.some((k) => k.includes("rollback")), `no rollback event in ${kinds}`);
assert.equal(kinds[0], "gray_removed", "the newest event, the aborted plan's, comes first");
await shot("events");

step("switch the config off and on");
await page.getByRole("link", { name: "Back to banner" }).click();
await page.getByRole("button", { name: "Deactivate", exact: true }).click();
await confirm("stops answering");
await page.getByRole("button", { name: "Activate", exact: true }).waitFor();
const off = await fetch(`${base}/config/banner`, { method: "POST", body: JSON.stringify({ cached: false }) });
const history = async () => (await (await elsewhere("GET", "/events")).json()).slice(0, 4).map((e) => `${e.kind} ${JSON.stringify(e.to)}`).join("; ");
assert.equal(off.status, 403, `an inactive config still answered; latest events: ${await history()}`);
await page.getByRole("button", { name: "Activate", exact: true }).click();
await confirm("answers its clients again");
await page.getByRole("button", { name: "Deactivate", exact: true }).waitFor();

step("the config list follows changes too");
await page.getByRole("link", { name: "Configs" }).click();
await page.locator("#configs tbody tr", { hasText: "banner" }).waitFor();
assert.equal((await elsewhere("POST", "/gray", { code_id: first, percentage: 40 })).status, 200);
await page.locator("#configs tbody tr", { hasText: `${first} (40 %)` }).waitFor({ timeout: 5000 });
await page.locator('#configs tr[data-config="banner"] .health', { hasText: /ok|reports/ }).waitFor();
assert.equal(await page.locator('#configs tr[data-config="banner"] .plan').textContent(), "—");
await shot("configs");

step("a phone's width");
await page.setViewportSize({ width: 390, height: 844 });
await page.goto(`${base}/console#/configs/banner`);
await page.getByRole("heading", { name: "Config banner" }).waitFor();
const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone`);
await shot("phone");

await browser.close();
assert.deepEqual(problems, []);
console.log("console: every step passed");
