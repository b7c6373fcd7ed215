// What a config serves now, as devices get it: its status, stable and gray,
// a broken version marked as such with why, and the buttons that change them.

import { h } from "./dom.js";
import { short } from "./health.js";

export function serving(id, config, state, reasons, act) {
  const stable = config.release?.code_id;
  const gray = config.gray;
  const grayLine = !gray ? "none"
    : state.grayBroken ? `${gray.code_id} at ${gray.percentage} %: broken, not served; those devices get ${stable ? `stable ${short(stable)}` : "nothing"}`
    : `${gray.code_id} at ${gray.percentage} %`;
  const stableLine = !stable ? "nothing released"
    : state.stableBroken && state.stillServed ? `${stable}: broken, still served (nothing healthy to roll back to; deactivate or release another)`
    : state.stableBroken ? `${stable}: broken, every device is refused` : stable;
  const why = (code) => h("p", { class: "why", text: reasons.get(code) ?? "marked broken" });
  return h("section", { id: "serving", "aria-labelledby": "serving-title" },
    h("h2", { id: "serving-title", text: "Serving" }),
    h("dl", {},
      h("dt", { text: "Status" }), h("dd", { id: "config-status", text: config.status }),
      h("dt", { text: "Revision" }), h("dd", { id: "revision", text: config.revision }),
      h("dt", { text: "Stable" }),
      h("dd", { id: "stable", class: state.stableBroken ? "broken" : null }, stableLine, state.stableBroken && why(stable)),
      h("dt", { text: "Gray" }),
      h("dd", { id: "gray", class: state.grayBroken ? "broken" : null }, grayLine, state.grayBroken && why(gray.code_id))),
    h("button", { type: "button", id: "toggle-status", "data-needs": "publisher", onclick: () => config.status === "active"
      ? act("Deactivate", [`${id} stops answering: its clients get an error (OpenFeature clients their default).`], "PATCH", "", { status: "inactive" })
      : act("Activate", [`${id} answers its clients again.`], "PATCH", "", { status: "active" }) },
      config.status === "active" ? "Deactivate" : "Activate"),
    " ",
    stable && h("button", { type: "button", id: "rollback", "data-needs": "publisher", onclick: () => act("Roll back",
      [`${id} goes back from ${stable} to the release before it.`, "Every device not in gray gets that version at once."],
      "POST", "/rollback", {}) }, "Roll back"),
    " ",
    gray && h("button", { type: "button", id: "remove-gray", "data-needs": "publisher", onclick: () => act("Remove gray",
      [`${gray.code_id} stops being served; its ${gray.percentage} % of devices get ${stable ?? "nothing"}.`],
      "DELETE", "/gray") }, "Remove gray"));
}
