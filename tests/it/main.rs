//! The one integration-test binary: black-box tests of the real `salve` binary against
//! real processes (Alertmanager, sshd, SMTP) started by `support`.

mod support;

mod alertmanager_e2e;
mod api_auth;
mod api_filters;
mod approval;
mod breaker_key;
mod cli_check;
mod cli_human;
mod config_paths;
mod crash;
mod dedup;
mod escalation_abuse;
mod escalation_channels;
mod escalation_e2e;
mod escalation_routes;
mod failure_limits;
mod failure_stop;
mod guard_e2e;
mod ha_e2e;
mod http_abuse;
mod intake_bounds;
mod intake_http;
mod login_shells;
mod mixin;
mod notify_only;
mod openapi;
mod page_followups;
mod pause;
mod pg_connect;
mod planning_outcomes;
mod quoting;
mod readable_output;
mod recipe_safety;
mod reload;
mod remediation_e2e;
mod retention;
mod secrets;
mod silence;
mod ssh_executor;
mod store_commit_failure;
mod storm;
mod testbed_smoke;
mod ui;
mod unmatched_why;
