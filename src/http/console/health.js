// What a config actually serves, read from its versions' marks: a broken
// version is never served, so a broken gray's share of devices gets stable
// while the gray pointer still names it, and a broken stable refuses. The
// config list's health column and the config page both read this, so they
// cannot disagree. Why a version broke is its latest `broken` event: the
// evidence reports left, or who marked it by hand.

import { api } from "./api.js";
import { isolate } from "./dom.js";

export const short = (code) => (code && code.length > 8 ? `${code.slice(0, 8)}…` : code);

// The evidence of a break by reports, as a sentence fragment.
export function evidenceText(e) {
  if (!e) return "";
  const rule = e.rule === "rate"
    ? `the rule asks for ${e.required_sources} sources and ${Math.round(e.required_ratio * 1000) / 10} %`
    : `the rule breaks at ${e.required_sources} reports`;
  // Events from before sources were networks name the served count
  // `served_devices`.
  const served = e.served_networks ?? e.served_devices;
  return `${e.counted_sources} of ${served} served networks reported in ${e.window_s} s; ${rule}`;
}

// Why each broken version of the config broke, by code id, from its events.
export async function breakReasons(configId, codes) {
  const reasons = new Map();
  if (codes.length === 0) return reasons;
  const events = await api("GET", `/api/v1/configs/${encodeURIComponent(configId)}/events`);
  for (const code of codes) {
    const e = events.find((ev) => ev.kind === "broken" && ev.to?.code_id === code);
    reasons.set(code, !e ? "marked broken"
      : e.detail?.evidence ? `broken by reports: ${evidenceText(e.detail.evidence)}`
      : `marked broken by ${isolate(e.actor)}`);
  }
  return reasons;
}

// `config` with `versions` (by code id: {broken, error_count}) and the
// reasons above: what stable and gray serve, and one line of health.
export function served(config, versions, reasons) {
  const stableCode = config.release?.code_id ?? null;
  const stable = stableCode && versions.get(stableCode);
  const grayCode = config.gray?.code_id ?? null;
  const gray = grayCode && versions.get(grayCode);
  const grayBroken = Boolean(gray?.broken);
  const stableBroken = Boolean(stable?.broken);
  // Reports never take a config offline: a stable version they broke with
  // nothing healthy to go back to is still served, marked for an operator.
  const stillServed = Boolean(stable?.still_served);
  const problems = [];
  if (stableBroken) {
    const what = stillServed ? "still served: nothing healthy to roll back to" : "every device refused";
    problems.push(`stable ${short(stableCode)} broken, ${what} (${reasons.get(stableCode) ?? "marked broken"})`);
  }
  if (grayBroken) problems.push(`gray ${short(grayCode)} broken, its ${config.gray.percentage} % get ${stableCode ? `stable ${short(stableCode)}` : "nothing"} (${reasons.get(grayCode) ?? "marked broken"})`);
  const reports = [stable, gray].filter((v) => v && !v.broken && v.error_count > 0).map((v) => `${short(v.code_id)}: ${v.error_count} reports`);
  return {
    stableBroken,
    stillServed,
    grayBroken,
    broken: stableBroken || grayBroken,
    grayText: !config.gray ? "—"
      : grayBroken ? `${config.gray.code_id} broken, not served (set to ${config.gray.percentage} %)`
      : `${config.gray.code_id} (${config.gray.percentage} %)`,
    health: problems.length ? problems.join("; ") : reports.length ? reports.join("; ") : "ok",
  };
}

// The stable and gray versions of a config, by code id, read one by one
// (the config list has no versions of its own).
export async function pointedVersions(config) {
  const codes = [config.release?.code_id, config.gray?.code_id].filter(Boolean);
  const base = `/api/v1/configs/${encodeURIComponent(config.id)}/versions`;
  const found = await Promise.all(codes.map((c) => api("GET", `${base}/${encodeURIComponent(c)}`)));
  return new Map(found.map((v) => [v.code_id, v]));
}
