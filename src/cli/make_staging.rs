//! `stowage make-staging --yes`: turns the database `DATABASE_URL` names, a restored copy of
//! live, into a staging database: non-staff users (but `--keep-users`), their profiles, every
//! session and login time are removed, in one transaction. `--copy-media` then copies the
//! media that is left (see `copy-media`).
//!
//! Scrubbing live by mistake would delete every member, so the guards ask for proof rather
//! than trusting names: the database must carry the `staging` mark (`stowage mark-staging`,
//! run on the restored copy), and when `LIVE_DATABASE_URL` is set the two URLs must reach two
//! different databases, compared by identity (server and database), not by spelling.

use anyhow::Context;

use crate::cli::copy_media;
use crate::config::{Config, LiveConfig, ProcessEnv, Vars};
use crate::db::Database;
use crate::services::refuse_unmigrated;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Confirms that the database may be scrubbed.
    #[arg(long)]
    pub yes: bool,
    /// Non-staff usernames to keep, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub keep_users: Vec<String>,
    /// Copy the remaining members' media from live afterwards.
    #[arg(long)]
    pub copy_media: bool,
    #[command(flatten)]
    pub copy: copy_media::Args,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    refuse_unsafe(&ProcessEnv, args.yes)?;
    let db = Database::open(&Config::database_from_env()?.with_pool_size(2))
        .await
        .context("connecting to DATABASE_URL")?;
    // Every refusal before any write: this may be live itself, or live's twin.
    refuse_live(&db, &ProcessEnv).await?;
    refuse_unmigrated(&db).await?;
    if !db.has_mark(STAGING_MARK).await? {
        anyhow::bail!(
            "refusing to run: the database DATABASE_URL names is not marked as a staging copy. \
             On the restored copy of live (never on live), run \
             `stowage mark-staging --database NAME` first, NAME being the database's name"
        );
    }
    let keep: Vec<String> = args
        .keep_users
        .iter()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect();
    let report = db.scrub_for_staging(&keep).await?;
    db.close().await;
    println!(
        "removed {} users, {} profiles, {} sessions, {} pending uploads; login times cleared",
        report.users, report.profiles, report.sessions, report.direct_uploads
    );
    println!(
        "kept {} users: {}",
        report.kept.len(),
        report.kept.join(", ")
    );
    if args.copy_media {
        copy_media::run(args.copy).await?;
    }
    Ok(())
}

/// The mark a restored copy of live carries once an operator said it is staging.
pub const STAGING_MARK: &str = "staging";

/// Refuses when `LIVE_DATABASE_URL` is set and reaches the same database as `db`, however
/// the two URLs are spelled; or when live cannot be reached to tell.
pub async fn refuse_live(db: &Database, vars: &dyn Vars) -> anyhow::Result<()> {
    let Some(live_url) = LiveConfig::from_vars(vars)?.database_url else {
        return Ok(());
    };
    let mut live_config = crate::config::DatabaseConfig::from_url(&live_url)
        .context("LIVE_DATABASE_URL")?
        .with_pool_size(1);
    live_config.connect_timeout = std::time::Duration::from_secs(10);
    let live = Database::open(&live_config).await.context(
        "connecting to LIVE_DATABASE_URL to check it is not this database (unset it to skip)",
    )?;
    let (here, there) = (db.identity().await?, live.identity().await?);
    live.close().await;
    if here == there {
        anyhow::bail!(
            "refusing to run: DATABASE_URL and LIVE_DATABASE_URL reach the same database \
             ({here})"
        );
    }
    Ok(())
}

/// The guards that need no database: never in production, never without `--yes`.
pub fn refuse_unsafe(vars: &dyn Vars, yes: bool) -> anyhow::Result<()> {
    if vars
        .get("STOWAGE_ENV")
        .is_some_and(|env| env.trim().eq_ignore_ascii_case("production"))
    {
        anyhow::bail!("refusing to run with STOWAGE_ENV=production");
    }
    if !yes {
        anyhow::bail!(
            "make-staging deletes every non-staff user, session and login time of the database \
             DATABASE_URL names; run it again with --yes to go ahead"
        );
    }
    Ok(())
}
