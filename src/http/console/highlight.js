// Syntax colours for Starlark (highlight.js's Python grammar: Starlark is a
// dialect of it) and JavaScript, from highlight.js vendored in vendor/.

import hljs from "./vendor/hljs-core.min.js";
import python from "./vendor/hljs-python.min.js";
import javascript from "./vendor/hljs-javascript.min.js";

hljs.registerLanguage("starlark", python);
hljs.registerLanguage("javascript", javascript);

// Fills `element` with `source`, coloured. highlight.js escapes the source
// itself, so its output is safe to set as HTML.
export function colour(element, source, lang) {
  element.innerHTML = hljs.highlight(source, { language: lang === "javascript" ? "javascript" : "starlark", ignoreIllegals: true }).value;
  element.classList.add("hljs");
}
