//! Profiles: one per member, with references to their avatar and resume objects.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, FromRow, Row};

use super::{Backend, Database, DbError, Invalidation, prefetch};

/// A profile as shown on the directory and the profile page.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ProfileRow {
    pub id: i64,
    pub user_id: i64,
    pub username: String,
    pub display_name: String,
    pub avatar_key: Option<String>,
    /// The sides the avatar is stored at ("96 192 512"; see [`AvatarKeys`]), when known.
    pub avatar_sizes: Option<String>,
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

/// Everything the database holds of a member's account and profile, for their export.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountRecord {
    pub username: String,
    pub is_staff: i64,
    pub joined_at: i64,
    pub last_login: Option<i64>,
    pub display_name: String,
    pub profile_id: i64,
    pub avatar_key: Option<String>,
    pub avatar_content_type: Option<String>,
    pub avatar_size: Option<i64>,
    pub avatar_sha256: Option<String>,
    pub resume_key: Option<String>,
    pub resume_filename: Option<String>,
    pub resume_size: Option<i64>,
    pub resume_sha256: Option<String>,
    pub resume_uploaded_at: Option<i64>,
}

/// The profile with its member's username; callers add the `WHERE`/`ORDER BY`.
const SELECT_PROFILES: &str = "SELECT p.id, p.user_id, u.username, p.display_name, p.avatar_key, \
     p.avatar_sizes, p.resume_key, p.resume_filename, p.resume_size, p.resume_uploaded_at \
     FROM profiles p JOIN users u ON u.id = p.user_id";

impl Database {
    /// A page of the member directory, in display-name order (`lower(display_name)` as the
    /// database lowercases it, then id): the first `limit` profiles after `from` (a profile's
    /// name key and id, as this returns them), or with [`Toward::Earlier`] the last `limit`
    /// before it, still in directory order. Found through the index on that order, so a page
    /// costs the same whatever the number of members.
    pub async fn directory_page(
        &self,
        from: Option<(&str, i64)>,
        toward: Toward,
        limit: i64,
    ) -> Result<Vec<(ProfileRow, String)>, DbError> {
        // `>=` (or `<=`) on the name says again what the `OR` says, as a range the index can
        // start from.
        let (range, order) = match toward {
            Toward::Later => (
                "lower(p.display_name) >= $1 AND (lower(p.display_name) > $1 OR p.id > $2)",
                "lower(p.display_name), p.id",
            ),
            Toward::Earlier => (
                "lower(p.display_name) <= $1 AND (lower(p.display_name) < $1 OR p.id < $2)",
                "lower(p.display_name) DESC, p.id DESC",
            ),
        };
        let columns = &SELECT_PROFILES["SELECT ".len()..];
        let select = format!("SELECT lower(p.display_name) AS name_key, {columns}");
        let rows: Vec<AnyRow> = match from {
            Some((key, id)) => {
                sqlx::query(&format!("{select} WHERE {range} ORDER BY {order} LIMIT $3"))
                    .bind(key)
                    .bind(id)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(&format!("{select} ORDER BY {order} LIMIT $1"))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let mut page = rows
            .iter()
            .map(|row| Ok((ProfileRow::from_row(row)?, row.try_get("name_key")?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        if toward == Toward::Earlier {
            page.reverse();
        }
        Ok(page)
    }

    /// Every profile, in directory order (commands and tests; pages use [`Self::directory_page`]).
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

    /// Member `user_id`'s account and profile as stored, for their export.
    pub async fn account_record(&self, user_id: i64) -> Result<Option<AccountRecord>, DbError> {
        Ok(sqlx::query_as(
            "SELECT u.username, u.is_staff, u.created_at AS joined_at, u.last_login, \
             p.display_name, p.id AS profile_id, p.avatar_key, p.avatar_content_type, \
             p.avatar_size, p.avatar_sha256, p.resume_key, p.resume_filename, p.resume_size, \
             p.resume_sha256, p.resume_uploaded_at \
             FROM users u JOIN profiles p ON p.user_id = u.id WHERE u.id = $1",
        )
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?)
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
            .swap_reference::<(Option<String>,)>(profile_id, "resume_key", [update])
            .await?;
        self.publish_committed(Invalidation::Resume(profile_id))
            .await;
        Ok(old.and_then(|(key,)| key))
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
            .swap_reference::<(Option<String>,)>(profile_id, "resume_key", [revoke, update])
            .await?;
        self.publish_committed(Invalidation::Resume(profile_id))
            .await;
        Ok(old.and_then(|(key,)| key))
    }

    /// Points a profile at a stored avatar: `key` its largest size, `sizes` every side it is
    /// stored at (see [`AvatarKeys`]; `None`: `key` is its one size), `size` and `sha256`
    /// (hex) those of the largest.
    /// Returns what the profile recorded of the avatar it replaced: its key and its sides.
    pub async fn set_avatar(
        &self,
        profile_id: i64,
        key: &str,
        sizes: Option<&str>,
        content_type: &str,
        size: i64,
        sha256: &str,
    ) -> Result<Option<(String, Option<String>)>, DbError> {
        let update = sqlx::query(
            "UPDATE profiles SET avatar_key = $1, avatar_sizes = $2, avatar_content_type = $3, \
             avatar_size = $4, avatar_sha256 = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(key)
        .bind(sizes)
        .bind(content_type)
        .bind(size)
        .bind(sha256)
        .bind(super::now())
        .bind(profile_id);
        let old = self
            .swap_reference::<(Option<String>, Option<String>)>(
                profile_id,
                "avatar_key, avatar_sizes",
                [update],
            )
            .await?;
        Ok(old.and_then(|(key, sizes)| Some((key?, sizes))))
    }

    /// Runs `updates` on a profile in one transaction with reading the `columns` (the keys)
    /// they replace. The row is locked on PostgreSQL; SQLite allows one writer at a time.
    async fn swap_reference<'q, T>(
        &self,
        profile_id: i64,
        columns: &'static str,
        updates: impl IntoIterator<Item = Query<'q, Any, AnyArguments<'q>>>,
    ) -> Result<Option<T>, DbError>
    where
        T: for<'r> sqlx::FromRow<'r, AnyRow> + Send + Unpin,
    {
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        };
        let mut tx = self.pool.begin().await?;
        let old: Option<T> = sqlx::query_as(&format!(
            "SELECT {columns} FROM profiles WHERE id = $1{lock}"
        ))
        .bind(profile_id)
        .fetch_optional(&mut *tx)
        .await?;
        for update in updates {
            update.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(old)
    }
}

/// Which way a directory page reads from its cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toward {
    Later,
    Earlier,
}

/// How the keys of a stored avatar follow from what a profile records of it: its largest
/// size's key and its sides ("96 192 512", or `None`). Media's rule, given to the statements
/// that must know every object of an avatar (Media's `keys::avatar_keys`).
pub type AvatarKeys = fn(&str, Option<&str>) -> Vec<String>;
