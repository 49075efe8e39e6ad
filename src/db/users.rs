//! Members: who they are and how they sign in.

use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use super::{Database, DbError, Invalidation, conflict, now, prefetch};

/// A member as stored.
#[derive(Clone)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub is_staff: bool,
    /// Bumped to end every session of the member (see [`Database::end_sessions_everywhere`]).
    pub session_epoch: i64,
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password_hash", &"[redacted]")
            .field("is_staff", &self.is_staff)
            .field("session_epoch", &self.session_epoch)
            .finish()
    }
}

impl<'r> FromRow<'r, AnyRow> for UserRow {
    fn from_row(row: &'r AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            username: row.try_get("username")?,
            password_hash: row.try_get("password_hash")?,
            // Stored as 0/1: the Any driver has no portable boolean.
            is_staff: row.try_get::<i64, _>("is_staff")? != 0,
            session_epoch: row.try_get("session_epoch")?,
        })
    }
}

/// The key a username is compared by, here and in the sign-in throttle's buckets: NFKC, then
/// lowercase. Computed here and stored (`users.username_key`), never by SQL's `lower()`, whose
/// answer depends on the backend and the locale.
pub fn username_key(username: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    username.nfkc().collect::<String>().to_lowercase()
}

const USER_COLUMNS: &str = "id, username, password_hash, is_staff, session_epoch";

impl Database {
    /// Creates a member and their (empty) profile in one transaction.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        is_staff: bool,
        display_name: &str,
    ) -> Result<UserRow, DbError> {
        let mut tx = self.pool.begin().await?;
        let at = now();
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO users (username, username_key, password_hash, is_staff, created_at) \
             VALUES ($1, $5, $2, $3, $4) RETURNING id",
        )
        .bind(username)
        .bind(password_hash)
        .bind(i64::from(is_staff))
        .bind(at)
        .bind(username_key(username))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| conflict(e, "username"))?;
        sqlx::query(
            "INSERT INTO profiles (user_id, display_name, created_at, updated_at) \
             VALUES ($1, $2, $3, $3)",
        )
        .bind(id)
        .bind(display_name)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(UserRow {
            id,
            username: username.to_owned(),
            password_hash: password_hash.to_owned(),
            is_staff,
            session_epoch: 0,
        })
    }

    /// Finds a member by username, compared by [`username_key`].
    pub async fn find_user_by_username(&self, username: &str) -> Result<Option<UserRow>, DbError> {
        Ok(sqlx::query_as(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE username_key = $1"
        ))
        .bind(username_key(username))
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Gives every username that is not plain ASCII its [`username_key`] (the migration
    /// could only lowercase ASCII); returns how many changed. A name whose key another member
    /// already holds keeps its old key, and is logged for the operator to rename.
    pub async fn rekey_usernames(&self) -> Result<u64, DbError> {
        let mut changed = 0;
        let mut after = 0;
        loop {
            let page: Vec<(i64, String, String)> = sqlx::query_as(
                "SELECT id, username, username_key FROM users \
                 WHERE id > $1 AND length(username) <> octet_length(username) \
                 ORDER BY id LIMIT 500",
            )
            .bind(after)
            .fetch_all(&self.pool)
            .await?;
            let Some((last, _, _)) = page.last() else {
                return Ok(changed);
            };
            after = *last;
            for (id, username, stored) in page {
                let key = username_key(&username);
                if key == stored {
                    continue;
                }
                let done = sqlx::query("UPDATE users SET username_key = $1 WHERE id = $2")
                    .bind(&key)
                    .bind(id)
                    .execute(&self.pool)
                    .await;
                match done {
                    Ok(_) => changed += 1,
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        tracing::error!(
                            user.id = id,
                            user.name = %username,
                            "another member's name is the same after NFKC and lowercase; \
                             rename one of them"
                        );
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }

    /// A member by id; served from the cache, or from what the session look-up read, when it
    /// can be.
    pub async fn find_user(&self, id: i64) -> Result<Option<UserRow>, DbError> {
        if let Some(user) = self.users.get(&id) {
            return Ok(Some(user));
        }
        if let Some(user) = prefetch::take_user(id) {
            self.users.insert(id, user.clone());
            return Ok(Some(user));
        }
        let user: Option<UserRow> =
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        if let Some(user) = &user {
            self.users.insert(id, user.clone());
        }
        Ok(user)
    }

    /// A member by id, from the database itself (never the cache).
    pub async fn find_user_uncached(&self, id: i64) -> Result<Option<UserRow>, DbError> {
        Ok(
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Sets a member's password hash and bumps their session epoch, which ends every session
    /// of theirs on every instance; returns the updated member, or `None` for no such member.
    pub async fn set_password(
        &self,
        user_id: i64,
        password_hash: &str,
    ) -> Result<Option<UserRow>, DbError> {
        sqlx::query(
            "UPDATE users SET password_hash = $1, session_epoch = session_epoch + 1 WHERE id = $2",
        )
        .bind(password_hash)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        self.publish(Invalidation::User(user_id)).await?;
        self.find_user_uncached(user_id).await
    }

    /// "Sign out everywhere": bumps the member's session epoch, so every session bound to the
    /// old one ends on its next request, on every instance. Returns the updated member.
    pub async fn end_sessions_everywhere(&self, user_id: i64) -> Result<Option<UserRow>, DbError> {
        sqlx::query("UPDATE users SET session_epoch = session_epoch + 1 WHERE id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        self.publish(Invalidation::User(user_id)).await?;
        self.find_user_uncached(user_id).await
    }

    pub async fn record_login(&self, user_id: i64) -> Result<(), DbError> {
        sqlx::query("UPDATE users SET last_login = $1 WHERE id = $2")
            .bind(now())
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
