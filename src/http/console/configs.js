// The configs: each one's status, revision and pointers; create one; filter
// by id or description.

import { api, ApiError } from "./api.js";
import { h, replace, say, labelCells } from "./dom.js";
import { breakReasons, pointedVersions, served } from "./health.js";
import { follow } from "./live.js";

export async function configsView(main) {
  const [configs, open] = await Promise.all([api("GET", "/api/v1/configs"), api("GET", "/api/v1/plans")]);
  const plans = new Map(open.map((p) => [p.config_id, p]));
  // Each shown config's served state (its stable and gray versions' marks,
  // and why a broken one broke): fetched once per view, for the first
  // hundred configs shown.
  const health = new Map();
  const rows = h("tbody");
  const search = h("input", { type: "search", id: "search", placeholder: "id or description" });
  const table = h("table", { id: "configs" },
    h("caption", { text: `${configs.length} configs` }),
    h("thead", {}, h("tr", {}, ["Id", "Status", "Revision", "Stable", "Gray", "Rollout plan", "Health"].map((t) => h("th", { scope: "col", text: t })))),
    rows);
  const draw = () => {
    const needle = search.value.trim().toLowerCase();
    const shown = configs.filter((c) => !needle || c.id.toLowerCase().includes(needle) || c.description.toLowerCase().includes(needle));
    const paint = () => {
      replace(rows, shown.map((c) => row(c, plans.get(c.id), health.get(c.id))));
      labelCells(table);
    };
    paint();
    const wanted = shown.filter((c) => (c.release || c.gray) && !health.has(c.id)).slice(0, 100);
    for (const c of wanted) health.set(c.id, null);
    Promise.all(wanted.map(async (c) => {
      try {
        const versions = await pointedVersions(c);
        const reasons = await breakReasons(c.id, [...versions.values()].filter((v) => v.broken).map((v) => v.code_id));
        health.set(c.id, served(c, versions, reasons));
      } catch {
        health.delete(c.id);
      }
    })).then(() => wanted.length && main.contains(rows) && paint());
  };
  search.addEventListener("input", draw);
  draw();
  // A change to a listed config redraws its row.
  follow(configs, async (changedId) => {
    if (!main.contains(rows)) return;
    const at = configs.findIndex((c) => c.id === changedId);
    const [config, fresh] = await Promise.all([api("GET", `/api/v1/configs/${encodeURIComponent(changedId)}`), api("GET", "/api/v1/plans")]);
    if (at >= 0) configs[at] = config;
    plans.clear();
    for (const p of fresh) plans.set(p.config_id, p);
    health.delete(changedId);
    draw();
  });
  replace(main,
    h("h1", { text: "Configs" }),
    createForm(),
    h("p", {}, h("label", { for: "search" }, "Search "), search),
    table);
}

function row(config, plan, state) {
  const step = plan?.steps[plan.applied - 1];
  const pending = (config.release || config.gray) && !state;
  return h("tr", { "data-config": config.id },
    h("th", { scope: "row" }, h("a", { href: `#/configs/${encodeURIComponent(config.id)}` }, config.id)),
    h("td", { text: config.status }),
    h("td", { text: config.revision }),
    h("td", { class: state?.stableBroken ? "broken" : null, text: config.release?.code_id ?? "—" }),
    h("td", { class: state?.grayBroken ? "gray broken" : "gray", text: state ? state.grayText : config.gray ? `${config.gray.code_id} (${config.gray.percentage} %)` : "—" }),
    h("td", { class: "plan", text: plan ? `${plan.state}, ${plan.applied} of ${plan.steps.length}${step ? ` (${step.percentage} %)` : ""}` : "—" }),
    h("td", { class: state?.broken ? "health broken" : "health", text: pending ? "…" : state ? state.health : "—" }));
}

function createForm() {
  const id = h("input", { id: "new-id", name: "id", required: true, pattern: "[A-Za-z0-9._\\-]{1,128}", "aria-describedby": "new-id-error" });
  const description = h("input", { id: "new-description", name: "description" });
  const error = h("p", { id: "new-id-error", class: "error", role: "alert" });
  const form = h("form", { id: "create-config", class: "inline", "data-needs": "editor" },
    h("h2", { text: "New config" }),
    h("label", { for: "new-id" }, "Id"), id,
    h("label", { for: "new-description" }, "Description"), description,
    h("button", { type: "submit", class: "primary" }, "Create"),
    error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      await api("POST", "/api/v1/configs", { id: id.value.trim(), description: description.value });
      say(`config ${id.value.trim()} created`);
      location.hash = `#/configs/${encodeURIComponent(id.value.trim())}`;
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      error.textContent = e.message;
      id.setAttribute("aria-invalid", "true");
      id.focus();
    }
  });
  return form;
}
