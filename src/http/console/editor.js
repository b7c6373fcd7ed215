// A source editor: a textarea with line numbers, and a way to point at the
// line an error names. Given a language, the text is coloured: a coloured
// copy sits under a textarea whose own text is transparent.
//
// Tab indents (Shift+Tab outdents), as code needs; left alone, Tab moved
// focus on and typed code landed in the next box. So keyboard users are not
// trapped, Escape lets the next Tab (or Shift+Tab) move focus as usual; a
// visible hint under each editor says so.

import { h } from "./dom.js";
import { colour } from "./highlight.js";

const INDENT = "    ";

// Inserts text as typing would, so the browser's undo keeps it.
function insert(area, text) {
  if (!document.execCommand("insertText", false, text)) {
    area.setRangeText(text, area.selectionStart, area.selectionEnd, "end");
    area.dispatchEvent(new Event("input"));
  }
}

// Tab: indent at the caret, or every selected line; Shift+Tab: outdent.
function indent(area, outdent) {
  const { value, selectionStart: start, selectionEnd: end } = area;
  const lineStart = value.lastIndexOf("\n", start - 1) + 1;
  if (!outdent && start === end) return insert(area, INDENT);
  const block = value.slice(lineStart, end);
  const lines = block.split("\n");
  const changed = lines.map((line) => (outdent ? line.replace(/^ {1,4}|^\t/, "") : INDENT + line)).join("\n");
  area.setSelectionRange(lineStart, end);
  insert(area, changed);
  area.setSelectionRange(lineStart, lineStart + changed.length);
}

export function editor(id, label, value = "", rows = 12, language = null) {
  const gutter = h("pre", { class: "gutter", "aria-hidden": "true" });
  const area = h("textarea", { id, spellcheck: "false", rows, "aria-describedby": `${id}-hint ${id}-error` });
  area.value = value;
  const error = h("p", { id: `${id}-error`, class: "error", role: "alert" });
  const hint = h("p", { id: `${id}-hint`, class: "hint", text: "Tab indents, Shift+Tab outdents. To leave the editor by keyboard: Escape, then Tab." });
  // Set by Escape: the next Tab leaves the editor instead of indenting.
  let leaving = false;
  area.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      leaving = true;
      return;
    }
    if (event.key === "Tab" && !leaving && !event.ctrlKey && !event.altKey && !event.metaKey) {
      event.preventDefault();
      indent(area, event.shiftKey);
      return;
    }
    if (event.key !== "Shift") leaving = false;
  });
  area.addEventListener("blur", () => { leaving = false; });
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
    element: h("div", { class: "field" }, h("label", { for: id }, label), h("div", { class: "editor" }, gutter, body), hint, error),
    // The language changed: colour again.
    paint,
    area,
    get value() { return area.value; },
    // Replaces the text, numbering and colouring it again.
    set(text) {
      area.value = text;
      area.dispatchEvent(new Event("input"));
    },
    // The text as JSON, or undefined with the error shown under the editor.
    json(name) {
      try {
        return JSON.parse(area.value);
      } catch (e) {
        this.fail(`${name} is not JSON: ${e.message}`);
        return undefined;
      }
    },
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
