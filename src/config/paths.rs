//! Config that means what it says: the relative paths of a config file are relative to
//! that file's directory, whatever directory salve was started in. Pure path arithmetic on
//! parsed settings; reads nothing.

use std::path::{Path, PathBuf};

use super::Settings;
use crate::notify::ChannelSettings;

/// Makes every relative path in `settings` relative to `base` (the config file's
/// directory): `store.url`'s sqlite path, `recipes.dir`, each `*_file`, `ssh.known_hosts`
/// and `ssh.control_dir`. Absolute paths are left alone.
pub(super) fn resolve_relative(settings: &mut Settings, base: &Path) {
    let join = |path: &mut PathBuf| {
        if path.is_relative() {
            *path = base.join(&*path);
        }
    };
    let join_option = |path: &mut Option<PathBuf>| {
        if let Some(path) = path {
            join(path);
        }
    };
    if let Some(path) = settings.store.url.strip_prefix("sqlite://")
        && !path.is_empty()
        && !path.starts_with('/')
    {
        settings.store.url = format!("sqlite://{}", base.join(path).display());
    }
    join(&mut settings.recipes.dir);
    join_option(&mut settings.store.password_file);
    join_option(&mut settings.store.ca_file);
    join_option(&mut settings.approval.key_file);
    let auth = &mut settings.server.auth;
    join_option(&mut auth.bearer_token_file);
    join_option(&mut auth.basic_password_file);
    for token in &mut settings.server.api.tokens {
        join_option(&mut token.token_file);
    }
    join_option(&mut settings.intake.grafana.hmac_secret_file);
    join_option(&mut settings.ssh.identity_file);
    join_option(&mut settings.ssh.known_hosts);
    join_option(&mut settings.ssh.control_dir);
    join_option(&mut settings.alertmanager.bearer_token_file);
    join_option(&mut settings.alertmanager.password_file);
    for channel in settings.escalation.channels.values_mut() {
        match channel {
            ChannelSettings::Log { .. } => {}
            ChannelSettings::Email(email) => {
                join_option(&mut email.password_file);
                join_option(&mut email.ca_file);
            }
            ChannelSettings::Webhook(webhook) => join_option(&mut webhook.routing_key_file),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Settings {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn relative_paths_follow_the_config_files_directory_absolute_ones_stay() {
        let mut relative = settings(
            "[store]\nurl = \"sqlite://state/salve.db\"\n[recipes]\ndir = \"recipes\"\n\
             [ssh]\nknown_hosts = \"known_hosts\"\nidentity_file = \"/etc/salve/id\"\n\
             [server.auth]\nbearer_token_file = \"token\"\n",
        );
        resolve_relative(&mut relative, Path::new("/etc/salve"));
        assert_eq!(relative.store.url, "sqlite:///etc/salve/state/salve.db");
        assert_eq!(relative.recipes.dir, Path::new("/etc/salve/recipes"));
        assert_eq!(
            relative.ssh.known_hosts.as_deref(),
            Some(Path::new("/etc/salve/known_hosts"))
        );
        assert_eq!(
            relative.ssh.identity_file.as_deref(),
            Some(Path::new("/etc/salve/id"))
        );
        assert_eq!(
            relative.server.auth.bearer_token_file.as_deref(),
            Some(Path::new("/etc/salve/token"))
        );

        let mut absolute = settings("[store]\nurl = \"sqlite:///var/lib/salve/salve.db\"\n");
        resolve_relative(&mut absolute, Path::new("/etc/salve"));
        assert_eq!(absolute.store.url, "sqlite:///var/lib/salve/salve.db");
    }
}
