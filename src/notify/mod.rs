//! Escalation channels: how salve tells a human (log, email, webhook) and what it says
//! (`content`). One entry point, `Channels::send`, which answers accepted, or refused
//! with whether a retry can help. The only module that knows lettre and ticket APIs; it
//! never decides *whether* to escalate, never retries by itself (the outbox does), and
//! never logs a credential.

pub mod content;
pub mod email;
pub mod followup;
mod template;
pub mod webhook;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

pub use content::{
    BreakerWindow, CheckReport, Diagnostic, Digest, DigestEntry, Escalation, EscalationReason,
    RunSummary, StepReport, redact_url_credentials, render_digest_text, render_text, safe_link,
    silence_url,
};
pub use email::{EmailChannel, SmtpTls};
pub use followup::FollowUp;
pub use webhook::{WebhookChannel, WebhookPreset};

use template::PageTemplates;

impl ChannelSettings {
    /// The channel's `max_per_minute`: messages (single or digest) it may be sent in any
    /// 60 s; `None` for no limit. Over it, escalations wait in the outbox.
    pub fn max_per_minute(&self) -> Option<u32> {
        match self {
            ChannelSettings::Log { max_per_minute } => *max_per_minute,
            ChannelSettings::Email(channel) => channel.max_per_minute,
            ChannelSettings::Webhook(channel) => channel.max_per_minute,
        }
    }
}

/// One escalation channel, chosen by `kind`. The keys of each kind are documented on
/// `EmailChannel` and `WebhookChannel` (src/escalate/email.rs, webhook.rs).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ChannelSettings {
    /// `kind = "log"`: the escalation is recorded in the journal and the log only.
    Log {
        /// As for the other kinds (see `ChannelSettings::max_per_minute`).
        #[serde(default)]
        max_per_minute: Option<u32>,
    },
    /// `kind = "email"`: a plain-text mail over SMTP.
    Email(EmailChannel),
    /// `kind = "webhook"`: a JSON POST (generic, a body template, or PagerDuty).
    Webhook(WebhookChannel),
}

/// `text` with every credential replaced by `[redacted]` (longest first, so a credential
/// that contains another is replaced whole).
pub(crate) fn redact(text: &str, credentials: &[String]) -> String {
    let mut credentials: Vec<&String> = credentials.iter().filter(|c| !c.is_empty()).collect();
    credentials.sort_by_key(|credential| std::cmp::Reverse(credential.len()));
    credentials
        .into_iter()
        .fold(text.to_owned(), |text, credential| {
            text.replace(credential.as_str(), "[redacted]")
        })
}

/// Why a channel did not accept an escalation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// What happened, for the log and the journal; never holds a credential.
    pub message: String,
    /// True when the same request may succeed later (connection refused, timeout, SMTP
    /// 4xx, HTTP 5xx/429/408). False when it needs a human (SMTP 5xx such as a wrong
    /// password, HTTP 4xx, a certificate salve does not trust, a broken body template).
    pub retryable: bool,
}

/// A channel that cannot be built from its settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("escalation.channels.{channel}: {message}")]
pub struct ChannelError {
    pub channel: String,
    pub message: String,
}

/// Problems in one channel's settings, found without touching the network (files are
/// only checked to exist): `(key, message)`, for `config::load_with_env` to locate.
pub fn channel_problems(settings: &ChannelSettings) -> Vec<(&'static str, String)> {
    match settings {
        ChannelSettings::Log { .. } => Vec::new(),
        ChannelSettings::Email(channel) => email::problems(channel),
        ChannelSettings::Webhook(channel) => webhook::problems(channel),
    }
}

enum Channel {
    Log,
    Email(Box<email::EmailSender>),
    Webhook(Box<webhook::WebhookSender>),
}

/// Every configured channel, built once: SMTP transports, the HTTP client, templates.
pub struct Channels {
    channels: BTreeMap<String, Channel>,
    http: reqwest::Client,
    templates: PageTemplates,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels")
            .field("names", &self.channels.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Per-request timeouts are each channel's; this only bounds a connect that hangs.
const HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Channels {
    /// Builds every channel: reads password, routing-key and CA files, parses addresses,
    /// sets up TLS. Connects to nothing.
    pub fn new(settings: &BTreeMap<String, ChannelSettings>) -> Result<Channels, ChannelError> {
        let http = reqwest::Client::builder()
            // A webhook is answered by the endpoint named, not by wherever it redirects.
            .redirect(reqwest::redirect::Policy::none())
            // Escalations go where the config says; an HTTP_PROXY in salve's environment
            // must not silently route pages elsewhere.
            .no_proxy()
            .connect_timeout(HTTP_CONNECT_TIMEOUT)
            .user_agent(concat!("salve/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| ChannelError {
                channel: "*".into(),
                message: format!("cannot build the HTTP client: {error}"),
            })?;
        let mut channels = BTreeMap::new();
        for (name, channel_settings) in settings {
            let failed = |message: String| ChannelError {
                channel: name.clone(),
                message,
            };
            let channel = match channel_settings {
                ChannelSettings::Log { .. } => Channel::Log,
                ChannelSettings::Email(channel) => Channel::Email(Box::new(
                    email::EmailSender::build(channel)
                        .map_err(failed)?
                        .named(name),
                )),
                ChannelSettings::Webhook(channel) => Channel::Webhook(Box::new(
                    webhook::WebhookSender::build(channel).map_err(failed)?,
                )),
            };
            channels.insert(name.clone(), channel);
        }
        Ok(Channels {
            channels,
            http,
            templates: PageTemplates::new(),
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.channels.keys().map(String::as_str)
    }

    /// `log`, `email` or `webhook`; `None` for an unknown name.
    pub fn kind(&self, channel: &str) -> Option<&'static str> {
        self.channels.get(channel).map(|channel| match channel {
            Channel::Log => "log",
            Channel::Email(_) => "email",
            Channel::Webhook(_) => "webhook",
        })
    }

    /// Delivers `escalation` once through `channel`. `Ok` means the channel accepted it
    /// (SMTP 250 after DATA, HTTP 2xx); a `log` channel always accepts. What is sent is
    /// `Escalation::for_humans`: alert text escaped, links only http(s) without credentials.
    pub async fn send(&self, channel: &str, escalation: &Escalation) -> Result<(), SendError> {
        let escalation = &escalation.for_humans();
        match self.channel(channel)? {
            Channel::Log => {
                tracing::warn!(
                    channel,
                    incident_id = escalation.incident_id,
                    reason = escalation.reason.as_str(),
                    summary = %escalation.summary_line(),
                    "escalation (log channel)"
                );
                Ok(())
            }
            Channel::Email(sender) => sender.send(&self.templates, escalation).await,
            Channel::Webhook(sender) => sender.send(&self.http, &self.templates, escalation).await,
        }
    }

    /// Whether `channel` sends follow-ups ("resolved" after a page): every channel but
    /// an unknown one and a webhook with a `body` template and no `body_resolved`.
    pub fn follows_up(&self, channel: &str) -> bool {
        match self.channels.get(channel) {
            Some(Channel::Log | Channel::Email(_)) => true,
            Some(Channel::Webhook(sender)) => sender.follows_up(),
            None => false,
        }
    }

    /// Delivers the follow-up of a page once through `channel`; `Ok` as for `send`. What
    /// is sent is `FollowUp::for_humans`.
    pub async fn send_follow_up(
        &self,
        channel: &str,
        follow_up: &FollowUp,
    ) -> Result<(), SendError> {
        let follow_up = &follow_up.for_humans();
        match self.channel(channel)? {
            Channel::Log => {
                tracing::info!(
                    channel,
                    incident_id = follow_up.page.incident_id,
                    summary = %follow_up.summary_line(),
                    "follow-up (log channel)"
                );
                Ok(())
            }
            Channel::Email(sender) => sender.send_follow_up(&self.templates, follow_up).await,
            Channel::Webhook(sender) => {
                sender
                    .send_follow_up(&self.http, &self.templates, follow_up)
                    .await
            }
        }
    }

    /// The channel named `name`; not having it is final (a config change removed it).
    fn channel(&self, name: &str) -> Result<&Channel, SendError> {
        self.channels.get(name).ok_or_else(|| SendError {
            message: format!("no escalation channel named {name:?}"),
            retryable: false,
        })
    }

    /// Delivers one digest (many escalations for one reason) through `channel`, as one
    /// message; `Ok` as for `send`.
    pub async fn send_digest(&self, channel: &str, digest: &Digest) -> Result<(), SendError> {
        match self.channel(channel)? {
            Channel::Log => {
                tracing::warn!(
                    channel,
                    digest_id = digest.digest_id,
                    incidents = digest.count,
                    reason = digest.reason.as_str(),
                    summary = %digest.summary_line(),
                    "escalation digest (log channel)"
                );
                Ok(())
            }
            Channel::Email(sender) => sender.send_digest(digest).await,
            Channel::Webhook(sender) => {
                sender
                    .send_digest(&self.http, &self.templates, digest)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync>() {}

    /// The outbox worker shares one `Channels` across tasks and awaits `send` inside
    /// `tokio::spawn`: both need these bounds, so a change that loses them fails here.
    #[test]
    fn channels_are_shareable_and_send_futures_are_send() {
        assert_send_sync::<Channels>();
        let channels = Channels::new(&BTreeMap::new()).unwrap();
        let escalation = content::sample();
        let future = channels.send("none", &escalation);
        assert_send(&future);
    }
}
