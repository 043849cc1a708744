//! The escalation setups several tests share: salve's channels pointed at the bed's real
//! SMTP server and webhook capture, and a dry-run salve with one novel alert escalating by
//! email (the outbox tests).

use std::path::Path;

use serde_json::json;

use super::config::{Channel, SalveConfig, TOKEN, shipped_recipes, toml_path, toml_string};
use super::{SMTP_TEST_USER, SalveProcess, SmtpServer, WebhookCapture};

impl SalveConfig {
    /// `oncall-email` as real email to `smtp` (STARTTLS with AUTH when a `password_file` is
    /// given, plain otherwise); `tickets` as a webhook into `capture` (or log).
    pub fn email_channels(
        self,
        smtp: &SmtpServer,
        password_file: Option<&Path>,
        capture: Option<&WebhookCapture>,
    ) -> SalveConfig {
        let email = match password_file {
            Some(password_file) => Channel::email(&format!("smtp://localhost:{}", smtp.port()))
                .set("tls", "\"starttls\"")
                .set("username", &toml_string(SMTP_TEST_USER))
                .set("password_file", &toml_path(password_file))
                .set("ca_file", &toml_path(smtp.ca_file())),
            None => Channel::plain_email_to(smtp),
        };
        let tickets = match capture {
            Some(capture) => Channel::webhook(&capture.url("/tickets")),
            None => Channel::log(),
        };
        self.channel("oncall-email", email)
            .channel("tickets", tickets)
    }
}

impl Channel {
    /// Email to `smtp` without TLS (the bed's plain SMTP server).
    pub fn plain_email_to(smtp: &SmtpServer) -> Channel {
        Channel::email(&format!("smtp://127.0.0.1:{}", smtp.port())).set("tls", "\"none\"")
    }
}

impl SalveProcess {
    /// A dry-run salve whose default route is plain email to `smtp`, after it accepted one
    /// alert no recipe matches (`NovelThing` on web1): one escalation in its outbox.
    pub async fn escalating_a_novel_alert_to(smtp: &SmtpServer) -> SalveProcess {
        let salve = SalveConfig::new()
            .bearer_token(TOKEN)
            .recipes_dir("recipes")
            .escalation_default(&["oncall-email"])
            .email_channels(smtp, None, None)
            .salve()
            .recipes_dir(&shipped_recipes())
            .start()
            .await;
        salve
            .post_generic(
                json!({ "labels": { "alertname": "NovelThing", "instance": "web1:9100" } }),
            )
            .await;
        salve
    }
}
