//! `stowage migrate`: applies the migrations of whichever database `DATABASE_URL` names.

use anyhow::Context;

use crate::config::Config;
use crate::db::Database;

#[derive(Debug, clap::Args)]
pub struct Args {}

pub async fn run(_args: Args) -> anyhow::Result<()> {
    let db = Database::open(&Config::database_from_env()?.with_pool_size(1))
        .await
        .context("connecting to DATABASE_URL")?;
    db.migrate().await.context("applying migrations")?;
    tracing::info!(db.backend = ?db.backend(), "migrations applied");
    db.close().await;
    Ok(())
}
