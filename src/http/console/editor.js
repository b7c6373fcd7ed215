// A source editor: a textarea with line numbers, and a way to point at the
// line an error names.

import { h } from "./dom.js";

export function editor(id, label, value = "", rows = 12) {
  const gutter = h("pre", { class: "gutter", "aria-hidden": "true" });
  const area = h("textarea", { id, spellcheck: "false", rows, "aria-describedby": `${id}-error` });
  area.value = value;
  const error = h("p", { id: `${id}-error`, class: "error", role: "alert" });
  const numbers = (marked) => {
    const count = area.value.split("\n").length;
    gutter.replaceChildren(...Array.from({ length: count }, (_, i) =>
      h("span", { class: i + 1 === marked ? "marked" : null, text: `${i + 1}\n` })));
  };
  area.addEventListener("input", () => numbers());
  area.addEventListener("scroll", () => { gutter.scrollTop = area.scrollTop; });
  numbers();
  return {
    element: h("div", { class: "field" }, h("label", { for: id }, label), h("div", { class: "editor" }, gutter, area), error),
    area,
    get value() { return area.value; },
    // Shows `message` under the editor; marks and selects the line it names.
    fail(message) {
      error.textContent = message;
      area.setAttribute("aria-invalid", "true");
      const line = Number(/line (\d+)/.exec(message)?.[1]);
      numbers(line || undefined);
      if (line) {
        const start = area.value.split("\n").slice(0, line - 1).join("\n").length + (line > 1 ? 1 : 0);
        area.focus();
        area.setSelectionRange(start, start);
      }
    },
    clear() {
      error.textContent = "";
      area.removeAttribute("aria-invalid");
      numbers();
    },
  };
}
