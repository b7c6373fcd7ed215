// One version opened: its source, rules and parameter schema, why it is
// broken if it is, "New version from this one", its tests and its reports.

import { h } from "./dom.js";
import { colour } from "./highlight.js";
import { reportsPanel } from "./reports.js";
import { testsPanel } from "./tests.js";

const json = (id, label, value) => h("pre", { id, class: "source", tabindex: "0", "aria-label": label, text: JSON.stringify(value, null, 2) });

export async function versionPanel(path, version, reasons, fill, changed) {
  const source = h("pre", { id: "source", class: "source", tabindex: "0", "aria-label": `Source of ${version.code_id}` });
  colour(source, version.source, version.lang);
  return h("section", { "aria-labelledby": "version-title" },
    h("h2", { id: "version-title", text: `Version ${version.code_id} (${version.lang})` }),
    version.broken && h("p", { class: "broken why", id: "version-broken", text: `Broken, never served: ${reasons.get(version.code_id) ?? "marked broken"}` }),
    h("button", { type: "button", id: "new-from", "data-needs": "editor", onclick: () => fill(version) }, "New version from this one"),
    h("h3", { text: "Source" }), source,
    h("h3", { text: "Rules" }),
    version.rules.length ? json("version-rules", `Rules of ${version.code_id}`, version.rules) : h("p", { id: "version-rules", text: "No rules: every request is admitted." }),
    h("h3", { text: "Parameter schema" }),
    version.params.length ? json("version-params", `Parameter schema of ${version.code_id}`, version.params) : h("p", { id: "version-params", text: "No parameters declared." }),
    await testsPanel(path, version, changed),
    await reportsPanel(path, version));
}
