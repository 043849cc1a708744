//! salve: a self-healing alert receiver. Alerts in, bounded remediations out,
//! humans paged only when needed. See ARCHITECTURE.md for the map.
//!
//! Layering: a top-level module imports (`crate::x`, tests included) only modules
//! earlier in this list, never one after it, so there is no import cycle
//! (`scripts/check-deps` fails on one):
//!
//! 1. leaves, importing nothing from the crate: `secret`, `duration`, `alert`,
//!    `terminal`, `tomlspan`, `maintenance` (window math)
//! 2. values: `plan`, `inventory`, `intake` (monitor JSON → `Alert`), `incident` (the
//!    incident, its states and the typed journal `Event`), `approval` (signed approve/deny
//!    links)
//! 3. `recipe` (shell text in `recipe::shell`, templating, the planner), `metrics`,
//!    `store`
//! 4. `ssh`, then `verify`; `notify` (the channels, each owning its settings type);
//!    `silence` (Alertmanager silences for the life of a fix)
//! 5. `config` (embeds the settings types of `ssh`, `intake`, `notify` and `silence`),
//!    then `config_probes` (what `salve check` looks at beyond parsing) and `reload` (the
//!    live set of recipes, inventory and routes, swapped by a reload)
//! 6. `engine`, `http`
//! 7. `serve`, `cli`, and the test-only `fuzz_regressions`

pub mod alert;
pub mod approval;
pub mod cli;
pub mod config;
pub mod config_probes;
pub mod duration;
pub mod engine;
#[cfg(test)]
mod fuzz_regressions;
pub mod http;
pub mod incident;
pub mod intake;
pub mod inventory;
pub mod maintenance;
pub mod metrics;
pub mod notify;
pub mod plan;
pub mod recipe;
pub mod reload;
pub mod secret;
pub mod serve;
pub mod silence;
pub mod ssh;
pub mod store;
pub mod terminal;
pub mod tomlspan;
pub mod verify;
