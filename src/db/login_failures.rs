//! Counters of failed sign-ins (and of sign-up attempts), one row per bucket, in fixed windows
//! that start at a bucket's first failure. In the database, so every instance counts together;
//! see [`crate::auth::throttle`] for what the buckets are and what the limits do.

use super::{Database, DbError};

/// A bucket's count in its current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureCount {
    pub failures: i64,
    /// Unix seconds.
    pub window_started_at: i64,
}

impl Database {
    /// Counts one failure in `bucket` at `now`, in one upsert: a window that started at or
    /// before `window_start_after` is over, so the count starts again at 1. Returns the count.
    pub async fn count_failure(
        &self,
        bucket: &str,
        now: i64,
        window_start_after: i64,
    ) -> Result<FailureCount, DbError> {
        let (failures, window_started_at): (i64, i64) = sqlx::query_as(
            "INSERT INTO login_failures (bucket, failures, window_started_at) VALUES ($1, 1, $2) \
             ON CONFLICT (bucket) DO UPDATE SET \
               failures = CASE WHEN login_failures.window_started_at > $3 \
                               THEN login_failures.failures + 1 ELSE 1 END, \
               window_started_at = CASE WHEN login_failures.window_started_at > $3 \
                                        THEN login_failures.window_started_at ELSE $2 END \
             RETURNING failures, window_started_at",
        )
        .bind(bucket)
        .bind(now)
        .bind(window_start_after)
        .fetch_one(&self.pool)
        .await?;
        Ok(FailureCount {
            failures,
            window_started_at,
        })
    }

    /// The current count of each of `buckets` (in their order), `None` for one without a
    /// count or whose window started at or before `window_start_after`; read, not written.
    pub async fn failure_counts(
        &self,
        buckets: &[&str],
        window_start_after: i64,
    ) -> Result<Vec<Option<FailureCount>>, DbError> {
        let mut counts = Vec::with_capacity(buckets.len());
        // One or two buckets: a statement each is simpler than binding a list on both backends.
        for bucket in buckets {
            let row: Option<(i64, i64)> = sqlx::query_as(
                "SELECT failures, window_started_at FROM login_failures \
                 WHERE bucket = $1 AND window_started_at > $2",
            )
            .bind(*bucket)
            .bind(window_start_after)
            .fetch_optional(&self.pool)
            .await?;
            counts.push(row.map(|(failures, window_started_at)| FailureCount {
                failures,
                window_started_at,
            }));
        }
        Ok(counts)
    }

    /// Forgets `bucket`'s count (a successful sign-in clears its username's).
    pub async fn clear_failures(&self, bucket: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM login_failures WHERE bucket = $1")
            .bind(bucket)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Takes one attempt back from `bucket` (a success is not a failure).
    pub async fn uncount_failure(&self, bucket: &str) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE login_failures SET failures = failures - 1 WHERE bucket = $1 AND failures > 0",
        )
        .bind(bucket)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes the counters whose window started at or before `window_start_after`; returns
    /// how many.
    pub async fn sweep_failures(&self, window_start_after: i64) -> Result<u64, DbError> {
        let done = sqlx::query("DELETE FROM login_failures WHERE window_started_at <= $1")
            .bind(window_start_after)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
