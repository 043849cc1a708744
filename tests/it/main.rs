//! The one integration-test binary: black-box tests of the real `salve` binary against
//! real processes (Alertmanager, sshd, SMTP) started by `support`.

mod bed;
mod support;

mod alertmanager_e2e;
mod cli_check;
mod crash;
mod dedup;
mod escalation_channels;
mod escalation_e2e;
mod guard_e2e;
mod ha_e2e;
mod intake_bounds;
mod intake_http;
mod planning_outcomes;
mod quoting;
mod readable_output;
mod remediation_e2e;
mod secrets;
mod ssh_executor;
mod storm;
mod testbed_smoke;
