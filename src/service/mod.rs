//! The services behind cloneable handles that are not actors: management
//! (releases.rs), stored test runs (test_runs.rs), rollout plans (plans.rs),
//! change requests held for approvals (approvals.rs),
//! client error reports (reports/), single sign-on (sso.rs), the service
//! registry's leases and membership (registry.rs), and the one path a change takes to
//! memory, subscribers and the other nodes (announce.rs).

pub mod announce;
pub mod approvals;
pub mod plans;
pub mod registry;
pub mod releases;
pub mod reports;
pub mod sso;
pub mod test_runs;
