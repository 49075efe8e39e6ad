//! The download log: who fetched a member's resume, and when (see the migration).
//!
//! A redirect hands its entry to [`DownloadLog`] and goes on: a task of its own writes entries
//! in batches (one transaction every [`FLUSH_EVERY`], [`BATCH`] entries at most), so the hot
//! path never waits on the database. [`DownloadLog::flush`] writes whatever is pending; `serve` calls
//! it once the server has stopped, so nothing recorded before SIGTERM is lost. While the
//! database does not answer, entries are kept (up to [`MAX_PENDING`]) and written once it does.

use std::time::Duration;

use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};
use tokio::sync::{mpsc, oneshot};

use super::{Backend, Database, DbError};

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

/// The condition of both insert statements: the rows an entry names still exist.
macro_rules! still_there {
    () => {
        "EXISTS (SELECT 1 FROM profiles p WHERE p.id = d.profile_id) \
         AND (d.member_id IS NULL OR EXISTS (SELECT 1 FROM users u WHERE u.id = d.member_id)) \
         AND (d.share_link_id IS NULL \
         OR EXISTS (SELECT 1 FROM share_links l WHERE l.id = d.share_link_id))"
    };
}

/// Writes a batch as one JSON array bound to one parameter, expanded by the database's own
/// JSON functions: binding six parameters a row cost more, in the app and in PostgreSQL, than
/// the row itself.
///
/// An entry whose profile, member or link was deleted meanwhile (an account deleted while its
/// entries waited for the batch) is left out: it would break the batch's foreign keys, and a
/// deleted account's log is gone with it.
const INSERT_POSTGRES: &str = concat!(
    "INSERT INTO downloads (profile_id, member_id, share_link_id, who, \
     request_id, at) SELECT profile_id, member_id, share_link_id, who, request_id, at \
     FROM json_to_recordset($1::json) AS d(profile_id BIGINT, member_id BIGINT, \
     share_link_id BIGINT, who TEXT, request_id TEXT, at BIGINT) WHERE ",
    still_there!()
);
const INSERT_SQLITE: &str = concat!(
    "INSERT INTO downloads (profile_id, member_id, share_link_id, who, \
     request_id, at) SELECT profile_id, member_id, share_link_id, who, request_id, at FROM \
     (SELECT json_extract(value, '$.profile_id') AS profile_id, \
     json_extract(value, '$.member_id') AS member_id, \
     json_extract(value, '$.share_link_id') AS share_link_id, \
     json_extract(value, '$.who') AS who, json_extract(value, '$.request_id') AS request_id, \
     json_extract(value, '$.at') AS at FROM json_each($1)) AS d WHERE ",
    still_there!()
);

impl Database {
    /// Writes `entries` in one statement.
    pub async fn insert_downloads(&self, entries: &[Download]) -> Result<(), DbError> {
        let rows = serde_json::to_string(entries)
            .map_err(|e| DbError::Failed(sqlx::Error::Encode(Box::new(e))))?;
        let statement = match self.backend {
            Backend::Postgres => INSERT_POSTGRES,
            Backend::Sqlite => INSERT_SQLITE,
        };
        sqlx::query(statement)
            .bind(rows)
            .execute(&self.pool)
            .await?;
        Ok(())
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
const BATCH: usize = 500;
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
        tokio::spawn(write_batches(db, receiver));
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
async fn write_batches(db: Database, mut receiver: mpsc::Receiver<Command>) {
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
async fn write(db: &Database, pending: &mut Vec<Download>) {
    if pending.is_empty() {
        return;
    }
    match db.insert_downloads(pending).await {
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
