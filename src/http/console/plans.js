// A config's rollout plans: start one from a strategy or explicit steps,
// watch it advance, pause, resume or abort it.

import { api, ApiError } from "./api.js";
import { h, replace, when, confirmChange, say, sayError, labelCells } from "./dom.js";

export async function plansPanel(path, versions, reload) {
  const plans = await api("GET", `${path}/plans`);
  const control = async (plan, action) => {
    const what = { pause: "stops moving; gray stays where it is", resume: "moves on from where it stopped", abort: "ends; gray is removed, the release stays" }[action];
    if (!(await confirmChange(`${action[0].toUpperCase()}${action.slice(1)} the plan`, [`The plan for ${plan.code_id} ${what}.`]))) return;
    try {
      await api("POST", `${path}/plans/${plan.id}/${action}`, {});
      say(`plan for ${plan.code_id}: ${action} done`);
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      sayError(`${action} refused: ${e.message}`);
    }
    await reload();
  };
  const rows = plans.map((p) => {
    const step = p.steps[p.applied - 1];
    return h("tr", { "data-plan": p.id, "data-state": p.state },
      h("td", { text: p.code_id }),
      h("td", { class: "plan-state", text: p.state }),
      h("td", { class: "plan-progress", text: `${p.applied} of ${p.steps.length}${step ? ` (${step.percentage} %)` : ""}` }),
      h("td", { text: p.next_at ? when(p.next_at) : "—" }),
      h("td", { text: p.reason ?? "" }),
      h("td", {},
        p.state === "active" && h("button", { type: "button", "data-needs": "publisher", onclick: () => control(p, "pause") }, "Pause"),
        p.state === "paused" && h("button", { type: "button", "data-needs": "publisher", onclick: () => control(p, "resume") }, "Resume"),
        ["active", "paused"].includes(p.state) && h("button", { type: "button", "data-needs": "publisher", onclick: () => control(p, "abort") }, "Abort")));
  });
  return h("section", { id: "plans", "aria-labelledby": "plans-title" },
    h("h2", { id: "plans-title", text: "Rollout plans" }),
    labelCells(h("table", { id: "plans-table" },
      h("thead", {}, h("tr", {}, ["Version", "State", "Step", "Next move", "Why", "Control"].map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, rows))),
    versions.length ? newPlanForm(path, versions, reload) : h("p", { text: "Upload a version to roll out." }));
}

function newPlanForm(path, versions, reload) {
  const version = h("select", { id: "plan-version" }, versions.map((v) => h("option", { value: v.code_id }, v.code_id)));
  const kind = h("select", { id: "plan-kind" },
    h("option", { value: "steps" }, "Explicit steps"),
    h("option", { value: "linear" }, "Linear: the same step each time"),
    h("option", { value: "exponential" }, "Exponential: multiplied each time"));
  const steps = h("input", { id: "plan-steps", value: "10:60, 50:60, 100:60", "aria-describedby": "plan-steps-help plan-error" });
  const first = h("input", { id: "plan-first", type: "number", min: 1, max: 100, value: 10 });
  const factor = h("input", { id: "plan-factor", type: "number", min: 1.1, step: 0.1, value: 2 });
  const interval = h("input", { id: "plan-interval", type: "number", min: 1, value: 60 });
  const error = h("p", { id: "plan-error", class: "error", role: "alert" });
  const explicit = h("div", {},
    h("label", { for: "plan-steps" }, "Steps"), steps,
    h("p", { id: "plan-steps-help", text: "percent:seconds, comma-separated: each step serves that share, then waits that long under the health gate; 100 is the release." }));
  const rule = h("div", { hidden: true },
    h("label", { for: "plan-first" }, "First (or each) step, %"), first,
    h("label", { for: "plan-factor" }, "Factor (exponential)"), factor,
    h("label", { for: "plan-interval" }, "Seconds each step waits"), interval);
  kind.addEventListener("change", () => {
    explicit.hidden = kind.value !== "steps";
    rule.hidden = kind.value === "steps";
  });
  const form = h("form", { id: "new-plan", "data-needs": "publisher" },
    h("h3", { text: "Start a plan" }),
    h("label", { for: "plan-version" }, "Version"), version,
    h("label", { for: "plan-kind" }, "Steps by"), kind,
    explicit, rule,
    h("button", { type: "submit" }, "Start plan"),
    error);
  const request = () => {
    if (kind.value === "linear") {
      return [{ kind: "linear", step: Number(first.value), interval_s: Number(interval.value) },
        `${first.value} % more every ${interval.value} s up to the release`];
    }
    if (kind.value === "exponential") {
      return [{ kind: "exponential", start: Number(first.value), factor: Number(factor.value), interval_s: Number(interval.value) },
        `${first.value} %, times ${factor.value} every ${interval.value} s, up to the release`];
    }
    const parsed = steps.value.split(",").map((s) => s.trim()).filter(Boolean).map((s) => {
      const [percentage, bake] = s.split(":").map(Number);
      return { percentage, bake_s: bake };
    });
    if (parsed.length === 0 || parsed.some((s) => !Number.isInteger(s.percentage) || !Number.isInteger(s.bake_s))) return [null];
    return [parsed, parsed.map((s) => `${s.percentage} % for ${s.bake_s} s`).join(", then ")];
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    steps.removeAttribute("aria-invalid");
    const [plan, summary] = request();
    if (!plan) {
      error.textContent = "each step is percent:seconds, e.g. 10:60";
      steps.setAttribute("aria-invalid", "true");
      return;
    }
    if (!(await confirmChange("Start a rollout plan", [`${version.value} is served to ${summary}.`, "A failed health gate rolls it back."]))) return;
    const body = kind.value === "steps" ? { code_id: version.value, steps: plan } : { code_id: version.value, strategy: plan };
    try {
      const out = await api("POST", `${path}/plans`, body);
      say(out?.change_request ? `plan held for approval (change request ${out.change_request.id})` : "plan started");
      await reload();
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
      error.textContent = e.message;
    }
  });
  return form;
}
