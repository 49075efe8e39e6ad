//! How long a sign-in lasts, and how one begins.
//!
//! A session is created only by signing in (visitors have none: see [`super::csrf`]). Every
//! sign-in gets a fresh session id, also when the browser was signed in already (session
//! fixation), and is stamped with its time. A session then ends after `SESSION_IDLE_SECS`
//! without a request (14 days) or `SESSION_MAX_AGE_SECS` after the sign-in (30 days), whichever
//! comes first. The row's expiry in the database says the same, so an ended session is
//! refused by the store, and swept.
//!
//! Being seen is written down at most once a minute per session, not on every request: the hot
//! path (`/resume/{id}`) stays free of writes, and the idle timeout is exact to that minute.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use time::OffsetDateTime;
use tower_sessions::Expiry;
use tower_sessions::session::Record;

use super::AppError;
use crate::auth::{AuthSession, User};
use crate::db::now;

/// When the member signed in (unix seconds), in the session.
const SIGNED_IN_AT: &str = "stowage.signed_in_at";
/// When the session was last seen, to within [`TOUCH_EVERY`].
const SEEN_AT: &str = "stowage.seen_at";
/// How often a session's last use is written down, at most (a tenth of the idle timeout when
/// that is shorter).
const TOUCH_EVERY: i64 = 60;

/// The two lifetimes of a session.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub idle: Duration,
    pub max_age: Duration,
}

impl SessionLimits {
    fn touch_every(&self) -> i64 {
        TOUCH_EVERY.min(self.idle.as_secs() as i64 / 10)
    }

    /// When a session signed in at `signed_in_at` and seen at `seen_at` ends.
    fn ends_at(&self, signed_in_at: i64, seen_at: i64) -> i64 {
        (seen_at + self.idle.as_secs() as i64).min(signed_in_at + self.max_age.as_secs() as i64)
    }

    /// Whether the session `record` may be used as it is at `now`: stamped, not ended, and its
    /// use written down recently enough. Anything else is [`enforce_lifetimes`]'s to handle.
    pub(super) fn leaves_unchanged(&self, record: &Record, now: i64) -> bool {
        let stamp = |key| record.data.get(key).and_then(serde_json::Value::as_i64);
        let (Some(signed_in_at), Some(seen_at)) = (stamp(SIGNED_IN_AT), stamp(SEEN_AT)) else {
            return false;
        };
        now < self.ends_at(signed_in_at, seen_at) && now - seen_at < self.touch_every()
    }
}

fn session_error(err: impl std::fmt::Display) -> AppError {
    AppError::Unavailable {
        what: "database",
        source: anyhow::anyhow!("session store: {err}"),
    }
}

/// Stamps the session and sets the row's expiry to when it ends.
async fn stamp(
    auth: &AuthSession,
    limits: SessionLimits,
    signed_in_at: i64,
    seen_at: i64,
) -> Result<(), AppError> {
    let session = &auth.session;
    session
        .insert(SIGNED_IN_AT, signed_in_at)
        .await
        .map_err(session_error)?;
    session
        .insert(SEEN_AT, seen_at)
        .await
        .map_err(session_error)?;
    let ends = OffsetDateTime::from_unix_timestamp(limits.ends_at(signed_in_at, seen_at))
        .map_err(session_error)?;
    session.set_expiry(Some(Expiry::AtDateTime(ends)));
    Ok(())
}

/// Signs `user` in on a fresh session id, whoever was signed in before.
pub async fn sign_in(
    auth: &mut AuthSession,
    user: &User,
    limits: SessionLimits,
) -> Result<(), AppError> {
    if auth.user.is_some() {
        // axum-login renews the id only when nobody was signed in.
        auth.session.cycle_id().await.map_err(session_error)?;
    }
    auth.login(user).await.map_err(session_error)?;
    let now = now();
    stamp(auth, limits, now, now).await
}

/// Ends sessions past either lifetime before the handler sees them, and writes down a
/// session's use once a minute.
pub async fn enforce_lifetimes(
    State(limits): State<Arc<SessionLimits>>,
    mut auth: AuthSession,
    mut request: Request,
    next: Next,
) -> Result<Response, AppError> {
    if let Some(user_id) = auth.user.as_ref().map(|u| u.id) {
        let session = &auth.session;
        let now = now();
        let stamped: Option<i64> = session.get(SIGNED_IN_AT).await.map_err(session_error)?;
        let seen: Option<i64> = session.get(SEEN_AT).await.map_err(session_error)?;
        // A session from before these stamps is treated as signed in now.
        let (signed_in_at, seen_at) = (stamped.unwrap_or(now), seen.unwrap_or(now));
        if now >= limits.ends_at(signed_in_at, seen_at) {
            tracing::info!(user.id = user_id, "session ended: idle or too old");
            auth.logout().await.map_err(session_error)?;
            request.extensions_mut().insert(auth);
        } else if stamped.is_none() || now - seen_at >= limits.touch_every() {
            stamp(&auth, *limits, signed_in_at, now).await?;
        }
    }
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_ends_when_idle_or_too_old_whichever_is_first() {
        let limits = SessionLimits {
            idle: Duration::from_secs(100),
            max_age: Duration::from_secs(1000),
        };
        assert_eq!(limits.ends_at(0, 0), 100);
        assert_eq!(limits.ends_at(0, 950), 1000);
    }

    #[test]
    fn only_a_stamped_live_session_seen_within_the_minute_is_left_unchanged() {
        let limits = SessionLimits {
            idle: Duration::from_secs(1000),
            max_age: Duration::from_secs(5000),
        };
        let record = |stamps: &[(&str, i64)]| Record {
            id: Default::default(),
            data: stamps
                .iter()
                .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                .collect(),
            expiry_date: OffsetDateTime::now_utc(),
        };
        let stamped = record(&[(SIGNED_IN_AT, 0), (SEEN_AT, 100)]);
        assert!(limits.leaves_unchanged(&stamped, 159));
        assert!(!limits.leaves_unchanged(&stamped, 160), "a touch is due");
        assert!(!limits.leaves_unchanged(&record(&[(SEEN_AT, 100)]), 110));
        assert!(!limits.leaves_unchanged(&record(&[]), 110));
        let old = record(&[(SIGNED_IN_AT, 0), (SEEN_AT, 4990)]);
        assert!(limits.leaves_unchanged(&old, 4999));
        assert!(!limits.leaves_unchanged(&old, 5000), "too old");
    }
}
