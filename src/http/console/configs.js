// The configs: each one's status, revision and pointers; create one; filter
// by id or description.

import { api, ApiError } from "./api.js";
import { h, replace, say } from "./dom.js";
import { follow } from "./live.js";

export async function configsView(main) {
  const configs = await api("GET", "/api/v1/configs");
  const rows = h("tbody");
  const search = h("input", { type: "search", id: "search", placeholder: "id or description" });
  const draw = () => {
    const needle = search.value.trim().toLowerCase();
    const shown = configs.filter((c) => !needle || c.id.toLowerCase().includes(needle) || c.description.toLowerCase().includes(needle));
    replace(rows, shown.map(row));
  };
  search.addEventListener("input", draw);
  draw();
  // A change to a listed config redraws its row.
  follow(configs, async (changedId) => {
    if (!main.contains(rows)) return;
    const at = configs.findIndex((c) => c.id === changedId);
    if (at >= 0) configs[at] = await api("GET", `/api/v1/configs/${encodeURIComponent(changedId)}`);
    draw();
  });
  replace(main,
    h("h1", { text: "Configs" }),
    createForm(),
    h("p", {}, h("label", { for: "search" }, "Search "), search),
    h("table", { id: "configs" },
      h("caption", { text: `${configs.length} configs` }),
      h("thead", {}, h("tr", {}, ["Id", "Status", "Revision", "Stable", "Gray"].map((t) => h("th", { scope: "col", text: t })))),
      rows));
}

function row(config) {
  const gray = config.gray ? `${config.gray.code_id} (${config.gray.percentage} %)` : "—";
  return h("tr", {},
    h("th", { scope: "row" }, h("a", { href: `#/configs/${encodeURIComponent(config.id)}` }, config.id)),
    h("td", { text: config.status }),
    h("td", { text: config.revision }),
    h("td", { text: config.release?.code_id ?? "—" }),
    h("td", { text: gray }));
}

function createForm() {
  const id = h("input", { id: "new-id", name: "id", required: true, pattern: "[A-Za-z0-9._\\-]{1,128}", "aria-describedby": "new-id-error" });
  const description = h("input", { id: "new-description", name: "description" });
  const error = h("p", { id: "new-id-error", class: "error", role: "alert" });
  const form = h("form", { id: "create-config", class: "inline" },
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
