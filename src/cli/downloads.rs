//! `stowage downloads --since DATE`: the download log as CSV on standard output, for staff
//! (whoever can run commands against the database). Oldest first, one row per redirect to a
//! resume: when (UTC, RFC 3339), whose resume (profile id, username), who (a member's username
//! or a share link's label), how (`member` or `share-link`), and the request id.

use std::io::Write;

use anyhow::Context;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use crate::config::Config;
use crate::services::Services;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The first day to export (YYYY-MM-DD, UTC), or an RFC 3339 time.
    #[arg(long, value_parser = parse_since)]
    since: i64,
}

/// `2026-12-01` (midnight UTC) or `2026-12-01T09:30:00Z`, as unix seconds.
fn parse_since(raw: &str) -> Result<i64, String> {
    if let Ok(at) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Ok(at.unix_timestamp());
    }
    let day = Date::parse(
        raw,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| format!("{raw:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"))?;
    Ok(day.midnight().assume_utc().unix_timestamp())
}

/// A CSV field: quoted when it holds a comma, a quote or a line break; a leading `=`, `+`,
/// `-`, `@` (a formula to a spreadsheet) defused with a `'`. Written here: the export is one
/// small table, and the csv crate would add a dependency for these few lines.
fn field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let services = Services::build(&config).await?;
    services.check_migrated().await?;
    let rows = services.db.downloads_since(args.since).await?;
    services.db.close().await;
    let mut out = std::io::stdout().lock();
    writeln!(out, "at,profile_id,owner,who,how,request_id")?;
    for row in rows {
        let d = &row.download;
        let at = OffsetDateTime::from_unix_timestamp(d.at)
            .context("a download's time")?
            .format(&Rfc3339)?;
        let how = if d.share_link_id.is_some() {
            "share-link"
        } else {
            "member"
        };
        writeln!(
            out,
            "{at},{},{},{},{how},{}",
            d.profile_id,
            field(&row.owner),
            field(&d.who),
            field(&d.request_id)
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_are_read() {
        assert_eq!(parse_since("1970-01-02"), Ok(86_400));
        assert_eq!(parse_since("1970-01-01T00:01:00Z"), Ok(60));
        assert!(parse_since("yesterday").is_err());
    }

    #[test]
    fn fields_are_quoted_and_formulas_defused() {
        assert_eq!(field("Acme recruiting"), "Acme recruiting");
        assert_eq!(field("Acme, Inc."), "\"Acme, Inc.\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(field("-1"), "'-1");
    }
}
