//! `stowage make-staging --yes`: turns the database `DATABASE_URL` names, a restored copy of
//! live, into a staging database: non-staff users (but `--keep-users`), their profiles, every
//! session and login time are removed, in one transaction. `--copy-media` then copies the
//! media that is left (see `copy-media`).

use anyhow::Context;

use crate::cli::copy_media;
use crate::config::{Config, LiveConfig, ProcessEnv, Vars};
use crate::db::Database;

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
    db.migrate().await.context("applying migrations")?;
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

/// The guards: never in production, never on the live database, never without `--yes`.
pub fn refuse_unsafe(vars: &dyn Vars, yes: bool) -> anyhow::Result<()> {
    if vars
        .get("STOWAGE_ENV")
        .is_some_and(|env| env.trim().eq_ignore_ascii_case("production"))
    {
        anyhow::bail!("refusing to run with STOWAGE_ENV=production");
    }
    let url = vars.get("DATABASE_URL");
    let live = LiveConfig::from_vars(vars)?.database_url;
    let same = |a: &str, b: &str| a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/');
    if let (Some(url), Some(live)) = (&url, &live)
        && same(url, live)
    {
        anyhow::bail!("refusing to run: DATABASE_URL is LIVE_DATABASE_URL");
    }
    if !yes {
        anyhow::bail!(
            "make-staging deletes every non-staff user, session and login time of the database \
             DATABASE_URL names; run it again with --yes to go ahead"
        );
    }
    Ok(())
}
