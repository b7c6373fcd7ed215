//! Vane's own rules as pure functions and plain data: no actors, no I/O.

pub mod gray;
pub mod health;
pub mod model;
pub mod params;
pub mod resolve;
pub mod rules;

pub use model::{Config, ConfigStatus, Lang, Meta, Version};
