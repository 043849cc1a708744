//! What `salve check` looks at beyond parsing, so a start (or the first incident at 3 a.m.)
//! does not find it first: the SSH identity is a readable private key, every inventory
//! host has a key in `known_hosts` (enforce mode), fixed recipe targets are inventory
//! hosts, the store can be opened (a read-only probe: it never creates the journal), and
//! the escalation channels build (their URLs and addresses parse). Never connects anywhere
//! and never writes.

use std::process::Command;

use crate::config::Config;
use crate::plan::Mode;
use crate::recipe::RecipeSet;

/// Every problem found, each a line for the operator (`salve check` fails on any).
pub fn problems(loaded: &Config, recipes: &RecipeSet) -> Vec<String> {
    let settings = &loaded.settings;
    let origin = &loaded.origin;
    let mut problems = Vec::new();
    if let Some(identity) = &settings.ssh.identity_file {
        match std::fs::read_to_string(identity) {
            Err(e) => problems.push(format!(
                "{origin}: ssh.identity_file {}: {e}",
                identity.display()
            )),
            Ok(text) if !text.contains("PRIVATE KEY-----") => problems.push(format!(
                "{origin}: ssh.identity_file {} is not a private key (the .pub file?)",
                identity.display()
            )),
            Ok(_) => {}
        }
    }
    if settings.engine.mode == Mode::Enforce
        && let Some(known_hosts) = &settings.ssh.known_hosts
        && known_hosts.is_file()
    {
        for host in &settings.hosts {
            let address = host.address.as_deref().unwrap_or(&host.name);
            let entry = if host.port == 22 {
                address.to_owned()
            } else {
                format!("[{address}]:{}", host.port)
            };
            // ssh-keygen -F finds hashed entries too.
            let found = Command::new("ssh-keygen")
                .arg("-F")
                .arg(&entry)
                .arg("-f")
                .arg(known_hosts)
                .output();
            match found {
                Ok(output) if output.status.success() => {}
                Ok(_) => problems.push(format!(
                    "{origin}: host {} ({entry}) has no key in ssh.known_hosts {}: salve could not connect to it",
                    host.name,
                    known_hosts.display()
                )),
                Err(e) => problems.push(format!(
                    "{origin}: cannot run ssh-keygen to look up host keys: {e}"
                )),
            }
        }
    }
    let inventory = loaded.inventory();
    for recipe in recipes.iter() {
        let target = recipe.target.trim();
        if !target.contains("{{") && inventory.resolve(target).is_none() {
            problems.push(format!(
                "recipe {}: target {target:?} is not an inventory host",
                recipe.name.as_str()
            ));
        }
    }
    // A PostgreSQL store is not probed: `check` connects nowhere (its URL was parsed).
    if !settings.store.is_postgres()
        && let Err(e) = crate::store::sqlite::probe(&settings.store.url)
    {
        problems.push(format!("{origin}: store.url: {e}"));
    }
    if let Err(e) = crate::notify::Channels::new(&settings.escalation.channels) {
        problems.push(format!("{origin}: escalation channels: {e}"));
    }
    problems
}
