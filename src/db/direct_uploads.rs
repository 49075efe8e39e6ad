//! Direct uploads issued to a profile (see [`crate::media::issue_direct_upload`]).
//! Confirming marks a row, once: a key is never confirmed twice. Deleting a row (the sweep,
//! after the confirm window) claims whatever object sits under its key: never one a profile
//! points at, since a confirmed upload is copied to a fresh key.

use super::{Database, DbError};

/// The file a direct upload was issued for, as the browser announced it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct IssuedUpload {
    /// Its length in bytes; `None` for uploads issued before lengths were recorded.
    pub size: Option<i64>,
    /// Its SHA-256, hex; `None` likewise.
    pub sha256: Option<String>,
}

impl Database {
    /// Records that `key` was issued to `profile_id` now, for a file of `size` bytes whose
    /// SHA-256 is `sha256` (hex).
    pub async fn issue_direct_upload(
        &self,
        profile_id: i64,
        key: &str,
        size: i64,
        sha256: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO direct_uploads (object_key, profile_id, issued_at, size, sha256) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(key)
        .bind(profile_id)
        .bind(super::now())
        .bind(size)
        .bind(sha256)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The file `key` was issued for, when it was issued to `profile_id` at or after `since`
    /// (unix seconds) and is not yet claimed.
    pub async fn direct_upload_issued(
        &self,
        profile_id: i64,
        key: &str,
        since: i64,
    ) -> Result<Option<IssuedUpload>, DbError> {
        Ok(sqlx::query_as(
            "SELECT size, sha256 FROM direct_uploads \
             WHERE object_key = $1 AND profile_id = $2 AND issued_at >= $3 \
             AND confirmed_at IS NULL",
        )
        .bind(key)
        .bind(profile_id)
        .bind(since)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Marks `key` confirmed by `profile_id`; false when it was not issued to them or is
    /// confirmed already.
    pub async fn claim_direct_upload(&self, profile_id: i64, key: &str) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE direct_uploads SET confirmed_at = $3 \
             WHERE object_key = $1 AND profile_id = $2 AND confirmed_at IS NULL",
        )
        .bind(key)
        .bind(profile_id)
        .bind(super::now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims every upload issued before `before` (unix seconds), confirmed or not, and
    /// returns their keys.
    pub async fn claim_abandoned_direct_uploads(
        &self,
        before: i64,
    ) -> Result<Vec<String>, DbError> {
        let keys: Vec<(String,)> =
            sqlx::query_as("DELETE FROM direct_uploads WHERE issued_at < $1 RETURNING object_key")
                .bind(before)
                .fetch_all(&self.pool)
                .await?;
        Ok(keys.into_iter().map(|(key,)| key).collect())
    }
}
