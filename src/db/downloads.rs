//! The download log: who fetched a member's resume, and when (see the migration), read back.
//!
//! Redirects hand their entries to [`DownloadLog`], whose writer (`downloads/writer.rs`) puts
//! a second's downloads of one resume by one member or link into one row, listing their
//! request ids in order. The readers here open the rows back into downloads: the owner's
//! latest, an export's pages, the staff CSV.
//!
//! On PostgreSQL the writer's batches and an account's deletion are ordered by
//! [`DELETION_LOCK`] (see `downloads/writer.rs`).

mod writer;

pub use writer::{DownloadLog, FLUSH_EVERY, REQUEST_ID_MAX_BYTES, WHO_MAX_BYTES, WRITER_NAME};

use futures_util::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use super::{Backend, Database, DbError};
use writer::LogWriter;

/// The advisory lock that orders batches and account deletions on PostgreSQL: each batch
/// holds it shared until it commits, each deletion exclusively (see the module's text).
pub const DELETION_LOCK: i64 = 0x7374_6f77_6167_6501;

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

/// Joined to a log row `d`, its downloads: `r.value` each request id, `r.key` its place.
fn each_download(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => {
            "CROSS JOIN LATERAL json_array_elements_text(d.request_ids::json) \
             WITH ORDINALITY AS r (value, key)"
        }
        Backend::Sqlite => "CROSS JOIN json_each(d.request_ids) AS r",
    }
}

/// A download's columns, as [`Download`] reads them, from a row `d` joined by [`each_download`].
const DOWNLOAD_COLUMNS: &str =
    "d.profile_id, d.member_id, d.share_link_id, d.who, r.value AS request_id, d.at";

impl Database {
    /// Writes `entries` as the log's writer does, in one transaction; on PostgreSQL on a
    /// connection opened for the call (tests and one-off writes; `serve` keeps one).
    pub async fn insert_downloads(&self, entries: &[Download]) -> Result<(), DbError> {
        LogWriter::new(self.clone()).write(entries).await
    }

    /// The last `limit` downloads of a profile's resume, newest first, and how many there are.
    /// The newest `limit` rows hold the newest `limit` downloads (each row at least one), so
    /// only those are opened, however long the log.
    pub async fn downloads_of(
        &self,
        profile_id: i64,
        limit: i64,
    ) -> Result<(Vec<Download>, i64), DbError> {
        // One round trip: the total rides on every row of the latest. A log row holds at least
        // one download, so no row means a total of 0.
        let rows: Vec<AnyRow> = sqlx::query(&format!(
            "SELECT {DOWNLOAD_COLUMNS}, (SELECT CAST(COALESCE(SUM(hits), 0) AS BIGINT) \
             FROM downloads WHERE profile_id = $1) AS total \
             FROM (SELECT * FROM downloads WHERE profile_id = $1 \
             ORDER BY at DESC, id DESC LIMIT $2) d {} \
             ORDER BY d.at DESC, d.id DESC, r.key DESC LIMIT $2",
            each_download(self.backend)
        ))
        .bind(profile_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let total = match rows.first() {
            Some(row) => row.try_get("total")?,
            None => 0,
        };
        let recent = rows
            .iter()
            .map(Download::from_row)
            .collect::<Result<_, _>>()?;
        Ok((recent, total))
    }

    /// One page of the downloads of profile `profile_id`'s resume, or ([`Side::By`]) made by
    /// member `id`, oldest first, with whose resume each was: the downloads of at most
    /// [`PAGE_ROWS`] log rows after `after` (a row's `(at, id)`; `None` from the start), and
    /// the cursor of the next page (`None` at the end). What a page holds is bounded, whatever
    /// the log's size: an export reads a million downloads this way, page by page.
    pub async fn downloads_page(
        &self,
        side: Side,
        id: i64,
        after: Option<(i64, i64)>,
    ) -> Result<(Vec<ExportedDownload>, Option<(i64, i64)>), DbError> {
        let column = match side {
            Side::Of => "profile_id",
            Side::By => "member_id",
        };
        let (at, row) = after.unwrap_or((i64::MIN, i64::MIN));
        // `at >= $2` says again what the `OR` after it says, in a form the index on
        // (profile_id, at) or (member_id, at) can start from. Without it a page was found by
        // reading every row before it: a million-row export read half a billion.
        let rows: Vec<AnyRow> = sqlx::query(&format!(
            "SELECT {DOWNLOAD_COLUMNS}, d.id AS row_id, \
             COALESCE(u.username, '(deleted)') AS owner FROM \
             (SELECT * FROM downloads WHERE {column} = $1 AND at >= $2 \
             AND (at > $2 OR id > $3) \
             ORDER BY at, id LIMIT $4) d {} \
             LEFT JOIN profiles p ON p.id = d.profile_id LEFT JOIN users u ON u.id = p.user_id \
             ORDER BY d.at, d.id, r.key",
            each_download(self.backend)
        ))
        .bind(id)
        .bind(at)
        .bind(row)
        .bind(PAGE_ROWS)
        .fetch_all(&self.pool)
        .await?;
        let mut next = None;
        let mut page = Vec::with_capacity(rows.len());
        for row in &rows {
            let download = Download::from_row(row)?;
            next = Some((download.at, row.try_get::<i64, _>("row_id")?));
            page.push(ExportedDownload {
                download,
                owner: row.try_get("owner")?,
            });
        }
        // Every log row of the page is in `rows` (the joins are outer: a row whose owner is
        // gone still moves the cursor on), so only an empty page ends the reading. A short
        // page may still end exactly at the last row; the next, empty page says so.
        Ok((page, next))
    }

    /// Every download at or after `since` (unix seconds), oldest first, with its owner.
    pub async fn downloads_since(&self, since: i64) -> Result<Vec<ExportedDownload>, DbError> {
        self.downloads_with_owner("d.at >= $1", since).await
    }

    async fn downloads_with_owner(
        &self,
        condition: &'static str,
        value: i64,
    ) -> Result<Vec<ExportedDownload>, DbError> {
        let rows: Vec<AnyRow> = sqlx::query(&format!(
            "SELECT {DOWNLOAD_COLUMNS}, u.username AS owner FROM downloads d {} \
             JOIN profiles p ON p.id = d.profile_id JOIN users u ON u.id = p.user_id \
             WHERE {condition} ORDER BY d.at, d.id, r.key",
            each_download(self.backend)
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

    /// Deletes the entries from before `before` (unix seconds); returns how many downloads
    /// they held.
    pub async fn delete_downloads_before(&self, before: i64) -> Result<u64, DbError> {
        let deleted = sqlx::query_scalar::<_, i64>(
            "DELETE FROM downloads WHERE at < $1 RETURNING CAST(hits AS BIGINT)",
        )
        .bind(before)
        .fetch(&self.pool)
        .try_fold(0u64, |sum, hits| async move {
            Ok(sum + u64::try_from(hits).unwrap_or(0))
        })
        .await?;
        Ok(deleted)
    }
}

/// Which downloads [`Database::downloads_page`] reads: those of a profile's resume, or those
/// a member made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Of,
    By,
}

/// The log rows a page reads at most.
pub const PAGE_ROWS: i64 = 500;
