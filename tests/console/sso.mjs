// Single sign-on in a real browser (Debian's Chromium, playwright-core)
// against a real provider (idp.mjs): a viewer signs in, sees the configs
// but no release or upload control and no secret, and signs out; a
// publisher signs in, releases a version, reads the console's message,
// finds themselves in the release log, and approves a change another
// person asked for on the Changes page; each session cookie is printed
// after sign-out (`signed-out cookie: ...`) for tests/it/console_sso.rs to
// replay. Run as:
//   node sso.mjs <base url> <config id> <code id to release> <screenshot dir>

import { createRequire } from "node:module";
import assert from "node:assert/strict";

const [base, configId, codeId, shots] = process.argv.slice(2);
const require = createRequire(`${process.env.VANE_PLAYWRIGHT_DIR}/`);
const { chromium } = require("playwright-core");

const browser = await chromium.launch({ executablePath: process.env.VANE_CHROMIUM ?? "/usr/bin/chromium", args: ["--no-sandbox"] });
const problems = [];
const step = (name) => console.log(`step: ${name}`);

// Each person in a browser context of their own, as two people would be.
async function signIn(login) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  // Only Vane's pages count: the provider's development pages load fonts
  // from the internet, which the test machine may not reach.
  page.on("console", (m) => {
    if (!page.url().startsWith(base)) return;
    if (m.type() === "error" && !/status of (401|403)/.test(m.text())) problems.push(`console: ${m.text()} (${page.url()})`);
  });
  await page.goto(`${base}/console`);
  await page.getByRole("link", { name: "Sign in with SSO" }).click();
  // The provider's development login page, then its consent page.
  await page.locator('input[name="login"]').fill(login);
  await page.locator('input[name="password"]').fill("any password");
  await page.getByRole("button", { name: "Sign-in" }).click();
  await page.getByRole("button", { name: "Continue" }).click();
  await page.getByRole("heading", { name: "Configs" }).waitFor();
  await page.locator("#who", { hasText: `oidc:${login}` }).waitFor();
  const session = (await context.cookies(base)).find((c) => c.name === "vane_session");
  assert.ok(session, "no session cookie");
  assert.ok(session.httpOnly, "the session cookie is readable by scripts");
  assert.equal(session.sameSite, "Lax");
  return { context, page, session };
}

async function signOut({ page, session }, shot) {
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("link", { name: "Sign in with SSO" }).waitFor();
  await page.screenshot({ path: `${shots}/sso-${shot}.png`, fullPage: true });
  console.log(`signed-out cookie: ${session.value}`);
}

step("the viewer signs in");
const viewer = await signIn("viewer@example.com");
await viewer.page.screenshot({ path: `${shots}/sso-viewer-configs.png`, fullPage: true });
await viewer.page.getByRole("link", { name: configId, exact: true }).click();
await viewer.page.getByRole("heading", { name: `Config ${configId}` }).waitFor();
await viewer.page.locator(`tr[data-code="${codeId}"]`).waitFor();
step("the viewer sees no control they may not use, and no secret");
for (const control of ["button.release", "button.gray", "button.mark", "#rollback", "#toggle-status", "#upload", "#new-plan"]) {
  assert.equal(await viewer.page.locator(control).filter({ visible: true }).count(), 0, `the viewer sees ${control}`);
}
const seen = await viewer.page.evaluate((id) => fetch(`/api/v1/configs/${id}`).then((r) => r.json()), configId);
assert.equal(seen.secret, "", "the viewer was shown the secret");
await viewer.page.screenshot({ path: `${shots}/sso-viewer-config.png`, fullPage: true });
step("the viewer signs out");
await signOut(viewer, "viewer-signed-out");

step("the publisher signs in and releases");
const ops = await signIn("ops@example.com");
await ops.page.getByRole("link", { name: configId, exact: true }).click();
await ops.page.locator(`tr[data-code="${codeId}"] button.release`).click();
const dialog = ops.page.getByRole("dialog");
await dialog.waitFor();
await ops.page.locator("#confirm-go").click();
await dialog.waitFor({ state: "detached" });
const message = ops.page.locator("#messages .message.ok", { hasText: "Release: done" }).first();
await message.waitFor();
console.log(`message after release: ${await message.textContent()}`);
await ops.page.locator(`tr[data-code="${codeId}"] .tag.stable`).waitFor();
step("the release log names the publisher");
await ops.page.getByRole("link", { name: "Events" }).click();
await ops.page.locator("#events tbody tr").first().waitFor();
const first = ops.page.locator("#events tbody tr").first();
assert.equal(await first.locator(".kind").textContent(), "release");
assert.match(await first.locator(".actor").textContent(), /oidc:ops@example\.com/);
assert.match(await first.locator(".sentence > span").textContent(), /oidc:ops@example\.com.*released/);
await ops.page.screenshot({ path: `${shots}/sso-events.png`, fullPage: true });
step("the publisher approves a change another person asked for");
await ops.page.goto(`${base}/console#/changes`);
const request = ops.page.locator("li.change[data-state=open]", { hasText: "gated: release" }).first();
await request.getByRole("button", { name: "What it would do" }).click();
await request.locator("pre.diff .added").first().waitFor();
await request.getByRole("button", { name: "Approve" }).click();
await ops.page.getByRole("dialog").waitFor();
await ops.page.locator("#confirm-go").click();
const applied = ops.page.locator("#messages .message.ok", { hasText: "is applied" }).first();
await applied.waitFor();
console.log(`message after approval: ${await applied.textContent()}`);
await ops.page.screenshot({ path: `${shots}/sso-approved.png`, fullPage: true });
step("the publisher signs out");
await signOut(ops, "ops-signed-out");

await browser.close();
assert.deepEqual(problems, []);
console.log("sso: every step passed");
