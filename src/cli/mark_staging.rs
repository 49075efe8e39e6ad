//! `stowage mark-staging --database NAME`: marks the database `DATABASE_URL` names, a
//! restored copy of live, as staging, so that `make-staging` may scrub it. The name must be
//! typed (PostgreSQL's `current_database()`, or the SQLite file's name): a positive statement
//! about this very database, which a mistyped or copied URL cannot make by accident.

use anyhow::{Context, bail};

use crate::cli::make_staging::{STAGING_MARK, refuse_live, refuse_unsafe};
use crate::config::{Config, ProcessEnv};
use crate::db::Database;
use crate::services::refuse_unmigrated;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The name of the database to mark, as the server knows it.
    #[arg(long, value_name = "NAME")]
    pub database: String,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    refuse_unsafe(&ProcessEnv, true)?;
    let db = Database::open(&Config::database_from_env()?.with_pool_size(1))
        .await
        .context("connecting to DATABASE_URL")?;
    refuse_unmigrated(&db).await?;
    let identity = db.identity().await?;
    if identity.database != args.database {
        bail!(
            "refusing to mark: DATABASE_URL names the database {:?}, not {:?}",
            identity.database,
            args.database
        );
    }
    refuse_live(&db, &ProcessEnv).await?;
    db.set_mark(STAGING_MARK).await?;
    db.close().await;
    println!("Marked {identity} as a staging copy; make-staging may now scrub it.");
    Ok(())
}
