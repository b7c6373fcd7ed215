// One config: what it serves, its versions, uploading one, and releasing.
// Every change asks first, saying what it will do; its outcome, success or
// refusal, goes to the page's message region (dom.js `say`/`sayError`).

import { api, ApiError } from "./api.js";
import { h, isolate, replace, say, sayError, confirmChange } from "./dom.js";
import { comparePanel } from "./compare.js";
import { confirmPublish } from "./gate.js";
import { breakReasons, served } from "./health.js";
import { follow } from "./live.js";
import { plansPanel } from "./plans.js";
import { serving } from "./serving.js";
import { uploadForm } from "./upload.js";
import { versionPanel } from "./version.js";
import { versionsTable } from "./versions.js";
import { waitingNote } from "./changes.js";

// The config, its versions (each with its number of tests) and why each
// broken one broke.
async function load(path, id) {
  const [config, versions] = await Promise.all([api("GET", path), api("GET", `${path}/versions`)]);
  await countTests(path, versions);
  const reasons = await breakReasons(id, versions.filter((v) => v.broken).map((v) => v.code_id));
  const state = served(config, new Map(versions.map((v) => [v.code_id, v])), reasons);
  return { config, versions, reasons, state };
}

export async function configView(main, id) {
  const path = `/api/v1/configs/${encodeURIComponent(id)}`;
  let now = await load(path, id);
  const reload = () => configView(main, id);
  const apply = async (title, method, suffix, body) => {
    try {
      const out = await api(method, `${path}${suffix}`, body);
      if (out?.change_request) {
        const r = out.change_request;
        say(`${title}: held for approval (change request ${r.id} needs ${r.approvals_required} approval${r.approvals_required > 1 ? "s" : ""})`);
      } else {
        say(`${title}: done`);
      }
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      sayError(`${title} refused: ${e.message}`);
    }
    // Only what a change alters is redrawn: a whole redraw, finishing after
    // the live update had shown the change, once threw away what was typed.
    await refresh();
  };
  const act = async (title, lines, method, suffix, body) => {
    if (await confirmChange(title, lines)) await apply(title, method, suffix, body);
  };
  // A release or gray asks with the test gate's warning when it is empty.
  const publish = async (title, lines, suffix, body, version) => {
    if (await confirmPublish(path, now.versions, version, title, lines)) await apply(title, "POST", suffix, body);
  };
  const upload = uploadForm(path, reload);
  const servingBox = h("div");
  const waitingBox = h("div", {}, await waitingNote(id));
  const plansBox = h("div", {}, await plansPanel(path, now.versions, reload));
  const versionBox = h("div", { id: "version" });
  const versionsBox = h("div");
  const show = async (version) => replace(versionBox, await versionPanel(path, version, now.reasons, upload.fill, () => refresh()));
  const draw = () => {
    replace(servingBox, serving(id, now.config, now.state, now.reasons, act));
    replace(versionsBox, versionsTable(id, now.config, now.versions, now.reasons, publish, act, show));
  };
  draw();
  replace(main,
    h("h1", {}, `Config ${id}`),
    now.config.description && h("p", { text: isolate(now.config.description) }),
    h("p", {}, h("a", { href: `#/configs/${encodeURIComponent(id)}/events` }, "Events")),
    waitingBox,
    servingBox,
    versionsBox,
    versionBox,
    comparePanel(now.versions),
    plansBox,
    upload.element);
  // What a change elsewhere (another operator, a plan, a break by reports)
  // alters is redrawn; the rest of the page, and anything typed, stays.
  const refresh = async () => {
    const [fresh, panel, waiting] = await Promise.all([load(path, id), plansPanel(path, now.versions, reload), waitingNote(id)]);
    now = fresh;
    draw();
    replace(plansBox, panel);
    replace(waitingBox, waiting);
  };
  follow([now.config], () => main.contains(plansBox) && refresh());
  // A plan's scheduled moves arrive as changes too; its countdown does not.
  const timer = setInterval(async () => {
    if (!main.contains(plansBox)) return clearInterval(timer);
    if (plansBox.querySelector('[data-state="active"]')) replace(plansBox, await plansPanel(path, now.versions, reload));
  }, 1000);
}

// Each version's number of stored tests, as `tests` on it.
async function countTests(path, versions) {
  await Promise.all(versions.map(async (v) => {
    try {
      v.tests = (await api("GET", `${path}/versions/${encodeURIComponent(v.code_id)}/tests`)).length;
    } catch {
      v.tests = null;
    }
  }));
}
