//! Authentication: the axum-login backend over the users table, with argon2id hashes.

use axum_login::{AuthUser, AuthnBackend, UserId};
use sha2::{Digest, Sha256};

use crate::db::{Database, DbError, UserRow};

/// Passwords longer than this are refused before hashing: argon2 on megabytes of input is a
/// denial of service, and no person types that much.
pub const MAX_PASSWORD_BYTES: usize = 1024;

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
        // A digest of the password hash: it changes with the password, reveals nothing of it,
        // and keeps the copy stored in every session (and decoded on every request) small.
        let digest = Sha256::digest(row.password_hash.as_bytes());
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

    /// Sessions are bound to the password hash: changing the password signs out every other
    /// session.
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
    #[error("password hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The axum-login backend: the users table is the user repository.
#[derive(Debug, Clone)]
pub struct Backend {
    db: Database,
}

impl Backend {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// Hashes a password with argon2id off the async runtime.
pub async fn hash_password(password: String) -> Result<String, tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || password_auth::generate_hash(password)).await
}

/// A hash of no one's password, checked when the username is unknown so that a wrong
/// username costs as much time as a wrong password.
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| password_auth::generate_hash(hex::encode(rand::random::<[u8; 16]>())))
}

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
            .map_or_else(|| decoy_hash().to_owned(), |u| u.password_hash.clone());
        let password = creds.password;
        let verified = tokio::task::spawn_blocking(move || {
            password_auth::verify_password(password, &hash).is_ok()
        })
        .await?;
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

/// Passwords are 8 to [`MAX_PASSWORD_BYTES`] bytes.
pub fn validate_password(password: &str) -> Result<(), &'static str> {
    if password.chars().count() < 8 {
        return Err("Passwords are at least 8 characters long.");
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err("Passwords are at most 1024 bytes long.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_and_passwords_are_checked() {
        assert!(validate_username("ada.lovelace+1@x").is_ok());
        assert!(validate_username("").is_err());
        assert!(validate_username("../etc").is_err());
        assert!(validate_username("a b").is_err());
        assert!(validate_password("short").is_err());
        assert!(validate_password("long enough").is_ok());
        assert!(validate_password(&"x".repeat(2000)).is_err());
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
