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

export const when = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 19) + " UTC";

// Asks before a change, saying what it will do; resolves true to go ahead.
export function confirmChange(title, lines) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { "aria-labelledby": "confirm-title" },
      h("h2", { id: "confirm-title", text: title }),
      lines.map((line) => h("p", { text: line })),
      h("form", { method: "dialog" },
        h("button", { value: "cancel", type: "submit" }, "Cancel"),
        h("button", { value: "go", type: "submit", class: "primary", id: "confirm-go" }, "Confirm")));
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(dialog.returnValue === "go");
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export function say(message) {
  document.getElementById("status").textContent = message;
}
