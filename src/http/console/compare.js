// Two versions side by side: what changed in the source, the rules and the
// parameter schema, line by line (jsdiff, vendored in vendor/diff.min.js and
// loaded by index.html as `Diff`). Added and removed lines carry + and -,
// not only a colour.

import { h, replace } from "./dom.js";

const pretty = (value) => `${JSON.stringify(value, null, 2)}\n`;

function lines(title, before, after) {
  const parts = globalThis.Diff.diffLines(before, after);
  const changed = parts.some((p) => p.added || p.removed);
  const rows = parts.flatMap((part) => {
    const mark = part.added ? "+" : part.removed ? "-" : " ";
    const kind = part.added ? "added" : part.removed ? "removed" : "same";
    return part.value.replace(/\n$/, "").split("\n").map((line) => h("span", { class: kind }, `${mark} ${line}\n`));
  });
  return h("div", {},
    h("h3", { text: changed ? title : `${title}: the same` }),
    changed && h("pre", { class: "diff", tabindex: "0", "aria-label": `${title}: differences` }, rows));
}

export function comparePanel(versions) {
  const pick = (id, label, index) => {
    const select = h("select", { id }, versions.map((v) => h("option", { value: v.code_id }, v.code_id)));
    select.selectedIndex = Math.min(index, versions.length - 1);
    return [h("label", { for: id }, label), select];
  };
  const [fromLabel, from] = pick("compare-from", "From", 1);
  const [toLabel, to] = pick("compare-to", "To", 0);
  const out = h("div", { id: "compare-result" });
  const form = h("form", { id: "compare", class: "inline" }, fromLabel, from, toLabel, to, h("button", { type: "submit" }, "Compare"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const [a, b] = [from.value, to.value].map((id) => versions.find((v) => v.code_id === id));
    replace(out,
      lines("Source", `${a.source}\n`, `${b.source}\n`),
      lines("Rules", pretty(a.rules), pretty(b.rules)),
      lines("Parameter schema", pretty(a.params), pretty(b.params)));
  });
  return h("section", { "aria-labelledby": "compare-title" },
    h("h2", { id: "compare-title", text: "Compare versions" }),
    versions.length < 2 ? h("p", { text: "Two versions are needed." }) : [form, out]);
}
