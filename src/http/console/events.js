// A config's release events, newest first, each with who acted
// (`token:<name>`, `oidc:<email>`, `reports`, `rollout`) and as a sentence
// (who, what, from what, and why); the raw record stays one click away for
// audits.

import { api } from "./api.js";
import { h, isolate, replace, when, labelCells } from "./dom.js";
import { stop } from "./live.js";
import { sentence } from "./sentence.js";

export async function eventsView(main, id) {
  stop();
  const events = await api("GET", `/api/v1/configs/${encodeURIComponent(id)}/events`);
  const rows = events.map((e) => h("tr", { "data-kind": e.kind, class: ["broken", "rollback"].includes(e.kind) && e.actor === "reports" ? "broken" : null },
    h("td", { text: when(e.created_at) }),
    h("td", { text: e.revision }),
    h("td", { class: "kind", text: e.kind }),
    h("td", { class: "actor", text: isolate(e.actor) }),
    h("td", { class: "sentence" },
      h("span", { text: sentence(e) }),
      h("details", {},
        h("summary", { text: "Record" }),
        h("pre", { class: "record", text: JSON.stringify({ from: e.from, to: e.to, forced: e.forced, detail: e.detail }, null, 2) })))));
  const table = h("table", { id: "events" },
    h("thead", {}, h("tr", {}, ["When", "Revision", "Kind", "Who", "What happened"].map((t) => h("th", { scope: "col", text: t })))),
    h("tbody", {}, rows));
  replace(main,
    h("h1", {}, `Events of ${id}`),
    h("p", {}, h("a", { href: `#/configs/${encodeURIComponent(id)}` }, `Back to ${id}`)),
    labelCells(table));
}
