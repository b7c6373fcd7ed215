// A source editor: a textarea with line numbers, and a way to point at the
// line an error names. Given a language, the text is coloured: a coloured
// copy sits under a textarea whose own text is transparent.

import { h } from "./dom.js";
import { colour } from "./highlight.js";

export function editor(id, label, value = "", rows = 12, language = null) {
  const gutter = h("pre", { class: "gutter", "aria-hidden": "true" });
  const area = h("textarea", { id, spellcheck: "false", rows, "aria-describedby": `${id}-error` });
  area.value = value;
  const error = h("p", { id: `${id}-error`, class: "error", role: "alert" });
  const numbers = (marked) => {
    const count = area.value.split("\n").length;
    gutter.replaceChildren(...Array.from({ length: count }, (_, i) =>
      h("span", { class: i + 1 === marked ? "marked" : null, text: `${i + 1}\n` })));
  };
  const under = language && h("pre", { class: "under", "aria-hidden": "true" });
  const paint = () => under && colour(under, `${area.value}\n`, language());
  area.addEventListener("input", () => { numbers(); paint(); });
  area.addEventListener("scroll", () => {
    gutter.scrollTop = area.scrollTop;
    if (under) [under.scrollTop, under.scrollLeft] = [area.scrollTop, area.scrollLeft];
  });
  numbers();
  paint();
  const body = under ? h("div", { class: "stack" }, under, area) : area;
  if (under) area.classList.add("coloured");
  return {
    element: h("div", { class: "field" }, h("label", { for: id }, label), h("div", { class: "editor" }, gutter, body), error),
    // The language changed: colour again.
    paint,
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
