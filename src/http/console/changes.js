// Change requests (four eyes): the open ones first, each with what it would
// do (the diffs and its version's stored tests, run now) and the decisions
// the signed-in person may take. Outcomes go to the message region.

import { api, ApiError } from "./api.js";
import { h, isolate, replace, say, sayError, when, confirmChange } from "./dom.js";
import { stop } from "./live.js";

// What a request would do, as a sentence.
export function proposalText(p) {
  switch (p.kind) {
    case "release": return `release ${p.code_id}${p.force ? " (forced past failing tests)" : ""}`;
    case "gray": return `put ${p.code_id} in gray at ${p.percentage} %${p.force ? " (forced)" : ""}`;
    case "remove_gray": return "remove the gray release";
    case "rollback": return "roll back to the stable version before the current one";
    case "status": return p.status === "active" ? "activate the config" : "deactivate the config";
    case "plan": return `start a rollout plan for ${p.request?.code_id}`;
    default: return p.kind;
  }
}

function diffBlock(title, text) {
  if (!text || !text.includes("\n@@")) return null;
  const lines = text.split("\n").map((line) => h("span", {
    class: line.startsWith("+") && !line.startsWith("+++") ? "added" : line.startsWith("-") && !line.startsWith("---") ? "removed" : null,
    text: `${line}\n`,
  }));
  return h("details", { open: true }, h("summary", { text: title }), h("pre", { class: "diff" }, lines));
}

async function decide(title, path, body) {
  try {
    const out = await api("POST", path, body);
    const r = out.change_request;
    say(`${title}: change request ${r.id} is ${r.state}${r.state === "open" ? ` (${r.approvals.length} of ${r.approvals_required} approvals)` : ""}`);
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    sayError(`${title} refused: ${e.message}`);
  }
}

async function detailsPanel(box, r, reload) {
  const base = `/api/v1/changes/${encodeURIComponent(r.id)}`;
  let d;
  try {
    d = await api("GET", base);
  } catch (e) {
    if (!(e instanceof ApiError)) throw e;
    replace(box, h("p", { class: "error", role: "alert", text: e.message }));
    return;
  }
  const tests = d.tests && h("p", { class: d.tests.failed ? "broken" : null,
    text: d.tests.failed ? `${d.tests.failed} of ${d.tests.failed + d.tests.passed} stored tests fail now` : `${d.tests.passed} stored tests pass now` });
  const reason = h("input", { type: "text", "data-needs": "publisher", "aria-label": `Reason to reject ${r.id}`, placeholder: "reason (to reject)" });
  const actions = r.state === "open" && h("div", { class: "actions" },
    h("button", { type: "button", class: "primary approve", "data-needs": "publisher", onclick: async () => {
      if (!(await confirmChange("Approve", [`${r.config_id}: ${proposalText(r.proposal)}.`, "The last approval applies it at once."]))) return;
      await decide("Approve", `${base}/approve`);
      await reload();
    } }, "Approve"),
    reason,
    h("button", { type: "button", class: "reject", "data-needs": "publisher", onclick: async () => {
      await decide("Reject", `${base}/reject`, { reason: reason.value });
      await reload();
    } }, "Reject"),
    h("button", { type: "button", class: "cancel", onclick: async () => {
      await decide("Cancel", `${base}/cancel`);
      await reload();
    } }, "Cancel (author)"));
  replace(box,
    d.diff && h("p", { text: `Against the stable version ${d.diff.from ?? "(none yet)"}:` }),
    d.diff && diffBlock("Source", d.diff.source),
    d.diff && diffBlock("Rules", d.diff.rules),
    d.diff && diffBlock("Parameters", d.diff.params),
    tests,
    actions);
}

function row(r, reload) {
  const box = h("div", { class: "change-details" });
  const approvals = r.approvals.map((a) => isolate(a.who)).join(", ") || "none yet";
  return h("li", { class: "change", "data-id": r.id, "data-state": r.state },
    h("p", {},
      h("strong", { text: `${r.config_id}: ${proposalText(r.proposal)}` }), " ",
      h("span", { class: `tag state-${r.state}`, text: r.state })),
    h("p", { class: "hint", text: `asked by ${isolate(r.author)} ${when(r.created_at)}; approvals ${r.approvals.length} of ${r.approvals_required}: ${approvals}${r.reason ? `; reason: ${isolate(r.reason)}` : ""}${r.decided_by ? `; decided by ${isolate(r.decided_by)}` : ""}` }),
    h("button", { type: "button", class: "show", onclick: () => detailsPanel(box, r, reload) }, "What it would do"),
    box);
}

export async function changesView(main, state = "open") {
  stop();
  const filter = h("select", { id: "change-state", "aria-label": "State" },
    ["open", "applied", "rejected", "cancelled", "stale", ""].map((s) => h("option", { value: s, selected: s === state ? true : null }, s || "all")));
  const list = h("ul", { id: "changes", class: "changes" });
  const load = async () => {
    const query = filter.value ? `?state=${filter.value}` : "";
    const requests = await api("GET", `/api/v1/changes${query}`);
    replace(list, requests.length ? requests.map((r) => row(r, load)) : h("li", { text: `No ${filter.value || ""} change requests.` }));
  };
  filter.addEventListener("change", load);
  await load();
  replace(main, h("h1", { text: "Changes" }),
    h("p", { class: "hint", text: "Changes to configs that require approvals wait here until someone other than their author approves them." }),
    h("label", {}, "Show ", filter), list);
}

// On a config's page: the changes that wait for it.
export async function waitingNote(configId) {
  let open;
  try {
    open = await api("GET", `/api/v1/changes?state=open&config_id=${encodeURIComponent(configId)}`);
  } catch {
    return null;
  }
  if (!open.length) return null;
  return h("div", { class: "warning", id: "waiting", role: "note" },
    h("p", { text: `${open.length} change${open.length > 1 ? "s" : ""} wait${open.length > 1 ? "" : "s"} for approval: ${open.map((r) => proposalText(r.proposal)).join("; ")}.` }),
    h("a", { href: "#/changes" }, "Review on the Changes page"));
}
