// Four eyes in a real browser: a publisher's release on a config that needs
// an approval is held (the message says so, the config's page says a change
// waits, nothing moves); a second publisher reads what it would do on the
// Changes page (the source diff, the tests run now), approves it, and sees
// the version marked stable and the release log naming both. The author
// cannot approve their own. Run by tests/it/changes_console.rs:
//   node changes.mjs <base url> <alice's token> <bob's token> <v2 code id> <screenshot dir>

import { createRequire } from "node:module";
import assert from "node:assert/strict";

const [base, alice, bob, v2, shots] = process.argv.slice(2);
const require = createRequire(`${process.env.VANE_PLAYWRIGHT_DIR}/`);
const { chromium } = require("playwright-core");

const browser = await chromium.launch({ executablePath: process.env.VANE_CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
const problems = [];
page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
page.on("console", (m) => { if (m.type() === "error" && !/status of (401|403|409)/.test(m.text())) problems.push(`console: ${m.text()}`); });
const step = (name) => console.log(`step: ${name}`);
const shot = (name) => page.screenshot({ path: `${shots}/changes-${name}.png`, fullPage: true });
const confirm = async (title) => {
  const dialog = page.getByRole("dialog");
  await dialog.waitFor();
  assert.match(await dialog.textContent(), new RegExp(title));
  await page.locator("#confirm-go").click();
  await dialog.waitFor({ state: "detached" });
};
const success = (text) => page.locator("#messages .message.ok", { hasText: text }).first().waitFor();
const failure = (text) => page.locator("#messages [role=alert]", { hasText: text }).first().waitFor();
const signInAs = async (token) => {
  await page.goto(`${base}/console`);
  await page.locator("#token").fill(token);
  await page.locator("#token").press("Enter");
  await page.getByRole("heading", { name: "Configs" }).waitFor();
};

step("a publisher's release is held for approval");
await signInAs(alice);
await page.goto(`${base}/console#/configs/app`);
await page.locator(`tr[data-code="${v2}"] button.release`).click();
await confirm(`${v2} becomes the stable version`);
await success("Release: held for approval");
await page.locator("#waiting", { hasText: "1 change waits for approval: release " + v2 }).waitFor();
assert.doesNotMatch(await page.locator("#stable").textContent(), new RegExp(v2), "a held release moved the stable version");
await shot("held");

step("the author cannot approve their own");
await page.goto(`${base}/console#/changes`);
const request = page.locator("li.change[data-state=open]").first();
await request.waitFor();
// Names are isolated (U+2068 ... U+2069), so bidirectional text cannot reorder them.
assert.match(await request.textContent(), /asked by \u2068token:alice\u2069/);
await request.getByRole("button", { name: "What it would do" }).click();
await request.locator("pre.diff .added", { hasText: "+return 2" }).waitFor();
await request.getByText("stored tests pass now").waitFor();
await request.getByRole("button", { name: "Approve" }).click();
await confirm("Approve");
await failure("Approve refused: the author of a change request cannot approve it");
await shot("own");

step("a second publisher approves it, and it applies");
await page.locator("#sign-out").click();
await signInAs(bob);
await page.goto(`${base}/console#/changes`);
const again = page.locator("li.change[data-state=open]").first();
await again.getByRole("button", { name: "What it would do" }).click();
await again.getByRole("button", { name: "Approve" }).click();
await confirm("Approve");
await success("is applied");
await page.locator("#change-state").selectOption("applied");
await page.locator("li.change[data-state=applied]", { hasText: /decided by \u2068token:bob\u2069/ }).waitFor();
await shot("applied");

step("the config shows the version stable and nothing waiting; the log names both");
await page.goto(`${base}/console#/configs/app`);
await page.locator(`tr[data-code="${v2}"] .tag.stable`).waitFor();
assert.equal(await page.locator("#waiting").count(), 0, "the waiting note stayed after the change applied");
await page.goto(`${base}/console#/configs/app/events`);
await page.locator("#events tr[data-kind=release] .sentence", { hasText: /approved by \u2068token:bob\u2069/ }).first().waitFor();
const sentence = await page.locator("#events tr[data-kind=release] .sentence span").first().textContent();
assert.match(sentence, /^\u2068token:alice\u2069 released/, sentence);
await shot("events");

await browser.close();
assert.deepEqual(problems, []);
console.log("changes: every step passed");
