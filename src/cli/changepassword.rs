//! `stowage changepassword NAME [--password-stdin]`: sets a member's password, as Django's
//! `changepassword` does, under the same rules as the page; every session of the member ends,
//! on every instance.

use anyhow::{Context, bail};

use crate::auth::{hash_password, validate_new_password};
use crate::cli::createuser::read_password;
use crate::config::Config;
use crate::db::Database;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The member's username (any case).
    pub username: String,
    /// Read the new password from the first line of standard input instead of a prompt.
    #[arg(long)]
    pub password_stdin: bool,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let db = Database::open(&Config::database_from_env()?.with_pool_size(1))
        .await
        .context("connecting to DATABASE_URL")?;
    let Some(user) = db.find_user_by_username(&args.username).await? else {
        bail!("no member is named {:?}", args.username);
    };
    let password = read_password(args.password_stdin)?;
    validate_new_password(&password, &user.username, "")
        .map_err(|m| anyhow::anyhow!("password: {m}"))?;
    let hash = hash_password(password).await?;
    db.set_password(user.id, &hash)
        .await
        .context("saving the password")?;
    db.close().await;
    println!(
        "Changed the password of {:?}; every session of theirs has ended.",
        user.username
    );
    Ok(())
}
