//! Profiles: one per member, with references to their avatar and resume objects.

use sqlx::Any;
use sqlx::any::AnyArguments;
use sqlx::query::Query;

use super::{Backend, Database, DbError, Invalidation, prefetch};

/// A profile as shown on the directory and the profile page.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProfileRow {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub display_name: String,
    pub avatar_key: Option<String>,
    pub resume_key: Option<String>,
    pub resume_filename: Option<String>,
    pub resume_size: Option<i64>,
    pub resume_uploaded_at: Option<i64>,
}

/// What `/resume/{id}` needs: the private object and the name to download it as.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ResumeRef {
    pub resume_key: String,
    pub resume_filename: String,
}

/// The profile with its member's username; callers add the `WHERE`/`ORDER BY`.
const SELECT_PROFILES: &str = "SELECT p.id, p.user_id, u.username, p.display_name, p.avatar_key, \
     p.resume_key, p.resume_filename, p.resume_size, p.resume_uploaded_at \
     FROM profiles p JOIN users u ON u.id = p.user_id";

impl Database {
    /// The member directory, in display-name order.
    pub async fn list_profiles(&self) -> Result<Vec<ProfileRow>, DbError> {
        Ok(sqlx::query_as(&format!(
            "{SELECT_PROFILES} ORDER BY lower(p.display_name), p.id"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    pub async fn find_profile(&self, id: i64) -> Result<Option<ProfileRow>, DbError> {
        self.find_profile_where("p.id = $1", id).await
    }

    pub async fn find_profile_of_user(&self, user_id: i64) -> Result<Option<ProfileRow>, DbError> {
        self.find_profile_where("p.user_id = $1", user_id).await
    }

    async fn find_profile_where(
        &self,
        condition: &'static str,
        id: i64,
    ) -> Result<Option<ProfileRow>, DbError> {
        Ok(
            sqlx::query_as(&format!("{SELECT_PROFILES} WHERE {condition}"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The resume of a profile, if it has one. The hot path of `/resume/{id}`: answered from
    /// the cache when it can be.
    pub async fn find_resume(&self, profile_id: i64) -> Result<Option<ResumeRef>, DbError> {
        if let Some(cached) = self.resumes.get(&profile_id) {
            return Ok(cached);
        }
        if let Some(found) = prefetch::take_resume(profile_id) {
            self.resumes.insert(profile_id, found.clone());
            return Ok(found);
        }
        let found: Option<ResumeRef> = sqlx::query_as(
            "SELECT resume_key, resume_filename FROM profiles \
             WHERE id = $1 AND resume_key IS NOT NULL AND resume_filename IS NOT NULL",
        )
        .bind(profile_id)
        .fetch_optional(&self.pool)
        .await?;
        self.resumes.insert(profile_id, found.clone());
        Ok(found)
    }

    /// Points a profile at a stored resume of `size` bytes and SHA-256 `sha256` (hex);
    /// returns the key it replaced, if any, so the caller can delete the old object once this
    /// has committed.
    pub async fn set_resume(
        &self,
        profile_id: i64,
        key: &str,
        filename: &str,
        size: i64,
        sha256: &str,
    ) -> Result<Option<String>, DbError> {
        let update = sqlx::query(
            "UPDATE profiles SET resume_key = $1, resume_filename = $2, resume_size = $3, \
             resume_sha256 = $4, resume_uploaded_at = $5, updated_at = $5 WHERE id = $6",
        )
        .bind(key)
        .bind(filename)
        .bind(size)
        .bind(sha256)
        .bind(super::now())
        .bind(profile_id);
        let old = self
            .swap_reference(profile_id, "resume_key", [update])
            .await?;
        self.publish_committed(Invalidation::Resume(profile_id))
            .await;
        Ok(old)
    }

    /// Removes a profile's resume reference; returns the key it pointed at, for the caller to
    /// delete once this has committed.
    pub async fn clear_resume(&self, profile_id: i64) -> Result<Option<String>, DbError> {
        let at = super::now();
        let update = sqlx::query(
            "UPDATE profiles SET resume_key = NULL, resume_filename = NULL, resume_size = NULL, \
             resume_sha256 = NULL, resume_uploaded_at = NULL, updated_at = $1 WHERE id = $2",
        )
        .bind(at)
        .bind(profile_id);
        // The resume's share links end with it, also if another one is uploaded later.
        let revoke = sqlx::query(
            "UPDATE share_links SET revoked_at = $1 WHERE revoked_at IS NULL \
             AND user_id = (SELECT user_id FROM profiles WHERE id = $2)",
        )
        .bind(at)
        .bind(profile_id);
        let old = self
            .swap_reference(profile_id, "resume_key", [revoke, update])
            .await?;
        self.publish_committed(Invalidation::Resume(profile_id))
            .await;
        Ok(old)
    }

    /// Points a profile at a stored avatar (`sha256` in hex); returns the key it replaced, if
    /// any.
    pub async fn set_avatar(
        &self,
        profile_id: i64,
        key: &str,
        content_type: &str,
        size: i64,
        sha256: &str,
    ) -> Result<Option<String>, DbError> {
        let update = sqlx::query(
            "UPDATE profiles SET avatar_key = $1, avatar_content_type = $2, avatar_size = $3, \
             avatar_sha256 = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(key)
        .bind(content_type)
        .bind(size)
        .bind(sha256)
        .bind(super::now())
        .bind(profile_id);
        self.swap_reference(profile_id, "avatar_key", [update])
            .await
    }

    /// Runs `updates` on a profile in one transaction with reading the key in `column` it
    /// replaces. The row is locked on PostgreSQL; SQLite allows one writer at a time.
    async fn swap_reference<'q>(
        &self,
        profile_id: i64,
        column: &'static str,
        updates: impl IntoIterator<Item = Query<'q, Any, AnyArguments<'q>>>,
    ) -> Result<Option<String>, DbError> {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let mut tx = self.pool.begin().await?;
        let old: Option<(Option<String>,)> = sqlx::query_as(&format!(
            "SELECT {column} FROM profiles WHERE id = $1{lock}"
        ))
        .bind(profile_id)
        .fetch_optional(&mut *tx)
        .await?;
        for update in updates {
            update.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(old.and_then(|(key,)| key))
    }
}
