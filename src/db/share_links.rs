//! Share links: a member's current resume for someone outside the site (see the migration).
//!
//! Nothing here is cached: each opening reads and counts in the database, so a revocation on
//! one instance holds on every other at once. An opening reads first and counts only once its
//! redirect is made, so a failed signing, a `HEAD` or a preview bot spends nothing.

use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use super::{Backend, Database, DbError, ResumeRef, now};

/// A link as its member sees it (never the token).
#[derive(Debug, Clone)]
pub struct ShareLinkRow {
    pub id: i64,
    pub label: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub max_downloads: Option<i64>,
    pub downloads: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl<'r> FromRow<'r, AnyRow> for ShareLinkRow {
    fn from_row(row: &'r AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            label: row.try_get("label")?,
            created_at: row.try_get("created_at")?,
            expires_at: row.try_get("expires_at")?,
            max_downloads: row.try_get("max_downloads")?,
            downloads: row.try_get("downloads")?,
            last_used_at: row.try_get("last_used_at")?,
            revoked_at: row.try_get("revoked_at")?,
        })
    }
}

/// Whether a link still opens, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    Active,
    Revoked,
    Expired,
    UsedUp,
}

impl ShareLinkRow {
    pub fn state(&self, at: i64) -> LinkState {
        if self.revoked_at.is_some() {
            LinkState::Revoked
        } else if self.expires_at <= at {
            LinkState::Expired
        } else if self.max_downloads.is_some_and(|max| self.downloads >= max) {
            LinkState::UsedUp
        } else {
            LinkState::Active
        }
    }
}

/// What looking a link up finds.
#[derive(Debug)]
pub enum Opened {
    /// Live: the resume to redirect to, its profile, and the link's id and label.
    Resume {
        resume: ResumeRef,
        profile_id: i64,
        link_id: i64,
        label: String,
    },
    /// A link, but revoked, expired, used up, or its member has no resume.
    Gone,
    /// No link has this token.
    Unknown,
}

/// The stored form of a token.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

const LINK_COLUMNS: &str =
    "id, label, created_at, expires_at, max_downloads, downloads, last_used_at, revoked_at";

impl Database {
    /// Stores a link for `user_id` whose token is `token` (only its digest is kept).
    pub async fn create_share_link(
        &self,
        user_id: i64,
        token: &str,
        label: &str,
        expires_at: i64,
        max_downloads: Option<i64>,
    ) -> Result<i64, DbError> {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO share_links (user_id, token_sha256, label, created_at, expires_at, \
             max_downloads) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(user_id)
        .bind(token_digest(token))
        .bind(label)
        .bind(now())
        .bind(expires_at)
        .bind(max_downloads)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// A member's links, newest first.
    pub async fn share_links_of(&self, user_id: i64) -> Result<Vec<ShareLinkRow>, DbError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {LINK_COLUMNS} FROM share_links WHERE user_id = $1 ORDER BY id DESC"
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many of a member's links still open.
    pub async fn count_active_share_links(&self, user_id: i64) -> Result<i64, DbError> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM share_links WHERE user_id = $1 AND revoked_at IS NULL \
             AND expires_at > $2 AND (max_downloads IS NULL OR downloads < max_downloads)",
        )
        .bind(user_id)
        .bind(now())
        .fetch_one(&self.pool)
        .await?;
        Ok(count)
    }

    /// Revokes link `id` if it is `user_id`'s; whether it was (revoking twice is a no-op that
    /// still answers true).
    pub async fn revoke_share_link(&self, user_id: i64, id: i64) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE share_links SET revoked_at = COALESCE(revoked_at, $1) \
             WHERE id = $2 AND user_id = $3",
        )
        .bind(now())
        .bind(id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The link whose token is `token`, read and not counted: when it still opens and its
    /// member has a resume, the resume. An opening counts it after, with
    /// [`Database::count_share_link_download`], once its redirect is made; `HEAD` never does.
    pub async fn find_share_link(&self, token: &str) -> Result<Opened, DbError> {
        let at = now();
        let digest = token_digest(token);
        let found: Option<FoundLink> = sqlx::query_as(
            "SELECT l.id, l.label, p.id, p.resume_key, p.resume_filename \
                 FROM share_links l LEFT JOIN profiles p ON p.user_id = l.user_id \
                 WHERE l.token_sha256 = $1 AND l.revoked_at IS NULL AND l.expires_at > $2 \
                 AND (l.max_downloads IS NULL OR l.downloads < l.max_downloads)",
        )
        .bind(&digest)
        .bind(at)
        .fetch_optional(&self.pool)
        .await?;
        if let Some((link_id, label, profile_id, key, filename)) = found {
            return Ok(match (profile_id, key, filename) {
                (Some(profile_id), Some(resume_key), Some(resume_filename)) => Opened::Resume {
                    resume: ResumeRef {
                        resume_key,
                        resume_filename,
                    },
                    profile_id,
                    link_id,
                    label,
                },
                _ => Opened::Gone,
            });
        }
        let known: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM share_links WHERE token_sha256 = $1")
                .bind(&digest)
                .fetch_optional(&self.pool)
                .await?;
        Ok(if known.is_some() {
            Opened::Gone
        } else {
            Opened::Unknown
        })
    }

    /// Counts one download of link `link_id` if it still opens, in one statement so that
    /// concurrent openings cannot exceed `max_downloads`. On PostgreSQL a row another opening
    /// is counting right now is skipped, not waited for, and tried again a few milliseconds
    /// later, a few times, before [`Counted::Busy`]: a flood on one link then costs each
    /// request a few short statements instead of a pool connection held in the row lock's
    /// queue.
    pub async fn count_share_link_download(&self, link_id: i64) -> Result<Counted, DbError> {
        // A row is held only for one short statement: a few tries, a few milliseconds apart
        // and with no connection held between them, let openings that merely met count in
        // turn; only a flood on one link is told to come back (`Busy`).
        for attempt in 1..=COUNT_TRIES {
            match self.count_share_link_once(link_id).await? {
                Counted::Busy if attempt < COUNT_TRIES => {
                    tokio::time::sleep(std::time::Duration::from_millis(2 * attempt)).await;
                }
                counted => return Ok(counted),
            }
        }
        Ok(Counted::Busy)
    }

    async fn count_share_link_once(&self, link_id: i64) -> Result<Counted, DbError> {
        let at = now();
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            // One writer at a time: there are no row locks to skip.
            Backend::Sqlite => "",
        };
        let counted = sqlx::query(&format!(
            "UPDATE share_links SET downloads = downloads + 1, last_used_at = $1 \
             WHERE id = (SELECT id FROM share_links WHERE id = $2 {lock}) \
             AND revoked_at IS NULL AND expires_at > $1 \
             AND (max_downloads IS NULL OR downloads < max_downloads)"
        ))
        .bind(at)
        .bind(link_id)
        .execute(&self.pool)
        .await?;
        if counted.rows_affected() == 1 {
            return Ok(Counted::Counted);
        }
        // Not counted: either it stopped opening meanwhile, or another opening held its row.
        let row: Option<ShareLinkRow> = sqlx::query_as(&format!(
            "SELECT {LINK_COLUMNS} FROM share_links WHERE id = $1"
        ))
        .bind(link_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) if row.state(at) == LinkState::Active => Counted::Busy,
            _ => Counted::Gone,
        })
    }
}

/// A live link as [`Database::find_share_link`] reads it: its id and label, and its member's
/// profile id, resume key and filename (`None` without a resume).
type FoundLink = (i64, String, Option<i64>, Option<String>, Option<String>);

/// How many times an opening tries to count on a row other openings hold (PostgreSQL).
const COUNT_TRIES: u64 = 10;

/// What counting a download of a link did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Counted,
    /// Revoked, expired or used up since it was read.
    Gone,
    /// Another opening was counting it at that moment; nothing was written.
    Busy,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(revoked: bool, expires_at: i64, max: Option<i64>, downloads: i64) -> ShareLinkRow {
        ShareLinkRow {
            id: 1,
            label: "Acme".into(),
            created_at: 0,
            expires_at,
            max_downloads: max,
            downloads,
            last_used_at: None,
            revoked_at: revoked.then_some(5),
        }
    }

    #[test]
    fn a_link_opens_until_revoked_expired_or_used_up() {
        assert_eq!(link(false, 100, None, 9).state(50), LinkState::Active);
        assert_eq!(link(false, 100, Some(3), 2).state(50), LinkState::Active);
        assert_eq!(link(true, 100, None, 0).state(50), LinkState::Revoked);
        assert_eq!(link(false, 100, None, 0).state(100), LinkState::Expired);
        assert_eq!(link(false, 100, Some(3), 3).state(50), LinkState::UsedUp);
    }

    #[test]
    fn tokens_are_stored_as_their_digest() {
        let digest = token_digest("abc");
        assert_eq!(digest.len(), 64);
        assert_ne!(digest, "abc");
        assert_eq!(digest, token_digest("abc"));
    }
}
