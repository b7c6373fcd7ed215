// Building the page from data without parsing any of it as HTML.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "text") element.textContent = value;
    else element.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

export function replace(parent, ...children) {
  parent.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

// Any stored number shows: a date past what Date holds (a plan's start_at of
// year 275,760 or more) would otherwise throw and blank the page.
export function when(ms) {
  const date = new Date(ms);
  if (!Number.isFinite(date.getTime())) return `${ms} (not a date)`;
  return date.toISOString().replace("T", " ").replace(/\.\d+Z$/, "") + " UTC";
}

// Text anyone may have written (a report's message, a description, an
// actor's or a test's name) between Unicode isolates (FSI ... PDI): a
// right-to-left override inside it then cannot reverse the sentence around
// it, wherever the text is used, in an element or inside a longer string.
export const isolate = (text) => `\u2068${text ?? ""}\u2069`;

// Asks before a change, saying what it will do; resolves true to go ahead.
export async function confirmChange(title, lines) {
  return (await choose(title, lines, [{ value: "go", label: "Confirm", primary: true }])) === "go";
}

// Asks with several ways to go ahead (`choices`: {value, label, primary?},
// each a button after Cancel); resolves the value chosen, or null. Focus
// opens on Cancel, the safe choice.
export function choose(title, lines, choices) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { "aria-labelledby": "confirm-title" },
      h("h2", { id: "confirm-title", text: title }),
      lines.map((line) => (line instanceof Node ? line : h("p", { text: line }))),
      h("form", { method: "dialog" },
        h("button", { value: "cancel", type: "submit" }, "Cancel"),
        choices.map((c, i) => h("button", { value: c.value, type: "submit", class: c.primary ? "primary" : null, id: i === 0 ? "confirm-go" : `confirm-${c.value}` }, c.label))));
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(choices.some((c) => c.value === dialog.returnValue) ? dialog.returnValue : null);
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

// Every message has one place, the page's message region (index.html),
// which no view redraws: a message written into a view's own element was
// wiped by the next redraw. Successes fade; errors stay, marked as alerts,
// until the operator dismisses them.
const FADE_MS = 8000;

export function say(message) {
  const region = document.getElementById("messages");
  // One success at a time: the newest replaces the last, so a run of
  // changes leaves one line, not a stack.
  for (const old of region.querySelectorAll(".message.ok")) old.remove();
  const note = h("p", { class: "message ok" }, message);
  region.append(note);
  setTimeout(() => note.remove(), FADE_MS);
}

export function sayError(message) {
  const note = h("div", { class: "message error", role: "alert" },
    h("p", { text: message }),
    h("button", { type: "button", class: "dismiss", "aria-label": `Dismiss: ${message}`, onclick: () => note.remove() }, "×"));
  document.getElementById("messages").append(note);
}

// A phone shows each table row as a stack of "label: value" lines; the
// label comes from the cell's column heading, copied here as data-label.
export function labelCells(table) {
  const headings = [...table.querySelectorAll("thead th")].map((th) => th.textContent);
  for (const row of table.querySelectorAll("tbody tr")) {
    [...row.children].forEach((cell, i) => {
      if (headings[i]) cell.dataset.label = headings[i];
    });
  }
  return table;
}
