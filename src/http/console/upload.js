// Uploading a version: language, source, rules and parameter schema, with
// each refusal shown beside the field it names and what was typed kept.
// `fill` copies an existing version in, for "New version from this one".

import { api, ApiError } from "./api.js";
import { h, say } from "./dom.js";
import { editor } from "./editor.js";
import { playground } from "./playground.js";

const pretty = (value) => JSON.stringify(value, null, 2);

export function uploadForm(path, reload) {
  const lang = h("select", { id: "lang" }, h("option", { value: "starlark" }, "Starlark"), h("option", { value: "javascript" }, "JavaScript"));
  const code = editor("code", "Source (the body of a function of p)", "return {\"enabled\": True}", 12, () => lang.value);
  lang.addEventListener("change", () => code.paint());
  const rules = editor("rules", "Rules (JSON)", "[]", 4);
  const params = editor("params", "Parameter schema (JSON)", "[]", 4);
  const error = h("p", { class: "error", role: "alert", id: "upload-error" });
  const heading = h("h2", { id: "upload-title", text: "Upload a version" });
  const form = h("form", { id: "upload", "data-needs": "editor", "aria-labelledby": "upload-title" },
    heading,
    h("div", { class: "field" }, h("label", { for: "lang" }, "Language"), lang),
    code.element, rules.element, params.element,
    h("button", { type: "submit", class: "primary" }, "Upload"),
    error,
    playground(lang, code, rules, params));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    for (const field of [code, rules, params]) field.clear();
    error.textContent = "";
    const body = { lang: lang.value, source: code.value, rules: rules.json("rules"), params: params.json("the schema") };
    if (body.rules === undefined || body.params === undefined) return;
    try {
      const version = await api("POST", `${path}/versions`, body);
      say(`version ${version.code_id} uploaded`);
      await reload();
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      // The server names which part it refused; the text typed stays.
      if (e.code === "invalid_rules") rules.fail(e.message);
      else if (e.code === "invalid_params_schema") params.fail(e.message);
      else if (e.status === 422) code.fail(e.message);
      else error.textContent = e.message;
    }
  });
  const fill = (version) => {
    lang.value = version.lang;
    code.set(version.source);
    rules.set(pretty(version.rules));
    params.set(pretty(version.params));
    heading.textContent = `Upload a version (from ${version.code_id})`;
    form.scrollIntoView({ block: "start" });
    code.area.focus();
    say(`the upload form holds a copy of ${version.code_id}: change it, then upload`);
  };
  return { element: form, fill };
}
