// The console's router: `#/configs`, `#/configs/<id>`, `#/configs/<id>/events`,
// behind a sign-in: with a token, or through single sign-on when the server
// has it (`GET /auth/methods`). What the signed-in person's role cannot do
// is hidden (body[data-role], console.css).

import { api, ApiError, forget, roleOver, signedIn, signIn, signOut, token, whoAmI } from "./api.js";
import { h, replace, say, sayError } from "./dom.js";
import { configsView } from "./configs.js";
import { configView } from "./config.js";
import { eventsView } from "./events.js";
import { changesView } from "./changes.js";
import { stop } from "./live.js";

const main = () => document.getElementById("main");

async function signInView() {
  let methods = { sso: false };
  try {
    methods = await api("GET", "/auth/methods");
  } catch {
    // An older server: tokens only.
  }
  const field = h("input", { id: "token", type: "password", autocomplete: "off", required: true, "aria-describedby": "token-error" });
  const error = h("p", { id: "token-error", class: "error", role: "alert" });
  const form = h("form", { id: "sign-in" },
    h("h1", { text: "Sign in" }),
    methods.sso && h("p", {}, h("a", { id: "sso", class: "button", href: methods.login_url }, "Sign in with SSO")),
    h("p", { text: methods.sso ? "Or with an API token. It is kept for this tab only." : "With an API token (auth.admin_tokens, or one made at /api/v1/tokens). It is kept for this tab only." }),
    h("label", { for: "token" }, "Token"), field,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
    error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    signIn(field.value.trim());
    try {
      if (!(await whoAmI())) throw new ApiError(401, "unauthorized", "invalid token");
      location.hash = "#/configs";
      await route();
    } catch (e) {
      signOut();
      error.textContent = e instanceof ApiError && e.status === 401 ? "That token is not valid." : e.message;
      field.setAttribute("aria-invalid", "true");
    }
  });
  replace(main(), form);
  field.focus();
}

// Each navigation renders into an element of its own, which the next one
// replaces: a slow view still loading (the configs list after sign-in) then
// fills a detached element, not the page the operator went on to.
let navigation = 0;

async function route() {
  const mine = ++navigation;
  let who = signedIn();
  if (!who) {
    try {
      who = await whoAmI();
    } catch (e) {
      replace(main(), h("h1", { text: "Something went wrong" }), h("p", { class: "error", role: "alert", text: e.message }));
      return;
    }
  }
  document.getElementById("nav").hidden = !who;
  document.getElementById("sign-out").hidden = !who;
  document.getElementById("who").textContent = who ? who.who : "";
  if (!who) {
    stop();
    delete document.body.dataset.role;
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
  const role = roleOver(parts[0] === "configs" && parts[1] ? parts[1] : undefined);
  if (role) document.body.dataset.role = role;
  else delete document.body.dataset.role;
  if (mine !== navigation) return;
  const view = h("div", { class: "view" });
  replace(main(), view);
  try {
    if (parts[0] === "changes") await changesView(view);
    else if (parts[0] === "configs" && parts[1] && parts[2] === "events") await eventsView(view, parts[1]);
    else if (parts[0] === "configs" && parts[1]) await configView(view, parts[1]);
    else await configsView(view);
  } catch (e) {
    if (mine !== navigation) return;
    if (e instanceof ApiError && e.status === 401) {
      signOut();
      forget();
      return route();
    }
    replace(main(), h("h1", { text: "Something went wrong" }), h("p", { class: "error", role: "alert", text: e.message }));
  }
  if (mine === navigation) main().focus();
}

document.getElementById("sign-out").addEventListener("click", async () => {
  if (!token()) {
    // A session ends on the server, for every node; the cookie goes too.
    try {
      await api("POST", "/auth/logout");
    } catch (e) {
      if (!(e instanceof ApiError) || e.status !== 401) return sayError(`sign-out refused: ${e.message}`);
    }
  }
  signOut();
  forget();
  say("signed out");
  location.hash = "";
  route();
});
window.addEventListener("hashchange", route);
route();
