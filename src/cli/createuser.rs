//! `stowage createuser NAME [--staff]`: creates a member. The password never comes from argv,
//! where other users of the machine and shell history would see it.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};

use crate::auth::{hash_password, validate_new_password, validate_username};
use crate::config::Config;
use crate::db::{Database, DbError};
use crate::services::refuse_unmigrated;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The new member's username.
    pub username: String,
    /// Make the member staff (kept by `make-staging`).
    #[arg(long)]
    pub staff: bool,
    /// Read the password from the first line of standard input instead of a prompt.
    #[arg(long)]
    pub password_stdin: bool,
    /// The name shown on the directory (defaults to the username).
    #[arg(long)]
    pub display_name: Option<String>,
}

/// The password from the first line of standard input, or typed twice at a prompt.
pub fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    let first = rpassword::prompt_password("Password: ").context("reading the password")?;
    let second =
        rpassword::prompt_password("Password (again): ").context("reading the password")?;
    if first != second {
        bail!("the two passwords differ");
    }
    Ok(first)
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    validate_username(&args.username).map_err(|m| anyhow::anyhow!("username: {m}"))?;
    let password = read_password(args.password_stdin)?;
    let display_name = args.display_name.as_deref().unwrap_or(&args.username);
    validate_new_password(&password, &args.username, display_name)
        .map_err(|m| anyhow::anyhow!("password: {m}"))?;

    let db = Database::open(&Config::database_from_env()?.with_pool_size(1))
        .await
        .context("connecting to DATABASE_URL")?;
    refuse_unmigrated(&db).await?;
    let hash = hash_password(password).await?;
    let user = match db
        .create_user(&args.username, &hash, args.staff, display_name)
        .await
    {
        Err(DbError::Conflict(_)) => bail!("a member named {:?} already exists", args.username),
        other => other.context("creating the member")?,
    };
    db.close().await;
    println!(
        "Created {}member {:?} (id {}).",
        if user.is_staff { "staff " } else { "" },
        user.username,
        user.id
    );
    Ok(())
}
