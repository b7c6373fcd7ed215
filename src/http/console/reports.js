// One version's client reports: counted and ignored, by kind, over the
// breaking window and in all, with the ratio the breaking rule judges, and
// the latest messages.

import { api } from "./api.js";
import { h, isolate, labelCells } from "./dom.js";

export async function reportsPanel(path, version) {
  const base = `${path}/versions/${encodeURIComponent(version.code_id)}/reports`;
  const [summary, latest] = await Promise.all([api("GET", `${base}/summary`), api("GET", base)]);
  const rule = summary.rule === "rate"
    ? `breaks at ${summary.break_ratio * 100} % of the ${summary.served_networks ?? summary.served_devices} networks served in ${summary.window_s} s, with at least ${summary.min_sources} networks`
    : `breaks at ${summary.break_threshold} reports`;
  const counts = (title, rows) => labelCells(h("table", { class: "reports" },
    h("caption", { text: title }),
    h("thead", {}, h("tr", {}, ["Kind", "Counts toward breaking", "Reports", "Sources"].map((t) => h("th", { scope: "col", text: t })))),
    h("tbody", {}, rows.length === 0
      ? h("tr", {}, h("td", { colspan: 4, text: "none" }))
      : rows.map((r) => h("tr", {},
        h("td", { text: r.kind }), h("td", { text: r.counted ? "counted" : "ignored" }),
        h("td", { text: r.reports }), h("td", { text: r.sources }))))));
  return h("section", { id: "reports", "aria-labelledby": "reports-title" },
    h("h2", { id: "reports-title", text: `Reports of ${version.code_id}` }),
    h("p", { id: "report-ratio", text: `${summary.broken ? "Broken. " : ""}${summary.counted_sources} counted sources, ratio ${summary.ratio.toFixed(3)}; the rule ${rule}.` }),
    counts(`In the last ${summary.window_s} s`, summary.window),
    counts("In all", summary.total),
    h("h3", { text: "Latest" }),
    h("ul", {}, latest.slice(0, 20).map((r) => h("li", { text: `${r.kind ?? "client"}: ${isolate(r.message)}` }))));
}
