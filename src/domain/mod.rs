//! Vane's own rules as pure functions and plain data: no actors, no I/O.

pub mod access;
pub mod approval;
pub mod change;
pub mod gray;
pub mod health;
pub mod identity;
pub mod meta;
pub mod model;
pub mod ofrep;
pub mod params;
pub mod registry;
pub mod resolve;
pub mod rollout;
pub mod rules;
pub mod whole;

pub use meta::Meta;
pub use model::{Config, ConfigStatus, Lang, Version};
