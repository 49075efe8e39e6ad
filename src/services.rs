//! The one start-up path: what `serve`, every command and the test harness stand on (the
//! database and the storages), built from the configuration in one way, as
//! zero-to-production's `Application::build` does.
//!
//! Building has no side effects: it connects, and nothing more. Migrating is `stowage
//! migrate`'s job (and `serve`'s in development, see `cli::serve`); listening for other
//! instances' changes and the periodic sweeps are `serve`'s.

use anyhow::Context;

use crate::config::Config;
use crate::db::Database;
use crate::storage::Storages;

/// The database and the storages; cheap to clone.
#[derive(Debug, Clone)]
pub struct Services {
    pub db: Database,
    pub storages: Storages,
}

impl Services {
    /// Connects to `DATABASE_URL` (waiting up to `DATABASE_CONNECT_TIMEOUT_SECS` for it to
    /// answer) and builds the storages; nothing is written anywhere.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let db = Database::open(&config.database)
            .await
            .context("connecting to DATABASE_URL")?
            .with_cache_ttl(config.cache_ttl);
        let storages = Storages::from_config(config);
        Ok(Self { db, storages })
    }

    /// Refuses a database that lacks migrations, naming the command that applies them: what
    /// every command but `migrate` (and `serve` in development) checks before it starts.
    pub async fn check_migrated(&self) -> anyhow::Result<()> {
        refuse_unmigrated(&self.db).await
    }
}

/// Refuses `db` when it lacks migrations, naming the command that applies them. Only
/// `migrate` (and `serve` in development) apply them: a command that may refuse a database
/// (live, say) must never have changed it first.
pub async fn refuse_unmigrated(db: &Database) -> anyhow::Result<()> {
    let pending = db
        .pending_migrations()
        .await
        .context("checking the migrations")?;
    if pending > 0 {
        anyhow::bail!(
            "the database lacks {pending} migration(s): run `stowage migrate` first (the \
             release phase of the Procfile does)"
        );
    }
    Ok(())
}
