//! salve: a self-healing alert receiver. Alerts in, bounded remediations out,
//! humans paged only when needed. See ARCHITECTURE.md for the map.

pub mod alert;
pub mod cli;
pub mod config;
pub mod duration;
pub mod engine;
pub mod escalate;
#[cfg(test)]
mod fuzz_regressions;
pub mod http;
pub mod incident;
pub mod intake;
pub mod inventory;
pub mod metrics;
pub mod plan;
pub mod recipe;
pub mod secret;
pub mod serve;
pub mod ssh;
pub mod store;
pub mod terminal;
pub mod tomlspan;
pub mod verify;
