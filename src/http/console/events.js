// A config's release events, newest first: who changed what, from what to what.

import { api } from "./api.js";
import { h, replace, when } from "./dom.js";
import { stop } from "./live.js";

const brief = (value) => (value === null || value === undefined ? "—" : JSON.stringify(value));

export async function eventsView(main, id) {
  stop();
  const events = await api("GET", `/api/v1/configs/${encodeURIComponent(id)}/events`);
  const rows = events.map((e) => h("tr", {},
    h("td", { text: when(e.created_at) }),
    h("td", { text: e.revision }),
    h("td", { text: e.kind }),
    h("td", { text: e.actor }),
    h("td", { text: `${brief(e.from)} → ${brief(e.to)}` })));
  replace(main,
    h("h1", {}, `Events of ${id}`),
    h("p", {}, h("a", { href: `#/configs/${encodeURIComponent(id)}` }, `Back to ${id}`)),
    h("table", { id: "events" },
      h("thead", {}, h("tr", {}, ["When", "Revision", "Change", "By", "From → to"].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, rows)));
}
