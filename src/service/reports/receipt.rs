//! What the report routes answer: whether a report counted or why not
//! (`ReportReason`), what became of it (`Receipt`), and a version's reports as an
//! operator reads them (`ReportSummary`). Vocabulary only: `mod.rs` judges.

use serde::Serialize;

use crate::store::ReportCount;

/// Whether a report counted, or why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportReason {
    /// It counted toward breaking the version.
    Counted,
    /// Its kind is not the version's fault (`render`, `reload`).
    Kind,
    /// Its network was not served the version recently.
    NotServed,
    /// Its network already reported in this window.
    Repeat,
    /// Its network was not served as far as this node knows, and the node
    /// already looked up as many unknown networks for the version as it
    /// will in this half window (a served network is never refused so).
    Storm,
}

impl ReportReason {
    /// As metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counted => "counted",
            Self::Kind => "kind",
            Self::NotServed => "not_served",
            Self::Repeat => "repeat",
            Self::Storm => "storm",
        }
    }
}

/// What became of a report, as the native route answers it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Receipt {
    /// It counted toward breaking the version.
    pub counted: bool,
    /// It was stored for the operator.
    pub stored: bool,
    /// `counted`, or why not.
    pub reason: ReportReason,
    /// This report broke the version.
    pub broke: bool,
    /// ... and the release went back to this version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rolled_back_to: Option<String>,
}

/// A version's reports as an operator reads them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReportSummary {
    /// The version summed up.
    pub code_id: String,
    /// Whether it is marked broken.
    pub broken: bool,
    /// Who marked it broken (`reports`, `token:<name>`, `oidc:<email>`),
    /// while it is.
    pub broken_by: Option<String>,
    /// Counted reports ever (the original's error count).
    pub error_count: i64,
    /// The window the figures below cover, in seconds.
    pub window_s: u64,
    /// Distinct networks served the version in the window, on every node
    /// this one can read.
    pub served_networks: u64,
    /// The same as `served_networks`, under the name it had when sources
    /// were devices (deprecated; kept for clients that read it).
    pub served_devices: u64,
    /// Distinct networks whose reports counted in the window.
    pub counted_sources: i64,
    /// `counted_sources / served_networks`.
    pub ratio: f64,
    /// What breaks it: `rate` with `min_sources` and `break_ratio`, or
    /// `count` with `break_threshold`.
    pub rule: String,
    /// The rate rule's least sources (0 under `count`).
    pub min_sources: u64,
    /// The rate rule's least share (0 under `count`).
    pub break_ratio: f64,
    /// The count rule's threshold (0 under `rate`).
    pub break_threshold: u64,
    /// Reports received in the window, by kind and whether they counted.
    pub window: Vec<ReportCount>,
    /// All reports ever stored, the same way.
    pub total: Vec<ReportCount>,
}

/// A receipt for a report that broke nothing.
pub(super) fn receipt(counted: bool, stored: bool, reason: ReportReason) -> Receipt {
    Receipt {
        counted,
        stored,
        reason,
        broke: false,
        rolled_back_to: None,
    }
}
