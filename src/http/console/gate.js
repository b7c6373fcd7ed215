// The test gate before a release or gray: stored tests run first, but
// tests belong to one version, so a new version starts with none and would
// be served unchecked. Asking first says so, and offers to copy the nearest
// earlier version's tests through the test-case routes.

import { api } from "./api.js";
import { h, choose, say } from "./dom.js";

const testsOf = (path, code) => `${path}/versions/${encodeURIComponent(code)}/tests`;

// The nearest version before `version` (oldest-first `versions`) with tests.
export function donor(versions, version) {
  const at = versions.findIndex((v) => v.code_id === version.code_id);
  return versions.slice(0, Math.max(at, 0)).reverse().find((v) => v.tests > 0) ?? null;
}

// Copies every test of `from` to `to`; resolves how many.
export async function copyTests(path, from, to) {
  const cases = await api("GET", testsOf(path, from.code_id));
  for (const c of cases) {
    await api("POST", testsOf(path, to.code_id), { name: c.name, meta: c.meta, params: c.params, expected: c.expected });
  }
  say(`${cases.length} tests copied from ${from.code_id} to ${to.code_id}`);
  return cases.length;
}

// Asks before publishing `version`; resolves true to go ahead (after
// copying tests, if that was chosen).
export async function confirmPublish(path, versions, version, title, lines) {
  if (version.tests !== 0) {
    return (await choose(title, lines, [{ value: "go", label: "Confirm", primary: true }])) === "go";
  }
  const from = donor(versions, version);
  const warning = h("p", { class: "warning", id: "gate-warning" },
    `Warning: ${version.code_id} has no stored tests, so the test gate is empty: nothing is checked before devices get it.`,
    from ? ` ${from.code_id} has ${from.tests}; tests belong to one version, so they can be copied to this one first.` : "");
  const choices = [{ value: "go", label: "Confirm without tests" }];
  if (from) choices.push({ value: "copy", label: `Copy ${from.tests} tests from ${from.code_id}, then go on`, primary: true });
  const chosen = await choose(title, [...lines, warning], choices);
  if (chosen === "copy") await copyTests(path, from, version);
  return chosen !== null;
}
