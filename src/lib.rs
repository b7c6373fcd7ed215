//! Vane: a dynamic client-configuration service. `docs/ARCHITECTURE.md` is the map.
// Denied, not warned: a warning scrolls past in a test run, and every public
// item is part of the map a newcomer reads.
#![deny(missing_docs)]

pub mod actors;
pub mod agent;
pub mod app;
pub mod confine;
pub mod declared;
pub mod domain;
pub mod engine;
pub mod http;
pub mod import;
pub mod metrics;
pub mod names;
pub mod reload;
pub mod secrets;
pub mod server;
pub mod service;
pub mod settings;
pub mod shared;
pub mod store;
pub mod sync;
pub mod tls;
