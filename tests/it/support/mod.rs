//! Test-bed support: real Alertmanager, salve, sshd and SMTP processes on free loopback ports (each
//! sshd a private "host" in its own namespaces), polling and HTTP helpers. A missing bed is a
//! loud panic, never a skipped test. Every `salve.toml` is built by the one typed
//! [`SalveConfig`]; what a test asks a running salve (post, wait for states, read the journal,
//! scrape metrics) is a method of [`SalveProcess`]; test files define no helper another file
//! uses.

mod alertmanager;
mod child;
mod config;
mod enforcing;
mod escalation;
mod http;
mod https_endpoint;
mod journal;
mod postgres;
mod prometheus;
mod salve;
mod smtp;
mod sshd;
mod stores;
mod wait;
pub mod webdriver;
mod webhook_capture;

pub use alertmanager::{Alertmanager, AlertmanagerBuilder};
pub use config::{
    API_BEARER, API_TOKEN, BEARER, Channel, HostEntry, SalveConfig, TOKEN, fixture,
    shipped_recipes, toml_path, toml_string,
};
pub use enforcing::{Enforcing, Inventory, health_status};
pub use http::{get_json, http_client, post_json};
pub use https_endpoint::{HttpsEndpoint, OK_BODY};
pub use journal::{
    FINAL, by_label, event_time, events, metric_value, only, outbox_pending, parse_json_output,
    salve_cli, service_down_on_web1, text, wait_past_next_retry,
};
pub use postgres::{
    Database, PgDatabase, fresh_database, postgres_bed, postgres_ca, salve_cli_with_env,
    stranger_ca, with_options,
};
pub use prometheus::{Prometheus, TEXT_004_ACCEPT, Text004Proxy, promtool};
pub use salve::{SalveBuilder, SalveProcess};
pub use smtp::{SMTP_TEST_PASSWORD, SMTP_TEST_USER, SmtpOptions, SmtpServer};
pub use sshd::{
    LIMITED_SUDO_USER, LOGIN_SHELL_USERS, NO_SUDO_USER, SshHost, TARGET_USER, master_pids,
    short_tempdir, write_known_hosts,
};
pub use stores::StoreKind;
pub(crate) use stores::on_both_stores;
pub use wait::{wait_until, wait_until_every, wait_until_every_saying};
pub use webhook_capture::{CapturedRequest, WebhookCapture};

use std::net::{Ipv4Addr, TcpListener};

/// A loopback port that was free a moment ago. Another process can take it before the caller
/// binds it, so starters that use it retry with a fresh port when the bind fails.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}
