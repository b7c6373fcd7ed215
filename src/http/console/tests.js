// One version's stored test cases: add one, run them all, see each result.

import { api, ApiError } from "./api.js";
import { h, isolate, replace, say, sayError, confirmChange, labelCells } from "./dom.js";
import { editor } from "./editor.js";

export async function testsPanel(path, version, changed = () => {}) {
  const base = `${path}/versions/${encodeURIComponent(version.code_id)}/tests`;
  const panel = h("section", { id: "tests", "aria-labelledby": "tests-title" });
  const draw = async () => {
    const cases = await api("GET", base);
    const results = h("div", { id: "test-results" });
    const name = h("input", { id: "test-name" });
    const params = editor("test-params", "Parameters (JSON)", "{}", 3);
    const expected = editor("test-expected", "Expected result (JSON)", "", 3);
    const form = h("form", { id: "add-test", "data-needs": "editor" },
      h("h3", { text: "Add a test" }),
      h("label", { for: "test-name" }, "Name"), name,
      params.element, expected.element,
      h("button", { type: "submit" }, "Add test"));
    let replacing = null;
    const edit = (c) => {
      replacing = c;
      name.value = c.name;
      params.area.value = JSON.stringify(c.params, null, 1);
      expected.area.value = JSON.stringify(c.expected, null, 1);
      for (const field of [params, expected]) field.area.dispatchEvent(new Event("input"));
      form.querySelector("button[type=submit]").textContent = `Save ${c.name || c.test_id}`;
      name.focus();
    };
    const remove = async (c) => {
      if (!(await confirmChange("Remove a test", [`${isolate(c.name || c.test_id)} is deleted; publishing no longer runs it.`]))) return;
      await api("DELETE", `${base}/${c.test_id}`);
      await draw();
      changed();
    };
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      params.clear();
      expected.clear();
      const parsed = {};
      for (const [key, field] of [["params", params], ["expected", expected]]) {
        try {
          parsed[key] = JSON.parse(field.value);
        } catch (e) {
          return field.fail(`not JSON: ${e.message}`);
        }
      }
      try {
        // A case is never changed in place: the edited one is added, then the old one removed.
        await api("POST", base, { name: name.value, ...parsed });
        if (replacing) await api("DELETE", `${base}/${replacing.test_id}`);
        say(`test ${isolate(name.value)} ${replacing ? "saved" : "added"}`);
        await draw();
        changed();
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        (e.message.includes("expected") ? expected : params).fail(e.message);
      }
    });
    const run = h("button", { type: "button", id: "run-tests", "data-needs": "editor", disabled: cases.length === 0 }, "Run tests");
    run.addEventListener("click", async () => {
      const outcome = await api("POST", `${base}/run`, {});
      // A failing test would stop a release: kept in view like a refusal.
      const told = `tests of ${version.code_id}: ${outcome.passed} passed, ${outcome.failed} failed`;
      if (outcome.failed > 0) sayError(told);
      else say(told);
      replace(results,
        h("p", { id: "test-summary", text: `${outcome.passed} passed, ${outcome.failed} failed` }),
        labelCells(h("table", {},
          h("thead", {}, h("tr", {}, ["Test", "Outcome", "Got", "Expected"].map((t) => h("th", { scope: "col", text: t })))),
          h("tbody", {}, outcome.results.map((r) => h("tr", {},
            h("td", { text: r.name || r.test_id }),
            h("td", { text: r.passed ? "passed" : `failed${r.error ? `: ${r.error}` : ""}` }),
            h("td", { text: JSON.stringify(r.actual) }),
            h("td", { text: JSON.stringify(r.expected) })))))));
    });
    replace(panel,
      h("h2", { id: "tests-title", text: `Tests of ${version.code_id}` }),
      h("ul", {}, cases.map((c) => h("li", {},
        `${isolate(c.name || c.test_id)}: ${JSON.stringify(c.params)} → ${JSON.stringify(c.expected)} `,
        h("button", { type: "button", "data-needs": "editor", onclick: () => edit(c) }, `Edit ${c.name || c.test_id}`),
        " ",
        h("button", { type: "button", "data-needs": "editor", onclick: () => remove(c) }, `Remove ${c.name || c.test_id}`)))),
      run, results, form);
  };
  await draw();
  return panel;
}
