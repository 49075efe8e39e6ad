//! What building a staging instance needs from the database: the scrub of a restored copy of
//! live, and every reference to a stored object.

use super::profiles::AvatarKeys;
use super::users::username_key;
use super::{Database, DbError};

/// What [`Database::scrub_for_staging`] removed and kept.
#[derive(Debug, Default)]
pub struct ScrubReport {
    pub users: u64,
    pub profiles: u64,
    pub sessions: u64,
    pub direct_uploads: u64,
    /// The usernames kept: staff, and those named.
    pub kept: Vec<String>,
}

/// A row's reference to a stored object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct MediaRef {
    pub table: &'static str,
    pub row_id: i64,
    /// `avatar_key` (public storage) or `resume_key` (private storage).
    pub field: &'static str,
    pub key: String,
    /// The object's SHA-256 (hex) as recorded when it was stored; `None` for older rows.
    pub sha256: Option<String>,
}

impl MediaRef {
    /// Whether the object lives in the private storage.
    pub fn is_private(&self) -> bool {
        self.field == "resume_key"
    }
}

impl Database {
    /// In one transaction: deletes every non-staff user not in `keep` (usernames, any case)
    /// with their profile, deletes every session and pending direct upload, and forgets last
    /// logins. A name in `keep` that matches no user is an error, and nothing is changed.
    pub async fn scrub_for_staging(&self, keep: &[String]) -> Result<ScrubReport, DbError> {
        let keep: Vec<String> = keep.iter().map(|name| username_key(name)).collect();
        let mut tx = self.pool.begin().await?;
        let users: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT username, username_key, is_staff FROM users")
                .fetch_all(&mut *tx)
                .await?;
        if let Some(missing) = keep
            .iter()
            .find(|name| !users.iter().any(|(_, key, _)| key == *name))
        {
            return Err(DbError::NotFound(format!("no user named {missing:?}")));
        }
        let mut kept: Vec<String> = users
            .iter()
            .filter(|(_, key, staff)| *staff == 1 || keep.contains(key))
            .map(|(name, _, _)| name.clone())
            .collect();
        kept.sort();

        // The users to remove: not staff, and not named in `keep`.
        let placeholders: Vec<String> = (1..=keep.len()).map(|i| format!("${i}")).collect();
        let doomed = if keep.is_empty() {
            "SELECT id FROM users WHERE is_staff = 0".to_owned()
        } else {
            format!(
                "SELECT id FROM users WHERE is_staff = 0 AND username_key NOT IN ({})",
                placeholders.join(", ")
            )
        };
        let direct_uploads = sqlx::query("DELETE FROM direct_uploads")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // Usernames and addresses of failed sign-ins are personal data too, and so are who
        // downloaded which resume and the labels of share links (which must not open on
        // staging either). The objects of live's deleted accounts are live's to delete.
        for table in [
            "login_failures",
            "downloads",
            "share_links",
            "pending_deletions",
        ] {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await?;
        }
        let sessions = sqlx::query("DELETE FROM sessions")
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let delete_profiles = format!("DELETE FROM profiles WHERE user_id IN ({doomed})");
        let mut profiles = sqlx::query(&delete_profiles);
        for name in &keep {
            profiles = profiles.bind(name);
        }
        let profiles = profiles.execute(&mut *tx).await?.rows_affected();
        let delete_users = format!("DELETE FROM users WHERE id IN ({doomed})");
        let mut users = sqlx::query(&delete_users);
        for name in &keep {
            users = users.bind(name);
        }
        let users = users.execute(&mut *tx).await?.rows_affected();
        sqlx::query("UPDATE users SET last_login = NULL")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.forget_cached();
        Ok(ScrubReport {
            users,
            profiles,
            sessions,
            direct_uploads,
            kept,
        })
    }

    /// Every reference to a stored object, empty ones left out, in row order: each stored
    /// size of an avatar (the largest carries the recorded digest; `avatar_keys` gives the
    /// sizes' keys), then the resume.
    pub async fn media_references(
        &self,
        avatar_keys: AvatarKeys,
    ) -> Result<Vec<MediaRef>, DbError> {
        type Row = (
            i64,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, avatar_key, avatar_sizes, avatar_sha256, resume_key, resume_sha256 \
             FROM profiles ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut refs = Vec::new();
        for (row_id, avatar, sizes, avatar_sha256, resume, resume_sha256) in rows {
            let mut keys = Vec::new();
            if let Some(avatar) = avatar.filter(|k| !k.trim().is_empty()) {
                for key in avatar_keys(&avatar, sizes.as_deref()) {
                    let sha256 = avatar_sha256.clone().filter(|_| key == avatar);
                    keys.push(("avatar_key", key, sha256));
                }
            }
            if let Some(resume) = resume.filter(|k| !k.trim().is_empty()) {
                keys.push(("resume_key", resume, resume_sha256));
            }
            refs.extend(keys.into_iter().map(|(field, key, sha256)| MediaRef {
                table: "profiles",
                row_id,
                field,
                key,
                sha256,
            }));
        }
        Ok(refs)
    }

    /// Keys of direct uploads issued and not yet confirmed (objects that are expected to be
    /// unreferenced for a while).
    pub async fn pending_direct_upload_keys(&self) -> Result<Vec<String>, DbError> {
        let keys: Vec<(String,)> = sqlx::query_as("SELECT object_key FROM direct_uploads")
            .fetch_all(&self.pool)
            .await?;
        Ok(keys.into_iter().map(|(key,)| key).collect())
    }
}
