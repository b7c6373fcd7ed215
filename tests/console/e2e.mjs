// The console in a real browser (Debian's Chromium, driven by playwright-core):
// sign in, create a config, upload a version with a syntax error and see the
// error at its line, fix it, release, move gray and see the share of devices
// change through the fetch route, roll back, read the events as sentences;
// see every outcome in the message region, a version broken by reports
// marked where it is served, and the live socket outlast ping intervals; at
// a phone's width too. Run by tests/it/console.rs:
//   node e2e.mjs <base url> <admin token> <screenshot dir>
// with VANE_PLAYWRIGHT_DIR naming a directory where playwright-core is installed.

import { createRequire } from "node:module";
import assert from "node:assert/strict";
import http from "node:http";

// A POST from a loopback address of the test's choosing (127.0.N.1): reports
// count per client network, so a break needs many networks, as a real fleet
// has; one machine's reports never break a version.
function postFrom(n, url, headers, body) {
  return new Promise((resolve, reject) => {
    const request = http.request(url, { method: "POST", localAddress: `127.0.${n}.1`, headers: { "Content-Type": "application/json", ...headers } }, (response) => {
      let text = "";
      response.on("data", (chunk) => (text += chunk));
      response.on("end", () => resolve(JSON.parse(text)));
    });
    request.on("error", reject);
    request.end(JSON.stringify(body));
  });
}

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
const confirm = async (title, button = "#confirm-go") => {
  const dialog = page.getByRole("dialog");
  await dialog.waitFor();
  assert.match(await dialog.textContent(), new RegExp(title));
  await page.locator(button).click();
  await dialog.waitFor({ state: "detached" });
};
// The message region, where every outcome is written (and nothing else is).
const success = (text) => page.locator("#messages .message.ok", { hasText: text }).first().waitFor();
const failure = (text) => page.locator("#messages [role=alert]", { hasText: text }).first().waitFor();
const dismissAll = async () => {
  // Each click removes one, so the first is always the next.
  while (await page.locator("#messages .dismiss").count() > 0) await page.locator("#messages .dismiss").first().click();
  assert.equal(await page.locator("#messages [role=alert]").count(), 0, "a dismissed error stayed");
};
const short = (code) => `${code.slice(0, 8)}…`;
const noSideways = async (what) => {
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 390, `${what} is ${width} px wide on a 390 px phone`);
};
const ids = async () => page.evaluate(() => {
  const seen = [...document.querySelectorAll("[id]")].map((e) => e.id);
  return seen.filter((id, i) => seen.indexOf(id) !== i);
});

step("sign in");
await page.goto(`${base}/console`);
await page.getByLabel("Token", { exact: true }).fill("not-the-token");
await page.getByRole("button", { name: "Sign in" }).click();
await page.locator("#token-error", { hasText: "not valid" }).waitFor();
await shot("signin");
await page.getByLabel("Token", { exact: true }).fill(adminToken);
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
step("the playground checks rules against the request it describes, and params against the schema");
await page.locator("#rules").fill('[{"platform": "iphone", "rules": [[{"field": "version", "compare": ">=", "value": "10"}]]}]');
await page.getByLabel("Platform").fill("iphone");
await page.getByLabel("Version (an integer)").fill("9");
await page.getByLabel("App version").fill("2.1.0");
await page.getByLabel("Device id").fill("device-7");
await page.getByRole("button", { name: "Try it" }).click();
await page.locator("#rules-error", { hasText: "do not admit this request (platform `iphone`, version 9" }).waitFor();
await page.getByLabel("Version (an integer)").fill("12");
await page.getByRole("button", { name: "Try it" }).click();
await page.locator("#try-result", { hasText: "welcome" }).waitFor();
await page.locator("#params").fill('[{"name": "vip", "type": "bool"}]');
await page.locator("#try-params").fill("{}");
await page.getByRole("button", { name: "Try it" }).click();
await page.locator("#try-params-error", { hasText: "missing parameter `vip`" }).waitFor();
await page.locator("#params").fill('[{"name": "vip", "type": "bool", "optional": true, "default": true}]');
await page.getByRole("button", { name: "Try it" }).click();
await page.locator("#try-result", { hasText: "welcome" }).waitFor();
await page.locator("#params").fill('[{"name": "vip", "type": "bool", "default": "yes"}]');
await page.getByRole("button", { name: "Try it" }).click();
await page.locator("#params-error", { hasText: /^params_schema: .*the default of `vip` must be of type bool/ }).waitFor();
await page.locator("#rules").fill("[]");
await page.locator("#params").fill("[]");

step("Tab indents in the editor; Escape, then Tab, leaves it");
await page.locator("#code").fill("if p.get('vip'):");
await page.locator("#code").press("End");
await page.keyboard.press("Enter");
await page.keyboard.press("Tab");
await page.keyboard.type("x = 1");
assert.equal(await page.locator("#code").inputValue(), "if p.get('vip'):\n    x = 1");
assert.equal(await page.evaluate(() => document.activeElement.id), "code", "Tab left the editor");
await page.keyboard.press("Shift+Tab");
assert.equal(await page.locator("#code").inputValue(), "if p.get('vip'):\nx = 1");
assert.equal(await page.locator("#rules").inputValue(), "[]", "typed code landed in the rules");
await page.keyboard.press("Escape");
await page.keyboard.press("Tab");
assert.notEqual(await page.evaluate(() => document.activeElement.id), "code", "Escape, then Tab, did not leave the editor");
assert.match(await page.locator("#code-hint").textContent(), /Escape, then Tab/);
await page.locator("#try-params").fill('{"vip": true}');
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
await page.getByRole("button", { name: `Show ${first}: source, rules, schema and tests` }).click();
await page.locator("#source", { hasText: "welcome" }).waitFor();
step("an opened version shows its rules and parameter schema");
await page.locator("#version-rules", { hasText: "No rules" }).waitFor();
assert.match(await page.locator("#version-params").textContent(), /"name": "vip"[\s\S]*"type": "bool"/);
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
step("a release the test gate refuses says why, and stays until dismissed");
await page.locator(`tr[data-code="${first}"] button.release`).click();
await confirm(`${first} becomes the stable version`);
await failure("Release refused: 1 of the version's 1 tests failed");
const region = page.locator("#messages");
assert.equal(await region.getAttribute("role"), "status", "the message region is not a status region");
assert.equal(await region.getAttribute("aria-live"), "polite");
const refusal = page.locator("#messages [role=alert]", { hasText: "Release refused" }).first();
const look = () => refusal.evaluate((e) => {
  const style = getComputedStyle(e);
  return { color: style.color, border: style.borderLeftColor, opacity: style.opacity };
});
const red = await look();
assert.deepEqual([red.color, red.border], ["rgb(138, 0, 24)", "rgb(176, 0, 32)"], "the error is not shown in red");
// Longer than a success lasts (8 s): an error stays, fully visible.
await page.waitForTimeout(8500);
assert.equal((await look()).opacity, "1", "the error faded");
await failure("Release refused");
await shot("refused");
assert.match(await page.locator("#stable").textContent(), /nothing released/);
await dismissAll();
await page.getByRole("button", { name: "Remove vip gets welcome" }).click();
await confirm("is deleted");
await page.locator("#tests li").first().waitFor({ state: "detached" });

step("release with an empty test gate warns first");
await page.locator(`tr[data-code="${first}"] button.release`).click();
await page.locator("#gate-warning", { hasText: "the test gate is empty" }).waitFor();
await confirm(`${first} becomes the stable version of banner`);
await page.locator("#stable", { hasText: first }).waitFor();
await success("Release: done");
await page.locator(`tr[data-code="${first}"] .tag.stable`).waitFor();
step("a rollback with nothing to go back to says so");
await page.getByRole("button", { name: "Roll back" }).click();
await confirm("goes back from");
await failure("no earlier stable version to roll back to");
await page.locator("#messages .dismiss").first().focus();
await page.keyboard.press("Enter");
assert.equal(await page.locator("#messages [role=alert]").count(), 0, "the dismissed error stayed");
assert.deepEqual(await ids(), [], "ids are not unique");
const fetched = await (await fetch(`${base}/config/banner`, { method: "POST", body: JSON.stringify({ params: { vip: true }, cached: false }) })).json();
assert.equal(JSON.parse(fetched.data.result).text, "welcome");

step("a version's reports: counted and ignored, by kind");
const { secret } = await (await fetch(`${base}/api/v1/configs/banner`, { headers: { Authorization: `Bearer ${adminToken}` } })).json();
const reported = await fetch(`${base}/api/v1/configs/banner/reports`, {
  method: "POST", headers: { Secret: secret, "Content-Type": "application/json" },
  body: JSON.stringify({ code_id: first, device_id: "device-1", kind: "render", message: "template line 3: undefined value" }),
});
assert.ok(reported.ok, `report refused: ${reported.status}`);
await page.getByRole("button", { name: `Show ${first}: source, rules, schema and tests` }).click();
await page.locator("#reports tr", { hasText: "render" }).first().waitFor();
assert.match(await page.locator("#reports").textContent(), /ignored/);
assert.match(await page.locator("#report-ratio").textContent(), /0 counted sources, ratio 0\.000/);
await page.locator("#reports li", { hasText: "undefined value" }).waitFor();
// Anyone may send a report (the secret is public): a right-to-left override
// in its message stays inside it.
const override = await fetch(`${base}/api/v1/configs/banner/reports`, {
  method: "POST", headers: { Secret: secret, "Content-Type": "application/json" },
  body: JSON.stringify({ code_id: first, device_id: "device-2", kind: "render", message: "evil \u202E txet desrever" }),
});
assert.ok(override.ok, `report refused: ${override.status}`);
await page.getByRole("button", { name: `Show ${first}: source, rules, schema and tests` }).click();
const evil = await page.locator("#reports li", { hasText: "evil" }).first().textContent();
assert.equal(evil, "render: \u2068evil \u202E txet desrever\u2069", "a report's message is not isolated");
await shot("reports");

step("a passing test on the first version");
await page.getByLabel("Name").fill("vip gets welcome");
await page.locator("#test-params").fill('{"vip": true}');
await page.locator("#test-expected").fill('{"text": "welcome"}');
await page.getByRole("button", { name: "Add test" }).click();
await page.locator(`tr[data-code="${first}"] .tests`, { hasText: "1" }).waitFor();

step("new version from this one: the upload form holds its lang, source, rules and schema");
await page.getByRole("button", { name: "New version from this one" }).click();
assert.equal(await page.locator("#code").inputValue(), broken.replace("if p.get('vip')", "if p.get('vip'):"));
assert.equal(await page.locator("#lang").inputValue(), "starlark");
assert.deepEqual(JSON.parse(await page.locator("#params").inputValue()), [{ name: "vip", type: "bool", optional: true }]);
assert.deepEqual(JSON.parse(await page.locator("#rules").inputValue()), []);
await success(`holds a copy of ${first}`);

step("gray at 50 % serves about half the devices");
await page.locator("#code").fill("return {'text': 'new'}");
await page.locator("#params").fill("[]");
await page.getByRole("button", { name: "Upload" }).click();
await success("uploaded");
await page.locator("#versions tbody tr").nth(1).waitFor();
const codes = await page.locator("#versions tbody tr").evaluateAll((rows) => rows.map((r) => r.dataset.code));
const second = codes.find((c) => c !== first);
const slider = page.locator(`tr[data-code="${second}"] input[type=range]`);
await slider.focus();
await slider.fill("50");
step("an empty test gate offers the earlier version's tests; copied, they refuse this version");
await page.locator(`tr[data-code="${second}"] button.gray`).click();
await page.locator("#gate-warning", { hasText: `${first} has 1` }).waitFor();
await confirm(`${second} is served to 50 %`, "#confirm-copy");
await success(`1 tests copied from ${first} to ${second}`);
await failure("Gray release refused: 1 of the version's 1 tests failed");
await page.locator(`tr[data-code="${second}"] .tests`, { hasText: "1" }).waitFor();
await dismissAll();
await page.getByRole("button", { name: `Show ${second}: source, rules, schema and tests` }).click();
await page.getByRole("button", { name: "Remove vip gets welcome" }).click();
await confirm("is deleted");
await page.locator(`tr[data-code="${second}"] .tests`, { hasText: "0" }).waitFor();
await page.locator(`tr[data-code="${second}"] input[type=range]`).fill("50");
await page.locator(`tr[data-code="${second}"] button.gray`).click();
await confirm(`${second} is served to 50 %`);
await page.locator("#gray", { hasText: `${second} at 50 %` }).waitFor();
await page.locator(`tr[data-code="${second}"] .tag.gray`, { hasText: "gray 50 %" }).waitFor();
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

step("an address that does not decode says so");
await page.goto(`${base}/console#/configs/%E0%A4%A`);
await page.getByRole("heading", { name: "No such page" }).waitFor();
assert.match(await page.locator("#main .error").textContent(), /is not a console address/);
await page.goto(`${base}/console#/configs/banner`);
await page.getByRole("heading", { name: "Config banner" }).waitFor();

step("events");
await page.getByRole("link", { name: "Events" }).click();
await page.getByRole("heading", { name: "Events of banner" }).waitFor();
const kinds = await page.locator("#events tbody tr td:nth-child(3)").allTextContents();
for (const kind of ["created", "release", "gray"]) assert.ok(kinds.includes(kind), `no ${kind} event in ${kinds}`);
assert.ok(kinds.some((k) => k.includes("rollback")), `no rollback event in ${kinds}`);
assert.equal(kinds[0], "plan_aborted", "the newest event, the aborted plan's, comes first");
assert.equal(kinds[1], "gray_removed", "the abort's gray removal comes just before it");
for (const kind of ["uploaded", "plan_paused", "plan_resumed"]) assert.ok(kinds.includes(kind), `no ${kind} event in ${kinds}`);
// Who did it sits between Unicode isolates (FSI, PDI), so a name holding a
// right-to-left override cannot reverse the sentence; compared without them.
const isolated = await page.locator("#events tbody tr .sentence > span").allTextContents();
assert.ok(isolated.some((t) => t.startsWith("\u2068token:tester\u2069 ")), `the actor is not isolated: ${isolated.join(" | ")}`);
const plain = (t) => t.replace(/[\u2068\u2069]/g, "");
const sentences = isolated.map(plain);
assert.ok(sentences.some((t) => t === `token:tester uploaded ${short(first)} (starlark)`), `no upload sentence in ${sentences.join(" | ")}`);
assert.ok(sentences.some((t) => t.startsWith(`token:tester released ${short(second)} (was ${short(first)})`)), `no release sentence in ${sentences.join(" | ")}`);
assert.ok(sentences.some((t) => /^token:tester paused the rollout plan .* at step 1 of 2 \(50 %\)$/.test(t)), `no pause sentence in ${sentences.join(" | ")}`);
assert.ok(sentences.some((t) => /^token:tester aborted the rollout plan .*; its gray was removed$/.test(t)), `no abort sentence in ${sentences.join(" | ")}`);
assert.ok(sentences.some((t) => /^rollout put .* in gray at 20 % \(was none\) \(step 1 of 2 of plan/.test(t)), `no plan move sentence in ${sentences.join(" | ")}`);
await shot("events");

step("switch the config off and on");
await page.getByRole("link", { name: "Back to banner" }).click();
await page.getByRole("button", { name: "Deactivate", exact: true }).click();
await confirm("stops answering");
await page.getByRole("button", { name: "Activate", exact: true }).waitFor();
await success("Deactivate: done");
assert.equal(await page.locator("#config-status").textContent(), "inactive");
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

step("reports break a gray version: the list and the page show what devices are served");
const third = await (await elsewhere("POST", "/versions", { lang: "starlark", source: "return {'text': 'third'}", rules: [], params: [] })).json();
assert.equal((await elsewhere("POST", "/gray", { code_id: third.code_id, percentage: 50 })).status, 200);
await page.locator("#configs tbody tr", { hasText: `${third.code_id} (50 %)` }).waitFor({ timeout: 5000 });
const servedThird = [];
for (let n = 1; n <= 80; n++) {
  const r = await postFrom(n, `${base}/config/banner`, {}, { meta: { device_id: `phone-${n}` }, cached: false });
  if (r.data.code_id === third.code_id) servedThird.push(n);
}
let broke = false;
for (const n of servedThird) {
  const r = await postFrom(n, `${base}/api/v1/configs/banner/reports`, { Secret: secret },
    { code_id: third.code_id, device_id: `phone-${n}`, kind: "client", message: "crash on start" });
  if (r.broke) {
    broke = true;
    break;
  }
}
assert.ok(broke, `reports from ${servedThird.length} served networks did not break ${third.code_id}`);
const listed = page.locator('#configs tr[data-config="banner"]');
await listed.locator(".gray.broken", { hasText: `${third.code_id} broken, not served` }).waitFor({ timeout: 5000 });
await listed.locator(".health.broken", { hasText: `gray ${short(third.code_id)} broken, its 50 % get stable ${short(second)}` }).waitFor();
assert.match(await listed.locator(".health").textContent(), /broken by reports: \d+ of \d+ served networks reported/);
const grayServed = await (await fetch(`${base}/config/banner`, { method: "POST", body: JSON.stringify({ meta: { device_id: `phone-${servedThird[0]}` }, cached: false }) })).json();
assert.equal(grayServed.data.code_id, second, "a broken gray version was still served");
await page.setViewportSize({ width: 1366, height: 900 });
await page.getByRole("link", { name: "banner", exact: true }).click();
await page.getByRole("heading", { name: "Config banner" }).waitFor();
await page.locator("#gray.broken", { hasText: `${third.code_id} at 50 %: broken, not served; those devices get stable ${short(second)}` }).waitFor();
assert.match(await page.locator("#gray .why").textContent(), /^broken by reports: \d+ of \d+ served networks reported in \d+ s/);
assert.equal(await page.locator("#gray").evaluate((e) => getComputedStyle(e).color), "rgb(176, 0, 32)");
await page.locator(`tr[data-code="${third.code_id}"] .tag.broken`).waitFor();
await page.locator(`tr[data-code="${third.code_id}"] .tag.gray`, { hasText: "not served" }).waitFor();
await page.locator(`tr[data-code="${second}"] .tag.stable`).waitFor();
assert.match(await page.locator(`tr[data-code="${third.code_id}"] .health`).textContent(), /^broken by reports: \d+ of \d+ served networks/);
assert.deepEqual(await ids(), [], "ids are not unique");
await shot("broken");
await page.getByRole("link", { name: "Events" }).click();
await page.getByRole("heading", { name: "Events of banner" }).waitFor();
const told = (await page.locator("#events tbody tr .sentence > span").allTextContents()).map(plain);
assert.match(told[0], new RegExp(`^reports broke ${short(third.code_id)}: \\d+ of \\d+ served networks reported in \\d+ s`), told.join(" | "));
await shot("events-desktop");

step("a phone's width");
await page.setViewportSize({ width: 390, height: 844 });
await page.goto(`${base}/console#/configs/banner`);
await page.getByRole("heading", { name: "Config banner" }).waitFor();
const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
assert.ok(overflow <= 0, `the page is ${overflow} px wider than a phone`);
await noSideways("the config page");
// Stacked rows keep their column labels.
const label = await page.locator(`tr[data-code="${third.code_id}"] .health`).evaluate((e) => getComputedStyle(e, "::before").content);
assert.equal(label, '"Health: "');
await page.locator("#gray.broken").waitFor();
await shot("phone");
await page.getByRole("link", { name: "Events" }).click();
await page.getByRole("heading", { name: "Events of banner" }).waitFor();
await noSideways("the events page");
assert.equal(await page.locator("#events tbody tr").first().locator("td").first().evaluate((e) => getComputedStyle(e, "::before").content), '"When: "');
await shot("events-phone");
await page.getByRole("link", { name: "Configs" }).click();
await page.locator("#configs tbody tr").first().waitFor();
await noSideways("the config list");

step("the live socket outlasts ping intervals");
await page.setViewportSize({ width: 1366, height: 900 });
const sockets = [];
page.on("websocket", (ws) => {
  const entry = { url: ws.url(), closed: false };
  ws.on("close", () => { entry.closed = true; });
  sockets.push(entry);
});
// A query of its own, so the page loads afresh and opens one socket.
await page.goto(`${base}/console?idle#/configs/banner`);
await page.getByRole("heading", { name: "Config banner" }).waitFor();
// The server pings every second (tests/it/console.rs); three intervals and more.
await page.waitForTimeout(4500);
const live = sockets.filter((s) => s.url.endsWith("/api/v1/subscribe"));
assert.equal(live.length, 1, `the page opened ${live.length} sockets while idle: it was dropped and reconnected`);
assert.equal(live[0].closed, false, "the idle page's socket was closed");
assert.equal((await elsewhere("DELETE", "/gray")).status, 200);
await page.locator("#gray", { hasText: "none" }).waitFor({ timeout: 2000 });
assert.equal(live[0].closed, false);

await browser.close();
assert.deepEqual(problems, []);
console.log("console: every step passed");
