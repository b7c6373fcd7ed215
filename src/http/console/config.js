// One config: what it serves, its versions, uploading one, and releasing.
// Every change asks first, saying what it will do; a failed upload keeps
// what was typed and shows each error beside the field it names.

import { api, ApiError } from "./api.js";
import { h, replace, say, when, confirmChange } from "./dom.js";
import { editor } from "./editor.js";
import { colour } from "./highlight.js";
import { comparePanel } from "./compare.js";
import { follow } from "./live.js";
import { plansPanel } from "./plans.js";
import { reportsPanel } from "./reports.js";
import { testsPanel } from "./tests.js";

export async function configView(main, id) {
  const path = `/api/v1/configs/${encodeURIComponent(id)}`;
  const [config, versions] = await Promise.all([api("GET", path), api("GET", `${path}/versions`)]);
  await countTests(path, versions);
  const reload = () => configView(main, id);
  const act = async (title, lines, method, suffix, body) => {
    if (!(await confirmChange(title, lines))) return;
    try {
      await api(method, `${path}${suffix}`, body);
      say(`${title}: done`);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      say(`${title}: ${e.message}`);
    }
    // Only what a change alters is redrawn: a whole redraw, finishing after
    // the live update had shown the change, once threw away what was typed.
    await refresh();
  };
  const servingBox = h("div", {}, serving(id, config, act));
  const plansBox = h("div", {}, await plansPanel(path, versions, reload));
  const versionBox = h("div", { id: "version" });
  const versionsBox = h("div");
  const show = async (version) => replace(versionBox,
    h("h2", { text: `Version ${version.code_id}` }),
    coloured(version),
    await testsPanel(path, version, () => refresh()),
    await reportsPanel(path, version));
  replace(versionsBox, versionsTable(id, config, versions, act, show));
  replace(main,
    h("h1", {}, `Config ${id}`),
    config.description && h("p", { text: config.description }),
    h("p", {}, h("a", { href: `#/configs/${encodeURIComponent(id)}/events` }, "Events")),
    servingBox,
    versionsBox,
    versionBox,
    comparePanel(versions),
    plansBox,
    uploadForm(path, reload));
  // What a change elsewhere (another operator, a plan, a break by reports)
  // alters is redrawn; the rest of the page, and anything typed, stays.
  const refresh = async () => {
    const [now, current, panel] = await Promise.all([api("GET", path), api("GET", `${path}/versions`), plansPanel(path, versions, reload)]);
    await countTests(path, current);
    replace(servingBox, serving(id, now, act));
    replace(versionsBox, versionsTable(id, now, current, act, show));
    replace(plansBox, panel);
  };
  follow([config], () => main.contains(plansBox) && refresh());
  // A plan's scheduled moves arrive as changes too; its countdown does not.
  const timer = setInterval(async () => {
    if (!main.contains(plansBox)) return clearInterval(timer);
    if (plansBox.querySelector('[data-state="active"]')) replace(plansBox, await plansPanel(path, versions, reload));
  }, 1000);
}

// Each version's number of stored tests, as `tests` on it.
async function countTests(path, versions) {
  await Promise.all(versions.map(async (v) => {
    try {
      v.tests = (await api("GET", `${path}/versions/${encodeURIComponent(v.code_id)}/tests`)).length;
    } catch {
      v.tests = null;
    }
  }));
}

function coloured(version) {
  const pre = h("pre", { id: "source", class: "source", tabindex: "0", "aria-label": `Source of ${version.code_id}` });
  colour(pre, version.source, version.lang);
  return pre;
}

function serving(id, config, act) {
  const stable = config.release?.code_id;
  return h("section", { id: "serving", "aria-labelledby": "serving-title" },
    h("h2", { id: "serving-title", text: "Serving" }),
    h("dl", {},
      h("dt", { text: "Status" }), h("dd", { text: config.status }),
      h("dt", { text: "Revision" }), h("dd", { id: "revision", text: config.revision }),
      h("dt", { text: "Stable" }), h("dd", { id: "stable", text: stable ?? "nothing released" }),
      h("dt", { text: "Gray" }), h("dd", { id: "gray", text: config.gray ? `${config.gray.code_id} at ${config.gray.percentage} %` : "none" })),
    h("button", { type: "button", id: "status", onclick: () => config.status === "active"
      ? act("Deactivate", [`${id} stops answering: its clients get an error (OpenFeature clients their default).`], "PATCH", "", { status: "inactive" })
      : act("Activate", [`${id} answers its clients again.`], "PATCH", "", { status: "active" }) },
      config.status === "active" ? "Deactivate" : "Activate"),
    stable && h("button", { type: "button", id: "rollback", onclick: () => act("Roll back",
      [`${id} goes back from ${stable} to the release before it.`, "Every device not in gray gets that version at once."],
      "POST", "/rollback", {}) }, "Roll back"),
    config.gray && h("button", { type: "button", id: "remove-gray", onclick: () => act("Remove gray",
      [`${config.gray.code_id} stops being served; its ${config.gray.percentage} % of devices get ${stable ?? "nothing"}.`],
      "DELETE", "/gray") }, "Remove gray"));
}

function versionsTable(id, config, versions, act, show) {
  const rows = versions.map((v) => {
    const percent = h("input", { type: "range", min: 0, max: 100, value: config.gray?.code_id === v.code_id ? config.gray.percentage : 10, "aria-label": `Gray share for ${v.code_id}` });
    const shown = h("output", { text: `${percent.value} %` });
    percent.addEventListener("input", () => { shown.textContent = `${percent.value} %`; });
    return h("tr", { "data-code": v.code_id },
      h("th", { scope: "row" }, h("button", { type: "button", class: "link", "aria-label": `Show ${v.code_id}: source and tests`, onclick: () => show(v) }, v.code_id)),
      h("td", { text: v.lang }),
      h("td", { text: when(v.created_at) }),
      h("td", { class: "tests", text: v.tests ?? "?" }),
      h("td", { text: v.broken ? "broken" : v.error_count > 0 ? `${v.error_count} reports` : "ok" }),
      h("td", {},
        h("button", { type: "button", class: "release", onclick: () => act("Release",
          [`${v.code_id} becomes the stable version of ${id}${config.release ? `, replacing ${config.release.code_id}` : ""}.`,
            "Stored tests run first; every device not in gray gets it at once."],
          "POST", "/release", { code_id: v.code_id }) }, "Release"),
        " ", percent, shown, " ",
        h("button", { type: "button", class: "mark", onclick: () => v.broken
          ? act("Clear the broken mark", [`${v.code_id} may be served again.`], "DELETE", `/versions/${v.code_id}/broken`)
          : act("Mark broken", [`${v.code_id} stops being served: gray falls back to stable, and a broken stable refuses.`], "POST", `/versions/${v.code_id}/broken`) },
          v.broken ? "Clear broken" : "Mark broken"),
        " ",
        h("button", { type: "button", class: "gray", onclick: () => act("Gray release",
          [`${v.code_id} is served to ${percent.value} % of ${id}'s devices, chosen by a stable hash of their id.`,
            `The others keep ${config.release?.code_id ?? "nothing"}.`],
          "POST", "/gray", { code_id: v.code_id, percentage: Number(percent.value) }) }, "Gray")));
  });
  return h("section", { "aria-labelledby": "versions-title" },
    h("h2", { id: "versions-title", text: "Versions" }),
    h("table", { id: "versions" },
      h("thead", {}, h("tr", {}, ["Code", "Language", "Created", "Tests", "Health", "Release"].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, rows)),
    h("p", { text: "Choose a version's code to see its source and tests." }));
}

function uploadForm(path, reload) {
  const lang = h("select", { id: "lang" }, h("option", { value: "starlark" }, "Starlark"), h("option", { value: "javascript" }, "JavaScript"));
  const code = editor("code", "Source (the body of a function of p)", "return {\"enabled\": True}", 12, () => lang.value);
  lang.addEventListener("change", () => code.paint());
  const rules = editor("rules", "Rules (JSON)", "[]", 4);
  const params = editor("params", "Parameter schema (JSON)", "[]", 4);
  const error = h("p", { class: "error", role: "alert", id: "upload-error" });
  const trial = editor("try-params", "Parameters to try it with (JSON)", "{}", 3);
  const tried = h("pre", { id: "try-result", class: "source", "aria-live": "polite" });
  // The playground runs the code as typed, storing nothing.
  const tryIt = h("button", { type: "button", id: "try" }, "Try it");
  tryIt.addEventListener("click", async () => {
    code.clear();
    trial.clear();
    tried.textContent = "";
    let input;
    try {
      input = JSON.parse(trial.value);
    } catch (e) {
      return trial.fail(`not JSON: ${e.message}`);
    }
    try {
      const out = await api("POST", `/playground/${lang.value === "javascript" ? "js" : "starlark"}`, { code: code.value, params: input });
      tried.textContent = typeof out?.data === "string" ? out.data : JSON.stringify(out);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      code.fail(e.message);
    }
  });
  const form = h("form", { id: "upload" },
    h("h2", { text: "Upload a version" }),
    h("div", { class: "field" }, h("label", { for: "lang" }, "Language"), lang),
    code.element, rules.element, params.element,
    h("button", { type: "submit", class: "primary" }, "Upload"),
    error,
    h("h3", { text: "Playground" }),
    trial.element, tryIt, tried);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const field of [code, rules, params]) field.clear();
    error.textContent = "";
    const json = (field, name) => {
      try {
        return JSON.parse(field.value);
      } catch (e) {
        field.fail(`${name} is not JSON: ${e.message}`);
        return undefined;
      }
    };
    const body = { lang: lang.value, source: code.value, rules: json(rules, "rules"), params: json(params, "the schema") };
    if (body.rules === undefined || body.params === undefined) return;
    try {
      const version = await api("POST", `${path}/versions`, body);
      say(`version ${version.code_id} uploaded`);
      await reload();
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      // The server names which part it refused; the text typed stays.
      if (e.code === "invalid_rules") rules.fail(e.message);
      else if (e.code === "invalid_params_schema") params.fail(e.message);
      else if (e.status === 422) code.fail(e.message);
      else error.textContent = e.message;
    }
  });
  return form;
}
