//! Vane's integration tests, one binary: each module was a test binary of
//! its own, and each of those linked the whole crate, which made most of a
//! debug build's time. Run one module with `cargo test --test it push::`.
//!
//! Everything here shares one process, so no test may change what the
//! process holds for all (its environment, the metrics recorder's numbers,
//! a shared Redis's connections) without keeping to its own part of it:
//! counters are compared before and after, a test that needs an
//! environment of its own runs in a child process (`confinement`), and one
//! that cuts Redis connections has a Redis of its own (`cluster`).

/// rustls's provider, installed as the process starts: every reqwest
/// client panics without one (see `vane::tls`), and the tests build theirs
/// in any order, many before any server starts.
#[used]
#[unsafe(link_section = ".init_array")]
static INSTALL_TLS: extern "C" fn() = {
    extern "C" fn install() {
        vane::tls::install();
    }
    install
};

#[macro_use]
mod common;

mod agent;
mod as_code;
mod changes_console;
mod cluster;
mod confinement;
mod connections;
mod console;
mod console_sso;
mod dashboard;
mod edges;
mod fetch;
mod forgery;
mod forwarded;
mod freshness;
mod health;
mod identity;
mod import;
mod nginx;
mod nginx_services;
mod observe;
mod ofrep;
mod ofrep_events;
mod ofrep_sdk;
mod ops;
mod params;
mod pool;
mod push;
mod recycling;
mod releases;
mod rollout;
mod rollout_cluster;
mod rollout_store;
mod sandbox;
mod services;
mod sso;
mod store;
mod teams;
mod watch;
mod watch_registry;
