//! The download log: who fetched a member's resume, and when (see the migration).
//!
//! A redirect hands its entry to [`DownloadLog`] and goes on: a task of its own writes entries
//! in batches (one transaction every [`FLUSH_EVERY`], [`BATCH`] entries at most), so the hot
//! path never waits on the database. [`DownloadLog::flush`] writes whatever is pending; `serve` calls
//! it once the server has stopped, so nothing recorded before SIGTERM is lost. While the
//! database does not answer, entries are kept (up to [`MAX_PENDING`]) and written once it does.
//!
//! On PostgreSQL a batch goes by `COPY`, on a connection of the writer's own
//! (`application_name` `stowage-download-log`, beside the pool): a row so costs the database
//! about half what an `INSERT` of the batch as JSON did, which at thousands of downloads a
//! second is most of what the log costs. An entry whose profile, member or link was deleted
//! meanwhile (an account deleted while its entries waited) is left out, as the SQLite statement
//! leaves it out. The batch's transaction holds [`DELETION_LOCK`] shared and an account's
//! deletion holds it alone, so a deletion either came before (the batch, reading after it,
//! drops the entry) or waits for the batch and then deletes its rows too (see
//! [`Database::delete_account`]). Locking the rows a batch names instead (`FOR KEY SHARE`)
//! wrote a lock into each of hundreds of rows per batch and cost a fifth of the redirects.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::any::AnyRow;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{FromRow, Row};
use tokio::sync::{mpsc, oneshot};

use super::{ACQUIRE_TIMEOUT, Backend, Database, DbError};

/// The advisory lock that orders batches and account deletions on PostgreSQL: each batch
/// holds it shared until it commits, each deletion exclusively (see the module's text).
pub const DELETION_LOCK: i64 = 0x7374_6f77_6167_6501;

/// The `application_name` of the writer's own PostgreSQL connection.
pub const WRITER_NAME: &str = "stowage-download-log";

/// One redirect to a resume.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Download {
    /// The profile whose resume it was.
    pub profile_id: i64,
    /// Who: a member (`member_id`, their username) or a share link (its id, its label).
    pub member_id: Option<i64>,
    pub share_link_id: Option<i64>,
    pub who: String,
    pub request_id: String,
    pub at: i64,
}

impl<'r> FromRow<'r, AnyRow> for Download {
    fn from_row(row: &'r AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            profile_id: row.try_get("profile_id")?,
            member_id: row.try_get("member_id")?,
            share_link_id: row.try_get("share_link_id")?,
            who: row.try_get("who")?,
            request_id: row.try_get("request_id")?,
            at: row.try_get("at")?,
        })
    }
}

/// A logged download with whose resume it was, for the staff export.
#[derive(Debug, Clone)]
pub struct ExportedDownload {
    pub download: Download,
    pub owner: String,
}

const DOWNLOAD_COLUMNS: &str = "profile_id, member_id, share_link_id, who, request_id, at";

/// SQLite's batch: one JSON array bound to one parameter, expanded by its own JSON functions
/// (binding six parameters a row cost more than the row). An entry whose profile, member or
/// link was deleted meanwhile is left out.
const INSERT_SQLITE: &str = "INSERT INTO downloads (profile_id, member_id, share_link_id, who, \
     request_id, at) SELECT profile_id, member_id, share_link_id, who, request_id, at FROM \
     (SELECT json_extract(value, '$.profile_id') AS profile_id, \
     json_extract(value, '$.member_id') AS member_id, \
     json_extract(value, '$.share_link_id') AS share_link_id, \
     json_extract(value, '$.who') AS who, json_extract(value, '$.request_id') AS request_id, \
     json_extract(value, '$.at') AS at FROM json_each($1)) AS d \
     WHERE EXISTS (SELECT 1 FROM profiles p WHERE p.id = d.profile_id) \
     AND (d.member_id IS NULL OR EXISTS (SELECT 1 FROM users u WHERE u.id = d.member_id)) \
     AND (d.share_link_id IS NULL \
     OR EXISTS (SELECT 1 FROM share_links l WHERE l.id = d.share_link_id))";

/// Where batches go: on PostgreSQL, the writer's own connection (for `COPY`); else the pool.
pub struct LogWriter {
    db: Database,
    copy: Option<PgPool>,
}

impl LogWriter {
    pub fn new(db: Database) -> Self {
        let copy = (db.backend == Backend::Postgres)
            .then(|| PgConnectOptions::from_str(db.url.expose_secret()).ok())
            .flatten()
            .map(|options| {
                PgPoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect_lazy_with(options.application_name(WRITER_NAME))
            });
        Self { db, copy }
    }

    /// Writes `entries` in one transaction, leaving out those whose rows are gone.
    pub async fn write(&self, entries: &[Download]) -> Result<(), DbError> {
        match &self.copy {
            Some(pool) => copy_downloads(pool, entries).await,
            None => {
                let rows = serde_json::to_string(entries)
                    .map_err(|e| DbError::Failed(sqlx::Error::Encode(Box::new(e))))?;
                sqlx::query(INSERT_SQLITE)
                    .bind(rows)
                    .execute(&self.db.pool)
                    .await?;
                Ok(())
            }
        }
    }
}

/// PostgreSQL's batch: under [`DELETION_LOCK`] (shared), keep the entries whose rows are
/// all there and `COPY` them in.
async fn copy_downloads(pool: &PgPool, entries: &[Download]) -> Result<(), DbError> {
    let ids = |pick: fn(&Download) -> Option<i64>| -> Vec<i64> {
        let set: BTreeSet<i64> = entries.iter().filter_map(pick).collect();
        set.into_iter().collect()
    };
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
        .bind(DELETION_LOCK)
        .execute(&mut *tx)
        .await?;
    let mut present = Vec::with_capacity(3);
    for (table, wanted) in [
        ("users", ids(|d| d.member_id)),
        ("profiles", ids(|d| Some(d.profile_id))),
        ("share_links", ids(|d| d.share_link_id)),
    ] {
        let found: Vec<i64> = if wanted.is_empty() {
            Vec::new()
        } else {
            sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE id = ANY($1)"))
                .bind(&wanted)
                .fetch_all(&mut *tx)
                .await?
        };
        present.push(found.into_iter().collect::<BTreeSet<i64>>());
    }
    let [users, profiles, links] = &present[..] else {
        unreachable!("three tables")
    };
    // In profile order (each profile's entries in the order they came): consecutive rows then
    // go to the same leaf of the index on (profile_id, at), which most of a row's cost is.
    let mut sorted: Vec<&Download> = entries.iter().collect();
    sorted.sort_by_key(|entry| entry.profile_id);
    let mut rows = String::with_capacity(entries.len() * 96);
    for entry in sorted {
        let there = |set: &BTreeSet<i64>, id: Option<i64>| id.is_none_or(|id| set.contains(&id));
        if there(profiles, Some(entry.profile_id))
            && there(users, entry.member_id)
            && there(links, entry.share_link_id)
        {
            copy_row(&mut rows, entry);
        }
    }
    if !rows.is_empty() {
        let mut copy = tx
            .copy_in_raw(&format!("COPY downloads ({DOWNLOAD_COLUMNS}) FROM STDIN"))
            .await?;
        copy.send(rows.as_bytes()).await?;
        copy.finish().await?;
    }
    tx.commit().await?;
    Ok(())
}

/// `entry` as a line of `COPY`'s text format: tab-separated, `\N` for NULL, and backslash,
/// tab, newline and carriage return escaped in the text columns.
fn copy_row(out: &mut String, entry: &Download) {
    let text = |out: &mut String, value: &str| {
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\t' => out.push_str("\\t"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                // Text columns cannot hold NUL; labels and request ids never have one.
                '\0' => {}
                c => out.push(c),
            }
        }
    };
    let number = |out: &mut String, value: Option<i64>| match value {
        Some(n) => {
            let _ = write!(out, "{n}");
        }
        None => out.push_str("\\N"),
    };
    number(out, Some(entry.profile_id));
    out.push('\t');
    number(out, entry.member_id);
    out.push('\t');
    number(out, entry.share_link_id);
    out.push('\t');
    text(out, &entry.who);
    out.push('\t');
    text(out, &entry.request_id);
    out.push('\t');
    number(out, Some(entry.at));
    out.push('\n');
}

impl Database {
    /// Writes `entries` as the log's writer does, in one transaction; on PostgreSQL on a
    /// connection opened for the call (tests and one-off writes; `serve` keeps one).
    pub async fn insert_downloads(&self, entries: &[Download]) -> Result<(), DbError> {
        LogWriter::new(self.clone()).write(entries).await
    }

    /// The last `limit` downloads of a profile's resume, newest first, and how many there are.
    pub async fn downloads_of(
        &self,
        profile_id: i64,
        limit: i64,
    ) -> Result<(Vec<Download>, i64), DbError> {
        let recent = sqlx::query_as(&format!(
            "SELECT {DOWNLOAD_COLUMNS} FROM downloads WHERE profile_id = $1 \
             ORDER BY at DESC, id DESC LIMIT $2"
        ))
        .bind(profile_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let (total,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM downloads WHERE profile_id = $1")
                .bind(profile_id)
                .fetch_one(&self.pool)
                .await?;
        Ok((recent, total))
    }

    /// Every download at or after `since` (unix seconds), oldest first, with its owner.
    pub async fn downloads_since(&self, since: i64) -> Result<Vec<ExportedDownload>, DbError> {
        self.downloads_with_owner("d.at >= $1", since).await
    }

    /// Every download member `member_id` made of a resume, oldest first, with its owner.
    pub async fn downloads_by(&self, member_id: i64) -> Result<Vec<ExportedDownload>, DbError> {
        self.downloads_with_owner("d.member_id = $1", member_id)
            .await
    }

    async fn downloads_with_owner(
        &self,
        condition: &'static str,
        value: i64,
    ) -> Result<Vec<ExportedDownload>, DbError> {
        let rows: Vec<AnyRow> = sqlx::query(&format!(
            "SELECT d.profile_id, d.member_id, d.share_link_id, d.who, d.request_id, d.at, \
             u.username AS owner FROM downloads d JOIN profiles p ON p.id = d.profile_id \
             JOIN users u ON u.id = p.user_id WHERE {condition} ORDER BY d.at, d.id"
        ))
        .bind(value)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(ExportedDownload {
                    download: Download::from_row(row)?,
                    owner: row.try_get("owner")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(DbError::from)
    }

    /// Deletes the entries from before `before` (unix seconds); returns how many.
    pub async fn delete_downloads_before(&self, before: i64) -> Result<u64, DbError> {
        let done = sqlx::query("DELETE FROM downloads WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

/// How long an entry may wait before its batch is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// The most entries written in one transaction.
const BATCH: usize = 5_000;
/// Entries kept while the database does not answer; beyond, the oldest are dropped (logged).
const MAX_PENDING: usize = 50_000;
/// How many entries may wait in the channel between two ticks; a redirect waits only when
/// the writer is this far behind.
const CHANNEL: usize = 50_000;

enum Command {
    Record(Download),
    Flush(oneshot::Sender<()>),
}

/// Records downloads off the request path; cheap to clone. Off when `DOWNLOAD_LOG_DAYS` is 0.
#[derive(Debug, Clone)]
pub struct DownloadLog {
    sender: Option<mpsc::Sender<Command>>,
}

impl DownloadLog {
    /// A log writing to `db`, by a task of the current runtime.
    pub fn start(db: Database) -> Self {
        let (sender, receiver) = mpsc::channel(CHANNEL);
        tokio::spawn(write_batches(LogWriter::new(db), receiver));
        Self {
            sender: Some(sender),
        }
    }

    /// A log that keeps nothing.
    pub fn off() -> Self {
        Self { sender: None }
    }

    /// Hands `entry` to the writer (waiting only when it is far behind).
    pub async fn record(&self, entry: Download) {
        if let Some(sender) = &self.sender
            && sender.send(Command::Record(entry)).await.is_err()
        {
            tracing::warn!("download log writer stopped: an entry was not recorded");
        }
    }

    /// Writes every entry recorded so far; waits at most `limit`.
    pub async fn flush(&self, limit: Duration) {
        let Some(sender) = &self.sender else {
            return;
        };
        let (ack, done) = oneshot::channel();
        if sender.send(Command::Flush(ack)).await.is_err() {
            return;
        }
        if tokio::time::timeout(limit, done).await.is_err() {
            tracing::error!(
                limit_secs = limit.as_secs(),
                "download log: pending entries not written before the limit"
            );
        }
    }
}

/// Every [`FLUSH_EVERY`], takes whatever arrived and writes it. The channel is drained on the
/// tick rather than awaited entry by entry, so a redirect's send never wakes this task: at
/// thousands of downloads a second, a wake-up each cost a third of the redirect's rate.
async fn write_batches(db: LogWriter, mut receiver: mpsc::Receiver<Command>) {
    let mut pending: Vec<Download> = Vec::new();
    let mut every = tokio::time::interval(FLUSH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let mut acks = Vec::new();
        let mut closed = false;
        loop {
            match receiver.try_recv() {
                Ok(Command::Record(entry)) => pending.push(entry),
                Ok(Command::Flush(ack)) => acks.push(ack),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
            if pending.len() >= BATCH {
                write(&db, &mut pending).await;
            }
        }
        write(&db, &mut pending).await;
        for ack in acks {
            let _ = ack.send(());
        }
        if closed {
            return;
        }
    }
}

/// Writes `pending`, emptying it; on failure keeps it (the newest [`MAX_PENDING`]) for the
/// next attempt.
async fn write(db: &LogWriter, pending: &mut Vec<Download>) {
    if pending.is_empty() {
        return;
    }
    match db.write(pending).await {
        Ok(()) => pending.clear(),
        Err(err) => {
            tracing::warn!(error = %err, entries = pending.len(), "download log: write failed, will retry");
            if pending.len() > MAX_PENDING {
                let dropped = pending.len() - MAX_PENDING;
                pending.drain(..dropped);
                tracing::error!(
                    dropped,
                    "download log: entries dropped while the database was down"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_rows_escape_what_copy_text_format_reads_as_syntax() {
        let mut out = String::new();
        copy_row(
            &mut out,
            &Download {
                profile_id: 7,
                member_id: None,
                share_link_id: Some(3),
                who: "a\\N\tb".into(),
                request_id: "x\ny\rz\0".into(),
                at: -1,
            },
        );
        assert_eq!(out, "7\t\\N\t3\ta\\\\N\\tb\tx\\ny\\rz\t-1\n");
    }
}
