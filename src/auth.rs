//! Authentication: the axum-login backend over the users table, bounded argon2id hashing
//! ([`passwords`]) and throttled sign-in ([`throttle`]).

pub mod passwords;
pub mod throttle;

use axum_login::{AuthUser, AuthnBackend, UserId};
use sha2::{Digest, Sha256};

use crate::db::{Database, DbError, UserRow};
use crate::slots::SlotError;

pub use passwords::{MAX_PASSWORD_BYTES, PasswordHasher, hash_password, validate_new_password};

/// A signed-in member, as the session knows them.
#[derive(Clone)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub is_staff: bool,
    /// What binds a session to the current password (see [`AuthUser::session_auth_hash`]).
    auth_hash: [u8; 16],
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("is_staff", &self.is_staff)
            .finish_non_exhaustive()
    }
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        // A digest of the password hash and the session epoch: it changes with the password
        // and with "sign out everywhere", reveals nothing of the hash, and keeps the copy
        // stored in every session (and decoded on every request) small.
        let mut hasher = Sha256::new();
        hasher.update(row.password_hash.as_bytes());
        hasher.update(row.session_epoch.to_be_bytes());
        let digest = hasher.finalize();
        let mut auth_hash = [0; 16];
        auth_hash.copy_from_slice(&digest[..16]);
        Self {
            id: row.id,
            username: row.username,
            is_staff: row.is_staff,
            auth_hash,
        }
    }
}

impl AuthUser for User {
    type Id = i64;

    fn id(&self) -> i64 {
        self.id
    }

    /// Sessions are bound to the password hash and the session epoch: changing the password,
    /// or signing out everywhere, ends every other session.
    fn session_auth_hash(&self) -> &[u8] {
        &self.auth_hash
    }
}

/// What the login form submits.
#[derive(Clone, serde::Deserialize)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Db(#[from] DbError),
    /// Every hashing slot stayed busy: nothing was computed (a 503 with `Retry-After`).
    #[error("every password hashing slot is busy")]
    Busy,
    #[error("password hashing failed")]
    Failed,
}

impl From<SlotError> for AuthError {
    fn from(err: SlotError) -> Self {
        match err {
            SlotError::Busy => AuthError::Busy,
            SlotError::Failed => AuthError::Failed,
        }
    }
}

/// The axum-login backend: the users table is the user repository.
#[derive(Debug, Clone)]
pub struct Backend {
    db: Database,
    hasher: PasswordHasher,
}

impl Backend {
    pub fn new(db: Database, hasher: PasswordHasher) -> Self {
        Self { db, hasher }
    }

    /// Whether `password` is `user_id`'s current password (a bounded check).
    pub async fn check_password(&self, user_id: i64, password: &str) -> Result<bool, AuthError> {
        if password.len() > MAX_PASSWORD_BYTES {
            return Ok(false);
        }
        let Some(user) = self.db.find_user_uncached(user_id).await? else {
            return Ok(false);
        };
        Ok(self
            .hasher
            .verify(password.to_owned(), user.password_hash)
            .await?)
    }
}

/// A hash of a random password no one kept, checked when the username is unknown so that a
/// wrong username costs as much time as a wrong password. A constant, so that nothing hashes
/// on the async runtime to make it; whatever matches it, the answer is still "no such member".
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$TCSKmZyYLbADR8m3DF4UHA$QVBAZ8NWdLUug5GX+QdShVNPHcQEiWKcqn0ORN60i0E";

impl AuthnBackend for Backend {
    type User = User;
    type Credentials = Credentials;
    type Error = AuthError;

    async fn authenticate(&self, creds: Credentials) -> Result<Option<User>, AuthError> {
        if creds.password.len() > MAX_PASSWORD_BYTES || creds.username.len() > 150 {
            return Ok(None);
        }
        let user = self.db.find_user_by_username(&creds.username).await?;
        let hash = user
            .as_ref()
            .map_or_else(|| DECOY_HASH.to_owned(), |u| u.password_hash.clone());
        let verified = self.hasher.verify(creds.password, hash).await?;
        Ok(user.filter(|_| verified).map(User::from))
    }

    /// Called on every request of a signed-in member; `find_user` is cached.
    async fn get_user(&self, id: &UserId<Self>) -> Result<Option<User>, AuthError> {
        Ok(self.db.find_user(*id).await?.map(User::from))
    }
}

pub type AuthSession = axum_login::AuthSession<Backend>;

/// Usernames as Django allows them: 1–150 letters, digits and `@ . + - _`.
pub fn validate_username(username: &str) -> Result<(), &'static str> {
    if username.is_empty() || username.chars().count() > 150 {
        return Err("Usernames are 1 to 150 characters long.");
    }
    if !username
        .chars()
        .all(|c| c.is_alphanumeric() || "@.+-_".contains(c))
    {
        return Err("Usernames may contain only letters, digits and @ . + - _");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_checked() {
        assert!(validate_username("ada.lovelace+1@x").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("../etc").is_err());
        assert!(validate_username("a b").is_err());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let creds = Credentials {
            username: "ada".into(),
            password: "hunter22".into(),
        };
        assert!(!format!("{creds:?}").contains("hunter22"));
    }
}
