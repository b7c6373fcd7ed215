// The console's router: `#/configs`, `#/configs/<id>`, `#/configs/<id>/events`,
// behind a sign-in with an admin token.

import { api, ApiError, signIn, signOut, token } from "./api.js";
import { h, replace, say } from "./dom.js";
import { configsView } from "./configs.js";
import { configView } from "./config.js";
import { eventsView } from "./events.js";
import { changesView } from "./changes.js";
import { stop } from "./live.js";

const main = () => document.getElementById("main");

function signInView() {
  const field = h("input", { id: "token", type: "password", autocomplete: "off", required: true, "aria-describedby": "token-error" });
  const error = h("p", { id: "token-error", class: "error", role: "alert" });
  const form = h("form", { id: "sign-in" },
    h("h1", { text: "Sign in" }),
    h("p", { text: "With an admin token (auth.admin_tokens). It is kept for this tab only." }),
    h("label", { for: "token" }, "Admin token"), field,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
    error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    signIn(field.value.trim());
    try {
      await api("GET", "/api/v1/configs");
      location.hash = "#/configs";
      await route();
    } catch (e) {
      signOut();
      error.textContent = e instanceof ApiError && e.status === 401 ? "That token is not an admin token." : e.message;
      field.setAttribute("aria-invalid", "true");
    }
  });
  replace(main(), form);
  field.focus();
}

async function route() {
  const signedIn = Boolean(token());
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("sign-out").hidden = !signedIn;
  if (!signedIn) {
    stop();
    return signInView();
  }
  let parts;
  try {
    parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  } catch {
    // A hand-typed address such as #/configs/%E0%A4%A is no config's.
    replace(main(), h("h1", { text: "No such page" }),
      h("p", { class: "error", role: "alert", text: `${location.hash} is not a console address (its escapes do not decode).` }),
      h("p", {}, h("a", { href: "#/configs" }, "All configs")));
    return;
  }
  try {
    if (parts[0] === "changes") await changesView(main());
    else if (parts[0] === "configs" && parts[1] && parts[2] === "events") await eventsView(main(), parts[1]);
    else if (parts[0] === "configs" && parts[1]) await configView(main(), parts[1]);
    else await configsView(main());
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      signOut();
      return route();
    }
    replace(main(), h("h1", { text: "Something went wrong" }), h("p", { class: "error", role: "alert", text: e.message }));
  }
  main().focus();
}

document.getElementById("sign-out").addEventListener("click", () => {
  signOut();
  say("signed out");
  location.hash = "";
  route();
});
window.addEventListener("hashchange", route);
route();
