//! The tests that make sense for both stores run on both: `on_both_stores!` turns one test
//! body into a module with a `sqlite` and a `postgres` test, and `StoreKind::config` gives
//! the salve config for each (the embedded SQLite default; a fresh database on the bed's
//! PostgreSQL with a short replica lease, so a restart after `kill -9` takes the last
//! process's runs over within seconds).

use super::SalveConfig;
use super::fresh_database;

/// The replica lease PostgreSQL tests run with (the default is 15 s).
pub const TEST_LEASE: &str = "\"3s\"";

/// Which store a test's salve journals to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

impl StoreKind {
    /// What turns a config into one on this store (a fresh database for PostgreSQL, made
    /// now; every salve given the same function shares it).
    pub async fn config(self) -> impl Fn(SalveConfig) -> SalveConfig + Clone + use<> {
        let url = match self {
            StoreKind::Sqlite => None,
            StoreKind::Postgres => Some(fresh_database().await.url().to_owned()),
        };
        move |config: SalveConfig| match &url {
            None => config,
            Some(url) => config.store_url(url).store_setting("lease", TEST_LEASE),
        }
    }
}

/// `on_both_stores! { async fn name(store: StoreKind) { ... } }`: the body runs as
/// `name::sqlite` and `name::postgres`.
macro_rules! on_both_stores {
    ($(#[$meta:meta])* async fn $name:ident($store:ident: StoreKind) $body:block) => {
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            use $crate::support::StoreKind;

            async fn body($store: StoreKind) $body

            #[tokio::test]
            async fn sqlite() {
                body(StoreKind::Sqlite).await
            }

            #[tokio::test]
            async fn postgres() {
                body(StoreKind::Postgres).await
            }
        }
    };
}
pub(crate) use on_both_stores;
