// The playground: runs the upload form's code as typed, storing nothing,
// as a fetch would run it: for a request with the metadata given here,
// checked against the form's rules and parameter schema. A refusal names
// its part ("rules: ...", "params: ..."), and shows beside that part.

import { api, ApiError } from "./api.js";
import { h } from "./dom.js";
import { editor } from "./editor.js";

export function playground(lang, code, rules, params) {
  const trial = editor("try-params", "Parameters to try it with (JSON)", "{}", 3);
  const input = (id, label, attributes = {}) => {
    const field = h("input", { id, ...attributes });
    return [field, h("div", { class: "field" }, h("label", { for: id }, label), field)];
  };
  const [platform, platformField] = input("try-platform", "Platform", { placeholder: "e.g. iphone" });
  const [version, versionField] = input("try-version", "Version (an integer)", { type: "number", step: 1 });
  const [appVersion, appVersionField] = input("try-app-version", "App version", { placeholder: "e.g. 2.1.0" });
  const [device, deviceField] = input("try-device", "Device id");
  const tried = h("pre", { id: "try-result", class: "source", "aria-live": "polite" });
  const error = h("p", { id: "try-error", class: "error", role: "alert" });
  const tryIt = h("button", { type: "button", id: "try" }, "Try it");
  tryIt.addEventListener("click", async () => {
    for (const field of [code, rules, params, trial]) field.clear();
    tried.textContent = "";
    error.textContent = "";
    const body = { code: code.value, params: trial.json("the parameters"), rules: rules.json("rules"), params_schema: params.json("the schema") };
    if ([body.params, body.rules, body.params_schema].includes(undefined)) return;
    body.meta = { platform: platform.value.trim(), device_id: device.value.trim() };
    if (version.value !== "") body.meta.version = Number(version.value);
    if (appVersion.value.trim()) body.meta.app_version = appVersion.value.trim();
    try {
      const out = await api("POST", `/playground/${lang.value === "javascript" ? "js" : "starlark"}`, body);
      tried.textContent = typeof out?.data === "string" ? out.data : JSON.stringify(out);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      if (e.message.startsWith("rules:")) rules.fail(e.message);
      else if (e.message.startsWith("params_schema:")) params.fail(e.message);
      else if (e.message.startsWith("params:") || e.message.startsWith("`params`")) trial.fail(e.message);
      else if (e.status !== 400 || /^(malformed JSON body|could not read body)/.test(e.message)) error.textContent = e.message;
      // What is left is the code's own: it does not compile, or it failed.
      else code.fail(e.message);
    }
  });
  return h("section", { id: "playground", "aria-labelledby": "playground-title" },
    h("h3", { id: "playground-title", text: "Playground" }),
    h("p", { text: "Runs the code above as a fetch would, for the request described here: its rules and parameter schema are checked too. Nothing is stored." }),
    h("div", { class: "meta-fields" }, platformField, versionField, appVersionField, deviceField),
    trial.element, tryIt, error, tried);
}
