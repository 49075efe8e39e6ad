//! CSRF protection bound to the session: a random token kept in the session, put in every
//! form, compared in constant time on every state-changing POST.

use subtle::ConstantTimeEq;
use tower_sessions::Session;

use super::AppError;

const SESSION_KEY: &str = "csrf_token";

/// The form field that carries the token.
pub const FIELD: &str = "csrf_token";

/// The session's token, created on first use.
pub async fn token(session: &Session) -> Result<String, AppError> {
    if let Some(token) = session
        .get::<String>(SESSION_KEY)
        .await
        .map_err(session_error)?
    {
        return Ok(token);
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    session
        .insert(SESSION_KEY, &token)
        .await
        .map_err(session_error)?;
    Ok(token)
}

/// Refuses the request unless `submitted` is this session's token.
pub async fn verify(session: &Session, submitted: &str) -> Result<(), AppError> {
    let expected = session
        .get::<String>(SESSION_KEY)
        .await
        .map_err(session_error)?;
    match expected {
        Some(expected)
            if !submitted.is_empty()
                && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes())) =>
        {
            Ok(())
        }
        _ => Err(AppError::Csrf),
    }
}

/// Forgets the token, so the next form gets a new one (after signing in).
pub async fn rotate(session: &Session) -> Result<(), AppError> {
    session
        .remove::<String>(SESSION_KEY)
        .await
        .map_err(session_error)?;
    Ok(())
}

fn session_error(err: tower_sessions::session::Error) -> AppError {
    AppError::Unavailable {
        what: "database",
        source: anyhow::Error::new(err).context("session store"),
    }
}
