// A config's versions: which is stable, which gray, which broken (with why),
// each one's tests and health, and the buttons that publish or mark it.
// Marks are words as well as colours, so they read without colour too.

import { h, labelCells, when } from "./dom.js";

function marks(config, v) {
  const tags = [];
  if (config.release?.code_id === v.code_id) tags.push(["stable", "stable"]);
  if (config.gray?.code_id === v.code_id) tags.push(["gray", v.broken ? `gray ${config.gray.percentage} %, not served` : `gray ${config.gray.percentage} %`]);
  if (v.broken) tags.push(["broken", "broken"]);
  return tags.length ? tags.map(([kind, text]) => h("span", { class: `tag ${kind}`, text })) : "—";
}

// `publish(title, lines, method, suffix, body, version)` asks (with the test
// gate's warning) and applies; `show(version)` opens it.
export function versionsTable(id, config, versions, reasons, publish, act, show) {
  const rows = versions.map((v) => {
    const percent = h("input", { type: "range", min: 0, max: 100, value: config.gray?.code_id === v.code_id ? config.gray.percentage : 10, "aria-label": `Gray share for ${v.code_id}` });
    const shown = h("output", { text: `${percent.value} %` });
    percent.addEventListener("input", () => { shown.textContent = `${percent.value} %`; });
    const health = v.broken ? reasons.get(v.code_id) ?? "marked broken" : v.error_count > 0 ? `${v.error_count} reports` : "ok";
    const role = [config.release?.code_id === v.code_id && "stable", config.gray?.code_id === v.code_id && "gray", v.broken && "broken"].filter(Boolean).join(" ");
    return h("tr", { "data-code": v.code_id, "data-role": role || null, class: role || null },
      h("th", { scope: "row" }, h("button", { type: "button", class: "link", "aria-label": `Show ${v.code_id}: source, rules, schema and tests`, onclick: () => show(v) }, v.code_id)),
      h("td", { class: "marks" }, marks(config, v)),
      h("td", { text: v.lang }),
      h("td", { text: when(v.created_at) }),
      h("td", { class: "tests", text: v.tests ?? "?" }),
      h("td", { class: v.broken ? "health broken" : "health", text: health }),
      h("td", { class: "actions" },
        h("button", { type: "button", class: "release", "data-needs": "publisher", onclick: () => publish("Release",
          [`${v.code_id} becomes the stable version of ${id}${config.release ? `, replacing ${config.release.code_id}` : ""}.`,
            "Stored tests run first; every device not in gray gets it at once."],
          "/release", { code_id: v.code_id }, v) }, "Release"),
        " ", percent, shown, " ",
        h("button", { type: "button", class: "gray", "data-needs": "publisher", onclick: () => publish("Gray release",
          [`${v.code_id} is served to ${percent.value} % of ${id}'s devices, chosen by a stable hash of their id.`,
            `The others keep ${config.release?.code_id ?? "nothing"}.`],
          "/gray", { code_id: v.code_id, percentage: Number(percent.value) }, v) }, "Gray"),
        " ",
        h("button", { type: "button", class: "mark", "data-needs": "publisher", onclick: () => v.broken
          ? act("Clear the broken mark", [`${v.code_id} may be served again.`], "DELETE", `/versions/${v.code_id}/broken`)
          : act("Mark broken", [`${v.code_id} stops being served: gray falls back to stable, and a broken stable refuses.`], "POST", `/versions/${v.code_id}/broken`) },
          v.broken ? "Clear broken" : "Mark broken"),
        // Reports never take a config offline; an operator may, by marking
        // by hand the version reports broke but left served.
        v.broken && v.still_served && " ",
        v.broken && v.still_served && h("button", { type: "button", class: "offline", "data-needs": "publisher", onclick: () =>
          act("Stop serving", [`${v.code_id} is broken and still served, since nothing healthy came before it. Marked by hand it stops being served: ${id} refuses its clients until another version is released.`], "POST", `/versions/${v.code_id}/broken`) },
          "Stop serving")));
  });
  const table = h("table", { id: "versions" },
    h("thead", {}, h("tr", {}, ["Code", "Serves", "Language", "Created", "Tests", "Health", "Publish"].map((t) => h("th", { scope: "col", text: t })))),
    h("tbody", {}, rows));
  return h("section", { "aria-labelledby": "versions-title" },
    h("h2", { id: "versions-title", text: "Versions" }),
    labelCells(table),
    h("p", { text: "Choose a version's code to see its source, rules, parameter schema and tests." }));
}
