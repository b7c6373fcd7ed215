//! Telling Vane a version's output could not be put in force here: a
//! `check` report counts toward breaking the version, a `render` one is
//! shown to the operator.

use serde_json::json;

use super::Counters;
use super::config::Resource;
use super::text::{chain, truncate_at_char};
use crate::domain::health::{MAX_MESSAGE_BYTES, ReportKind};

/// Reports `message` against `code_id` through the resource's first config.
pub async fn report(
    resource: &Resource,
    http: &reqwest::Client,
    counters: &Counters,
    code_id: &str,
    kind: ReportKind,
    message: &str,
) {
    let Some(fetch) = resource.fetches().into_iter().next() else {
        return;
    };
    let url = format!("{}/api/v1/configs/{}/reports", resource.server, fetch.config_id);
    let mut message = format!("vane watch ({}): {message}", resource.name);
    truncate_at_char(&mut message, MAX_MESSAGE_BYTES);
    let body = json!({"code_id": code_id, "device_id": resource.meta.device_id,
                      "kind": kind, "message": message.replace('\0', "")});
    let sent = http.post(url).header("Secret", fetch.secret).json(&body).send().await;
    match sent {
        Ok(r) if r.status().is_success() => counters.add(&counters.reports),
        Ok(r) => tracing::warn!(resource = resource.name, status = %r.status(), "report refused"),
        Err(e) => tracing::warn!(resource = resource.name, error = chain(&e), "report not sent"),
    }
}
