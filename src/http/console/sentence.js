// One release event as the sentence an operator reads: who did what, from
// what, and why (a break's evidence, the plan that moved, a forced publish).
// Pure: events.js shows it, with the raw record a click away.

import { isolate } from "./dom.js";
import { evidenceText, short } from "./health.js";

const code = (state) => state?.release?.code_id ?? null;
const grayOf = (state) => state?.gray ?? null;

function why(e) {
  const d = e.detail ?? {};
  const parts = [];
  if (e.forced) parts.push("forced past failing tests");
  if (d.plan && typeof d.step === "number" && e.kind !== "plan_paused" && e.kind !== "plan_resumed" && e.kind !== "plan_aborted") {
    parts.push(`step ${d.step} of ${d.of} of plan ${short(d.plan)}`);
  }
  // An operator's abort says only who, which the sentence already names.
  if (d.aborted) parts.push(d.aborted.startsWith("aborted by") ? `aborting plan ${short(d.plan)}` : `plan ${short(d.plan)} aborted: ${d.aborted}`);
  if (d.plan_paused) parts.push(`this paused plan ${short(d.plan_paused)}`);
  if (d.change_request && d.approved_by) parts.push(`change request ${d.change_request}, approved by ${d.approved_by.map(isolate).join(", ")}`);
  if (d.break_glass) parts.push(`break glass by ${isolate(d.by)}: ${isolate(d.reason)}`);
  return parts.length ? ` (${parts.join("; ")})` : "";
}

function plan(e, verb) {
  const d = e.detail ?? {};
  const at = d.step > 0 ? ` at step ${d.step} of ${d.of}${d.percentage != null ? ` (${d.percentage} %)` : ""}` : " before its first step";
  const removed = e.kind === "plan_aborted" && d.gray_removed ? "; its gray was removed" : "";
  return `${isolate(e.actor)} ${verb} the rollout plan ${short(d.plan)} for ${short(d.code_id)}${at}${removed}`;
}

export function sentence(e) {
  const who = isolate(e.actor);
  const d = e.detail ?? {};
  switch (e.kind) {
    case "created": return `${who} created the config`;
    case "uploaded": return `${who} uploaded ${short(e.to?.code_id)} (${e.to?.lang})`;
    case "release": {
      const was = code(e.from);
      return `${who} released ${short(code(e.to))}${was ? ` (was ${short(was)})` : " (the first release)"}${why(e)}`;
    }
    case "gray": {
      const [before, after] = [grayOf(e.from), grayOf(e.to)];
      const was = !before ? "was none" : before.code_id === after?.code_id ? `was ${before.percentage} %` : `was ${short(before.code_id)} at ${before.percentage} %`;
      return `${who} put ${short(after?.code_id)} in gray at ${after?.percentage} % (${was})${why(e)}`;
    }
    case "gray_removed": return `${who} removed gray ${short(grayOf(e.from)?.code_id)}; its devices get ${short(code(e.to)) ?? "nothing"}${why(e)}`;
    case "rollback":
      if (d.broken && d.evidence) {
        return `${who} broke ${short(d.broken)}: ${evidenceText(d.evidence)}; rolled back to ${short(code(e.to))}`;
      }
      return `${who} rolled back from ${short(code(e.from))} to ${short(code(e.to))}${why(e)}`;
    case "status": return `${who} ${e.to?.status === "active" ? "activated" : "deactivated"} the config`;
    case "broken":
      return d.evidence
        ? `${who} broke ${short(e.to?.code_id)}: ${evidenceText(d.evidence)}`
        : `${who} marked ${short(e.to?.code_id)} broken${why(e)}`;
    case "unbroken": return `${who} cleared the broken mark of ${short(e.to?.code_id)}`;
    case "secret_rotated": return `${who} rotated the client secret (the old one works for a grace period)`;
    case "plan_paused": return plan(e, "paused");
    case "plan_resumed": return plan(e, "resumed");
    case "plan_aborted": return plan(e, "aborted");
    case "plan_started": return `${who} started the rollout plan ${short(e.to?.plan)} for ${short(e.to?.code_id)}${why(e)}`;
    case "approvals": return `${who} set the approvals each change needs to ${e.to?.approvals_required} (was ${e.from?.approvals_required})`;
    default: return `${who}: ${e.kind}`;
  }
}
