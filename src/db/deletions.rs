//! Deleting an account: every row of the member in one transaction, and their stored objects
//! recorded in `pending_deletions` in that same transaction, so that an object whose delete
//! fails (storage down) is still known and a retry removes it. Nothing is half-deleted: the
//! rows go at once and together (on PostgreSQL the download log's follow in batches, see
//! [`Database::delete_account`]), the objects as soon as storage answers.

use sqlx::FromRow;

use super::downloads::DELETION_LOCK;
use super::profiles::AvatarKeys;
use super::{Backend, Database, DbError, Invalidation, now};

/// An object of a deleted account, still to delete from storage.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct PendingDeletion {
    pub id: i64,
    /// `public` or `private`.
    pub storage: String,
    pub object_key: String,
    /// Until when the key is deleted again after a delete succeeds (a direct upload's form may
    /// still post to it); unix seconds.
    pub keep_until: i64,
    pub attempts: i64,
}

impl PendingDeletion {
    pub fn is_private(&self) -> bool {
        self.storage == "private"
    }
}

/// The download log rows a deleted account's batch removes at once.
const LOG_DELETE_BATCH: i64 = 5_000;

/// The longest wait between two attempts at one object.
const MAX_BACKOFF_SECS: i64 = 15 * 60;

/// How long after an attempt that failed `attempts` times the next one is due: 10 s,
/// doubling, at most 15 minutes.
fn backoff_secs(attempts: i64) -> i64 {
    (10_i64 << attempts.clamp(0, 10)).min(MAX_BACKOFF_SECS)
}

impl Database {
    /// Deletes member `user_id` with everything of theirs the database holds: the account,
    /// the profile, their sessions, their share links, the log of their resume's downloads and
    /// the log entries of their own downloads, their unconfirmed direct uploads. Every object
    /// those rows named (each stored size of the avatar, the resume, the direct uploads' keys)
    /// is recorded as a pending deletion in the same transaction, and returned. Each instance
    /// then drops the member and the resume from its caches. `None`: no such member.
    ///
    /// `direct_upload_window` (seconds): how long after being issued a direct upload's key may
    /// still receive a file, and so is deleted again. `avatar_keys`: the avatar's keys from
    /// what the profile records.
    pub async fn delete_account(
        &self,
        user_id: i64,
        direct_upload_window: i64,
        avatar_keys: AvatarKeys,
    ) -> Result<Option<Vec<PendingDeletion>>, DbError> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let at = now();
        let mut tx = self.pool.begin().await?;
        // First, the lock download-log batches hold shared while they write (see
        // `downloads`): a batch that came first is waited for, each statement below then
        // reading its entries anew; one that comes later waits, then finds the rows gone.
        // SQLite has one writer at a time.
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT 1 FROM pg_advisory_xact_lock($1)")
                .bind(DELETION_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        type Files = (i64, Option<String>, Option<String>, Option<String>);
        let files: Option<Files> = sqlx::query_as(&format!(
            "SELECT id, avatar_key, avatar_sizes, resume_key FROM profiles WHERE user_id = $1{lock}"
        ))
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let mut objects: Vec<(&str, String, i64)> = Vec::new();
        let mut profile_id = None;
        if let Some((id, avatar, sizes, resume)) = files {
            profile_id = Some(id);
            if let Some(avatar) = avatar {
                objects.extend(
                    avatar_keys(&avatar, sizes.as_deref())
                        .into_iter()
                        .map(|key| ("public", key, at)),
                );
            }
            objects.extend(resume.map(|key| ("private", key, at)));
            let uploads: Vec<(String, i64)> = sqlx::query_as(
                "SELECT object_key, issued_at FROM direct_uploads WHERE profile_id = $1",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            objects.extend(
                uploads
                    .into_iter()
                    .map(|(key, issued_at)| ("private", key, issued_at + direct_upload_window)),
            );
        }
        let mut pending = Vec::with_capacity(objects.len());
        for (storage, key, keep_until) in objects {
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO pending_deletions \
                 (storage, object_key, queued_at, keep_until, next_attempt_at) \
                 VALUES ($1, $2, $3, $4, $3) RETURNING id",
            )
            .bind(storage)
            .bind(&key)
            .bind(at)
            .bind(keep_until)
            .fetch_one(&mut *tx)
            .await?;
            pending.push(PendingDeletion {
                id,
                storage: storage.to_owned(),
                object_key: key,
                keep_until,
                attempts: 0,
            });
        }
        // The rest goes with the account (ON DELETE CASCADE): the profile, its direct uploads,
        // the share links. Sessions name their member in a column, not a key. The download log
        // has no foreign keys on PostgreSQL (they cost its writes): its rows go after the
        // commit, in batches (see `delete_log_of`). On SQLite, one writer at a time, they go
        // here.
        let mut statements = vec!["DELETE FROM sessions WHERE user_id = $1"];
        if self.backend == Backend::Sqlite {
            statements.extend([
                "DELETE FROM downloads WHERE member_id = $1",
                "DELETE FROM downloads WHERE profile_id IN \
                 (SELECT id FROM profiles WHERE user_id = $1)",
            ]);
        }
        for statement in statements {
            sqlx::query(statement)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Ok(None);
        }
        tx.commit().await?;
        self.publish_committed(Invalidation::User(user_id)).await;
        if let Some(profile_id) = profile_id {
            self.publish_committed(Invalidation::Resume(profile_id))
                .await;
        }
        if self.backend == Backend::Postgres {
            self.delete_log_of(user_id, profile_id).await;
        }
        Ok(Some(pending))
    }

    /// Deletes the download log's rows of a deleted member (PostgreSQL): both sides, in
    /// batches of [`LOG_DELETE_BATCH`] rows, each its own short transaction. The account's
    /// transaction held the lock every instance's log writer needs only for the account's own
    /// rows; no writer adds a row for a member or profile that is gone (see `downloads`), so
    /// these deletes need no lock, and the time they take grows with the member's share of the
    /// log, through its indexes, never with the log. A batch that fails is logged: its rows
    /// name nobody any more, and the retention sweep (`DOWNLOAD_LOG_DAYS`) removes them.
    async fn delete_log_of(&self, user_id: i64, profile_id: Option<i64>) {
        let sides = [("member_id", Some(user_id)), ("profile_id", profile_id)];
        for (column, id) in sides {
            let Some(id) = id else { continue };
            loop {
                let done = sqlx::query(&format!(
                    "DELETE FROM downloads WHERE ctid = ANY(ARRAY(SELECT ctid FROM downloads \
                     WHERE {column} = $1 LIMIT $2))"
                ))
                .bind(id)
                .bind(LOG_DELETE_BATCH)
                .execute(&self.pool)
                .await;
                match done {
                    Ok(done) if done.rows_affected() < LOG_DELETE_BATCH as u64 => break,
                    Ok(_) => {}
                    Err(err) => {
                        tracing::error!(
                            error = %err,
                            user.id = user_id,
                            "deleted account: some of its download log is left for the sweep"
                        );
                        return;
                    }
                }
            }
        }
    }

    /// Pending deletions due at `at` (unix seconds; at most `limit`), oldest first.
    pub async fn due_deletions(
        &self,
        at: i64,
        limit: i64,
    ) -> Result<Vec<PendingDeletion>, DbError> {
        Ok(sqlx::query_as(
            "SELECT id, storage, object_key, keep_until, attempts FROM pending_deletions \
             WHERE next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2",
        )
        .bind(at)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every pending deletion, for `check-media`.
    pub async fn pending_deletions(&self) -> Result<Vec<PendingDeletion>, DbError> {
        Ok(sqlx::query_as(
            "SELECT id, storage, object_key, keep_until, attempts FROM pending_deletions \
             ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records that `deletion`'s object was deleted: the row goes, or, while its key may still
    /// receive a direct upload, waits for one more delete at `keep_until`.
    pub async fn deletion_done(&self, deletion: &PendingDeletion) -> Result<(), DbError> {
        let at = now();
        if deletion.keep_until > at {
            sqlx::query("UPDATE pending_deletions SET next_attempt_at = keep_until WHERE id = $1")
                .bind(deletion.id)
                .execute(&self.pool)
                .await?;
        } else {
            sqlx::query("DELETE FROM pending_deletions WHERE id = $1")
                .bind(deletion.id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Records a failed attempt at `deletion`: the next one is due after a back-off.
    pub async fn deletion_failed(&self, deletion: &PendingDeletion) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE pending_deletions SET attempts = attempts + 1, next_attempt_at = $1 \
             WHERE id = $2",
        )
        .bind(now() + backoff_secs(deletion.attempts))
        .bind(deletion.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_quarter_hour() {
        assert_eq!(backoff_secs(0), 10);
        assert_eq!(backoff_secs(1), 20);
        assert_eq!(backoff_secs(3), 80);
        assert_eq!(backoff_secs(7), MAX_BACKOFF_SECS);
        assert_eq!(backoff_secs(i64::MAX), MAX_BACKOFF_SECS);
    }
}
